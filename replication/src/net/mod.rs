//! The transport between nodes: openraft's messages for every Raft group of a node over one
//! TCP connection per peer.
//!
//! - [`frame`]: the frame layout (magic, version, kind, request id, length, checksum) and its
//!   checks.
//! - [`greeting`]: the first frame of each side of a connection, naming the cluster and both
//!   nodes, so a node only talks to the node it means to, of its own cluster.
//! - [`message`]: [`Request`] and [`Reply`], one openraft RPC tagged with its group.
//! - [`server`]: [`serve`] accepts peer connections and hands requests to a [`RaftHandler`].
//! - [`client`]: [`Peers`], the node's connections to its peers, multiplexed by request id.
//! - [`heartbeats`]: the empty append-entries requests of every group to one peer, sent
//!   together.
//! - [`raft_network`]: [`NetworkFactory`] and [`GroupNetwork`], openraft's network for one
//!   group over [`Peers`].
//! - [`tls`]: [`PeerTls`], TLS between nodes, each side authenticated by the cluster's CA.
//! - [`error`]: [`NetError`], why a call failed.

pub mod client;
pub mod error;
pub mod frame;
pub mod greeting;
pub mod heartbeats;
pub mod message;
pub mod raft_network;
pub mod server;
pub mod tls;

#[cfg(test)]
mod tests;

pub use client::Peers;
pub use error::NetError;
pub use frame::{FrameError, FRAME_BYTES_MAX};
pub use greeting::{ClusterId, Identity};
pub use heartbeats::{HeartbeatCounts, HEARTBEATS_PER_MESSAGE_MAX, HEARTBEAT_LINGER};
pub use message::{ProposeError, Reply, Request};
pub use raft_network::{GroupNetwork, NetworkFactory};
pub use server::{serve, RaftHandler, INFLIGHT_PER_CONNECTION_MAX, PEER_CONNECTIONS_MAX};
pub use tls::PeerTls;
