//! The broker core: topics, queues, consumer groups, subscriptions, consumers, credit and
//! durability waits, in plain Rust over [`sluice_storage`]. It knows no wire format: the native
//! protocol (`server::native`) is one frontend that decodes requests, calls the core and encodes
//! what it returns; another protocol is a sibling frontend calling the same core.
//!
//! # Layout
//! - `types`: arguments and figures of the operations ([`Target`], [`Start`], [`Source`],
//!   [`LogSettings`], [`QueueSettings`], [`TopicInfo`], [`QueueInfo`]).
//! - `error`: [`BrokerError`] and its [`ErrorKind`] (one kind per native error code).
//! - `browse`: messages read without consuming them (the admin API's browser), queue purge.
//! - `groups`: offset groups (named subscribers, Kafka groups: list, describe with lag,
//!   create, reset, delete) and topics' consumer groups (list, delete) for the admin API.
//! - `redrive`: a dead-letter queue's messages moved back to their queue.
//! - `segments`: the segment map of a partition or queue (what retention reclaims next).
//! - `views`: a queue's extra figures and the broker overview, for the admin API.
//! - `admin`: create (with partitions), add partitions, delete, list and describe topics and
//!   queues (with the limits checks); topic ids; committed offsets per partition with metadata
//!   (named subscribers and Kafka groups); list offsets.
//! - `publish`: resolving a publish target to a partition (chosen, or round robin), appending,
//!   the durability wait (group commit) and the inline-sync permission.
//! - `fetch`: reads of raw stored batches of one partition with a long-poll wait (pull
//!   frontends).
//! - `subscription`: the named-subscriber registry, credit, and the read side of a pushed
//!   subscription (stored batches handed to a [`BatchSink`] as read).
//! - `consumer`: competing consumers (of a group: every partition, in turn): prefetch window, delivery rounds bounded by bytes, ack,
//!   nack and release, and the consumer's own delivery loop handing rounds to a
//!   [`DeliverySink`].
//! - `partition`: a topic's partitions as frontends address them (their count, the log of one,
//!   a watcher of its visible end), topic ids, effective settings and the data directory's
//!   identity: the seam where partitions plug in (one partition per topic today).
//! - `watch`: log watchers (visible-end fan-out) and queue event notifies; the retention ticker.
//!
//! Functions documented as *blocking* do disk work: call them from a blocking thread.

mod admin;
mod browse;
mod consumer;
mod error;
mod fetch;
mod groups;
mod offsets;
mod partition;
mod publish;
mod redrive;
mod segments;
mod subscription;
#[cfg(test)]
mod tests;
/// The arguments and figures of broker operations (shared with the client: `sluice_client::types`).
pub use sluice_client::types;
mod views;
mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use sluice_storage::{LogConfig, Store};
use tokio::sync::Notify;

use crate::config::Limits;

pub use browse::{Bytes, Peeked, PEEK_BYTES_MAX, PEEK_MESSAGES_MAX};
pub use consumer::{Consumer, ConsumerFeed, DeliverySink, MessageId, Round};
pub use error::{BrokerError, ErrorKind, Result};
pub use fetch::Fetched;
pub use groups::{GroupInfo, GroupOffset, GroupSummary, ResetTo, TopicGroupInfo};
pub use partition::{queue_topic_id, NamedLog, TopicId};
pub use publish::{make_durable, publish, InlineSync, Published, INLINE_SYNC_BATCH_BYTES_MAX};
pub use redrive::{MayWrite, Redriven, REDRIVE_ROUND_MAX};
pub use segments::{Reclaim, SegmentMap, SegmentView, SEGMENT_MAP_MAX};
pub use subscription::{BatchSink, Credit, HeldName, Subscription, SubscriptionReader};
pub use types::{
    LogSettings, OffsetSpec, PartitionInfo, QueueInfo, QueueSettings, Route, Source, Start,
    SubscriberStat, Target, TopicInfo,
};
pub use views::{oldest_unacked_ms, Overview, QueueView, OVERVIEW_NAMES_MAX};

/// The broker's state shared by every frontend and connection: the store, the limits, and the
/// registries of watchers, queue events, held subscriber names and the inline-sync permission.
pub struct Broker {
    store: Arc<Store>,
    limits: Limits,
    default_log: LogConfig,
    /// One append listener per log, keyed by `t/<topic>` or `q/<queue>`, with the address of the
    /// topic or queue it was registered for (a recreated one gets a new listener).
    watches: Mutex<HashMap<String, watch::LogWatch>>,
    /// Wakes the consumers of a queue or group when messages return to it (nack, release, ack).
    queue_events: Mutex<HashMap<String, Arc<Notify>>>,
    next_consumer: AtomicU64,
    /// The turn of the next publish that leaves the partition to the broker (round robin).
    next_partition: AtomicU64,
    /// Held by the one connection syncing a publish on its own worker thread (see
    /// [`INLINE_SYNC_BATCH_BYTES_MAX`]): at most one worker blocks on a sync at a time.
    inline_sync: AtomicBool,
    /// Named subscribers held by an open subscription: the address of their topic and their
    /// name. One subscription at a time may hold a name ([`HeldName`]).
    held_names: Mutex<HashSet<(usize, String)>>,
    /// What the broker counts for `GET /metrics`.
    metrics: Arc<crate::metrics::Metrics>,
    /// Users, rules and quotas; off (no users) unless [`Broker::with_security`] gave some.
    security: Arc<crate::security::Security>,
    /// The cluster this broker is a node of, in cluster mode ([`Broker::set_cluster`]).
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl Broker {
    /// The broker over an open store; `default_log` is the configuration of new topics and
    /// queues before their own settings.
    pub fn new(store: Arc<Store>, limits: Limits, default_log: LogConfig) -> Broker {
        Broker {
            store,
            limits,
            default_log,
            watches: Mutex::default(),
            queue_events: Mutex::default(),
            next_consumer: AtomicU64::new(1),
            next_partition: AtomicU64::new(0),
            inline_sync: AtomicBool::new(false),
            held_names: Mutex::default(),
            metrics: Arc::default(),
            security: Arc::new(crate::security::Security::disabled()),
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// Makes this broker a node of `cluster`: topics are created and deleted through the
    /// cluster metadata and published to through their partitions' replicated logs.
    pub fn set_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The cluster this broker is a node of, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get()
    }

    /// This broker with these users, rules and quotas.
    pub fn with_security(mut self, security: Arc<crate::security::Security>) -> Broker {
        self.security = security;
        self
    }

    /// Users, rules, sessions and quotas.
    pub fn security(&self) -> &Arc<crate::security::Security> {
        &self.security
    }

    /// The broker's counters.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// [`tokio::task::spawn_blocking`] inside the caller's span, so what the work logs carries
/// the connection (and request) it was done for.
pub fn spawn_blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> tokio::task::JoinHandle<R> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}

/// [`tokio::spawn`] of `fut` inside the caller's span (a connection's request tasks).
pub fn spawn_in_span<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::Instrument;
    tokio::spawn(fut.in_current_span())
}

/// Runs blocking broker work on the blocking pool (in the caller's span); a panic is an
/// `Internal` error.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(BrokerError::new(
            ErrorKind::Internal,
            format!("store task failed: {e}"),
        )),
    }
}
