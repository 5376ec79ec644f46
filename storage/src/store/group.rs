//! [`Group`]: a consumer group of a topic: one shared cursor with ack state per partition (a
//! [`Queue`] over that partition's log), all with the group's settings.
//!
//! Directory of group `g` (see `partition`): `groups/<g>/config` (the settings, written last at
//! creation), `groups/<g>/acks.*` (partition 0, where a group written before partitions keeps
//! its one ack state) and `groups/<g>/partition-<n>/acks.*` (partition n >= 1, made when the
//! group or the partition is).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::error::{Error, IoContext, Result};
use crate::log::Log;
use crate::types::Offset;

use super::consumer::NEXT_EMBEDDED_CONSUMER;
use super::queue::{ConsumerId, Delivery};

use super::dirs::make_dir;
use super::partition::{group_partition_dir, partition_of, GROUP_PARTITION_PREFIX};
use super::queue::{Queue, QueueParts};
use super::{QueueConfig, Topic};

/// A consumer group of a topic: one [`Queue`] (shared cursor and ack state) per partition.
pub struct Group {
    pub(in crate::store) name: String,
    pub(in crate::store) dir: PathBuf,
    pub(in crate::store) config: QueueConfig,
    pub(in crate::store) parts: RwLock<Vec<Arc<Queue>>>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("name", &self.name).finish()
    }
}

impl Group {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its settings (every partition's).
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Number of partitions it consumes (the topic's).
    pub fn partition_count(&self) -> u32 {
        self.parts.read().unwrap_or_else(|e| e.into_inner()).len() as u32
    }

    /// Its queue over every partition, in partition order.
    pub fn partitions(&self) -> Vec<Arc<Queue>> {
        self.parts.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Its queue over partition `p`; `NotFound` past the topic's partitions.
    pub fn queue(&self, p: u32) -> Result<Arc<Queue>> {
        self.parts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(p as usize)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                kind: "partition",
                name: format!("{}/{p}", self.name),
            })
    }

    /// A new competing consumer of the group over every partition it has now.
    pub fn consumer(self: &Arc<Self>) -> GroupConsumer {
        GroupConsumer {
            queues: self.partitions(),
            id: ConsumerId(NEXT_EMBEDDED_CONSUMER.fetch_add(1, Ordering::Relaxed)),
            turn: AtomicUsize::new(0),
        }
    }

    pub(in crate::store) fn shut(&self, clean: bool) -> Result<()> {
        let mut first = Ok(());
        for q in self.partitions() {
            let r = if clean { q.close() } else { q.shut(false) };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// One competing consumer of a group (see [`Group::consumer`]): each `receive` starts one
/// partition further than the last and takes from each partition in turn, so no partition
/// waits behind another. Messages are named by (partition, offset). Dropping it returns what it
/// holds to the group at once.
#[derive(Debug)]
pub struct GroupConsumer {
    queues: Vec<Arc<Queue>>,
    id: ConsumerId,
    turn: AtomicUsize,
}

impl GroupConsumer {
    /// Its id in the group's queues.
    pub fn id(&self) -> ConsumerId {
        self.id
    }

    /// Takes up to `max` messages over the partitions (within each partition's unacked
    /// bounds); each is durable (its attempt counted) before it is returned.
    pub fn receive(&self, max: usize) -> Result<Vec<Delivery>> {
        let n = self.queues.len();
        let first = self.turn.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let mut out = Vec::new();
        for k in 0..n {
            if out.len() >= max {
                break;
            }
            out.extend(self.queues[(first + k) % n].deliver(self.id, max - out.len())?);
        }
        Ok(out)
    }

    /// Acknowledges messages it holds, by (partition, offset); durable on return. Offsets it
    /// does not hold are refused with [`Error::NotHeld`] after the others are acked (the first
    /// partition with any, in partition order).
    pub fn ack(&self, ids: &[(u32, Offset)]) -> Result<()> {
        self.each_partition(ids, |q, offs| q.ack(self.id, offs))
    }

    /// Returns messages it holds to the group, to be delivered again after `delay_ms`.
    pub fn nack(&self, ids: &[(u32, Offset)], delay_ms: u64) -> Result<()> {
        self.each_partition(ids, |q, offs| q.nack(self.id, offs, delay_ms))
    }

    fn each_partition(
        &self,
        ids: &[(u32, Offset)],
        f: impl Fn(&Queue, &[Offset]) -> Result<()>,
    ) -> Result<()> {
        let mut first = Ok(());
        for (p, q) in self.queues.iter().enumerate() {
            let offs: Vec<Offset> = ids
                .iter()
                .filter(|(x, _)| *x as usize == p)
                .map(|(_, o)| *o)
                .collect();
            if offs.is_empty() {
                continue;
            }
            let r = f(q, &offs);
            if first.is_ok() {
                first = r;
            }
        }
        if let Some((p, _)) = ids.iter().find(|(p, _)| *p as usize >= self.queues.len()) {
            first = first.and(Err(Error::NotFound {
                kind: "partition",
                name: p.to_string(),
            }));
        }
        first
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        for q in &self.queues {
            q.release(self.id);
        }
    }
}

impl Topic {
    /// Opens the queue of group `group` (in `dir`) over partition `p` with log `log`, making its
    /// directory first for a partition n >= 1 (an empty ack state starts at the log start).
    pub(in crate::store) fn open_group_partition(
        &self,
        group: &str,
        dir: &Path,
        config: &QueueConfig,
        p: u32,
        log: Log,
    ) -> Result<Arc<Queue>> {
        let qdir = group_partition_dir(dir, p);
        if p > 0 && !self.fs.is_dir(&qdir) {
            make_dir(&*self.fs, &qdir)?;
        }
        let source = if p == 0 {
            format!("{}/{group}", self.name)
        } else {
            format!("{}/{group}/{p}", self.name)
        };
        Queue::open(QueueParts {
            fs: self.fs.clone(),
            dir: qdir,
            name: group.to_string(),
            source,
            default_dlq: format!("{}.{group}.dlq", self.name),
            config: config.clone(),
            log,
            owns_log: false,
            partition: p,
            parent: Some(self.me.clone()),
            store: self.store.clone(),
            clock: self.clock.clone(),
        })
        .map(Arc::new)
    }

    /// Opens group `group` in `dir` over `logs` (one per partition); partition directories past
    /// them (left by an add of partitions that did not finish) are removed first.
    pub(in crate::store) fn open_group(
        &self,
        group: &str,
        dir: PathBuf,
        config: QueueConfig,
        logs: &[Log],
    ) -> Result<Group> {
        let fs = &*self.fs;
        for name in fs.read_dir(&dir).at(&dir)? {
            if partition_of(&name, GROUP_PARTITION_PREFIX).is_some_and(|p| p as usize >= logs.len())
            {
                let stray = dir.join(&name);
                tracing::warn!(dir = %stray.display(), "removing the ack state of a partition the topic's config does not count");
                fs.remove_dir_all(&stray).at(&stray)?;
            }
        }
        let mut parts = Vec::with_capacity(logs.len());
        for (p, log) in logs.iter().enumerate() {
            match self.open_group_partition(group, &dir, &config, p as u32, log.clone()) {
                Ok(q) => parts.push(q),
                Err(e) => {
                    for q in parts {
                        let _ = q.shut(false);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Group {
            name: group.to_string(),
            dir,
            config,
            parts: RwLock::new(parts),
        })
    }
}
