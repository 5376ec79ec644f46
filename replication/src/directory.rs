//! The leader directory: which node leads each group, for groups this node holds no replica
//! of (a partition placed on other nodes). A node's clients still ask it about every group:
//! a Kafka client's Metadata names every partition's leader, and a publish sent to the wrong
//! node is answered with the leader to go to.
//!
//! Each node tells its peers the groups it leads, with their terms ([`Request::Leaders`]):
//! within [`LEADERS_INTERVAL`] of a change, and all of them every [`LEADERS_REFRESH`] (a peer
//! that was down). A receiver keeps, per group, the claim of the highest term; a claim of an
//! older term than the one kept is stale and dropped. An entry is a hint: a leader may have
//! lost its group since, and the node it names answers `NotLeader` in turn.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::group::Consensus;
use crate::net::{Reply, Request};
use crate::node::ClusterNode;
use crate::types::{GroupId, NodeId};

/// Pause between two looks at the groups this node leads.
pub const LEADERS_INTERVAL: Duration = Duration::from_millis(200);

/// Every group this node leads is told to every peer at least this often.
pub const LEADERS_REFRESH: Duration = Duration::from_secs(5);

/// Most groups named in one [`Request::Leaders`]; more go in several.
pub const LEADERS_PER_MESSAGE_MAX: usize = 10_000;

/// Longest wait for a peer to take a [`Request::Leaders`].
const LEADERS_TIMEOUT: Duration = Duration::from_secs(2);

/// Who leads each group, as this node's peers told it.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    leaders: HashMap<GroupId, (NodeId, u64)>,
}

impl Directory {
    /// Records that `from` leads each of `leads` in the given term, unless a leader of a later
    /// term is known.
    pub(crate) fn record(&mut self, from: NodeId, leads: Vec<(GroupId, u64)>) {
        for (group, term) in leads {
            match self.leaders.get(&group) {
                Some(&(_, known)) if known > term => {}
                _ => {
                    self.leaders.insert(group, (from, term));
                }
            }
        }
    }

    /// The leader last told of `group`.
    pub(crate) fn leader(&self, group: &GroupId) -> Option<NodeId> {
        self.leaders.get(group).map(|&(n, _)| n)
    }

    /// Forgets `group` (deleted).
    pub(crate) fn forget(&mut self, group: &GroupId) {
        self.leaders.remove(group);
    }
}

impl ClusterNode {
    /// The leader of `group` as this node knows it: its own replica's view when it holds
    /// one, else what the group's leader told it ([`crate::directory`]).
    pub fn leader_of(&self, group: &GroupId) -> Option<NodeId> {
        if let Some(g) = self.group(group) {
            return g.status().leader;
        }
        self.directory().leader(group)
    }

    /// Forgets what peers said of `group`'s leader (the group was deleted).
    pub fn forget_leader(&self, group: &GroupId) {
        self.directory_mut().forget(group);
    }

    /// A peer's [`Request::Leaders`].
    pub(crate) fn leaders_told(&self, from: NodeId, leads: Vec<(GroupId, u64)>) {
        if from != self.id() {
            self.directory_mut().record(from, leads);
        }
    }

    /// The groups this node leads now (and has applied its own term's first entry of), with
    /// their terms, in name order.
    fn leads(&self) -> Vec<(GroupId, u64)> {
        let mut leads: Vec<(GroupId, u64)> = self
            .groups()
            .iter()
            .filter_map(|g| Some((g.group().clone(), g.leading_term()?)))
            .collect();
        leads.sort();
        leads
    }

    /// Tells every peer the groups this node leads, within [`LEADERS_INTERVAL`] of a change
    /// and every [`LEADERS_REFRESH`], until `shutdown` turns true.
    pub async fn announce_leaders(&self, mut shutdown: watch::Receiver<bool>) {
        let mut told: Vec<(GroupId, u64)> = Vec::new();
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(LEADERS_INTERVAL) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let leads = self.leads();
            if leads == told && last.elapsed() < LEADERS_REFRESH {
                continue;
            }
            let mut calls = tokio::task::JoinSet::new();
            for peer in self.peers().ids().into_iter().filter(|p| *p != self.id()) {
                for chunk in leads.chunks(LEADERS_PER_MESSAGE_MAX) {
                    let req = Request::Leaders {
                        from: self.id(),
                        leads: chunk.to_vec(),
                    };
                    let peers = self.peers_arc();
                    calls
                        .spawn(async move { (peer, peers.call(peer, req, LEADERS_TIMEOUT).await) });
                }
            }
            while let Some(Ok((peer, reply))) = calls.join_next().await {
                match reply {
                    Ok(Reply::Leaders) => {}
                    Ok(other) => tracing::debug!(peer, reply = other.name(), "odd leaders reply"),
                    Err(e) => tracing::debug!(peer, error = %e, "telling leaders failed"),
                }
            }
            told = leads;
            last = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(name: &str) -> GroupId {
        GroupId(name.into())
    }

    #[test]
    fn the_claim_of_the_latest_term_wins() {
        let mut d = Directory::default();
        d.record(1, vec![(g("t/a/0"), 3), (g("t/a/1"), 1)]);
        assert_eq!(d.leader(&g("t/a/0")), Some(1));
        // A stale claim (node 2 led in term 2) arrives after node 1's of term 3.
        d.record(2, vec![(g("t/a/0"), 2)]);
        assert_eq!(d.leader(&g("t/a/0")), Some(1));
        d.record(3, vec![(g("t/a/0"), 4)]);
        assert_eq!(d.leader(&g("t/a/0")), Some(3));
        assert_eq!(d.leader(&g("t/a/1")), Some(1));
        d.forget(&g("t/a/0"));
        assert_eq!(d.leader(&g("t/a/0")), None);
        assert_eq!(d.leader(&g("q/none")), None);
    }
}
