//! Changing the replication factor of a topic's partitions or of a queue after its creation
//! (`sluice cluster set-replicas`, the native CLUSTER_SET_REPLICAS).
//!
//! [`MetaCommand::SetFactor`] sets the factor of each group's placement on every node; the
//! metadata's leader then moves the replicas as for a node added or removed
//! ([`Cluster::replace_plan`]): a group below its factor gains replicas on the nodes holding
//! fewest, one above it drops those on the nodes holding most, never its preferred leader.
//! Each move is a `SetReplicas`, and the group's members follow (`members`).

use std::sync::Arc;

use sluice_replication::GroupId;
use tracing::info;

use super::{partition_group, queues::queue_group, Cluster, MetaCommand};
use crate::broker::{BrokerError, ErrorKind};
use crate::protocol::Target;

impl Cluster {
    /// Sets the replication factor of every partition of a topic, or of a queue (from a
    /// blocking thread): answered once the metadata has it; the replicas move afterwards.
    pub fn set_replicas_blocking(
        self: &Arc<Self>,
        target: &Target,
        factor: u32,
    ) -> Result<(), BrokerError> {
        let factor = self.replication_factor(Some(factor))?;
        let broker = self.broker()?;
        let groups: Vec<GroupId> = match target {
            Target::Topic(name) => {
                let (_, partitions) = broker.topic_meta(name)?;
                (0..partitions).map(|p| partition_group(name, p)).collect()
            }
            Target::Queue(name) => {
                broker.store().queue(name)?;
                vec![queue_group(name)]
            }
            Target::Any(name) => {
                return Err(BrokerError::new(
                    ErrorKind::InvalidArgument,
                    format!("{name:?}: say whether it is a topic or a queue"),
                ))
            }
        };
        if let Some(g) = groups.iter().find(|g| self.placement(g).is_none()) {
            return Err(BrokerError::new(
                ErrorKind::InvalidArgument,
                format!("{g} was created before placement: it is on every node"),
            ));
        }
        let groups = groups.into_iter().map(|g| g.0).collect();
        self.propose_meta_blocking(MetaCommand::SetFactor { groups, factor })
    }

    /// Applies [`MetaCommand::SetFactor`] at metadata `index`.
    pub(super) fn apply_set_factor(&self, index: u64, groups: Vec<String>, factor: u32) {
        let mut placements = self.placements.write().unwrap_or_else(|e| e.into_inner());
        let mut set = 0;
        for g in groups {
            if let Some(p) = placements.get_mut(&GroupId(g)) {
                p.factor = factor;
                set += 1;
            }
        }
        info!(
            index,
            groups = set,
            factor,
            "cluster: replication factor set"
        );
    }
}

/// Reassignments asked for by name (Kafka's AlterPartitionReassignments and
/// ListPartitionReassignments).
impl Cluster {
    /// Moves each group to the nodes given (from a blocking thread): answered once the
    /// metadata has the moves; the replicas move afterwards. Each group's factor becomes its
    /// node count.
    pub fn reassign_blocking(
        self: &Arc<Self>,
        wanted: Vec<(GroupId, Vec<u64>)>,
    ) -> Result<(), BrokerError> {
        let mut moves = Vec::new();
        for (group, to) in wanted {
            let Some(p) = self.placement(&group) else {
                return Err(BrokerError::new(
                    ErrorKind::InvalidArgument,
                    format!("{group} was created before placement: it is on every node"),
                ));
            };
            if !self.are_distinct_nodes(&to) {
                return Err(BrokerError::new(
                    ErrorKind::InvalidArgument,
                    format!("{group}: {to:?} is not a list of distinct nodes of the cluster"),
                ));
            }
            if p.nodes != to {
                moves.push((group.0, p.nodes, to));
            }
        }
        if moves.is_empty() {
            return Ok(());
        }
        self.propose_meta_blocking(MetaCommand::Reassign { moves })
    }

    /// Checks replicas assigned by hand (Kafka's CreateTopics and CreatePartitions
    /// assignments), one list per partition: each a list of distinct nodes of the cluster,
    /// all of one length, `factor` when given. Answers the placements (the first node of each
    /// is its preferred leader).
    pub fn check_assignment(
        &self,
        lists: Vec<Vec<u64>>,
        factor: Option<u32>,
    ) -> Result<Vec<Vec<u64>>, BrokerError> {
        let invalid = |m: String| Err(BrokerError::new(ErrorKind::InvalidArgument, m));
        let Some(first) = lists.first() else {
            return invalid("an assignment of no partition".to_string());
        };
        let len = factor.map_or(first.len(), |f| f as usize);
        for (i, to) in lists.iter().enumerate() {
            if !self.are_distinct_nodes(to) {
                return invalid(format!(
                    "partition {i}: {to:?} is not a list of distinct nodes of the cluster"
                ));
            }
            if to.len() != len {
                return invalid(format!(
                    "partition {i}: {} replicas assigned, the others have {len}",
                    to.len()
                ));
            }
        }
        Ok(lists)
    }

    /// True when `to` is a non-empty list of distinct nodes of the cluster.
    pub fn are_distinct_nodes(&self, to: &[u64]) -> bool {
        let nodes = self.nodes();
        let mut seen = std::collections::BTreeSet::new();
        !to.is_empty() && to.iter().all(|n| nodes.contains_key(n) && seen.insert(*n))
    }

    /// Applies [`MetaCommand::Reassign`] at metadata `index`.
    pub(super) async fn apply_reassign(
        self: &Arc<Self>,
        index: u64,
        moves: Vec<super::placement::Move>,
    ) {
        let origins: Vec<(GroupId, Vec<u64>, Vec<u64>)> = moves
            .iter()
            .map(|(g, was, to)| (GroupId(g.clone()), was.clone(), to.clone()))
            .collect();
        self.apply_moves(index, moves).await;
        let mut placements = self.placements.write().unwrap_or_else(|e| e.into_inner());
        let mut from = self
            .reassigned_from
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for (g, was, to) in origins {
            if let Some(p) = placements.get_mut(&g).filter(|p| p.nodes == to) {
                p.factor = to.len() as u32;
                from.insert(g, was);
            }
        }
    }

    /// On the metadata's leader, the groups whose members are not yet their placement (a
    /// move under way); `None` on another node, which does not know.
    pub fn moving_groups(&self) -> Option<std::collections::HashSet<GroupId>> {
        self.meta_ready().then(|| {
            self.moving
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    /// Where a reassignment of `group` under way goes back to when cancelled: the nodes the
    /// group had before its last reassignment by name (kept in the metadata's image, so a
    /// compaction of the metadata's log and a restart keep it too).
    pub fn reassigned_from(&self, group: &GroupId) -> Option<Vec<u64>> {
        self.reassigned_from
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .cloned()
    }

    /// Records what the metadata leader's reconcile found moving.
    pub(super) fn set_moving(&self, groups: std::collections::HashSet<GroupId>) {
        *self.moving.write().unwrap_or_else(|e| e.into_inner()) = groups;
    }
}

impl Cluster {
    /// The voters of `group` as this node's replica has them; `None` without a replica here.
    pub fn members_seen(&self, group: &GroupId) -> Option<Vec<u64>> {
        let g = self.node.group(group)?;
        let s = sluice_replication::Consensus::status(&g);
        Some(s.voters.into_iter().collect())
    }
}
