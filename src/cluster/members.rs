//! The cluster's nodes, and moving every group onto them.
//!
//! The nodes are the metadata's: the first nodes (`cluster/identity`), then each
//! [`MetaCommand::SetNodes`](super::MetaCommand::SetNodes) in the metadata's log order, each
//! naming every node, so every node holds the same set at the same index (a node that joined
//! later does not know the first nodes, but it is none of them). Their version is the index
//! of the last change applied; a change made from an older version is dropped.
//!
//! Every group is replicated on every node of the set. The metadata's leader (which has
//! applied every committed change) checks each group every [`RECONCILE_INTERVAL`]: a group
//! whose voters are not the set, or which has learners left, is handed to its leader for one
//! step of the change (`sluice_replication::membership`): the new node is added as a learner,
//! promoted once caught up, a removed node dropped. Publishes and acks go on meanwhile.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sluice_replication::{GroupId, MembersProgress, Node};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::config::CLUSTER_NODES_MAX;
use super::{Cluster, MetaCommand};
use crate::broker::{BrokerError, ErrorKind};

/// Pause between two checks of every group's members.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// Longest an add or remove waits for this node to apply its committed change.
pub const APPLIED_WAIT: Duration = Duration::from_secs(10);

/// Most times an add or remove is made again after another change came first.
pub const CHANGE_ATTEMPTS: usize = 5;

/// Most groups whose change one check steps at once.
pub const MEMBER_CHANGES_MAX: usize = 16;

/// The cluster's nodes as of one metadata index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSet {
    /// Every node and its cluster address.
    pub nodes: BTreeMap<u64, String>,
    /// The metadata index of the last change applied (0: the first nodes).
    pub version: u64,
}

impl Cluster {
    /// The cluster's nodes and their cluster addresses, as applied here.
    pub fn nodes(&self) -> BTreeMap<u64, String> {
        self.node_set().nodes
    }

    pub(super) fn node_set(&self) -> NodeSet {
        self.nodes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Applies `SetNodes` at metadata `index` (see [`MetaCommand::SetNodes`]).
    pub(super) fn apply_set_nodes(&self, index: u64, base: u64, nodes: BTreeMap<u64, String>) {
        let mut set = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        if set.version != base {
            warn!(
                index,
                base,
                version = set.version,
                "cluster: a change of the nodes made from an older view, dropped"
            );
            return;
        }
        for (id, addr) in &nodes {
            if set.nodes.get(id) != Some(addr) {
                info!(index, node = id, %addr, "cluster: node added");
                self.node.set_peer(*id, addr.clone());
            }
        }
        for id in set.nodes.keys().filter(|id| !nodes.contains_key(id)) {
            if *id == self.config.node_id {
                warn!(index, "cluster: this node was removed from the cluster; its groups move to the other nodes, and it can be stopped once `sluice cluster status` lists it in no group");
            } else {
                info!(index, node = id, "cluster: node removed");
            }
        }
        *set = NodeSet {
            nodes,
            version: index,
        };
        self.node.set_members_version(index);
    }

    /// Proposes the nodes `change` makes of the current ones (from a blocking thread), and
    /// waits until this node has applied it. A change dropped because another came first, or
    /// because this node's view was behind, is made again from the newer view, at most
    /// [`CHANGE_ATTEMPTS`] times; `done` tells when the nodes are as wanted.
    fn change_nodes_blocking(
        self: &Arc<Self>,
        change: impl Fn(&mut BTreeMap<u64, String>),
        done: impl Fn(&BTreeMap<u64, String>) -> bool,
    ) -> Result<(), BrokerError> {
        for _ in 0..CHANGE_ATTEMPTS {
            let before = self.node_set();
            if done(&before.nodes) {
                return Ok(());
            }
            let mut nodes = before.nodes.clone();
            change(&mut nodes);
            self.propose_meta_blocking(MetaCommand::SetNodes {
                base: before.version,
                nodes,
            })?;
            let deadline = std::time::Instant::now() + APPLIED_WAIT;
            while self.node_set().version == before.version {
                if std::time::Instant::now() > deadline {
                    return Err(BrokerError::new(
                        ErrorKind::Internal,
                        "the change is committed but not applied on this node yet",
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if done(&self.nodes()) {
            return Ok(());
        }
        Err(BrokerError::new(
            ErrorKind::InvalidArgument,
            "the cluster's nodes kept changing meanwhile; look at them again and retry",
        ))
    }

    /// Adds node `id` at cluster address `addr` (from a blocking thread): answers once the
    /// change is applied here; the groups move onto it afterwards. Adding a node again at the
    /// same address changes nothing.
    pub fn add_node_blocking(self: &Arc<Self>, id: u64, addr: &str) -> Result<(), BrokerError> {
        let bad = |why: String| BrokerError::new(ErrorKind::InvalidArgument, why);
        if id == 0 {
            return Err(bad("node ids start at 1".into()));
        }
        if !super::config::is_host_port(addr) {
            return Err(bad(format!("{addr:?} is not HOST:PORT")));
        }
        let nodes = self.nodes();
        match nodes.get(&id) {
            Some(a) if a == addr => return Ok(()),
            Some(a) => {
                return Err(BrokerError::new(
                    ErrorKind::AlreadyExists,
                    format!("node {id} is already a node of the cluster, at {a}"),
                ))
            }
            None if nodes.len() >= CLUSTER_NODES_MAX => {
                return Err(bad(format!(
                    "a cluster has at most {CLUSTER_NODES_MAX} nodes"
                )))
            }
            None => {}
        }
        let addr = addr.to_string();
        let wanted = addr.clone();
        self.change_nodes_blocking(
            move |nodes| {
                nodes.insert(id, addr.clone());
            },
            move |nodes| nodes.get(&id) == Some(&wanted),
        )
    }

    /// Removes node `id` (from a blocking thread): answers once the change is applied here;
    /// the groups drop it afterwards. The last node cannot be removed.
    pub fn remove_node_blocking(self: &Arc<Self>, id: u64) -> Result<(), BrokerError> {
        let nodes = self.nodes();
        if !nodes.contains_key(&id) {
            return Err(BrokerError::new(
                ErrorKind::NotFound,
                format!("node {id} is not a node of the cluster"),
            ));
        }
        if nodes.len() == 1 {
            return Err(BrokerError::new(
                ErrorKind::InvalidArgument,
                format!("node {id} is the cluster's last node"),
            ));
        }
        self.change_nodes_blocking(
            move |nodes| {
                nodes.remove(&id);
            },
            move |nodes| !nodes.contains_key(&id),
        )
    }

    /// True when this node is one of the cluster's nodes.
    pub fn is_member(&self) -> bool {
        self.nodes().contains_key(&self.config.node_id)
    }

    /// One check of every group's placement and members (see the module's notes); on the
    /// metadata's leader only. Answers how many groups are not yet on their nodes.
    async fn reconcile(self: &Arc<Self>, settled: &mut HashMap<GroupId, Vec<u64>>) -> usize {
        if !self.meta_ready() || !self.is_member() {
            settled.clear();
            self.set_moving(Default::default());
            return 0;
        }
        let moves = self.replace_plan();
        if !moves.is_empty() {
            info!(
                groups = moves.len(),
                "moving replicas onto the cluster's nodes"
            );
            if let Err(e) = self.propose_meta(MetaCommand::SetReplicas { moves }).await {
                warn!("cannot move replicas yet: {e}");
            }
        }
        let set = self.node_set();
        let pending = self.unsettled(&set, settled);
        // What is still moving once this round's steps are taken (a new group is Done at once).
        let mut moving: HashSet<GroupId> = pending.iter().map(|(g, _)| g.clone()).collect();
        let left = pending.len();
        for chunk in pending.chunks(MEMBER_CHANGES_MAX) {
            let mut steps = tokio::task::JoinSet::new();
            for (group, nodes) in chunk.iter().cloned() {
                let node = self.node.clone();
                let wanted: BTreeMap<u64, Node> = nodes
                    .iter()
                    .filter_map(|n| Some((*n, Node::new(set.nodes.get(n)?.clone()))))
                    .collect();
                steps.spawn(async move {
                    let step = node.change_members(&group, set.version, &wanted).await;
                    (group, nodes, step)
                });
            }
            while let Some(Ok((group, nodes, step))) = steps.join_next().await {
                match step {
                    Ok(MembersProgress::Done) => {
                        moving.remove(&group);
                        settled.insert(group, nodes);
                    }
                    // No longer settled anywhere: a later move back to the nodes it was
                    // settled on (a cancelled reassignment) must still be checked.
                    Ok(p) => {
                        settled.remove(&group);
                        debug!(%group, progress = ?p, "moving the group onto its nodes")
                    }
                    Err(e) => {
                        settled.remove(&group);
                        debug!(%group, "cannot change the group's members yet: {e}")
                    }
                }
            }
        }
        self.set_moving(moving);
        if left == 0 {
            self.balance().await;
        }
        left
    }

    /// Evens out the replicas the nodes hold once nothing is moving (a node was added).
    async fn balance(self: &Arc<Self>) {
        let moves = self.balance_plan();
        if moves.is_empty() {
            return;
        }
        info!(
            groups = moves.len(),
            "moving replicas to even out the nodes"
        );
        if let Err(e) = self.propose_meta(MetaCommand::SetReplicas { moves }).await {
            warn!("cannot move replicas yet: {e}");
        }
    }

    /// Every group whose members may not be its nodes yet, with those nodes: the groups of
    /// this node whose voters differ (or which have learners), and the groups placed
    /// elsewhere whose last step here did not end on their nodes.
    fn unsettled(
        &self,
        set: &NodeSet,
        settled: &HashMap<GroupId, Vec<u64>>,
    ) -> Vec<(GroupId, Vec<u64>)> {
        let here: HashMap<GroupId, sluice_replication::GroupStatus> = self
            .node
            .groups()
            .into_iter()
            .map(|g| sluice_replication::Consensus::status(&g))
            .map(|s| (s.group.clone(), s))
            .collect();
        let mut groups: Vec<GroupId> = here.keys().cloned().collect();
        groups.extend(
            self.placements
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .filter(|g| !here.contains_key(*g))
                .cloned(),
        );
        groups
            .into_iter()
            .filter_map(|group| {
                let mut nodes = self.replicas_of(&group);
                nodes.retain(|n| set.nodes.contains_key(n));
                nodes.sort_unstable();
                let done = match here.get(&group) {
                    Some(s) => s.voters.iter().eq(nodes.iter()) && s.learners.is_empty(),
                    None => settled.get(&group) == Some(&nodes),
                };
                (!done && !nodes.is_empty()).then_some((group, nodes))
            })
            .collect()
    }
}

pub(super) fn members_of(nodes: &BTreeMap<u64, String>) -> BTreeMap<u64, Node> {
    nodes
        .iter()
        .map(|(id, a)| (*id, Node::new(a.clone())))
        .collect()
}

/// Opens the replicas placed on this node that are not open, closes those moved off it, and
/// (on the metadata's leader) checks every
/// group's placement and members, every [`RECONCILE_INTERVAL`] until `shutdown`.
pub(super) async fn reconcile_loop(
    cluster: std::sync::Weak<Cluster>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut was_pending = 0;
    let mut settled = HashMap::new();
    let mut moved = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let Some(c) = cluster.upgrade() else { return };
        c.open_placed_here().await;
        c.close_moved(&mut moved).await;
        let pending = c.reconcile(&mut settled).await;
        if pending != was_pending {
            info!(groups = pending, "groups not yet on the cluster's nodes");
            was_pending = pending;
        }
    }
}
