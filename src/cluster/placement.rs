//! Placement: which nodes hold each group's replicas.
//!
//! A topic partition or queue created with a replication factor `R` (`--replicas`,
//! [`REPLICAS_DEFAULT`] when not given, at most the cluster's size) is placed on `R` nodes,
//! chosen by the node it is created through ([`Cluster::place`]) and carried by the metadata
//! command that creates it, so every node holds the same placement. The first node of a
//! placement is the group's preferred leader, which forms the group; the leaders of a
//! creation go to the nodes leading fewest groups, the other replicas to the nodes holding
//! fewest. Nodes the placing node cannot reach (its connection attempts to them have failed
//! for a while, [`Cluster::unreachable_peers`]) get replicas only when the others are too few, in every
//! plan below as at creation.
//!
//! Only the placed nodes open the group. Every node still creates the topic or queue in its
//! store (every node knows its name, id and partitions), and marks the partitions it holds no
//! replica of as placed elsewhere: reads there answer `NotLeader`, naming the leader from the
//! leader directory (`sluice_replication::directory`).
//!
//! Groups created before placement (by an older metadata command) have no entry and are on
//! every node, following the cluster's nodes as before.
//!
//! The metadata's leader keeps placements on the cluster's nodes ([`Cluster::replace_plan`]):
//! a replica on a node that was removed is moved to the node holding fewest replicas, and a
//! group with fewer replicas than its factor (the cluster was smaller, or the factor was
//! raised: `factor`) gets more once nodes are added, and one with more (the factor was
//! lowered) drops those on the nodes holding most, never its preferred leader. Evening out
//! ([`Cluster::balance_plan`]) leaves nodes it cannot reach out. Each move is a
//! [`MetaCommand::SetReplicas`](super::MetaCommand::SetReplicas)
//! from the placement it replaces; the group's members then follow (`members`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sluice_replication::GroupId;
use tracing::{info, warn};

use super::Cluster;
use crate::broker::{BrokerError, ErrorKind};

/// Replicas of a group created without a replication factor (fewer when the cluster is
/// smaller).
pub const REPLICAS_DEFAULT: u32 = 3;

/// Most placement moves one metadata command carries.
pub const MOVES_PER_COMMAND_MAX: usize = 1_000;

/// Most moves one check makes to even out the replicas (each copies a log to its new node).
pub const BALANCE_MOVES_MAX: usize = 4;

/// Where a group's replicas are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Its nodes, the preferred leader first.
    pub nodes: Vec<u64>,
    /// How many replicas it should have (more than `nodes` while the cluster is too small).
    pub factor: u32,
}

/// One move of a group's replicas, as the metadata carries it: `(group, from, to)`.
pub type Move = (String, Vec<u64>, Vec<u64>);

/// How many groups each node leads first and holds, in a set of placements.
#[derive(Default)]
struct Load {
    leads: HashMap<u64, usize>,
    holds: HashMap<u64, usize>,
}

impl Load {
    fn of<'a>(placements: impl Iterator<Item = &'a Placement>) -> Load {
        let mut load = Load::default();
        for p in placements {
            load.add(&p.nodes);
        }
        load
    }

    fn add(&mut self, nodes: &[u64]) {
        if let Some(first) = nodes.first() {
            *self.leads.entry(*first).or_default() += 1;
        }
        for n in nodes {
            *self.holds.entry(*n).or_default() += 1;
        }
    }

    /// The node of `candidates` not in `taken` holding fewest replicas (then the lowest id).
    fn least_held(&self, candidates: &[u64], taken: &[u64]) -> Option<u64> {
        candidates
            .iter()
            .copied()
            .filter(|n| !taken.contains(n))
            .min_by_key(|n| (self.holds.get(n).copied().unwrap_or(0), *n))
    }

    /// The node of `candidates` leading fewest groups (then holding fewest, then the lowest id).
    fn least_leading(&self, candidates: &[u64]) -> Option<u64> {
        candidates.iter().copied().min_by_key(|n| {
            let leads = self.leads.get(n).copied().unwrap_or(0);
            (leads, self.holds.get(n).copied().unwrap_or(0), *n)
        })
    }
}

/// Places `groups` new groups of `factor` replicas each on `nodes`, given the `load` of the
/// groups placed before: on nodes not `down` first, then, when they are too few for the
/// factor, on those (a group still forms with a majority of its replicas, and the others
/// catch up when back).
fn choose(
    nodes: &[u64],
    down: &[u64],
    load: &mut Load,
    groups: usize,
    factor: u32,
) -> Vec<Vec<u64>> {
    let up: Vec<u64> = nodes
        .iter()
        .copied()
        .filter(|n| !down.contains(n))
        .collect();
    (0..groups)
        .map(|_| {
            let mut placed = Vec::with_capacity(factor as usize);
            if let Some(first) = load
                .least_leading(&up)
                .or_else(|| load.least_leading(nodes))
            {
                placed.push(first);
            }
            while placed.len() < factor as usize {
                let next = load
                    .least_held(&up, &placed)
                    .or_else(|| load.least_held(nodes, &placed));
                match next {
                    Some(n) => placed.push(n),
                    None => break,
                }
            }
            load.add(&placed);
            placed
        })
        .collect()
}

impl Cluster {
    /// The replication factor of a new group: `asked` (1 to the cluster's size), or
    /// [`REPLICAS_DEFAULT`] capped at the cluster's size.
    pub fn replication_factor(&self, asked: Option<u32>) -> Result<u32, BrokerError> {
        let size = self.nodes().len() as u32;
        match asked {
            None => Ok(REPLICAS_DEFAULT.min(size).max(1)),
            Some(r) if (1..=size).contains(&r) => Ok(r),
            Some(r) => Err(BrokerError::new(
                ErrorKind::InvalidArgument,
                format!("replicas must be 1 to {size}, the cluster's nodes (got {r})"),
            )),
        }
    }

    /// Places `groups` new groups of `factor` replicas on the cluster's nodes (see the
    /// module's notes), on nodes this node can reach first.
    pub fn place(&self, groups: usize, factor: u32) -> Vec<Vec<u64>> {
        let nodes: Vec<u64> = self.nodes().keys().copied().collect();
        let down = self.unreachable_peers();
        let placements = self.placements.read().unwrap_or_else(|e| e.into_inner());
        let mut load = Load::of(placements.values());
        choose(&nodes, &down, &mut load, groups, factor)
    }

    /// The nodes this node has failed to connect to for `UNREACHABLE_AFTER` (3 s), with no
    /// connection from them meanwhile (each is tried at least at every hello, every 10 s):
    /// down, or cut off from this node.
    pub fn unreachable_peers(&self) -> Vec<u64> {
        self.node.peers().unreachable()
    }

    /// Where `group`'s replicas are: its placement, or every node for a group created before
    /// placement.
    pub fn replicas_of(&self, group: &GroupId) -> Vec<u64> {
        match self.placement(group) {
            Some(p) => p.nodes,
            None => self.nodes().keys().copied().collect(),
        }
    }

    /// `group`'s placement; `None` for a group created before placement.
    pub fn placement(&self, group: &GroupId) -> Option<Placement> {
        self.placements
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .cloned()
    }

    /// True when this node holds a replica of `group`.
    pub fn is_placed_here(&self, group: &GroupId) -> bool {
        self.replicas_of(group).contains(&self.config.node_id)
    }

    /// Records `group`'s placement as created (or created again, when the metadata is applied
    /// again after a restart).
    pub(super) fn set_placement(&self, group: GroupId, nodes: Vec<u64>) {
        let factor = nodes.len() as u32;
        self.placements
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group, Placement { nodes, factor });
    }

    /// Forgets the placement of a deleted group.
    pub(super) fn forget_placement(&self, group: &GroupId) {
        self.placements
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(group);
        self.reassigned_from
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(group);
        self.node.forget_leader(group);
    }

    /// Applies one move of `SetReplicas` at metadata `index`: taken only when the group is
    /// still placed on `from`. Answers whether it was taken.
    pub(super) fn apply_move(&self, index: u64, group: &str, from: &[u64], to: Vec<u64>) -> bool {
        let group = GroupId(group.to_string());
        let mut placements = self.placements.write().unwrap_or_else(|e| e.into_inner());
        let Some(p) = placements.get_mut(&group) else {
            warn!(index, %group, "cluster: a move of an unknown group's replicas, dropped");
            return false;
        };
        if p.nodes != from || to.is_empty() {
            warn!(index, %group, "cluster: a move of replicas made from an older placement, dropped");
            return false;
        }
        info!(index, %group, from = ?from, to = ?to, "cluster: the group's replicas move");
        p.nodes = to;
        // Whatever moved it last is what a cancel would undo: a reassignment by name records
        // its origin again once its moves are taken (`apply_reassign`).
        self.reassigned_from
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&group);
        true
    }

    /// Moves that even out the replicas the nodes hold (a node was added), at most
    /// [`BALANCE_MOVES_MAX`]: partitions and queues alike. A replica moved onto a node copies
    /// its group's log from the leader, after a snapshot when the log was cut (retention, a
    /// queue's acked segments). Nodes this node cannot reach take no part: nothing is moved
    /// onto them, nor evened out from them, until they are back.
    pub(super) fn balance_plan(&self) -> Vec<Move> {
        let down = self.unreachable_peers();
        let nodes: Vec<u64> = self
            .nodes()
            .keys()
            .copied()
            .filter(|n| !down.contains(n))
            .collect();
        let placements = self.placements.read().unwrap_or_else(|e| e.into_inner());
        let sorted: BTreeMap<&GroupId, &Placement> = placements.iter().collect();
        balance(&nodes, &sorted, |_| true, BALANCE_MOVES_MAX)
    }

    /// The moves that put every placement on the cluster's nodes (see the module's notes),
    /// at most [`MOVES_PER_COMMAND_MAX`]; replicas added go to nodes this node can reach
    /// first.
    pub(super) fn replace_plan(&self) -> Vec<Move> {
        let nodes: Vec<u64> = self.nodes().keys().copied().collect();
        let down = self.unreachable_peers();
        let placements = self.placements.read().unwrap_or_else(|e| e.into_inner());
        replace(&nodes, &down, &placements)
    }
}

/// The moves that put every placement of `placements` on `nodes` at its factor (replicas
/// added on the nodes holding fewest, those not `down` first; replicas dropped from those
/// holding most), at most [`MOVES_PER_COMMAND_MAX`].
fn replace(nodes: &[u64], down: &[u64], placements: &HashMap<GroupId, Placement>) -> Vec<Move> {
    let up: Vec<u64> = nodes
        .iter()
        .copied()
        .filter(|n| !down.contains(n))
        .collect();
    let mut load = Load::of(placements.values());
    let sorted: BTreeMap<&GroupId, &Placement> = placements.iter().collect();
    let mut moves = Vec::new();
    for (group, p) in sorted {
        let mut to: Vec<u64> = p
            .nodes
            .iter()
            .copied()
            .filter(|n| nodes.contains(n))
            .collect();
        let wanted = (p.factor as usize).min(nodes.len());
        while to.len() < wanted {
            let next = load
                .least_held(&up, &to)
                .or_else(|| load.least_held(nodes, &to));
            match next {
                Some(n) => {
                    *load.holds.entry(n).or_default() += 1;
                    to.push(n);
                }
                None => break,
            }
        }
        // Above its factor (lowered): drop the replicas on the nodes holding most, never
        // the preferred leader.
        while to.len() > wanted.max(1) {
            let held = |i: &usize| (load.holds.get(&to[*i]).copied().unwrap_or(0), to[*i]);
            let Some(i) = (1..to.len()).max_by_key(held) else {
                break;
            };
            let n = to.remove(i);
            if let Some(h) = load.holds.get_mut(&n) {
                *h = h.saturating_sub(1);
            }
        }
        if to != p.nodes && !to.is_empty() {
            moves.push((group.0.clone(), p.nodes.clone(), to));
            if moves.len() == MOVES_PER_COMMAND_MAX {
                break;
            }
        }
    }
    moves
}

/// What a node does with the groups placed on it or moved off it.
impl Cluster {
    /// The store's log of partition `p` of `topic`, whether or not it is placed here.
    pub(super) fn local_partition_log(
        &self,
        topic: &str,
        p: u32,
    ) -> Result<sluice_storage::Log, BrokerError> {
        let t = self.broker()?.store().topic(topic)?;
        t.logs().get(p as usize).cloned().ok_or_else(|| {
            BrokerError::new(
                ErrorKind::NotFound,
                format!("topic {topic:?} has no partition {p}"),
            )
        })
    }

    /// Marks partition `p` of `topic` as one this node serves no reads of (`why`, and where
    /// its leader is when asked).
    pub(super) fn mark_elsewhere(self: &Arc<Self>, topic: &str, p: u32, why: &str) {
        let Ok(log) = self.local_partition_log(topic, p) else {
            return;
        };
        let (me, group, why) = (
            Arc::downgrade(self),
            super::partition_group(topic, p),
            why.to_string(),
        );
        log.set_placed_elsewhere(Some(Arc::new(move || match me.upgrade() {
            Some(c) => format!("{why}; {}", c.leader_hint(&group)),
            None => why.clone(),
        })));
    }

    /// Where to go for `group`, as this node knows it.
    fn leader_hint(&self, group: &GroupId) -> String {
        match self.node.leader_of(group) {
            Some(id) => match self.node.info(id).and_then(|i| i.native) {
                Some(addr) => {
                    format!("its leader is node {id} (client address {addr}): retry there")
                }
                None => format!("its leader is node {id}: retry there"),
            },
            None => format!(
                "its replicas are on nodes {:?}: retry there",
                self.replicas_of(group)
            ),
        }
    }

    /// The error of a request for `group` on a node that holds no replica of it: `NotLeader`,
    /// naming its leader when known.
    pub(super) fn not_here(&self, group: GroupId) -> BrokerError {
        BrokerError::new(
            ErrorKind::NotLeader,
            format!(
                "this node holds no replica of {group}; {}",
                self.leader_hint(&group)
            ),
        )
    }

    /// Forms a group placed on `nodes` (the first its preferred leader), as
    /// [`Cluster::form`] does for a group on every node.
    pub(super) fn form_placed(
        &self,
        g: sluice_replication::ReplicatedLog,
        set: &super::members::NodeSet,
        nodes: &[u64],
    ) {
        let Some(members) = placed_members(set, nodes) else {
            return;
        };
        if !members.contains_key(&self.config.node_id) {
            return;
        }
        if nodes.first() == Some(&self.config.node_id) {
            tokio::spawn(async move {
                if let Err(e) = g.bootstrap(members).await {
                    warn!(group = %g.group(), "cannot form the group: {e}");
                }
            });
        } else {
            super::apply::bootstrap_later(g, members);
        }
    }

    /// Applies `SetReplicas` at metadata `index`: each move taken opens this node's replica
    /// when the group comes onto it (empty, to be added by its leader; never formed here; an
    /// open that fails is tried again by [`Cluster::open_placed_here`]). A replica moved off
    /// this node is closed once its group has dropped it ([`Cluster::close_moved`]).
    pub(super) async fn apply_moves(self: &Arc<Self>, index: u64, moves: Vec<Move>) {
        for (group, from, to) in moves {
            let onto_me = to.contains(&self.config.node_id) && !from.contains(&self.config.node_id);
            if !self.apply_move(index, &group, &from, to) || !onto_me {
                continue;
            }
            let opened = match (partition_of(&group), group.strip_prefix("q/")) {
                (Some((topic, p)), _) => self.open_partition(topic, p).await.map(|_| ()),
                (None, Some(queue)) => self.open_queue(queue).await.map(|_| ()),
                (None, None) => continue,
            };
            if let Err(e) = opened {
                warn!(index, %group, "cannot open the replica moved here: {e}");
            }
        }
    }

    /// True once this node has applied every entry of the metadata log it holds.
    pub(super) fn meta_caught_up(&self) -> bool {
        self.meta.get().is_some_and(|m| {
            let s = sluice_replication::Consensus::status(m);
            s.applied_index.is_some() && s.applied_index >= s.last_index
        })
    }

    /// Opens the replicas placed on this node that are not open (a move onto it whose open
    /// failed, say for want of file descriptors), once this node has applied its metadata
    /// log. Each is then added to its group by the group's leader, as after the move.
    pub(super) async fn open_placed_here(self: &Arc<Self>) {
        if !self.meta_caught_up() {
            return;
        }
        let me = self.config.node_id;
        let missing: Vec<GroupId> = self
            .placements
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(g, p)| p.nodes.contains(&me) && self.node.group(g).is_none())
            .map(|(g, _)| g.clone())
            .collect();
        for group in missing {
            let opened = match (partition_of(&group.0), group.0.strip_prefix("q/")) {
                (Some((topic, p)), _) => self.open_partition(topic, p).await.map(|_| ()),
                (None, Some(queue)) => self.open_queue(queue).await.map(|_| ()),
                (None, None) => continue,
            };
            match opened {
                Ok(()) => info!(%group, "cluster: a replica placed here opened"),
                Err(e) => warn!(%group, "cannot open a replica placed here: {e}"),
            }
        }
    }

    /// Closes the replicas of groups placed elsewhere whose group no longer counts this
    /// node: not its leader, and either dropped from its members or without a leader (a
    /// removed replica may never hear of its removal), at two checks in a row (`seen`: the
    /// groups found so at the last), once this node has applied its metadata log. Its files
    /// stay.
    pub(super) async fn close_moved(self: &Arc<Self>, seen: &mut HashSet<GroupId>) {
        if !self.meta_caught_up() {
            seen.clear();
            return;
        }
        let mut now = HashSet::new();
        for g in self.node.groups() {
            if !self.moved_off(&g) {
                continue;
            }
            now.insert(g.group().clone());
            if seen.contains(g.group()) {
                self.close_replica(&g).await;
            }
        }
        *seen = now;
    }

    /// True when `g` is placed elsewhere and no longer counts this node (see
    /// [`Cluster::close_moved`]).
    fn moved_off(&self, g: &sluice_replication::ReplicatedLog) -> bool {
        let me = self.config.node_id;
        if self.placement(g.group()).is_none() || self.is_placed_here(g.group()) {
            return false;
        }
        let s = sluice_replication::Consensus::status(g);
        let member = s.voters.contains(&me) || s.learners.contains(&me);
        !(s.is_leader || (member && s.leader.is_some()))
    }

    /// Closes this node's replica of `g`, moved off it: a partition's reads are refused from
    /// then on, a queue's consumers too.
    async fn close_replica(self: &Arc<Self>, g: &sluice_replication::ReplicatedLog) {
        info!(group = %g.group(), "cluster: the group moved off this node; its replica closes");
        let name = g.group().0.clone();
        if let Some((topic, p)) = partition_of(&name) {
            self.partitions
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(topic.to_string(), p));
            self.node.close_group(g.group()).await;
            let why = format!("this node holds no replica of {name}");
            self.mark_elsewhere(topic, p, &why);
        } else if let Some(queue) = name.strip_prefix("q/") {
            self.queues
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(queue);
            let link = self
                .links
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(queue)
                .cloned();
            if let Some(link) = link {
                link.detach();
            }
            self.node.close_group(g.group()).await;
        }
    }
}

/// Moves that even out how many replicas each of `nodes` holds, at most `max`: while the node
/// holding most holds two more than the one holding fewest, a `movable` group on the first
/// and not on the second moves from one to the other (in its place in the placement, so a
/// preferred leader moved stays first), a partition rather than a queue, and one the first
/// node is not the preferred leader of rather than one it is.
fn balance(
    nodes: &[u64],
    placements: &BTreeMap<&GroupId, &Placement>,
    movable: impl Fn(&GroupId) -> bool,
    max: usize,
) -> Vec<Move> {
    let mut holds: BTreeMap<u64, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for p in placements.values() {
        for n in &p.nodes {
            if let Some(h) = holds.get_mut(n) {
                *h += 1;
            }
        }
    }
    let mut moved = HashSet::new();
    let mut moves = Vec::new();
    while moves.len() < max {
        let by_holds = |(n, h): (&u64, &usize)| (*h, *n);
        let (Some((hi, most)), Some((lo, fewest))) = (
            holds
                .iter()
                .max_by_key(|x| by_holds(*x))
                .map(|(n, h)| (*n, *h)),
            holds
                .iter()
                .min_by_key(|x| by_holds(*x))
                .map(|(n, h)| (*n, *h)),
        ) else {
            break;
        };
        if most <= fewest + 1 {
            break;
        }
        // Partitions before queues (a queue's move may move its leader, whose consumers then
        // get their unacked messages again), and replicas that are not the preferred leader
        // first.
        let found = placements
            .iter()
            .filter(|(g, p)| {
                !moved.contains(**g)
                    && p.nodes.contains(&hi)
                    && !p.nodes.contains(&lo)
                    && movable(g)
            })
            .min_by_key(|(g, p)| (g.0.starts_with("q/"), p.nodes.first() == Some(&hi)));
        let Some((g, p)) = found else { break };
        let to: Vec<u64> = p
            .nodes
            .iter()
            .map(|n| if *n == hi { lo } else { *n })
            .collect();
        moves.push((g.0.clone(), p.nodes.clone(), to));
        moved.insert((*g).clone());
        *holds.entry(hi).or_default() -= 1;
        *holds.entry(lo).or_default() += 1;
    }
    moves
}

/// The topic and partition of a partition's group name (`t/<topic>/<p>`).
pub fn partition_of(group: &str) -> Option<(&str, u32)> {
    let (topic, p) = group.strip_prefix("t/")?.rsplit_once('/')?;
    Some((topic, p.parse().ok()?))
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;

/// The members of a group placed on `nodes`, each with its cluster address in `set`; `None`
/// when `set` lacks one of them.
pub(super) fn placed_members(
    set: &super::members::NodeSet,
    nodes: &[u64],
) -> Option<BTreeMap<u64, sluice_replication::Node>> {
    nodes
        .iter()
        .map(|n| Some((*n, sluice_replication::Node::new(set.nodes.get(n)?.clone()))))
        .collect()
}
