//! Quiet groups: a group with nothing to do stops beating.
//!
//! Each group's leader sends every follower a heartbeat each interval (50 ms), and each
//! follower's Raft handles each one. A node holding a thousand idle groups spends most of two
//! cores on that alone. So, as CockroachDB quiesces its idle ranges, a group goes **quiet**:
//!
//! 1. The node's ticker finds a group it leads with no new entry for `Timing::quiet_after`, its
//!    whole log applied, every voter caught up, no learner, no membership change or hand-over
//!    under way. It asks each follower ([`Request::Quiet`], with its vote and last entry).
//! 2. A follower agrees when it follows that vote and has applied exactly that log: it stops
//!    standing for election in the group (openraft's `elect(false)`) and remembers the leader.
//! 3. Once every follower agreed, the leader stops sending the group's heartbeats, and the node
//!    sends each peer one empty message per interval instead (a node-wide "I am up").
//!
//! A group wakes up, on each replica by itself:
//! - on the leader, when its log grows (a proposal) or it stops leading; the new entries reach
//!   the followers at once, and its heartbeats resume at the next tick;
//! - on the leader, when a follower's node connects to it anew: that node may have restarted,
//!   and a replica that restarts knows nothing of the quiet and would stand for election when
//!   no heartbeat comes; its heartbeats resume at the next tick, within the replica's election
//!   timeout;
//! - on a follower, at any request of the group that is not an empty append from the leader it
//!   went quiet for (entries, a vote, a snapshot, another leader), and when the leader's node
//!   is down: nothing at all came from it for `Timing::election_max`, and then it did not
//!   answer one empty message within `Timing::election_min` (a **probe**, one per node
//!   whatever its number of groups). It then stands for election at once, which is a failover
//!   in about the time of an active group's plus the probe's.
//!
//! The probe is there because a quiet group has no lease: openraft's followers refuse a vote
//! while they hear their leader, but a quiet follower hears nothing of its group, so one
//! follower that wrongly took the leader's node for dead (its own process stalled, or the
//! message queued behind large appends) would win the election and depose a healthy leader.
//! A probe sent after the silence is a fresh round trip: a stall that is over answers it.
//!
//! Raft's safety does not depend on elections happening, only its liveness: a quiet follower
//! that wrongly believes its leader up would leave the group without a leader until any request
//! reaches it; the node-wide message every interval is what keeps that belief true.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Instant;

use openraft::{LogId, ServerState, Vote};

use crate::group::{ReplicatedLog, Timing};
use crate::net::{Reply, Request};
use crate::node::ClusterNode;
use crate::types::NodeId;

/// A probe of a quiet leader's node that was not heard lately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Sent; its answer is awaited.
    Asking,
    /// Not answered in time: the node counts as down.
    Unanswered,
}

/// A group's quiet state on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Beats (as leader) or stands for election when its leader is not heard (as follower).
    #[default]
    Awake,
    /// Leads, and has asked its followers to go quiet; beats until they all agreed.
    Asking,
    /// Leads, quiet: sends no heartbeats.
    Leading,
    /// Follows `vote`'s leader, quiet: does not stand for election while its node is heard.
    Following { leader: NodeId, vote: Vote<NodeId> },
}

/// Whether a group is quiet on this node, and since when its log last grew.
#[derive(Debug)]
pub(crate) struct Quiet {
    state: Mutex<State>,
    /// The last log index the ticker saw, and when it first saw it.
    seen: Mutex<(Option<u64>, Instant)>,
    /// The group's Raft metrics (one receiver kept, not one made per look).
    metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, crate::types::Node>>,
}

impl Quiet {
    pub(crate) fn new(
        metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, crate::types::Node>>,
    ) -> Quiet {
        Quiet {
            state: Mutex::new(State::Awake),
            seen: Mutex::new((None, Instant::now())),
            metrics,
        }
    }
}

/// What the node's ticker does for a group.
pub(crate) enum Tick {
    /// Send its heartbeats (when it leads).
    Beat,
    /// Nothing: it leads quietly.
    Quiet,
    /// Nothing: it follows (quietly or not).
    Rest,
    /// Send its heartbeats, and ask its followers to go quiet.
    Ask(Ask),
}

/// A leader's request that its followers go quiet.
#[derive(Clone, Debug)]
pub(crate) struct Ask {
    pub(crate) vote: Vote<NodeId>,
    pub(crate) last: LogId<NodeId>,
    pub(crate) followers: Vec<NodeId>,
}

impl ReplicatedLog {
    fn quiet_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.quiet.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while the group is quiet on this node (leading or following).
    pub fn is_quiet(&self) -> bool {
        matches!(
            *self.quiet_state(),
            State::Leading | State::Following { .. }
        )
    }

    /// Sets openraft's switches from the group's state: elections off while the timer is
    /// held for a hand-over or the group follows quietly; its ticks (each a wake-up of the
    /// group's Raft, every 1.5 heartbeats) off while it is quiet.
    pub(crate) fn apply_switches(&self) {
        let held = self
            .handover
            .hold_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|h| Instant::now() < h);
        let state = *self.quiet_state();
        let following = matches!(state, State::Following { .. });
        let quiet = following || state == State::Leading;
        let switches = self.raft.runtime_config();
        switches.elect(!held && !following);
        switches.tick(!quiet);
    }

    /// The node's ticker's look at the group: whether to beat, rest or ask the followers to go
    /// quiet (`after`: `Timing::quiet_after`); a quiet follower wakes up when its leader's node
    /// is not `up` (asked of that node only for a group that follows quietly).
    pub(crate) fn quiet_tick(
        &self,
        timing: &Timing,
        now: Instant,
        mut up: impl FnMut(NodeId) -> bool,
    ) -> Tick {
        // A quiet follower only watches its leader's node: anything else that could change its
        // part (a request of the group, a hand-over) wakes it as it arrives.
        let state = *self.quiet_state();
        if let State::Following { leader, .. } = state {
            if !up(leader) {
                // Every follower of the group finds the leader's node down at about the same
                // time, long after its last heartbeat: standing at once, they would split the
                // vote. Each waits for the start of its own election window instead (one per
                // replica of the group, `Timing::window`), so the first stands alone.
                let stagger = timing.window(&self.group, self.node).0 - timing.election_min;
                if !stagger.is_zero() {
                    self.hold_election(stagger);
                }
                self.quiet_woken(None);
            }
            return Tick::Rest;
        }
        let m = self.quiet.metrics.borrow();
        // How long the log has not grown (zero: it just did).
        let idle = {
            let mut seen = self.quiet.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.0 != m.last_log_index {
                *seen = (m.last_log_index, now);
            }
            now - seen.1
        };
        let leads = m.state == ServerState::Leader;
        let mut st = self.quiet_state();
        let state = *st;
        match state {
            State::Asking | State::Leading if !leads || idle.is_zero() => {
                *st = State::Awake;
                drop(st);
                self.apply_switches();
                Tick::Beat
            }
            State::Asking => Tick::Beat,
            State::Leading => Tick::Quiet,
            State::Following { .. } => Tick::Rest,
            State::Awake if !leads => Tick::Rest,
            State::Awake => {
                let Some(after) = timing.quiet_after else {
                    return Tick::Beat;
                };
                if idle < after || self.is_yielding() || self.is_changing() {
                    return Tick::Beat;
                }
                match settled(&m) {
                    Some(ask) => {
                        *st = State::Asking;
                        Tick::Ask(ask)
                    }
                    None => Tick::Beat,
                }
            }
        }
    }

    /// The followers' answers to `ask`: quiet when all agreed and nothing changed meanwhile;
    /// otherwise awake, asking again after another quiet period.
    pub(crate) fn quiet_answered(&self, ask: &Ask, all_agreed: bool) {
        let mut st = self.quiet_state();
        if *st != State::Asking {
            return;
        }
        let mut seen = self.quiet.seen.lock().unwrap_or_else(|e| e.into_inner());
        if all_agreed && seen.0 == Some(ask.last.index) {
            *st = State::Leading;
        } else {
            *st = State::Awake;
            seen.1 = Instant::now();
        }
        drop((seen, st));
        self.apply_switches();
    }

    /// Answers a leader's [`Request::Quiet`](crate::net::Request::Quiet): goes quiet when it
    /// follows `vote` of `from` and has applied its log up to `last`, its last entry.
    pub(crate) fn go_quiet(&self, from: NodeId, vote: Vote<NodeId>, last: LogId<NodeId>) -> bool {
        let mut st = self.quiet_state();
        {
            let m = self.quiet.metrics.borrow();
            let follows = m.state == ServerState::Follower
                && m.vote == vote
                && vote.is_committed()
                && m.current_leader == Some(from);
            if !follows || m.last_applied != Some(last) || m.last_log_index != Some(last.index) {
                return false;
            }
        }
        *st = State::Following { leader: from, vote };
        drop(st);
        self.apply_switches();
        true
    }

    /// A request of the group arrived (`empty_from`: an append of no entries, and the vote it
    /// was sent in): anything but an empty append from the leader it is quiet for wakes it.
    pub(crate) fn quiet_woken(&self, empty_from: Option<&Vote<NodeId>>) {
        let mut st = self.quiet_state();
        match *st {
            State::Awake => {}
            State::Following { vote, .. } if empty_from == Some(&vote) => {}
            State::Following { .. } | State::Asking | State::Leading => {
                *st = State::Awake;
                drop(st);
                self.apply_switches();
            }
        }
    }

    /// Wakes the group when it leads here quietly (or is asking to) and `peer` holds one of its
    /// voters: that peer's node connected anew, and may have restarted. The group then beats for
    /// a whole quiet period before it asks again.
    pub(crate) fn wake_for(&self, peer: NodeId) {
        let mut st = self.quiet_state();
        if !matches!(*st, State::Leading | State::Asking) {
            return;
        }
        let votes = {
            let m = self.quiet.metrics.borrow();
            let mut voters = m.membership_config.membership().voter_ids();
            voters.any(|v| v == peer)
        };
        if votes {
            *st = State::Awake;
            self.quiet.seen.lock().unwrap_or_else(|e| e.into_inner()).1 = Instant::now();
            drop(st);
            self.apply_switches();
        }
    }

    fn is_changing(&self) -> bool {
        self.changing.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// What the leader asks its followers when the group, as `m` shows it, may go quiet: its log
/// wholly applied, one configuration of voters and no learner, every follower caught up.
fn settled(m: &openraft::RaftMetrics<NodeId, crate::types::Node>) -> Option<Ask> {
    let last = m.last_applied?;
    if m.last_log_index != Some(last.index) || !m.vote.is_committed() {
        return None;
    }
    let membership = m.membership_config.membership();
    if membership.get_joint_config().len() != 1 || membership.learner_ids().next().is_some() {
        return None;
    }
    let matched = m.replication.as_ref()?;
    let followers: Vec<NodeId> = membership.voter_ids().filter(|id| *id != m.id).collect();
    let caught_up = followers
        .iter()
        .all(|f| matched.get(f).is_some_and(|l| *l == Some(last)));
    caught_up.then_some(Ask {
        vote: m.vote,
        last,
        followers,
    })
}

impl ClusterNode {
    /// The nodes from which a request arrived within the election window's end
    /// (`Timing::election_max`): quiet followers of groups led by any other wake up.
    pub(crate) fn heard_lately(&self) -> Vec<NodeId> {
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.timing().election_max;
        heard
            .iter()
            .filter(|(_, t)| t.elapsed() < window)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Records that a request of node `id` arrived now; nothing when this node's groups never
    /// go quiet (nothing reads it then: it refuses to follow quietly).
    pub(crate) fn record_heard(&self, id: NodeId) {
        if self.timing().quiet_after.is_none() {
            return;
        }
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        heard.insert(id, Instant::now());
    }

    /// Node `id` connected to this node anew (it may have restarted): the groups led here
    /// quietly in which it votes wake up, so that it hears their heartbeats before its
    /// election timeout.
    pub(crate) fn peer_connected(&self, id: NodeId) {
        if self.timing().quiet_after.is_none() || id == self.id() {
            return;
        }
        for g in self.groups() {
            g.wake_for(id);
        }
    }

    /// The leaders' nodes, among `suspects` (those of quiet followers here not heard lately),
    /// to probe now: each that no probe is under way for. Forgets the probes of every other
    /// node (heard again, or followed quietly no more).
    pub(crate) fn probes_due(&self, suspects: &BTreeSet<NodeId>) -> Vec<NodeId> {
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        probes.retain(|id, _| suspects.contains(id));
        let due: Vec<NodeId> = suspects
            .iter()
            .filter(|id| !probes.contains_key(id))
            .copied()
            .collect();
        for id in &due {
            probes.insert(*id, Probe::Asking);
        }
        due
    }

    /// The nodes whose probe went unanswered: their quiet followers here wake up.
    pub(crate) fn probed_down(&self) -> BTreeSet<NodeId> {
        let probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        probes
            .iter()
            .filter(|(_, p)| **p == Probe::Unanswered)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Sends node `id` one empty message and waits `Timing::election_min` for its answer: an
    /// answer is hearing from it; none marks it down.
    pub(crate) async fn probe(&self, id: NodeId) {
        let ttl = self.timing().election_min;
        let answered = self
            .peers()
            .call(id, Request::Heartbeats { beats: Vec::new() }, ttl)
            .await
            .is_ok();
        if answered {
            self.record_heard(id);
        }
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        if answered {
            probes.remove(&id);
        } else if let Some(p) = probes.get_mut(&id) {
            *p = Probe::Unanswered;
        }
        drop(probes);
        if !answered {
            tracing::info!(node = id, "a quiet leader's node did not answer its probe");
        }
    }

    /// Asks `g`'s followers to go quiet, and takes their answers.
    pub(crate) async fn ask_quiet(&self, g: ReplicatedLog, ask: Ask) {
        let ttl = self.timing().heartbeat * 4;
        let mut calls = tokio::task::JoinSet::new();
        for f in &ask.followers {
            let req = Request::Quiet {
                group: g.group().clone(),
                from: self.id(),
                vote: ask.vote,
                last: ask.last,
            };
            let (peers, f) = (self.peers_arc(), *f);
            calls.spawn(async move { peers.call(f, req, ttl).await });
        }
        let mut all = true;
        while let Some(answer) = calls.join_next().await {
            all &= matches!(answer, Ok(Ok(Reply::Quiet(true))));
        }
        g.quiet_answered(&ask, all);
    }

    /// Tells every peer this node is up, in one empty message each (its quiet groups send no
    /// heartbeats).
    pub(crate) fn tell_peers_up(&self) {
        if self.up_muted.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let ttl = self.timing().heartbeat * 4;
        for id in self.peers().ids() {
            if id == self.id() {
                continue;
            }
            let peers = self.peers_arc();
            tokio::spawn(async move {
                let _ = peers
                    .call(id, Request::Heartbeats { beats: Vec::new() }, ttl)
                    .await;
            });
        }
    }

    /// Stops (or resumes) this node's "I am up" messages, as if they were delayed on their
    /// way: for tests of what a quiet follower does when it does not hear its leader's node.
    #[doc(hidden)]
    pub fn mute_up_messages(&self, mute: bool) {
        self.up_muted
            .store(mute, std::sync::atomic::Ordering::Release);
    }

    /// How many of this node's groups are quiet here.
    pub fn quiet_groups(&self) -> usize {
        self.groups().iter().filter(|g| g.is_quiet()).count()
    }
}
