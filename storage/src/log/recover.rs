//! Recovery at open (`docs/format.md`, "Recovery"), as named steps:
//!
//! 1. [`list_segments`]: delete `*.tmp` files and orphan index files, list the segments.
//! 2. [`read_checkpoints`]: read the clean-shutdown marker and the recovery point; delete the
//!    marker before anything changes.
//! 3. [`Recovery::segment`], for each segment in order: open it and check its header and that it
//!    follows on; then [`Recovery::clean_segment`] (trusted by the marker),
//!    [`Recovery::sealed_segment`] (below the recovery point: its size is its end) or
//!    [`Recovery::tail_segment`] (scanned from the recovery point, or from its start). Every
//!    scan goes through the one batch scanner; block padding is cut quietly ([`settle_scan`]).
//! 4. [`Recovery::cut_at`]: at the first damage, cut the segment there (or drop it) and delete
//!    every later segment, or refuse under `recovery = "refuse"`.
//! 5. [`Recovery::finish`]: write back rebuilt indexes, sync the active segment and write a new
//!    recovery point.

use super::*;
use crate::fs::FileSystem;

/// Where recovery found damage: the segment's index in the list, the byte position and why.
type Damage = (usize, u64, String);

/// Recovery at open. Returns the segments (the last one active) and what was done.
pub(super) fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    cfg: &LogConfig,
) -> Result<(Vec<Segment>, RecoveryReport)> {
    let bases = list_segments(fs, dir)?;
    let (marker, rp) = read_checkpoints(fs, dir)?;
    let now = now_ms();
    if bases.is_empty() {
        let base = rp
            .map(|r| r.next_offset)
            .or(marker.map(|m| m.next_offset))
            .unwrap_or(Offset(0));
        let seg = Segment::create(fs, dir, base, now)?;
        fs.sync_dir(dir).at(dir)?;
        let report = RecoveryReport {
            clean: marker.is_some(),
            ..RecoveryReport::default()
        };
        return Ok((vec![seg], report));
    }
    let last_base = *bases.last().expect("non-empty");
    let mut r = Recovery {
        fs,
        dir,
        cfg,
        now,
        clean: marker.filter(|m| m.active_base == last_base),
        rp,
        bases,
        segments: Vec::new(),
        report: RecoveryReport::default(),
        any_scan: false,
        reindexed: Vec::new(),
    };
    for i in 0..r.bases.len() {
        if let Some(damage) = r.segment(i)? {
            r.cut_at(damage)?;
            break;
        }
    }
    r.finish()
}

/// Step 1: deletes leftovers of interrupted writes (`*.tmp`) and of deletions (index files
/// without a log file); returns the base offsets of the segments, in order.
fn list_segments(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<Offset>> {
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
    for base in others {
        if bases.binary_search(&base).is_err() {
            Segment::remove_files(fs, dir, base)?;
        }
    }
    Ok(bases)
}

/// Step 2: the clean-shutdown marker and the recovery point (invalid ones are ignored). The
/// marker is deleted, durably, before anything else changes: a crash must not find it stale.
fn read_checkpoints(
    fs: &dyn FileSystem,
    dir: &Path,
) -> Result<(Option<CleanShutdown>, Option<RecoveryPoint>)> {
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
        fs.remove_file(&marker_path).at(&marker_path)?;
        fs.sync_dir(dir).at(dir)?;
    }
    Ok((marker, rp))
}

/// The state of one recovery: what is known, and the segments accepted so far.
struct Recovery<'a> {
    fs: &'a dyn FileSystem,
    dir: &'a Path,
    cfg: &'a LogConfig,
    now: TimestampMs,
    /// The clean-shutdown marker, when it names the last segment.
    clean: Option<CleanShutdown>,
    rp: Option<RecoveryPoint>,
    bases: Vec<Offset>,
    segments: Vec<Segment>,
    report: RecoveryReport,
    /// True once a segment was scanned past the recovery point.
    any_scan: bool,
    /// Segments whose indexes were rebuilt or extended by a scan rather than loaded whole.
    reindexed: Vec<Offset>,
}

impl Recovery<'_> {
    /// Step 3: the segment `i`: opened, checked to follow on, then recovered by what is known of
    /// it. Returns the damage found, if any (the segment is kept when it can be cut).
    fn segment(&mut self, i: usize) -> Result<Option<Damage>> {
        let base = self.bases[i];
        let is_last = i + 1 == self.bases.len();
        let expected = self.segments.last().map(|s| s.next_offset);
        let trusted_prefix = self.clean.is_some() || self.rp.is_some_and(|r| base < r.segment_base);
        let (file, len) = match Segment::open_file(self.fs, self.dir, base)? {
            Ok(x) => x,
            Err(reason) if trusted_prefix && !is_last => {
                return Err(Error::corruption(segment_path(self.dir, base, LOG_EXT), 0, format!(
                    "{reason} in a segment below the recovery point; inspect with `sluice inspect` and run `sluice repair`"
                )));
            }
            Err(reason) => return Ok(Some((i, 0, reason))),
        };
        if let Some(e) = expected.filter(|&e| e != base) {
            // A segment is created only once the one before it is sealed and synced, and
            // retention removes the oldest first: no crash leaves a gap. Cutting here would
            // delete the confirmed segments from this one on.
            return Err(missing_segment(self.dir, base, e));
        }
        let seg = Segment::from_parts(file, len, base, self.now);
        if let Some(m) = self.clean.filter(|m| is_last && m.active_size == len) {
            return self.clean_segment(i, seg, m);
        }
        if trusted_prefix && !is_last {
            return self.sealed_segment(i, seg);
        }
        self.tail_segment(i, seg)
    }

    /// A segment the clean-shutdown marker vouches for: its indexes were written at close.
    fn clean_segment(
        &mut self,
        i: usize,
        mut seg: Segment,
        m: CleanShutdown,
    ) -> Result<Option<Damage>> {
        seg.next_offset = m.next_offset;
        let mut damage = None;
        let len = seg.size;
        if !self.load_indexes(&mut seg, len)? {
            // The scan that rebuilt the indexes checked every batch: damage it found is handled
            // like damage past a recovery point, never left inside the log with appends going
            // on after it.
            damage = self.rebuild(&mut seg)?;
        }
        self.segments.push(seg);
        Ok(damage.map(|(pos, reason)| (i, pos, reason)))
    }

    /// A sealed, synced segment below the recovery point: its length is its end.
    fn sealed_segment(&mut self, i: usize, mut seg: Segment) -> Result<Option<Damage>> {
        let next_base = self.bases[i + 1];
        seg.next_offset = next_base;
        let len = seg.size;
        if self.load_indexes(&mut seg, len)? {
            // The headers of its last batches tell where it really ends: short of the next
            // segment's base means a segment is missing after it (neither its size nor its
            // indexes can show that).
            let end = sealed_end(&seg, len, self.cfg.batch_bytes_max)?;
            if end != next_base {
                return Err(missing_segment(self.dir, next_base, end));
            }
        } else if let Some((pos, reason)) = self.rebuild(&mut seg)? {
            self.segments.push(seg);
            return Ok(Some((i, pos, reason)));
        }
        self.segments.push(seg);
        Ok(None)
    }

    /// A segment at or past the recovery point: scanned from the recovery point when its
    /// indexes up to there load, from its start otherwise.
    fn tail_segment(&mut self, i: usize, mut seg: Segment) -> Result<Option<Damage>> {
        self.any_scan = true;
        let base = seg.base();
        let len = seg.size;
        let (start_pos, start_offset) = match self.rp {
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
            if self.load_indexes(&mut seg, start_pos)? {
                seg.truncate_indexes(start_pos, start_offset);
            } else {
                // Without trustworthy indexes, rebuild them from the start of the segment.
                let damage = self.rebuild(&mut seg)?;
                self.segments.push(seg);
                return Ok(damage.map(|(pos, reason)| (i, pos, reason)));
            }
            let max = self.rp.map(|r| r.max_timestamp_ms).unwrap_or(i64::MIN);
            seg.max_timestamp_ms = seg.max_timestamp_ms.max(max);
        }
        self.reindexed.push(base);
        let interval = self.cfg.index_interval_bytes;
        let end = scan_batches(
            &seg.file.file.clone(),
            &seg.file.path.clone(),
            start_pos,
            len,
            start_offset,
            self.cfg.batch_bytes_max,
            |pos, h, _| seg.index_batch(pos, h, interval),
        )?;
        self.report.scanned_bytes += end.position - start_pos;
        seg.next_offset = end.next_offset;
        seg.set_len_after_recovery(end.position);
        let damage = settle_scan(&mut seg, &end)?;
        self.segments.push(seg);
        Ok(damage.map(|(pos, reason)| (i, pos, reason)))
    }

    /// Loads a segment's indexes, checked against its first `valid_len` bytes.
    fn load_indexes(&mut self, seg: &mut Segment, valid_len: u64) -> Result<bool> {
        seg.load_indexes(self.fs, self.dir, valid_len, self.cfg.batch_bytes_max)
    }

    /// Rebuilds a segment's indexes by a scan from its start, which also finds where its valid
    /// batches end; returns the damage that ends them, if any.
    fn rebuild(&mut self, seg: &mut Segment) -> Result<Option<(u64, String)>> {
        self.reindexed.push(seg.base());
        let end = rebuild(seg, self.cfg, FILE_HEADER_LEN as u64, &mut self.report)?;
        settle_scan(seg, &end)
    }

    /// Step 4: the log ends at the damage: cut the segment there (or drop it when nothing of it
    /// is usable) and delete every later segment; or refuse under `recovery = "refuse"`.
    fn cut_at(&mut self, (i, pos, reason): Damage) -> Result<()> {
        let (fs, dir) = (self.fs, self.dir);
        let path = segment_path(dir, self.bases[i], LOG_EXT);
        if self.cfg.recovery == RecoveryPolicy::Refuse {
            return Err(Error::corruption(path, pos, format!(
                "{reason}; recovery policy is refuse: inspect with `sluice inspect` and run `sluice repair`"
            )));
        }
        let mut dropped = if pos < FILE_HEADER_LEN as u64 || self.segments.len() <= i {
            // The segment itself is unusable: drop it whole (unless it is the only one, which
            // is then recreated empty below).
            self.segments.truncate(i);
            self.drop_segment(self.bases[i])?
        } else {
            let seg = &mut self.segments[i];
            let len = seg.file.file.len().at(&seg.file.path)?;
            seg.file.file.set_len(pos).at(&seg.file.path)?;
            seg.file.file.sync_data().at(&seg.file.path)?;
            seg.set_len_after_recovery(pos);
            self.report.truncated_bytes += len - pos;
            len - pos
        };
        let later = self.bases[i + 1..].to_vec();
        for &b in &later {
            dropped += self.drop_segment(b)?;
        }
        fs.sync_dir(dir).at(dir)?;
        tracing::warn!(
            segment = %path.display(),
            position = pos,
            dropped_bytes = dropped,
            dropped_segments = later.len(),
            "recovery cut the log at an invalid batch: {reason}"
        );
        if self.segments.is_empty() {
            let seg = Segment::create(fs, dir, self.bases[i], self.now)?;
            fs.sync_dir(dir).at(dir)?;
            self.segments.push(seg);
        }
        Ok(())
    }

    /// Deletes a segment's files; returns the bytes its log file held.
    fn drop_segment(&mut self, base: Offset) -> Result<u64> {
        let p = segment_path(self.dir, base, LOG_EXT);
        let len = self
            .fs
            .open(&p, crate::fs::OpenMode::Read)
            .and_then(|f| f.len())
            .unwrap_or(0);
        Segment::remove_files(self.fs, self.dir, base)?;
        self.report.dropped_segments += 1;
        Ok(len)
    }

    /// Step 5: writes back the indexes rebuilt for sealed segments, makes what recovery accepted
    /// durable and writes a new recovery point.
    fn finish(mut self) -> Result<(Vec<Segment>, RecoveryReport)> {
        let (fs, dir) = (self.fs, self.dir);
        // So that the next open loads them instead of scanning again. They are caches: failing
        // to write one only costs a scan.
        let sealed = self.segments.len() - 1;
        for seg in self.segments[..sealed]
            .iter_mut()
            .filter(|s| self.reindexed.contains(&s.base()))
        {
            if let Err(e) = seg.write_indexes(fs, dir) {
                tracing::warn!(segment = %seg.file.path.display(), "could not write rebuilt indexes: {e}");
            }
        }
        let active = self.segments.last_mut().expect("at least one segment");
        // The active segment keeps its index in memory.
        active.index.retain_prefix(|_| true);
        active.time_index.retain_prefix(|_| true);
        if self.any_scan || self.report.truncated_bytes > 0 {
            settle_active(fs, dir, active)?;
        }
        self.report.clean =
            self.clean.is_some() && !self.any_scan && self.report.truncated_bytes == 0;
        for w in self.segments.windows(2) {
            assert_eq!(
                w[0].next_offset,
                w[1].base(),
                "segments must be contiguous after recovery"
            );
        }
        Ok((self.segments, self.report))
    }
}

/// Makes the active segment's accepted bytes durable before anything is built on them, with
/// indexes and a recovery point matching them, so the next unclean open scans only what is
/// appended after.
fn settle_active(fs: &dyn FileSystem, dir: &Path, active: &mut Segment) -> Result<()> {
    active.file.file.sync_data().at(&active.file.path)?;
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
    write_atomic(fs, &p, &rp.encode()).at(&p)
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
