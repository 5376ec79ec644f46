//! A data directory of named topics and queues, with durable subscriber offsets, a shared
//! cursor with ack state per queue, redelivery and dead letters.
//!
//! Directory layout (log files in `docs/format.md`, state files in `docs/format-state.md`):
//! ```text
//! <root>/topics/<name>/config            the topic's settings
//! <root>/topics/<name>/log/              partition 0's log segments
//! <root>/topics/<name>/log-<n>/          partition n's (n >= 1)
//! <root>/topics/<name>/offsets.*         its subscribers' committed offsets per partition
//! <root>/topics/<name>/groups/<group>/   a consumer group: config, ack state of partition 0,
//!                                        partition-<n>/ the ack state of partition n >= 1
//! <root>/queues/<name>/config            the queue's settings
//! <root>/queues/<name>/log/              its log segments
//! <root>/queues/<name>/acks.*            its ack state (journal + snapshot)
//! <root>/identity                        the data directory's identity (made at first use)
//! ```
//!
//! Guarantees: under `fsync = always`, `publish`, `commit`, `ack` and `deliver` return only once
//! what they did is durable. After a broker crash every delivered-but-unacked message is
//! available again with its delivery count, no acknowledged message is delivered again, and
//! offsets and floors are clamped to the log end. Consumers are at-least-once: a message whose
//! ack was not confirmed may be delivered again.
//!
//! This module is the public face of the messaging layer; the server and in-process users call
//! only what is here.
//!
//! # Layout
//! - `mod.rs`: [`Store`] (open, create, look up, delete, close), [`StartAt`], [`StoreConfig`].
//! - `inner`: the shared state behind a store: its catalogs and how topics and queues are built,
//!   opened and found at start.
//! - `catalog`: names in one state each (open, closed, moving, damaged, busy), so creates and
//!   deletes of one name never overlap and never hold up other names, and a closed name opens at
//!   its first lookup.
//! - `keeper`: closing idle topics and queues within a file budget, the background recovery pass
//!   after an unclean stop, the store's clean-shutdown mark ([`OpenSettings`]).
//! - `closed`: what a closed topic holds (subscriber and group names), read without opening it.
//! - `background`: the store's own threads (keeper, upkeep) and their stop signal.
//! - `dirs`: directory lifecycle: durable creation, tombstones, atomic deletes.
//! - `settings`: [`QueueConfig`], name rules, config files, dead-letter queue names.
//! - `clock`: the time source of ack deadlines and nack delays.
//! - `topic`: [`Topic`]: its partitions' logs, its named subscribers and its consumer groups.
//! - `partition`: [`TopicId`], [`TopicConfig`], where partition logs and group partitions live.
//! - `alter`: adding partitions to a topic, crash-safely.
//! - `topic_offsets`: a topic's named subscribers' (and Kafka groups') committed offsets.
//! - `group`: [`Group`]: a consumer group, one [`Queue`] per partition, and [`GroupConsumer`].
//! - `identity`: the data directory's identity (`<root>/identity`), made once.
//! - `builder`, `upkeep`: [`StoreBuilder`] and the thread that returns expired deliveries and
//!   applies retention for an embedded store.
//! - `subscriber`, `consumer`: the embedding handles [`Subscriber`] (a named subscriber with a
//!   position) and [`Consumer`] (a competing consumer that releases what it holds on drop).
//! - `queue/`: [`Queue`]: `state` (in-flight, ready, delayed), `read` (reads and the read cache),
//!   `deliver`, `settle` (ack, nack, release, expiry, commit), `dead_letter`.

mod alter;
mod background;
mod builder;
mod catalog;
mod clock;
mod closed;
mod consumer;
mod dirs;
mod group;
mod identity;
mod inner;
mod keeper;
mod partition;
mod producer_ids;
mod queue;
mod settings;
mod subscriber;
mod topic;
mod topic_offsets;
mod upkeep;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::LogConfig;
use crate::error::{Error, IoContext, Result};
use crate::fs::{FileSystem, FsRef, LockRef};
use crate::types::{Offset, TimestampMs};

pub use builder::{StoreBuilder, RETENTION_EVERY_DEFAULT, UPKEEP_EVERY_DEFAULT};
pub use clock::{Clock, ClockRef, ManualClock, SystemClock};
pub use consumer::Consumer;
pub use dirs::{is_tombstone, TOMBSTONE_MARK};
pub use group::{Group, GroupConsumer};
pub use identity::{decode_identity, encode_identity, IDENTITY_FILE};
pub use keeper::{open_file_limit, OpenSettings, CLEAN_FILE, KEEP_EVERY, OPENS_CONCURRENT_MAX};
pub use partition::{
    group_partition_dir, partition_log_dir, partition_of, TopicConfig, TopicId,
    GROUP_PARTITION_PREFIX, KIND_TOPIC_V2, PARTITIONS_MAX, PARTITION_LOG_PREFIX,
};
pub use producer_ids::PRODUCER_IDS_FILE;
pub use queue::{dead_letter_headers, DeadLetterReason};
pub use queue::{
    delivery_bytes, set_ack_snapshot_bytes, Acked, ConsumerId, Delivery, Pending, Queue,
    QueueReplicator, QueueStats, READ_CACHE_BYTES_MAX,
};
pub use settings::{
    inspect_queue_config, inspect_topic_config, validate_name, QueueConfig, CONFIG_FILE,
    CONFIG_MAGIC, GROUPS_DIR, KIND_QUEUE, KIND_TOPIC, LOG_DIR, NAME_MAX,
};
pub use subscriber::Subscriber;
pub use topic::{PartitionStats, SubscriberInfo, Topic, TopicStats};

use catalog::Catalog;
use dirs::{delete_dir, discard_dir, fresh_dir, make_dir};
use inner::StoreInner;
pub use partition::check_partitions;
use settings::write_config;
use std::sync::atomic::AtomicBool;

/// Where a new subscriber or an anonymous reader starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The log start offset.
    Earliest,
    /// The visible end: only messages published from now on.
    Latest,
    /// A given offset (clamped to the log's range).
    Offset(Offset),
    /// The first message at or after a time.
    Timestamp(TimestampMs),
}

/// Settings of the store.
#[derive(Clone, Debug, Default)]
pub struct StoreConfig {
    /// Log settings for topics and queues created without their own.
    pub default_log: LogConfig,
    /// How many topics and queues stay open, and when closed ones are opened.
    pub open: OpenSettings,
    /// Sync each file on its own (one fdatasync per log or state file) rather than syncing the
    /// whole file system once for the syncs of many files that arrive together (see
    /// [`crate::fs::GroupSyncFs`]). For a data directory on a file system other busy writers
    /// share, whose dirty pages a sync of the whole file system would write too.
    pub sync_per_file: bool,
}

/// Topics and queues known and open (see [`Store::open_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenStats {
    /// Topics in the data directory (damaged ones too).
    pub topics: usize,
    /// Of them, open now.
    pub topics_open: usize,
    /// Queues in the data directory (damaged ones too).
    pub queues: usize,
    /// Of them, open now.
    pub queues_open: usize,
    /// Files the open topics and queues hold.
    pub files: usize,
    /// The most they may hold before unused ones are closed.
    pub files_budget: usize,
}

/// Creates the data directory if needed and takes its `LOCK` (see [`crate::inspect::LOCK_FILE`]):
/// a second store, in this process or another, on the same directory is refused at once.
fn lock_data_dir(fs: &dyn FileSystem, root: &Path) -> Result<LockRef> {
    // Durably: the directory's own entry must survive a crash, or everything below it goes.
    crate::fs::create_dir_durable(fs, root).at(root)?;
    let path = root.join(crate::inspect::LOCK_FILE);
    fs.lock_exclusive(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Error::Locked {
                dir: root.to_path_buf(),
                lock: path.clone(),
            }
        } else {
            Error::io(&path, e)
        }
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A data directory of topics and queues.
pub struct Store {
    inner: Arc<StoreInner>,
    /// The data directory's `LOCK`, held while the store is open (one store per directory).
    _lock: crate::fs::LockRef,
    /// The background upkeep of a store opened by [`StoreBuilder`], stopped at close.
    upkeep: Mutex<Option<background::Background>>,
    /// The thread that closes idle topics and queues (and recovers after an unclean stop).
    keeper: Mutex<Option<background::Background>>,
    /// Ids for idempotent producers.
    producer_ids: producer_ids::ProducerIds,
    /// The data directory's identity once read or made ([`Store::identity`]).
    identity: Mutex<Option<[u8; 16]>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.root)
            .finish()
    }
}

impl Store {
    /// A builder for a store at `root`: the way to open one with background upkeep (ack
    /// deadlines and retention handled by a thread of the store).
    pub fn builder(root: impl Into<PathBuf>) -> StoreBuilder {
        StoreBuilder::new(root.into())
    }

    /// Opens (creating if needed) the data directory at `root` and recovers every topic and queue.
    ///
    /// A topic or queue that fails to open (a damaged log or state file) does not stop the
    /// rest: it is logged and kept under its name, whose requests get a `Corruption` error
    /// naming the damaged file until it is repaired (`sluice repair`, then a restart) or deleted.
    pub fn open(fs: FsRef, root: impl Into<PathBuf>, config: StoreConfig) -> Result<Store> {
        Self::open_with_clock(fs, root, config, Arc::new(SystemClock))
    }

    /// Like [`Store::open`] with a given clock for ack deadlines and nack delays.
    pub fn open_with_clock(
        fs: FsRef,
        root: impl Into<PathBuf>,
        config: StoreConfig,
        clock: ClockRef,
    ) -> Result<Store> {
        let root = root.into();
        let lock = lock_data_dir(&*fs, &root)?;
        let (fs, group_sync) = if config.sync_per_file {
            (fs, None)
        } else {
            let (fs, group) = crate::fs::GroupSyncFs::wrap(fs, &root);
            (fs, Some(group))
        };
        let inner = Arc::new(StoreInner {
            fs: fs.clone(),
            group_sync,
            root: root.clone(),
            clock,
            files_budget: keeper::files_budget(&config.open),
            config,
            topics: Catalog::new("topic"),
            queues: Catalog::new("queue"),
            closed: AtomicBool::new(false),
            topic_ids: Mutex::new(Default::default()),
            closed_meta: Mutex::new(Default::default()),
            opening: Default::default(),
        });
        for sub in ["topics", "queues"] {
            let d = root.join(sub);
            make_dir(&*fs, &d)?;
        }
        let clean = keeper::take_clean_mark(&*fs, &root)?;
        inner.list_all("queues")?;
        inner.list_all("topics")?;
        let producer_ids = producer_ids::ProducerIds::open(fs, &root)?;
        let recover = !clean && inner.config.open.recover_in_background;
        let keeper = keeper::start(&inner, recover)?;
        Ok(Store {
            inner,
            _lock: lock,
            upkeep: Mutex::new(None),
            keeper: Mutex::new(Some(keeper)),
            producer_ids,
            identity: Mutex::new(None),
        })
    }

    /// A producer id that this data directory has never handed out (for an idempotent Kafka
    /// producer's InitProducerId). Blocking: a durable write every
    /// [`producer_ids::PRODUCER_ID_BLOCK`] ids.
    pub fn new_producer_id(&self) -> Result<i64> {
        self.inner.check_open()?;
        self.producer_ids.next()
    }

    /// Creates a topic of one partition; see [`Store::create_topic_with_partitions`].
    pub fn create_topic(&self, name: &str, config: Option<LogConfig>) -> Result<Arc<Topic>> {
        self.create_topic_with_partitions(name, config, 1)
    }

    /// Creates a topic of `partitions` partitions (1 to [`PARTITIONS_MAX`]) with a new random
    /// id; `AlreadyExists` if it does (or is damaged). A create of a name that a create or
    /// delete is working on waits for it to finish. Every partition's log is made before the
    /// config, which is written last: a directory without one is an unfinished creation.
    pub fn create_topic_with_partitions(
        &self,
        name: &str,
        config: Option<LogConfig>,
        partitions: u32,
    ) -> Result<Arc<Topic>> {
        let id = TopicId::random().map_err(|e| Error::io("getrandom(2) for a topic id", e))?;
        self.create_topic_with_id(name, config, partitions, id)
    }

    /// [`Store::create_topic_with_partitions`] with a given id: a cluster's nodes create a
    /// topic under the id its creation chose, so every node names it alike.
    pub fn create_topic_with_id(
        &self,
        name: &str,
        config: Option<LogConfig>,
        partitions: u32,
        id: TopicId,
    ) -> Result<Arc<Topic>> {
        self.inner.check_open()?;
        validate_name(name)?;
        check_partitions(partitions)?;
        let config = config.unwrap_or_else(|| self.inner.config.default_log.clone());
        config.validate().map_err(Error::InvalidArgument)?;
        let config = TopicConfig {
            log: config,
            partitions,
            id,
        };
        let slot = self
            .inner
            .topics
            .reserve(name)
            .map_err(|_| Error::AlreadyExists {
                kind: "topic",
                name: name.into(),
            })?;
        let _place = self.inner.opening.enter();
        self.inner.make_room();
        let fs = &*self.inner.fs;
        let dir = self.inner.topic_dir(name);
        fresh_dir(fs, &dir)?;
        let made = (0..partitions).try_for_each(|p| {
            crate::fs::create_dir_durable(fs, &partition_log_dir(&dir, p)).at(&dir)
        });
        let r = made
            .and_then(|()| Topic::open(&self.inner, name, dir.clone(), config.clone()))
            .and_then(|t| match write_config(fs, &dir, KIND_TOPIC_V2, &config) {
                Ok(()) => Ok(t),
                Err(e) => {
                    let _ = t.shut(false);
                    Err(e)
                }
            });
        match r {
            Ok(t) => {
                lock(&self.inner.closed_meta).remove(name);
                slot.fill(t.clone());
                Ok(t)
            }
            Err(e) => {
                discard_dir(fs, &dir);
                Err(e)
            }
        }
    }

    /// Creates a queue; `AlreadyExists` if it does (or is damaged). Its dead-letter queue is
    /// made by its first dead letter.
    /// `InvalidArgument`, with nothing created, when it dead-letters to a default
    /// `<name>.dlq` that would be longer than [`NAME_MAX`].
    pub fn create_queue(&self, name: &str, config: QueueConfig) -> Result<Arc<Queue>> {
        self.inner.check_open()?;
        self.inner.create_queue(name, config)
    }

    /// A topic by name; `NotFound` if absent (or still being created), `Corruption` if it
    /// could not be opened.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.inner.topic(name)
    }

    /// The topic whose id is `id`, opened if it is closed; `NotFound` if none (a damaged
    /// topic's id is unknown). Ids are remembered by name once seen; a miss reads the config
    /// files of the topics not seen yet (a few microseconds each, once).
    pub fn topic_by_id(&self, id: TopicId) -> Result<Arc<Topic>> {
        self.inner.topic_by_id(id)
    }

    /// Grows topic `name` to `count` partitions; see [`Topic::add_partitions`].
    pub fn add_partitions(&self, name: &str, count: u32) -> Result<u32> {
        self.inner.check_open()?;
        self.topic(name)?.add_partitions(count)
    }

    /// A queue by name; `NotFound` if absent (or still being created), `Corruption` if it
    /// could not be opened.
    pub fn queue(&self, name: &str) -> Result<Arc<Queue>> {
        self.inner.queue(name)
    }

    /// The dead-letter queue of `queue`, made now when it does not exist yet (as its first
    /// dead letter would make it).
    pub fn dead_letter_queue_of(&self, queue: &Queue) -> Result<Arc<Queue>> {
        self.inner
            .dead_letter_queue(queue.dlq_name(), queue.config())
    }

    /// Dead-letter queue `name` of a queue or group with settings `like`, made now when it does
    /// not exist yet (as its first dead letter would make it); an existing queue is returned.
    pub fn dead_letter_queue(&self, name: &str, like: &QueueConfig) -> Result<Arc<Queue>> {
        self.inner.dead_letter_queue(name, like)
    }

    /// Topic `name`'s id and partition count, without opening it when it is closed (its config
    /// is read once): for listings of every topic (a Kafka Metadata request), which would
    /// otherwise open every log. `NotFound` or `Corruption` as [`Store::topic`].
    pub fn topic_meta(&self, name: &str) -> Result<(TopicId, u32)> {
        self.inner.topic_meta(name)
    }

    /// Names of topic `name`'s named subscribers (Kafka groups' committed offsets too), sorted;
    /// a closed topic answers from its files and stays closed.
    pub fn topic_subscribers(&self, name: &str) -> Result<Vec<String>> {
        self.inner.topic_subscribers(name)
    }

    /// Names of topic `name`'s consumer groups, sorted; a closed topic stays closed.
    pub fn topic_groups(&self, name: &str) -> Result<Vec<String>> {
        self.inner.topic_groups(name)
    }

    /// True when topic `name` exists (open, closed or damaged), without opening it.
    pub fn has_topic(&self, name: &str) -> bool {
        self.inner.topics.contains(name)
    }

    /// True when queue `name` exists (open, closed or damaged), without opening it.
    pub fn has_queue(&self, name: &str) -> bool {
        self.inner.queues.contains(name)
    }

    /// The topics open now (none is opened by this call), sorted by name: for passes that
    /// concern only what is in use, such as retention (a closed topic gets it when it opens).
    pub fn open_topics(&self) -> Vec<Arc<Topic>> {
        self.inner.topics.open_values()
    }

    /// The queues open now, sorted by name (see [`Store::open_topics`]).
    pub fn open_queues(&self) -> Vec<Arc<Queue>> {
        self.inner.queues.open_values()
    }

    /// Names of all topics (damaged ones too), sorted.
    pub fn list_topics(&self) -> Vec<String> {
        self.inner.topics.names()
    }

    /// Names of all queues (damaged ones too), sorted.
    pub fn list_queues(&self) -> Vec<String> {
        self.inner.queues.names()
    }

    /// Deletes a topic and its files (a damaged one too). Atomic on disk: once it returns, a
    /// crash never brings the topic back, and a crash before leaves it whole.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.inner.check_open()?;
        let (slot, prev) = self.inner.topics.begin_delete(name)?;
        lock(&self.inner.closed_meta).remove(name);
        let dir = self.inner.topic_dir(name);
        delete_dir(&*self.inner.fs, &dir, slot, prev, |t: &Topic| {
            let _ = t.shut(false);
        })
    }

    /// Deletes a queue and its files (not its dead-letter queue), atomically on disk.
    pub fn delete_queue(&self, name: &str) -> Result<()> {
        self.inner.check_open()?;
        let (slot, prev) = self.inner.queues.begin_delete(name)?;
        let dir = self.inner.queue_dir(name);
        delete_dir(&*self.inner.fs, &dir, slot, prev, |q: &Queue| {
            let _ = q.shut(false);
        })
    }

    /// How many topics and queues exist and how many are open, and the files the open ones
    /// hold.
    pub fn open_stats(&self) -> OpenStats {
        let inner = &self.inner;
        OpenStats {
            topics: inner.topics.names().len(),
            topics_open: inner.topics.open_count(),
            queues: inner.queues.names().len(),
            queues_open: inner.queues.open_count(),
            files: inner.topics.cost(|t| t.open_files()) + inner.queues.cost(|q| q.open_files()),
            files_budget: inner.files_budget,
        }
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// How the store's file syncs were grouped (`None` with `sync_per_file`).
    pub fn sync_stats(&self) -> Option<crate::fs::SyncStats> {
        self.inner.group_sync.as_ref().map(|g| g.stats())
    }

    /// Closes now what the keeper thread would close on its next pass (see [`OpenSettings`]):
    /// topics and queues unused for the idle time, and more while the open ones hold more
    /// files than the budget. Returns how many it closed.
    pub fn close_idle(&self) -> usize {
        self.inner.close_idle()
    }

    /// Syncs and closes everything, writing clean-shutdown markers: each log's, each queue's
    /// snapshot and, when all of that succeeded, the store's [`CLEAN_FILE`].
    pub fn close(&self) -> Result<()> {
        if let Some(mut u) = lock(&self.upkeep).take() {
            u.stop();
        }
        if let Some(mut k) = lock(&self.keeper).take() {
            k.stop();
        }
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let mut first = Ok(());
        for t in self.inner.topics.open_values() {
            let r = t.close();
            if first.is_ok() {
                first = r;
            }
        }
        for q in self.inner.queues.open_values() {
            let r = q.close();
            if first.is_ok() {
                first = r;
            }
        }
        if first.is_ok() && !self.inner.topics.any_damaged() && !self.inner.queues.any_damaged() {
            first = keeper::write_clean_mark(&*self.inner.fs, &self.inner.root);
        }
        first
    }
}
