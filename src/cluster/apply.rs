//! Applying the metadata log's commands on this node: topics and queues created (with their
//! groups opened and formed where placed here) and deleted, replicas moved, retention changed,
//! offsets committed, the cluster's nodes set. Every node applies the same commands in the
//! same order, so every node's store and placements agree.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use sluice_replication::{ApplyHook, BoxFuture, Consensus, GroupId, Node, ReplicatedLog};
use tracing::{info, warn};

use super::incarnation::Made;
use super::{members, partition_group, placement, queues, Cluster, MetaCommand, FIRST_LEADER_WAIT};
use crate::broker::{Broker, BrokerError, ErrorKind};

/// A topic's log settings as a creation command carries them.
fn log_settings(
    segment_bytes_max: Option<u64>,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
) -> crate::protocol::LogSettings {
    crate::protocol::LogSettings {
        segment_bytes_max,
        retention_ms,
        retention_bytes,
        ..Default::default()
    }
}

/// A topic a creation command makes.
struct NewTopic {
    name: String,
    partitions: u32,
    settings: crate::protocol::LogSettings,
    id: Option<[u8; 16]>,
    /// Each partition's nodes, when placed.
    replicas: Option<Vec<Vec<u64>>>,
}

impl NewTopic {
    fn new(
        name: String,
        partitions: u32,
        settings: crate::protocol::LogSettings,
        id: Option<[u8; 16]>,
    ) -> NewTopic {
        NewTopic {
            name,
            partitions,
            settings,
            id,
            replicas: None,
        }
    }
}

impl Cluster {
    /// Applies a committed metadata command on this node.
    async fn apply_meta(self: &Arc<Self>, index: u64, cmd: MetaCommand) {
        let Ok(broker) = self.broker() else { return };
        match cmd {
            MetaCommand::CreateTopic {
                name,
                partitions,
                segment_bytes_max,
            } => {
                let settings = log_settings(segment_bytes_max, None, None);
                let topic = NewTopic::new(name, partitions, settings, None);
                self.apply_create(index, broker, topic).await
            }
            MetaCommand::CreateTopicWithId {
                name,
                partitions,
                segment_bytes_max,
                id,
            } => {
                let settings = log_settings(segment_bytes_max, None, None);
                let topic = NewTopic::new(name, partitions, settings, Some(id));
                self.apply_create(index, broker, topic).await
            }
            MetaCommand::CreateTopicWithSettings {
                name,
                partitions,
                id,
                segment_bytes_max,
                retention_ms,
                retention_bytes,
            } => {
                let settings = log_settings(segment_bytes_max, retention_ms, retention_bytes);
                let topic = NewTopic::new(name, partitions, settings, Some(id));
                self.apply_create(index, broker, topic).await
            }
            MetaCommand::CreateTopicPlaced {
                name,
                id,
                segment_bytes_max,
                retention_ms,
                retention_bytes,
                replicas,
            } => {
                let settings = log_settings(segment_bytes_max, retention_ms, retention_bytes);
                let partitions = replicas.len() as u32;
                let mut topic = NewTopic::new(name, partitions, settings, Some(id));
                topic.replicas = Some(replicas);
                self.apply_create(index, broker, topic).await
            }
            MetaCommand::SetReplicas { moves } => self.apply_moves(index, moves).await,
            MetaCommand::SetTopicRetention {
                name,
                retention_ms,
                retention_bytes,
            } => {
                let made = crate::broker::spawn_blocking(move || {
                    broker.set_topic_retention_local(&name, retention_ms, retention_bytes)
                })
                .await;
                if let Ok(Err(e)) = made {
                    warn!(index, "metadata: cannot change a topic's retention: {e}");
                }
            }
            MetaCommand::CommitOffsets {
                group,
                topic,
                commits,
            } => {
                let made = crate::broker::spawn_blocking(move || {
                    broker.apply_offsets(&group, &topic, &commits)
                })
                .await;
                if let Ok(Err(e)) = made {
                    warn!(index, "metadata: cannot store committed offsets: {e}");
                }
            }
            MetaCommand::DeleteGroupOffsets { group } => {
                let made = crate::broker::spawn_blocking(move || {
                    broker.delete_group_offsets_local(&group)
                })
                .await;
                if let Ok(Err(e)) = made {
                    warn!(index, "metadata: cannot delete a group's offsets: {e}");
                }
            }
            MetaCommand::CreateQueue { name, config } => {
                self.apply_create_queue(index, broker, name, config, None)
                    .await
            }
            MetaCommand::CreateQueuePlaced {
                name,
                config,
                replicas,
            } => {
                self.apply_create_queue(index, broker, name, config, Some(replicas))
                    .await
            }
            MetaCommand::DeleteQueue { name } => {
                self.apply_delete_queue(broker, name, Some(index)).await
            }
            MetaCommand::SetNodes { base, nodes } => self.apply_set_nodes(index, base, nodes),
            MetaCommand::DeleteTopic { name } => self.apply_delete_topic(broker, name, None).await,
            MetaCommand::DeleteTopicWithId { name, id } => {
                self.apply_delete_topic(broker, name, Some(id)).await
            }
            MetaCommand::SetFactor { groups, factor } => {
                self.apply_set_factor(index, groups, factor)
            }
            MetaCommand::Reassign { moves } => self.apply_reassign(index, moves).await,
            MetaCommand::AddPartitions {
                name,
                id,
                from,
                replicas,
            } => {
                self.apply_add_partitions(index, broker, name, id, from, replicas)
                    .await
            }
            MetaCommand::CreateDeadLetterQueue {
                name,
                like,
                replicas,
            } => {
                self.apply_create_dead_letter_queue(index, broker, name, like, replicas)
                    .await
            }
        }
    }

    /// Applies a topic creation: the topic on this node, then its placements and its
    /// partitions' groups. Nothing when the store holds another topic of that name (created
    /// again since: the metadata applied again after a restart); the groups' directories
    /// cleared of any left over when the topic is new here.
    async fn apply_create(self: &Arc<Self>, index: u64, broker: Arc<Broker>, topic: NewTopic) {
        let NewTopic {
            name,
            partitions,
            settings,
            id,
            replicas,
        } = topic;
        let n = name.clone();
        let made = crate::broker::spawn_blocking(move || -> Result<Made, BrokerError> {
            let tid = id.map(sluice_storage::TopicId);
            match broker.create_topic_local(&n, &settings, partitions, tid) {
                Ok(()) => Ok(Made::Fresh),
                Err(e) if e.kind == ErrorKind::AlreadyExists => {
                    let held = broker.topic_meta(&n).ok().map(|(t, _)| t.0);
                    let other = id.is_some() && held.is_some() && held != id;
                    Ok(if other { Made::Other } else { Made::Existing })
                }
                Err(e) => Err(e),
            }
        })
        .await;
        match made {
            Ok(Ok(Made::Other)) => {
                return info!(index, topic = %name, "metadata: the creation of an earlier topic of this name, skipped");
            }
            Ok(Ok(Made::Fresh)) => {
                let groups = (0..partitions).map(|p| partition_group(&name, p));
                self.remove_groups(groups).await;
            }
            Ok(Ok(Made::Existing)) => {}
            Ok(Err(e)) => {
                warn!(index, topic = %name, "metadata: cannot create the topic: {e}")
            }
            Err(e) => warn!(index, topic = %name, "metadata: cannot create the topic: {e}"),
        }
        for (p, nodes) in replicas.into_iter().flatten().enumerate() {
            self.set_placement(partition_group(&name, p as u32), nodes);
        }
        self.set_meta_partitions(&name, Some(partitions));
        self.open_partitions(index, &name, 0..partitions).await;
    }

    /// Opens and forms the groups of `topic`'s `partitions` placed on this node, and marks
    /// the others as placed elsewhere.
    pub(super) async fn open_partitions(
        self: &Arc<Self>,
        index: u64,
        name: &str,
        partitions: std::ops::Range<u32>,
    ) {
        let set = self.node_set();
        let meta_leader = self.meta.get().and_then(|m| m.status().leader);
        for p in partitions {
            let group = partition_group(name, p);
            if !self.is_placed_here(&group) {
                // A replica open here (the metadata applied again after a restart, before
                // the moves onto this node) is left to `close_moved`.
                if self.partition(name, p).is_none() {
                    let why = format!("this node holds no replica of {group}");
                    self.mark_elsewhere(name, p, &why);
                }
                continue;
            }
            match self.open_partition(name, p).await {
                Ok(g) => match self.placement(&group) {
                    Some(placed) => self.form_placed(g, &set, &placed.nodes),
                    None => self.form(g, &set, meta_leader, p),
                },
                Err(e) => {
                    warn!(index, topic = %name, partition = p, "metadata: cannot open the partition's group: {e}")
                }
            }
        }
    }

    /// Applies a queue creation: the queue and its dead-letter queue on this node, then their
    /// groups where placed here (`replicas`; a dead-letter queue without a placement yet
    /// gets the same), each led first by its placement's first node; without placement
    /// (an older command), on every node, led first by the metadata's leader and the node
    /// after it.
    async fn apply_create_queue(
        self: &Arc<Self>,
        index: u64,
        broker: Arc<Broker>,
        name: String,
        config: sluice_storage::QueueConfig,
        replicas: Option<Vec<u64>>,
    ) {
        if self.is_earlier_queue(&name, index) {
            return;
        }
        let n = name.clone();
        let made = crate::broker::spawn_blocking(move || -> Result<(String, bool), BrokerError> {
            let store = broker.store();
            let (q, fresh) = match store.create_queue(&n, config) {
                Ok(q) => (q, true),
                Err(sluice_storage::Error::AlreadyExists { .. }) => (store.queue(&n)?, false),
                Err(e) => return Err(e.into()),
            };
            Ok((store.dead_letter_queue_of(&q)?.name().to_string(), fresh))
        })
        .await;
        let (dlq, fresh) = match made {
            Ok(Ok(made)) => made,
            Ok(Err(e)) => {
                return warn!(index, queue = %name, "metadata: cannot create the queue: {e}");
            }
            Err(e) => return warn!(index, queue = %name, "metadata: cannot create the queue: {e}"),
        };
        if let Some(nodes) = replicas {
            self.set_placement(queues::queue_group(&name), nodes.clone());
            if self.placement(&queues::queue_group(&dlq)).is_none() {
                self.set_placement(queues::queue_group(&dlq), nodes);
            }
        }
        if fresh {
            self.remove_groups([queues::queue_group(&name)]).await;
        }
        self.open_created_queue(index, &name, 0).await;
        if fresh && self.holds_queue(&name) {
            self.record_queue_created(&name, index);
        }
        self.open_created_queue(index, &dlq, 1).await;
    }

    /// Applies the creation of a group's dead-letter queue: the queue on this node (unless
    /// it exists), its placement (unless it has one), then its group where placed.
    async fn apply_create_dead_letter_queue(
        self: &Arc<Self>,
        index: u64,
        broker: Arc<Broker>,
        name: String,
        like: sluice_storage::QueueConfig,
        replicas: Vec<u64>,
    ) {
        let n = name.clone();
        let made = crate::broker::spawn_blocking(move || -> Result<(), BrokerError> {
            broker.store().dead_letter_queue(&n, &like)?;
            Ok(())
        })
        .await;
        if let Err(e) = made
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            return warn!(index, queue = %name, "metadata: cannot create the dead-letter queue: {e}");
        }
        if self.placement(&queues::queue_group(&name)).is_none() {
            self.set_placement(queues::queue_group(&name), replicas);
        }
        self.open_created_queue(index, &name, 0).await;
    }

    /// Opens and forms the group of queue `q`, just created, where it is placed (the `p`-th
    /// group of its creation); links it elsewhere.
    async fn open_created_queue(self: &Arc<Self>, index: u64, q: &str, p: u32) {
        let group = queues::queue_group(q);
        if !self.is_placed_here(&group) {
            if let Err(e) = self.link_queue(q) {
                warn!(index, queue = %q, "metadata: cannot link the queue: {e}");
            }
            return;
        }
        let set = self.node_set();
        let meta_leader = self.meta.get().and_then(|m| m.status().leader);
        match self.open_queue(q).await {
            Ok(g) => match self.placement(&group) {
                Some(placed) => self.form_placed(g, &set, &placed.nodes),
                None => self.form(g, &set, meta_leader, p),
            },
            Err(e) => warn!(index, queue = %q, "metadata: cannot open the queue's group: {e}"),
        }
    }

    /// Forms a group created at a metadata index where `set` were the cluster's nodes, with
    /// them as its members, when this node is one of them (a node added later is added to
    /// the group by its leader: forming it here would make a second group).
    ///
    /// Leaders are spread: the `p`-th group of a creation has as first candidate the p-th
    /// node after the metadata's leader (which proposed the creation). Only it forms the group
    /// at once, which makes it stand; the others join when it leads, or form the group
    /// themselves after [`FIRST_LEADER_WAIT`] without one (the candidate died). A group formed
    /// before (the metadata applied again after a restart) is left alone.
    fn form(&self, g: ReplicatedLog, set: &members::NodeSet, meta_leader: Option<u64>, p: u32) {
        let me = self.config.node_id;
        if !set.nodes.contains_key(&me) {
            return;
        }
        let members = members::members_of(&set.nodes);
        let ids: Vec<u64> = set.nodes.keys().copied().collect();
        let first = |leader: u64| {
            let at = ids.iter().position(|&i| i == leader).unwrap_or(0);
            ids[(at + p as usize) % ids.len()]
        };
        if meta_leader.map_or(true, |l| first(l) == me) {
            tokio::spawn(async move {
                if let Err(e) = g.bootstrap(members).await {
                    warn!(group = %g.group(), "cannot form the group: {e}");
                }
            });
        } else {
            bootstrap_later(g, members);
        }
    }

    /// Applies a queue's deletion (at metadata `index`; `None` from a snapshot): its group
    /// closed and its directory removed, its link and placement forgotten, the queue deleted
    /// from this node's store. Nothing when the queue held here was created after `index`.
    pub(super) async fn apply_delete_queue(
        self: &Arc<Self>,
        broker: Arc<Broker>,
        name: String,
        index: Option<u64>,
    ) {
        if index.is_some_and(|i| self.is_earlier_queue(&name, i)) {
            return;
        }
        let gone = self
            .queues
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        if let Some(g) = gone {
            self.node.close_group(g.group()).await;
        }
        self.remove_groups([queues::queue_group(&name)]).await;
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        self.forget_placement(&queues::queue_group(&name));
        let _ = crate::broker::spawn_blocking(move || broker.delete_queue_local(&name)).await;
    }

    /// Applies a topic's deletion: its partitions' groups closed and their directories
    /// removed, their placements and producer gates forgotten, the topic deleted from this
    /// node's store. Nothing when `id` is not the id of the topic held here (created again
    /// since).
    pub(super) async fn apply_delete_topic(
        self: &Arc<Self>,
        broker: Arc<Broker>,
        name: String,
        id: Option<[u8; 16]>,
    ) {
        let (b, n) = (broker.clone(), name.clone());
        let held = crate::broker::spawn_blocking(move || b.topic_meta(&n).ok())
            .await
            .ok()
            .flatten();
        if let (Some(id), Some((held, _))) = (id, held) {
            if held.0 != id {
                return info!(topic = %name, "metadata: the deletion of an earlier topic of this name, skipped");
            }
        }
        let count = held
            .map_or(0, |(_, n)| n)
            .max(self.meta_partitions(&name).unwrap_or(0));
        self.set_meta_partitions(&name, None);
        let gone: Vec<ReplicatedLog> = {
            let mut parts = self.partitions.write().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<_> = parts.keys().filter(|(t, _)| *t == name).cloned().collect();
            keys.into_iter().filter_map(|k| parts.remove(&k)).collect()
        };
        for g in gone {
            self.node.close_group(g.group()).await;
        }
        self.remove_groups((0..count).map(|p| partition_group(&name, p)))
            .await;
        let placed: Vec<GroupId> = self
            .placements
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|g| placement::partition_of(&g.0).is_some_and(|(t, _)| t == name))
            .cloned()
            .collect();
        for g in &placed {
            self.forget_placement(g);
        }
        self.gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(t, _), _| *t != name);
        let b = broker.clone();
        let n = name.clone();
        let _ = crate::broker::spawn_blocking(move || b.delete_topic_local(&n)).await;
    }
}

/// Forms `g` with `members` when no leader shows up within [`FIRST_LEADER_WAIT`] (its first
/// candidate died before standing).
pub(super) fn bootstrap_later(g: ReplicatedLog, members: BTreeMap<u64, Node>) {
    tokio::spawn(async move {
        if g.wait_leader(FIRST_LEADER_WAIT).await.is_none() {
            if let Err(e) = g.bootstrap(members).await {
                warn!(group = %g.group(), "cannot form the group: {e}");
            }
        }
    });
}

/// Applies the `meta` group's entries to the cluster.
pub(super) struct MetaHook(pub(super) Weak<Cluster>);

impl ApplyHook for MetaHook {
    fn apply(&self, index: u64, _offset: u64, payload: &[u8]) -> BoxFuture<'_, ()> {
        let cmd = MetaCommand::decode(payload);
        Box::pin(async move {
            let Some(c) = self.0.upgrade() else { return };
            match cmd {
                Ok(cmd) => c.apply_meta(index, cmd).await,
                Err(e) => warn!(index, "metadata entry does not decode, skipped: {e}"),
            }
        })
    }

    /// Saves this node's metadata image (`image`): the entries up to `upto` are not applied
    /// again after a restart.
    fn compact(&self, upto: u64, _offset: u64) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let Some(c) = self.0.upgrade() else {
                return false;
            };
            match c.save_image(upto).await {
                Ok(()) => true,
                Err(e) => {
                    warn!(upto, "metadata: no image saved, the log is not cut: {e}");
                    false
                }
            }
        })
    }

    fn snapshot(&self) -> BoxFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            let c = self.0.upgrade()?;
            let broker = c.broker().ok()?;
            let me = c.clone();
            let taken =
                crate::broker::spawn_blocking(move || me.capture_image(&broker, false)).await;
            match taken {
                Ok(Ok(image)) => Some(image.encode(0)),
                Ok(Err(e)) => {
                    warn!("metadata: no snapshot taken: {e}");
                    None
                }
                Err(e) => {
                    warn!("metadata: no snapshot taken: {e}");
                    None
                }
            }
        })
    }

    /// Installs a snapshot's image, then saves it as this node's image: a restart restores
    /// from it, as the group's applied state now names the snapshot's entry.
    fn install(&self, state: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let c = self.0.upgrade().ok_or("the cluster has stopped")?;
            let (image, _) = super::image::MetaImage::decode(&state).map_err(|e| e.to_string())?;
            c.install_image(image).await?;
            let root = c.root.clone();
            crate::broker::spawn_blocking(move || {
                super::image::save(&sluice_storage::StdFs, &root, &state)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("the metadata image: {e}"))
        })
    }
}
