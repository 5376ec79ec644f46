//! The arguments and figures of broker operations, in plain Rust: what the broker core takes
//! and returns (it re-exports them as `sluice::broker::types`), what every frontend decodes
//! requests into and encodes answers from. The native protocol re-exports them as
//! `sluice_client::protocol::*`, and the client as `sluice_client::*`.

/// What a publish appends to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A topic.
    Topic(String),
    /// A queue.
    Queue(String),
    /// A topic if one has this name, else a queue.
    Any(String),
}

impl Target {
    /// The name.
    pub fn name(&self) -> &str {
        match self {
            Target::Topic(n) | Target::Queue(n) | Target::Any(n) => n,
        }
    }
}

/// Where a subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Named: the committed offset (new subscribers start at the end). Anonymous: the end.
    Default,
    /// The log start.
    Earliest,
    /// The visible end.
    Latest,
    /// An offset.
    Offset(u64),
    /// The first message at or after a time (ms since the epoch).
    Timestamp(i64),
}

/// What a consumer consumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A queue.
    Queue(String),
    /// A consumer group over a topic.
    Group {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
    },
}

/// Optional log settings of a new topic or queue (absent: the server's defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// Segment size.
    pub segment_bytes_max: Option<u64>,
    /// Retention by size.
    pub retention_bytes: Option<u64>,
    /// Retention by age.
    pub retention_ms: Option<u64>,
    /// In a cluster: how many nodes hold a replica of each partition (the server's default,
    /// 3 or the cluster's size when smaller, when absent). A new topic's only; ignored by a
    /// single server.
    pub replicas: Option<u32>,
}

/// Settings of a new queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueSettings {
    /// Log settings.
    pub log: LogSettings,
    /// Ack timeout.
    pub ack_timeout_ms: Option<u64>,
    /// Deliveries before dead-lettering (the server refuses a value above `u32::MAX`).
    pub max_deliveries: Option<u64>,
    /// Dead-letter queue name (`<queue>.dlq` when absent).
    pub dead_letter: Option<String>,
}

/// Which partition of a topic a publish appends to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Route {
    /// The broker chooses: the next partition in turn (round robin per batch). A queue has one.
    #[default]
    Any,
    /// This partition. With `expected_partitions` nonzero, the publish is refused with
    /// [`ErrorKind::PartitionsChanged`](super::ErrorKind) unless the topic has exactly that many
    /// partitions (a client that chose the partition from a key's hash learns that its count is
    /// stale and nothing is appended).
    Partition {
        /// The partition.
        partition: u32,
        /// The partition count the choice was made with (0: not checked).
        expected_partitions: u32,
    },
}

/// Where a list-offsets lookup looks, per partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first offset held.
    Earliest,
    /// One past the last visible offset.
    Latest,
    /// The first offset whose message is at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// A named subscriber in a `TopicInfo`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubscriberStat {
    /// Name.
    pub name: String,
    /// Next offset it reads.
    pub committed: u64,
    /// Messages behind the end.
    pub lag: u64,
}

/// Figures of a topic: its id and each partition's figures.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Its persistent id, as a UUID string (`xxxxxxxx-xxxx-4xxx-...`).
    pub id: String,
    /// Each partition, in order.
    pub partitions: Vec<PartitionInfo>,
}

/// Figures of one partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionInfo {
    /// The partition.
    pub partition: u32,
    /// First offset held.
    pub start_offset: u64,
    /// One past the last visible offset.
    pub end_offset: u64,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Segments.
    pub segments: u32,
    /// Named subscribers with a committed offset on this partition.
    pub subscribers: Vec<SubscriberStat>,
}

/// Figures of a queue.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueInfo {
    /// Name.
    pub name: String,
    /// First offset held.
    pub start_offset: u64,
    /// One past the last visible offset.
    pub end_offset: u64,
    /// Every offset below is acked.
    pub ack_floor: u64,
    /// Next never-delivered offset.
    pub cursor: u64,
    /// Unacked messages.
    pub depth: u64,
    /// Delivered, not acked.
    pub in_flight: u64,
    /// Dead-lettered since creation.
    pub dead_lettered: u64,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Ack timeout.
    pub ack_timeout_ms: u64,
    /// Deliveries before dead-lettering.
    pub max_deliveries: u32,
    /// Dead-letter queue.
    pub dead_letter: String,
}
