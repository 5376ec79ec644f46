//! Replicated sluice logs: each topic partition and queue of a cluster is a Raft group whose
//! Raft log is its message log (docs/replication.md).
//!
//! # Layout
//! - `types`: the Raft type configuration: node ids, group ids, commands and what applying one
//!   answers.
//! - `store/`: the storage of one replicated log: openraft's log store and state machine on
//!   the message log, and the small state files beside it.
//! - `group`: one replicated log ([`ReplicatedLog`]) and the [`Consensus`] trait through which
//!   the rest of sluice uses it, so the consensus engine's API stays in this crate.
//! - `node`: one node of a cluster ([`ClusterNode`]): its groups, its peers, its listener.
//! - `net/`: the transport between nodes: one TCP connection per peer shared by every Raft group
//!   of the node, framed and checksummed, with named limits.
//! - `error`: [`Error`].

pub mod error;
pub mod group;
pub mod net;
pub mod node;
pub mod store;
pub mod types;

pub use error::{Error, Result};
pub use group::{
    BoxFuture, Consensus, GroupStatus, GroupStorage, LogSource, Pending, ReplicatedLog, Timing,
};
pub use net::{serve, GroupNetwork, NetError, NetworkFactory, Peers, RaftHandler, Reply, Request};
pub use node::ClusterNode;
pub use store::ApplyHook;
pub use types::{Applied, Command, GroupId, Node, NodeId, TypeConfig};
