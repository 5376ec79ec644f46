//! Replicated sluice logs.
//!
//! # Layout
//! - `types`: the Raft type configuration: node ids, group ids, commands and what applying one
//!   answers.
//! - `net/`: the transport between nodes: one TCP connection per peer shared by every Raft group
//!   of the node, framed and checksummed, with named limits.

pub mod net;
pub mod types;

pub use net::{serve, GroupNetwork, NetError, NetworkFactory, Peers, RaftHandler, Reply, Request};
pub use types::{Applied, Command, GroupId, Node, NodeId, TypeConfig};
pub mod error;
pub mod store;

pub use error::{Error, Result};
pub mod group;

pub use group::{Consensus, GroupStatus, ReplicatedLog, Timing};
