//! Heartbeats shared between the Raft groups of a node.
//!
//! Every group's leader sends each follower an empty append-entries request every heartbeat
//! interval. A node leading many groups would send as many messages to each peer. Instead, the
//! node's one ticker has every group it leads beat at once and opens a heartbeat window of
//! [`HEARTBEAT_LINGER`]; the empty requests made in it wait for the window's end and go to
//! each peer together, in one [`Request::Heartbeats`] (at most
//! [`HEARTBEATS_PER_MESSAGE_MAX`]), which the peer answers in one [`Reply::Heartbeats`], in
//! order. Each group's request and answer are still its own: openraft sees a call and its reply
//! as before, a little later. Empty requests outside the window (a commit told to followers,
//! a probe of where a follower's log matches), those of a group that sent the peer entries in
//! the last second (`raft_network::BUSY_FOR`) and requests carrying entries never wait: a
//! group's replication to a follower waits for each answer before its next request, so a
//! wait there would hold back its confirms. Idle groups, the many, share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openraft::raft::AppendEntriesRequest;
use tokio::sync::oneshot;

use super::client::Peers;
use super::message::{Reply, Request};
use super::NetError;
use crate::types::{GroupId, NodeId, TypeConfig};

/// How long a heartbeat window stays open, and the longest a heartbeat made in it waits for
/// the others to the same peer.
pub const HEARTBEAT_LINGER: Duration = Duration::from_millis(2);

/// Most heartbeats one message carries; more go in further messages.
pub const HEARTBEATS_PER_MESSAGE_MAX: usize = 4096;

/// One group's empty append-entries request, waiting to be sent.
struct Beat {
    group: GroupId,
    rpc: AppendEntriesRequest<TypeConfig>,
    waiter: oneshot::Sender<Result<Reply, NetError>>,
}

/// The heartbeats waiting for each peer, and how many went in how many messages.
#[derive(Default)]
pub(crate) struct Heartbeats {
    /// Until when empty requests are heartbeats that wait for each other.
    window: Mutex<Option<tokio::time::Instant>>,
    pending: Mutex<HashMap<NodeId, Vec<Beat>>>,
    beats: AtomicU64,
    messages: AtomicU64,
}

/// How many heartbeats a node sent, in how many messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatCounts {
    /// Empty append-entries requests sent.
    pub beats: u64,
    /// Messages they went in.
    pub messages: u64,
}

impl Peers {
    /// Opens a heartbeat window of [`HEARTBEAT_LINGER`]: the node's groups are about to beat.
    pub fn open_heartbeat_window(&self) {
        self.open_heartbeat_window_for(HEARTBEAT_LINGER);
    }

    /// Opens a heartbeat window of `length`; the heartbeats made in it go at its end.
    pub fn open_heartbeat_window_for(&self, length: Duration) {
        let until = tokio::time::Instant::now() + length;
        *self
            .beats()
            .window
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(until);
    }

    /// When the open heartbeat window ends (now when none is open).
    fn window_end(&self) -> tokio::time::Instant {
        let window = *self
            .beats()
            .window
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        window.unwrap_or_else(tokio::time::Instant::now)
    }

    /// True while a heartbeat window is open: an empty append-entries request made now is a
    /// heartbeat that waits for the others.
    pub fn in_heartbeat_window(&self) -> bool {
        let window = *self
            .beats()
            .window
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        window.is_some_and(|until| tokio::time::Instant::now() < until)
    }

    /// Sends group `group`'s empty append-entries request `rpc` to node `target` with the
    /// others waiting for it (see the module's notes); its reply, within `timeout`.
    pub async fn heartbeat(
        self: &Arc<Self>,
        target: NodeId,
        group: GroupId,
        rpc: AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> Result<Reply, NetError> {
        let (waiter, answer) = oneshot::channel();
        let first = {
            let mut pending = self
                .beats()
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let beats = pending.entry(target).or_default();
            beats.push(Beat { group, rpc, waiter });
            beats.len() == 1
        };
        if first {
            let peers = Arc::clone(self);
            let at = self.window_end();
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                peers.send_heartbeats(target, timeout).await;
            });
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(NetError::ConnectionClosed(target)),
            Err(_) => Err(NetError::Timeout {
                peer: target,
                after: timeout,
            }),
        }
    }

    /// How many heartbeats this node sent, in how many messages.
    pub fn heartbeat_counts(&self) -> HeartbeatCounts {
        HeartbeatCounts {
            beats: self.beats().beats.load(Ordering::Relaxed),
            messages: self.beats().messages.load(Ordering::Relaxed),
        }
    }

    /// Sends the heartbeats waiting for `target`, [`HEARTBEATS_PER_MESSAGE_MAX`] a message,
    /// and hands each its answer.
    async fn send_heartbeats(&self, target: NodeId, timeout: Duration) {
        let mut beats = {
            let mut pending = self
                .beats()
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            pending.remove(&target).unwrap_or_default()
        };
        while !beats.is_empty() {
            let rest = beats.split_off(beats.len().min(HEARTBEATS_PER_MESSAGE_MAX));
            self.send_message(target, std::mem::replace(&mut beats, rest), timeout)
                .await;
        }
    }

    async fn send_message(&self, target: NodeId, beats: Vec<Beat>, timeout: Duration) {
        let (requests, waiters): (Vec<_>, Vec<_>) = beats
            .into_iter()
            .map(|b| ((b.group, b.rpc), b.waiter))
            .unzip();
        let n = requests.len();
        self.beats().beats.fetch_add(n as u64, Ordering::Relaxed);
        self.beats().messages.fetch_add(1, Ordering::Relaxed);
        let req = Request::Heartbeats { beats: requests };
        match self.call(target, req, timeout).await {
            Ok(Reply::Heartbeats(replies)) if replies.len() == n => {
                for (w, r) in waiters.into_iter().zip(replies) {
                    let _ = w.send(Ok(r));
                }
            }
            Ok(other) => {
                let reply = other.name();
                for w in waiters {
                    let _ = w.send(Err(NetError::MismatchedReply {
                        request: "heartbeats",
                        reply,
                    }));
                }
            }
            Err(e) => {
                for w in waiters {
                    let _ = w.send(Err(e.again()));
                }
            }
        }
    }
}
