//! The cluster metadata: one replicated log, `meta`, of every node, whose control entries are
//! [`MetaCommand`]s. Applying one changes this node's store: a topic created through the
//! metadata is created on every node, with a replicated log for each of its partitions.
//!
//! The metadata state lives in the store (the topics themselves, and the committed offsets of
//! groups and named subscribers), so applying is idempotent and the `meta` group applies its
//! whole log again after a restart: commits are applied again in the order they were made, so
//! each ends at its last value.

use serde::{Deserialize, Serialize};

/// A change of the cluster metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Create a topic on every node.
    CreateTopic {
        /// Its name.
        name: String,
        /// Its partitions.
        partitions: u32,
        /// Segment size, when not the default.
        segment_bytes_max: Option<u64>,
    },
    /// Delete a topic on every node.
    DeleteTopic {
        /// Its name.
        name: String,
    },
    /// Committed offsets of a consumer group (or named subscriber) on one topic, stored on
    /// every node: `(partition, next offset, metadata)`.
    CommitOffsets {
        /// The group or subscriber name.
        group: String,
        /// The topic.
        topic: String,
        /// The commits.
        commits: Vec<(u32, u64, Vec<u8>)>,
    },
    /// Delete a group's committed offsets on every topic, on every node.
    DeleteGroupOffsets {
        /// The group.
        group: String,
    },
    /// Create a topic on every node under one topic id (what Kafka clients name it by).
    /// Supersedes [`MetaCommand::CreateTopic`], whose nodes each drew an id of their own; that
    /// one still decodes from older metadata logs.
    CreateTopicWithId {
        /// Its name.
        name: String,
        /// Its partitions.
        partitions: u32,
        /// Segment size, when not the default.
        segment_bytes_max: Option<u64>,
        /// Its id, drawn by the node it was created through.
        id: [u8; 16],
    },
    /// Create a queue, and its dead-letter queue when absent, on every node, each with a
    /// replicated log of its own.
    CreateQueue {
        /// Its name.
        name: String,
        /// Its settings.
        config: sluice_storage::QueueConfig,
    },
    /// Delete a queue on every node.
    DeleteQueue {
        /// Its name.
        name: String,
    },
    /// Create a topic on every node, with its retention limits, which its partitions' leaders
    /// enforce once every replica has what goes. Supersedes
    /// [`MetaCommand::CreateTopicWithId`] (still decoded from older metadata logs).
    CreateTopicWithSettings {
        /// Its name.
        name: String,
        /// Its partitions.
        partitions: u32,
        /// Its id, drawn by the node it was created through.
        id: [u8; 16],
        /// Segment size, when not the default.
        segment_bytes_max: Option<u64>,
        /// Segments older than this go.
        retention_ms: Option<u64>,
        /// Segments go while the partition is larger than this.
        retention_bytes: Option<u64>,
    },
    /// Change a topic's retention limits on every node.
    SetTopicRetention {
        /// The topic.
        name: String,
        /// Segments older than this go (`None`: no limit by age).
        retention_ms: Option<u64>,
        /// Segments go while the partition is larger than this (`None`: no limit by size).
        retention_bytes: Option<u64>,
    },
    /// The cluster's nodes from now on (a node added or removed): every group moves onto
    /// them. Applied only where the nodes are still at version `base` (the index of the last
    /// such change, 0 for the first nodes), so a change made from a stale view is dropped, and
    /// every node, whatever it knew of the first nodes, holds the same set afterwards.
    SetNodes {
        /// The version of the nodes the change was made from.
        base: u64,
        /// Every node and its cluster listener, `host:port`.
        nodes: std::collections::BTreeMap<u64, String>,
    },
    /// Create a topic on every node, its partitions' replicas placed on the given nodes
    /// (`cluster::placement`; the first of each the preferred leader). Supersedes
    /// [`MetaCommand::CreateTopicWithSettings`], whose partitions are on every node.
    CreateTopicPlaced {
        /// Its name.
        name: String,
        /// Its id, drawn by the node it was created through.
        id: [u8; 16],
        /// Segment size, when not the default.
        segment_bytes_max: Option<u64>,
        /// Segments older than this go.
        retention_ms: Option<u64>,
        /// Segments go while the partition is larger than this.
        retention_bytes: Option<u64>,
        /// Each partition's nodes, in partition order (their count is the partitions').
        replicas: Vec<Vec<u64>>,
    },
    /// Create a queue and its dead-letter queue (when absent) on every node, the queue's
    /// group placed on the given nodes, and its dead-letter queue's too when that one has no
    /// placement yet. Supersedes [`MetaCommand::CreateQueue`] (on every node).
    CreateQueuePlaced {
        /// Its name.
        name: String,
        /// Its settings.
        config: sluice_storage::QueueConfig,
        /// Its nodes, the preferred leader first.
        replicas: Vec<u64>,
    },
    /// Move groups' replicas: each `(group, from, to)` is taken only where the group is still
    /// placed on `from`, so a move made from a stale view is dropped on every node alike.
    SetReplicas {
        /// The moves.
        moves: Vec<super::placement::Move>,
    },
    /// Grow a topic from `from` partitions (as the proposing node saw it) by one for each
    /// placement of `replicas`; dropped on every node where the metadata's count is no longer
    /// `from` (`cluster::grow`).
    AddPartitions {
        /// The topic.
        name: String,
        /// Its id (a topic deleted and created again under the name is another).
        id: [u8; 16],
        /// Its partition count the change was made from.
        from: u32,
        /// Each new partition's nodes, in partition order.
        replicas: Vec<Vec<u64>>,
    },
    /// Set the replication factor of these groups' placements (`cluster::factor`); the
    /// metadata's leader then moves their replicas.
    SetFactor {
        /// The groups (`t/<topic>/<p>`, `q/<queue>`).
        groups: Vec<String>,
        /// Their replicas from now on.
        factor: u32,
    },
    /// Moves asked for by name (Kafka's AlterPartitionReassignments): each taken as a
    /// [`MetaCommand::SetReplicas`] move, and the group's factor becomes its new node count.
    Reassign {
        /// The moves.
        moves: Vec<super::placement::Move>,
    },
    /// Create dead-letter queue `name` of a consumer group (made by its first dead letter, as
    /// on one node) on every node, with settings like the group's, placed on the given nodes
    /// unless it has a placement already; nothing when it exists.
    CreateDeadLetterQueue {
        /// Its name.
        name: String,
        /// The group's settings (a dead-letter queue's are made from them).
        like: sluice_storage::QueueConfig,
        /// Its nodes, the preferred leader first.
        replicas: Vec<u64>,
    },
    /// Delete topic `name` of id `id` on every node; nothing where the topic of that name is
    /// another (created again since: the metadata applied again after a restart). Supersedes
    /// [`MetaCommand::DeleteTopic`] (still decoded from older metadata logs).
    DeleteTopicWithId {
        /// Its name.
        name: String,
        /// Its id.
        id: [u8; 16],
    },
}

impl MetaCommand {
    /// The postcard bytes of a control entry.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a metadata command encodes")
    }

    /// Decodes a control entry of `meta`.
    pub fn decode(bytes: &[u8]) -> Result<MetaCommand, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}
