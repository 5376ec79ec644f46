//! The wire protocol: length-prefixed binary frames (specification: `docs/protocol.md`).
//!
//! Every integer is little-endian. A frame is
//!
//! ```text
//! // Format: { len u32 | kind u8 | request_id u32 | body [u8; len - 5] }
//! ```
//!
//! where `len` counts the bytes after itself. Strings are `{ len u16 | utf8 bytes }`, byte
//! strings `{ len u32 | bytes }`, optional values `{ present u8 (0|1) | value }`.
//!
//! Publish frames carry one batch in the storage batch layout ([`sluice_format`]), so
//! the server validates and appends it without re-encoding; `Deliver` frames carry stored
//! batches as read from the log.
//!
//! # Layout
//! - `frame`: framing (length prefix, kind, request id), reading frames under a length limit.
//! - `error`: [`ErrorCode`] (the codes of `ERROR` frames) and [`ProtocolError`] (undecodable bytes).
//! - `codec`: the little-endian writer and bounds-checked reader every body uses.
//! - `settings`: the arguments of requests and the figures of replies ([`Target`], [`Start`],
//!   [`Source`], [`LogSettings`], [`QueueSettings`], [`TopicInfo`], [`QueueInfo`]): the broker
//!   core's types, re-exported.
//! - `request`: [`Request`], client → server frames.
//! - `reply`: [`Reply`], server → client frames, and the figures they carry.
//! - `cluster`: the cluster status ([`ClusterStatus`]) of `CLUSTER_STATUS`.
//! - `message`: messages as delivered ([`QueueMessage`], [`Message`], [`decode_delivery`]).

mod cluster;
mod codec;
mod error;
mod frame;
mod message;
mod reply;
mod request;
mod security;
mod settings;
#[cfg(test)]
mod tests;

pub use cluster::{ClusterNodeInfo, ClusterStatus, FollowerState, GroupState, CLUSTER_LISTED_MAX};
pub use error::{ErrorCode, ProtocolError};
pub use frame::{
    check_len, parse_frame, read_frame, read_frame_rest, OutFrame, RawFrame,
    DEFAULT_FRAME_BYTES_MAX, FRAME_HEAD_LEN,
};
pub use message::{
    decode_delivery, Message, QueueMessage, MESSAGES_FRAME_OVERHEAD, MESSAGE_HEADERS_MAX,
};
pub use reply::Reply;
pub use request::Request;
pub use security::{SecurityReply, SecurityRequest, WireQuotas, WireRule, WireUser};
pub use settings::{
    LogSettings, OffsetSpec, PartitionInfo, QueueInfo, QueueSettings, Route, Source, Start,
    SubscriberStat, Target, TopicInfo,
};

/// Protocol version spoken by this crate.
/// Version 2 added partitions: publish routes, partitions in subscriptions, deliveries,
/// commits, acks and topic figures, and the `ALTER_TOPIC` and `TOPIC_META` requests.
pub const VERSION: u16 = 2;
/// Magic bytes at the start of a `Hello` body.
pub const MAGIC: [u8; 4] = *b"SLCE";

/// Frame kinds (the `kind` byte).
pub mod kind {
    /// Client → server: opens the session.
    pub const HELLO: u8 = 0x01;
    /// Client → server: keep-alive; answered by `PONG`.
    pub const PING: u8 = 0x02;
    /// Client → server: append one batch.
    pub const PUBLISH: u8 = 0x10;
    /// Client → server: open a subscription on a topic.
    pub const SUBSCRIBE: u8 = 0x11;
    /// Client → server: grant messages to a subscription or consumer (no reply).
    pub const CREDIT: u8 = 0x12;
    /// Client → server: store a named subscriber's offset.
    pub const COMMIT: u8 = 0x13;
    /// Client → server: close a subscription or consumer.
    pub const CANCEL: u8 = 0x14;
    /// Client → server: become a competing consumer of a queue or of a topic's group.
    pub const CONSUME: u8 = 0x20;
    /// Client → server: acknowledge deliveries.
    pub const ACK: u8 = 0x21;
    /// Client → server: return deliveries to the queue.
    pub const NACK: u8 = 0x22;
    /// Client → server: admin.
    pub const CREATE_TOPIC: u8 = 0x30;
    /// Client → server: admin.
    pub const DELETE_TOPIC: u8 = 0x31;
    /// Client → server: admin.
    pub const LIST_TOPICS: u8 = 0x32;
    /// Client → server: admin.
    pub const DESCRIBE_TOPIC: u8 = 0x33;
    /// Client → server: admin: add partitions to a topic.
    pub const ALTER_TOPIC: u8 = 0x34;
    /// Client → server: a topic's id and partition count.
    pub const TOPIC_META: u8 = 0x35;
    /// Client → server: admin.
    pub const CREATE_QUEUE: u8 = 0x40;
    /// Client → server: admin.
    pub const DELETE_QUEUE: u8 = 0x41;
    /// Client → server: admin.
    pub const LIST_QUEUES: u8 = 0x42;
    /// Client → server: admin.
    pub const DESCRIBE_QUEUE: u8 = 0x43;

    /// Client → server: starts authentication (a SASL mechanism and its first message).
    pub const AUTH: u8 = 0x03;
    /// Client → server: the next message of an authentication exchange.
    pub const AUTH_CONTINUE: u8 = 0x04;
    /// Admin: adds a user.
    pub const USER_ADD: u8 = 0x50;
    /// Admin: deletes a user.
    pub const USER_DELETE: u8 = 0x51;
    /// Admin: lists users.
    pub const USER_LIST: u8 = 0x52;
    /// Admin: sets a user's quotas.
    pub const USER_QUOTAS: u8 = 0x53;
    /// Admin: adds an access rule.
    pub const RULE_ADD: u8 = 0x54;
    /// Admin: removes an access rule.
    pub const RULE_REMOVE: u8 = 0x55;
    /// Admin: lists access rules.
    pub const RULE_LIST: u8 = 0x56;
    /// Admin: a cluster node's view of the cluster.
    pub const CLUSTER_STATUS: u8 = 0x60;
    /// Admin: adds a node to the cluster.
    pub const CLUSTER_ADD_NODE: u8 = 0x61;
    /// Admin: removes a node from the cluster.
    pub const CLUSTER_REMOVE_NODE: u8 = 0x62;
    /// Admin: changes the replication factor of a topic's partitions or a queue.
    pub const CLUSTER_SET_REPLICAS: u8 = 0x63;

    /// Server → client: handshake accepted.
    pub const HELLO_OK: u8 = 0x81;
    /// Server → client: request done, nothing to return.
    pub const OK: u8 = 0x82;
    /// Server → client: request (or connection) failed.
    pub const ERROR: u8 = 0x83;
    /// Server → client: answer to `PING`.
    pub const PONG: u8 = 0x84;
    /// Server → client: batch is durable; its offsets.
    pub const PUBLISHED: u8 = 0x85;
    /// Server → client: subscription or consumer open.
    pub const SUBSCRIBED: u8 = 0x86;
    /// Server → client: pushed topic messages (one stored batch).
    pub const DELIVER: u8 = 0x87;
    /// Server → client: pushed queue messages.
    pub const MESSAGES: u8 = 0x88;
    /// Server → client: a list of names.
    pub const NAMES: u8 = 0x89;
    /// Server → client: topic figures.
    pub const TOPIC_INFO: u8 = 0x8A;
    /// Server → client: queue figures.
    pub const QUEUE_INFO: u8 = 0x8B;
    /// Server → client: a topic's id and partition count.
    pub const TOPIC_METADATA: u8 = 0x8C;
    /// Server → client: a subscription is open; where it starts on each partition.
    pub const POSITIONS: u8 = 0x8D;
    /// Server → client: the next message of an authentication exchange.
    pub const AUTH_CHALLENGE: u8 = 0x8E;
    /// Server → client: authenticated.
    pub const AUTH_OK: u8 = 0x8F;
    /// Server → client: users.
    pub const USERS: u8 = 0x90;
    /// Server → client: access rules.
    pub const RULES: u8 = 0x91;
    /// Server → client: a cluster node's view of the cluster.
    pub const CLUSTER_STATE: u8 = 0x92;
}
