//! [`NetError`]: why a call to a peer failed.
//!
//! The variants split into "the peer cannot be reached now" ([`NetError::is_unreachable`]:
//! no address, connection refused, reconnect backing off, group not hosted yet), which openraft answers by backing
//! off, and everything else (a connection that broke mid-call, bytes that do not decode),
//! after which it may retry at once on a fresh connection.

use std::io;
use std::time::Duration;

use super::frame::FrameError;
use crate::types::{GroupId, NodeId};

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No address is known for the node.
    #[error("no address known for node {0}")]
    UnknownPeer(NodeId),
    /// Connecting to the node failed.
    #[error("cannot connect to node {peer} at {addr}: {source}")]
    Connect {
        /// The node.
        peer: NodeId,
        /// The address tried.
        addr: String,
        /// What connecting answered.
        #[source]
        source: io::Error,
    },
    /// The last connection attempt failed and the next one is not due yet.
    #[error("node {peer} unreachable; next connection attempt in {retry_in:?}")]
    Backoff {
        /// The node.
        peer: NodeId,
        /// Time until the next attempt.
        retry_in: Duration,
    },
    /// The peer does not host the Raft group (yet).
    #[error("node {peer} does not host group {group}")]
    UnknownGroup {
        /// The node.
        peer: NodeId,
        /// The group.
        group: GroupId,
    },
    /// The connection closed before the reply arrived.
    #[error("connection to node {0} closed")]
    ConnectionClosed(NodeId),
    /// No reply within the call's timeout.
    #[error("no reply from node {peer} within {after:?}")]
    Timeout {
        /// The node.
        peer: NodeId,
        /// The timeout.
        after: Duration,
    },
    /// A frame failed its checks, or the connection failed while carrying it.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(#[source] postcard::Error),
    /// A frame's payload is not a message.
    #[error("cannot decode message: {0}")]
    Decode(#[source] postcard::Error),
    /// A frame's payload has bytes after its message.
    #[error("{0} bytes after the message in a frame payload")]
    TrailingBytes(usize),
    /// A frame of the wrong kind for the direction it travelled in.
    #[error("unexpected {0:?} frame")]
    UnexpectedFrame(super::frame::Kind),
    /// The other side of a connection is not the node meant, or not of this cluster.
    #[error("refused connection with node {peer}: {source}")]
    Greeting {
        /// The node meant.
        peer: NodeId,
        /// What the greetings showed.
        #[source]
        source: super::greeting::GreetingError,
    },
    /// A caller with a TLS certificate that does not name the host of the node it greeted
    /// as (the host of that node's address): another node, or a certificate of the CA that
    /// is not a node's.
    #[error(
        "refused connection greeting as node {peer}: its certificate does not name {addr} \
         (the host of node {peer}'s cluster address): {reason}"
    )]
    PeerCertificate {
        /// The node the caller greeted as.
        peer: NodeId,
        /// That node's cluster address.
        addr: String,
        /// What the check found.
        reason: String,
    },
    /// A request naming another sender than the node the connection greeted as.
    #[error("a {request} request on node {peer}'s connection speaks for another node")]
    NotItsOwn {
        /// The node the connection greeted as.
        peer: NodeId,
        /// The request's name.
        request: &'static str,
    },
    /// The peer answered a request with a reply of another RPC.
    #[error("peer answered a {request} request with a {reply} reply")]
    MismatchedReply {
        /// The request's name.
        request: &'static str,
        /// The reply's name.
        reply: &'static str,
    },
}

impl NetError {
    /// The same failure again, for each of several calls it failed together (heartbeats sent
    /// in one message): of the same kind where that decides what the caller does (unreachable,
    /// timed out), a closed connection otherwise.
    pub fn again(&self) -> NetError {
        match self {
            NetError::UnknownPeer(p) => NetError::UnknownPeer(*p),
            NetError::Connect { peer, addr, source } => NetError::Connect {
                peer: *peer,
                addr: addr.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            NetError::Backoff { peer, retry_in } => NetError::Backoff {
                peer: *peer,
                retry_in: *retry_in,
            },
            NetError::UnknownGroup { peer, group } => NetError::UnknownGroup {
                peer: *peer,
                group: group.clone(),
            },
            NetError::Timeout { peer, after } => NetError::Timeout {
                peer: *peer,
                after: *after,
            },
            NetError::Greeting { peer, .. } | NetError::ConnectionClosed(peer) => {
                NetError::ConnectionClosed(*peer)
            }
            other => NetError::MismatchedReply {
                request: "heartbeats",
                reply: match other {
                    NetError::Frame(_) => "a bad frame",
                    NetError::Encode(_) | NetError::Decode(_) | NetError::TrailingBytes(_) => {
                        "a message that did not decode"
                    }
                    _ => "an unexpected frame",
                },
            },
        }
    }

    /// Whether the peer cannot be reached at the moment, or does not host the group yet
    /// (rather than a call failing on a connection that was up): callers should back off
    /// before the next attempt.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            NetError::UnknownPeer(_)
                | NetError::Connect { .. }
                | NetError::Backoff { .. }
                | NetError::UnknownGroup { .. }
                | NetError::Greeting { .. }
        )
    }
}
