//! A log: the sequence of segments of one topic or queue, with durability, recovery, reads and
//! retention.
//!
//! Writers take the state lock for the write itself (a pwrite into the page cache). Durability is
//! a separate step, [`Log::sync_to`], run by a group-commit leader: the first caller takes the
//! sync lock, snapshots the end of the log, fdatasyncs once and publishes the new durable end;
//! callers that queued behind it find their data already covered and return without a sync of
//! their own. Readers see only the *visible* end: the durable end under `always` (nothing a
//! crash could take back is ever delivered), the written end otherwise.
//!
//! Files: this one holds the [`Log`] type, its shared state and small accessors, visibility and
//! close; `append` (validation, base offsets, roll), `sync` (group commit, recovery point),
//! `read` (batches through the scanner, records, time lookup), `retention`, `truncate` and
//! `restart` (a replica's tail cut, or all of it dropped for a snapshot), `flusher` (the
//! `interval` sync thread) and `recover` (recovery at open, as named steps).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::checkpoint::{
    self, CleanShutdown, RecoveryPoint, CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE,
};
use crate::config::{ms_i64, FsyncPolicy, LogConfig, RecoveryPolicy};
use crate::error::{Error, IoContext, Result};
use crate::format::scan::{self, ScanEnd, ScanRules, ScanStop, Step};
use crate::format::{
    self, decode_batch_header, BatchHeader, BatchRecords, RecordError, BATCH_HEADER_LEN,
    FILE_HEADER_LEN,
};
use crate::fs::{write_atomic, FileRef, FsRef};
use crate::segment::{
    parse_segment_name, scan_batches, segment_path, Segment, SegmentFile, LOG_EXT,
};
use crate::types::{now_ms, Offset, Record, TimestampMs};

mod append;
mod flusher;
pub mod producers;
mod read;
mod recover;
mod restart;
mod retention;
mod sync;
mod truncate;

pub use append::Appended;
use flusher::interval_flusher;
use recover::recover;

/// Most bytes appended under direct writes and not yet written by a group-commit leader; past
/// it appends fail with `LimitReached` (the disk is not keeping up, or failing).
pub const DIRECT_PENDING_BYTES_MAX: u64 = 256 << 20;

/// The offsets an append was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record.
    pub base_offset: Offset,
    /// Offset of the last record.
    pub last_offset: Offset,
}

impl AppendInfo {
    /// One past the last offset.
    pub fn next_offset(&self) -> Offset {
        self.last_offset.add(1)
    }
}

/// A batch read from the log: its checked header and its bytes in the on-disk layout.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The decoded header.
    pub header: BatchHeader,
    /// The whole batch, header included.
    pub bytes: Bytes,
}

impl Batch {
    /// The records of the batch (decompressed when the batch is compressed); iterate them with
    /// [`BatchRecords::iter`], whose errors [`record_error`] turns into this crate's.
    pub fn records(&self) -> Result<BatchRecords<'_>> {
        BatchRecords::new(&self.bytes, &self.header).map_err(|e| Error::InvalidBatch(e.to_string()))
    }
}

/// A malformed record of a stored batch as this crate's error.
pub fn record_error(e: RecordError) -> Error {
    Error::InvalidBatch(e.to_string())
}

/// A segment as seen from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Base offset.
    pub base_offset: Offset,
    /// One past its last offset.
    pub next_offset: Offset,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Largest record timestamp (`i64::MIN` when empty).
    pub max_timestamp_ms: TimestampMs,
    /// The time time-based retention ages it by: its largest record timestamp, or when it
    /// was last written if that is earlier (a clock set back by a producer cannot keep a
    /// segment forever).
    pub retention_time_ms: TimestampMs,
}

/// What opening a log found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// True when the clean-shutdown marker was valid and nothing was scanned.
    pub clean: bool,
    /// Bytes scanned and checked past the recovery point.
    pub scanned_bytes: u64,
    /// Bytes cut from the tail as invalid.
    pub truncated_bytes: u64,
    /// Whole segments deleted because they followed an invalid batch.
    pub dropped_segments: usize,
    /// Index files rebuilt from the log.
    pub rebuilt_indexes: usize,
    /// How long opening took.
    pub duration: Duration,
}

/// Retention limits of a log (`None`: no limit of that kind).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete sealed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// Delete the oldest sealed segments while the log is larger than this.
    pub retention_bytes: Option<u64>,
}

/// Called with the new visible end each time it advances.
pub type AppendListener = Arc<dyn Fn(Offset) + Send + Sync>;

struct State {
    segments: Vec<Segment>,
    /// Segment base and byte position the recovery point was last written at (recovery leaves
    /// it at the end of the log); a sync rewrites it once the synced data runs past it by
    /// `recovery_point_interval_bytes`.
    rp_at: (Offset, u64),
    closed: bool,
    /// Idempotent producers, built at the first idempotent append (`producers`).
    producers: Option<producers::ProducerTable>,
}

impl State {
    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }
    fn next_offset(&self) -> Offset {
        self.active().next_offset
    }
    fn start_offset(&self) -> Offset {
        self.segments[0].base()
    }
}

struct Shared {
    dir: PathBuf,
    fs: FsRef,
    config: LogConfig,
    /// Retention by age and by size in force: the config's at open, changed by
    /// [`Log::set_retention`].
    retention: Mutex<Retention>,
    state: Mutex<State>,
    /// Held by the group-commit leader while it syncs.
    sync_lock: Mutex<()>,
    /// One past the last durable offset.
    durable_end: AtomicU64,
    /// One past the last written offset (mirrors the state, readable without the lock).
    written_end: AtomicU64,
    /// One past the last offset a replicated log has committed (`u64::MAX`: not replicated);
    /// readers never see past it ([`Log::set_commit_end`]).
    commit_end: AtomicU64,
    /// In a cluster: why this node holds no replica of the log (its partition is placed on
    /// other nodes); readers are refused ([`Log::set_placed_elsewhere`]).
    elsewhere: Mutex<Option<Elsewhere>>,
    /// Set after a failed fsync: every later write fails (fail-stop).
    failed: Mutex<Option<String>>,
    has_failed: AtomicBool,
    /// Signalled when the visible end advances or the log closes.
    visible_cv: Condvar,
    visible_mx: Mutex<()>,
    listener: Mutex<Option<AppendListener>>,
    flusher_stop: Mutex<bool>,
    flusher_cv: Condvar,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Says why a node holds no replica of a log, and where to go ([`Log::set_placed_elsewhere`]).
pub type Elsewhere = Arc<dyn Fn() -> String + Send + Sync>;

/// A log. Cloning gives another handle to the same log; it is closed by [`Log::close`].
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Log {
    /// Opens the log in `dir`, creating it when absent, and recovers it (see `docs/format.md`,
    /// "Recovery").
    pub fn open(fs: FsRef, dir: impl Into<PathBuf>, config: LogConfig) -> Result<Log> {
        Self::open_with_report(fs, dir, config).map(|(log, _)| log)
    }

    /// Like [`Log::open`], and says what recovery did.
    pub fn open_with_report(
        fs: FsRef,
        dir: impl Into<PathBuf>,
        config: LogConfig,
    ) -> Result<(Log, RecoveryReport)> {
        let dir = dir.into();
        config.validate().map_err(Error::InvalidArgument)?;
        let started = Instant::now();
        let (mut segments, report) = recover(&*fs, &dir, &config)?;
        if config.fsync == FsyncPolicy::Always && config.direct_io {
            segments
                .last_mut()
                .expect("active segment")
                .enable_direct(&*fs)?;
        }
        let active = segments.last().expect("recovery leaves an active segment");
        let next = active.next_offset;
        let rp_at = (active.base(), active.size);
        let retention = Retention {
            retention_ms: config.retention_ms,
            retention_bytes: config.retention_bytes,
        };
        let shared = Arc::new(Shared {
            dir,
            fs,
            config,
            retention: Mutex::new(retention),
            state: Mutex::new(State {
                segments,
                rp_at,
                closed: false,
                producers: None,
            }),
            sync_lock: Mutex::new(()),
            durable_end: AtomicU64::new(next.0),
            written_end: AtomicU64::new(next.0),
            commit_end: AtomicU64::new(u64::MAX),
            elsewhere: Mutex::new(None),
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
            visible_cv: Condvar::new(),
            visible_mx: Mutex::new(()),
            listener: Mutex::new(None),
            flusher_stop: Mutex::new(false),
            flusher_cv: Condvar::new(),
            flusher: Mutex::new(None),
        });
        if let Some(every) = shared.config.fsync.interval() {
            let weak = Arc::downgrade(&shared);
            let handle = std::thread::Builder::new()
                .name("sluice-flush".into())
                .spawn(move || interval_flusher(weak, every))
                .map_err(|e| Error::io(&shared.dir, e))?;
            *lock(&shared.flusher) = Some(handle);
        }
        let report = RecoveryReport {
            duration: started.elapsed(),
            ..report
        };
        Ok((Log { shared }, report))
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The log's settings as it was opened with ([`Log::retention`] holds the retention in
    /// force).
    pub fn config(&self) -> &LogConfig {
        &self.shared.config
    }

    /// The retention limits in force.
    pub fn retention(&self) -> Retention {
        *lock(&self.shared.retention)
    }

    /// Changes the retention limits from now on (the next retention pass applies them), once
    /// `persist` (which keeps them durably, as a topic's config file) succeeded. Changes are
    /// serialized: the file and the limits in force change in the same order.
    pub fn set_retention(
        &self,
        r: Retention,
        persist: impl FnOnce(&Retention) -> Result<()>,
    ) -> Result<()> {
        if let Some(ms) = r.retention_ms {
            crate::config::check_duration_ms("retention_ms", ms).map_err(Error::InvalidArgument)?;
        }
        let mut now = lock(&self.shared.retention);
        persist(&r)?;
        *now = r;
        Ok(())
    }

    /// Calls `listener` with the new visible end every time it advances.
    pub fn set_listener(&self, listener: AppendListener) {
        *lock(&self.shared.listener) = Some(listener);
    }

    /// The first offset the log holds.
    pub fn start_offset(&self) -> Offset {
        lock(&self.shared.state).start_offset()
    }

    /// One past the last written offset.
    pub fn end_offset(&self) -> Offset {
        Offset(self.shared.written_end.load(Ordering::Acquire))
    }

    /// One past the last offset made durable by fdatasync.
    pub fn durable_end(&self) -> Offset {
        Offset(self.shared.durable_end.load(Ordering::Acquire))
    }

    /// The files this log holds open: one per segment, and the direct-write handle of the
    /// active segment when it has one.
    pub fn open_files(&self) -> usize {
        let st = lock(&self.shared.state);
        st.segments.len() + usize::from(st.active().is_direct())
    }

    /// How many handles ([`Log`] clones) to this log exist.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.shared)
    }

    /// One past the last offset readers may see: the durable end under `always`, the written
    /// end otherwise.
    pub fn visible_end(&self) -> Offset {
        self.readable_end()
            .min(Offset(self.shared.commit_end.load(Ordering::Acquire)))
    }

    /// [`Log::visible_end`] without the commit point: what [`Log::read_uncommitted`] reads up
    /// to (a replicated log's own Raft replication).
    pub fn readable_end(&self) -> Offset {
        match self.shared.config.fsync {
            FsyncPolicy::Always => self.durable_end(),
            _ => self.end_offset(),
        }
    }

    /// True for the log of a replicated group (one whose readers stop at a commit point).
    pub fn is_replicated(&self) -> bool {
        self.shared.commit_end.load(Ordering::Acquire) != u64::MAX
    }

    /// Makes this the log of a replicated log, or moves its commit point: readers see only
    /// offsets below `end` (and, as always, below the durable end under `always`). A replicated
    /// log sets it at open and each time its Raft group commits entries.
    pub fn set_commit_end(&self, end: Offset) {
        let prev = self.shared.commit_end.swap(end.0, Ordering::AcqRel);
        if prev != end.0 {
            self.notify_visible();
        }
    }

    /// Marks this log as one this node holds no replica of (`Some(why)`: its partition is
    /// placed on other nodes of a cluster), or as one it holds again (`None`). The store's
    /// lookups of a partition then answer [`Error::NotLeader`] with what `why` says then
    /// (where the partition's leader is, as known at the time).
    pub fn set_placed_elsewhere(&self, why: Option<Elsewhere>) {
        *lock(&self.shared.elsewhere) = why;
    }

    /// Why this node holds no replica of this log, when it does not.
    pub fn placed_elsewhere(&self) -> Option<String> {
        let why = lock(&self.shared.elsewhere).clone();
        why.map(|f| f())
    }

    /// One past the last committed offset of a replicated log; `None` for a log that is not.
    pub fn commit_end(&self) -> Option<Offset> {
        let end = self.shared.commit_end.load(Ordering::Acquire);
        (end != u64::MAX).then_some(Offset(end))
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        lock(&self.shared.state)
            .segments
            .iter()
            .map(|s| s.size)
            .sum()
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        lock(&self.shared.state)
            .segments
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base(),
                next_offset: s.next_offset,
                size_bytes: s.size,
                max_timestamp_ms: s.max_timestamp_ms,
                retention_time_ms: s.retention_time_ms(),
            })
            .collect()
    }

    fn check_writable(&self) -> Result<()> {
        if self.shared.has_failed.load(Ordering::Acquire) {
            let cause = lock(&self.shared.failed).clone().unwrap_or_default();
            return Err(Error::FailStop {
                path: self.shared.dir.clone(),
                cause,
            });
        }
        Ok(())
    }

    fn fail_stop(&self, err: &Error) {
        let mut f = lock(&self.shared.failed);
        if f.is_none() {
            tracing::error!(dir = %self.shared.dir.display(), "fsync failed, log refuses further writes: {err}");
            *f = Some(err.to_string());
        }
        self.shared.has_failed.store(true, Ordering::Release);
        self.notify_visible();
    }

    fn notify_visible(&self) {
        {
            let _g = lock(&self.shared.visible_mx);
            self.shared.visible_cv.notify_all();
        }
        let listener = lock(&self.shared.listener).clone();
        if let Some(l) = listener {
            l(self.visible_end());
        }
    }

    /// Blocks until the visible end passes `after` or `timeout` elapses; returns the visible end.
    pub fn wait_visible(&self, after: Offset, timeout: Duration) -> Offset {
        let deadline = Instant::now() + timeout;
        let mut g = lock(&self.shared.visible_mx);
        loop {
            let end = self.visible_end();
            if end > after || self.shared.has_failed.load(Ordering::Acquire) {
                return end;
            }
            let now = Instant::now();
            if now >= deadline || lock(&self.shared.state).closed {
                return end;
            }
            g = self
                .shared
                .visible_cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Syncs, writes the indexes of the active segment, the recovery point and the
    /// clean-shutdown marker, and refuses further appends. Other handles see `Closed`.
    pub fn close(&self) -> Result<()> {
        {
            *lock(&self.shared.flusher_stop) = true;
            self.shared.flusher_cv.notify_all();
        }
        if let Some(h) = lock(&self.shared.flusher).take() {
            let _ = h.join();
        }
        if lock(&self.shared.state).closed {
            return Ok(());
        }
        let failed = self.shared.has_failed.load(Ordering::Acquire);
        if !failed {
            self.flush()?;
        }
        let _leader = lock(&self.shared.sync_lock);
        let mut st = lock(&self.shared.state);
        st.closed = true;
        self.notify_visible_locked_free();
        if failed {
            // No marker: the next open runs full recovery.
            return Ok(());
        }
        let fs = &*self.shared.fs;
        let dir = &self.shared.dir;
        let active = st.active_mut();
        if active.is_direct() {
            active.finish_direct()?;
            active.file.file.sync_data().at(&active.file.path)?;
        }
        active.write_indexes(fs, dir)?;
        self.write_recovery_point(&mut st)?;
        let a = st.active();
        let marker = CleanShutdown {
            next_offset: a.next_offset,
            active_base: a.base(),
            active_size: a.size,
        };
        let path = dir.join(CLEAN_SHUTDOWN_FILE);
        write_atomic(fs, &path, &marker.encode()).at(&path)?;
        Ok(())
    }

    fn notify_visible_locked_free(&self) {
        let _g = lock(&self.shared.visible_mx);
        self.shared.visible_cv.notify_all();
    }

    /// True once [`Log::close`] ran.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.state).closed
    }

    /// True after a failed fsync stopped the log.
    pub fn has_failed(&self) -> bool {
        self.shared.has_failed.load(Ordering::Acquire)
    }
}
