//! The Kafka wire protocol frontend: stock Kafka clients served over the broker core.
//!
//! # Layout
//! - [`group`]: the classic consumer group coordinator (JoinGroup, SyncGroup, Heartbeat,
//!   LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups), called by
//!   the listener's dispatch with decoded requests.

pub mod group;
