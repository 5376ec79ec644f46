//! Consumer groups over a replicated topic (the native `Source::Group`, Kafka share groups).
//! A group keeps one queue per partition, its shared cursor and ack state (the storage
//! engine's `Group`). In a cluster each of those is replicated through its **partition's**
//! log: the group's changes on partition p (deliveries with their attempt numbers, acks, dead
//! letters) are control entries of partition p's group, proposed by that partition's leader
//! through a [`QueueLink`] whose entries start with the group's name and settings, and applied
//! by every replica of the partition ([`PartitionHook`]), as a queue's are by its replicas.
//! See docs/replication.md, "Consumer groups over a topic".
//!
//! Entry layout (docs/format.md, "Replicated logs"):
//!
//! ```text
//! { kind u8 = 1 | version u8 = 1 | name_len u16 LE | name | config_len u16 LE |
//!   config (postcard QueueConfig) | ack journal records ... }
//! ```

use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};
use sluice_replication::{ApplyHook, BoxFuture, HookEntry};
use sluice_storage::{Group, QueueConfig};
use tracing::warn;

use super::queues::QueueLink;
use super::Cluster;
use crate::broker::{BrokerError, ErrorKind};

/// First byte of a group's entry in a partition's log.
pub const GROUP_CHANGE: u8 = 1;
/// Second byte: the layout's version.
pub const GROUP_CHANGE_VERSION: u8 = 1;
/// Version of a partition's snapshot state ([`PartitionState`]).
const PARTITION_STATE_VERSION: u8 = 1;

/// The bytes that start each entry of group `group` with settings `config`.
pub fn change_prefix(group: &str, config: &QueueConfig) -> Vec<u8> {
    // The log settings are the topic's on every node: not carried.
    let config = QueueConfig {
        log: Default::default(),
        ..config.clone()
    };
    let cfg = postcard::to_allocvec(&config).expect("a queue config encodes");
    let name = group.as_bytes();
    let mut out = Vec::with_capacity(6 + name.len() + cfg.len());
    out.push(GROUP_CHANGE);
    out.push(GROUP_CHANGE_VERSION);
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&(cfg.len() as u16).to_le_bytes());
    out.extend_from_slice(&cfg);
    out
}

/// A group's entry: its name, settings and ack journal records.
#[derive(Debug, PartialEq)]
pub struct GroupChange<'a> {
    /// The group.
    pub group: String,
    /// Its settings (the log's are the topic's).
    pub config: QueueConfig,
    /// Ack journal records (format.md, "Ack journal").
    pub records: &'a [u8],
}

/// Reads a group's entry; a clear error for anything else, never a panic.
pub fn decode_change(payload: &[u8]) -> Result<GroupChange<'_>, String> {
    let take = |at: usize, n: usize| {
        payload
            .get(at..at + n)
            .ok_or_else(|| format!("a group entry of {} bytes ends early", payload.len()))
    };
    let head = take(0, 4)?;
    if head[0] != GROUP_CHANGE || head[1] != GROUP_CHANGE_VERSION {
        return Err(format!(
            "not a group entry of a known version (kind {}, version {})",
            head[0], head[1]
        ));
    }
    let name_len = u16::from_le_bytes([head[2], head[3]]) as usize;
    let group = std::str::from_utf8(take(4, name_len)?)
        .map_err(|_| "a group entry's name is not UTF-8".to_string())?
        .to_string();
    let at = 4 + name_len;
    let l = take(at, 2)?;
    let cfg_len = u16::from_le_bytes([l[0], l[1]]) as usize;
    let config: QueueConfig = postcard::from_bytes(take(at + 2, cfg_len)?)
        .map_err(|e| format!("a group entry's settings do not decode: {e}"))?;
    Ok(GroupChange {
        group,
        config,
        records: &payload[at + 2 + cfg_len..],
    })
}

/// A partition's snapshot state read back (as a replica installing it does; for the fuzz
/// target too): its version checked, bad bytes an error.
pub fn decode_state(bytes: &[u8]) -> Result<PartitionState, String> {
    let state: PartitionState = postcard::from_bytes(bytes)
        .map_err(|e| format!("a partition's snapshot state does not decode: {e}"))?;
    if state.version != PARTITION_STATE_VERSION {
        return Err(format!(
            "a partition's snapshot state of version {} (this node reads {PARTITION_STATE_VERSION})",
            state.version
        ));
    }
    Ok(state)
}

/// What a partition's snapshot carries besides where its log continues: each group's
/// committed ack state on the partition.
#[derive(Serialize, Deserialize)]
pub struct PartitionState {
    version: u8,
    groups: Vec<GroupState>,
}

#[derive(Serialize, Deserialize)]
struct GroupState {
    name: String,
    config: QueueConfig,
    /// An ack-state snapshot body (format.md, "Ack journal").
    acks: Vec<u8>,
}

impl Cluster {
    /// Makes every partition queue of `group` (of `topic`) a replica of its partition's group,
    /// once (a topic closed and opened again gets new queues, linked again here). Every use of
    /// a group in a cluster goes through here first.
    pub fn link_group(self: &Arc<Self>, topic: &str, group: &Group) -> Result<(), BrokerError> {
        let mut links = self.group_links.lock().unwrap_or_else(|e| e.into_inner());
        let mut prefix = None;
        for (p, q) in group.partitions().iter().enumerate() {
            if q.is_replicated() {
                continue;
            }
            let key = (topic.to_string(), group.name().to_string(), p as u32);
            let link = links
                .entry(key)
                .or_insert_with(|| {
                    let prefix = prefix
                        .get_or_insert_with(|| change_prefix(group.name(), group.config()))
                        .clone();
                    QueueLink::for_partition(
                        self,
                        topic,
                        group.name(),
                        p as u32,
                        prefix,
                        group.config().clone(),
                    )
                })
                .clone();
            q.replicate(link)?;
        }
        Ok(())
    }

    /// Makes dead-letter queue `name` of a group of `topic` through the metadata when this
    /// node does not know it yet, placed on as many nodes as the topic's partition 0, and
    /// waits for its leader (from a blocking thread).
    pub fn ensure_dead_letter_queue(
        self: &Arc<Self>,
        name: &str,
        like: &QueueConfig,
        topic: &str,
    ) -> Result<(), BrokerError> {
        let group = super::queues::queue_group(name);
        if self.queue(name).is_some() || self.placement(&group).is_some() {
            return Ok(());
        }
        let factor = match self.placement(&super::partition_group(topic, 0)) {
            Some(p) => p.nodes.len() as u32,
            None => self.replication_factor(None)?,
        };
        let cmd = super::MetaCommand::CreateDeadLetterQueue {
            name: name.to_string(),
            like: like.clone(),
            replicas: self.place(1, factor).remove(0),
        };
        self.create_queue_blocking(cmd, name)
    }
}

/// Applies the committed group entries of a topic partition's group on this node, and makes
/// their state durable when the group saves what it applied or compacts.
pub struct PartitionHook {
    pub(super) topic: String,
    pub(super) partition: u32,
    pub(super) cluster: Weak<Cluster>,
}

impl PartitionHook {
    /// Runs `f` with the cluster and the topic off the async threads; `None` (logged) when
    /// the broker is gone or `f` failed.
    async fn on_topic<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Arc<Cluster>, &sluice_storage::Topic) -> Result<T, BrokerError> + Send + 'static,
    ) -> Option<T> {
        let cluster = self.cluster.upgrade()?;
        let broker = cluster.broker().ok()?;
        let topic = self.topic.clone();
        let r = crate::broker::spawn_blocking(move || {
            let t = broker.store().topic(&topic)?;
            f(&cluster, &t)
        })
        .await;
        match r
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            Ok(v) => Some(v),
            Err(e) => {
                warn!(topic = %self.topic, partition = self.partition, "{what}: {e}");
                None
            }
        }
    }

    /// Group `name` of `t`, made with `config` when absent, linked to the partitions' groups.
    fn group(
        cluster: &Arc<Cluster>,
        t: &sluice_storage::Topic,
        name: &str,
        config: QueueConfig,
    ) -> Result<Arc<Group>, BrokerError> {
        let g = t.group(name, config)?;
        cluster.link_group(t.name(), &g)?;
        Ok(g)
    }
}

impl ApplyHook for PartitionHook {
    fn apply(&self, index: u64, offset: u64, payload: &[u8]) -> BoxFuture<'_, ()> {
        let entry = HookEntry::Control {
            index,
            offset,
            payload: payload.to_vec().into(),
        };
        self.apply_all(vec![entry])
    }

    /// Each group entry to its group's queue over this partition (made when absent, with the
    /// entry's settings); entries holding nothing for a group are passed by each group's
    /// cursor as it reaches them.
    fn apply_all(&self, entries: Vec<HookEntry>) -> BoxFuture<'_, ()> {
        let p = self.partition;
        let controls: Vec<(u64, u64, bytes::Bytes)> = entries
            .into_iter()
            .filter_map(|e| match e {
                HookEntry::Control {
                    index,
                    offset,
                    payload,
                } => Some((index, offset, payload)),
                HookEntry::Pass { .. } => None,
            })
            .collect();
        Box::pin(async move {
            if controls.is_empty() {
                return;
            }
            self.on_topic("cannot apply group changes", move |c, t| {
                for (index, offset, payload) in controls {
                    if let Some(forget) = super::forget::decode_forget(&payload) {
                        let r = forget.map_err(|e| BrokerError::new(ErrorKind::Internal, e));
                        if let Err(e) = r.and_then(|g| Ok(super::forget::apply_forget(t, &g)?)) {
                            warn!(
                                topic = t.name(),
                                partition = p,
                                index,
                                "cannot forget a group: {e}"
                            );
                        }
                        continue;
                    }
                    let r = decode_change(&payload)
                        .map_err(|e| BrokerError::new(ErrorKind::Internal, e))
                        .and_then(|ch| {
                            let g = Self::group(c, t, &ch.group, ch.config)?;
                            Ok(g.queue(p)?.apply_replicated(offset, ch.records)?)
                        });
                    if let Err(e) = r {
                        warn!(
                            topic = t.name(),
                            partition = p,
                            index,
                            "cannot apply a group change: {e}"
                        );
                    }
                }
                Ok(())
            })
            .await;
        })
    }

    fn compact(&self, _upto: u64, offset: u64) -> BoxFuture<'_, bool> {
        let p = self.partition;
        Box::pin(async move {
            self.on_topic("cannot save the groups' state", move |c, t| {
                for g in t.groups_open() {
                    c.link_group(t.name(), &g)?;
                    g.queue(p)?.persist_committed(offset)?;
                }
                Ok(())
            })
            .await
            .is_some()
        })
    }

    fn saves_applied(&self) -> bool {
        true
    }

    fn persist(&self) -> BoxFuture<'_, bool> {
        let p = self.partition;
        Box::pin(async move {
            self.on_topic("cannot sync the groups' state", move |_, t| {
                for g in t.groups_open() {
                    let q = g.queue(p)?;
                    if q.is_replicated() {
                        q.flush()?;
                    }
                }
                Ok(())
            })
            .await
            .is_some()
        })
    }

    fn snapshot(&self) -> BoxFuture<'_, Option<Vec<u8>>> {
        let p = self.partition;
        Box::pin(async move {
            self.on_topic("no group state for a snapshot", move |c, t| {
                let mut groups = Vec::new();
                for g in t.groups_open() {
                    c.link_group(t.name(), &g)?;
                    groups.push(GroupState {
                        name: g.name().to_string(),
                        config: g.config().clone(),
                        acks: g.queue(p)?.committed_snapshot()?,
                    });
                }
                let state = PartitionState {
                    version: PARTITION_STATE_VERSION,
                    groups,
                };
                Ok(postcard::to_allocvec(&state).expect("a partition's state encodes"))
            })
            .await
        })
    }

    fn install(&self, state: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        let p = self.partition;
        Box::pin(async move {
            let state = decode_state(&state)?;
            self.on_topic("cannot install the groups' state", move |c, t| {
                for gs in state.groups {
                    let g = Self::group(c, t, &gs.name, gs.config)?;
                    g.queue(p)?.install_committed(&gs.acks)?;
                }
                Ok(())
            })
            .await
            .ok_or_else(|| format!("topic {}: the groups' state not installed", self.topic))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_entry_reads_back_and_bad_bytes_are_refused() {
        let cfg = QueueConfig {
            max_deliveries: 7,
            ack_timeout_ms: 1234,
            ..QueueConfig::default()
        };
        let mut e = change_prefix("g1", &cfg);
        e.extend_from_slice(b"recs");
        let ch = decode_change(&e).unwrap();
        assert_eq!(ch.group, "g1");
        assert_eq!(ch.config.max_deliveries, 7);
        assert_eq!(ch.config.ack_timeout_ms, 1234);
        assert_eq!(ch.records, b"recs");
        for n in 0..e.len() - 4 {
            assert!(decode_change(&e[..n]).is_err(), "{n} bytes");
        }
        let mut other = e.clone();
        other[1] = 9;
        assert!(decode_change(&other).unwrap_err().contains("version 9"));
    }
}
