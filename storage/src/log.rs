//! A log: the sequence of segments of one topic or queue, with durability, recovery, reads and
//! retention.
//!
//! Writers take the state lock for the write itself (a pwrite into the page cache). Durability is
//! a separate step, [`Log::sync_to`], run by a group-commit leader: the first caller takes the
//! sync lock, snapshots the end of the log, fdatasyncs once and publishes the new durable end;
//! callers that queued behind it find their data already covered and return without a sync of
//! their own. Readers see only the *visible* end: the durable end under `always` (nothing a
//! crash could take back is ever delivered), the written end otherwise.

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
    self, decode_batch_header, BatchHeader, RecordIter, RecordView, BATCH_HEADER_LEN,
    FILE_HEADER_LEN,
};
use crate::fs::{write_atomic, FileRef, FsRef};
use crate::segment::{
    parse_segment_name, scan_batches, segment_path, Segment, SegmentFile, LOG_EXT,
};
use crate::types::{now_ms, Offset, Record, TimestampMs};

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
    /// The records of the batch at or after `from`.
    pub fn records_from(&self, from: Offset) -> impl Iterator<Item = Result<RecordView<'_>>> + '_ {
        RecordIter::new(&self.bytes, &self.header).filter_map(move |r| match r {
            Ok(r) if r.offset < from => None,
            Ok(r) => Some(Ok(r)),
            Err(e) => Some(Err(Error::InvalidBatch(e.to_string()))),
        })
    }
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

/// Called with the new visible end each time it advances.
pub type AppendListener = Arc<dyn Fn(Offset) + Send + Sync>;

struct State {
    segments: Vec<Segment>,
    /// Segment base and byte position the recovery point was last written at (recovery leaves
    /// it at the end of the log); a sync rewrites it once the synced data runs past it by
    /// `recovery_point_interval_bytes`.
    rp_at: (Offset, u64),
    closed: bool,
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
    state: Mutex<State>,
    /// Held by the group-commit leader while it syncs.
    sync_lock: Mutex<()>,
    /// One past the last durable offset.
    durable_end: AtomicU64,
    /// One past the last written offset (mirrors the state, readable without the lock).
    written_end: AtomicU64,
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
        let shared = Arc::new(Shared {
            dir,
            fs,
            config,
            state: Mutex::new(State {
                segments,
                rp_at,
                closed: false,
            }),
            sync_lock: Mutex::new(()),
            durable_end: AtomicU64::new(next.0),
            written_end: AtomicU64::new(next.0),
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

    /// The log's settings.
    pub fn config(&self) -> &LogConfig {
        &self.shared.config
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

    /// One past the last offset readers may see: the durable end under `always`, the written
    /// end otherwise.
    pub fn visible_end(&self) -> Offset {
        match self.shared.config.fsync {
            FsyncPolicy::Always => self.durable_end(),
            _ => self.end_offset(),
        }
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

    /// Appends records as one batch and returns their offsets. Under `always` it returns once the
    /// batch is durable.
    pub fn append(&self, records: &[Record]) -> Result<AppendInfo> {
        if records.is_empty() {
            return Err(Error::InvalidBatch(
                "a batch holds at least one record".into(),
            ));
        }
        self.append_encoded(format::encode_batch(records, now_ms()))
    }

    /// Appends a batch already in the on-disk layout (see [`format::BatchBuilder`]); its base
    /// offset is replaced. Under `always` it returns once the batch is durable.
    pub fn append_encoded(&self, batch: Vec<u8>) -> Result<AppendInfo> {
        let info = self.append_unsynced(batch)?;
        if self.shared.config.fsync == FsyncPolicy::Always {
            self.sync_to(info.next_offset())?;
        }
        Ok(info)
    }

    /// Appends records the broker copies from another log (dead letters): like [`Log::append`],
    /// but a record may carry up to [`format::STORED_RECORD_HEADERS_MAX`] headers, leaving room
    /// for the headers the broker adds to a published record.
    pub(crate) fn append_forwarded(&self, records: &[Record]) -> Result<AppendInfo> {
        if records.is_empty() {
            return Err(Error::InvalidBatch(
                "a batch holds at least one record".into(),
            ));
        }
        let batch = format::encode_batch(records, now_ms());
        let info = self.append_unsynced_within(batch, format::STORED_RECORD_HEADERS_MAX)?;
        if self.shared.config.fsync == FsyncPolicy::Always {
            self.sync_to(info.next_offset())?;
        }
        Ok(info)
    }

    /// Writes a batch without waiting for durability; pair with [`Log::sync_to`]. The batch is
    /// fully validated (both checksums, every record, at most [`format::RECORD_HEADERS_MAX`]
    /// headers a record) before anything is written.
    pub fn append_unsynced(&self, batch: Vec<u8>) -> Result<AppendInfo> {
        self.append_unsynced_within(batch, format::RECORD_HEADERS_MAX)
    }

    fn append_unsynced_within(&self, mut batch: Vec<u8>, headers_max: usize) -> Result<AppendInfo> {
        let h =
            format::validate_batch_within(&batch, self.shared.config.batch_bytes_max, headers_max)
                .map_err(|e| Error::InvalidBatch(e.to_string()))?;
        self.check_writable()?;
        let cfg = &self.shared.config;
        let now = now_ms();
        let needs_roll = |st: &State| {
            let active = st.active();
            let too_big = active.size + batch.len() as u64 > cfg.segment_bytes_max;
            let too_old = cfg
                .segment_ms_max
                .is_some_and(|ms| now.saturating_sub(active.opened_ms) >= ms_i64(ms));
            !active.is_empty() && (too_big || too_old)
        };
        let mut st = lock(&self.shared.state);
        let mut _leader = None;
        if !st.closed && needs_roll(&st) {
            // A roll must not run while a group-commit leader writes the active segment
            // outside the state lock: take the sync lock first (lock order: sync, then state).
            drop(st);
            _leader = Some(lock(&self.shared.sync_lock));
            st = lock(&self.shared.state);
            self.check_writable()?;
            if !st.closed && needs_roll(&st) {
                self.roll(&mut st, now)?;
            }
        }
        if st.closed {
            return Err(Error::Closed);
        }
        if st.active().pending_bytes() + batch.len() as u64 > DIRECT_PENDING_BYTES_MAX {
            return Err(Error::LimitReached(format!(
                "{} bytes wait to be written to {}; the disk is not keeping up or failing",
                st.active().pending_bytes(),
                self.shared.dir.display()
            )));
        }
        let base = st.next_offset();
        format::set_base_offset(&mut batch, base);
        let h = BatchHeader {
            base_offset: base,
            ..h
        };
        debug_assert!(decode_batch_header(&batch, u32::MAX).is_ok_and(|d| d.base_offset == base));
        let active = st.active_mut();
        if active.is_empty() {
            active.opened_ms = now;
        }
        active.written_ms_max = active.written_ms_max.max(now);
        // A failed write is cut back by the segment, so the log stays writable (a full disk
        // refuses this batch and accepts later ones once space is free).
        active.append(&batch, &h, cfg.index_interval_bytes)?;
        let next = st.next_offset();
        self.shared.written_end.store(next.0, Ordering::Release);
        drop(st);
        if cfg.fsync != FsyncPolicy::Always {
            self.notify_visible();
        }
        Ok(AppendInfo {
            base_offset: base,
            last_offset: h.last_offset(),
        })
    }

    /// Seals the active segment (synced, indexes written) and starts a new one. Runs under the
    /// state lock.
    fn roll(&self, st: &mut State, now: TimestampMs) -> Result<()> {
        let fs = &*self.shared.fs;
        let dir = &self.shared.dir;
        let old = st.active_mut();
        old.finish_direct()?;
        if let Err(e) = old.file.file.sync_data() {
            let e = Error::io(&old.file.path, e);
            self.fail_stop(&e);
            return Err(e);
        }
        old.write_indexes(fs, dir)?;
        let base = old.next_offset;
        let mut seg = Segment::create(fs, dir, base, now).inspect_err(|e| {
            // A half-made segment file is removed so recovery does not meet it.
            let _ = Segment::remove_files(fs, dir, base);
            if matches!(e, Error::Io { .. }) && !e.is_disk_full() {
                tracing::warn!("creating segment {base} failed: {e}");
            }
        })?;
        let direct =
            self.shared.config.fsync == FsyncPolicy::Always && self.shared.config.direct_io;
        let made = match fs.sync_dir(dir) {
            Err(e) => Err(Error::io(dir, e)),
            Ok(()) if direct => seg.enable_direct(fs),
            Ok(()) => Ok(()),
        };
        if let Err(e) = made {
            // The old segment stays the active one and the next append rolls again. Only a
            // failed directory fsync stops the log; running out of file descriptors to make the
            // new segment with loses nothing.
            let _ = Segment::remove_files(fs, dir, base);
            if !e.is_fd_exhausted() && matches!(e, Error::Io { ref path, .. } if path == dir) {
                self.fail_stop(&e);
            }
            return Err(e);
        }
        st.segments.push(seg);
        // Everything before the new segment is durable now.
        self.advance_durable(base);
        // The roll is complete and durable: a recovery point that cannot be written (no room
        // for its temporary file) only makes the next recovery scan from the previous one, so
        // it must not fail the append that is waiting for this roll.
        if let Err(e) = self.write_recovery_point(st) {
            tracing::warn!(dir = %dir.display(), "could not write the recovery point after a roll: {e}");
        }
        self.enforce_retention_locked(st, now)?;
        Ok(())
    }

    fn advance_durable(&self, end: Offset) {
        let prev = self.shared.durable_end.fetch_max(end.0, Ordering::AcqRel);
        if end.0 > prev && self.shared.config.fsync == FsyncPolicy::Always {
            self.notify_visible();
        }
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

    fn write_recovery_point(&self, st: &mut State) -> Result<()> {
        let active = st.active();
        let rp = RecoveryPoint {
            segment_base: active.base(),
            position: active.size,
            next_offset: active.next_offset,
            max_timestamp_ms: active.max_timestamp_ms,
        };
        let path = self.shared.dir.join(RECOVERY_POINT_FILE);
        write_atomic(&*self.shared.fs, &path, &rp.encode()).at(&path)?;
        st.rp_at = (rp.segment_base, rp.position);
        Ok(())
    }

    /// Makes every offset below `target` durable (group commit): returns at once when it already
    /// is, otherwise syncs once for every writer that arrived meanwhile.
    pub fn sync_to(&self, target: Offset) -> Result<()> {
        if self.durable_end() >= target {
            return Ok(());
        }
        let _leader = lock(&self.shared.sync_lock);
        if self.durable_end() >= target {
            return Ok(());
        }
        self.check_writable()?;
        let (file, path, end, base, size, job) = {
            let mut st = lock(&self.shared.state);
            let a = st.active_mut();
            let job = a.take_flush();
            (
                a.file.file.clone(),
                a.file.path.clone(),
                a.next_offset,
                a.base(),
                a.size,
                job,
            )
        };
        if let Some(mut job) = job {
            // One direct write for every append that arrived since the last group commit.
            let written = job.write();
            let mut st = lock(&self.shared.state);
            let a = st.active_mut();
            debug_assert_eq!(
                a.base(),
                base,
                "no roll while the leader holds the sync lock"
            );
            if let Err(e) = written {
                a.restore(job);
                return Err(e);
            }
            a.flushed(job);
        }
        if let Err(e) = file.sync_data() {
            let e = Error::io(path, e);
            self.fail_stop(&e);
            return Err(e);
        }
        self.advance_durable(end);
        if end < target {
            return Err(Error::InvalidArgument(format!(
                "cannot make offset {target} durable: the log ends at {end}"
            )));
        }
        let mut st = lock(&self.shared.state);
        // Count only the bytes synced past the last recovery point: adding the whole segment
        // size on every sync rewrote the recovery point (two more fsyncs) on every append once
        // the active segment outgrew the interval.
        let since = if st.rp_at.0 == base {
            size.saturating_sub(st.rp_at.1)
        } else {
            size
        };
        if since >= self.shared.config.recovery_point_interval_bytes
            && st.active().next_offset == end
        {
            // The indexes of the active segment go out with the recovery point: without them
            // recovery cannot start at the recovery point and rescans the whole segment.
            let fs = &*self.shared.fs;
            if let Err(e) = st.active_mut().write_indexes(fs, &self.shared.dir) {
                tracing::warn!(dir = %self.shared.dir.display(), "could not write the active indexes: {e}");
            }
            // The data is durable at this point: the append succeeded. The recovery point only
            // bounds the next recovery's scan, so failing to move it (a full disk) must not turn
            // a committed append into an error the caller would retry into a duplicate.
            if let Err(e) = self.write_recovery_point(&mut st) {
                tracing::warn!(dir = %self.shared.dir.display(), "could not write the recovery point: {e}");
            }
        }
        Ok(())
    }

    /// Syncs everything written so far, whatever the policy.
    pub fn flush(&self) -> Result<()> {
        self.sync_to(self.end_offset())
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

    /// Reads whole batches from `from` up to about `max_bytes` (at least one batch when any is
    /// visible). The first batch may start before `from`; use [`Batch::records_from`]. Every
    /// checksum is checked again on the way out.
    pub fn read(&self, from: Offset, max_bytes: usize) -> Result<Vec<Batch>> {
        let visible = self.visible_end();
        let plan: Vec<(Arc<SegmentFile>, u64, u64)> = {
            let st = lock(&self.shared.state);
            let start = st.start_offset();
            if from < start || from > visible {
                return Err(Error::OffsetOutOfRange {
                    offset: from,
                    start,
                    end: visible,
                });
            }
            if from == visible {
                return Ok(Vec::new());
            }
            let i = st.segments.partition_point(|s| s.base() <= from) - 1;
            st.segments[i..]
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.is_empty())
                .map(|(k, s)| {
                    let pos = if k == 0 {
                        s.position_for(from)
                    } else {
                        FILE_HEADER_LEN as u64
                    };
                    (s.file.clone(), pos, s.written)
                })
                .collect()
        };
        let batch_max = self.shared.config.batch_bytes_max as usize;
        let rules = ScanRules {
            batch_bytes_max: batch_max as u32,
            records_crc: true,
        };
        let headers_only = ScanRules {
            records_crc: false,
            ..rules
        };
        let mut out = Vec::new();
        let mut total = 0usize;
        for (seg, mut pos, size) in plan {
            while pos < size && total < max_bytes.max(1) {
                let want = (size - pos)
                    .min((max_bytes - total.min(max_bytes)).max(BATCH_HEADER_LEN) as u64)
                    as usize;
                let mut buf =
                    BytesMut::zeroed(want.max(BATCH_HEADER_LEN).min((size - pos) as usize));
                seg.file.read_exact_at(&mut buf, pos).at(&seg.path)?;
                // The first batch may be larger than what was read: read it whole.
                match scan::step(&buf, pos, size, None, headers_only) {
                    Step::Batch(b) if b.len() > buf.len() => {
                        buf = BytesMut::zeroed(b.len());
                        seg.file.read_exact_at(&mut buf, pos).at(&seg.path)?;
                    }
                    Step::Stop(stop) => return Err(read_damage(&seg.path, pos, &stop)),
                    _ => {}
                }
                let buf = buf.freeze();
                let mut at = 0usize;
                loop {
                    let b = match scan::step(&buf[at..], pos + at as u64, size, None, rules) {
                        // The rest of the batch is read by the next round.
                        Step::NeedBytes(_) | Step::Stop(ScanStop::End) => break,
                        // The log's own end is `size`: whatever stops a walk before it, block
                        // padding included, is damage.
                        Step::Stop(stop) => {
                            return Err(read_damage(&seg.path, pos + at as u64, &stop))
                        }
                        Step::Batch(b) => b,
                    };
                    let h = b.header;
                    if h.base_offset >= visible {
                        return Ok(out);
                    }
                    if let Some(flaw) = b.flaw() {
                        return Err(read_damage(&seg.path, pos + at as u64, &flaw));
                    }
                    let len = b.len();
                    let bytes = buf.slice(at..at + len);
                    at += len;
                    if h.last_offset() < from {
                        continue;
                    }
                    total += len;
                    out.push(Batch { header: h, bytes });
                    if total >= max_bytes {
                        return Ok(out);
                    }
                }
                pos += at as u64;
            }
            if total >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Reads records from `from`, at most `max_records` of them and about `max_bytes`.
    pub fn read_records(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Offset, Record)>> {
        let mut out = Vec::new();
        for b in self.read(from, max_bytes)? {
            for r in b.records_from(from) {
                if out.len() >= max_records {
                    return Ok(out);
                }
                let r = r?;
                out.push((r.offset, r.to_record()));
            }
        }
        Ok(out)
    }

    /// The first offset whose record timestamp is at or after `ts`; `None` when every visible
    /// record is older.
    pub fn offset_for_timestamp(&self, ts: TimestampMs) -> Result<Option<Offset>> {
        let mut from = {
            let st = lock(&self.shared.state);
            match st
                .segments
                .iter()
                .find(|s| !s.is_empty() && s.max_timestamp_ms >= ts)
            {
                Some(s) => s.offset_before_timestamp(ts),
                None => return Ok(None),
            }
        };
        loop {
            let start = self.start_offset();
            if from < start {
                from = start;
            }
            let batches = self.read(from, 1 << 20)?;
            if batches.is_empty() {
                return Ok(None);
            }
            for b in &batches {
                if b.header.max_timestamp_ms < ts {
                    continue;
                }
                for r in b.records_from(from) {
                    let r = r?;
                    if r.timestamp_ms >= ts {
                        return Ok(Some(r.offset));
                    }
                }
            }
            from = batches.last().expect("non-empty").header.next_offset();
        }
    }

    /// Deletes whole sealed segments beyond the retention limits; returns how many.
    pub fn enforce_retention(&self) -> Result<usize> {
        let mut st = lock(&self.shared.state);
        self.enforce_retention_locked(&mut st, now_ms())
    }

    fn enforce_retention_locked(&self, st: &mut State, now: TimestampMs) -> Result<usize> {
        let cfg = &self.shared.config;
        let mut total: u64 = st.segments.iter().map(|s| s.size).sum();
        let mut n = 0;
        while n + 1 < st.segments.len() {
            let s = &st.segments[n];
            let by_bytes = cfg.retention_bytes.is_some_and(|max| total > max);
            let by_age = cfg
                .retention_ms
                .is_some_and(|ms| s.retention_time_ms() < now.saturating_sub(ms_i64(ms)));
            if !(by_bytes || by_age) {
                break;
            }
            total -= s.size;
            n += 1;
        }
        self.remove_front(st, n)
    }

    /// Deletes sealed segments whose every offset is below `offset` (the active segment is
    /// never deleted); returns how many. Queues call this with their ack floor.
    pub fn delete_before(&self, offset: Offset) -> Result<usize> {
        let mut st = lock(&self.shared.state);
        let n = st.segments[..st.segments.len() - 1]
            .iter()
            .take_while(|s| s.next_offset <= offset)
            .count();
        self.remove_front(&mut st, n)
    }

    fn remove_front(&self, st: &mut State, n: usize) -> Result<usize> {
        if n == 0 {
            return Ok(0);
        }
        let removed: Vec<Segment> = st.segments.drain(..n).collect();
        for s in &removed {
            tracing::info!(segment = %s.file.path.display(), "retention deletes segment {}..{}", s.base(), s.next_offset);
            Segment::remove_files(&*self.shared.fs, &self.shared.dir, s.base())?;
        }
        if let Err(e) = self.shared.fs.sync_dir(&self.shared.dir) {
            let e = Error::io(&self.shared.dir, e);
            // Without a descriptor for the directory nothing was synced and nothing lost: the
            // removals become durable with the next directory sync (or are redone after a crash).
            if !e.is_fd_exhausted() {
                self.fail_stop(&e);
            }
            return Err(e);
        }
        Ok(n)
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

fn interval_flusher(weak: Weak<Shared>, every: Duration) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        {
            let stop = lock(&shared.flusher_stop);
            if *stop {
                return;
            }
            let (stop, _) = shared
                .flusher_cv
                .wait_timeout(stop, every)
                .unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
        }
        let log = Log { shared };
        if log.has_failed() || log.is_closed() {
            return;
        }
        if let Err(e) = log.flush() {
            tracing::error!(dir = %log.dir().display(), "interval sync failed: {e}");
            return;
        }
    }
}

/// Recovery at open. Returns the segments (the last one active) and what was done.
fn recover(
    fs: &dyn crate::fs::FileSystem,
    dir: &Path,
    cfg: &LogConfig,
) -> Result<(Vec<Segment>, RecoveryReport)> {
    let mut report = RecoveryReport::default();
    // Every directory created here is durable only once the one holding it is fsynced.
    crate::fs::create_dir_durable(fs, dir).at(dir)?;
    let names = fs.read_dir(dir).at(dir)?;
    let mut bases = Vec::new();
    let mut others = Vec::new();
    for name in &names {
        if name.ends_with(".tmp") {
            let p = dir.join(name);
            fs.remove_file(&p).at(&p)?;
            continue;
        }
        match parse_segment_name(name) {
            Some((base, LOG_EXT)) => bases.push(base),
            Some((base, _)) => others.push(base),
            None => {}
        }
    }
    bases.sort();
    // Index files without a log file are leftovers of a deletion.
    for base in others {
        if bases.binary_search(&base).is_err() {
            Segment::remove_files(fs, dir, base)?;
        }
    }
    let marker_path = dir.join(CLEAN_SHUTDOWN_FILE);
    let marker = match checkpoint::read(fs, &marker_path, CleanShutdown::decode).at(&marker_path)? {
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            tracing::warn!(path = %marker_path.display(), "ignoring invalid clean-shutdown marker: {e}");
            None
        }
        None => None,
    };
    let rp_path = dir.join(RECOVERY_POINT_FILE);
    let rp = match checkpoint::read(fs, &rp_path, RecoveryPoint::decode).at(&rp_path)? {
        Some(Ok(rp)) => Some(rp),
        Some(Err(e)) => {
            tracing::warn!(path = %rp_path.display(), "ignoring invalid recovery point, scanning every segment: {e}");
            None
        }
        None => None,
    };
    if fs.exists(&marker_path) {
        // From here on the log may change: a crash must not find a stale marker.
        fs.remove_file(&marker_path).at(&marker_path)?;
        fs.sync_dir(dir).at(dir)?;
    }
    let now = now_ms();
    if bases.is_empty() {
        let base = rp
            .map(|r| r.next_offset)
            .or(marker.map(|m| m.next_offset))
            .unwrap_or(Offset(0));
        let seg = Segment::create(fs, dir, base, now)?;
        fs.sync_dir(dir).at(dir)?;
        report.clean = marker.is_some();
        return Ok((vec![seg], report));
    }
    let last_base = *bases.last().expect("non-empty");
    let clean = marker.filter(|m| m.active_base == last_base);
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    let mut corrupt: Option<(usize, u64, String)> = None; // (segment index, position, reason)
    let mut any_scan = false;
    // Segments whose indexes were rebuilt or extended by a scan rather than loaded whole.
    let mut reindexed: Vec<Offset> = Vec::new();
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        let expected = segments.last().map(|s: &Segment| s.next_offset);
        let trusted_prefix = clean.is_some() || rp.is_some_and(|r| base < r.segment_base);
        let (file, len) = match Segment::open_file(fs, dir, base)? {
            Ok(x) => x,
            Err(reason) => {
                if trusted_prefix && !is_last {
                    return Err(Error::corruption(segment_path(dir, base, LOG_EXT), 0, format!(
                        "{reason} in a segment below the recovery point; inspect with `sluice inspect` and run `sluice repair`"
                    )));
                }
                corrupt = Some((i, 0, reason));
                break;
            }
        };
        if let Some(e) = expected.filter(|&e| e != base) {
            // A segment is created only once the one before it is sealed and synced, and
            // retention removes the oldest first: no crash leaves a gap. Cutting here would
            // delete the confirmed segments from this one on.
            return Err(missing_segment(dir, base, e));
        }
        let mut seg = Segment::from_parts(file, len, base, now);
        if let Some(m) = clean.filter(|m| is_last && m.active_size == len) {
            // Clean shutdown: trust the marker; the indexes were written at close.
            seg.next_offset = m.next_offset;
            if !seg.load_indexes(fs, dir, len, cfg.batch_bytes_max)? {
                reindexed.push(base);
                let end = rebuild(&mut seg, cfg, FILE_HEADER_LEN as u64, &mut report)?;
                // The scan that rebuilt the indexes checked every batch: damage it found is
                // handled like damage past a recovery point, never left inside the log with
                // appends going on after it.
                if let Some((pos, reason)) = settle_scan(&mut seg, &end)? {
                    corrupt = Some((i, pos, reason));
                    segments.push(seg);
                    break;
                }
            }
            segments.push(seg);
            continue;
        }
        if trusted_prefix && !is_last {
            // A sealed, synced segment: its length is its end.
            seg.next_offset = bases[i + 1];
            if seg.load_indexes(fs, dir, len, cfg.batch_bytes_max)? {
                // The headers of its last batches tell where it really ends: short of the next
                // segment's base means a segment is missing after it (neither its size nor its
                // indexes can show that).
                let end = sealed_end(&seg, len, cfg.batch_bytes_max)?;
                if end != bases[i + 1] {
                    return Err(missing_segment(dir, bases[i + 1], end));
                }
            } else {
                reindexed.push(base);
                let end = rebuild(&mut seg, cfg, FILE_HEADER_LEN as u64, &mut report)?;
                if let Some((pos, reason)) = settle_scan(&mut seg, &end)? {
                    corrupt = Some((i, pos, reason));
                    segments.push(seg);
                    break;
                }
                seg.next_offset = end.next_offset;
            }
            segments.push(seg);
            continue;
        }
        // Scan past the recovery point.
        any_scan = true;
        reindexed.push(base);
        let (start_pos, start_offset) = match rp {
            Some(r)
                if r.segment_base == base
                    && r.position >= FILE_HEADER_LEN as u64
                    && r.position <= len =>
            {
                (r.position, r.next_offset)
            }
            _ => (FILE_HEADER_LEN as u64, base),
        };
        if start_pos > FILE_HEADER_LEN as u64 {
            if seg.load_indexes(fs, dir, start_pos, cfg.batch_bytes_max)? {
                seg.truncate_indexes(start_pos, start_offset);
            } else {
                // Without trustworthy indexes, rebuild them from the start of the segment.
                let end = rebuild(&mut seg, cfg, FILE_HEADER_LEN as u64, &mut report)?;
                seg.next_offset = end.next_offset;
                seg.set_len_after_recovery(end.position);
                if let Some((pos, reason)) = settle_scan(&mut seg, &end)? {
                    corrupt = Some((i, pos, reason));
                    segments.push(seg);
                    break;
                }
                segments.push(seg);
                continue;
            }
            let max = rp.map(|r| r.max_timestamp_ms).unwrap_or(i64::MIN);
            seg.max_timestamp_ms = seg.max_timestamp_ms.max(max);
        }
        let interval = cfg.index_interval_bytes;
        let end = scan_batches(
            &seg.file.file.clone(),
            &seg.file.path.clone(),
            start_pos,
            len,
            start_offset,
            cfg.batch_bytes_max,
            |pos, h, _| seg.index_batch(pos, h, interval),
        )?;
        report.scanned_bytes += end.position - start_pos;
        seg.next_offset = end.next_offset;
        seg.set_len_after_recovery(end.position);
        let stopped = settle_scan(&mut seg, &end)?;
        segments.push(seg);
        if let Some((pos, reason)) = stopped {
            corrupt = Some((i, pos, reason));
            break;
        }
    }
    if let Some((i, pos, reason)) = corrupt {
        let path = segment_path(dir, bases[i], LOG_EXT);
        let later = &bases[i + 1..];
        if cfg.recovery == RecoveryPolicy::Refuse {
            return Err(Error::corruption(path, pos, format!(
                "{reason}; recovery policy is refuse: inspect with `sluice inspect` and run `sluice repair`"
            )));
        }
        let seg_len = segments
            .get(i)
            .map(|s| s.file.file.len().at(&s.file.path))
            .transpose()?;
        let mut dropped: u64 = 0;
        if pos < FILE_HEADER_LEN as u64 || segments.len() <= i {
            // The segment itself is unusable: drop it whole (unless it is the only one, which
            // is then recreated empty below).
            dropped += fs
                .open(&path, crate::fs::OpenMode::Read)
                .and_then(|f| f.len())
                .unwrap_or(0);
            segments.truncate(i);
            Segment::remove_files(fs, dir, bases[i])?;
            report.dropped_segments += 1;
        } else {
            let seg = &mut segments[i];
            let len = seg_len.unwrap_or(pos);
            dropped += len - pos;
            seg.file.file.set_len(pos).at(&seg.file.path)?;
            seg.file.file.sync_data().at(&seg.file.path)?;
            seg.set_len_after_recovery(pos);
            report.truncated_bytes += len - pos;
        }
        for &b in later {
            let p = segment_path(dir, b, LOG_EXT);
            dropped += fs
                .open(&p, crate::fs::OpenMode::Read)
                .and_then(|f| f.len())
                .unwrap_or(0);
            Segment::remove_files(fs, dir, b)?;
            report.dropped_segments += 1;
        }
        fs.sync_dir(dir).at(dir)?;
        tracing::warn!(
            segment = %path.display(),
            position = pos,
            dropped_bytes = dropped,
            dropped_segments = later.len(),
            "recovery cut the log at an invalid batch: {reason}"
        );
        if segments.is_empty() {
            let seg = Segment::create(fs, dir, bases[i], now)?;
            fs.sync_dir(dir).at(dir)?;
            segments.push(seg);
        }
    }
    // Write back the indexes recovery rebuilt for sealed segments, so that the next open loads
    // them instead of scanning again. They are caches: failing to write one only costs a scan.
    let sealed = segments.len() - 1;
    for seg in segments[..sealed]
        .iter_mut()
        .filter(|s| reindexed.contains(&s.base()))
    {
        if let Err(e) = seg.write_indexes(fs, dir) {
            tracing::warn!(segment = %seg.file.path.display(), "could not write rebuilt indexes: {e}");
        }
    }
    let active = segments.last_mut().expect("at least one segment");
    // The active segment keeps its index in memory.
    active.index.retain_prefix(|_| true);
    active.time_index.retain_prefix(|_| true);
    if any_scan || report.truncated_bytes > 0 {
        // What recovery accepted becomes durable before anything is built on it.
        active.file.file.sync_data().at(&active.file.path)?;
        // With indexes matching the new recovery point, the next unclean open scans only what
        // is appended after it.
        if !active.is_empty() {
            if let Err(e) = active.write_indexes(fs, dir) {
                tracing::warn!(segment = %active.file.path.display(), "could not write indexes: {e}");
            }
        }
        let rp = RecoveryPoint {
            segment_base: active.base(),
            position: active.size,
            next_offset: active.next_offset,
            max_timestamp_ms: active.max_timestamp_ms,
        };
        let p = dir.join(RECOVERY_POINT_FILE);
        write_atomic(fs, &p, &rp.encode()).at(&p)?;
    }
    report.clean = clean.is_some() && !any_scan && report.truncated_bytes == 0;
    // Sanity: offsets are contiguous across segments.
    for w in segments.windows(2) {
        assert_eq!(
            w[0].next_offset,
            w[1].base(),
            "segments must be contiguous after recovery"
        );
    }
    Ok((segments, report))
}

/// Where a sealed segment whose indexes loaded ends: the offset after its last batch, found by
/// walking the batch headers from its last indexed batch to the end of the file (a few header
/// reads: index entries are at most an index interval apart). Only the headers are read, so a
/// clean open still reads no records. A header that does not decode ends the walk.
fn sealed_end(seg: &Segment, len: u64, batch_bytes_max: u32) -> Result<Offset> {
    let (mut position, mut next) = match seg.index.last() {
        Some(e) => (e.position as u64, seg.base().add(e.relative_offset as u64)),
        None => (FILE_HEADER_LEN as u64, seg.base()),
    };
    while let Some(h) = seg.header_at(position, len, next, batch_bytes_max)? {
        position += h.batch_len as u64;
        next = h.next_offset();
    }
    Ok(next)
}

/// The error of a read that meets damage below the log's end.
fn read_damage(path: &Path, position: u64, stop: &ScanStop) -> Error {
    Error::corruption(path, position, stop.to_string())
}

/// Applies the end of a recovery scan to its segment: block padding (a clean end) is cut
/// quietly; damage is returned as (position, reason) for the caller to cut or refuse.
fn settle_scan(seg: &mut Segment, end: &ScanEnd) -> Result<Option<(u64, String)>> {
    if let ScanStop::ZeroTail { len } = end.stop {
        tracing::debug!(segment = %seg.file.path.display(), "cutting {len} bytes of block padding");
        seg.file.file.set_len(end.position).at(&seg.file.path)?;
        seg.file.file.sync_data().at(&seg.file.path)?;
        seg.set_len_after_recovery(end.position);
    }
    Ok(end.damage().map(|(pos, stop)| (pos, stop.to_string())))
}

/// The error for a gap between two segments: offsets `end..base` are in no segment file.
fn missing_segment(dir: &Path, base: Offset, end: Offset) -> Error {
    Error::corruption(
        segment_path(dir, base, LOG_EXT),
        0,
        format!(
            "segment starts at offset {base} but the segment before it ends at {end}: offsets \
             {end}..{base} are in no segment file (a segment is missing or was shortened). The \
             log is not opened, so nothing after the gap is removed; see what is there with \
             `sluice inspect` and set the segments after the gap aside with `sluice repair`"
        ),
    )
}

/// Rebuilds a segment's indexes by scanning it from `from`; returns how the scan ended.
fn rebuild(
    seg: &mut Segment,
    cfg: &LogConfig,
    from: u64,
    report: &mut RecoveryReport,
) -> Result<ScanEnd> {
    let len = seg.size;
    let base = seg.base();
    *seg = Segment::from_parts(seg.file.clone(), len, base, seg.opened_ms);
    let interval = cfg.index_interval_bytes;
    let file: FileRef = seg.file.file.clone();
    let path = seg.file.path.clone();
    let end = scan_batches(
        &file,
        &path,
        from,
        len,
        base,
        cfg.batch_bytes_max,
        |pos, h, _| seg.index_batch(pos, h, interval),
    )?;
    seg.next_offset = end.next_offset;
    report.rebuilt_indexes += 1;
    report.scanned_bytes += end.position - from;
    Ok(end)
}
