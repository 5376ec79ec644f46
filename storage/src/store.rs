//! A data directory of named topics and queues, with durable subscriber offsets, a shared
//! cursor with ack state per queue, redelivery and dead letters.
//!
//! Directory layout (log files in `docs/format.md`, state files in `docs/format-state.md`):
//! ```text
//! <root>/topics/<name>/config            the topic's settings
//! <root>/topics/<name>/log/              its log segments
//! <root>/topics/<name>/offsets.*         its subscribers' committed offsets (journal + snapshot)
//! <root>/topics/<name>/groups/<group>/   a consumer group: config and ack state
//! <root>/queues/<name>/config            the queue's settings
//! <root>/queues/<name>/log/              its log segments
//! <root>/queues/<name>/acks.*            its ack state (journal + snapshot)
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

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::ackstate::{
    encode_deliver, encode_floor, encode_offsets, AckState, IntMap, IntSet, ACK_MAGIC, ACK_PREFIX,
    REC_ACK, REC_DEAD,
};
use crate::catalog::{Catalog, Damage, Reservation, Taken};
use crate::config::{ms_i64, FsyncPolicy, LogConfig};
use crate::error::{Error, IoContext, Result};
use crate::fs::{FileSystem, FsRef};
use crate::journal::{self, Journal};
use crate::log::{AppendInfo, Batch, Log};
use crate::offsets::SubscriberOffsets;
use crate::types::{Header, Offset, Record, TimestampMs};

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
}

/// Settings of a queue (or of a consumer group on a topic).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// The queue's log settings.
    pub log: LogConfig,
    /// A delivered message not acked within this time goes back to the queue.
    pub ack_timeout_ms: u64,
    /// After this many deliveries without an ack a message is dead-lettered.
    pub max_deliveries: u32,
    /// Name of the dead-letter queue (`<queue>.dlq` when `None`).
    pub dead_letter: Option<String>,
    /// Most delivered-but-unacked messages in the whole queue; at the bound delivery pauses.
    pub max_unacked: u32,
    /// Most delivered-but-unacked messages per consumer (prefetch).
    pub max_unacked_per_consumer: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            log: LogConfig::default(),
            ack_timeout_ms: 30_000,
            max_deliveries: 5,
            dead_letter: None,
            max_unacked: 100_000,
            max_unacked_per_consumer: 1_000,
        }
    }
}

impl QueueConfig {
    /// Checks every setting's range (the log's too); the dead-letter name's rules are checked
    /// where the queue is created, since a default name depends on the queue's own.
    pub fn validate(&self) -> Result<()> {
        self.log.validate().map_err(Error::InvalidArgument)?;
        crate::config::check_duration_ms("ack_timeout_ms", self.ack_timeout_ms)
            .map_err(Error::InvalidArgument)?;
        if let Some(d) = &self.dead_letter {
            validate_name(d)?;
        }
        Ok(())
    }
}

/// Identifies one consumer of a queue (for example one connection's consume call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerId(pub u64);

/// A message handed to one consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Its offset in the queue's log.
    pub offset: Offset,
    /// 1 for the first delivery, 2 for the first redelivery, ...
    pub attempt: u32,
    /// The message.
    pub record: Record,
}

/// Bytes a record counts for in a byte-bounded delivery ([`Queue::deliver_pending_within`]): its
/// key, header names and values and value, plus 8 for each header and 32 for the message (about
/// what lengths and offsets add when it is sent).
pub fn delivery_bytes(r: &Record) -> usize {
    let headers: usize = r
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 8)
        .sum();
    32 + r.key.as_ref().map_or(0, Vec::len) + headers + r.value.len()
}

/// Queue changes journaled but not yet synced, from [`Queue::ack_pending`] or
/// [`Queue::deliver_pending`]. Pass it to [`Queue::commit`] before confirming the acks or handing
/// out the deliveries; [`Pending::and`] merges several into one sync.
#[must_use = "pending acks and deliveries are durable only after Queue::commit"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Logical journal position to sync to.
    pos: u64,
    /// The ack floor those records produced (segments below it may be reclaimed once synced).
    floor: u64,
}

impl Pending {
    /// Nothing to sync.
    pub const NONE: Pending = Pending { pos: 0, floor: 0 };

    /// Both this and `other`: one commit covers every record of the two.
    pub fn and(self, other: Pending) -> Pending {
        Pending {
            pos: self.pos.max(other.pos),
            floor: self.floor.max(other.floor),
        }
    }
}

/// What [`Queue::ack_pending`] did: the acks to commit, and the offsets it refused because the
/// consumer does not hold them.
#[must_use = "pending acks are durable only after Queue::commit"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    /// The journaled acks of the offsets the consumer held.
    pub pending: Pending,
    /// Offsets not acked: the consumer does not hold them.
    pub not_held: Vec<Offset>,
}

impl Acked {
    /// `Ok` when every offset was held; otherwise [`Error::NotHeld`] naming the others. Call it
    /// after committing [`Acked::pending`]: the held ones are acked either way.
    pub fn into_result(self) -> Result<()> {
        if self.not_held.is_empty() {
            Ok(())
        } else {
            Err(Error::NotHeld {
                offsets: self.not_held,
            })
        }
    }
}

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

/// Figures of a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStats {
    /// First offset held.
    pub start_offset: Offset,
    /// One past the last visible offset.
    pub end_offset: Offset,
    /// Every offset below it is acknowledged.
    pub ack_floor: Offset,
    /// Next never-delivered offset.
    pub cursor: Offset,
    /// Acknowledged offsets above the floor.
    pub acked_above_floor: u64,
    /// Messages not yet acknowledged (delivered or not).
    pub depth: u64,
    /// Delivered and not yet acked.
    pub in_flight: u64,
    /// Messages moved to the dead-letter queue since creation.
    pub dead_lettered: u64,
    /// Bytes on disk.
    pub size_bytes: u64,
}

/// A source of time for ack deadlines and nack delays, replaceable in tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> TimestampMs;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> TimestampMs {
        crate::types::now_ms()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `ms`.
    pub fn new(ms: TimestampMs) -> Self {
        ManualClock(AtomicI64::new(ms))
    }
    /// Moves the clock forward.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::AcqRel);
    }
    /// Sets the clock.
    pub fn set(&self, ms: TimestampMs) {
        self.0.store(ms, Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> TimestampMs {
        self.0.load(Ordering::Acquire)
    }
}

/// Shared handle to a clock.
pub type ClockRef = Arc<dyn Clock>;

/// Header names a dead-lettered message carries (besides its original headers).
pub mod dead_letter_headers {
    /// Why it was dead-lettered.
    pub const REASON: &str = "x-dead-letter-reason";
    /// The queue (or `<topic>/<group>`) it came from.
    pub const ORIGINAL_QUEUE: &str = "x-original-queue";
    /// Its offset there.
    pub const ORIGINAL_OFFSET: &str = "x-original-offset";
    /// How many times it was delivered.
    pub const DELIVERY_COUNT: &str = "x-delivery-count";
}

/// Name of the config file of a topic, queue or group directory.
pub const CONFIG_FILE: &str = "config";
/// Magic of a config file.
pub const CONFIG_MAGIC: [u8; 8] = *b"SLUICECF";
/// Kind (the `generation` field of a config file) of a topic config (`LogConfig`).
pub const KIND_TOPIC: u64 = 1;
/// Kind of a queue or group config (`QueueConfig`).
pub const KIND_QUEUE: u64 = 2;
/// Subdirectory of a topic or queue directory holding its log segments.
pub const LOG_DIR: &str = "log";
/// Subdirectory of a topic directory holding its consumer groups.
pub const GROUPS_DIR: &str = "groups";
/// Snapshot the ack state once its journal grows past this many bytes (4 MiB by default).
static ACK_SNAPSHOT_BYTES: AtomicU64 = AtomicU64::new(4 << 20);

/// Sets the journal size that triggers an ack-state snapshot, for every queue of the process.
/// Tests lower it to exercise snapshots; the default is 4 MiB.
#[doc(hidden)]
pub fn set_ack_snapshot_bytes(bytes: u64) {
    ACK_SNAPSHOT_BYTES.store(bytes, Ordering::Relaxed);
}

fn ack_snapshot_bytes() -> u64 {
    ACK_SNAPSHOT_BYTES.load(Ordering::Relaxed)
}
/// Longest topic, queue, group or subscriber name.
pub const NAME_MAX: usize = 200;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks a topic, queue, group or subscriber name: 1 to 200 characters of `[A-Za-z0-9._-]`,
/// not `.` or `..`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid name {name:?}: use 1 to {NAME_MAX} characters of [A-Za-z0-9._-], not . or .."
        )))
    }
}

fn write_config<T: serde::Serialize>(
    fs: &dyn FileSystem,
    dir: &Path,
    kind: u64,
    c: &T,
) -> Result<()> {
    let body = postcard::to_stdvec(c).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let path = dir.join(CONFIG_FILE);
    crate::fs::write_atomic(
        fs,
        &path,
        &journal::encode_snapshot(CONFIG_MAGIC, kind, &body),
    )
    .at(&path)
}

/// Reads a topic (`LogConfig`) or queue (`QueueConfig`) config file; `None` when absent.
fn read_config<T: serde::de::DeserializeOwned>(
    fs: &dyn FileSystem,
    dir: &Path,
    kind: u64,
) -> Result<Option<T>> {
    let path = dir.join(CONFIG_FILE);
    if !fs.exists(&path) {
        return Ok(None);
    }
    let bytes = crate::fs::read_all(fs, &path).at(&path)?;
    let (k, body) = journal::decode_snapshot(&bytes, CONFIG_MAGIC)
        .map_err(|e| Error::corruption(&path, 0, e))?;
    if k != kind {
        return Err(Error::corruption(
            &path,
            0,
            format!("config kind {k}, expected {kind}"),
        ));
    }
    postcard::from_bytes(body)
        .map(Some)
        .map_err(|e| Error::corruption(&path, 0, format!("config body: {e}")))
}

/// Reads the saved config of a queue or group directory without opening it.
pub fn inspect_queue_config(fs: &dyn FileSystem, dir: &Path) -> Result<Option<QueueConfig>> {
    read_config(fs, dir, KIND_QUEUE)
}

/// Reads the saved log config of a topic directory without opening it.
pub fn inspect_topic_config(fs: &dyn FileSystem, dir: &Path) -> Result<Option<LogConfig>> {
    read_config(fs, dir, KIND_TOPIC)
}

/// Creates `dir` (and missing ancestors) and makes its entry durable in its parent.
fn make_dir(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    crate::fs::create_dir_durable(fs, dir).at(dir)
}

/// Marks the name of a tombstone: a directory a delete renamed away before removing it. `~` is
/// never in a topic, queue or group name, so no tombstone is taken for one.
pub const TOMBSTONE_MARK: &str = "~deleted~";

/// True when `name` (an entry of `topics/`, `queues/` or a `groups/` directory) is a tombstone.
pub fn is_tombstone(name: &str) -> bool {
    name.contains(TOMBSTONE_MARK)
}

static TOMBSTONE_SEQ: AtomicU64 = AtomicU64::new(0);

/// Deletes `dir` atomically on disk: renames it to a fresh tombstone beside it and makes the
/// rename durable. Returns the tombstone, for [`remove_tombstone`].
fn bury(fs: &dyn FileSystem, dir: &Path) -> Result<PathBuf> {
    let parent = crate::fs::parent_dir(dir);
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let tomb = loop {
        let n = TOMBSTONE_SEQ.fetch_add(1, Ordering::Relaxed);
        let t = parent.join(format!("{name}{TOMBSTONE_MARK}{n}"));
        if !fs.exists(&t) {
            break t;
        }
    };
    fs.rename(dir, &tomb).at(dir)?;
    fs.sync_dir(parent).at(parent)?;
    Ok(tomb)
}

/// Removes a tombstone; what a failure or a crash leaves is removed at the next open.
fn remove_tombstone(fs: &dyn FileSystem, tomb: &Path) {
    if let Err(e) = fs.remove_dir_all(tomb) {
        tracing::warn!(dir = %tomb.display(), "removing a deleted directory failed ({e}); it is removed at the next open");
    }
}

/// Removes `dir`, which holds no config: an unfinished creation. Safe to stop anywhere: what is
/// left still has no config and is removed at the next open.
fn remove_unfinished(fs: &dyn FileSystem, dir: &Path) {
    tracing::warn!(dir = %dir.display(), "removing a directory whose creation did not finish");
    if let Err(e) = fs.remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), "removing it failed ({e}); tried again at the next open");
    }
}

/// Removes the tombstones left in `parent` by deletes that did not finish.
fn clear_tombstones(fs: &dyn FileSystem, parent: &Path) -> Result<()> {
    for name in fs.read_dir(parent).at(parent)? {
        if is_tombstone(&name) {
            remove_tombstone(fs, &parent.join(name));
        }
    }
    Ok(())
}

/// Makes a fresh directory for a create that reserved its name: a leftover of a create that
/// failed earlier is buried first.
fn fresh_dir(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    if fs.exists(dir) {
        let tomb = bury(fs, dir)?;
        remove_tombstone(fs, &tomb);
    }
    make_dir(fs, dir)
}

/// Takes away the directory of a create that failed (best effort: without a config it is an
/// unfinished creation, removed at the next open anyway).
fn discard_dir(fs: &dyn FileSystem, dir: &Path) {
    if let Ok(tomb) = bury(fs, dir) {
        remove_tombstone(fs, &tomb);
    }
}

/// Deletes the directory of a name a delete marked busy: buried durably (the delete is
/// confirmed from here), `shut` stops what was open, the name is freed, the tombstone removed.
fn delete_dir<T>(
    fs: &dyn FileSystem,
    dir: &Path,
    slot: Reservation<'_, T>,
    prev: Taken<T>,
    shut: impl FnOnce(&T),
) -> Result<()> {
    let tomb = match bury(fs, dir) {
        Ok(t) => t,
        Err(e) if fs.exists(dir) => {
            // Not renamed: nothing changed.
            slot.restore(prev);
            return Err(e);
        }
        Err(e) => {
            // Renamed, but the rename is not known durable: deleted unless a crash undoes it.
            if let Taken::Open(x) = &prev {
                shut(x);
            }
            return Err(e);
        }
    };
    if let Taken::Open(x) = &prev {
        shut(x);
    }
    drop(slot);
    remove_tombstone(fs, &tomb);
    Ok(())
}

/// Checks that the dead-letter queue name a queue or group would derive fits in a name.
fn check_derived_dlq(owner: &str, dlq: &str) -> Result<()> {
    validate_name(dlq).map_err(|_| {
        Error::InvalidArgument(format!(
            "the default dead-letter queue name of {owner} would be {} characters, over the \
             limit of {NAME_MAX}: name a dead_letter queue or use a shorter name",
            dlq.len()
        ))
    })
}

/// The dead-letter queue a queue or group with `config` uses, if any: `default` unless named.
fn planned_dlq(owner: &str, config: &QueueConfig, default: String) -> Result<Option<String>> {
    if let Some(d) = &config.dead_letter {
        validate_name(d)?;
    }
    if config.max_deliveries == 0 {
        return Ok(None);
    }
    match &config.dead_letter {
        Some(d) => Ok(Some(d.clone())),
        None => {
            check_derived_dlq(owner, &default)?;
            Ok(Some(default))
        }
    }
}

struct StoreInner {
    fs: FsRef,
    root: PathBuf,
    config: StoreConfig,
    clock: ClockRef,
    topics: Catalog<Topic>,
    queues: Catalog<Queue>,
    closed: AtomicBool,
}

impl StoreInner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn queue_dir(&self, name: &str) -> PathBuf {
        self.root.join("queues").join(name)
    }

    fn topic_dir(&self, name: &str) -> PathBuf {
        self.root.join("topics").join(name)
    }

    fn queue_parts(self: &Arc<Self>, name: &str, config: QueueConfig, log: Log) -> QueueParts {
        QueueParts {
            fs: self.fs.clone(),
            dir: self.queue_dir(name),
            name: name.to_string(),
            source: name.to_string(),
            default_dlq: format!("{name}.dlq"),
            config,
            log,
            owns_log: true,
            parent: None,
            store: Arc::downgrade(self),
            clock: self.clock.clone(),
        }
    }

    /// Makes the directory and files of queue `name`, whose name the caller reserved.
    fn build_queue(self: &Arc<Self>, name: &str, config: QueueConfig) -> Result<Arc<Queue>> {
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
    fn create_queue(self: &Arc<Self>, name: &str, config: QueueConfig) -> Result<Arc<Queue>> {
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
    fn dead_letter_queue(self: &Arc<Self>, name: &str, like: &QueueConfig) -> Result<Arc<Queue>> {
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
    fn open_queue(self: &Arc<Self>, name: &str, dir: &Path) -> Result<Option<Arc<Queue>>> {
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
    fn open_topic(self: &Arc<Self>, name: &str, dir: &Path) -> Result<Option<Arc<Topic>>> {
        let fs = &*self.fs;
        let Some(config) = read_config::<LogConfig>(fs, dir, KIND_TOPIC)? else {
            remove_unfinished(fs, dir);
            return Ok(None);
        };
        Topic::open(self, name, dir.to_path_buf(), config).map(Some)
    }

    /// Opens every topic or queue under `<root>/<sub>`; one that fails to open is kept damaged.
    fn open_all(self: &Arc<Self>, sub: &str) -> Result<()> {
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

/// The settings of a dead-letter queue made for a queue with `c`: same log settings, no
/// further dead-lettering (`max_deliveries` 0 means unlimited).
fn dlq_config(c: &QueueConfig) -> QueueConfig {
    QueueConfig {
        max_deliveries: 0,
        dead_letter: None,
        ..c.clone()
    }
}

/// A data directory of topics and queues.
pub struct Store {
    inner: Arc<StoreInner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.root)
            .finish()
    }
}

impl Store {
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
        let inner = Arc::new(StoreInner {
            fs: fs.clone(),
            root: root.clone(),
            config,
            clock,
            topics: Catalog::new("topic"),
            queues: Catalog::new("queue"),
            closed: AtomicBool::new(false),
        });
        for sub in ["topics", "queues"] {
            let d = root.join(sub);
            make_dir(&*fs, &d)?;
        }
        // Queues first: topics' groups dead-letter into them.
        inner.open_all("queues")?;
        inner.open_all("topics")?;
        Ok(Store { inner })
    }

    /// Creates a topic; `AlreadyExists` if it does (or is damaged). A create of a name that a
    /// create or delete is working on waits for it to finish.
    pub fn create_topic(&self, name: &str, config: Option<LogConfig>) -> Result<Arc<Topic>> {
        self.inner.check_open()?;
        validate_name(name)?;
        let config = config.unwrap_or_else(|| self.inner.config.default_log.clone());
        config.validate().map_err(Error::InvalidArgument)?;
        let slot = self
            .inner
            .topics
            .reserve(name)
            .map_err(|_| Error::AlreadyExists {
                kind: "topic",
                name: name.into(),
            })?;
        let fs = &*self.inner.fs;
        let dir = self.inner.topic_dir(name);
        fresh_dir(fs, &dir)?;
        let r = Topic::open(&self.inner, name, dir.clone(), config.clone()).and_then(|t| {
            match write_config(fs, &dir, KIND_TOPIC, &config) {
                Ok(()) => Ok(t),
                Err(e) => {
                    let _ = t.shut(false);
                    Err(e)
                }
            }
        });
        match r {
            Ok(t) => {
                slot.fill(t.clone());
                Ok(t)
            }
            Err(e) => {
                discard_dir(fs, &dir);
                Err(e)
            }
        }
    }

    /// Creates a queue and its dead-letter queue; `AlreadyExists` if it does (or is damaged).
    /// `InvalidArgument`, with nothing created, when it dead-letters to a default
    /// `<name>.dlq` that would be longer than [`NAME_MAX`].
    pub fn create_queue(&self, name: &str, config: QueueConfig) -> Result<Arc<Queue>> {
        self.inner.check_open()?;
        self.inner.create_queue(name, config)
    }

    /// A topic by name; `NotFound` if absent (or still being created), `Corruption` if it
    /// could not be opened.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.inner.topics.get(name)
    }

    /// A queue by name; `NotFound` if absent (or still being created), `Corruption` if it
    /// could not be opened.
    pub fn queue(&self, name: &str) -> Result<Arc<Queue>> {
        self.inner.queues.get(name)
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

    /// Syncs and closes everything, writing clean-shutdown markers.
    pub fn close(&self) -> Result<()> {
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
        first
    }
}

/// A topic: a log and its named subscribers.
pub struct Topic {
    name: String,
    dir: PathBuf,
    fs: FsRef,
    log: Log,
    offsets: SubscriberOffsets,
    groups: Catalog<Queue>,
    store: Weak<StoreInner>,
    me: Weak<Topic>,
    clock: ClockRef,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic").field("name", &self.name).finish()
    }
}

impl Topic {
    fn open(
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
    fn open_groups(&self) -> Result<()> {
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

    fn open_group(&self, group: &str, dir: PathBuf, config: QueueConfig) -> Result<Queue> {
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
    fn build_group(&self, name: &str, config: QueueConfig) -> Result<Arc<Queue>> {
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
    fn reclaim(&self) {
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

    fn shut(&self, clean: bool) -> Result<()> {
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

    fn close(&self) -> Result<()> {
        self.shut(true)
    }
}

#[derive(Clone, Copy, Debug)]
struct Held {
    consumer: ConsumerId,
    deadline: TimestampMs,
}

/// The volatile part of a queue's state, around the persistent [`AckState`].
#[derive(Debug, Default)]
struct QState {
    ack: AckState,
    /// Delivered and not acked: who holds it and until when.
    inflight: IntMap<u64, Held>,
    /// Ack deadlines, cleaned lazily: an entry is live only while `inflight` holds the offset
    /// with that same deadline. Stale entries are skipped by `expire`, dropped from the front by
    /// `next_deadline`, and swept when they outnumber live ones, so an ack costs no tree removal
    /// and memory stays proportional to the in-flight window.
    deadlines: BTreeSet<(TimestampMs, u64)>,
    by_consumer: IntMap<ConsumerId, IntSet<u64>>,
    /// Returned messages available now, lowest offset first.
    ready: BTreeSet<u64>,
    /// Nacked messages waiting for their delay.
    delayed: BTreeSet<(TimestampMs, u64)>,
    delayed_at: IntMap<u64, TimestampMs>,
    closed: bool,
}

impl QState {
    fn take_inflight(&mut self, o: u64) -> Option<Held> {
        let h = self.inflight.remove(&o)?;
        if let Some(s) = self.by_consumer.get_mut(&h.consumer) {
            s.remove(&o);
            if s.is_empty() {
                self.by_consumer.remove(&h.consumer);
            }
        }
        Some(h)
    }

    /// Gives memory back after a burst: maps that are mostly empty are shrunk, so the state
    /// stays proportional to the current window rather than to its high-water mark.
    fn maybe_shrink(&mut self) {
        fn shrink<K: std::hash::Hash + Eq, V>(m: &mut IntMap<K, V>) {
            if m.capacity() > 4096 && m.len() < m.capacity() / 8 {
                m.shrink_to_fit();
            }
        }
        shrink(&mut self.inflight);
        shrink(&mut self.ack.counts);
        for set in self.by_consumer.values_mut() {
            if set.capacity() > 4096 && set.len() < set.capacity() / 8 {
                set.shrink_to_fit();
            }
        }
        if self.deadlines.len() > 2 * self.inflight.len() + 1024 {
            let inflight = &self.inflight;
            self.deadlines
                .retain(|&(t, o)| inflight.get(&o).is_some_and(|h| h.deadline == t));
        }
    }

    fn live_deadline(&self, t: TimestampMs, o: u64) -> bool {
        self.inflight.get(&o).is_some_and(|h| h.deadline == t)
    }

    fn promote(&mut self, now: TimestampMs) {
        while let Some(&(t, o)) = self.delayed.first() {
            if t > now {
                break;
            }
            self.delayed.pop_first();
            self.delayed_at.remove(&o);
            self.ready.insert(o);
        }
    }

    fn forget(&mut self, o: u64) {
        self.take_inflight(o);
        self.ready.remove(&o);
        if let Some(t) = self.delayed_at.remove(&o) {
            self.delayed.remove(&(t, o));
        }
    }

    /// Drops volatile entries below the floor (after the floor jumped).
    fn drop_below_floor(&mut self) {
        let f = self.ack.acks.floor();
        let below: Vec<u64> = self
            .inflight
            .keys()
            .copied()
            .filter(|&o| o < f)
            .chain(self.ready.range(..f).copied())
            .chain(self.delayed_at.keys().copied().filter(|&o| o < f))
            .collect();
        for o in below {
            self.forget(o);
        }
    }

    fn attempts(&self, o: u64) -> u32 {
        self.ack.counts.get(&o).copied().unwrap_or(0)
    }
}

struct QueueParts {
    fs: FsRef,
    dir: PathBuf,
    name: String,
    source: String,
    default_dlq: String,
    config: QueueConfig,
    log: Log,
    owns_log: bool,
    parent: Option<Weak<Topic>>,
    store: Weak<StoreInner>,
    clock: ClockRef,
}

/// A queue: a log, a shared cursor and ack state. Also a consumer group on a topic.
pub struct Queue {
    name: String,
    /// `name` for a queue, `<topic>/<group>` for a group (the `x-original-queue` of dead letters).
    source: String,
    dlq_name: String,
    dir: PathBuf,
    log: Log,
    owns_log: bool,
    config: QueueConfig,
    journal: Arc<Journal>,
    state: Mutex<QState>,
    parent: Option<Weak<Topic>>,
    store: Weak<StoreInner>,
    clock: ClockRef,
    /// The ack floor as of the last journal sync or snapshot: segments below it may go.
    synced_floor: AtomicU64,
    last_sync: AtomicI64,
    /// Batches read lately (see [`ReadCache`]).
    read_cache: Mutex<ReadCache>,
    /// Set when a delivery was held back by `max_unacked`, cleared by
    /// [`Queue::take_held_back`]: only then may an ack have room for another consumer.
    held_back: AtomicBool,
}

/// Most bytes of stored batches a queue keeps from its latest reads.
pub const READ_CACHE_BYTES_MAX: usize = 2 << 20;

/// The batches a queue read last, at most [`READ_CACHE_BYTES_MAX`] bytes (or the one latest
/// batch, when that alone is larger: up to `batch_bytes_max`), oldest dropped first.
/// Consumers take turns at the cursor, each a window's worth, and a read returns whole batches
/// (a producer's batch of 1000 holds two windows of 500): without this, every batch was read
/// and its checksum checked once per consumer round that touched it. Stored batches never
/// change, so a cached one is always right; one whose segment retention has since removed may
/// still be handed out if it was picked while visible.
#[derive(Debug, Default)]
struct ReadCache {
    batches: VecDeque<Batch>,
    bytes: usize,
}

impl ReadCache {
    fn find(&self, o: u64) -> Option<Batch> {
        self.batches
            .iter()
            .rev()
            .find(|b| b.header.base_offset.0 <= o && o <= b.header.last_offset().0)
            .cloned()
    }

    fn put(&mut self, b: Batch) {
        if self
            .batches
            .iter()
            .any(|c| c.header.base_offset == b.header.base_offset)
        {
            return;
        }
        self.bytes += b.bytes.len();
        self.batches.push_back(b);
        while self.bytes > READ_CACHE_BYTES_MAX && self.batches.len() > 1 {
            let old = self.batches.pop_front().expect("more than one batch");
            self.bytes -= old.bytes.len();
        }
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("name", &self.source).finish()
    }
}

impl Queue {
    fn open(p: QueueParts) -> Result<Queue> {
        let (journal, l) = Journal::open(p.fs.clone(), &p.dir, ACK_PREFIX, ACK_MAGIC)?;
        let start = p.log.start_offset().0;
        let mut ack = AckState::recover(&p.dir, l.snapshot.as_deref(), &l.records, start)?;
        let end = p.log.end_offset().0;
        let mut changed = ack.clamp(end);
        if changed {
            tracing::warn!(dir = %p.dir.display(), "ack state was past the log end {end}: clamped");
        }
        if ack.acks.floor() < start {
            // Messages the log no longer holds (retention) count as gone.
            ack.raise_floor(start);
            changed = true;
        }
        let mut st = QState {
            ack,
            ..QState::default()
        };
        // Every delivered, unacked message is available again at once.
        let (f, c) = (st.ack.acks.floor(), st.ack.cursor);
        st.ready = (f..c).filter(|&o| !st.ack.acks.contains(o)).collect();
        let floor = st.ack.acks.floor();
        if changed
            || journal.since_snapshot() > ack_snapshot_bytes()
            || journal.version() < journal::STATE_VERSION
        {
            // Journal records about offsets the log lost must never be replayed again, and
            // run records go only into a journal whose header says they may be there.
            journal.snapshot(&st.ack.encode_snapshot())?;
        }
        let dlq_name = p.config.dead_letter.clone().unwrap_or(p.default_dlq);
        let journal = Arc::new(journal);
        if let Some(every) = p.log.config().fsync.interval() {
            journal.spawn_flusher(every);
        }
        Ok(Queue {
            name: p.name,
            source: p.source,
            dlq_name,
            dir: p.dir,
            log: p.log,
            owns_log: p.owns_log,
            config: p.config,
            journal,
            state: Mutex::new(st),
            parent: p.parent,
            store: p.store,
            last_sync: AtomicI64::new(p.clock.now_ms()),
            clock: p.clock,
            synced_floor: AtomicU64::new(floor),
            read_cache: Mutex::new(ReadCache::default()),
            held_back: AtomicBool::new(false),
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
    /// Its settings.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }
    /// Its state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Name of its dead-letter queue.
    pub fn dlq_name(&self) -> &str {
        &self.dlq_name
    }
    /// Appends records (durable per the fsync policy on return).
    pub fn publish(&self, records: &[Record]) -> Result<AppendInfo> {
        self.log.append(records)
    }

    fn lock_open(&self) -> Result<MutexGuard<'_, QState>> {
        let g = lock(&self.state);
        if g.closed {
            return Err(Error::Closed);
        }
        self.journal.check()?;
        Ok(g)
    }

    /// Makes journal records up to `pos` durable as the fsync policy says, then lets the log
    /// reclaim segments below `floor` (the floor those records produced).
    fn commit_journal(&self, pos: u64, floor: u64) -> Result<()> {
        let synced = match self.log.config().fsync {
            FsyncPolicy::Always => {
                self.journal.sync_to(pos)?;
                true
            }
            FsyncPolicy::Interval(ms) => {
                let now = self.clock.now_ms();
                if now.saturating_sub(self.last_sync.load(Ordering::Acquire)) >= ms_i64(ms) {
                    self.last_sync.store(now, Ordering::Release);
                    self.journal.sync_to(pos)?;
                    true
                } else {
                    false
                }
            }
            FsyncPolicy::Never => false,
        };
        if synced && self.synced_floor.fetch_max(floor, Ordering::AcqRel) < floor {
            self.reclaim();
        }
        Ok(())
    }

    fn reclaim(&self) {
        match &self.parent {
            Some(t) => {
                if let Some(t) = t.upgrade() {
                    t.reclaim();
                }
            }
            None => {
                let f = self.synced_floor.load(Ordering::Acquire);
                if let Err(e) = self.log.delete_before(Offset(f)) {
                    tracing::warn!(queue = %self.source, "reclaiming segments failed: {e}");
                }
            }
        }
    }

    /// Snapshots the ack state when the journal has grown enough. Runs under the state lock.
    fn maybe_snapshot(&self, st: &QState) -> Result<()> {
        if self.journal.since_snapshot() > ack_snapshot_bytes() {
            match self.journal.snapshot(&st.ack.encode_snapshot()) {
                Ok(()) => {}
                Err(e) if e.is_fd_exhausted() => {
                    // The journal goes on as it is; the next append tries again.
                    tracing::warn!(queue = %self.source, "ack-state snapshot postponed: {e}");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            // The snapshot is durable: segments below its floor may go (at the next reclaim).
            self.synced_floor
                .fetch_max(st.ack.acks.floor(), Ordering::AcqRel);
        }
        Ok(())
    }

    fn max_deliveries_reached(&self, attempts: u32) -> bool {
        self.config.max_deliveries > 0 && attempts >= self.config.max_deliveries
    }

    /// Reads the records at `offsets` (ascending); a record the log no longer holds is `None`.
    fn read_at(&self, offsets: &[u64]) -> Result<Vec<Option<Record>>> {
        self.read_at_within(offsets, usize::MAX)
    }

    /// [`Queue::read_at`] that stops once the records read take `max_bytes` ([`delivery_bytes`]):
    /// the result is then a prefix of `offsets`, of at least one record.
    fn read_at_within(&self, offsets: &[u64], max_bytes: usize) -> Result<Vec<Option<Record>>> {
        let mut out: Vec<Option<Record>> = Vec::with_capacity(offsets.len());
        let mut bytes = 0usize;
        let mut i = 0;
        while i < offsets.len() {
            // A run of consecutive offsets is read together.
            let mut j = i + 1;
            while j < offsets.len() && offsets[j] == offsets[j - 1] + 1 {
                j += 1;
            }
            let mut from = offsets[i];
            let end = offsets[j - 1] + 1;
            while from < end {
                let cached = lock(&self.read_cache).find(from);
                let batch = match cached {
                    Some(b) => b,
                    None => {
                        let n = (end - from) as usize;
                        let bytes = (n * 512).clamp(64 << 10, 8 << 20);
                        let batches = match self.log.read(Offset(from), bytes) {
                            Ok(b) => b,
                            Err(Error::OffsetOutOfRange { .. }) => Vec::new(),
                            Err(e) => return Err(e),
                        };
                        let first = batches
                            .iter()
                            .find(|b| b.header.last_offset().0 >= from)
                            .cloned();
                        let mut cache = lock(&self.read_cache);
                        for b in batches {
                            cache.put(b);
                        }
                        match first {
                            Some(b) => b,
                            None => {
                                // Nothing at or after `from`: the rest of the run is gone.
                                while from < end {
                                    out.push(None);
                                    from += 1;
                                }
                                break;
                            }
                        }
                    }
                };
                for r in batch.records_from(Offset(from)) {
                    let r = r?;
                    let o = r.offset.0;
                    if o >= end {
                        break;
                    }
                    while from < o {
                        out.push(None);
                        from += 1;
                    }
                    let record = r.to_record();
                    bytes = bytes.saturating_add(delivery_bytes(&record));
                    out.push(Some(record));
                    from += 1;
                    if bytes >= max_bytes {
                        return Ok(out);
                    }
                }
                // Offsets of this batch past its last record (none are expected) are gone.
                let next = batch.header.next_offset().0.min(end);
                while from < next {
                    out.push(None);
                    from += 1;
                }
            }
            i = j;
        }
        debug_assert_eq!(out.len(), offsets.len());
        Ok(out)
    }

    /// Hands up to `max` messages to `consumer`: expired and nacked ones first, then new ones,
    /// within the unacked bounds. Never blocks; empty when nothing is available.
    ///
    /// Each delivery (with its attempt number) is journaled, and synced under `always`, before
    /// it is returned, so delivery counts survive a broker crash.
    pub fn deliver(&self, consumer: ConsumerId, max: usize) -> Result<Vec<Delivery>> {
        let (out, pending) = self.deliver_pending(consumer, max)?;
        self.commit(pending)?;
        Ok(out)
    }

    /// [`Queue::deliver`] without its sync: the deliveries are in the queue's state and journal,
    /// and must not leave the broker before [`Queue::commit`] of the returned [`Pending`] (with
    /// any other pending work, such as the acks that opened the consumer's window, so all of it
    /// shares one sync).
    pub fn deliver_pending(
        &self,
        consumer: ConsumerId,
        max: usize,
    ) -> Result<(Vec<Delivery>, Pending)> {
        self.deliver_pending_within(consumer, max, usize::MAX)
    }

    /// [`Queue::deliver_pending`] of messages taking about `max_bytes` at most (their keys,
    /// headers and values, see [`delivery_bytes`]); at least one message when any is available,
    /// however large. What does not fit stays in the queue for the next call.
    pub fn deliver_pending_within(
        &self,
        consumer: ConsumerId,
        max: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Delivery>, Pending)> {
        let now = self.clock.now_ms();
        let mut dead = Vec::new();
        let mut out = Vec::new();
        let (pos, floor) = {
            let mut st = self.lock_open()?;
            st.promote(now);
            let start = self.log.start_offset().0;
            let mut rec = Vec::new();
            if start > st.ack.acks.floor() {
                encode_floor(&mut rec, start);
            }
            let global = match self.config.max_unacked {
                0 => usize::MAX,
                m => (m as usize).saturating_sub(st.inflight.len()),
            };
            let mine = st.by_consumer.get(&consumer).map_or(0, IntSet::len);
            let per = match self.config.max_unacked_per_consumer {
                0 => usize::MAX,
                m => (m as usize).saturating_sub(mine),
            };
            let room = max.min(global).min(per);
            if global < max.min(per) {
                self.held_back.store(true, Ordering::Release);
            }
            let mut picks: Vec<(u64, u32)> = Vec::new();
            let mut popped = Vec::new();
            while picks.len() < room {
                let Some(o) = st.ready.pop_first() else { break };
                if st.ack.acks.contains(o) || o < start {
                    continue;
                }
                popped.push(o);
                let a = st.attempts(o);
                if self.max_deliveries_reached(a) {
                    dead.push(o);
                } else {
                    picks.push((o, a + 1));
                }
            }
            let visible = self.log.visible_end().0;
            let mut next = st.ack.cursor.max(start);
            while picks.len() < room && next < visible {
                picks.push((next, 1));
                next += 1;
            }
            picks.sort_unstable();
            let offs: Vec<u64> = picks.iter().map(|p| p.0).collect();
            let records = match self.read_at_within(&offs, max_bytes) {
                Ok(r) => r,
                Err(e) => {
                    st.ready.extend(popped);
                    return Err(e);
                }
            };
            // Picks past the byte bound were not read: returned ones go back to be ready, new
            // ones (at or past the cursor) are simply not taken yet.
            for &(o, _) in &picks[records.len()..] {
                if o < st.ack.cursor {
                    st.ready.insert(o);
                }
            }
            let mut items = Vec::with_capacity(picks.len());
            let mut gone = Vec::new();
            for ((o, a), r) in picks.into_iter().zip(records) {
                match r {
                    Some(record) => {
                        items.push((o, a));
                        out.push(Delivery {
                            offset: Offset(o),
                            attempt: a,
                            record,
                        });
                    }
                    None => gone.push(o),
                }
            }
            if !items.is_empty() {
                encode_deliver(&mut rec, &items);
            }
            if !gone.is_empty() {
                // Removed from the log under us (retention): nothing left to deliver. Journaled
                // as passed by the cursor, then acked, so a replay moves the cursor past them too.
                let passed: Vec<(u64, u32)> = gone.iter().map(|&o| (o, st.attempts(o))).collect();
                encode_deliver(&mut rec, &passed);
                encode_offsets(&mut rec, REC_ACK, &gone);
            }
            if rec.is_empty() {
                drop(st);
                self.dead_letter(dead)?;
                return Ok((out, Pending::NONE));
            }
            let pos = match self.journal.append(&rec) {
                Ok(p) => p,
                Err(e) => {
                    st.ready.extend(popped);
                    return Err(e);
                }
            };
            if start > st.ack.acks.floor() {
                st.ack.raise_floor(start);
                st.drop_below_floor();
            }
            let deadline = now.saturating_add(ms_i64(self.config.ack_timeout_ms));
            for &(o, a) in &items {
                st.ack.counts.insert(o, a);
                st.ack.cursor = st.ack.cursor.max(o + 1);
                st.inflight.insert(o, Held { consumer, deadline });
                st.deadlines.insert((deadline, o));
                st.by_consumer.entry(consumer).or_default().insert(o);
            }
            for &o in &gone {
                st.ack.acks.insert(o);
                st.ack.counts.remove(&o);
                st.ack.cursor = st.ack.cursor.max(o + 1);
            }
            self.maybe_snapshot(&st)?;
            (pos, st.ack.acks.floor())
        };
        // Dead letters sync the journal up to their own record, after this one. A failed
        // dead-lettering puts its messages back to be tried again (next round or expiry); it
        // must not cost this round's deliveries, journaled already with their attempts.
        if let Err(e) = self.dead_letter(dead) {
            tracing::warn!(queue = %self.source, "dead-lettering failed, will retry: {e}");
        }
        Ok((out, Pending { pos, floor }))
    }

    /// Acknowledges messages `consumer` holds; returns once the acks are durable. Offsets it
    /// does not hold (never delivered to it, already acked, returned after their deadline or
    /// released, being dead-lettered) are not acked: after the others are durable the call
    /// fails with [`Error::NotHeld`] naming them.
    pub fn ack(&self, consumer: ConsumerId, offsets: &[Offset]) -> Result<()> {
        let acked = self.ack_pending(consumer, offsets)?;
        self.commit(acked.pending)?;
        acked.into_result()
    }

    /// [`Queue::ack`] without its sync: the acks of the offsets `consumer` holds are in the
    /// queue's state and journal, so the consumer's window may open and the next delivery's
    /// record share the acks' sync; they may be confirmed only after [`Queue::commit`] of the
    /// returned [`Acked::pending`]. An offset the consumer does not hold is listed in
    /// [`Acked::not_held`] and changes nothing: a consumer can never settle a message another
    /// consumer holds, nor one the queue decided to redeliver or dead-letter.
    pub fn ack_pending(&self, consumer: ConsumerId, offsets: &[Offset]) -> Result<Acked> {
        let mut st = self.lock_open()?;
        let (mut list, mut not_held) = (Vec::with_capacity(offsets.len()), Vec::new());
        for &o in offsets {
            if st.inflight.get(&o.0).map(|h| h.consumer) == Some(consumer) {
                list.push(o.0);
            } else {
                not_held.push(o);
            }
        }
        if list.is_empty() {
            return Ok(Acked {
                pending: Pending::NONE,
                not_held,
            });
        }
        list.sort_unstable();
        list.dedup();
        let mut rec = Vec::with_capacity(13 + 8 * list.len());
        encode_offsets(&mut rec, REC_ACK, &list);
        let pos = self.journal.append(&rec)?;
        for &o in &list {
            st.ack.acks.insert(o);
            st.ack.counts.remove(&o);
            st.forget(o);
        }
        st.maybe_shrink();
        self.maybe_snapshot(&st)?;
        Ok(Acked {
            pending: Pending {
                pos,
                floor: st.ack.acks.floor(),
            },
            not_held,
        })
    }

    /// True (once) when a delivery was held back by the queue's `max_unacked` bound since the
    /// last call: acks made since may leave room for consumers that were waiting for it. Read
    /// it after the acks are applied: a delivery held back before them set it already.
    pub fn take_held_back(&self) -> bool {
        self.held_back.swap(false, Ordering::AcqRel)
    }

    /// Makes pending acks and deliveries durable as the fsync policy says (one group-commit
    /// sync for all of them), then lets the log reclaim what the acks released.
    pub fn commit(&self, pending: Pending) -> Result<()> {
        if pending == Pending::NONE {
            return Ok(());
        }
        self.commit_journal(pending.pos, pending.floor)
    }

    /// Returns messages `consumer` holds to the queue, redelivered after `delay_ms` (at most
    /// [`crate::config::DURATION_MS_MAX`]). A message already delivered `max_deliveries` times
    /// is dead-lettered instead. Offsets the consumer does not hold are left alone and named in
    /// the [`Error::NotHeld`] the call then fails with.
    pub fn nack(&self, consumer: ConsumerId, offsets: &[Offset], delay_ms: u64) -> Result<()> {
        if delay_ms > crate::config::DURATION_MS_MAX {
            return Err(Error::InvalidArgument(format!(
                "nack delay_ms must be at most {} (100 years), got {delay_ms}",
                crate::config::DURATION_MS_MAX
            )));
        }
        let now = self.clock.now_ms();
        let mut dead = Vec::new();
        let mut not_held = Vec::new();
        {
            let mut st = self.lock_open()?;
            for &off in offsets {
                let o = off.0;
                if st.inflight.get(&o).map(|h| h.consumer) != Some(consumer) {
                    not_held.push(off);
                    continue;
                }
                st.take_inflight(o);
                if self.max_deliveries_reached(st.attempts(o)) {
                    dead.push(o);
                } else if delay_ms == 0 {
                    st.ready.insert(o);
                } else {
                    let at = now.saturating_add(ms_i64(delay_ms));
                    st.delayed.insert((at, o));
                    st.delayed_at.insert(o, at);
                }
            }
        }
        self.dead_letter(dead)?;
        Acked {
            pending: Pending::NONE,
            not_held,
        }
        .into_result()
    }

    /// A consumer went away: everything it held goes back to the queue at once (messages past
    /// `max_deliveries` are dead-lettered at the next `deliver` or `expire`).
    pub fn release(&self, consumer: ConsumerId) {
        let mut st = lock(&self.state);
        let held: Vec<u64> = st
            .by_consumer
            .get(&consumer)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for o in held {
            st.take_inflight(o);
            st.ready.insert(o);
        }
    }

    /// Returns messages whose ack deadline passed; dead-letters those past `max_deliveries`.
    /// Returns how many were returned or dead-lettered.
    pub fn expire(&self) -> Result<usize> {
        let now = self.clock.now_ms();
        let mut dead = Vec::new();
        let mut n = 0;
        {
            let mut st = self.lock_open()?;
            st.promote(now);
            while let Some(&(t, o)) = st.deadlines.first() {
                if t > now {
                    break;
                }
                st.deadlines.pop_first();
                if !st.live_deadline(t, o) {
                    continue;
                }
                st.take_inflight(o);
                n += 1;
                if self.max_deliveries_reached(st.attempts(o)) {
                    dead.push(o);
                } else {
                    st.ready.insert(o);
                }
            }
            // Returned messages that reached the bound (released ones, or after a restart).
            let over: Vec<u64> = st
                .ready
                .iter()
                .copied()
                .filter(|&o| self.max_deliveries_reached(st.attempts(o)))
                .collect();
            for o in over {
                st.ready.remove(&o);
                dead.push(o);
                n += 1;
            }
        }
        self.dead_letter(dead)?;
        Ok(n)
    }

    /// Moves messages to the dead-letter queue: published there first (durably under its
    /// policy), then marked DEAD in this queue's journal. A crash between the two leaves the
    /// message unacked here with its delivery count at the bound, so it is dead-lettered again
    /// after the restart: at worst twice, never lost.
    fn dead_letter(&self, mut offsets: Vec<u64>) -> Result<usize> {
        if offsets.is_empty() {
            return Ok(0);
        }
        offsets.sort_unstable();
        let put_back = |offs: &[u64]| {
            let mut st = lock(&self.state);
            for &o in offs {
                if !st.ack.acks.contains(o) {
                    st.ready.insert(o);
                }
            }
        };
        let records = match self.read_at(&offsets) {
            Ok(r) => r,
            Err(e) => {
                put_back(&offsets);
                return Err(e);
            }
        };
        let attempts: Vec<u32> = {
            let st = lock(&self.state);
            offsets.iter().map(|&o| st.attempts(o)).collect()
        };
        let letters: Vec<Record> = offsets
            .iter()
            .zip(records)
            .zip(&attempts)
            .filter_map(|((&o, r), &a)| {
                let mut r = r?;
                use dead_letter_headers as h;
                r.headers.push(Header::new(h::REASON, "max-deliveries"));
                r.headers
                    .push(Header::new(h::ORIGINAL_QUEUE, self.source.as_bytes()));
                r.headers
                    .push(Header::new(h::ORIGINAL_OFFSET, o.to_string()));
                r.headers
                    .push(Header::new(h::DELIVERY_COUNT, a.to_string()));
                Some(r)
            })
            .collect();
        if !letters.is_empty() {
            let res = (|| {
                let store = self.store.upgrade().ok_or(Error::Closed)?;
                let dlq = store.dead_letter_queue(&self.dlq_name, &self.config)?;
                // Dead-lettering adds headers: the copy may carry more than a publish.
                dlq.log().append_forwarded(&letters)
            })();
            if let Err(e) = res {
                put_back(&offsets);
                return Err(e);
            }
        }
        let (pos, floor) = {
            let mut st = self.lock_open()?;
            let list: Vec<u64> = offsets
                .into_iter()
                .filter(|&o| !st.ack.acks.contains(o))
                .collect();
            let mut rec = Vec::new();
            encode_offsets(&mut rec, REC_DEAD, &list);
            let pos = self.journal.append(&rec)?;
            for &o in &list {
                st.ack.acks.insert(o);
                st.ack.counts.remove(&o);
                st.ack.dead_lettered += 1;
                st.forget(o);
            }
            self.maybe_snapshot(&st)?;
            (pos, st.ack.acks.floor())
        };
        self.commit_journal(pos, floor)?;
        Ok(letters.len())
    }

    /// The earliest ack deadline or nack delay pending, to schedule the next `expire`.
    pub fn next_deadline(&self) -> Option<TimestampMs> {
        let mut st = lock(&self.state);
        while let Some(&(t, o)) = st.deadlines.first() {
            if st.live_deadline(t, o) {
                break;
            }
            st.deadlines.pop_first();
        }
        let a = st.deadlines.first().map(|d| d.0);
        let b = st.delayed.first().map(|d| d.0);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Messages held by a consumer (delivered to it, not acked).
    pub fn held_by(&self, consumer: ConsumerId) -> Vec<Offset> {
        let st = lock(&self.state);
        let mut v: Vec<Offset> = st
            .by_consumer
            .get(&consumer)
            .map(|s| s.iter().map(|&o| Offset(o)).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Figures.
    pub fn stats(&self) -> QueueStats {
        let st = lock(&self.state);
        let end = self.log.visible_end();
        let floor = st.ack.acks.floor();
        let above = st.ack.acks.above();
        QueueStats {
            start_offset: self.log.start_offset(),
            end_offset: end,
            ack_floor: Offset(floor),
            cursor: Offset(st.ack.cursor),
            acked_above_floor: above,
            depth: end.0.saturating_sub(floor).saturating_sub(above),
            in_flight: st.inflight.len() as u64,
            dead_lettered: st.ack.dead_lettered,
            size_bytes: if self.owns_log {
                self.log.size_bytes()
            } else {
                0
            },
        }
    }

    /// Syncs the ack journal whatever the policy.
    pub fn flush(&self) -> Result<()> {
        self.journal.flush()
    }

    /// Stops the queue; with `clean`, first writes a snapshot so the next open replays nothing.
    fn shut(&self, clean: bool) -> Result<()> {
        let mut first = Ok(());
        {
            let mut st = lock(&self.state);
            if st.closed {
                return Ok(());
            }
            self.journal.stop();
            if clean {
                first = self.journal.snapshot(&st.ack.encode_snapshot());
            }
            st.closed = true;
        }
        if self.owns_log {
            let r = self.log.close();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn close(&self) -> Result<()> {
        self.shut(true)
    }
}
