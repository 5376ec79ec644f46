//! A topic: its partitions (one log each), its named subscribers' committed offsets (per
//! partition) and its consumer groups (an ack state per partition). Adding partitions is in
//! `alter`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock, Weak};

use crate::config::LogConfig;
use crate::error::{Error, IoContext, Result};
use crate::fs::FsRef;
use crate::log::{AppendInfo, Log, Retention};
use crate::offsets::SubscriberOffsets;
use crate::types::{Offset, Record};

use super::catalog::Catalog;
use super::catalog::{Damage, Taken};
use super::dirs::{
    clear_tombstones, delete_dir, discard_dir, fresh_dir, make_dir, remove_unfinished,
};
use super::group::Group;
use super::inner::StoreInner;
use super::partition::{
    partition_log_dir, partition_of, TopicConfig, TopicId, PARTITION_LOG_PREFIX,
};
use super::settings::{
    planned_dlq, read_config, validate_name, write_config, GROUPS_DIR, KIND_QUEUE,
};
use super::{lock, ClockRef, QueueConfig, StartAt, KIND_TOPIC_V2};

/// A named subscriber's position on one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberInfo {
    /// Its name.
    pub name: String,
    /// The next offset it will read (everything below was committed).
    pub committed: Offset,
    /// Visible end minus committed.
    pub lag: u64,
}

/// Figures of one partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionStats {
    /// The partition.
    pub partition: u32,
    /// First offset held.
    pub start_offset: Offset,
    /// One past the last visible offset.
    pub end_offset: Offset,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Number of segments.
    pub segments: usize,
    /// Named subscribers with a position on it, and their lag.
    pub subscribers: Vec<SubscriberInfo>,
}

/// Figures of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicStats {
    /// Its id.
    pub id: TopicId,
    /// Each partition, in order.
    pub partitions: Vec<PartitionStats>,
}

impl TopicStats {
    /// Bytes on disk, every partition.
    pub fn size_bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.size_bytes).sum()
    }
    /// Messages visible, every partition.
    pub fn messages(&self) -> u64 {
        self.partitions
            .iter()
            .map(|p| p.end_offset.0 - p.start_offset.0.min(p.end_offset.0))
            .sum()
    }
}

/// A topic: its partitions (a log each), its named subscribers and its consumer groups.
pub struct Topic {
    pub(in crate::store) name: String,
    pub(in crate::store) dir: PathBuf,
    pub(in crate::store) fs: FsRef,
    pub(in crate::store) id: TopicId,
    /// Its config; changed (under the lock) only by an add of partitions.
    pub(in crate::store) config: Mutex<TopicConfig>,
    /// Partition 0's log (also `logs[0]`), which every topic has.
    pub(in crate::store) log0: Log,
    /// The log of each partition; grows only, under the `config` lock.
    pub(in crate::store) logs: RwLock<Vec<Log>>,
    pub(in crate::store) offsets: SubscriberOffsets,
    pub(in crate::store) groups: Catalog<Group>,
    pub(in crate::store) store: Weak<StoreInner>,
    pub(in crate::store) me: Weak<Topic>,
    pub(in crate::store) clock: ClockRef,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic").field("name", &self.name).finish()
    }
}

fn close_logs(logs: &[Log]) {
    for l in logs {
        let _ = l.close();
    }
}

impl Topic {
    /// Opens the topic in `dir` with `config` (whose id must not be nil): every partition's log,
    /// after removing the log directories of partitions past the config's count (left by an
    /// add of partitions that did not finish). A counted partition without its directory is
    /// `Corruption`: its data is gone.
    pub(in crate::store) fn open(
        store: &Arc<StoreInner>,
        name: &str,
        dir: PathBuf,
        config: TopicConfig,
    ) -> Result<Arc<Topic>> {
        assert!(!config.id.is_nil());
        let fs = store.fs.clone();
        for entry in fs.read_dir(&dir).at(&dir)? {
            if partition_of(&entry, PARTITION_LOG_PREFIX).is_some_and(|p| p >= config.partitions) {
                let stray = dir.join(&entry);
                tracing::warn!(dir = %stray.display(), "removing the log of a partition the topic's config does not count");
                fs.remove_dir_all(&stray).at(&stray)?;
            }
        }
        let mut logs = Vec::with_capacity(config.partitions as usize);
        for p in 0..config.partitions {
            let ld = partition_log_dir(&dir, p);
            let opened = if fs.is_dir(&ld) {
                Log::open(fs.clone(), ld, config.log.clone())
            } else {
                Err(Error::corruption(
                    &ld,
                    0,
                    format!(
                        "partition {p} of {} has no log directory",
                        config.partitions
                    ),
                ))
            };
            match opened {
                Ok(l) => logs.push(l),
                Err(e) => {
                    close_logs(&logs);
                    return Err(e);
                }
            }
        }
        let ends: Vec<u64> = logs.iter().map(|l| l.end_offset().0).collect();
        let offsets = match SubscriberOffsets::open(fs.clone(), &dir, config.log.fsync, &ends) {
            Ok(o) => o,
            Err(e) => {
                close_logs(&logs);
                return Err(e);
            }
        };
        let topic = Arc::new_cyclic(|me| Topic {
            name: name.to_string(),
            dir: dir.clone(),
            fs: fs.clone(),
            id: config.id,
            config: Mutex::new(config),
            log0: logs[0].clone(),
            logs: RwLock::new(logs),
            offsets,
            groups: Catalog::new("group"),
            store: Arc::downgrade(store),
            me: me.clone(),
            clock: store.clock.clone(),
        });
        if let Err(e) = topic.open_groups() {
            let _ = topic.shut(false);
            return Err(e);
        }
        Ok(topic)
    }

    /// Opens the groups at start; one that fails to open is kept damaged.
    pub(in crate::store) fn open_groups(&self) -> Result<()> {
        let fs = &*self.fs;
        let gdir = self.dir.join(GROUPS_DIR);
        if !fs.is_dir(&gdir) {
            return Ok(());
        }
        clear_tombstones(fs, &gdir)?;
        let logs = self.logs();
        for g in fs.read_dir(&gdir).at(&gdir)? {
            let d = gdir.join(&g);
            if validate_name(&g).is_err() || !fs.is_dir(&d) {
                continue;
            }
            let opened = match read_config::<QueueConfig>(fs, &d, KIND_QUEUE) {
                Ok(Some(cfg)) => self.open_group(&g, d.clone(), cfg, &logs).map(Some),
                Ok(None) => {
                    remove_unfinished(fs, &d);
                    Ok(None)
                }
                Err(e) => Err(e),
            };
            match opened {
                Ok(Some(q)) => self.groups.insert(g, Arc::new(q)),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(topic = %self.name, group = %g, "not opened, the rest is: {e}");
                    let damage = Damage::from_error("group", &format!("{}/{g}", self.name), &d, &e);
                    self.groups.insert_damaged(g, damage);
                }
            }
        }
        Ok(())
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its persistent id.
    pub fn id(&self) -> TopicId {
        self.id
    }
    /// Its config (log settings, partition count, id).
    pub fn config(&self) -> TopicConfig {
        lock(&self.config).clone()
    }
    /// The log of partition 0 (the only one of a single-partition topic).
    pub fn log(&self) -> &Log {
        &self.log0
    }
    /// The log of every partition, in order.
    pub fn logs(&self) -> Vec<Log> {
        self.logs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// Number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.logs.read().unwrap_or_else(|e| e.into_inner()).len() as u32
    }
    /// The log of partition `p`; `NotFound` past the last partition.
    ///
    /// In a cluster, a partition this node holds no replica of is [`Error::NotLeader`]
    /// ([`Log::set_placed_elsewhere`]).
    pub fn partition(&self, p: u32) -> Result<Log> {
        let log = self
            .logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(p as usize)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                kind: "partition",
                name: format!("{}/{p}", self.name),
            })?;
        match log.placed_elsewhere() {
            Some(why) => Err(Error::NotLeader(why)),
            None => Ok(log),
        }
    }
    /// Its log settings in force (every partition's): those it was created with, and its
    /// retention as last set.
    pub fn log_config(&self) -> LogConfig {
        let r = self.log0.retention();
        LogConfig {
            retention_ms: r.retention_ms,
            retention_bytes: r.retention_bytes,
            ..self.log0.config().clone()
        }
    }
    /// Changes the retention of every partition: the topic's config file is rewritten
    /// (atomically, durably), then each log applies the new limits from its next retention
    /// pass. Partitions added later are opened with them.
    pub fn set_retention(&self, r: Retention) -> Result<()> {
        let mut cfg = lock(&self.config);
        let mut next = cfg.clone();
        next.log.retention_ms = r.retention_ms;
        next.log.retention_bytes = r.retention_bytes;
        next.log.validate().map_err(Error::InvalidArgument)?;
        let logs = self.logs();
        logs[0].set_retention(r, |_| {
            write_config(&*self.fs, &self.dir, KIND_TOPIC_V2, &next)
        })?;
        for l in &logs[1..] {
            l.set_retention(r, |_| Ok(()))?;
        }
        *cfg = next;
        Ok(())
    }
    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Appends records to partition 0 (durable per the fsync policy on return).
    pub fn publish(&self, records: &[Record]) -> Result<AppendInfo> {
        self.log().append(records)
    }
    /// Appends records to partition `p` (durable per the fsync policy on return).
    pub fn publish_to(&self, p: u32, records: &[Record]) -> Result<AppendInfo> {
        self.partition(p)?.append(records)
    }
    /// Reads records of partition `p` from `from` without committing anything (anonymous
    /// replay of any range).
    pub fn read(
        &self,
        p: u32,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Offset, Record)>> {
        self.partition(p)?
            .read_records(from, max_records, max_bytes)
    }
    /// Resolves a start position to an offset in partition `p`'s current range.
    pub fn resolve(&self, p: u32, start: StartAt) -> Result<Offset> {
        let log = self.partition(p)?;
        let lo = log.start_offset();
        let hi = log.visible_end();
        Ok(match start {
            StartAt::Earliest => lo,
            StartAt::Latest => hi,
            StartAt::Offset(o) => o.clamp(lo, hi.max(lo)),
            StartAt::Timestamp(ts) => log.offset_for_timestamp(ts)?.unwrap_or(hi),
        })
    }
    /// Registers a named subscriber on every partition where it has no position (at `start`
    /// for a new subscriber; at the partition's start for one that exists, so a partition added
    /// since it last subscribed is read whole) and returns where it resumes on each: its
    /// committed offset, clamped to the partition's range.
    pub fn subscribe(&self, name: &str, start: StartAt) -> Result<Vec<Offset>> {
        validate_name(name)?;
        let known = self.offsets.exists(name);
        let mut out = Vec::new();
        for (p, log) in self.logs().iter().enumerate() {
            let p = p as u32;
            if let Some(why) = log.placed_elsewhere() {
                return Err(Error::NotLeader(why));
            }
            let lo = log.start_offset();
            let hi = log.visible_end().max(lo);
            let o = match self.offsets.get(name, p) {
                Some(c) => {
                    self.offsets.wait_durable()?;
                    c.offset
                }
                None => {
                    let at = self.resolve(p, if known { StartAt::Earliest } else { start })?;
                    self.offsets.get_or_create(name, p, at.0)?
                }
            };
            out.push(Offset(o).clamp(lo, hi));
        }
        Ok(out)
    }
    /// A consumer group: a shared cursor with acks over each partition's log. A new group
    /// starts at each log's start; an existing one is returned as it is (its saved settings
    /// win). A new group that dead-letters to a default `<topic>.<group>.dlq` longer than
    /// [`NAME_MAX`](super::NAME_MAX) is refused with `InvalidArgument`.
    pub fn group(&self, name: &str, config: QueueConfig) -> Result<Arc<Group>> {
        validate_name(name)?;
        config.validate()?;
        if let Some(q) = self.groups.get_open(name) {
            return Ok(q);
        }
        let owner = format!("group {name:?} of topic {:?}", self.name);
        planned_dlq(&owner, &config, format!("{}.{name}.dlq", self.name))?;
        let slot = match self.groups.reserve(name) {
            Ok(slot) => slot,
            Err(Taken::Open(q)) => return Ok(q),
            Err(Taken::Damaged(d)) => return Err(d.error()),
            Err(Taken::Closed) => unreachable!("a topic's groups are never closed alone"),
        };
        if self.log().is_closed() {
            return Err(Error::Closed);
        }
        let q = self.build_group(name, config)?;
        slot.fill(q.clone());
        Ok(q)
    }

    /// Makes the directory and files of group `name`, whose name the caller reserved. Holds
    /// the config lock, so an add of partitions waits for it (and the group gets them).
    pub(in crate::store) fn build_group(
        &self,
        name: &str,
        config: QueueConfig,
    ) -> Result<Arc<Group>> {
        let tc = lock(&self.config);
        let fs = &*self.fs;
        let gdir = self.dir.join(GROUPS_DIR);
        if !fs.is_dir(&gdir) {
            make_dir(fs, &gdir)?;
        }
        let dir = gdir.join(name);
        fresh_dir(fs, &dir)?;
        let config = QueueConfig {
            log: tc.log.clone(),
            ..config
        };
        let logs = self.logs();
        let r = self
            .open_group(name, dir.clone(), config.clone(), &logs)
            .and_then(|g| match write_config(fs, &dir, KIND_QUEUE, &config) {
                Ok(()) => Ok(Arc::new(g)),
                Err(e) => {
                    let _ = g.shut(false);
                    Err(e)
                }
            });
        if r.is_err() {
            discard_dir(fs, &dir);
        }
        r
    }

    /// Removes a consumer group (a damaged one too) and its ack state, atomically on disk.
    pub fn delete_group(&self, name: &str) -> Result<()> {
        let (slot, prev) = self.groups.begin_delete(name)?;
        let dir = self.dir.join(GROUPS_DIR).join(name);
        delete_dir(&*self.fs, &dir, slot, prev, |g: &Group| {
            let _ = g.shut(false);
        })
    }
    /// The consumer group `name` if it exists and is open (never creates one).
    pub fn existing_group(&self, name: &str) -> Option<Arc<Group>> {
        self.groups.get_open(name)
    }
    /// Names of the consumer groups (damaged ones too), sorted.
    pub fn list_groups(&self) -> Vec<String> {
        self.groups.names()
    }
    /// Figures, per partition.
    pub fn stats(&self) -> TopicStats {
        let subs = self.offsets.all();
        let partitions = self
            .logs()
            .iter()
            .enumerate()
            .map(|(p, log)| {
                let p = p as u32;
                let end = log.visible_end();
                let segs = log.segments();
                PartitionStats {
                    partition: p,
                    start_offset: log.start_offset(),
                    end_offset: end,
                    size_bytes: segs.iter().map(|s| s.size_bytes).sum(),
                    segments: segs.len(),
                    subscribers: subs
                        .iter()
                        .filter_map(|(name, parts)| {
                            let c = parts.get(&p)?.offset;
                            Some(SubscriberInfo {
                                name: name.clone(),
                                committed: Offset(c),
                                lag: end.0.saturating_sub(c),
                            })
                        })
                        .collect(),
                }
            })
            .collect();
        TopicStats {
            id: self.id,
            partitions,
        }
    }

    /// With consumer groups, deletes segments of partition `p` below every group's durable ack
    /// floor there and every subscriber's committed offset there. A topic without groups keeps
    /// its data for replay and is trimmed only by its retention settings.
    pub(in crate::store) fn reclaim(&self, p: u32) {
        if self.groups.any_damaged() {
            // What a damaged group still needs is unknown: keep everything.
            return;
        }
        let Ok(log) = self.partition(p) else { return };
        if log.is_replicated() {
            // Its group decides what goes, once every replica has it (cluster compaction).
            return;
        }
        let mut floors = Vec::new();
        for g in self.groups.open_values() {
            match g.queue(p) {
                Ok(q) => floors.push(q.synced_floor.load(Ordering::Acquire)),
                // A group still getting the partition (an add under way) needs all of it.
                Err(_) => return,
            }
        }
        let Some(mut m) = floors.into_iter().min() else {
            return;
        };
        if let Some(s) = self.offsets.min(p) {
            m = m.min(s);
        }
        if let Err(e) = log.delete_before(Offset(m)) {
            tracing::warn!(topic = %self.name, partition = p, "reclaiming segments failed: {e}");
        }
    }

    /// Its consumer groups open now (those damaged left out).
    pub fn groups_open(&self) -> Vec<Arc<Group>> {
        self.groups.open_values()
    }

    /// The files this topic holds open: its partitions' logs, its offsets file and its
    /// groups' ack journals.
    pub fn open_files(&self) -> usize {
        let logs: usize = self.logs().iter().map(Log::open_files).sum();
        let groups: usize = self
            .groups
            .open_values()
            .iter()
            .map(|g| g.partitions().len())
            .sum();
        logs + 1 + groups
    }

    /// True when closing the topic now changes nothing for anyone: no one holds one of its
    /// groups, a group's partition or a partition's log (beyond the topic and its groups), and
    /// nothing of a group is in flight.
    pub(in crate::store) fn can_close(&self) -> bool {
        let groups = self.groups.open_values();
        let mut log_holders = vec![1usize; self.partition_count() as usize];
        log_holders[0] += 1; // `log0`
        for g in &groups {
            // The catalog's handle and this one.
            if Arc::strong_count(g) != 2 {
                return false;
            }
            for q in g.partitions() {
                // The group's handle and this one.
                if Arc::strong_count(&q) != 2 || !q.can_close() {
                    return false;
                }
                if let Some(n) = log_holders.get_mut(q.partition() as usize) {
                    *n += 1;
                }
            }
        }
        let logs = self.logs();
        // `logs` holds one more handle of each.
        logs.len() == log_holders.len()
            && logs
                .iter()
                .zip(&log_holders)
                .all(|(l, n)| l.handles() == n + 1)
    }

    pub(in crate::store) fn shut(&self, clean: bool) -> Result<()> {
        let groups = self.groups.open_values();
        let mut first = Ok(());
        for g in groups {
            let r = g.shut(clean);
            if first.is_ok() {
                first = r;
            }
        }
        if clean {
            let r = self.offsets.close();
            if first.is_ok() {
                first = r;
            }
        }
        for log in self.logs() {
            let r = log.close();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    pub(in crate::store) fn close(&self) -> Result<()> {
        self.shut(true)
    }
}
