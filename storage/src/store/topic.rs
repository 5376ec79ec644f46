//! A topic: a log, its named subscribers' committed offsets and its consumer groups.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

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
use super::inner::StoreInner;
use super::queue::{Queue, QueueParts};
use super::settings::{
    planned_dlq, read_config, validate_name, write_config, GROUPS_DIR, KIND_QUEUE, KIND_TOPIC,
    LOG_DIR,
};
use super::{ClockRef, QueueConfig, StartAt};

/// A named subscriber of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberInfo {
    /// Its name.
    pub name: String,
    /// The next offset it will read (everything below was committed).
    pub committed: Offset,
    /// Visible end minus committed.
    pub lag: u64,
}

/// Figures of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicStats {
    /// First offset held.
    pub start_offset: Offset,
    /// One past the last visible offset.
    pub end_offset: Offset,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Number of segments.
    pub segments: usize,
    /// Named subscribers and their lag.
    pub subscribers: Vec<SubscriberInfo>,
}

/// A topic: a log and its named subscribers.
pub struct Topic {
    pub(in crate::store) name: String,
    pub(in crate::store) dir: PathBuf,
    pub(in crate::store) fs: FsRef,
    pub(in crate::store) log: Log,
    pub(in crate::store) offsets: SubscriberOffsets,
    pub(in crate::store) groups: Catalog<Queue>,
    pub(in crate::store) store: Weak<StoreInner>,
    pub(in crate::store) me: Weak<Topic>,
    pub(in crate::store) clock: ClockRef,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic").field("name", &self.name).finish()
    }
}

impl Topic {
    pub(in crate::store) fn open(
        store: &Arc<StoreInner>,
        name: &str,
        dir: PathBuf,
        config: LogConfig,
    ) -> Result<Arc<Topic>> {
        let fs = store.fs.clone();
        let fsync = config.fsync;
        let log = Log::open(fs.clone(), dir.join(LOG_DIR), config)?;
        let offsets = SubscriberOffsets::open(fs.clone(), &dir, fsync, log.end_offset().0)?;
        let topic = Arc::new_cyclic(|me| Topic {
            name: name.to_string(),
            dir: dir.clone(),
            fs: fs.clone(),
            log,
            offsets,
            groups: Catalog::new("group"),
            store: Arc::downgrade(store),
            me: me.clone(),
            clock: store.clock.clone(),
        });
        topic.open_groups()?;
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
        for g in fs.read_dir(&gdir).at(&gdir)? {
            let d = gdir.join(&g);
            if validate_name(&g).is_err() || !fs.is_dir(&d) {
                continue;
            }
            let opened = match read_config::<QueueConfig>(fs, &d, KIND_QUEUE) {
                Ok(Some(cfg)) => self.open_group(&g, d.clone(), cfg).map(Some),
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

    pub(in crate::store) fn open_group(
        &self,
        group: &str,
        dir: PathBuf,
        config: QueueConfig,
    ) -> Result<Queue> {
        Queue::open(QueueParts {
            fs: self.fs.clone(),
            dir,
            name: group.to_string(),
            source: format!("{}/{group}", self.name),
            default_dlq: format!("{}.{group}.dlq", self.name),
            config,
            log: self.log.clone(),
            owns_log: false,
            parent: Some(self.me.clone()),
            store: self.store.clone(),
            clock: self.clock.clone(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its log.
    pub fn log(&self) -> &Log {
        &self.log
    }
    /// Its settings in force: those it was created with, and its retention as last set.
    pub fn config(&self) -> LogConfig {
        let r = self.log.retention();
        LogConfig {
            retention_ms: r.retention_ms,
            retention_bytes: r.retention_bytes,
            ..self.log.config().clone()
        }
    }
    /// Changes its retention: the config file is rewritten (atomically, durably), then the log
    /// applies the new limits from its next retention pass.
    pub fn set_retention(&self, r: Retention) -> Result<()> {
        let cfg = LogConfig {
            retention_ms: r.retention_ms,
            retention_bytes: r.retention_bytes,
            ..self.log.config().clone()
        };
        cfg.validate().map_err(Error::InvalidArgument)?;
        self.log
            .set_retention(r, |_| write_config(&*self.fs, &self.dir, KIND_TOPIC, &cfg))
    }
    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Appends records (durable per the fsync policy on return).
    pub fn publish(&self, records: &[Record]) -> Result<AppendInfo> {
        self.log.append(records)
    }
    /// Reads records from `from` without committing anything (anonymous replay of any range).
    pub fn read(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Offset, Record)>> {
        self.log.read_records(from, max_records, max_bytes)
    }
    /// Resolves a start position to an offset in the log's current range.
    pub fn resolve(&self, start: StartAt) -> Result<Offset> {
        let lo = self.log.start_offset();
        let hi = self.log.visible_end();
        Ok(match start {
            StartAt::Earliest => lo,
            StartAt::Latest => hi,
            StartAt::Offset(o) => o.clamp(lo, hi.max(lo)),
            StartAt::Timestamp(ts) => self.log.offset_for_timestamp(ts)?.unwrap_or(hi),
        })
    }
    /// Registers a named subscriber if new (at `start`) and returns where it resumes: its
    /// committed offset, clamped to the log's range.
    pub fn subscribe(&self, name: &str, start: StartAt) -> Result<Offset> {
        validate_name(name)?;
        let lo = self.log.start_offset();
        let hi = self.log.visible_end().max(lo);
        if let Some(o) = self.offsets.get(name) {
            self.offsets.wait_durable()?;
            return Ok(Offset(o).clamp(lo, hi));
        }
        let at = self.resolve(start)?;
        let o = self.offsets.get_or_create(name, at.0)?;
        Ok(Offset(o).clamp(lo, hi))
    }
    /// Moves a subscriber's committed offset (the next offset it will read) to `next`; returns
    /// once durable under the topic's fsync policy. A commit never moves an offset backwards
    /// unless `next` is explicitly below (a seek). A `next` past the visible end is refused
    /// ([`Error::OffsetOutOfRange`]): nothing there was read.
    pub fn commit(&self, subscriber: &str, next: Offset) -> Result<()> {
        if self.offsets.get(subscriber).is_none() {
            return Err(Error::NotFound {
                kind: "subscriber",
                name: subscriber.into(),
            });
        }
        let end = self.log.visible_end();
        if next > end {
            return Err(Error::OffsetOutOfRange {
                offset: next,
                start: self.log.start_offset(),
                end,
            });
        }
        self.offsets.set(subscriber, next.0)?;
        self.reclaim();
        Ok(())
    }
    /// Syncs the subscriber offsets journal whatever the fsync policy.
    pub fn flush_offsets(&self) -> Result<()> {
        self.offsets.flush()
    }
    /// A subscriber's committed offset, if it exists.
    pub fn committed(&self, subscriber: &str) -> Option<Offset> {
        self.offsets.get(subscriber).map(Offset)
    }
    /// Removes a named subscriber.
    pub fn delete_subscriber(&self, name: &str) -> Result<()> {
        if !self.offsets.remove(name)? {
            return Err(Error::NotFound {
                kind: "subscriber",
                name: name.into(),
            });
        }
        self.reclaim();
        Ok(())
    }
    /// A consumer group: a shared cursor with acks over this topic's log. A new group starts at
    /// the log start; an existing one is returned as it is (its saved settings win). A new
    /// group that dead-letters to a default `<topic>.<group>.dlq` longer than [`NAME_MAX`] is
    /// refused with `InvalidArgument`.
    pub fn group(&self, name: &str, config: QueueConfig) -> Result<Arc<Queue>> {
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
        };
        if self.log.is_closed() {
            return Err(Error::Closed);
        }
        let q = self.build_group(name, config)?;
        slot.fill(q.clone());
        Ok(q)
    }

    /// Makes the directory and files of group `name`, whose name the caller reserved.
    pub(in crate::store) fn build_group(
        &self,
        name: &str,
        config: QueueConfig,
    ) -> Result<Arc<Queue>> {
        let fs = &*self.fs;
        let gdir = self.dir.join(GROUPS_DIR);
        if !fs.is_dir(&gdir) {
            make_dir(fs, &gdir)?;
        }
        let dir = gdir.join(name);
        fresh_dir(fs, &dir)?;
        let config = QueueConfig {
            log: self.log.config().clone(),
            ..config
        };
        let r =
            self.open_group(name, dir.clone(), config.clone())
                .and_then(|q| match write_config(fs, &dir, KIND_QUEUE, &config) {
                    Ok(()) => Ok(Arc::new(q)),
                    Err(e) => {
                        let _ = q.shut(false);
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
        delete_dir(&*self.fs, &dir, slot, prev, |q: &Queue| {
            let _ = q.shut(false);
        })
    }
    /// Names of the consumer groups (damaged ones too), sorted.
    pub fn list_groups(&self) -> Vec<String> {
        self.groups.names()
    }
    /// Figures.
    pub fn stats(&self) -> TopicStats {
        let end = self.log.visible_end();
        let segs = self.log.segments();
        TopicStats {
            start_offset: self.log.start_offset(),
            end_offset: end,
            size_bytes: segs.iter().map(|s| s.size_bytes).sum(),
            segments: segs.len(),
            subscribers: self
                .offsets
                .all()
                .into_iter()
                .map(|(name, c)| SubscriberInfo {
                    name,
                    committed: Offset(c),
                    lag: end.0.saturating_sub(c),
                })
                .collect(),
        }
    }

    /// With consumer groups, deletes segments below every group's durable ack floor and every
    /// subscriber's committed offset. A topic without groups keeps its data for replay and is
    /// trimmed only by its retention settings.
    pub(in crate::store) fn reclaim(&self) {
        if self.groups.any_damaged() {
            // What a damaged group still needs is unknown: keep everything.
            return;
        }
        let floors: Vec<u64> = self
            .groups
            .open_values()
            .iter()
            .map(|q| q.synced_floor.load(Ordering::Acquire))
            .collect();
        let Some(mut m) = floors.into_iter().min() else {
            return;
        };
        if let Some(s) = self.offsets.min() {
            m = m.min(s);
        }
        if let Err(e) = self.log.delete_before(Offset(m)) {
            tracing::warn!(topic = %self.name, "reclaiming segments failed: {e}");
        }
    }

    pub(in crate::store) fn shut(&self, clean: bool) -> Result<()> {
        let groups = self.groups.open_values();
        let mut first = Ok(());
        for g in groups {
            let r = if clean { g.close() } else { g.shut(false) };
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
        let r = self.log.close();
        if first.is_ok() {
            first = r;
        }
        first
    }

    pub(in crate::store) fn close(&self) -> Result<()> {
        self.shut(true)
    }
}
