//! Changing a group's members while it serves: the group's leader adds each node it lacks as
//! a learner (which receives the log but does not vote), makes the learners voters once they
//! have caught up, and drops the members no longer wanted, each step one of openraft's
//! membership changes (a joint configuration, then the new one).
//!
//! [`ReplicatedLog::reconcile_members`] takes one step and answers at once; whoever drives
//! the change (the metadata's leader, `sluice-cli`'s cluster module) calls it again until it
//! answers [`MembersProgress::Done`]. [`ClusterNode::change_members`] does this on whichever
//! node leads the group.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::group::ReplicatedLog;
use crate::net::{ProposeError, Reply, Request};
use crate::node::ClusterNode;
use crate::types::{GroupId, Node, NodeId};

/// A learner is made a voter once its log is at most this many entries behind the leader's.
pub const CATCH_UP_ENTRIES: u64 = 64;

/// Longest wait for a peer's answer to [`Request::Members`].
pub const MEMBERS_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a group's change towards the wanted members stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembersProgress {
    /// The group's voters are the wanted nodes and it has no other learner.
    Done,
    /// These nodes are being added as learners.
    Adding(Vec<NodeId>),
    /// These learners are still catching up with the leader's log.
    CatchingUp(Vec<NodeId>),
    /// A membership change is being committed.
    Changing,
}

impl ReplicatedLog {
    /// One step of this group's change towards `wanted` as its voters (see the module's
    /// notes). Only the leader changes members: `NotLeader` elsewhere.
    pub fn reconcile_members(&self, wanted: &BTreeMap<NodeId, Node>) -> Result<MembersProgress> {
        let m = self.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return Err(Error::NotLeader {
                group: self.group.0.clone(),
                leader: m.current_leader,
                leader_addr: None,
            });
        }
        if wanted.is_empty() {
            return Err(Error::Consensus("a group needs at least one member".into()));
        }
        if self.changing.load(Ordering::Acquire) {
            return Ok(MembersProgress::Changing);
        }
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
        let wanted_ids: BTreeSet<NodeId> = wanted.keys().copied().collect();
        let joint = membership.get_joint_config().len() > 1;
        let missing: Vec<NodeId> = wanted_ids
            .iter()
            .filter(|id| !voters.contains(id) && !learners.contains(id))
            .copied()
            .collect();
        if !joint && !missing.is_empty() {
            let add: Vec<(NodeId, Node)> =
                missing.iter().map(|id| (*id, wanted[id].clone())).collect();
            self.spawn_change(move |raft| async move {
                for (id, node) in add {
                    raft.add_learner(id, node, false).await?;
                }
                Ok(())
            });
            return Ok(MembersProgress::Adding(missing));
        }
        let last = m.last_log_index.unwrap_or(0);
        let matched = |id: &NodeId| -> Option<u64> {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).copied().flatten())
                .map(|l| l.index)
        };
        // A learner that has acknowledged nothing yet (down, or cut off) is behind however
        // short the log: made a voter, it would count for a majority it cannot give.
        let lagging: Vec<NodeId> = wanted_ids
            .iter()
            .filter(|id| {
                !voters.contains(id) && matched(id).map_or(true, |at| at + CATCH_UP_ENTRIES < last)
            })
            .copied()
            .collect();
        if !lagging.is_empty() {
            return Ok(MembersProgress::CatchingUp(lagging));
        }
        if joint || voters != wanted_ids {
            self.spawn_change(move |raft| async move {
                raft.change_membership(wanted_ids, false).await?;
                Ok(())
            });
            return Ok(MembersProgress::Changing);
        }
        let extra: BTreeSet<NodeId> = learners.difference(&wanted_ids).copied().collect();
        if !extra.is_empty() {
            self.spawn_change(move |raft| async move {
                raft.change_membership(ChangeMembers::RemoveNodes(extra), false)
                    .await?;
                Ok(())
            });
            return Ok(MembersProgress::Changing);
        }
        Ok(MembersProgress::Done)
    }

    /// Runs one membership change in the background, marking the group as changing until it
    /// ends (its outcome is logged; the next step looks at the membership again).
    fn spawn_change<F, Fut>(&self, change: F)
    where
        F: FnOnce(openraft::Raft<crate::TypeConfig>) -> Fut + Send + 'static,
        Fut: std::future::Future<
                Output = std::result::Result<
                    (),
                    openraft::error::RaftError<
                        NodeId,
                        openraft::error::ClientWriteError<NodeId, Node>,
                    >,
                >,
            > + Send,
    {
        if self.changing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (raft, group, changing) =
            (self.raft.clone(), self.group.clone(), self.changing.clone());
        tokio::spawn(async move {
            match change(raft).await {
                Ok(()) => tracing::info!(%group, "membership change committed"),
                Err(e) => tracing::warn!(%group, "membership change failed: {e}"),
            }
            changing.store(false, Ordering::Release);
        });
    }
}

impl ClusterNode {
    /// One step of `group`'s change towards `wanted` on the node that leads it: here when
    /// this node does, else on the leader it knows of (its own replica's view, or the
    /// [directory](crate::directory)'s), else on each of `wanted` in turn until one leads it. `version` orders the callers' views of the cluster's nodes: a node that
    /// has seen a later one refuses the step ([`ClusterNode::set_members_version`]).
    pub async fn change_members(
        &self,
        group: &GroupId,
        version: u64,
        wanted: &BTreeMap<NodeId, Node>,
    ) -> Result<MembersProgress> {
        let mut leader = self.directory().leader(group);
        if let Some(g) = self.group(group) {
            match g.reconcile_members(wanted) {
                Err(Error::NotLeader { leader: l, .. }) => leader = l,
                other => return other,
            }
        }
        let candidates: Vec<NodeId> = match leader {
            Some(l) if l != self.id() => vec![l],
            _ => wanted.keys().copied().filter(|n| *n != self.id()).collect(),
        };
        let mut last = Error::NotLeader {
            group: group.0.clone(),
            leader: None,
            leader_addr: None,
        };
        for peer in candidates {
            let req = Request::Members {
                group: group.clone(),
                version,
                members: wanted.clone(),
            };
            match self.peers().call(peer, req, MEMBERS_CALL_TIMEOUT).await {
                Ok(Reply::Members(Ok(p))) => return Ok(p),
                Ok(Reply::Members(Err(ProposeError::NotLeader { leader }))) => {
                    last = Error::NotLeader {
                        group: group.0.clone(),
                        leader,
                        leader_addr: None,
                    }
                }
                Ok(Reply::Members(Err(ProposeError::Failed(why)))) => {
                    last = Error::Consensus(format!("node {peer}: {why}"))
                }
                Ok(Reply::UnknownGroup(_)) => {}
                Ok(other) => last = Error::Consensus(format!("odd reply {}", other.name())),
                Err(e) => last = Error::Consensus(format!("node {peer}: {e}")),
            }
        }
        Err(last)
    }

    /// A peer's [`Request::Members`]: one step here, refused when this node has seen a later
    /// view of the cluster's nodes than the caller.
    pub(crate) fn members_here(
        &self,
        group: &GroupId,
        version: u64,
        wanted: &BTreeMap<NodeId, Node>,
    ) -> std::result::Result<MembersProgress, ProposeError> {
        let seen = self.members_version();
        if version < seen {
            return Err(ProposeError::Failed(format!(
                "the caller's view of the nodes (version {version}) is older than this node's ({seen})"
            )));
        }
        let Some(g) = self.group(group) else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        match g.reconcile_members(wanted) {
            Ok(p) => Ok(p),
            Err(Error::NotLeader { leader, .. }) => Err(ProposeError::NotLeader { leader }),
            Err(e) => Err(ProposeError::Failed(e.to_string())),
        }
    }
}
