//! One segment: a `.log` file of batches after a file header, with its two sparse indexes.
//!
//! The segment layer appends, scans and reads byte ranges; it knows nothing of the other
//! segments, durability policy or recovery decisions, which belong to [`crate::log`].
//!
//! `direct`: appends through an O_DIRECT handle, and the [`direct::FlushJob`] a group commit writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::format::scan::{self, ScanRules, ScanStop, Step};
use crate::format::{
    self, decode_file_header, encode_file_header, BatchHeader, FILE_HEADER_LEN, SEGMENT_MAGIC,
};
use crate::fs::{FileRef, FileSystem, OpenMode};
use crate::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use crate::types::{Offset, TimestampMs};

pub mod direct;

use direct::DirectTail;

/// Extension of segment log files.
pub const LOG_EXT: &str = "log";
/// Extension of offset index files.
pub const INDEX_EXT: &str = "index";
/// Extension of time index files.
pub const TIME_INDEX_EXT: &str = "timeindex";

/// `<dir>/<base offset, 20 digits>.<ext>`.
pub fn segment_path(dir: &Path, base: Offset, ext: &str) -> PathBuf {
    dir.join(format!("{:020}.{ext}", base.0))
}

/// The base offsets of the segments (`.log` files) among a directory's entry names, ascending.
pub fn segment_bases(names: &[String]) -> Vec<Offset> {
    let mut bases: Vec<Offset> = names
        .iter()
        .filter_map(|n| match parse_segment_name(n) {
            Some((b, LOG_EXT)) => Some(b),
            _ => None,
        })
        .collect();
    bases.sort();
    bases
}

/// Parses `<20 digits>.<ext>` into a base offset and the extension.
pub fn parse_segment_name(name: &str) -> Option<(Offset, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if ![LOG_EXT, INDEX_EXT, TIME_INDEX_EXT].contains(&ext) {
        return None;
    }
    Some((Offset(stem.parse().ok()?), ext))
}

/// The immutable identity of a segment, shared with readers.
#[derive(Debug)]
pub struct SegmentFile {
    /// Base offset: the offset of its first record.
    pub base: Offset,
    /// Path of the `.log` file.
    pub path: PathBuf,
    /// The open `.log` file.
    pub file: FileRef,
}

/// A segment and its in-memory state. Lives inside the log's state lock.
#[derive(Debug)]
pub struct Segment {
    /// File and identity.
    pub file: Arc<SegmentFile>,
    /// Bytes written (file header included).
    pub size: u64,
    /// One past the last offset in the segment.
    pub next_offset: Offset,
    /// Largest record timestamp, `i64::MIN` when empty.
    pub max_timestamp_ms: TimestampMs,
    /// Wall-clock time of the first append since open (for rolling by age).
    pub opened_ms: TimestampMs,
    /// The broker's clock at the newest append to it, or at open for what was written before:
    /// a bound on when its records arrived, whatever timestamps their producers gave them.
    pub written_ms_max: TimestampMs,
    /// Offset index.
    pub index: OffsetIndex,
    /// Time index.
    pub time_index: TimeIndex,
    /// Bytes written to the file; readers read below this. Equal to `size` except in direct
    /// mode, where appended bytes wait in memory for the group-commit leader.
    pub written: u64,
    /// Direct (O_DIRECT) write state, when enabled.
    direct: Option<DirectTail>,
    /// Position of the batch the last offset index entry points at.
    last_index_pos: u64,
    /// Position of the batch the last time index entry points at.
    last_time_pos: u64,
}

pub use crate::format::ScanEnd;

/// Walks the batches of a file from `position` to `file_len` with the scanner's every check
/// ([`format::scan::step`]), reading it in chunks. Calls `each(position, header, bytes)` for
/// every valid batch and stops at the first position that holds none: the end of the file,
/// block padding, or damage ([`ScanEnd::damage`]). Never panics on bad bytes.
pub fn scan_batches(
    file: &FileRef,
    path: &Path,
    position: u64,
    file_len: u64,
    expected: Offset,
    batch_bytes_max: u32,
    mut each: impl FnMut(u64, &BatchHeader, &[u8]),
) -> Result<ScanEnd> {
    const CHUNK: usize = 4 << 20;
    let rules = ScanRules {
        batch_bytes_max,
        records_crc: true,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = position; // file position of buf[0]
    let mut end = ScanEnd {
        position,
        next_offset: expected,
        max_timestamp_ms: i64::MIN,
        stop: ScanStop::End,
    };
    loop {
        let rel = ((end.position - buf_pos) as usize).min(buf.len());
        let window = &buf[rel..];
        match scan::step(window, end.position, file_len, Some(end.next_offset), rules) {
            Step::NeedBytes(n) => {
                let want = (CHUNK.max(n) as u64).min(file_len - end.position) as usize;
                buf.resize(want, 0);
                file.read_exact_at(&mut buf, end.position).at(path)?;
                buf_pos = end.position;
            }
            Step::Stop(stop) => return Ok(ScanEnd { stop, ..end }),
            Step::Batch(b) => {
                if let Some(stop) = b.flaw() {
                    return Ok(ScanEnd { stop, ..end });
                }
                each(end.position, &b.header, &window[..b.len()]);
                end.advance(&b.header);
            }
        }
    }
}

impl Segment {
    /// Creates a new, empty segment file and makes its contents durable. The caller syncs the
    /// directory.
    pub fn create(
        fs: &dyn FileSystem,
        dir: &Path,
        base: Offset,
        now_ms: TimestampMs,
    ) -> Result<Segment> {
        let path = segment_path(dir, base, LOG_EXT);
        let file = fs.open(&path, OpenMode::CreateTruncate).at(&path)?;
        file.write_all_at(&encode_file_header(SEGMENT_MAGIC, 0, base), 0)
            .at(&path)?;
        file.sync_data().at(&path)?;
        Ok(Segment::from_parts(
            Arc::new(SegmentFile { base, path, file }),
            FILE_HEADER_LEN as u64,
            base,
            now_ms,
        ))
    }

    /// Opens an existing segment file and checks its header. `Ok(Err(reason))` when the header is
    /// invalid; the caller decides what that means.
    pub fn open_file(
        fs: &dyn FileSystem,
        dir: &Path,
        base: Offset,
    ) -> Result<std::result::Result<(Arc<SegmentFile>, u64), String>> {
        let path = segment_path(dir, base, LOG_EXT);
        let file = fs.open(&path, OpenMode::ReadWrite).at(&path)?;
        let len = file.len().at(&path)?;
        let mut h = [0u8; FILE_HEADER_LEN];
        if len < FILE_HEADER_LEN as u64 {
            return Ok(Err(format!(
                "file of {len} bytes is shorter than the segment header"
            )));
        }
        file.read_exact_at(&mut h, 0).at(&path)?;
        match decode_file_header(&h, SEGMENT_MAGIC, 0) {
            Ok(b) if b == base => Ok(Ok((Arc::new(SegmentFile { base, path, file }), len))),
            Ok(b) => Ok(Err(format!(
                "header base offset {b} differs from the file name"
            ))),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    /// A segment from its file with nothing indexed yet.
    pub fn from_parts(
        file: Arc<SegmentFile>,
        size: u64,
        next_offset: Offset,
        now_ms: TimestampMs,
    ) -> Segment {
        Segment {
            file,
            size,
            next_offset,
            max_timestamp_ms: i64::MIN,
            opened_ms: now_ms,
            written_ms_max: now_ms,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            written: size,
            direct: None,
            last_index_pos: 0,
            last_time_pos: 0,
        }
    }

    /// The time retention by age goes by: the largest record timestamp, but never later than
    /// the broker's clock when the segment was last written. A producer's clock that runs ahead
    /// (one record stamped years in the future) must not keep a segment past its retention.
    pub fn retention_time_ms(&self) -> TimestampMs {
        self.max_timestamp_ms.min(self.written_ms_max)
    }

    /// Base offset.
    pub fn base(&self) -> Offset {
        self.file.base
    }

    /// True when it holds no batch.
    pub fn is_empty(&self) -> bool {
        self.size <= FILE_HEADER_LEN as u64
    }

    /// Adds index entries for a batch at `position`, as the sparse rule says: an offset entry when
    /// `interval` bytes passed since the last one, a time entry when the batch raises the largest
    /// timestamp and `interval` bytes passed since the last time entry.
    pub fn index_batch(&mut self, position: u64, h: &BatchHeader, interval: u32) {
        let rel = (h.base_offset.0 - self.base().0) as u32;
        let first = self.index.is_empty();
        if first || position >= self.last_index_pos + interval as u64 {
            self.index.push(OffsetEntry {
                relative_offset: rel,
                position: position as u32,
            });
            self.last_index_pos = position;
        }
        let raises = h.max_timestamp_ms > self.max_timestamp_ms;
        if raises {
            let last_ts = self.time_index.last().map(|e| e.timestamp_ms);
            if last_ts.is_none() || position >= self.last_time_pos + interval as u64 {
                self.time_index.push(TimeEntry {
                    timestamp_ms: h.max_timestamp_ms,
                    relative_offset: rel,
                });
                self.last_time_pos = position;
            }
            self.max_timestamp_ms = h.max_timestamp_ms;
        }
    }

    /// Appends an encoded batch whose base offset is already this segment's next offset. On a
    /// write error the file is cut back to its previous size so the segment stays consistent.
    pub fn append(&mut self, batch: &[u8], h: &BatchHeader, interval: u32) -> Result<u64> {
        debug_assert_eq!(h.base_offset, self.next_offset, "offsets must be dense");
        let position = self.size;
        if let Some(d) = &mut self.direct {
            // Direct mode: the group-commit leader writes it (see `take_flush`).
            d.buf.extend_from_slice(batch);
            self.size += batch.len() as u64;
            self.next_offset = h.next_offset();
            self.index_batch(position, h, interval);
            return Ok(position);
        }
        if let Err(e) = self.file.file.write_all_at(batch, position) {
            // The caller gets the write's own error (a full disk must stay recognisable as one).
            // If the cut-back fails too, the partial bytes stay past `size`: the next append
            // overwrites them, reads never look past `size`, and recovery cuts whatever is left.
            if let Err(e2) = self.file.file.set_len(position) {
                tracing::warn!(segment = %self.file.path.display(), "cutting back a failed write failed: {e2}");
            }
            return Err(Error::io(&self.file.path, e));
        }
        self.size += batch.len() as u64;
        self.written = self.size;
        self.next_offset = h.next_offset();
        self.index_batch(position, h, interval);
        Ok(position)
    }

    /// The byte position to start reading at for `offset`: the last indexed batch at or before it.
    pub fn position_for(&self, offset: Offset) -> u64 {
        let rel = offset.0.saturating_sub(self.base().0).min(u32::MAX as u64) as u32;
        self.index
            .floor(rel)
            .map(|e| e.position as u64)
            .unwrap_or(FILE_HEADER_LEN as u64)
    }

    /// The offset to start a timestamp search at: every record before it is older than `ts`.
    pub fn offset_before_timestamp(&self, ts: TimestampMs) -> Offset {
        self.time_index
            .lower(ts)
            .map(|e| self.base().add(e.relative_offset as u64))
            .unwrap_or(self.base())
    }

    /// Adds a final time entry for the largest timestamp, if it is not indexed yet, so that a
    /// reopened segment knows its largest timestamp from the index alone.
    pub fn finish_time_index(&mut self) {
        if self.is_empty() {
            return;
        }
        let last = self.time_index.last();
        if last.map(|e| e.timestamp_ms) < Some(self.max_timestamp_ms) {
            // The batch that raised the maximum is at or before the last batch; pointing at the
            // last batch keeps the entry's promise (nothing up to it is newer).
            let last_batch_rel = self.last_batch_rel();
            let rel = last
                .map(|e| e.relative_offset.max(last_batch_rel))
                .unwrap_or(last_batch_rel);
            self.time_index.push(TimeEntry {
                timestamp_ms: self.max_timestamp_ms,
                relative_offset: rel,
            });
        }
    }

    fn last_batch_rel(&self) -> u32 {
        // The last offset index entry points at a batch at or before the last one; the last
        // record's offset is a safe stand-in for "the last batch" in a time entry.
        (self.next_offset.0 - 1 - self.base().0) as u32
    }

    /// Writes both index files and syncs them.
    pub fn write_indexes(&mut self, fs: &dyn FileSystem, dir: &Path) -> Result<()> {
        self.finish_time_index();
        let base = self.base();
        write_index_file(
            fs,
            &segment_path(dir, base, INDEX_EXT),
            &self.index.encode_file(base),
        )?;
        write_index_file(
            fs,
            &segment_path(dir, base, TIME_INDEX_EXT),
            &self.time_index.encode_file(base),
        )
    }

    /// Loads the index files of a segment, checking them against the log: every entry within the
    /// first `valid_len` bytes and, for the last entry, a batch boundary with the right offset.
    /// Returns false when they are missing or disagree (the caller rebuilds them by a scan).
    pub fn load_indexes(
        &mut self,
        fs: &dyn FileSystem,
        dir: &Path,
        valid_len: u64,
        batch_bytes_max: u32,
    ) -> Result<bool> {
        let base = self.base();
        let ipath = segment_path(dir, base, INDEX_EXT);
        let tpath = segment_path(dir, base, TIME_INDEX_EXT);
        if !fs.exists(&ipath) || !fs.exists(&tpath) {
            return Ok(false);
        }
        let load = |p: &Path| -> Result<crate::fs::Mapped> {
            let f = fs.open(p, OpenMode::Read).at(p)?;
            f.map().at(p)
        };
        let (index, time_index) = match (
            OffsetIndex::load(load(&ipath)?, base),
            TimeIndex::load(load(&tpath)?, base),
        ) {
            (Ok(i), Ok(t)) => (i, t),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(segment = %self.file.path.display(), "index rejected, rebuilding: {e}");
                return Ok(false);
            }
        };
        if let Some(last) = index.last() {
            let pos = last.position as u64;
            let expected = base.add(last.relative_offset as u64);
            if self
                .header_at(pos, valid_len, expected, batch_bytes_max)?
                .is_none()
            {
                tracing::warn!(segment = %self.file.path.display(), "offset index disagrees with the log, rebuilding");
                return Ok(false);
            }
        }
        self.last_index_pos = index.last().map(|e| e.position as u64).unwrap_or(0);
        self.index = index;
        self.time_index = time_index;
        self.max_timestamp_ms = self
            .time_index
            .last()
            .map(|e| e.timestamp_ms)
            .unwrap_or(i64::MIN);
        Ok(true)
    }

    /// The header of the batch at `position` when, by the scanner's rules with the records left
    /// unread, a valid batch starting at offset `expected` and ending by `end` is there; `None`
    /// otherwise. Reads only the header.
    pub fn header_at(
        &self,
        position: u64,
        end: u64,
        expected: Offset,
        batch_bytes_max: u32,
    ) -> Result<Option<BatchHeader>> {
        let mut h = [0u8; format::BATCH_HEADER_LEN];
        let n = end
            .saturating_sub(position)
            .min(format::BATCH_HEADER_LEN as u64) as usize;
        self.file
            .file
            .read_exact_at(&mut h[..n], position)
            .at(&self.file.path)?;
        let rules = ScanRules {
            batch_bytes_max,
            records_crc: false,
        };
        Ok(
            match scan::step(&h[..n], position, end, Some(expected), rules) {
                Step::Batch(b) if b.flaw().is_none() => Some(b.header),
                _ => None,
            },
        )
    }

    /// Drops index entries that point at or past `position` (recovery before a tail scan).
    pub fn truncate_indexes(&mut self, position: u64, next_offset: Offset) {
        let rel_end = next_offset.0 - self.base().0;
        self.index.retain_prefix(|e| (e.position as u64) < position);
        self.time_index
            .retain_prefix(|e| (e.relative_offset as u64) < rel_end);
        self.last_index_pos = self.index.last().map(|e| e.position as u64).unwrap_or(0);
        // The time position is unknown after a reload; index the next raise at once.
        self.last_time_pos = 0;
        self.max_timestamp_ms = self
            .time_index
            .last()
            .map(|e| e.timestamp_ms)
            .unwrap_or(i64::MIN);
    }

    /// Removes the three files of a segment (missing ones are fine).
    pub fn remove_files(fs: &dyn FileSystem, dir: &Path, base: Offset) -> Result<()> {
        for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
            let p = segment_path(dir, base, ext);
            match fs.remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(p, e)),
            }
        }
        Ok(())
    }
}

fn write_index_file(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> Result<()> {
    let f = fs.open(path, OpenMode::CreateTruncate).at(path)?;
    f.write_all_at(bytes, 0).at(path)?;
    f.sync_data().at(path)
}
