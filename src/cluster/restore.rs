//! Restoring the cluster metadata from a [`MetaImage`]: its memory half at a restart (the
//! entries that built it were cut), and the whole of it on a node that installs a snapshot of
//! the `meta` group (it lacks entries the leader cut).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sluice_replication::GroupId;
use tracing::{info, warn};

use super::image::MetaImage;
use super::{members, partition_group, queues, Cluster};
use crate::broker::{Broker, BrokerError, ErrorKind};

impl Cluster {
    /// Sets the metadata's memory half (nodes, placements, partition counts) to `image`'s.
    pub(super) fn restore_memory(&self, image: &MetaImage) {
        for (id, addr) in &image.nodes {
            if *id != self.config.node_id {
                self.node.set_peer(*id, addr.clone());
            }
        }
        *self.nodes.write().unwrap_or_else(|e| e.into_inner()) = members::NodeSet {
            nodes: image.nodes.clone(),
            version: image.nodes_version,
        };
        self.node.set_members_version(image.nodes_version);
        let placements = image.placement_map();
        let gone: Vec<GroupId> = {
            let mut held = self.placements.write().unwrap_or_else(|e| e.into_inner());
            let gone = held
                .keys()
                .filter(|g| !placements.contains_key(g))
                .cloned()
                .collect();
            *held = placements;
            gone
        };
        for g in &gone {
            self.node.forget_leader(g);
        }
        *self.meta_counts.write().unwrap_or_else(|e| e.into_inner()) =
            image.counts.iter().cloned().collect::<HashMap<_, _>>();
        *self
            .reassigned_from
            .write()
            .unwrap_or_else(|e| e.into_inner()) = image
            .reassigned_from
            .iter()
            .map(|(g, nodes)| (GroupId(g.clone()), nodes.clone()))
            .collect();
    }

    /// Makes this node's metadata `image`'s, from a snapshot of the `meta` group: what the
    /// image lacks is deleted (its topics and queues; a topic of another id is deleted and
    /// created again), what it has is created or grown, its offsets stored, its memory half
    /// set, and the replicas placed here opened. A replica opened here forms no group at once:
    /// the group exists elsewhere, and it is formed here only when no leader shows up within
    /// [`super::FIRST_LEADER_WAIT`].
    pub(super) async fn install_image(self: &Arc<Self>, image: MetaImage) -> Result<(), String> {
        let broker = self.broker().map_err(|e| e.to_string())?;
        let b = broker.clone();
        let (topics, queues_here) = crate::broker::spawn_blocking(move || {
            let topics: Vec<(String, Option<[u8; 16]>)> = b
                .list_topics()
                .into_iter()
                .map(|t| {
                    let id = b.topic_meta(&t).ok().map(|(id, _)| id.0);
                    (t, id)
                })
                .collect();
            (topics, b.list_queues())
        })
        .await
        .map_err(|e| e.to_string())?;
        let wanted: HashMap<&str, [u8; 16]> = image
            .topics
            .iter()
            .map(|t| (t.name.as_str(), t.id))
            .collect();
        for (name, id) in topics {
            // A topic whose id cannot be read here is left alone when the image has it.
            let gone = match (wanted.get(name.as_str()), id) {
                (None, _) => true,
                (Some(want), Some(id)) => *want != id,
                (Some(_), None) => false,
            };
            if gone {
                info!(topic = %name, "metadata snapshot: the topic was deleted");
                self.apply_delete_topic(broker.clone(), name, None).await;
            }
        }
        let queue_names: HashSet<&str> = image.queues.iter().map(|q| q.name.as_str()).collect();
        for name in queues_here {
            if !queue_names.contains(name.as_str()) {
                info!(queue = %name, "metadata snapshot: the queue was deleted");
                self.apply_delete_queue(broker.clone(), name, None).await;
            }
        }
        self.restore_memory(&image);
        let b = broker.clone();
        let store_half = image.clone();
        let fresh = crate::broker::spawn_blocking(move || restore_store(&b, &store_half))
            .await
            .map_err(|e| e.to_string())??;
        // Created here now: any directory of their groups is left over from an earlier one.
        self.remove_groups(fresh).await;
        for t in &image.topics {
            for p in 0..t.partitions {
                self.open_installed(&partition_group(&t.name, p)).await;
            }
        }
        for q in &image.queues {
            self.open_installed(&queues::queue_group(&q.name)).await;
        }
        info!(
            topics = image.topics.len(),
            queues = image.queues.len(),
            "metadata snapshot installed"
        );
        Ok(())
    }

    /// Opens this node's replica of `group` (a partition or a queue) when it is placed here,
    /// forming it only when no leader shows up; marks a partition placed elsewhere and links
    /// a queue held elsewhere.
    async fn open_installed(self: &Arc<Self>, group: &GroupId) {
        let here = self.is_placed_here(group);
        let opened = match (
            super::placement::partition_of(&group.0),
            group.0.strip_prefix("q/"),
        ) {
            (Some((topic, p)), _) if here => self.open_partition(topic, p).await,
            (None, Some(queue)) if here => self.open_queue(queue).await,
            (Some((topic, p)), _) => {
                if self.partition(topic, p).is_none() {
                    self.mark_elsewhere(
                        topic,
                        p,
                        &format!("this node holds no replica of {group}"),
                    );
                }
                return;
            }
            (None, Some(queue)) => {
                if let Err(e) = self.link_queue(queue) {
                    warn!(%group, "metadata snapshot: cannot link the queue: {e}");
                }
                return;
            }
            (None, None) => return,
        };
        let g = match opened {
            Ok(g) => g,
            Err(e) => return warn!(%group, "metadata snapshot: cannot open the replica: {e}"),
        };
        let set = self.node_set();
        let nodes = self
            .placement(group)
            .map(|p| p.nodes)
            .unwrap_or_else(|| set.nodes.keys().copied().collect());
        if let Some(members) = super::placement::placed_members(&set, &nodes) {
            super::apply::bootstrap_later(g, members);
        }
    }
}

/// Deletes the offsets this node holds of a group (or named subscriber) on a topic of
/// `image` where the image has none: the group's offsets were deleted while this node was
/// behind (the deletion is among the entries the snapshot replaced).
fn forget_deleted_groups(broker: &Broker, image: &MetaImage) -> Result<(), String> {
    let kept: HashSet<(&str, &str)> = image
        .offsets
        .iter()
        .map(|o| (o.topic.as_str(), o.group.as_str()))
        .collect();
    for t in &image.topics {
        let Ok(topic) = broker.store().topic(&t.name) else {
            continue;
        };
        for group in topic.subscribers() {
            if kept.contains(&(t.name.as_str(), group.as_str())) {
                continue;
            }
            match topic.delete_subscriber(&group) {
                Ok(()) | Err(sluice_storage::Error::NotFound { .. }) => {
                    info!(topic = %t.name, %group, "offsets deleted while this node was behind");
                }
                Err(e) => return Err(format!("offsets of {group:?} on {:?}: {e}", t.name)),
            }
        }
    }
    Ok(())
}

/// The store half of `image` on `broker`'s store: topics created (under the image's id),
/// grown and given the image's retention; queues created; offsets stored, then synced.
/// Answers the groups of the topics and queues created now.
fn restore_store(broker: &Broker, image: &MetaImage) -> Result<Vec<GroupId>, String> {
    let mut fresh = Vec::new();
    for t in &image.topics {
        let settings = crate::protocol::LogSettings {
            segment_bytes_max: Some(t.segment_bytes_max),
            retention_ms: t.retention_ms,
            retention_bytes: t.retention_bytes,
            ..Default::default()
        };
        let id = Some(sluice_storage::TopicId(t.id));
        match broker.create_topic_local(&t.name, &settings, t.partitions, id) {
            Ok(()) => {
                fresh.extend((0..t.partitions).map(|p| partition_group(&t.name, p)));
                continue;
            }
            Err(e) if e.kind == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("topic {:?}: {e}", t.name)),
        }
        let topic = broker.store().topic(&t.name).map_err(|e| e.to_string())?;
        if topic.partition_count() < t.partitions {
            broker
                .store()
                .add_partitions(&t.name, t.partitions)
                .map_err(|e| format!("topic {:?}: {e}", t.name))?;
        }
        let log = topic.log_config();
        if (log.retention_ms, log.retention_bytes) != (t.retention_ms, t.retention_bytes) {
            broker
                .set_topic_retention_local(&t.name, t.retention_ms, t.retention_bytes)
                .map_err(|e| format!("topic {:?}: {e}", t.name))?;
        }
    }
    for q in &image.queues {
        match broker.store().create_queue(&q.name, q.config.clone()) {
            Ok(_) => fresh.push(queues::queue_group(&q.name)),
            Err(sluice_storage::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(format!("queue {:?}: {e}", q.name)),
        }
    }
    forget_deleted_groups(broker, image)?;
    for o in &image.offsets {
        broker
            .apply_offsets(&o.group, &o.topic, &o.commits)
            .map_err(|e: BrokerError| format!("offsets of {:?} on {:?}: {e}", o.group, o.topic))?;
    }
    for t in broker.store().open_topics() {
        t.flush_offsets().map_err(|e| e.to_string())?;
    }
    Ok(fresh)
}
