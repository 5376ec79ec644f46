//! # sluice-client
//!
//! The async Rust client of sluice's native protocol, and that protocol's frames: what a
//! program that talks to a `sluice serve` needs, without the storage engine or the server (it
//! builds on `sluice-format` for batches and records). The `sluice` crate re-exports it as
//! `sluice::client` (and its protocol as `sluice::protocol`, its types as
//! `sluice::broker::types`).
//!
//! One [`Client`] is one connection (given the nodes of a cluster, to one node at a time: see
//! "A cluster" below); it is cheap to clone and every call can run concurrently:
//! requests are pipelined and matched to their replies by request id. The argument types of its
//! calls are re-exported here ([`LogSettings`], [`QueueSettings`], [`Source`], [`Start`],
//! [`Target`], [`Record`], [`Header`], [`Offset`]), so a user needs no other module.
//!
//! ```no_run
//! use sluice_client::{Client, LogSettings, Record, Start, SubscribeOptions};
//!
//! # async fn demo() -> Result<(), sluice_client::ClientError> {
//! let client = Client::connect("127.0.0.1:7450").await?;
//! client.create_topic("orders", LogSettings::default()).await?;
//!
//! // One call is one batch; the reply comes once the batch is durable.
//! let published = client
//!     .publish("orders", &[Record::from_value("a"), Record::from_value("b")])
//!     .await?;
//! assert_eq!(published.last_offset - published.base_offset, 1);
//!
//! // A durable named subscriber, read as a stream (also a `futures_core::Stream`).
//! let mut sub = client
//!     .subscribe("orders", SubscribeOptions::named("billing").from(Start::Earliest))
//!     .await?;
//! while let Some(msg) = sub.next().await {
//!     let msg = msg?;
//!     println!("{}: {:?}", msg.offset, msg.record.value);
//!     // Commits the offset after this message: a restart resumes past it.
//!     sub.commit_message(&msg).await?;
//!     if msg.offset == published.last_offset {
//!         break;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Competing consumers of a queue ack each message through its handle:
//!
//! ```no_run
//! # async fn demo(client: sluice_client::Client) -> Result<(), sluice_client::ClientError> {
//! use sluice_client::{QueueSettings, Source};
//! client.create_queue("jobs", QueueSettings::default()).await?;
//! let mut consumer = client.consume(Source::Queue("jobs".into()), 100).await?;
//! while let Some(job) = consumer.next().await {
//!     let job = job?;
//!     println!("job {} (attempt {})", job.offset, job.attempt);
//!     job.ack().await?;
//! }
//! # Ok(()) }
//! ```
//!
//! Connection settings (client name, connect timeout, frame limit) go through
//! [`Client::builder`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice_client::ClientError> {
//! use std::time::Duration;
//! let client = sluice_client::Client::builder("127.0.0.1:7450")
//!     .client_name("billing-worker")
//!     .connect_timeout(Duration::from_secs(5))
//!     .connect()
//!     .await?;
//! # let _ = client; Ok(()) }
//! ```
//!
//! # A cluster
//!
//! Given the nodes of a cluster, comma-separated (`Client::builder("10.0.0.1:7450,10.0.0.2:7450")`
//! or [`ConnectOptions::addrs`]), the client connects to the first that answers. A publish (or
//! a topic creation or deletion, a topic's figures, the cluster status) refused with
//! `NotLeader` by a node that does not lead the partition, cut by a lost connection, or left
//! unanswered past [`ConnectOptions::request_timeout`] ([`REQUEST_TIMEOUT_DEFAULT`]: a paused
//! node), is sent again to the next node, round-robin, with a short backoff
//! ([`RETRY_BACKOFF_MIN`] doubling to [`RETRY_BACKOFF_MAX`]), until
//! [`ConnectOptions::retry_deadline`] ([`RETRY_DEADLINE_DEFAULT`]; a failover takes about
//! 1 s); then the call fails with [`ClientError::Failover`]. A call returns success only for
//! what a leader confirmed. A refusal means nothing was done; a lost connection does not say
//! whether the publish was appended (nor does a timeout), so a publish retried after one may be
//! appended twice: it is *at-least-once*. Subscriptions and consumers stay on the connection they were opened on.
//!
//! # Layout
//! - [`protocol`]: the native wire protocol's frames, hand-encoded (specification:
//!   `docs/protocol.md`); the server decodes with the same code.
//! - [`types`]: the arguments and figures of broker operations ([`Target`], [`Start`],
//!   [`Source`], ...), shared with the broker core.
//! - `connection`: the connection's reader and writer tasks, request ids and reply routing.
//! - `options`: [`ConnectOptions`] (the builder of [`Client::builder`]).
//! - `tls`: [`ClientTls`], the client's TLS (a CA file, optionally a client certificate).
//! - `partitioner`: [`murmur2`] and [`partition_for_key`], Kafka's default partitioner.
//! - `publish`: [`Client::publish`] and friends, [`Published`], [`PendingPublish`]; the
//!   partition of a batch (chosen here from its key, with the topic's cached partition count).
//! - `subscription`: [`Client::subscribe`], [`SubscribeOptions`], [`Subscription`].
//! - `consumer`: [`Client::consume`], [`Consumer`], [`Delivery`], [`Acker`].
//! - `admin`: topics (with partitions) and queues; the cluster status.
//! - `failover`: retrying requests on the next node of a cluster.

#![warn(missing_docs)]

pub mod protocol;
pub mod scram;
pub mod types;

mod admin;
mod auth;
mod connection;
mod consumer;
mod failover;
mod options;
mod partitioner;
mod publish;
mod spread;
mod subscription;
#[cfg(test)]
mod tests;
mod tls;

use std::io;
use std::sync::Arc;

pub use crate::protocol::{
    ErrorCode, LogSettings, Message, PartitionInfo, QueueInfo, QueueSettings, Route, Source, Start,
    SubscriberStat, Target, TopicInfo,
};
use crate::protocol::{ProtocolError, Reply};
pub use auth::{AuthMechanism, Credentials};
pub use connection::ADDR_CONNECT_TIMEOUT;
pub use consumer::{Acker, Consumer, Delivery};
pub use failover::{RETRY_BACKOFF_MAX, RETRY_BACKOFF_MIN};
pub use options::{ClientBuilder, ConnectOptions, REQUEST_TIMEOUT_DEFAULT, RETRY_DEADLINE_DEFAULT};
pub use partitioner::{murmur2, partition_for_key};
pub use publish::{PendingPublish, Published};
pub use sluice_format::{Header, Offset, Record, TopicId};
pub use subscription::{SubscribeOptions, Subscription};
pub use tls::ClientTls;

/// A client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made (or the handshake did not finish in time).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The server answered with an error.
    #[error("{message} ({code})")]
    Server {
        /// The error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// TLS could not be set up (a CA or certificate file, a server name) or its handshake
    /// failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The connection is gone.
    #[error("connection closed: {0}")]
    Closed(String),
    /// With several addresses: a node did not answer within
    /// [`ConnectOptions::request_timeout`].
    #[error("no reply within {0:?}")]
    TimedOut(std::time::Duration),
    /// The server sent bytes this client cannot decode.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The server sent a reply of the wrong kind.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    /// With several addresses: the request failed on every attempt until the retry deadline
    /// ([`ConnectOptions::retry_deadline`]). After a lost connection, a publish's fate is
    /// unknown: it may have been appended.
    #[error("no node carried out the request in {attempts} attempts over {elapsed:?}: {last}")]
    Failover {
        /// Times the request was sent (or a connection for it sought).
        attempts: u32,
        /// Time spent retrying.
        elapsed: std::time::Duration,
        /// The last failure.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            ClientError::Failover { last, .. } => last.code(),
            _ => None,
        }
    }
}

type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A connection to a sluice server (with several addresses: to one node of a cluster at a time,
/// moving to another when the one in use fails or does not lead).
#[derive(Clone)]
pub struct Client {
    inner: Arc<connection::Inner>,
}

fn unexpected(r: Reply) -> ClientError {
    ClientError::Unexpected(format!("{r:?}"))
}

/// The error a stream's push carries (an `ERROR` frame ends the stream).
fn push_error(r: Reply) -> ClientError {
    match r {
        Reply::Error { code, message } => ClientError::Server { code, message },
        r => unexpected(r),
    }
}
