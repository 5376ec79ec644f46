//! The shared state behind a [`Store`](super::Store): its catalogs of topics and queues, and how
//! they are built, opened at start and found.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::IoContext;
use crate::error::{Error, Result};
use crate::fs::FsRef;
use crate::log::Log;

use super::catalog::Catalog;
use super::catalog::Taken;
use super::dirs::{clear_tombstones, discard_dir, fresh_dir, remove_unfinished};
use super::partition::{TopicId, KIND_TOPIC_V2};
use super::queue::{Queue, QueueParts};
use super::settings::{dlq_config, write_config};
use super::settings::{
    planned_dlq, read_config, read_topic_config, validate_name, KIND_QUEUE, LOG_DIR,
};
use super::{ClockRef, QueueConfig, StoreConfig, Topic};

pub(in crate::store) struct StoreInner {
    pub(in crate::store) fs: FsRef,
    /// The rounds every file sync of the store joins (none with `sync_per_file`).
    pub(in crate::store) group_sync: Option<Arc<crate::fs::GroupSync>>,
    pub(in crate::store) root: PathBuf,
    pub(in crate::store) config: StoreConfig,
    pub(in crate::store) clock: ClockRef,
    pub(in crate::store) topics: Catalog<Topic>,
    pub(in crate::store) queues: Catalog<Queue>,
    pub(in crate::store) closed: AtomicBool,
    /// Most files the open topics and queues may hold (see `keeper`).
    pub(in crate::store) files_budget: usize,
    /// Bounds the creates and lazy opens working at once (see `keeper::OPENS_CONCURRENT_MAX`).
    pub(in crate::store) opening: super::keeper::OpenGate,
    /// Topic ids seen, by id: a hint, checked against the topic on use.
    pub(in crate::store) topic_ids: Mutex<HashMap<TopicId, String>>,
    /// The id and partition count of closed topics whose config was read, by name (dropped
    /// when the topic opens: an open topic answers for itself, and may add partitions).
    pub(in crate::store) closed_meta: Mutex<HashMap<String, (TopicId, u32)>>,
}

impl StoreInner {
    pub(in crate::store) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub(in crate::store) fn queue_dir(&self, name: &str) -> PathBuf {
        self.root.join("queues").join(name)
    }

    pub(in crate::store) fn topic_dir(&self, name: &str) -> PathBuf {
        self.root.join("topics").join(name)
    }

    pub(in crate::store) fn queue_parts(
        self: &Arc<Self>,
        name: &str,
        config: QueueConfig,
        log: Log,
    ) -> QueueParts {
        QueueParts {
            fs: self.fs.clone(),
            dir: self.queue_dir(name),
            name: name.to_string(),
            source: name.to_string(),
            default_dlq: format!("{name}.dlq"),
            config,
            log,
            owns_log: true,
            partition: 0,
            parent: None,
            store: Arc::downgrade(self),
            clock: self.clock.clone(),
        }
    }

    /// Makes the directory and files of queue `name`, whose name the caller reserved.
    pub(in crate::store) fn build_queue(
        self: &Arc<Self>,
        name: &str,
        config: QueueConfig,
    ) -> Result<Arc<Queue>> {
        let _place = self.opening.enter();
        self.make_room();
        self.retry_without_fds(|| self.build_queue_once(name, &config))
    }

    fn build_queue_once(self: &Arc<Self>, name: &str, config: &QueueConfig) -> Result<Arc<Queue>> {
        let fs = &*self.fs;
        let dir = self.queue_dir(name);
        fresh_dir(fs, &dir)?;
        let r = (|| {
            let log = Log::open(self.fs.clone(), dir.join(LOG_DIR), config.log.clone())?;
            let q = Queue::open(self.queue_parts(name, config.clone(), log))?;
            // The config is written last: a directory without one is an unfinished creation.
            if let Err(e) = write_config(fs, &dir, KIND_QUEUE, config) {
                let _ = q.shut(false);
                return Err(e);
            }
            Ok(Arc::new(q))
        })();
        if r.is_err() {
            discard_dir(fs, &dir);
        }
        r
    }

    /// Creates a queue. Its default dead-letter queue (`<name>.dlq`) costs nothing until its
    /// first dead letter or lookup, which makes it; one named by the config is made now when
    /// absent (others may look for it by that name).
    pub(in crate::store) fn create_queue(
        self: &Arc<Self>,
        name: &str,
        config: QueueConfig,
    ) -> Result<Arc<Queue>> {
        validate_name(name)?;
        config.validate()?;
        let default_dlq = format!("{name}.dlq");
        let dlq = planned_dlq(&format!("queue {name:?}"), &config, default_dlq.clone())?;
        let slot = self
            .queues
            .reserve(name)
            .map_err(|_| Error::AlreadyExists {
                kind: "queue",
                name: name.into(),
            })?;
        if let Some(d) = dlq.filter(|d| *d != default_dlq && d != name) {
            // Never waits while holding `slot` on a name a create or delete works on: a
            // dead-letter queue busy now is made when first needed.
            if let Err(e) = self.dead_letter_queue_now(&d, &config) {
                tracing::warn!(queue = %name, dead_letter = %d, "not made yet: {e}");
            }
        }
        let q = self.build_queue(name, config)?;
        slot.fill(q.clone());
        Ok(q)
    }

    /// Queue `name`, opened now when it is closed; `NotFound` if absent (or still being
    /// created), `Corruption` if it could not be opened.
    /// The default dead-letter queue of a queue (`<queue>.dlq`) is made here when first
    /// looked up (a consumer waiting for dead letters), as by its first dead letter.
    pub(in crate::store) fn queue(self: &Arc<Self>, name: &str) -> Result<Arc<Queue>> {
        match (self.lookup_queue(name), name.strip_suffix(".dlq")) {
            (Err(Error::NotFound { .. }), Some(base)) => match self.lookup_queue(base) {
                Ok(q) if q.dlq_name() == name => self.dead_letter_queue(name, q.config()),
                _ => Err(Error::NotFound {
                    kind: "queue",
                    name: name.into(),
                }),
            },
            (r, _) => r,
        }
    }

    /// Queue `name`, opened now when it is closed.
    fn lookup_queue(self: &Arc<Self>, name: &str) -> Result<Arc<Queue>> {
        self.queues.get_with(name, || {
            let _place = self.opening.enter();
            self.make_room();
            self.retry_without_fds(|| self.open_queue(name, &self.queue_dir(name)))
        })
    }

    /// Makes the dead-letter queue `name` now, unless it exists or a create or delete works on
    /// that name (never waits: two queues may name each other).
    fn dead_letter_queue_now(self: &Arc<Self>, name: &str, like: &QueueConfig) -> Result<()> {
        match self.lookup_queue(name) {
            Ok(_) => return Ok(()),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        if let Some(slot) = self.queues.try_reserve(name) {
            slot.fill(self.build_queue(name, dlq_config(like))?);
        }
        Ok(())
    }

    /// Topic `name`, opened now when it is closed; as [`StoreInner::queue`].
    pub(in crate::store) fn topic(self: &Arc<Self>, name: &str) -> Result<Arc<Topic>> {
        self.topics.get_with(name, || {
            let _place = self.opening.enter();
            self.make_room();
            self.retry_without_fds(|| self.open_topic(name, &self.topic_dir(name)))
        })
    }

    /// Topic `name`'s id and partition count, without opening it (see
    /// [`super::Store::topic_meta`]).
    pub(in crate::store) fn topic_meta(self: &Arc<Self>, name: &str) -> Result<(TopicId, u32)> {
        if let Some(t) = self.topics.get_open(name) {
            return Ok((t.id(), t.partition_count()));
        }
        if !self.topics.is_closed(name) {
            // Absent, busy or damaged: the lookup says which.
            let t = self.topic(name)?;
            return Ok((t.id(), t.partition_count()));
        }
        if let Some(m) = super::lock(&self.closed_meta).get(name) {
            return Ok(*m);
        }
        match read_topic_config(&*self.fs, &self.topic_dir(name)) {
            Ok(Some(c)) if !c.id.is_nil() => {
                let m = (c.id, c.partitions);
                super::lock(&self.closed_meta).insert(name.to_string(), m);
                Ok(m)
            }
            // Unfinished, older than ids, or unreadable: opening it settles each case.
            _ => {
                let t = self.topic(name)?;
                Ok((t.id(), t.partition_count()))
            }
        }
    }

    /// The topic whose id is `id` (see [`super::Store::topic_by_id`]).
    pub(in crate::store) fn topic_by_id(self: &Arc<Self>, id: TopicId) -> Result<Arc<Topic>> {
        let found = |name: &str| self.topic(name).ok().filter(|t| t.id() == id);
        let hint = super::lock(&self.topic_ids).get(&id).cloned();
        if let Some(t) = hint.as_deref().and_then(found) {
            return Ok(t);
        }
        for t in self.topics.open_values() {
            if t.id() == id {
                return Ok(t);
            }
        }
        let unseen: Vec<String> = {
            let ids = super::lock(&self.topic_ids);
            let seen: std::collections::HashSet<&String> = ids.values().collect();
            let closed = self.topics.closed_names();
            closed.into_iter().filter(|n| !seen.contains(n)).collect()
        };
        for name in unseen {
            let Ok(Some(c)) = read_topic_config(&*self.fs, &self.topic_dir(&name)) else {
                continue;
            };
            super::lock(&self.topic_ids).insert(c.id, name.clone());
            if c.id == id {
                if let Some(t) = found(&name) {
                    return Ok(t);
                }
            }
        }
        Err(Error::NotFound {
            kind: "topic",
            name: id.to_string(),
        })
    }

    /// The dead-letter queue `name`, created when absent.
    pub(in crate::store) fn dead_letter_queue(
        self: &Arc<Self>,
        name: &str,
        like: &QueueConfig,
    ) -> Result<Arc<Queue>> {
        self.check_open()?;
        match self.lookup_queue(name) {
            Ok(q) => return Ok(q),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        validate_name(name)?;
        match self.queues.reserve(name) {
            Ok(slot) => {
                let q = self.build_queue(name, dlq_config(like))?;
                slot.fill(q.clone());
                Ok(q)
            }
            Err(Taken::Open(q)) => Ok(q),
            Err(Taken::Closed) => self.lookup_queue(name),
            Err(Taken::Damaged(d)) => Err(d.error()),
        }
    }

    /// Opens the queue in `dir` at start: `None` for an unfinished creation (removed).
    pub(in crate::store) fn open_queue(
        self: &Arc<Self>,
        name: &str,
        dir: &Path,
    ) -> Result<Option<Arc<Queue>>> {
        let fs = &*self.fs;
        let Some(config) = read_config::<QueueConfig>(fs, dir, KIND_QUEUE)? else {
            remove_unfinished(fs, dir);
            return Ok(None);
        };
        let log = Log::open(self.fs.clone(), dir.join(LOG_DIR), config.log.clone())?;
        let q = Queue::open(self.queue_parts(name, config, log))?;
        retention_missed(q.log(), name);
        Ok(Some(Arc::new(q)))
    }

    /// Opens the topic in `dir` at start: `None` for an unfinished creation (removed).
    pub(in crate::store) fn open_topic(
        self: &Arc<Self>,
        name: &str,
        dir: &Path,
    ) -> Result<Option<Arc<Topic>>> {
        let fs = &*self.fs;
        let Some(mut config) = read_topic_config(fs, dir)? else {
            remove_unfinished(fs, dir);
            return Ok(None);
        };
        if config.id.is_nil() {
            // A topic older than ids (or partitions) gets its id now, durably, before it is
            // used: the config is rewritten in the current layout.
            config.id =
                TopicId::random().map_err(|e| Error::io("getrandom(2) for a topic id", e))?;
            write_config(fs, dir, KIND_TOPIC_V2, &config)?;
            tracing::info!(topic = %name, id = %config.id, "topic id assigned");
        }
        let t = Topic::open(self, name, dir.to_path_buf(), config)?;
        super::lock(&self.topic_ids).insert(t.id(), name.to_string());
        super::lock(&self.closed_meta).remove(name);
        for log in t.logs() {
            retention_missed(&log, name);
        }
        Ok(Some(t))
    }

    /// Lists every topic or queue under `<root>/<sub>`, closed: each is opened (and
    /// recovered) when first used, or by the background sweep after an unclean stop.
    pub(in crate::store) fn list_all(self: &Arc<Self>, sub: &str) -> Result<()> {
        let fs = &*self.fs;
        let root = self.root.join(sub);
        clear_tombstones(fs, &root)?;
        let catalog_queues = sub == "queues";
        for name in fs.read_dir(&root).at(&root)? {
            if validate_name(&name).is_err() || !fs.is_dir(&root.join(&name)) {
                continue;
            }
            if catalog_queues {
                self.queues.insert_closed(name);
            } else {
                self.topics.insert_closed(name);
            }
        }
        Ok(())
    }
}

/// Retention passes visit open logs only. A closed log takes no appends, so it cannot have grown
/// past its size limit meanwhile; but records may have aged past its time limit: a log with one
/// gets its retention at open.
fn retention_missed(log: &Log, name: &str) {
    if log.retention().retention_ms.is_none() {
        return;
    }
    if let Err(e) = log.enforce_retention() {
        tracing::warn!(log = %name, "retention at open failed: {e}");
    }
}
