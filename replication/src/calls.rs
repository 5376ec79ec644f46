//! Calls between nodes on behalf of the application above the replicated logs: a node asks
//! another to do something only that one can (the broker's coordinator moving a share group's
//! start offset on a partition another node leads, reading a group's state there).
//!
//! The payload is the application's own encoding; this crate carries it in a
//! [`Request::Call`](crate::net::Request::Call) and hands it to the [`CallHandler`] the
//! receiving node was given ([`ClusterNode::serve_calls`]). A call to the node itself goes to
//! its handler directly. A node with no handler refuses every call.

use std::sync::{OnceLock, Weak};
use std::time::Duration;

use crate::group::BoxFuture;
use crate::net::{Reply, Request};
use crate::node::ClusterNode;
use crate::types::NodeId;

/// Largest payload of a call or of its answer.
pub const CALL_PAYLOAD_BYTES_MAX: usize = 64 * 1024;

/// What a node does with the calls its peers make of it.
pub trait CallHandler: Send + Sync {
    /// Answers one call from node `from`: the answer's payload, or why it was refused.
    fn call(&self, from: NodeId, payload: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, String>>;
}

/// Why a call got no answer from the application on the other node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Never delivered: the node is unknown or cannot be reached. Nothing was done there.
    #[error("node {node} cannot be reached: {why}")]
    Unreachable {
        /// The node called.
        node: NodeId,
        /// Why.
        why: String,
    },
    /// The node's handler refused it (or the node serves no calls).
    #[error("node {node} refused the call: {why}")]
    Refused {
        /// The node called.
        node: NodeId,
        /// Its reason.
        why: String,
    },
    /// Sent, but no answer came back in time (or it was not an answer): the call may or may
    /// not have been done there.
    #[error("node {node} did not answer the call: {why}")]
    NoAnswer {
        /// The node called.
        node: NodeId,
        /// Why.
        why: String,
    },
}

/// The handler a node serves calls with, set once.
#[derive(Default)]
pub(crate) struct Calls {
    handler: OnceLock<Weak<dyn CallHandler>>,
}

impl Calls {
    /// The payload an oversized one is refused with, named.
    fn check(payload: &[u8], what: &str) -> Result<(), String> {
        match payload.len() {
            n if n > CALL_PAYLOAD_BYTES_MAX => Err(format!(
                "a call's {what} of {n} bytes is over {CALL_PAYLOAD_BYTES_MAX}"
            )),
            _ => Ok(()),
        }
    }
}

impl ClusterNode {
    /// Serves the calls peers make of this node with `handler` (held weakly: the handler
    /// usually holds the node). False when one was set already.
    pub fn serve_calls(&self, handler: Weak<dyn CallHandler>) -> bool {
        self.calls.handler.set(handler).is_ok()
    }

    /// Calls node `to` (this node too) with `payload`, waiting `timeout` at most.
    pub async fn call(
        &self,
        to: NodeId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        if let Err(why) = Calls::check(&payload, "payload") {
            return Err(CallError::Refused { node: to, why });
        }
        if to == self.id() {
            let answer = tokio::time::timeout(timeout, self.called(to, payload)).await;
            return match answer {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(why)) => Err(CallError::Refused { node: to, why }),
                Err(_) => Err(CallError::NoAnswer {
                    node: to,
                    why: format!("no answer in {timeout:?}"),
                }),
            };
        }
        let req = Request::Call {
            from: self.id(),
            payload,
        };
        match self.peers().call(to, req, timeout).await {
            Ok(Reply::Called(Ok(answer))) => Ok(answer),
            Ok(Reply::Called(Err(why))) => Err(CallError::Refused { node: to, why }),
            Ok(other) => Err(CallError::NoAnswer {
                node: to,
                why: format!("odd reply {}", other.name()),
            }),
            Err(e) if e.is_unreachable() => Err(CallError::Unreachable {
                node: to,
                why: e.to_string(),
            }),
            Err(e) => Err(CallError::NoAnswer {
                node: to,
                why: e.to_string(),
            }),
        }
    }

    /// A call from node `from`, handed to this node's handler.
    pub(crate) async fn called(&self, from: NodeId, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        Calls::check(&payload, "payload")?;
        let handler = self.calls.handler.get().and_then(Weak::upgrade);
        let Some(handler) = handler else {
            return Err(format!("node {} serves no calls", self.id()));
        };
        let answer = handler.call(from, payload).await?;
        Calls::check(&answer, "answer")?;
        Ok(answer)
    }
}
