//! What the broker counts while it serves, for `GET /metrics` (`docs/http.md`).
//!
//! Hot-path counters are plain atomics in fixed arrays ([`Metrics`]): counting a request, a
//! connection or bytes is one relaxed `fetch_add`, with no lock and no map lookup. Figures of
//! topics, queues, syncs, the disk and the process are read when scraped (`collect`), from the
//! open topics and queues only: a scrape never opens a closed one.
//!
//! # Layout
//! - `mod.rs`: [`Metrics`], [`Protocol`], the names of native request kinds and error codes.
//! - `collect`: the scrape: the Prometheus text exposition of the counters and of the store.
//! - `cluster`: the cluster's figures of a scrape, on a node of a cluster.
//! - `connections`: the registry of open connections (client names, counts, subscriptions).

mod cluster;
mod collect;
mod connections;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) use collect::disk_space;
pub use collect::render;
pub use connections::{
    Connection, ConnectionGuard, ConnectionView, Connections, Subscribed, SubscriptionKind,
    SubscriptionView, SUBSCRIPTIONS_LISTED_MAX,
};

/// A listener's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// sluice's own protocol.
    Native = 0,
    /// The Kafka wire protocol.
    Kafka = 1,
    /// HTTP (metrics, admin API, console).
    Http = 2,
}

impl Protocol {
    /// Every protocol, in index order.
    pub const ALL: [Protocol; 3] = [Protocol::Native, Protocol::Kafka, Protocol::Http];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Native => "native",
            Protocol::Kafka => "kafka",
            Protocol::Http => "http",
        }
    }
}

/// Request kinds counted per protocol: a native frame kind (below 0x80) or a Kafka API key.
pub const REQUEST_KINDS_MAX: usize = 128;
/// Error codes counted per protocol: a native error code or a Kafka error code.
pub const ERROR_CODES_MAX: usize = 128;
/// The Kafka "error code" counted for a frame refused with the connection closed (malformed, too
/// large, idle or slow): Kafka's code 0 means no error, so it never names a real one.
pub const KAFKA_FATAL: usize = 0;

type PerProtocol<T> = [T; 3];

/// The broker's counters (one per broker; see the module documentation).
#[derive(Debug)]
pub struct Metrics {
    connections_open: PerProtocol<AtomicI64>,
    connections_accepted: PerProtocol<AtomicU64>,
    connections_refused: PerProtocol<AtomicU64>,
    tls_failures: PerProtocol<AtomicU64>,
    auth_failures: PerProtocol<AtomicU64>,
    denials: PerProtocol<AtomicU64>,
    /// Microseconds clients were delayed by quotas: produce, fetch.
    throttled_us: [AtomicU64; 2],
    bytes_received: PerProtocol<AtomicU64>,
    bytes_sent: PerProtocol<AtomicU64>,
    requests: PerProtocol<[AtomicU64; REQUEST_KINDS_MAX]>,
    errors: PerProtocol<[AtomicU64; ERROR_CODES_MAX]>,
    connections: Connections,
    started_ms: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        fn each<T>(f: impl Fn() -> T) -> PerProtocol<T> {
            std::array::from_fn(|_| f())
        }
        Metrics {
            connections_open: each(|| AtomicI64::new(0)),
            connections_accepted: each(|| AtomicU64::new(0)),
            connections_refused: each(|| AtomicU64::new(0)),
            tls_failures: each(|| AtomicU64::new(0)),
            auth_failures: each(|| AtomicU64::new(0)),
            denials: each(|| AtomicU64::new(0)),
            throttled_us: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_received: each(|| AtomicU64::new(0)),
            bytes_sent: each(|| AtomicU64::new(0)),
            requests: each(|| std::array::from_fn(|_| AtomicU64::new(0))),
            errors: each(|| std::array::from_fn(|_| AtomicU64::new(0))),
            connections: Connections::default(),
            started_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
}

/// Counts a connection as open until dropped.
#[derive(Debug)]
pub struct ConnectionGauge {
    metrics: Arc<Metrics>,
    protocol: Protocol,
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.metrics.connections_open[self.protocol as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// When the broker started (milliseconds since the epoch).
    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// Open connections of `protocol`.
    pub fn connections_open(&self, protocol: Protocol) -> i64 {
        self.connections_open[protocol as usize].load(Ordering::Relaxed)
    }

    /// Bytes read from clients of `protocol`, and written to them.
    pub fn bytes(&self, protocol: Protocol) -> (u64, u64) {
        let p = protocol as usize;
        (
            self.bytes_received[p].load(Ordering::Relaxed),
            self.bytes_sent[p].load(Ordering::Relaxed),
        )
    }

    /// Counts an accepted connection, open until the returned gauge is dropped.
    pub fn connection(self: &Arc<Self>, protocol: Protocol) -> ConnectionGauge {
        let p = protocol as usize;
        self.connections_accepted[p].fetch_add(1, Ordering::Relaxed);
        self.connections_open[p].fetch_add(1, Ordering::Relaxed);
        ConnectionGauge {
            metrics: self.clone(),
            protocol,
        }
    }

    /// Counts a connection refused at the connection limit.
    pub fn connection_refused(&self, protocol: Protocol) {
        self.connections_refused[protocol as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed because its TLS handshake failed.
    pub fn tls_failed(&self, protocol: Protocol) {
        self.tls_failures[protocol as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed authentication (wrong password, unknown or expired user, a quota of
    /// connections).
    pub fn auth_failed(&self, protocol: Protocol) {
        self.auth_failures[protocol as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request refused by access control.
    pub fn denied(&self, protocol: Protocol) {
        self.denials[protocol as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts time a client was delayed by its quota.
    pub fn throttled(&self, direction: crate::security::Direction, delay: std::time::Duration) {
        let i = match direction {
            crate::security::Direction::Produce => 0,
            crate::security::Direction::Fetch => 1,
        };
        self.throttled_us[i].fetch_add(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts bytes read from clients.
    pub fn received(&self, protocol: Protocol, bytes: usize) {
        self.bytes_received[protocol as usize].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts bytes written to clients.
    pub fn sent(&self, protocol: Protocol, bytes: usize) {
        self.bytes_sent[protocol as usize].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts a request of `kind` (a native frame kind or a Kafka API key; others are counted
    /// under the last kind).
    pub fn request(&self, protocol: Protocol, kind: usize) {
        let k = kind.min(REQUEST_KINDS_MAX - 1);
        self.requests[protocol as usize][k].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error answered with `code` (native or Kafka error code).
    pub fn error(&self, protocol: Protocol, code: usize) {
        let c = code.min(ERROR_CODES_MAX - 1);
        self.errors[protocol as usize][c].fetch_add(1, Ordering::Relaxed);
    }
}

/// The name of a native request kind.
pub fn native_request_name(kind: u8) -> Option<&'static str> {
    use crate::protocol::kind as k;
    Some(match kind {
        k::HELLO => "hello",
        k::PING => "ping",
        k::PUBLISH => "publish",
        k::SUBSCRIBE => "subscribe",
        k::CREDIT => "credit",
        k::COMMIT => "commit",
        k::CANCEL => "cancel",
        k::CONSUME => "consume",
        k::ACK => "ack",
        k::NACK => "nack",
        k::CREATE_TOPIC => "create_topic",
        k::DELETE_TOPIC => "delete_topic",
        k::LIST_TOPICS => "list_topics",
        k::DESCRIBE_TOPIC => "describe_topic",
        k::ALTER_TOPIC => "alter_topic",
        k::TOPIC_META => "topic_meta",
        k::CREATE_QUEUE => "create_queue",
        k::DELETE_QUEUE => "delete_queue",
        k::LIST_QUEUES => "list_queues",
        k::DESCRIBE_QUEUE => "describe_queue",
        _ => return None,
    })
}
