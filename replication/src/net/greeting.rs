//! The greeting: the first frame each side of a peer connection sends, so that a node only
//! ever exchanges Raft messages with the node it means to, of its own cluster.
//!
//! Without it, a node that reaches an address now held by another process (a peer that moved,
//! a node of another cluster on the same machine that took a freed port) would hand that
//! process its Raft messages. A group of the same name there, with the same node ids, would
//! take them as its own: two clusters' logs mixed, or one node seeing a leader of its own term
//! that is not itself.
//!
//! The caller sends a greeting frame (kind 3, request id 0) right after connecting; the
//! receiver answers with its own greeting, then closes the connection unless the caller's
//! cluster is its own and the caller addressed it. The caller checks the answer likewise and
//! sends no request before it has. The payload is 32 bytes, little-endian:
//!
//! ```text
//!  0                                  16           24           32
//!  +----------------------------------+------------+------------+
//!  | cluster id (16 bytes)            | from u64   | to u64     |
//!  +----------------------------------+------------+------------+
//! ```
//!
//! `cluster` is the cluster's id, `from` the sending node's id, `to` the node it means to
//! reach (in the answer: the caller's id, as the caller named itself).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::frame::{self, Kind};
use super::NetError;
use crate::types::NodeId;

/// Longest wait for the other side's greeting.
pub const GREETING_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of a greeting's payload.
pub const GREETING_BYTES: usize = 32;

/// A cluster's id: the same on every node of one cluster, different between clusters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterId(pub [u8; 16]);

impl std::fmt::Display for ClusterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Who a node is: its cluster and its own id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster it belongs to.
    pub cluster: ClusterId,
    /// Its node id.
    pub node: NodeId,
}

/// One side's greeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Greeting {
    /// The sender's cluster.
    pub cluster: ClusterId,
    /// The sender's node id.
    pub from: NodeId,
    /// The node the sender means to reach.
    pub to: NodeId,
}

/// Why a greeting does not let a connection go on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GreetingError {
    /// The payload is not 32 bytes.
    #[error("greeting of {0} bytes (expected {GREETING_BYTES})")]
    BadLength(usize),
    /// The other side belongs to another cluster.
    #[error(
        "node {from} belongs to cluster {theirs}, not to this node's cluster {ours} (nodes of \
         one cluster must be started with the same --cluster list)"
    )]
    OtherCluster {
        /// The other side's node id.
        from: NodeId,
        /// The other side's cluster.
        theirs: ClusterId,
        /// This node's cluster.
        ours: ClusterId,
    },
    /// The other side is not the node meant, or did not mean this node.
    #[error("expected node {expected}, but node {found} answered")]
    WrongNode {
        /// The node meant.
        expected: NodeId,
        /// The node that is there (or that the caller meant).
        found: NodeId,
    },
}

impl Greeting {
    /// The payload bytes.
    pub fn encode(&self) -> [u8; GREETING_BYTES] {
        let mut b = [0u8; GREETING_BYTES];
        b[..16].copy_from_slice(&self.cluster.0);
        b[16..24].copy_from_slice(&self.from.to_le_bytes());
        b[24..].copy_from_slice(&self.to.to_le_bytes());
        b
    }

    /// Decodes a payload.
    pub fn decode(payload: &[u8]) -> Result<Greeting, GreetingError> {
        let b: &[u8; GREETING_BYTES] = payload
            .try_into()
            .map_err(|_| GreetingError::BadLength(payload.len()))?;
        let u64_at = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(x)
        };
        let mut cluster = [0u8; 16];
        cluster.copy_from_slice(&b[..16]);
        Ok(Greeting {
            cluster: ClusterId(cluster),
            from: u64_at(16),
            to: u64_at(24),
        })
    }

    /// Checks a greeting received by `me` from a node that should be `peer` (`None`: any node,
    /// as a receiver accepts every node of its cluster that addressed it).
    pub fn check(&self, me: Identity, peer: Option<NodeId>) -> Result<(), GreetingError> {
        if self.cluster != me.cluster {
            return Err(GreetingError::OtherCluster {
                from: self.from,
                theirs: self.cluster,
                ours: me.cluster,
            });
        }
        if let Some(expected) = peer.filter(|p| *p != self.from) {
            return Err(GreetingError::WrongNode {
                expected,
                found: self.from,
            });
        }
        if self.to != me.node {
            return Err(GreetingError::WrongNode {
                expected: self.to,
                found: me.node,
            });
        }
        Ok(())
    }
}

/// Writes a greeting frame.
pub async fn send<W: AsyncWrite + Unpin>(w: &mut W, greeting: &Greeting) -> Result<(), NetError> {
    let bytes = frame::encode(Kind::Greeting, 0, &greeting.encode())?;
    w.write_all(&bytes).await.map_err(frame::FrameError::Io)?;
    w.flush().await.map_err(frame::FrameError::Io)?;
    Ok(())
}

/// Reads the other side's greeting, at most [`GREETING_TIMEOUT`].
pub async fn receive<R: AsyncRead + Unpin>(r: &mut R, peer: NodeId) -> Result<Greeting, NetError> {
    let frame = tokio::time::timeout(GREETING_TIMEOUT, frame::read_frame(r))
        .await
        .map_err(|_| NetError::Timeout {
            peer,
            after: GREETING_TIMEOUT,
        })??
        .ok_or(NetError::ConnectionClosed(peer))?;
    if frame.kind != Kind::Greeting {
        return Err(NetError::UnexpectedFrame(frame.kind));
    }
    Greeting::decode(&frame.payload).map_err(|e| NetError::Greeting { peer, source: e })
}
