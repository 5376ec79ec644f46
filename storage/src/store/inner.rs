//! The shared state behind a [`Store`](super::Store): its catalogs of topics and queues, and how
//! they are built, opened at start and found.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::IoContext;
use crate::error::{Error, Result};
use crate::fs::FsRef;
use crate::log::Log;

use super::catalog::Taken;
use super::catalog::{Catalog, Damage};
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
    pub(in crate::store) root: PathBuf,
    pub(in crate::store) config: StoreConfig,
    pub(in crate::store) clock: ClockRef,
    pub(in crate::store) topics: Catalog<Topic>,
    pub(in crate::store) queues: Catalog<Queue>,
    pub(in crate::store) closed: AtomicBool,
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
        let fs = &*self.fs;
        let dir = self.queue_dir(name);
        fresh_dir(fs, &dir)?;
        let r = (|| {
            let log = Log::open(self.fs.clone(), dir.join(LOG_DIR), config.log.clone())?;
            let q = Queue::open(self.queue_parts(name, config.clone(), log))?;
            // The config is written last: a directory without one is an unfinished creation.
            if let Err(e) = write_config(fs, &dir, KIND_QUEUE, &config) {
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

    /// Creates a queue and, when it dead-letters and its dead-letter queue does not exist, that
    /// too (first). The whole plan is checked before anything is made.
    pub(in crate::store) fn create_queue(
        self: &Arc<Self>,
        name: &str,
        config: QueueConfig,
    ) -> Result<Arc<Queue>> {
        validate_name(name)?;
        config.validate()?;
        let dlq = planned_dlq(&format!("queue {name:?}"), &config, format!("{name}.dlq"))?;
        let slot = self
            .queues
            .reserve(name)
            .map_err(|_| Error::AlreadyExists {
                kind: "queue",
                name: name.into(),
            })?;
        if let Some(d) = dlq.filter(|d| d != name) {
            // Never waits while holding `slot`; a dead-letter queue busy now is made when first
            // needed.
            if let Some(r) = self.queues.try_reserve(&d) {
                r.fill(self.build_queue(&d, dlq_config(&config))?);
            }
        }
        let q = self.build_queue(name, config)?;
        slot.fill(q.clone());
        Ok(q)
    }

    /// The dead-letter queue `name`, created when absent.
    pub(in crate::store) fn dead_letter_queue(
        self: &Arc<Self>,
        name: &str,
        like: &QueueConfig,
    ) -> Result<Arc<Queue>> {
        self.check_open()?;
        if let Some(q) = self.queues.get_open(name) {
            return Ok(q);
        }
        validate_name(name)?;
        match self.queues.reserve(name) {
            Ok(slot) => {
                let q = self.build_queue(name, dlq_config(like))?;
                slot.fill(q.clone());
                Ok(q)
            }
            Err(Taken::Open(q)) => Ok(q),
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
        Ok(Some(Arc::new(Queue::open(
            self.queue_parts(name, config, log),
        )?)))
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
        Topic::open(self, name, dir.to_path_buf(), config).map(Some)
    }

    /// Opens every topic or queue under `<root>/<sub>`; one that fails to open is kept damaged.
    pub(in crate::store) fn open_all(self: &Arc<Self>, sub: &str) -> Result<()> {
        let fs = &*self.fs;
        let root = self.root.join(sub);
        clear_tombstones(fs, &root)?;
        for name in fs.read_dir(&root).at(&root)? {
            let dir = root.join(&name);
            if validate_name(&name).is_err() || !fs.is_dir(&dir) {
                continue;
            }
            let queues = sub == "queues";
            let opened = if queues {
                let r = self.open_queue(&name, &dir);
                r.map(|q| q.map(|q| self.queues.insert(name.clone(), q)))
            } else {
                let r = self.open_topic(&name, &dir);
                r.map(|t| t.map(|t| self.topics.insert(name.clone(), t)))
            };
            if let Err(e) = opened {
                let kind = if queues { "queue" } else { "topic" };
                tracing::error!(%kind, %name, "not opened, the rest is: {e}");
                let d = Damage::from_error(kind, &name, &dir, &e);
                if queues {
                    self.queues.insert_damaged(name, d);
                } else {
                    self.topics.insert_damaged(name, d);
                }
            }
        }
        Ok(())
    }
}
