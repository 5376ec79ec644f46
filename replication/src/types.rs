//! The Raft type configuration of sluice's replicated logs.
//!
//! Every Raft entry is exactly one batch of the message log: a [`Command::Batch`] is stored as
//! the batch it carries, and everything else (blank entries of a new leader, membership changes,
//! [`Command::Control`] records) is stored as a control batch that readers skip. See
//! docs/replication.md.

use std::fmt;
use std::io::Cursor;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A node of the cluster, as `--node-id` names it.
pub type NodeId = u64;

/// A node's cluster address (`host:port` of its cluster listener).
pub type Node = openraft::BasicNode;

/// How clients reach a node: the addresses it gives its peers, so that a node can name any
/// node's client address (a Kafka client's metadata, where to find a leader).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `host:port` of its native listener, as clients reach it.
    pub native: Option<String>,
    /// `host:port` of its Kafka listener, as clients reach it; `None` when it is off.
    pub kafka: Option<String>,
}

/// One replicated log: `meta` (the cluster metadata), `t/<topic>/<partition>` or `q/<queue>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupId(pub String);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a client asks a replicated log to append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A batch of messages in the on-disk layout (48-byte header and Kafka record batch body);
    /// stored as that batch.
    Batch(Bytes),
    /// A control record (queue acks, group offset commits, metadata changes): stored as a
    /// control batch whose one record's value is these bytes.
    Control(Bytes),
    /// Entries up to and including index `upto` are on every replica and need not be applied
    /// again: each replica whose [`ApplyHook`](crate::ApplyHook) makes its state of them
    /// durable drops them from its log (whole segments). Proposed by a group's leader only.
    Compact {
        /// The last entry that may go.
        upto: u64,
    },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Batch(b) => write!(f, "batch({} B)", b.len()),
            Command::Control(b) => write!(f, "control({} B)", b.len()),
            Command::Compact { upto } => write!(f, "compact(upto {upto})"),
        }
    }
}

/// What applying an entry answers: the offsets its batch was stored at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Offset of the entry's first record.
    pub base_offset: u64,
    /// Offset of its last record.
    pub last_offset: u64,
}

openraft::declare_raft_types!(
    /// The Raft types of a sluice replicated log.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);
