//! The Kafka wire protocol's frontend: the same broker core as the native protocol, presented
//! to stock Kafka clients as a one-node cluster (node 0, which leads every partition). Messages
//! are decoded and encoded with `kafka_protocol`'s generated schemas; stored batches travel as
//! bytes. What is served, and how Kafka's concepts map onto sluice's: `docs/kafka.md`.
//!
//! Structure (one connection), as the native frontend:
//! - the *reader* (the connection task) reads size-prefixed frames ([`FRAME_TIMEOUT`] once a
//!   frame started, `limits.frame_bytes_max` at most), decodes them (`codec`) and dispatches
//!   them (`dispatch`); a malformed or oversized frame closes the connection with a logged
//!   reason;
//! - every request takes a *response slot* in a bounded FIFO ([`IN_FLIGHT_REQUESTS_MAX`]); the
//!   *replier* forwards filled slots to the writer in request order, so requests are pipelined
//!   while their work (syncs, long polls, admin) runs concurrently, and responses leave in
//!   order as Kafka requires;
//! - the *writer* owns the socket's write half.
//!
//! Files: `listener` (accept loop), `connection`, `codec`, `dispatch` (routing, the served
//! versions, ApiVersions), `errors` (the error codes of each response, counted in metrics),
//! and one file per request family: `metadata`, `produce` (and
//! `produce_legacy` for the refused versions 0-2), `fetch` (and `fetch_frame`, its response
//! without copies), `offsets` (ListOffsets), `admin`
//! (CreateTopics, DeleteTopics), `configs` (DescribeConfigs, AlterConfigs,
//! IncrementalAlterConfigs), `coordinator` (FindCoordinator), `producer_id` (InitProducerId),
//! `partitions` (CreatePartitions), `reassign` (AlterPartitionReassignments,
//! ListPartitionReassignments: moving a cluster's partitions), `logdirs` (DescribeLogDirs),
//! `groups` (the consumer-group requests, handed to the
//! coordinator), `shares` (the share-group requests, handed to `share/`), `registry` (the
//! client's name and joined groups in the broker's connection registry), `sasl` (SaslHandshake,
//! SaslAuthenticate, and who the connection is), `authz` (the authorization checks every
//! handler asks, with `group_authz` and `share_authz` for the group and share-group requests),
//! `acls` (DescribeAcls, CreateAcls, DeleteAcls on the access rules). Quota delays mute the
//! connection (`connection::Mute`). The coordinator is a
//! folder `group/` of its own, independent of the broker core behind its `GroupOffsets` store
//! trait; `group_store` implements that trait over the core. Share groups (`share/`) are served
//! by the core's queue engine: a share group is a consumer group of the topic.
//!
//! Disk work runs on `spawn_blocking` threads; nothing here is Kafka-free except what it calls.

mod acls;
mod admin;
mod authz;
mod cluster;
pub(crate) mod codec;
mod configs;
mod connection;
mod coordinator;
mod dispatch;
mod errors;
pub use errors::UNKNOWN_SERVER_ERROR;
mod fetch;
mod fetch_frame;
pub mod group;
mod group_authz;
mod group_configs;
mod group_store;
mod groups;
pub(crate) use group_store::BrokerGroupOffsets;
mod listener;
mod logdirs;
mod metadata;
mod not_coordinator;
mod offsets;
mod partitions;
mod produce;
mod produce_legacy;
mod producer_id;
mod reassign;
mod registry;
mod sasl;
pub mod share;
mod share_authz;
mod shares;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, Semaphore};

use crate::broker::{Broker, BrokerError, ErrorKind};

/// Most requests of one connection read and not yet answered. The reader stops reading the
/// connection at the bound, so a client pipelining without limit holds at most this many
/// decoded requests (Kafka clients keep 5 in flight by default).
pub const IN_FLIGHT_REQUESTS_MAX: usize = 64;
/// Once a frame's size arrived, the whole frame must arrive within this time.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames queued to a connection's writer.
const WRITER_QUEUE: usize = 64;
/// The node id of this broker, the leader of every partition and the coordinator.
pub const NODE_ID: i32 = 0;
/// The leader epoch of every partition: unknown. With no epoch clients neither send
/// OffsetForLeaderEpoch nor fence on epochs (there is one leader, forever).
pub const LEADER_EPOCH: i32 = -1;

/// What every Kafka connection shares: the core, how this broker presents itself, and
/// settings of the frontend.
pub(crate) struct KafkaContext {
    pub(crate) broker: Arc<Broker>,
    /// The host clients are told to connect to.
    pub(crate) host: String,
    /// The port clients are told to connect to.
    pub(crate) port: i32,
    /// The cluster id (the data directory's identity, base64 as Kafka writes UUIDs).
    pub(crate) cluster_id: String,
    /// Unknown topics named by Metadata are created.
    pub(crate) auto_create_topics: bool,
    /// Partitions of topics created without a count.
    pub(crate) default_partitions: u32,
    /// TLS of the listener, when on.
    pub(crate) tls: Option<Arc<crate::server::tls::Tls>>,
    /// The consumer group coordinator.
    pub(crate) groups: Arc<group::GroupCoordinator>,
    /// The share groups.
    pub(crate) shares: Arc<share::ShareGroups>,
}

/// A bound Kafka listener, ready to serve.
pub(crate) struct KafkaListener {
    pub(crate) listener: TcpListener,
    pub(crate) context: Arc<KafkaContext>,
}

impl KafkaListener {
    /// Serves connections until the task is dropped; each connection task holds a clone of
    /// `done` and stops on `shutdown`.
    pub(crate) async fn serve(
        self,
        permits: Arc<Semaphore>,
        shutdown: broadcast::Sender<()>,
        done: mpsc::Sender<()>,
    ) {
        listener::accept(&self.listener, &self.context, &permits, &shutdown, &done).await
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A Kafka cluster id from 16 bytes: URL-safe base64 without padding (22 characters), as
/// Kafka prints UUIDs.
pub(crate) fn cluster_id(id: [u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in id.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for k in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
    }
    out
}

/// The Kafka error code of a broker failure (per partition or per resource).
pub(crate) fn error_code(e: &BrokerError) -> i16 {
    let err = match e.kind {
        ErrorKind::NotFound => ResponseError::UnknownTopicOrPartition,
        ErrorKind::AlreadyExists => ResponseError::TopicAlreadyExists,
        ErrorKind::InvalidArgument => ResponseError::InvalidRequest,
        ErrorKind::InvalidBatch => ResponseError::CorruptMessage,
        // The native client's stale partition count; a Kafka request never gets it.
        ErrorKind::PartitionsChanged => ResponseError::UnknownTopicOrPartition,
        // Appends refused while the disk catches up: retriable.
        ErrorKind::LimitReached => ResponseError::RequestTimedOut,
        ErrorKind::Storage => ResponseError::KafkaStorageError,
        ErrorKind::NotLeader => ResponseError::NotLeaderOrFollower,
        ErrorKind::UnknownId | ErrorKind::NotHeld | ErrorKind::InUse | ErrorKind::Internal => {
            ResponseError::UnknownServerError
        }
    };
    err.code()
}

/// A topic name as sluice allows it (1 to 200 characters of `[A-Za-z0-9._-]`, not `.` or
/// `..`): Kafka's rule, with a shorter maximum (Kafka allows 249).
pub(crate) fn valid_topic_name(name: &str) -> bool {
    sluice_storage::store::validate_name(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_kafka_base64() {
        assert_eq!(cluster_id([0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(cluster_id([0xff; 16]), "_____________________w");
        let id = cluster_id(*b"0123456789abcdef");
        assert_eq!(id.len(), 22);
        assert_eq!(id, "MDEyMzQ1Njc4OWFiY2RlZg");
    }
}
