//! Leader balance: every group should be led by its preferred leader, the first node of its
//! placement, so that leaders stay spread across the nodes as placement spread them. After a
//! failover (a node killed, restarted, paused) the groups it led are led by the others, and
//! stay there: one node then carries the writes of two.
//!
//! Each node checks the groups it leads every `--leader-balance-ms`
//! ([`LEADER_BALANCE_INTERVAL_DEFAULT`]; 0 turns this off) and hands each one whose preferred
//! leader is another voter back to it ([`ClusterNode::transfer_leader`], in
//! `sluice_replication::transfer`), once that node has held the group's whole log at two
//! checks in a row (it is back, and keeping up). A hand-over makes the group refuse writes for
//! about an election window (clients retry); [`LEADER_MOVES_PER_CHECK`] at most run at once,
//! and a group whose hand-over failed waits [`FAILED_MOVE_BACKOFF`] before the next.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sluice_replication::{Consensus, GroupId, NodeId};
use tokio::sync::watch;
use tracing::{debug, info};

use super::Cluster;

/// How often a node checks whether the groups it leads have a preferred leader elsewhere.
pub const LEADER_BALANCE_INTERVAL_DEFAULT: Duration = Duration::from_secs(5);

/// Most hand-overs one node starts per check.
pub const LEADER_MOVES_PER_CHECK: usize = 256;

/// How long a group whose hand-over failed is left with its leader.
pub const FAILED_MOVE_BACKOFF: Duration = Duration::from_secs(60);

/// Hand-overs this node started: (done, failed).
#[derive(Debug, Default)]
pub(super) struct Handovers {
    done: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

/// What one node remembers between checks.
#[derive(Default)]
struct Balance {
    /// Groups whose preferred leader had the whole log at the last check.
    ready: HashSet<GroupId>,
    /// Groups not to move before then.
    backoff: HashMap<GroupId, Instant>,
}

impl Cluster {
    /// How many groups this node leads whose preferred leader is another node.
    pub fn led_not_preferred(&self) -> usize {
        let me = self.node_id();
        self.node
            .groups()
            .iter()
            .map(|g| g.status())
            .filter(|s| s.is_leader)
            .filter_map(|s| self.placement(&s.group)?.nodes.first().copied())
            .filter(|preferred| *preferred != me)
            .count()
    }

    /// The hand-overs this node started, (done, failed), since it started.
    pub fn handovers(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let h = &self.handovers;
        (h.done.load(Relaxed), h.failed.load(Relaxed))
    }

    /// The groups this node leads that their preferred leader, another voter holding the
    /// whole log, should lead; each with that node.
    fn leaders_to_move(&self) -> Vec<(GroupId, NodeId)> {
        let me = self.node_id();
        let mut out = Vec::new();
        for g in self.node.groups() {
            let s = g.status();
            if !s.is_leader || !s.learners.is_empty() {
                continue;
            }
            let Some(preferred) = self
                .placement(&s.group)
                .and_then(|p| p.nodes.first().copied())
            else {
                continue;
            };
            let caught_up = s.followers.get(&preferred).copied().flatten() == s.last_index
                && s.applied_index == s.last_index;
            if preferred != me && s.voters.contains(&preferred) && caught_up {
                out.push((s.group, preferred));
            }
        }
        out
    }

    /// One check: hands over the groups ready at this check and the last one.
    async fn balance_leaders(self: &Arc<Self>, state: &mut Balance) {
        // The placements are the applied metadata's: wait until this node has applied it all.
        if !self.meta_caught_up() || !self.is_member() {
            state.ready.clear();
            return;
        }
        let now = Instant::now();
        state.backoff.retain(|_, until| *until > now);
        let candidates = self.leaders_to_move();
        let ready_before = std::mem::take(&mut state.ready);
        let mut moves = tokio::task::JoinSet::new();
        for (group, to) in candidates {
            state.ready.insert(group.clone());
            let due = ready_before.contains(&group) && !state.backoff.contains_key(&group);
            if !due || moves.len() >= LEADER_MOVES_PER_CHECK {
                continue;
            }
            let node = self.node.clone();
            moves.spawn(async move {
                let led = node.transfer_leader(&group, to).await;
                (group, to, led)
            });
        }
        let (mut moved, mut failed) = (0, 0);
        while let Some(Ok((group, to, led))) = moves.join_next().await {
            match led {
                Ok(Some(l)) if l == to => moved += 1,
                other => {
                    debug!(%group, to, "leadership stayed: {other:?}");
                    state
                        .backoff
                        .insert(group, Instant::now() + FAILED_MOVE_BACKOFF);
                    failed += 1;
                }
            }
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.handovers.done.fetch_add(moved, Relaxed);
        self.handovers.failed.fetch_add(failed, Relaxed);
        if moved + failed > 0 {
            info!(
                moved,
                failed, "handed groups back to their preferred leaders"
            );
        }
    }
}

/// Checks every `interval` until `shutdown`.
pub(super) async fn balance_loop(
    cluster: Weak<Cluster>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut state = Balance::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let Some(c) = cluster.upgrade() else { return };
        c.balance_leaders(&mut state).await;
    }
}
