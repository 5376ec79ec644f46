//! Moving a group's leadership to another voter, as Kafka's preferred leader election does:
//! after a node comes back, the groups it should lead are led elsewhere, and one node carries
//! the load of two. openraft 0.9 has no leader transfer; this builds one from its parts.
//!
//! The leader `L` hands group `G` to voter `T` ([`ClusterNode::transfer_leader`]):
//!
//! 1. `L` stops taking proposals for `G` (they fail with `NotLeader`, and clients retry) and
//!    stops its heartbeats of `G`.
//! 2. It waits until every entry of its log is applied and `T` has all of them
//!    ([`TRANSFER_QUIESCE_MAX`] at most, else it gives up and resumes).
//! 3. It tells every other voter of `G` ([`Request::LeadNext`]). Each holds its own election
//!    timer of `G` for a while ([`ReplicatedLog::hold_election`]), so that none but `T`
//!    stands. `T` waits out the lease the others keep for `L` (openraft refuses a vote until
//!    its election window has passed since the leader was last heard) and stands
//!    ([`ReplicatedLog::campaign`]); its log is as long as any, so the others vote for it.
//! 4. `L` learns of `T`'s higher term and steps down; it takes proposals again when it sees
//!    the new leader, or after [`TRANSFER_WAIT_MAX`] if `T` never won (then it still leads,
//!    or a normal election follows once the held timers run again).
//!
//! Raft's own rules keep this safe: `T` wins only with a majority's votes and a log holding
//! every committed entry. What it costs is availability: `G` takes no proposals for about one
//! election window (300-600 ms by default) plus an election's round trip.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::ServerState;

use crate::error::{Error, Result};
use crate::group::{Consensus, ReplicatedLog};
use crate::net::{Reply, Request};
use crate::node::ClusterNode;
use crate::types::{GroupId, NodeId};

/// Longest wait, after proposals stop, for the leader's entries to be applied and the new
/// leader to hold them all.
pub const TRANSFER_QUIESCE_MAX: Duration = Duration::from_millis(500);

/// Longest wait, after the voters were told, for the new leader to take over.
pub const TRANSFER_WAIT_MAX: Duration = Duration::from_secs(3);

/// Margin over the voters' election windows that the new leader waits before standing.
const QUIET_MARGIN: Duration = Duration::from_millis(100);

/// Longest wait for a voter's answer to [`Request::LeadNext`].
const LEAD_NEXT_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Times the new leader stands before it gives up (its first vote may come before a voter's
/// lease for the old leader ran out).
const CAMPAIGNS_MAX: u32 = 3;

/// A group's hand-over state on this node.
#[derive(Debug, Default)]
pub(crate) struct Handover {
    /// True while `yield_until` is set: the one thing a proposal reads (no lock, no clock)
    /// when no hand-over is under way.
    yielding: AtomicBool,
    /// While set and in the future, this node (the leader) takes no proposals and sends no
    /// heartbeats: it is handing the group over.
    yield_until: Mutex<Option<Instant>>,
    /// Until then this node's election timer of the group is held.
    pub(crate) hold_until: Mutex<Option<Instant>>,
}

impl ReplicatedLog {
    /// True while this node hands the group's leadership over.
    pub fn is_yielding(&self) -> bool {
        if !self.handover.yielding.load(Ordering::Acquire) {
            return false;
        }
        let until = *self.handover.yield_until.lock().expect("handover");
        until.is_some_and(|u| Instant::now() < u)
    }

    /// Fails with `NotLeader` while the group is being handed over.
    pub(crate) fn refuse_if_yielding(&self) -> Result<()> {
        match self.is_yielding() {
            true => Err(Error::NotLeader {
                group: self.group.0.clone(),
                leader: None,
                leader_addr: None,
            }),
            false => Ok(()),
        }
    }

    fn set_yield(&self, until: Option<Instant>) {
        let mut at = self.handover.yield_until.lock().expect("handover");
        *at = until;
        self.handover
            .yielding
            .store(until.is_some(), Ordering::Release);
    }

    /// Holds this node's election timer of the group for `hold` (or until a later hold ends).
    pub(crate) fn hold_election(&self, hold: Duration) {
        let until = Instant::now() + hold;
        {
            let mut held = self.handover.hold_until.lock().expect("handover");
            *held = Some(held.map_or(until, |h| h.max(until)));
        }
        self.raft.runtime_config().elect(false);
        let g = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            let mut held = g.handover.hold_until.lock().expect("handover");
            if held.is_some_and(|h| Instant::now() >= h) {
                *held = None;
                drop(held);
                g.apply_switches();
            }
        });
    }

    /// Waits until this node, still leading, has applied its whole log and `to` holds all of
    /// it; false when it stops leading or `wait` passes first.
    async fn quiesce(&self, to: NodeId, wait: Duration) -> bool {
        let mut rx = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let m = rx.borrow_and_update();
                if m.state != ServerState::Leader {
                    return false;
                }
                let last = m.last_log_index;
                let applied = m.last_applied.map(|l| l.index);
                let theirs = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&to).copied().flatten())
                    .map(|l| l.index);
                if applied == last && theirs == last {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return false;
            }
        }
    }

    /// Waits until this node no longer leads and knows the node that does, or `wait` passes;
    /// answers the leader it then knows.
    async fn wait_deposed(&self, wait: Duration) -> Option<NodeId> {
        let mut rx = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let m = rx.borrow_and_update();
                let other = m.current_leader.filter(|l| *l != self.node);
                if m.state != ServerState::Leader && other.is_some() {
                    return other;
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return self.raft.metrics().borrow().current_leader;
            }
        }
    }

    /// On the chosen voter: waits out the old leader's lease, then stands until it leads or
    /// another leader is known, [`CAMPAIGNS_MAX`] times at most.
    async fn take_over(&self, quiet: Duration) {
        let term_then = self.raft.metrics().borrow().current_term;
        for _ in 0..CAMPAIGNS_MAX {
            tokio::time::sleep(quiet).await;
            let (term, leader) = {
                let m = self.raft.metrics();
                let m = m.borrow();
                (m.current_term, m.current_leader)
            };
            let someone_won = term > term_then && leader.is_some();
            if someone_won || leader == Some(self.node) {
                return;
            }
            if let Err(e) = self.campaign().await {
                tracing::debug!(group = %self.group, "cannot stand for election: {e}");
                return;
            }
        }
    }
}

impl ClusterNode {
    /// Hands the leadership of `group`, which this node leads, to its voter `to` (see the
    /// module's description). Answers the leader once done: `to` when the hand-over worked,
    /// this node or another when it did not (nothing is lost either way; the group was only
    /// unavailable for a while).
    pub async fn transfer_leader(&self, group: &GroupId, to: NodeId) -> Result<Option<NodeId>> {
        let g = self
            .group(group)
            .ok_or_else(|| Error::Consensus(format!("no replica of {group} on this node")))?;
        let status = g.status();
        if !status.is_leader {
            return Err(Error::NotLeader {
                group: group.0.clone(),
                leader: status.leader,
                leader_addr: None,
            });
        }
        if to == self.id() || !status.voters.contains(&to) || !status.learners.is_empty() {
            return Err(Error::Consensus(format!(
                "node {to} is not another voter of {group}, or its members are changing"
            )));
        }
        let others: Vec<NodeId> = status
            .voters
            .iter()
            .copied()
            .filter(|v| *v != self.id())
            .collect();
        let quiet = others
            .iter()
            .map(|v| self.timing().window(group, *v).1)
            .max()
            .unwrap_or_default()
            + QUIET_MARGIN;
        let hold = quiet * (CAMPAIGNS_MAX + 1);
        g.set_yield(Some(
            Instant::now() + TRANSFER_QUIESCE_MAX + hold + TRANSFER_WAIT_MAX,
        ));
        let outcome = self.hand_over(&g, to, &others, quiet, hold).await;
        g.set_yield(None);
        outcome
    }

    async fn hand_over(
        &self,
        g: &ReplicatedLog,
        to: NodeId,
        others: &[NodeId],
        quiet: Duration,
        hold: Duration,
    ) -> Result<Option<NodeId>> {
        if !g.quiesce(to, TRANSFER_QUIESCE_MAX).await {
            return Ok(g.raft.metrics().borrow().current_leader);
        }
        let mut calls = tokio::task::JoinSet::new();
        for v in others {
            let (peers, v) = (self.peers_arc(), *v);
            let req = Request::LeadNext {
                group: g.group.clone(),
                to,
                quiet_ms: quiet.as_millis() as u64,
                hold_ms: hold.as_millis() as u64,
            };
            calls.spawn(async move { (v, peers.call(v, req, LEAD_NEXT_CALL_TIMEOUT).await) });
        }
        let mut told = false;
        while let Some(Ok((v, reply))) = calls.join_next().await {
            match reply {
                Ok(Reply::LeadNext(true)) if v == to => told = true,
                Ok(Reply::LeadNext(true)) => {}
                other => tracing::debug!(group = %g.group, v, "not told to hold: {other:?}"),
            }
        }
        if !told {
            return Ok(Some(self.id()));
        }
        Ok(g.wait_deposed(hold + TRANSFER_WAIT_MAX).await)
    }

    /// Answers [`Request::LeadNext`]: holds this node's election timer of `group`, and stands
    /// for election once `quiet` has passed when it is the one chosen.
    pub(crate) fn lead_next(
        &self,
        group: &GroupId,
        to: NodeId,
        quiet: Duration,
        hold: Duration,
    ) -> Reply {
        let Some(g) = self.group(group) else {
            return Reply::LeadNext(false);
        };
        let hold = hold.min(Duration::from_secs(60));
        // A quiet group wakes up (its ticks and, once the hold ends, its elections).
        g.quiet_woken(None);
        g.hold_election(hold);
        if to == self.id() {
            let quiet = quiet.min(hold);
            tokio::spawn(async move { g.take_over(quiet).await });
        }
        Reply::LeadNext(true)
    }
}
