//! Offline inspection, verification and repair of a data directory, a log directory or a single
//! file, for operators whose broker is stopped (or running: inspection only reads).
//!
//! Everything here reads through [`FileSystem`] with [`OpenMode::Read`] and never maps a file, so
//! a file truncated under the tool by a running broker cannot fault it. Three entry points:
//! - [`walk`] streams [`Item`]s (one per batch, record, index entry, state file, problem) to a
//!   [`Visitor`] and returns a [`Summary`]; [`inspect_path`] collects them, [`verify`] keeps only
//!   the problems.
//! - [`plan_repair`] says what an offline repair would change, file by file, without changing
//!   anything; [`apply_repair`] carries the plan out. Repair does what recovery does at open (cut
//!   the log at the first invalid batch, drop what follows, rebuild indexes) but keeps every
//!   removed byte in a side file `<segment>.log.dropped-<unix time>`.
//! - [`lock_status`] tells whether a broker holds the data directory's `LOCK` file.
//!
//! With each log directory the walk reads the state of its topic or queue ([`read_log_state`]):
//! retention from `config`, subscribers with their committed offsets and lag, a queue's or
//! consumer group's ack floor, cursor, in-flight messages and dead-lettered count. Repair never
//! changes those files.
//!
//! What each check means is documented in `docs/operations.md`, "Inspecting and repairing a data
//! directory".

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::checkpoint::{CleanShutdown, RecoveryPoint, CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE};
use crate::config::LogConfig;
use crate::error::{Error, IoContext, Result};
use crate::format::scan::{self, ScanRules, ScanStop, Step};
use crate::format::{
    decode_file_header, BatchError, BatchHeader, RecordIter, BATCH_HEADER_LEN, FILE_HEADER_LEN,
    SEGMENT_MAGIC,
};
use crate::fs::{FileRef, FileSystem, OpenMode};
use crate::index::{IndexEntry, OffsetEntry, TimeEntry};
use crate::segment::{
    parse_segment_name, scan_batches, segment_path, Segment, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT,
};
use crate::types::{Offset, TimestampMs};

/// Name of the lock file a running broker holds (exclusive `flock`) in its data directory.
pub const LOCK_FILE: &str = "LOCK";
const INDEX_HINT: &str = " (stale or damaged index; repair rebuilds it)";
/// Infix of the side files repair keeps removed bytes in: `<segment>.log.dropped-<unix time>`.
pub const DROPPED_INFIX: &str = ".dropped-";

// ---------------------------------------------------------------------------------------------
// Report types
// ---------------------------------------------------------------------------------------------

/// What to show.
#[derive(Clone, Debug)]
pub struct InspectOptions {
    /// List every batch. Always on for a single segment file.
    pub batches: bool,
    /// List every record (implies `batches`).
    pub records: bool,
    /// Include record values (implies `records`).
    pub payloads: bool,
    /// List every index entry. Always on for a single index file.
    pub index_entries: bool,
    /// Largest batch accepted as valid. Inspection is lenient by default (`u32::MAX`): a batch
    /// is still bounded by its file's length.
    pub batch_bytes_max: u32,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions {
            batches: false,
            records: false,
            payloads: false,
            index_entries: false,
            batch_bytes_max: u32::MAX,
        }
    }
}

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Data or state is wrong: verification fails.
    Error,
    /// Harmless or repaired at the next open (a missing index, a leftover temporary file).
    Warning,
}

/// Something wrong, with the file and the byte position where it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The file (or directory) it is in.
    pub file: PathBuf,
    /// Byte position in that file, when it applies.
    pub position: Option<u64>,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.position {
            Some(p) => write!(
                f,
                "{sev}: {} at byte {p}: {}",
                self.file.display(),
                self.what
            ),
            None => write!(f, "{sev}: {}: {}", self.file.display(), self.what),
        }
    }
}

/// Bytes shown to a person: UTF-8 text when printable, hex otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shown {
    /// Valid UTF-8 without control characters.
    Utf8(String),
    /// Anything else, as lowercase hex.
    Hex(String),
}

impl Shown {
    /// Classifies bytes.
    pub fn of(b: &[u8]) -> Shown {
        match std::str::from_utf8(b) {
            Ok(s) if !s.chars().any(|c| c.is_control()) => Shown::Utf8(s.to_string()),
            _ => Shown::Hex(b.iter().map(|x| format!("{x:02x}")).collect()),
        }
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shown::Utf8(s) => write!(f, "{s:?}"),
            Shown::Hex(h) => write!(f, "0x{h}"),
        }
    }
}

/// A segment (`.log`) file, before its batches.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentReport {
    /// The file.
    pub file: PathBuf,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Base offset from the file header (`None` when the header is invalid or absent).
    pub base_offset: Option<Offset>,
    /// True when the 32-byte file header is valid and matches the file name.
    pub header_valid: bool,
    /// True for a repair side file holding a cut tail (batches without a file header).
    pub headerless: bool,
}

/// One batch.
#[derive(Clone, Debug, Serialize)]
pub struct BatchReport {
    /// The segment file.
    pub file: PathBuf,
    /// Byte position of the batch in the file.
    pub position: u64,
    /// Size in bytes, header included.
    pub size_bytes: u32,
    /// First offset.
    pub base_offset: Offset,
    /// Last offset.
    pub last_offset: Offset,
    /// Number of records.
    pub record_count: u32,
    /// Timestamp of the first record (header field).
    pub first_timestamp_ms: TimestampMs,
    /// Timestamp of the last record (from the records; `None` when they do not parse).
    pub last_timestamp_ms: Option<TimestampMs>,
    /// Largest record timestamp (header field).
    pub max_timestamp_ms: TimestampMs,
    /// Attribute bits.
    pub attributes: u8,
    /// Header checksum as stored (always valid here: a batch with a bad header checksum is a
    /// problem, since its length cannot be trusted).
    pub header_crc: u32,
    /// Records checksum as stored.
    pub records_crc: u32,
    /// Records checksum as computed.
    pub records_crc_computed: u32,
    /// True when they match.
    pub records_crc_valid: bool,
}

/// One record.
#[derive(Clone, Debug, Serialize)]
pub struct RecordReport {
    /// The segment file.
    pub file: PathBuf,
    /// Its offset.
    pub offset: Offset,
    /// Its timestamp.
    pub timestamp_ms: TimestampMs,
    /// Its key.
    pub key: Option<Shown>,
    /// Names of its headers.
    pub header_names: Vec<Shown>,
    /// Size of the value in bytes.
    pub value_size: usize,
    /// The value (with `payloads`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Shown>,
}

/// Which index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// `.index`: offset to position.
    Offset,
    /// `.timeindex`: timestamp to offset.
    Time,
}

/// An index file.
#[derive(Clone, Debug, Serialize)]
pub struct IndexReport {
    /// The file.
    pub file: PathBuf,
    /// Which index.
    pub kind: IndexKind,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Number of entries.
    pub entries: u64,
    /// True when the header, the order of entries and every entry agree with the log.
    pub valid: bool,
}

/// One index entry.
#[derive(Clone, Debug, Serialize)]
pub struct IndexEntryReport {
    /// The index file.
    pub file: PathBuf,
    /// Byte position of the entry in the index file.
    pub entry_position: u64,
    /// Absolute offset (segment base plus the relative offset).
    pub offset: Offset,
    /// For `.index`: the byte position in the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_position: Option<u32>,
    /// For `.timeindex`: the timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<TimestampMs>,
    /// True when the entry agrees with the log.
    pub valid: bool,
}

/// A state file of a log directory, or any other file found there.
#[derive(Clone, Debug, Serialize)]
pub struct StateFileReport {
    /// The file.
    pub file: PathBuf,
    /// What it is: `recovery-point`, `clean-shutdown`, `lock`, `temporary`, `repair-side-file`,
    /// `orphan-index`, `directory` or `unknown`.
    pub kind: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Decoded fields, in order, when the format is known (a JSON object).
    #[serde(serialize_with = "fields_as_map")]
    pub fields: Vec<(String, Field)>,
    /// Whether it decoded and agrees with the log (`None`: not checked, format unknown).
    pub valid: Option<bool>,
}

/// A decoded field of a state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Field {
    /// An unsigned integer (offsets, positions, sizes).
    UInt(u64),
    /// A signed integer (timestamps).
    Int(i64),
    /// Text.
    Text(String),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::UInt(v) => v.fmt(f),
            Field::Int(v) => v.fmt(f),
            Field::Text(v) => v.fmt(f),
        }
    }
}

fn fields_as_map<S: serde::Serializer>(
    fields: &[(String, Field)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(fields.iter().map(|(k, v)| (k, v)))
}

/// A file of a log directory that this tool does not know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnknownFile {
    /// Its name.
    pub name: String,
    /// Its size in bytes (0 for a directory).
    pub size_bytes: u64,
}

/// One segment of a log directory, as found by the scan.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentRange {
    /// The `.log` file.
    pub file: PathBuf,
    /// Base offset (from the file name).
    pub base_offset: Offset,
    /// One past the last valid offset.
    pub end_offset: Offset,
    /// Size of the file.
    pub size_bytes: u64,
    /// Bytes up to the end of the last batch before the first invalid one.
    pub valid_bytes: u64,
    /// Batches (with a valid header).
    pub batches: u64,
    /// Records in them.
    pub records: u64,
    /// Largest timestamp.
    pub max_timestamp_ms: Option<TimestampMs>,
    /// Entries of `.index` (`None` when missing).
    pub index_entries: Option<u64>,
    /// Entries of `.timeindex` (`None` when missing).
    pub time_index_entries: Option<u64>,
}

/// A subscriber of a topic as its state file records it.
#[derive(Clone, Debug, Serialize)]
pub struct SubscriberState {
    /// Its name.
    pub name: String,
    /// The next offset it will read.
    pub committed: Offset,
    /// End of the log minus committed.
    pub lag: u64,
}

/// An in-flight message of a queue.
#[derive(Clone, Debug, Serialize)]
pub struct InFlight {
    /// Its offset.
    pub offset: Offset,
    /// How many times it was delivered.
    pub deliveries: u32,
}

/// The ack state of a queue (or of a consumer group) as its state files record it: the
/// snapshot with the journal replayed over it, not clamped to the log (recovery clamps it).
#[derive(Clone, Debug, Serialize)]
pub struct QueueState {
    /// Every offset below is acknowledged.
    pub ack_floor: Offset,
    /// Next never-delivered offset.
    pub cursor: Offset,
    /// Acknowledged offsets above the floor.
    pub acked_above_floor: u64,
    /// Delivered, not yet acknowledged, with their delivery counts (redelivered after a
    /// restart, with these counts), ascending.
    pub in_flight: Vec<InFlight>,
    /// Messages dead-lettered so far.
    pub dead_lettered: u64,
    /// Messages not yet acknowledged, delivered or not: log end minus floor minus
    /// `acked_above_floor`.
    pub depth: u64,
    /// Messages never delivered: log end minus cursor.
    pub undelivered: u64,
    /// Journal generation in use.
    pub generation: u64,
    /// Valid journal records replayed over the snapshot.
    pub journal_records: u64,
}

/// A consumer group of a topic (`<topic>/groups/<group>/`).
#[derive(Clone, Debug, Serialize)]
pub struct GroupState {
    /// Its name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its dead-letter bound (`max_deliveries` of its config; `None` when the config is
    /// unreadable).
    pub max_deliveries: Option<u32>,
    /// Its ack state (`None` when its state files are unreadable: see the problems).
    pub state: Option<QueueState>,
}

/// Retention settings of a log.
#[derive(Clone, Debug, Serialize)]
pub struct Retention {
    /// Size bound.
    pub retention_bytes: Option<u64>,
    /// Age bound.
    pub retention_ms: Option<u64>,
}

/// A log directory (a topic, a queue, or a bare log): summary after its scan.
#[derive(Clone, Debug, Serialize)]
pub struct LogDirReport {
    /// The directory.
    pub dir: PathBuf,
    /// `topic`, `queue` or `log` (from the parent directory's name).
    pub kind: String,
    /// Its name (the directory name).
    pub name: String,
    /// Segments, oldest first.
    pub segments: Vec<SegmentRange>,
    /// First offset held.
    pub start_offset: Option<Offset>,
    /// One past the last valid offset.
    pub end_offset: Option<Offset>,
    /// Bytes of all segment files.
    pub size_bytes: u64,
    /// Retention settings from the `config` file (`None`: no readable config file).
    pub retention: Option<Retention>,
    /// Named subscribers of a topic (`None`: no offsets files, or unreadable: see the problems).
    pub subscribers: Option<Vec<SubscriberState>>,
    /// Ack state of a queue (`None`: no ack state files, or unreadable: see the problems).
    pub queue: Option<QueueState>,
    /// Consumer groups of a topic, by name.
    pub groups: Vec<GroupState>,
    /// The directory of the topic's or queue's state files (`config`, `offsets.*`, `acks.*`,
    /// `groups/`): the parent of a `log` directory in a data directory, else the log directory.
    pub state_dir: PathBuf,
    /// Files of the directory this tool does not know, by name and size.
    pub unknown_files: Vec<UnknownFile>,
}

/// Counts and time of a walk.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Log directories.
    pub log_dirs: u64,
    /// Segment files.
    pub segments: u64,
    /// Batches with a valid header.
    pub batches: u64,
    /// Records in them.
    pub records: u64,
    /// Bytes of segment files read.
    pub bytes: u64,
    /// Index files checked.
    pub indexes: u64,
    /// State files checked.
    pub state_files: u64,
    /// Problems of severity error.
    pub errors: u64,
    /// Problems of severity warning.
    pub warnings: u64,
    /// Wall-clock time in milliseconds.
    pub elapsed_ms: u64,
    /// True when a running broker holds the data directory's lock.
    pub locked: bool,
}

/// One thing found by a walk. Serialized with a `type` field (`"batch"`, `"record"`, ...).
// Items are streamed to a visitor one at a time, and `LogDir` comes once per directory: its size
// costs nothing worth a box that every caller would have to look through.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    /// A note for the operator (for example: the directory is locked by a running broker).
    Note {
        /// The note.
        message: String,
    },
    /// A segment file starts.
    Segment(SegmentReport),
    /// A batch.
    Batch(BatchReport),
    /// A record.
    Record(RecordReport),
    /// An index file.
    Index(IndexReport),
    /// An index entry.
    IndexEntry(IndexEntryReport),
    /// A state or other file.
    State(StateFileReport),
    /// A log directory, after its segments.
    LogDir(LogDirReport),
    /// A problem.
    Problem(Problem),
}

/// Receives what a walk finds, as it finds it.
pub trait Visitor {
    /// One item.
    fn item(&mut self, item: Item);
    /// Progress: `done` of `total` segment bytes read.
    fn progress(&mut self, _done: u64, _total: u64) {}
}

impl<F: FnMut(Item)> Visitor for F {
    fn item(&mut self, item: Item) {
        self(item)
    }
}

/// Everything a walk found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The items, in order.
    pub items: Vec<Item>,
    /// The summary.
    pub summary: Summary,
}

impl Report {
    /// The problems among the items.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.items.iter().filter_map(|i| match i {
            Item::Problem(p) => Some(p),
            _ => None,
        })
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// Every problem, in the order found.
    pub problems: Vec<Problem>,
    /// The summary.
    pub summary: Summary,
}

impl Verification {
    /// True when no problem of severity error was found.
    pub fn ok(&self) -> bool {
        self.summary.errors == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Lock
// ---------------------------------------------------------------------------------------------

/// Whether a broker holds the data directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum LockStatus {
    /// No `LOCK` file found in the path or its parents.
    NoLockFile,
    /// The lock file exists and nobody holds it.
    Free(PathBuf),
    /// A process (a running broker) holds it.
    Held(PathBuf),
}

/// Finds `LOCK` in `path` or up to four of its parents (a segment file is four levels below the
/// data directory: `<root>/topics/<name>/<segment>`).
pub fn find_lock_file(path: &Path) -> Option<PathBuf> {
    let start = if path.is_dir() {
        Some(path)
    } else {
        path.parent()
    };
    start?
        .ancestors()
        .take(4)
        .map(|d| d.join(LOCK_FILE))
        .find(|p| p.is_file())
}

fn flock(file: &std::fs::File, op: libc::c_int) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Tells whether a running broker holds the lock of the data directory containing `path`, by a
/// non-blocking shared `flock` attempt (released at once).
pub fn lock_status(path: &Path) -> LockStatus {
    let Some(lock) = find_lock_file(path) else {
        return LockStatus::NoLockFile;
    };
    match std::fs::File::open(&lock).and_then(|f| flock(&f, libc::LOCK_SH)) {
        Ok(true) => LockStatus::Free(lock),
        Ok(false) => LockStatus::Held(lock),
        // Cannot tell: assume held, the safe answer for repair.
        Err(_) => LockStatus::Held(lock),
    }
}

/// An exclusive hold on a data directory's lock, released on drop.
#[derive(Debug)]
pub struct LockGuard {
    _file: Option<std::fs::File>,
}

/// Takes the data directory's lock exclusively for a repair, so a broker cannot start meanwhile.
/// Fails when a broker holds it. Without a lock file there is nothing to take.
pub fn lock_for_repair(path: &Path) -> Result<LockGuard> {
    let Some(lock) = find_lock_file(path) else {
        return Ok(LockGuard { _file: None });
    };
    let f = std::fs::File::open(&lock).at(&lock)?;
    match flock(&f, libc::LOCK_EX) {
        Ok(true) => Ok(LockGuard { _file: Some(f) }),
        Ok(false) => Err(Error::InvalidArgument(format!(
            "{} is held by a running broker: stop it before repairing",
            lock.display()
        ))),
        Err(e) => Err(Error::io(lock, e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Walk
// ---------------------------------------------------------------------------------------------

/// What a path is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A directory holding segment or state files.
    LogDir,
    /// Any other directory: its subdirectories are searched for log directories.
    Tree,
    /// A segment, index or state file.
    File,
}

fn classify(fs: &dyn FileSystem, path: &Path) -> Result<Target> {
    if !fs.is_dir(path) {
        if !fs.exists(path) {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
        return Ok(Target::File);
    }
    let names = fs.read_dir(path).at(path)?;
    let is_log = names.iter().any(|n| {
        parse_segment_name(n).is_some() || n == RECOVERY_POINT_FILE || n == CLEAN_SHUTDOWN_FILE
    });
    Ok(if is_log { Target::LogDir } else { Target::Tree })
}

/// The log directories under `path` (itself when it is one), depth first, sorted; at most four
/// levels deep (`<root>/topics/<name>/log`).
fn log_dirs(fs: &dyn FileSystem, path: &Path, depth: u32, out: &mut Vec<PathBuf>) -> Result<()> {
    match classify(fs, path)? {
        Target::LogDir => out.push(path.to_path_buf()),
        Target::File => {}
        Target::Tree if depth < 4 => {
            for n in fs.read_dir(path).at(path)? {
                let p = path.join(&n);
                // A tombstone is a deleted directory being removed, not a log to inspect.
                if fs.is_dir(&p) && !crate::store::is_tombstone(&n) {
                    log_dirs(fs, &p, depth + 1, out)?;
                }
            }
        }
        Target::Tree => {}
    }
    Ok(())
}

fn file_len(fs: &dyn FileSystem, path: &Path) -> Result<u64> {
    fs.open(path, OpenMode::Read).and_then(|f| f.len()).at(path)
}

struct Walker<'a> {
    fs: &'a dyn FileSystem,
    opts: InspectOptions,
    v: &'a mut dyn Visitor,
    sum: Summary,
    done: u64,
    total: u64,
}

/// A batch boundary found by a scan.
#[derive(Clone, Copy, Debug)]
struct Boundary {
    position: u64,
    base: Offset,
    next: Offset,
    /// Largest timestamp of the segment up to and including this batch.
    max_ts_so_far: TimestampMs,
}

/// What a scan of one segment found.
#[derive(Clone, Debug)]
struct Scanned {
    len: u64,
    /// End of the last batch before the first invalid one.
    valid_end: u64,
    /// One past the last offset before the first invalid batch.
    next_offset: Offset,
    boundaries: Vec<Boundary>,
    /// Where the walk stopped at a batch header it could not read: nothing after is known.
    unread_from: Option<u64>,
    batches: u64,
    records: u64,
    max_ts: Option<TimestampMs>,
}

impl Scanned {
    fn boundary_at(&self, position: u64) -> Option<&Boundary> {
        self.boundaries
            .binary_search_by_key(&position, |b| b.position)
            .ok()
            .map(|i| &self.boundaries[i])
    }
    /// The batch containing `offset`.
    fn batch_of(&self, offset: Offset) -> Option<&Boundary> {
        let i = self.boundaries.partition_point(|b| b.base <= offset);
        i.checked_sub(1)
            .map(|i| &self.boundaries[i])
            .filter(|b| offset < b.next)
    }
}

/// Buffered positional reads of one file.
struct Reader {
    file: FileRef,
    buf: Vec<u8>,
    at: u64,
}

impl Reader {
    const CHUNK: u64 = 4 << 20;
    fn new(file: FileRef) -> Self {
        Reader {
            file,
            buf: Vec::new(),
            at: 0,
        }
    }
    /// The bytes buffered from `pos` on, at least `need` of them (fewer only at the end of the
    /// file).
    fn window(&mut self, pos: u64, need: usize, file_len: u64) -> std::io::Result<&[u8]> {
        let left = file_len.saturating_sub(pos);
        let need = (need as u64).min(left) as usize;
        let buffered_end = self.at + self.buf.len() as u64;
        let have = if (self.at..=buffered_end).contains(&pos) {
            buffered_end - pos
        } else {
            0
        };
        if have < need as u64 || (have == 0 && left > 0) {
            let want = Self::CHUNK
                .min(file_len.saturating_sub(pos))
                .max(need as u64) as usize;
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.at = pos;
        }
        let rel = (pos - self.at) as usize;
        Ok(&self.buf[rel..])
    }

    /// `len` bytes at `pos`; the caller checked they lie inside the file.
    fn get(&mut self, pos: u64, len: usize, file_len: u64) -> std::io::Result<&[u8]> {
        let end = pos + len as u64;
        if pos < self.at || end > self.at + self.buf.len() as u64 {
            let want = (len as u64).max(Self::CHUNK).min(file_len - pos) as usize;
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.at = pos;
        }
        let rel = (pos - self.at) as usize;
        Ok(&self.buf[rel..rel + len])
    }
}

/// Walks `path` (a data directory, a log directory or one file), reporting to `v` as it goes.
pub fn walk(
    fs: &dyn FileSystem,
    path: &Path,
    opts: &InspectOptions,
    v: &mut dyn Visitor,
) -> Result<Summary> {
    let started = Instant::now();
    let mut opts = opts.clone();
    opts.records |= opts.payloads;
    opts.batches |= opts.records;
    let mut w = Walker {
        fs,
        opts,
        v,
        sum: Summary::default(),
        done: 0,
        total: 0,
    };
    if let LockStatus::Held(lock) = lock_status(path) {
        w.sum.locked = true;
        w.v.item(Item::Note {
            message: format!(
                "{} is held by a running broker: reading only; the tail of an active segment may be mid-write",
                lock.display()
            ),
        });
    }
    match classify(fs, path)? {
        Target::File => {
            w.total = file_len(fs, path)?;
            w.file(path)?;
        }
        _ => {
            let mut dirs = Vec::new();
            log_dirs(fs, path, 0, &mut dirs)?;
            for d in &dirs {
                for n in fs.read_dir(d).at(d)? {
                    if matches!(parse_segment_name(&n), Some((_, LOG_EXT))) {
                        w.total += file_len(fs, &d.join(n))?;
                    }
                }
            }
            if dirs.is_empty() {
                w.v.item(Item::Note {
                    message: format!("no log directory found under {}", path.display()),
                });
            }
            for d in &dirs {
                w.log_dir(d)?;
            }
        }
    }
    w.sum.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(w.sum)
}

/// Walks `path` and collects everything found.
pub fn inspect_path(fs: &dyn FileSystem, path: &Path, opts: &InspectOptions) -> Result<Report> {
    let mut items = Vec::new();
    let summary = walk(fs, path, opts, &mut |i| items.push(i))?;
    Ok(Report { items, summary })
}

/// Checks every checksum, offset order, index and state file under `path`; keeps the problems.
pub fn verify(fs: &dyn FileSystem, path: &Path) -> Result<Verification> {
    let mut problems = Vec::new();
    let opts = InspectOptions::default();
    let summary = walk(fs, path, &opts, &mut |i| {
        if let Item::Problem(p) = i {
            problems.push(p)
        }
    })?;
    Ok(Verification { problems, summary })
}

impl Walker<'_> {
    fn problem(&mut self, severity: Severity, file: &Path, position: Option<u64>, what: String) {
        match severity {
            Severity::Error => self.sum.errors += 1,
            Severity::Warning => self.sum.warnings += 1,
        }
        self.v.item(Item::Problem(Problem {
            severity,
            file: file.to_path_buf(),
            position,
            what,
        }));
    }

    fn error(&mut self, file: &Path, position: u64, what: String) {
        self.problem(Severity::Error, file, Some(position), what)
    }

    /// A single file given on the command line.
    fn file(&mut self, path: &Path) -> Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = path.parent().unwrap_or(Path::new("."));
        match parse_segment_name(&name) {
            Some((base, LOG_EXT)) => {
                self.opts.batches = true;
                self.segment(path, Some(base), Some(base))?;
            }
            Some((base, ext)) => {
                self.opts.index_entries = true;
                let log = segment_path(dir, base, LOG_EXT);
                let scanned = if self.fs.exists(&log) {
                    Some(self.quiet_scan(&log, base)?)
                } else {
                    self.problem(
                        Severity::Warning,
                        path,
                        None,
                        format!(
                            "no {} beside it: entries are not checked against the log",
                            log.display()
                        ),
                    );
                    None
                };
                let kind = if ext == INDEX_EXT {
                    IndexKind::Offset
                } else {
                    IndexKind::Time
                };
                self.index(path, kind, base, scanned.as_ref(), false)?;
            }
            None if name == RECOVERY_POINT_FILE || name == CLEAN_SHUTDOWN_FILE => {
                let segs = self.quiet_dir_scan(dir)?;
                self.state_file(path, &name, &segs)?;
            }
            None if name.contains(DROPPED_INFIX) => {
                self.opts.batches = true;
                self.side_file(path)?;
            }
            None if is_known_state_file(&name) && !self.fs.is_dir(path) => {
                self.topic_state_file(path, dir)?
            }
            None => self.other_file(path, &name)?,
        }
        Ok(())
    }

    /// A `config`, snapshot or journal file of a topic, queue or group given alone: decoded and
    /// checked against the end of the log it belongs to.
    fn topic_state_file(&mut self, path: &Path, dir: &Path) -> Result<()> {
        use crate::store::{GROUPS_DIR, LOG_DIR};
        // `<t>/groups/<g>/<file>` belongs to topic `<t>`; `<t-or-q>/<file>` to itself.
        let in_group = dir
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == GROUPS_DIR))
            .and_then(|p| p.parent());
        let owner = in_group.unwrap_or(dir);
        let log = if self.fs.is_dir(&owner.join(LOG_DIR)) {
            owner.join(LOG_DIR)
        } else {
            owner.to_path_buf()
        };
        let segs = self.quiet_dir_scan(&log)?;
        let (kind, name, state_dir) = layout(&log);
        let mut report = LogDirReport {
            dir: log,
            kind: kind.into(),
            name,
            segments: vec![],
            start_offset: segs.iter().map(|s| s.0).min(),
            end_offset: segs.iter().max_by_key(|s| s.0).map(|s| s.1.next_offset),
            size_bytes: 0,
            retention: None,
            subscribers: None,
            queue: None,
            groups: vec![],
            state_dir,
            unknown_files: vec![],
        };
        let mut items = Vec::new();
        read_log_state(self.fs, &mut report, &mut items)?;
        for i in items {
            match i {
                Item::Problem(p) if p.file == path => {
                    self.problem(p.severity, &p.file, p.position, p.what)
                }
                Item::State(s) if s.file == path => {
                    self.sum.state_files += 1;
                    self.v.item(Item::State(s));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A repair side file: a whole segment set aside (with its header) or a cut tail (without).
    fn side_file(&mut self, path: &Path) -> Result<()> {
        let f = self.fs.open(path, OpenMode::Read).at(path)?;
        let len = f.len().at(path)?;
        let mut magic = [0u8; 8];
        let with_header = len >= FILE_HEADER_LEN as u64
            && f.read_exact_at(&mut magic, 0).is_ok()
            && magic == SEGMENT_MAGIC;
        if with_header {
            self.segment(path, None, None)?;
        } else {
            self.sum.segments += 1;
            self.v.item(Item::Segment(SegmentReport {
                file: path.to_path_buf(),
                size_bytes: len,
                base_offset: None,
                header_valid: false,
                headerless: true,
            }));
            self.batches(path, &f, len, 0, None, true)?;
        }
        Ok(())
    }

    fn other_file(&mut self, path: &Path, name: &str) -> Result<()> {
        let (kind, problem): (&str, Option<(Severity, &str)>) = if name == LOCK_FILE {
            ("lock", None)
        } else if name.ends_with(".tmp") {
            (
                "temporary",
                Some((
                    Severity::Warning,
                    "leftover temporary file of an interrupted write (removed at the next open)",
                )),
            )
        } else if name.contains(DROPPED_INFIX) {
            ("repair-side-file", None)
        } else {
            ("unknown", None)
        };
        let is_dir = self.fs.is_dir(path);
        let size = if is_dir { 0 } else { file_len(self.fs, path)? };
        self.sum.state_files += 1;
        self.v.item(Item::State(StateFileReport {
            file: path.to_path_buf(),
            kind: if is_dir { "directory" } else { kind }.into(),
            size_bytes: size,
            fields: vec![],
            valid: None,
        }));
        if let Some((sev, what)) = problem {
            self.problem(sev, path, None, what.into());
        }
        Ok(())
    }

    /// Scans a segment without reporting anything (to check an index or state file given alone).
    fn quiet_scan(&mut self, log: &Path, base: Offset) -> Result<Scanned> {
        let mut sink = |_: Item| {};
        let mut w = Walker {
            fs: self.fs,
            opts: InspectOptions {
                batch_bytes_max: self.opts.batch_bytes_max,
                ..InspectOptions::default()
            },
            v: &mut sink,
            sum: Summary::default(),
            done: 0,
            total: 0,
        };
        w.segment(log, Some(base), Some(base))
    }

    fn quiet_dir_scan(&mut self, dir: &Path) -> Result<Vec<(Offset, Scanned)>> {
        let mut out = Vec::new();
        for n in self.fs.read_dir(dir).at(dir)? {
            if let Some((base, LOG_EXT)) = parse_segment_name(&n) {
                out.push((base, self.quiet_scan(&dir.join(n), base)?));
            }
        }
        Ok(out)
    }

    /// One log directory: segments in order, their indexes, state files, other files.
    fn log_dir(&mut self, dir: &Path) -> Result<()> {
        self.sum.log_dirs += 1;
        let names = self.fs.read_dir(dir).at(dir)?;
        let mut bases: Vec<Offset> = names
            .iter()
            .filter_map(|n| match parse_segment_name(n) {
                Some((b, LOG_EXT)) => Some(b),
                _ => None,
            })
            .collect();
        bases.sort();
        let mut segs: Vec<(Offset, Scanned)> = Vec::new();
        let mut ranges = Vec::new();
        let mut expected: Option<Offset> = None;
        for &base in &bases {
            let path = segment_path(dir, base, LOG_EXT);
            if let Some(e) = expected.filter(|e| *e != base) {
                self.error(
                    &path,
                    0,
                    format!("segment starts at offset {base} but the previous one ends at {e}"),
                );
            }
            let s = self.segment(&path, Some(base), Some(base))?;
            let mut range = SegmentRange {
                file: path.clone(),
                base_offset: base,
                end_offset: s.next_offset,
                size_bytes: s.len,
                valid_bytes: s.valid_end,
                batches: s.batches,
                records: s.records,
                max_timestamp_ms: s.max_ts,
                index_entries: None,
                time_index_entries: None,
            };
            for (ext, kind) in [
                (INDEX_EXT, IndexKind::Offset),
                (TIME_INDEX_EXT, IndexKind::Time),
            ] {
                let ip = segment_path(dir, base, ext);
                if self.fs.exists(&ip) {
                    let n = self.index(&ip, kind, base, Some(&s), true)?;
                    match kind {
                        IndexKind::Offset => range.index_entries = Some(n),
                        IndexKind::Time => range.time_index_entries = Some(n),
                    }
                } else if s.batches > 0 {
                    self.problem(
                        Severity::Warning,
                        &ip,
                        None,
                        "missing (an unclean stop leaves the active segment without one); rebuilt from the log at the next open".into(),
                    );
                }
            }
            // Continuity is checked against the last batch with a valid header, so one damaged
            // batch is reported once, not again at every later segment.
            expected = Some(s.boundaries.last().map_or(s.next_offset, |b| b.next));
            ranges.push(range);
            segs.push((base, s));
        }
        let (kind, name, state_dir) = layout(dir);
        let mut unknown = Vec::new();
        for n in &names {
            let p = dir.join(n);
            match parse_segment_name(n) {
                Some((_, LOG_EXT)) => {}
                Some((base, _)) => {
                    if bases.binary_search(&base).is_err() {
                        self.sum.state_files += 1;
                        self.v.item(Item::State(StateFileReport {
                            file: p.clone(),
                            kind: "orphan-index".into(),
                            size_bytes: file_len(self.fs, &p)?,
                            fields: vec![],
                            valid: None,
                        }));
                        self.problem(
                            Severity::Warning,
                            &p,
                            None,
                            "index without a segment file (removed at the next open)".into(),
                        );
                    }
                }
                None if n == RECOVERY_POINT_FILE || n == CLEAN_SHUTDOWN_FILE => {
                    self.state_file(&p, n, &segs)?;
                }
                // Read by `read_log_state` when the log directory is also the state directory.
                None if state_dir.as_path() == dir && is_known_state_file(n) => {}
                None => {
                    let size = if self.fs.is_dir(&p) {
                        0
                    } else {
                        file_len(self.fs, &p)?
                    };
                    if !n.contains(DROPPED_INFIX) && !n.ends_with(".tmp") {
                        unknown.push(UnknownFile {
                            name: n.clone(),
                            size_bytes: size,
                        });
                    }
                    self.other_file(&p, n)?;
                }
            }
        }
        let mut report = LogDirReport {
            dir: dir.to_path_buf(),
            kind: kind.into(),
            name,
            start_offset: ranges.first().map(|r| r.base_offset),
            end_offset: ranges.last().map(|r| r.end_offset),
            size_bytes: ranges.iter().map(|r| r.size_bytes).sum(),
            segments: ranges,
            retention: None,
            subscribers: None,
            queue: None,
            groups: Vec::new(),
            state_dir,
            unknown_files: unknown,
        };
        let mut items = Vec::new();
        read_log_state(self.fs, &mut report, &mut items)?;
        for i in items {
            match i {
                Item::Problem(p) => self.problem(p.severity, &p.file, p.position, p.what),
                Item::State(s) => {
                    self.sum.state_files += 1;
                    self.v.item(Item::State(s));
                }
                other => self.v.item(other),
            }
        }
        self.v.item(Item::LogDir(report));
        Ok(())
    }

    /// A segment file: header, then every batch. `name_base` is the base offset its name gives;
    /// `expected` the offset its first batch must have.
    fn segment(
        &mut self,
        path: &Path,
        name_base: Option<Offset>,
        expected: Option<Offset>,
    ) -> Result<Scanned> {
        self.sum.segments += 1;
        let f = self.fs.open(path, OpenMode::Read).at(path)?;
        let len = f.len().at(path)?;
        let mut header_valid = false;
        let mut base = None;
        if len < FILE_HEADER_LEN as u64 {
            self.error(
                path,
                0,
                format!(
                    "file of {len} bytes is shorter than the {FILE_HEADER_LEN}-byte segment header"
                ),
            );
        } else {
            let mut h = [0u8; FILE_HEADER_LEN];
            f.read_exact_at(&mut h, 0).at(path)?;
            match decode_file_header(&h, SEGMENT_MAGIC, 0) {
                Ok(b) if name_base.is_some_and(|n| n != b) => {
                    base = Some(b);
                    self.error(
                        path,
                        0,
                        format!(
                            "file header says base offset {b} but the file name says {}",
                            name_base.unwrap_or_default()
                        ),
                    );
                }
                Ok(b) => {
                    base = Some(b);
                    header_valid = true;
                }
                Err(e) => self.error(path, 0, format!("segment file header: {e}")),
            }
        }
        // The segment line heads its batch lines; in a directory summary the log directory
        // item lists the segments instead.
        if self.opts.batches {
            self.v.item(Item::Segment(SegmentReport {
                file: path.to_path_buf(),
                size_bytes: len,
                base_offset: base,
                header_valid,
                headerless: false,
            }));
        }
        let expected = expected.or(base);
        if !header_valid {
            self.done += len;
            self.v.progress(self.done, self.total);
            return Ok(Scanned {
                len,
                valid_end: 0,
                next_offset: expected.unwrap_or_default(),
                boundaries: vec![],
                unread_from: Some(0),
                batches: 0,
                records: 0,
                max_ts: None,
            });
        }
        self.batches(path, &f, len, FILE_HEADER_LEN as u64, expected, false)
    }

    /// Walks the batches of `file` from `start`. With `expected` unknown, the first batch sets it.
    fn batches(
        &mut self,
        path: &Path,
        file: &FileRef,
        len: u64,
        start: u64,
        mut expected: Option<Offset>,
        _headerless: bool,
    ) -> Result<Scanned> {
        let mut r = Reader::new(file.clone());
        let mut s = Scanned {
            len,
            valid_end: start,
            next_offset: expected.unwrap_or_default(),
            boundaries: Vec::new(),
            unread_from: None,
            batches: 0,
            records: 0,
            max_ts: None,
        };
        let mut first_bad: Option<u64> = None;
        let mut pos = start;
        let mut last_progress = self.done;
        let rules = ScanRules {
            batch_bytes_max: self.opts.batch_bytes_max,
            records_crc: true,
        };
        while pos < len {
            let remaining = len - pos;
            let mut need = 0;
            let found = loop {
                let w = r.window(pos, need, len).at(path)?;
                match scan::step(w, pos, len, expected, rules) {
                    Step::NeedBytes(n) => need = n,
                    other => break other,
                }
            };
            let b = match found {
                Step::Batch(b) => b,
                Step::Stop(ScanStop::End) | Step::NeedBytes(_) => break,
                Step::Stop(ScanStop::ZeroTail { len: zeros }) => {
                    // Start-up recovery cuts it as a clean end, so it is no damage.
                    self.problem(
                        Severity::Warning,
                        path,
                        Some(pos),
                        format!(
                            "{zeros} bytes of zeros after the last batch: block padding of direct writes left by an unclean stop; the next start cuts it"
                        ),
                    );
                    s.unread_from = Some(pos);
                    break;
                }
                Step::Stop(stop) => {
                    let hb = r
                        .get(pos, BATCH_HEADER_LEN.min(remaining as usize), len)
                        .at(path)?;
                    let what = stop_reason(&stop, hb, remaining);
                    self.error(path, pos, what);
                    first_bad.get_or_insert(pos);
                    s.unread_from = Some(pos);
                    break;
                }
            };
            let h = b.header;
            let blen = h.batch_len as u64;
            // Problems of this batch are reported after its line.
            let mut pending: Vec<(u64, String)> = Vec::new();
            if let Some(e) = b.offset_gap {
                pending.push((
                    pos,
                    format!(
                        "batch base offset {} where {e} was expected (offset order broken)",
                        h.base_offset
                    ),
                ));
                first_bad.get_or_insert(pos);
            }
            expected = Some(h.next_offset());
            let bytes = r.get(pos, blen as usize, len).at(path)?;
            let computed = b.records_crc.unwrap_or(h.records_crc);
            let crc_ok = computed == h.records_crc;
            let (last_ts, rec_problem) = self.records(path, pos, bytes, &h)?;
            if !crc_ok {
                pending.push((
                    pos,
                    format!(
                        "records checksum mismatch in batch {}..={} (stored {:#010x}, computed {computed:#010x})",
                        h.base_offset,
                        h.last_offset(),
                        h.records_crc
                    ),
                ));
                first_bad.get_or_insert(pos);
            } else if let Some((at, what)) = rec_problem {
                // A valid checksum over malformed records: written that way, not damaged since.
                pending.push((at, what));
                first_bad.get_or_insert(pos);
            }
            self.sum.batches += 1;
            self.sum.records += h.record_count as u64;
            s.batches += 1;
            s.records += h.record_count as u64;
            let max_so_far = s
                .max_ts
                .map_or(h.max_timestamp_ms, |m| m.max(h.max_timestamp_ms));
            s.max_ts = Some(max_so_far);
            s.boundaries.push(Boundary {
                position: pos,
                base: h.base_offset,
                next: h.next_offset(),
                max_ts_so_far: max_so_far,
            });
            if first_bad.is_none() {
                s.valid_end = pos + blen;
                s.next_offset = h.next_offset();
            }
            if self.opts.batches {
                self.v.item(Item::Batch(BatchReport {
                    file: path.to_path_buf(),
                    position: pos,
                    size_bytes: h.batch_len,
                    base_offset: h.base_offset,
                    last_offset: h.last_offset(),
                    record_count: h.record_count,
                    first_timestamp_ms: h.first_timestamp_ms,
                    last_timestamp_ms: last_ts,
                    max_timestamp_ms: h.max_timestamp_ms,
                    attributes: h.attributes,
                    header_crc: h.header_crc,
                    records_crc: h.records_crc,
                    records_crc_computed: computed,
                    records_crc_valid: crc_ok,
                }));
            }
            if self.opts.records {
                // Re-parse to emit (records() only checked, to keep the batch line first).
                let bytes = r.get(pos, blen as usize, len).at(path)?;
                let items: Vec<Item> = RecordIter::new(bytes, &h)
                    .map_while(|x| x.ok())
                    .map(|rv| {
                        Item::Record(RecordReport {
                            file: path.to_path_buf(),
                            offset: rv.offset,
                            timestamp_ms: rv.timestamp_ms,
                            key: rv.key.map(Shown::of),
                            header_names: rv.headers.iter().map(|(n, _)| Shown::of(n)).collect(),
                            value_size: rv.value.len(),
                            value: self.opts.payloads.then(|| Shown::of(rv.value)),
                        })
                    })
                    .collect();
                for i in items {
                    self.v.item(i);
                }
            }
            for (at, what) in pending {
                self.error(path, at, what);
            }
            pos += blen;
            if self.done + (pos - start) >= last_progress + (1 << 20) {
                last_progress = self.done + (pos - start);
                self.v.progress(last_progress, self.total);
            }
        }
        self.sum.bytes += len;
        self.done += len;
        self.v.progress(self.done, self.total);
        Ok(s)
    }

    /// Checks the records of a batch: structure and the max timestamp field. Returns the last
    /// record's timestamp and the first problem (position in the file, what).
    #[allow(clippy::type_complexity)]
    fn records(
        &mut self,
        _path: &Path,
        pos: u64,
        bytes: &[u8],
        h: &BatchHeader,
    ) -> Result<(Option<TimestampMs>, Option<(u64, String)>)> {
        let mut last = None;
        let mut max = i64::MIN;
        for r in RecordIter::new(bytes, h) {
            match r {
                Ok(r) => {
                    last = Some(r.timestamp_ms);
                    max = max.max(r.timestamp_ms);
                }
                Err(e) => return Ok((None, Some((pos, format!("batch {}: {e}", h.base_offset))))),
            }
        }
        if max != h.max_timestamp_ms {
            return Ok((
                last,
                Some((
                    pos,
                    format!(
                        "batch {}: max timestamp field {} differs from the records' {max}",
                        h.base_offset, h.max_timestamp_ms
                    ),
                )),
            ));
        }
        Ok((last, None))
    }

    /// An index file, checked against the scan of its segment. Returns the number of entries.
    fn index(
        &mut self,
        path: &Path,
        kind: IndexKind,
        base: Offset,
        scanned: Option<&Scanned>,
        _in_dir: bool,
    ) -> Result<u64> {
        self.sum.indexes += 1;
        let bytes = crate::fs::read_all(self.fs, path).at(path)?;
        let (magic, size) = match kind {
            IndexKind::Offset => (OffsetEntry::MAGIC, OffsetEntry::SIZE),
            IndexKind::Time => (TimeEntry::MAGIC, TimeEntry::SIZE),
        };
        let len = bytes.len() as u64;
        let mut valid = true;
        let mut problems: Vec<(u64, String)> = Vec::new();
        let mut entries = Vec::new();
        match decode_file_header(&bytes, magic, size as u16) {
            Err(e) => problems.push((0, format!("index file header: {e}"))),
            Ok(b) if b != base => problems.push((
                0,
                format!("index header says base offset {b} but the segment's is {base}"),
            )),
            Ok(_) => {
                let body = &bytes[FILE_HEADER_LEN..];
                if body.len() % size != 0 {
                    problems.push((
                        len - (body.len() % size) as u64,
                        format!(
                            "index body of {} bytes is not a multiple of the {size}-byte entry",
                            body.len()
                        ),
                    ));
                }
                let mut prev_off: Option<OffsetEntry> = None;
                let mut prev_time: Option<TimeEntry> = None;
                for (i, chunk) in body.chunks_exact(size).enumerate() {
                    let at = (FILE_HEADER_LEN + i * size) as u64;
                    let (report, what) = match kind {
                        IndexKind::Offset => {
                            let e = OffsetEntry::decode(chunk);
                            let offset = base.add(e.relative_offset as u64);
                            let mut what = None;
                            if prev_off.is_some_and(|p| !p.precedes(&e)) {
                                what = Some(format!("entry {i} ({offset} at {}) does not follow the one before: entries must strictly increase", e.position));
                            } else if let Some(s) = scanned {
                                what = check_offset_entry(s, offset, e.position as u64);
                            }
                            prev_off = Some(e);
                            (
                                IndexEntryReport {
                                    file: path.to_path_buf(),
                                    entry_position: at,
                                    offset,
                                    log_position: Some(e.position),
                                    timestamp_ms: None,
                                    valid: what.is_none(),
                                },
                                what,
                            )
                        }
                        IndexKind::Time => {
                            let e = TimeEntry::decode(chunk);
                            let offset = base.add(e.relative_offset as u64);
                            let mut what = None;
                            if prev_time.is_some_and(|p| !p.precedes(&e)) {
                                what = Some(format!("entry {i} (timestamp {} for offset {offset}) does not follow the one before: timestamps must strictly increase", e.timestamp_ms));
                            } else if let Some(s) = scanned {
                                what = check_time_entry(s, offset, e.timestamp_ms);
                            }
                            prev_time = Some(e);
                            (
                                IndexEntryReport {
                                    file: path.to_path_buf(),
                                    entry_position: at,
                                    offset,
                                    log_position: None,
                                    timestamp_ms: Some(e.timestamp_ms),
                                    valid: what.is_none(),
                                },
                                what,
                            )
                        }
                    };
                    if let Some(w) = what {
                        problems.push((at, w));
                    }
                    entries.push(report);
                }
            }
        }
        if !problems.is_empty() {
            valid = false;
        }
        let n = entries.len() as u64;
        if self.opts.batches || self.opts.index_entries {
            self.v.item(Item::Index(IndexReport {
                file: path.to_path_buf(),
                kind,
                size_bytes: len,
                entries: n,
                valid,
            }));
        }
        if self.opts.index_entries {
            for e in entries {
                self.v.item(Item::IndexEntry(e));
            }
        }
        let total = problems.len();
        for (at, what) in problems.into_iter().take(10) {
            self.error(path, at, format!("{what}{INDEX_HINT}"));
        }
        if total > 10 {
            self.problem(
                Severity::Error,
                path,
                None,
                format!("{} more bad entries not listed", total - 10),
            );
        }
        Ok(n)
    }

    /// `recovery-point` or `clean-shutdown`, checked against the scans of the directory.
    fn state_file(&mut self, path: &Path, name: &str, segs: &[(Offset, Scanned)]) -> Result<()> {
        self.sum.state_files += 1;
        let bytes = crate::fs::read_all(self.fs, path).at(path)?;
        let mut fields = Vec::new();
        let problem: Option<String>;
        if name == RECOVERY_POINT_FILE {
            match RecoveryPoint::decode(&bytes) {
                Err(e) => {
                    problem = Some(format!(
                        "invalid recovery point: {e} (ignored at open: the whole log is rescanned)"
                    ))
                }
                Ok(rp) => {
                    fields = vec![
                        ("segment_base".into(), Field::UInt(rp.segment_base.0)),
                        ("position".into(), Field::UInt(rp.position)),
                        ("next_offset".into(), Field::UInt(rp.next_offset.0)),
                        ("max_timestamp_ms".into(), Field::Int(rp.max_timestamp_ms)),
                    ];
                    problem = check_recovery_point(&rp, segs);
                }
            }
        } else {
            match CleanShutdown::decode(&bytes) {
                Err(e) => problem = Some(format!("invalid clean-shutdown marker: {e}")),
                Ok(cs) => {
                    fields = vec![
                        ("next_offset".into(), Field::UInt(cs.next_offset.0)),
                        ("active_base".into(), Field::UInt(cs.active_base.0)),
                        ("active_size".into(), Field::UInt(cs.active_size)),
                    ];
                    problem = check_clean_shutdown(&cs, segs);
                }
            }
        }
        self.v.item(Item::State(StateFileReport {
            file: path.to_path_buf(),
            kind: name.into(),
            size_bytes: bytes.len() as u64,
            fields,
            valid: Some(problem.is_none()),
        }));
        if let Some(p) = problem {
            self.error(path, 0, p);
        }
        Ok(())
    }
}

/// What inspect says of a walk stopped by `stop` at a position with `remaining` bytes left;
/// `head` holds the bytes there (up to a batch header's length).
fn stop_reason(stop: &ScanStop, head: &[u8], remaining: u64) -> String {
    match stop {
        ScanStop::TornHeader { len, zeros } => format!(
            "{len} trailing bytes{}, too short for a batch header (torn write)",
            if *zeros { " of zeros" } else { "" }
        ),
        ScanStop::BadHeader(BatchError::HeaderCrc { stored, computed }) => format!(
            "batch header checksum mismatch (stored {stored:#010x}, computed {computed:#010x}){}; the {remaining} bytes from here are not examined",
            if head.iter().all(|b| *b == 0) { ", header is all zeros (torn write or preallocated space)" } else { "" }
        ),
        ScanStop::BadHeader(other) => format!(
            "invalid batch header: {other}; the {remaining} bytes from here are not examined"
        ),
        ScanStop::PastEnd { header, remaining } => format!(
            "batch of {} bytes (offsets {}..={}) runs past the end of the file: {remaining} bytes left (torn write)",
            header.batch_len,
            header.base_offset,
            header.last_offset()
        ),
        other => other.to_string(),
    }
}

fn check_offset_entry(s: &Scanned, offset: Offset, position: u64) -> Option<String> {
    if s.unread_from
        .is_some_and(|u| position >= u && position < s.len)
    {
        return None; // beyond an unreadable batch header: cannot be checked
    }
    match s.boundary_at(position) {
        None if position >= s.len => Some(format!(
            "entry for offset {offset} points at byte {position}, past the end of the {}-byte log",
            s.len
        )),
        None => Some(format!(
            "entry for offset {offset} points at byte {position}, which is not a batch boundary"
        )),
        Some(b) if b.base != offset => Some(format!(
            "entry for offset {offset} points at byte {position}, where the batch starts at offset {}",
            b.base
        )),
        Some(_) => None,
    }
}

fn check_time_entry(s: &Scanned, offset: Offset, ts: TimestampMs) -> Option<String> {
    let seen_end = s.boundaries.last().map_or(s.next_offset, |b| b.next);
    if s.unread_from.is_some() && offset >= seen_end {
        return None; // beyond an unreadable batch header: cannot be checked
    }
    match s.batch_of(offset) {
        None => Some(format!(
            "time entry ({ts}, offset {offset}) names an offset outside the segment's valid batches"
        )),
        Some(b) if b.max_ts_so_far > ts => Some(format!(
            "time entry ({ts}, offset {offset}) is below the largest timestamp {} up to that batch",
            b.max_ts_so_far
        )),
        Some(_) => None,
    }
}

fn check_recovery_point(rp: &RecoveryPoint, segs: &[(Offset, Scanned)]) -> Option<String> {
    let first = segs.first().map(|s| s.0)?;
    let Some((_, s)) = segs.iter().find(|(b, _)| *b == rp.segment_base) else {
        return (rp.segment_base > first).then(|| {
            format!(
                "recovery point names segment {} which does not exist",
                rp.segment_base
            )
        });
    };
    if rp.position > s.valid_end {
        return Some(format!(
            "recovery point at byte {} (offset {}) of segment {} is past the segment's valid end at byte {} (offset {}): records the broker had made durable are damaged or missing",
            rp.position, rp.next_offset, rp.segment_base, s.valid_end, s.next_offset
        ));
    }
    let at = if rp.position == FILE_HEADER_LEN as u64 {
        Some(rp.segment_base)
    } else if rp.position == s.valid_end {
        Some(s.next_offset)
    } else {
        s.boundary_at(rp.position).map(|b| b.base)
    };
    match at {
        Some(o) if o == rp.next_offset => None,
        Some(o) => Some(format!(
            "recovery point says offset {} at byte {} but the batch there starts at {o}",
            rp.next_offset, rp.position
        )),
        None => Some(format!(
            "recovery point byte {} is not a batch boundary of segment {}",
            rp.position, rp.segment_base
        )),
    }
}

fn check_clean_shutdown(cs: &CleanShutdown, segs: &[(Offset, Scanned)]) -> Option<String> {
    let (base, s) = segs.last()?;
    if cs.active_base != *base {
        return Some(format!(
            "clean-shutdown marker names segment {} as the last, but the last is {base}",
            cs.active_base
        ));
    }
    if cs.active_size != s.len || cs.next_offset != s.next_offset || s.valid_end != s.len {
        return Some(format!(
            "clean-shutdown marker says the log ends at offset {} with {} bytes, but the last segment has {} bytes ending at offset {} (valid to byte {}): files changed after the clean stop",
            cs.next_offset, cs.active_size, s.len, s.next_offset, s.valid_end
        ));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Topic and queue state files
//
// In a data directory a topic or queue keeps its log in `<root>/{topics,queues}/<name>/log/` and
// its state beside it (`docs/format-state.md`): `config`, `offsets.snapshot` and
// `offsets.<gen>.journal` (topic subscribers), `acks.snapshot` and `acks.<gen>.journal` (queue
// ack state), `groups/<group>/{config,acks.*}` (consumer groups of a topic). `read_log_state`
// decodes them read-only, the way recovery does, and reports every checksum or consistency
// failure with the file, the byte position and what recovery will do about it.
// ---------------------------------------------------------------------------------------------

/// Kind, name and state directory of a log directory: `<root>/topics/<name>/log` is topic
/// `<name>` with its state in `<root>/topics/<name>`; a log directory directly in `topics/` or
/// `queues/` keeps its state files beside its segments; anything else is a bare `log`.
fn layout(dir: &Path) -> (&'static str, String, PathBuf) {
    let file_name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let kind_of = |p: Option<&Path>| match p.and_then(|p| p.file_name()).and_then(|n| n.to_str()) {
        Some("topics") => Some("topic"),
        Some("queues") => Some("queue"),
        _ => None,
    };
    let parent = dir.parent();
    if file_name(dir) == crate::store::LOG_DIR {
        if let (Some(p), Some(kind)) = (parent, kind_of(parent.and_then(|p| p.parent()))) {
            return (kind, file_name(p), p.to_path_buf());
        }
    }
    match kind_of(parent) {
        Some(kind) => (kind, file_name(dir), dir.to_path_buf()),
        None => ("log", file_name(dir), dir.to_path_buf()),
    }
}

/// Generation in a journal file name `<prefix>.<16 hex>.journal`.
fn journal_generation(name: &str, prefix: &str) -> Option<u64> {
    let hex = name
        .strip_prefix(prefix)?
        .strip_prefix('.')?
        .strip_suffix(".journal")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// File names of a state directory that [`read_log_state`] reads.
pub fn is_known_state_file(name: &str) -> bool {
    use crate::ackstate::ACK_PREFIX;
    use crate::offsets::OFFSETS_PREFIX;
    name == crate::store::CONFIG_FILE
        || name == crate::store::GROUPS_DIR
        || [ACK_PREFIX, OFFSETS_PREFIX]
            .iter()
            .any(|p| name == format!("{p}.snapshot") || journal_generation(name, p).is_some())
}

/// Why the journal bytes `b` (starting at a record boundary) do not start with a valid record.
fn bad_record_reason(b: &[u8]) -> String {
    if b.len() < 9 {
        let zeros = if b.iter().all(|x| *x == 0) {
            " of zeros"
        } else {
            ""
        };
        return format!("{} trailing bytes{zeros}, too short for a record", b.len());
    }
    let len = u32::from_le_bytes(b[0..4].try_into().expect("4"));
    if len == 0 || len > crate::journal::RECORD_MAX {
        return format!("invalid record length {len}");
    }
    if 8 + len as u64 > b.len() as u64 {
        return format!(
            "record of {} bytes runs past the end of the file: {} bytes left",
            8 + len as u64,
            b.len()
        );
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&b[0..4]);
    h.update(&b[8..8 + len as usize]);
    format!(
        "record checksum mismatch (stored {:#010x}, computed {:#010x})",
        u32::from_le_bytes(b[4..8].try_into().expect("4")),
        h.finalize()
    )
}

fn problem_item(severity: Severity, file: &Path, position: Option<u64>, what: String) -> Item {
    Item::Problem(Problem {
        severity,
        file: file.to_path_buf(),
        position,
        what,
    })
}

fn state_item(
    file: &Path,
    kind: &str,
    size: u64,
    fields: Vec<(String, Field)>,
    valid: Option<bool>,
) -> Item {
    Item::State(StateFileReport {
        file: file.to_path_buf(),
        kind: kind.into(),
        size_bytes: size,
        fields,
        valid,
    })
}

fn uint(k: &str, v: u64) -> (String, Field) {
    (k.into(), Field::UInt(v))
}

/// A decoded config file.
enum ConfigFile {
    Topic(LogConfig),
    Queue(crate::store::QueueConfig),
}

/// Reads the `config` file of a topic (`want` = [`crate::store::KIND_TOPIC`]), queue or group
/// (`KIND_QUEUE`); `None` when it is unreadable (reported in `out`).
fn read_config_file(
    fs: &dyn FileSystem,
    path: &Path,
    want: Option<u64>,
    out: &mut Vec<Item>,
) -> Result<Option<ConfigFile>> {
    use crate::store::{CONFIG_MAGIC, KIND_QUEUE, KIND_TOPIC};
    let bytes = crate::fs::read_all(fs, path).at(path)?;
    let size = bytes.len() as u64;
    let fail = |out: &mut Vec<Item>, at: u64, what: String| {
        out.push(state_item(path, "config", size, vec![], Some(false)));
        out.push(problem_item(
            Severity::Error,
            path,
            Some(at),
            format!("{what}: the broker refuses to start until the file is restored"),
        ));
    };
    let (kind, body) = match crate::journal::decode_snapshot(&bytes, CONFIG_MAGIC) {
        Ok(x) => x,
        Err(reason) => {
            // Same layout as a snapshot: say which file it is.
            let at = reason.position();
            let reason = reason.to_string().replace("snapshot", "config");
            fail(out, at, format!("invalid config file: {reason}"));
            return Ok(None);
        }
    };
    let name = |k: u64| match k {
        KIND_TOPIC => "topic",
        KIND_QUEUE => "queue or group",
        _ => "unknown",
    };
    if let Some(w) = want.filter(|w| *w != kind) {
        fail(
            out,
            12,
            format!(
                "config kind {kind} ({}), expected {w} ({})",
                name(kind),
                name(w)
            ),
        );
        return Ok(None);
    }
    let body_at = crate::journal::SNAPSHOT_HEADER_LEN as u64;
    let cfg = match kind {
        KIND_TOPIC => postcard::from_bytes::<LogConfig>(body).map(ConfigFile::Topic),
        KIND_QUEUE => {
            postcard::from_bytes::<crate::store::QueueConfig>(body).map(ConfigFile::Queue)
        }
        k => {
            fail(out, 12, format!("unknown config kind {k}"));
            return Ok(None);
        }
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            fail(out, body_at, format!("config body: {e}"));
            return Ok(None);
        }
    };
    let log = match &cfg {
        ConfigFile::Topic(l) => l,
        ConfigFile::Queue(q) => &q.log,
    };
    let mut fields = vec![(
        "kind".to_string(),
        Field::Text(match &cfg {
            ConfigFile::Topic(_) => "topic".into(),
            ConfigFile::Queue(_) => "queue".into(),
        }),
    )];
    if let Some(b) = log.retention_bytes {
        fields.push(uint("retention_bytes", b));
    }
    if let Some(ms) = log.retention_ms {
        fields.push(uint("retention_ms", ms));
    }
    fields.push(uint("segment_bytes_max", log.segment_bytes_max));
    fields.push(("fsync".into(), Field::Text(log.fsync.to_string())));
    if let ConfigFile::Queue(q) = &cfg {
        fields.push(uint("ack_timeout_ms", q.ack_timeout_ms));
        fields.push(uint("max_deliveries", q.max_deliveries as u64));
        if let Some(d) = &q.dead_letter {
            fields.push(("dead_letter".into(), Field::Text(d.clone())));
        }
        fields.push(uint("max_unacked", q.max_unacked as u64));
        fields.push(uint(
            "max_unacked_per_consumer",
            q.max_unacked_per_consumer as u64,
        ));
    }
    out.push(state_item(path, "config", size, fields, Some(true)));
    Ok(Some(cfg))
}

/// A snapshot and its journal, checked and decoded down to records.
struct Journaled {
    /// The snapshot file and its body.
    snapshot: Option<(PathBuf, Vec<u8>)>,
    generation: u64,
    /// The journal of that generation, when present.
    journal: Option<PathBuf>,
    /// Valid records, with their byte positions in the journal.
    records: Vec<(u64, u8, Vec<u8>)>,
}

/// Reads `<prefix>.snapshot` and `<prefix>.<gen>.journal` of `dir` as recovery would, without
/// changing anything. `None` when there is no such file, or when the snapshot is unreadable
/// (recovery refuses it: reported in `out`).
fn read_journaled(
    fs: &dyn FileSystem,
    dir: &Path,
    names: &[String],
    prefix: &str,
    magic: [u8; 8],
    out: &mut Vec<Item>,
) -> Result<Option<Journaled>> {
    use crate::journal::{
        decode_journal_header, decode_records, decode_snapshot, journal_path, snapshot_path,
        valid_record_after, JOURNAL_HEADER_LEN,
    };
    let sp = snapshot_path(dir, prefix);
    let journals: Vec<(u64, &String)> = names
        .iter()
        .filter_map(|n| journal_generation(n, prefix).map(|g| (g, n)))
        .collect();
    let has_snapshot = names.iter().any(|n| *n == format!("{prefix}.snapshot"));
    if !has_snapshot && journals.is_empty() {
        return Ok(None);
    }
    let mut st = Journaled {
        snapshot: None,
        generation: 0,
        journal: None,
        records: Vec::new(),
    };
    if has_snapshot {
        let bytes = crate::fs::read_all(fs, &sp).at(&sp)?;
        match decode_snapshot(&bytes, magic) {
            Ok((gen, body)) => {
                out.push(state_item(
                    &sp,
                    &format!("{prefix}-snapshot"),
                    bytes.len() as u64,
                    vec![
                        uint("generation", gen),
                        uint("body_bytes", body.len() as u64),
                    ],
                    Some(true),
                ));
                st.generation = gen;
                st.snapshot = Some((sp.clone(), body.to_vec()));
            }
            Err(reason) => {
                out.push(state_item(
                    &sp,
                    &format!("{prefix}-snapshot"),
                    bytes.len() as u64,
                    vec![],
                    Some(false),
                ));
                out.push(problem_item(
                    Severity::Error,
                    &sp,
                    Some(reason.position()),
                    format!("invalid snapshot: {reason}; snapshots are written atomically, so this is damage: the broker refuses to start until the file is restored"),
                ));
                for (g, n) in &journals {
                    let p = dir.join(n);
                    out.push(state_item(
                        &p,
                        &format!("{prefix}-journal"),
                        file_len(fs, &p)?,
                        vec![uint("generation", *g)],
                        None,
                    ));
                }
                return Ok(None);
            }
        }
    }
    let jp = journal_path(dir, prefix, st.generation);
    for (g, n) in &journals {
        let p = dir.join(n);
        if p == jp {
            continue;
        }
        out.push(state_item(
            &p,
            &format!("{prefix}-journal"),
            file_len(fs, &p)?,
            vec![uint("generation", *g)],
            None,
        ));
        let own = journals.iter().any(|(x, _)| *x == st.generation);
        if has_snapshot || own {
            out.push(problem_item(
                Severity::Warning,
                &p,
                None,
                format!("journal of generation {g}, not the one in use ({}): left over from an interrupted snapshot (removed at the next open)", st.generation),
            ));
        } else {
            out.push(problem_item(
                Severity::Error,
                &p,
                None,
                format!("journal of generation {g} but no {prefix}.snapshot names it: the snapshot is missing; the next open starts from an empty state and removes this journal"),
            ));
        }
    }
    if !fs.exists(&jp) {
        if has_snapshot {
            out.push(problem_item(
                Severity::Warning,
                &jp,
                None,
                "journal named by the snapshot is missing (created empty at the next open; records written after the snapshot, if any, are lost)".into(),
            ));
        }
        return Ok(Some(st));
    }
    let bytes = crate::fs::read_all(fs, &jp).at(&jp)?;
    let len = bytes.len() as u64;
    let kind = format!("{prefix}-journal");
    let header = decode_journal_header(&bytes, magic);
    let g = match header {
        Ok(g) => g,
        Err(reason) => {
            let at = reason.position();
            out.push(state_item(
                &jp,
                &kind,
                len,
                vec![uint("generation", st.generation)],
                Some(false),
            ));
            if crate::journal::header_never_durable(&bytes) {
                out.push(problem_item(
                    Severity::Warning,
                    &jp,
                    Some(at),
                    format!("{reason}: the header never became durable (the file holds no record); recreated at the next open"),
                ));
            } else {
                out.push(problem_item(
                    Severity::Error,
                    &jp,
                    Some(at),
                    format!("{reason}, with {} bytes after it: the broker refuses to open this state until the file is set aside", len.saturating_sub(JOURNAL_HEADER_LEN as u64)),
                ));
            }
            st.journal = Some(jp);
            return Ok(Some(st));
        }
    };
    if g != st.generation {
        out.push(state_item(
            &jp,
            &kind,
            len,
            vec![uint("generation", g)],
            Some(false),
        ));
        out.push(problem_item(
            Severity::Error,
            &jp,
            Some(12),
            format!("journal header says generation {g}, its name and the snapshot say {}: the broker refuses to start", st.generation),
        ));
        return Ok(None);
    }
    let body = &bytes[JOURNAL_HEADER_LEN..];
    let (records, valid) = decode_records(body);
    let mut at = JOURNAL_HEADER_LEN as u64;
    for (k, p) in records {
        let n = 9 + p.len() as u64;
        st.records.push((at, k, p));
        at += n;
    }
    let tail = &body[valid..];
    // Zeros after the records are space the journal preallocated, not a torn write.
    let zeroed = if tail.iter().all(|&b| b == 0) {
        tail.len() as u64
    } else {
        0
    };
    let torn = tail.len() as u64 - zeroed;
    let mut problem = None;
    if torn > 0 {
        let tail = &body[valid..];
        let reason = bad_record_reason(tail);
        problem = Some(if valid_record_after(tail) {
            problem_item(
                Severity::Error,
                &jp,
                Some(at),
                format!("{reason}, and valid records follow: damage in the middle of the journal, not a torn write; the next open cuts the journal here and loses the {torn} bytes after it (acknowledged messages may be delivered again, offsets may move back)"),
            )
        } else {
            problem_item(
                Severity::Warning,
                &jp,
                Some(at),
                format!("{reason}: torn tail of {torn} bytes (a write never confirmed; cut at the next open)"),
            )
        });
    }
    let ok = !matches!(&problem, Some(Item::Problem(p)) if p.severity == Severity::Error);
    out.push(state_item(
        &jp,
        &kind,
        len,
        vec![
            uint("generation", g),
            uint("records", st.records.len() as u64),
            uint("valid_bytes", at),
            uint("preallocated_bytes", zeroed),
            uint("torn_bytes", torn),
        ],
        Some(ok),
    ));
    out.extend(problem);
    st.journal = Some(jp);
    Ok(Some(st))
}

/// Subscriber offsets of a topic's state directory.
fn read_offsets(
    fs: &dyn FileSystem,
    dir: &Path,
    names: &[String],
    end: Option<Offset>,
    out: &mut Vec<Item>,
) -> Result<Option<Vec<SubscriberState>>> {
    use crate::offsets::{OFFSETS_MAGIC, OFFSETS_PREFIX, REC_COMMIT};
    use std::collections::BTreeMap;
    let Some(j) = read_journaled(fs, dir, names, OFFSETS_PREFIX, OFFSETS_MAGIC, out)? else {
        return Ok(None);
    };
    let body_at = crate::journal::SNAPSHOT_HEADER_LEN as u64;
    let mut map: BTreeMap<String, u64> = BTreeMap::new();
    // Where each subscriber's offset was last set.
    let mut set_at: BTreeMap<String, (PathBuf, u64)> = BTreeMap::new();
    if let Some((sp, body)) = &j.snapshot {
        match postcard::from_bytes::<Vec<(String, u64)>>(body) {
            Ok(v) => {
                for (n, o) in v {
                    set_at.insert(n.clone(), (sp.clone(), body_at));
                    map.insert(n, o);
                }
            }
            Err(e) => {
                out.push(problem_item(
                    Severity::Error,
                    sp,
                    Some(body_at),
                    format!(
                        "offsets snapshot body does not decode: {e}: the broker refuses to start"
                    ),
                ));
                return Ok(None);
            }
        }
    }
    if let Some(jp) = &j.journal {
        for (pos, k, p) in &j.records {
            if let Err(e) = crate::offsets::apply(&mut map, *k, p) {
                out.push(problem_item(
                    Severity::Error,
                    jp,
                    Some(*pos),
                    format!("offsets record under a valid checksum is malformed: {e}: the broker refuses to start"),
                ));
                return Ok(None);
            }
            if *k == REC_COMMIT {
                let n = u16::from_le_bytes([p[8], p[9]]) as usize;
                let name = String::from_utf8_lossy(&p[10..10 + n]).into_owned();
                set_at.insert(name, (jp.clone(), *pos));
            }
        }
    }
    let mut subs = Vec::new();
    for (name, committed) in map {
        if let Some(e) = end.filter(|e| committed > e.0) {
            let (file, pos) = set_at.get(&name).cloned().unwrap_or_default();
            out.push(problem_item(
                Severity::Warning,
                &file,
                Some(pos),
                format!("subscriber {name} committed offset {committed} is past the log end {e} (the next open clamps it to {e})"),
            ));
        }
        subs.push(SubscriberState {
            lag: end.map_or(0, |e| e.0.saturating_sub(committed)),
            name,
            committed: Offset(committed),
        });
    }
    Ok(Some(subs))
}

/// Ack state of a queue's or group's state directory. With no snapshot the state starts at
/// `start` (the log start), as recovery does.
fn read_acks(
    fs: &dyn FileSystem,
    dir: &Path,
    names: &[String],
    start: Offset,
    end: Option<Offset>,
    out: &mut Vec<Item>,
) -> Result<Option<QueueState>> {
    use crate::ackstate::{AckSnapshot, AckState, ACK_MAGIC, ACK_PREFIX};
    let Some(j) = read_journaled(fs, dir, names, ACK_PREFIX, ACK_MAGIC, out)? else {
        return Ok(None);
    };
    let body_at = crate::journal::SNAPSHOT_HEADER_LEN as u64;
    // Where the floor and the cursor first went past the log end.
    type Place = Option<(PathBuf, u64)>;
    let mut floor_past: Place = None;
    let mut cursor_past: Place = None;
    let past = |st: &AckState, file: &Path, pos: u64, f: &mut Place, c: &mut Place| {
        if let Some(e) = end {
            if st.acks.floor() > e.0 && f.is_none() {
                *f = Some((file.to_path_buf(), pos));
            }
            if st.cursor > e.0 && c.is_none() {
                *c = Some((file.to_path_buf(), pos));
            }
        }
    };
    let mut st = match &j.snapshot {
        Some((sp, body)) => {
            let decoded = postcard::from_bytes::<AckSnapshot>(body)
                .map_err(|e| e.to_string())
                .and_then(AckState::from_snapshot);
            match decoded {
                Ok(s) => {
                    past(&s, sp, body_at, &mut floor_past, &mut cursor_past);
                    s
                }
                Err(e) => {
                    out.push(problem_item(
                        Severity::Error,
                        sp,
                        Some(body_at),
                        format!("ack snapshot body: {e}: the broker refuses to start"),
                    ));
                    return Ok(None);
                }
            }
        }
        None => AckState::new(start.0),
    };
    if let Some(jp) = &j.journal {
        for (pos, k, p) in &j.records {
            if let Err(e) = st.apply(*k, p) {
                out.push(problem_item(
                    Severity::Error,
                    jp,
                    Some(*pos),
                    format!("ack record under a valid checksum is malformed: {e}: the broker refuses to start"),
                ));
                return Ok(None);
            }
            past(&st, jp, *pos, &mut floor_past, &mut cursor_past);
        }
    }
    let floor = st.acks.floor();
    let above = st.acks.above();
    let mut in_flight: Vec<InFlight> = st
        .counts
        .iter()
        .map(|(&offset, &deliveries)| InFlight {
            offset: Offset(offset),
            deliveries,
        })
        .collect();
    in_flight.sort_unstable_by_key(|f| f.offset);
    if let Some(e) = end {
        if let Some((file, pos)) = floor_past {
            out.push(problem_item(
                Severity::Warning,
                &file,
                Some(pos),
                format!(
                    "ack floor {floor} is past the log end {e} (the next open clamps it to {e})"
                ),
            ));
        }
        if let Some((file, pos)) = cursor_past {
            let dropped = in_flight.iter().filter(|f| f.offset >= e).count();
            out.push(problem_item(
                Severity::Warning,
                &file,
                Some(pos),
                format!(
                    "cursor {} is past the log end {e} (the next open clamps it to {e} and forgets {dropped} in-flight and {} acknowledged offsets at or above it)",
                    st.cursor,
                    st.acks.acked_above().iter().filter(|o| **o >= e.0).count()
                ),
            ));
        }
    }
    let e = end.map_or(st.cursor, |e| e.0);
    Ok(Some(QueueState {
        ack_floor: Offset(floor),
        cursor: Offset(st.cursor),
        acked_above_floor: above,
        in_flight,
        dead_lettered: st.dead_lettered,
        depth: e.saturating_sub(floor).saturating_sub(above),
        undelivered: e.saturating_sub(st.cursor),
        generation: j.generation,
        journal_records: j.records.len() as u64,
    }))
}

/// Files of a state directory that none of the readers handles: temporaries (warned) and
/// unknown files (listed). `rel` prefixes the names listed as unknown.
fn other_state_files(
    fs: &dyn FileSystem,
    dir: &Path,
    names: &[String],
    rel: &str,
    skip: &[&str],
    report: &mut LogDirReport,
    out: &mut Vec<Item>,
) -> Result<()> {
    for n in names {
        if is_known_state_file(n) || skip.contains(&n.as_str()) {
            continue;
        }
        let p = dir.join(n);
        let is_dir = fs.is_dir(&p);
        let size = if is_dir { 0 } else { file_len(fs, &p)? };
        if n.ends_with(".tmp") {
            out.push(state_item(&p, "temporary", size, vec![], None));
            out.push(problem_item(
                Severity::Warning,
                &p,
                None,
                "leftover temporary file of an interrupted atomic write (the file it was to replace is intact)".into(),
            ));
        } else {
            out.push(state_item(
                &p,
                if is_dir { "directory" } else { "unknown" },
                size,
                vec![],
                None,
            ));
            report.unknown_files.push(UnknownFile {
                name: format!("{rel}{n}"),
                size_bytes: size,
            });
        }
    }
    Ok(())
}

/// Reads the topic or queue state files of a log directory (see the section comment above) into
/// `report`: retention from `config`, subscribers with their lag, the queue's ack state, and the
/// topic's consumer groups. Pushes a [`Item::State`] per file and a [`Item::Problem`] per
/// failure (file, byte position, what) into `out`. Reads only.
pub fn read_log_state(
    fs: &dyn FileSystem,
    report: &mut LogDirReport,
    out: &mut Vec<Item>,
) -> Result<()> {
    use crate::store::{CONFIG_FILE, GROUPS_DIR, KIND_QUEUE, KIND_TOPIC, LOG_DIR};
    let sdir = report.state_dir.clone();
    let store_layout = sdir != report.dir;
    let names = fs.read_dir(&sdir).at(&sdir)?;
    let end = report.end_offset;
    let start = report.start_offset.unwrap_or_default();
    let want = match report.kind.as_str() {
        "topic" => Some(KIND_TOPIC),
        "queue" => Some(KIND_QUEUE),
        _ => None,
    };
    let cfg_path = sdir.join(CONFIG_FILE);
    if names.iter().any(|n| n == CONFIG_FILE) {
        if let Some(c) = read_config_file(fs, &cfg_path, want, out)? {
            let log = match &c {
                ConfigFile::Topic(l) => l,
                ConfigFile::Queue(q) => &q.log,
            };
            report.retention = Some(Retention {
                retention_bytes: log.retention_bytes,
                retention_ms: log.retention_ms,
            });
        }
    } else if store_layout {
        out.push(problem_item(
            Severity::Warning,
            &cfg_path,
            None,
            "missing: the broker takes the directory for an unfinished creation and removes it at the next open".into(),
        ));
    }
    report.subscribers = read_offsets(fs, &sdir, &names, end, out)?;
    report.queue = read_acks(fs, &sdir, &names, start, end, out)?;
    let gdir = sdir.join(GROUPS_DIR);
    if names.iter().any(|n| n == GROUPS_DIR) && fs.is_dir(&gdir) {
        for g in fs.read_dir(&gdir).at(&gdir)? {
            let d = gdir.join(&g);
            if !fs.is_dir(&d) {
                continue;
            }
            let gnames = fs.read_dir(&d).at(&d)?;
            let mut max_deliveries = None;
            if gnames.iter().any(|n| n == CONFIG_FILE) {
                if let Some(ConfigFile::Queue(q)) =
                    read_config_file(fs, &d.join(CONFIG_FILE), Some(KIND_QUEUE), out)?
                {
                    max_deliveries = Some(q.max_deliveries);
                }
            } else {
                out.push(problem_item(
                    Severity::Warning,
                    &d.join(CONFIG_FILE),
                    None,
                    "missing: the broker takes the group for an unfinished creation and removes it at the next open".into(),
                ));
            }
            // A group shares the topic's log: it starts at the log start like a queue.
            let state = read_acks(fs, &d, &gnames, start, end, out)?;
            other_state_files(
                fs,
                &d,
                &gnames,
                &format!("{GROUPS_DIR}/{g}/"),
                &[],
                report,
                out,
            )?;
            report.groups.push(GroupState {
                name: g,
                dir: d,
                max_deliveries,
                state,
            });
        }
    }
    if store_layout {
        other_state_files(fs, &sdir, &names, "", &[LOG_DIR], report, out)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Repair
// ---------------------------------------------------------------------------------------------

/// One change a repair makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RepairAction {
    /// Remove a state file so the next open rescans (it is stale or invalid).
    RemoveStateFile {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// Copy the bytes from `position` to a side file, then cut the segment there.
    Truncate {
        /// The segment.
        file: PathBuf,
        /// Its size when planned.
        file_len: u64,
        /// Where it is cut: the first invalid batch.
        position: u64,
        /// Bytes removed (kept in the side file).
        dropped_bytes: u64,
        /// The first offset that is no longer in the log.
        first_dropped_offset: Offset,
        /// Why the batch at `position` is invalid.
        reason: String,
        /// Where the removed bytes go.
        side_file: PathBuf,
    },
    /// Rename a whole segment (and its indexes) aside: it follows an invalid batch, or its header
    /// is invalid.
    SetAside {
        /// The segment.
        file: PathBuf,
        /// Its size when planned.
        file_len: u64,
        /// Its base offset.
        base_offset: Offset,
        /// One past its last valid offset (as far as a scan reads it).
        end_offset: Offset,
        /// Why.
        reason: String,
        /// `(from, to)` renames: the `.log` and whichever index files exist.
        renames: Vec<(PathBuf, PathBuf)>,
    },
    /// Create an empty segment at `base_offset`, when every segment was set aside, so offsets
    /// continue where they were.
    CreateEmptySegment {
        /// The new file.
        file: PathBuf,
        /// Its base offset.
        base_offset: Offset,
    },
    /// Rewrite the `.index` and `.timeindex` of a segment from its batches.
    RebuildIndexes {
        /// The segment.
        file: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What repair would do in one log directory.
#[derive(Clone, Debug, Serialize)]
pub struct DirRepairPlan {
    /// The log directory.
    pub dir: PathBuf,
    /// Changes, in the order they are applied.
    pub actions: Vec<RepairAction>,
    /// Offsets kept: `start..end`.
    pub kept: (Offset, Offset),
    /// Bytes kept in side files.
    pub dropped_bytes: u64,
    /// What the broker's next open does to the topic's or queue's state because of the cut
    /// (subscriber offsets, ack floors and cursors past the kept end are clamped to it). Repair
    /// never changes `config`, snapshots or journals.
    pub state_notes: Vec<String>,
}

/// What [`apply_repair`] will do, planned by [`plan_repair`] without changing anything.
#[derive(Clone, Debug, Serialize)]
pub struct RepairPlan {
    /// The path the repair was asked for.
    pub path: PathBuf,
    /// Unix time in seconds used in side-file names.
    pub stamp: u64,
    /// One entry per log directory that needs a change.
    pub dirs: Vec<DirRepairPlan>,
    /// Log directories that need nothing.
    pub clean_dirs: Vec<PathBuf>,
}

impl RepairPlan {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }
}

fn side_name(path: &Path, stamp: u64) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{DROPPED_INFIX}{stamp}"));
    path.with_file_name(name)
}

/// Plans a repair of every log directory under `path` (a data directory, a log directory, or a
/// file in one). Reads only. `stamp` is the Unix time in seconds used to name side files.
pub fn plan_repair(fs: &dyn FileSystem, path: &Path, stamp: u64) -> Result<RepairPlan> {
    let root = if fs.is_dir(path) {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let mut dirs = Vec::new();
    log_dirs(fs, &root, 0, &mut dirs)?;
    let mut plan = RepairPlan {
        path: path.to_path_buf(),
        stamp,
        dirs: vec![],
        clean_dirs: vec![],
    };
    for d in dirs {
        let p = plan_dir(fs, &d, stamp)?;
        if p.actions.is_empty() {
            plan.clean_dirs.push(d);
        } else {
            plan.dirs.push(p);
        }
    }
    Ok(plan)
}

fn plan_dir(fs: &dyn FileSystem, dir: &Path, stamp: u64) -> Result<DirRepairPlan> {
    let batch_max = u32::MAX;
    let mut bases: Vec<Offset> = fs
        .read_dir(dir)
        .at(dir)?
        .iter()
        .filter_map(|n| match parse_segment_name(n) {
            Some((b, LOG_EXT)) => Some(b),
            _ => None,
        })
        .collect();
    bases.sort();
    let mut actions = Vec::new();
    let mut state_actions = Vec::new();
    let mut rebuilds = Vec::new();
    let mut set_aside = Vec::new();
    let mut dropped_bytes = 0;
    let mut cut: Option<usize> = None; // index of the first segment not kept whole
    let mut expected: Option<Offset> = None;
    let mut scans: Vec<(Offset, Scanned)> = Vec::new();
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(dir, base, LOG_EXT);
        let f = fs.open(&path, OpenMode::Read).at(&path)?;
        let len = f.len().at(&path)?;
        let mut reason = None;
        if let Some(e) = expected.filter(|e| *e != base) {
            reason = Some(format!(
                "segment starts at offset {base} but the previous one ends at {e}"
            ));
        }
        let mut h = [0u8; FILE_HEADER_LEN];
        if reason.is_none() {
            if len < FILE_HEADER_LEN as u64 {
                reason = Some(format!("file of {len} bytes has no complete header"));
            } else {
                f.read_exact_at(&mut h, 0).at(&path)?;
                match decode_file_header(&h, SEGMENT_MAGIC, 0) {
                    Ok(b) if b == base => {}
                    Ok(b) => {
                        reason = Some(format!("header base offset {b} differs from the file name"))
                    }
                    Err(e) => reason = Some(format!("segment file header: {e}")),
                }
            }
        }
        if let Some(reason) = reason {
            cut = Some(i);
            set_aside.push((i, len, base, reason));
            break;
        }
        let end = scan_batches(
            &f,
            &path,
            FILE_HEADER_LEN as u64,
            len,
            base,
            batch_max,
            |_, _, _| {},
        )?;
        // The checks of the inspect walk, for the indexes and state files.
        let mut sink = |_: Item| {};
        let mut w = Walker {
            fs,
            opts: InspectOptions::default(),
            v: &mut sink,
            sum: Summary::default(),
            done: 0,
            total: 0,
        };
        let mut scanned = w.segment(&path, Some(base), Some(base))?;
        // Repair follows recovery exactly: the scan of `scan_batches` decides where to cut.
        scanned.valid_end = end.position;
        scanned.next_offset = end.next_offset;
        expected = Some(end.next_offset);
        if let Some((pos, stop)) = end.damage() {
            let reason = stop.to_string();
            let side = side_name(&path, stamp);
            dropped_bytes += len - pos;
            actions.push(RepairAction::Truncate {
                file: path.clone(),
                file_len: len,
                position: pos,
                dropped_bytes: len - pos,
                first_dropped_offset: end.next_offset,
                reason,
                side_file: side,
            });
            rebuilds.push((path.clone(), "the segment is cut".to_string()));
            scans.push((base, scanned));
            cut = Some(i + 1);
            break;
        }
        // Indexes: rebuild when missing or when any entry disagrees with the log.
        let mut bad = Vec::new();
        let mut w = Walker {
            fs,
            opts: InspectOptions::default(),
            v: &mut |i: Item| {
                if let Item::Problem(p) = i {
                    bad.push(p.what.replace(INDEX_HINT, ""))
                }
            },
            sum: Summary::default(),
            done: 0,
            total: 0,
        };
        for (ext, kind) in [
            (INDEX_EXT, IndexKind::Offset),
            (TIME_INDEX_EXT, IndexKind::Time),
        ] {
            let ip = segment_path(dir, base, ext);
            if fs.exists(&ip) {
                w.index(&ip, kind, base, Some(&scanned), true)?;
            } else if scanned.batches > 0 {
                w.v.item(Item::Problem(Problem {
                    severity: Severity::Warning,
                    file: ip,
                    position: None,
                    what: format!("{ext} file is missing"),
                }));
            }
        }
        if let Some(first) = bad.first() {
            rebuilds.push((path.clone(), first.clone()));
        }
        scans.push((base, scanned));
    }
    if let Some(c) = cut {
        for (i, &base) in bases.iter().enumerate().skip(c) {
            if set_aside.iter().any(|s| s.0 == i) {
                continue;
            }
            let path = segment_path(dir, base, LOG_EXT);
            let len = file_len(fs, &path)?;
            set_aside.push((i, len, base, "follows an invalid batch".into()));
        }
    }
    let changed = !actions.is_empty() || !set_aside.is_empty();
    // State files: removed when the log changes, or when they are invalid or disagree.
    for name in [CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE] {
        let p = dir.join(name);
        if !fs.exists(&p) {
            continue;
        }
        let reason = if changed {
            Some("the log changes: the next open must rescan".to_string())
        } else {
            let bytes = crate::fs::read_all(fs, &p).at(&p)?;
            if name == RECOVERY_POINT_FILE {
                match RecoveryPoint::decode(&bytes) {
                    Err(e) => Some(format!("invalid: {e}")),
                    Ok(rp) => check_recovery_point(&rp, &scans),
                }
            } else {
                match CleanShutdown::decode(&bytes) {
                    Err(e) => Some(format!("invalid: {e}")),
                    Ok(cs) => check_clean_shutdown(&cs, &scans),
                }
            }
        };
        if let Some(reason) = reason {
            state_actions.push(RepairAction::RemoveStateFile { file: p, reason });
        }
    }
    let mut all = state_actions;
    all.append(&mut actions);
    // Later segments first, so a crash midway never leaves a gap recovery would close by
    // deleting what follows it.
    set_aside.sort_by_key(|s| std::cmp::Reverse(s.2));
    for (_, len, base, reason) in &set_aside {
        let mut renames = Vec::new();
        for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
            let p = segment_path(dir, *base, ext);
            if fs.exists(&p) {
                renames.push((p.clone(), side_name(&p, stamp)));
            }
        }
        let end = if *len >= FILE_HEADER_LEN as u64 {
            let path = segment_path(dir, *base, LOG_EXT);
            let f = fs.open(&path, OpenMode::Read).at(&path)?;
            scan_batches(
                &f,
                &path,
                FILE_HEADER_LEN as u64,
                *len,
                *base,
                batch_max,
                |_, _, _| {},
            )?
            .next_offset
        } else {
            *base
        };
        dropped_bytes += len;
        all.push(RepairAction::SetAside {
            file: segment_path(dir, *base, LOG_EXT),
            file_len: *len,
            base_offset: *base,
            end_offset: end,
            reason: reason.clone(),
            renames,
        });
    }
    let kept_count = bases.len() - set_aside.len();
    if kept_count == 0 {
        if let Some(&b) = bases.first() {
            all.push(RepairAction::CreateEmptySegment {
                file: segment_path(dir, b, LOG_EXT),
                base_offset: b,
            });
        }
    }
    for (file, reason) in rebuilds {
        all.push(RepairAction::RebuildIndexes { file, reason });
    }
    let start = bases.first().copied().unwrap_or_default();
    let end = scans.last().map(|s| s.1.next_offset).unwrap_or(start);
    let state_notes = if changed {
        clamp_notes(fs, dir, start, end)?
    } else {
        Vec::new()
    };
    Ok(DirRepairPlan {
        dir: dir.to_path_buf(),
        actions: all,
        kept: (start, end),
        dropped_bytes,
        state_notes,
    })
}

/// What the next open clamps in the state of the log directory `dir` once its log ends at
/// `end`.
fn clamp_notes(fs: &dyn FileSystem, dir: &Path, start: Offset, end: Offset) -> Result<Vec<String>> {
    let (kind, name, state_dir) = layout(dir);
    let mut report = LogDirReport {
        dir: dir.to_path_buf(),
        kind: kind.into(),
        name,
        segments: vec![],
        start_offset: Some(start),
        end_offset: Some(end),
        size_bytes: 0,
        retention: None,
        subscribers: None,
        queue: None,
        groups: vec![],
        state_dir,
        unknown_files: vec![],
    };
    read_log_state(fs, &mut report, &mut Vec::new())?;
    let mut notes = Vec::new();
    for s in report.subscribers.iter().flatten() {
        if s.committed > end {
            notes.push(format!(
                "subscriber {} at offset {} is past the kept end: the next open clamps it to {end}",
                s.name, s.committed
            ));
        }
    }
    let queues = report
        .queue
        .iter()
        .map(|q| (format!("{} {}", report.kind, report.name), q))
        .chain(
            report
                .groups
                .iter()
                .filter_map(|g| g.state.as_ref().map(|q| (format!("group {}", g.name), q))),
        );
    for (who, q) in queues {
        if q.cursor > end {
            let lost = q.in_flight.iter().filter(|f| f.offset >= end).count();
            notes.push(format!(
                "{who}: ack floor {} and cursor {} go down to at most {end} at the next open; {lost} in-flight message(s) at or above {end} are forgotten, every ack below {end} is kept",
                q.ack_floor, q.cursor
            ));
        }
    }
    Ok(notes)
}

/// What [`apply_repair`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairOutcome {
    /// Side files written or renamed to, holding every removed byte.
    pub side_files: Vec<PathBuf>,
    /// Bytes moved to side files.
    pub dropped_bytes: u64,
    /// Segments whose indexes were rewritten.
    pub rebuilt_indexes: usize,
    /// State files removed.
    pub removed_state_files: usize,
}

/// Carries out a plan made by [`plan_repair`]. Takes the data directory's lock for the duration
/// (fails when a broker holds it), checks that no file changed since the plan was made, and per
/// directory: removes stale state files, copies each cut tail to its side file (fsynced) before
/// cutting, renames later segments aside, rewrites indexes, and fsyncs files and the directory.
pub fn apply_repair(fs: &dyn FileSystem, plan: &RepairPlan) -> Result<RepairOutcome> {
    let _lock = lock_for_repair(&plan.path)?;
    // Nothing changed since the plan: every file has the size planned.
    for d in &plan.dirs {
        for a in &d.actions {
            if let RepairAction::Truncate {
                file, file_len: l, ..
            }
            | RepairAction::SetAside {
                file, file_len: l, ..
            } = a
            {
                let now = file_len(fs, file)?;
                if now != *l {
                    return Err(Error::InvalidArgument(format!(
                        "{} is {now} bytes, not {l} as planned: the directory changed; plan again",
                        file.display()
                    )));
                }
            }
        }
    }
    let mut out = RepairOutcome::default();
    for d in &plan.dirs {
        apply_dir(fs, d, &mut out)?;
    }
    Ok(out)
}

fn apply_dir(fs: &dyn FileSystem, d: &DirRepairPlan, out: &mut RepairOutcome) -> Result<()> {
    let dir = &d.dir;
    // 1. Copy every tail to be cut into its side file, durably, before anything changes.
    for a in &d.actions {
        if let RepairAction::Truncate {
            file,
            file_len: len,
            position,
            side_file,
            ..
        } = a
        {
            let src = fs.open(file, OpenMode::Read).at(file)?;
            let dst = fs.open(side_file, OpenMode::CreateNew).at(side_file)?;
            let mut at = *position;
            let mut buf = vec![0u8; 1 << 20];
            while at < *len {
                let n = ((*len - at) as usize).min(buf.len());
                src.read_exact_at(&mut buf[..n], at).at(file)?;
                dst.write_all_at(&buf[..n], at - position).at(side_file)?;
                at += n as u64;
            }
            dst.sync_data().at(side_file)?;
            out.side_files.push(side_file.clone());
            out.dropped_bytes += len - position;
        }
    }
    fs.sync_dir(dir).at(dir)?;
    // 2. Set later segments aside, last first. A crash after this leaves a shorter log whose
    //    stale state files recovery ignores, so the tail it would cut is saved already.
    for a in &d.actions {
        if let RepairAction::SetAside {
            renames, file_len, ..
        } = a
        {
            for (from, to) in renames.iter().rev() {
                if fs.exists(to) {
                    return Err(Error::InvalidArgument(format!(
                        "{} exists already; not overwriting it",
                        to.display()
                    )));
                }
                // Index files first, the log last: a crash leaves at worst an orphan index.
                fs.rename(from, to).at(from)?;
            }
            if let Some((_, to)) = renames.first() {
                out.side_files.push(to.clone());
            }
            out.dropped_bytes += file_len;
            fs.sync_dir(dir).at(dir)?;
        }
    }
    // 3. State files, once everything to be cut is saved: from here on the next open rescans,
    //    and whatever it cuts is in a side file already.
    for a in &d.actions {
        if let RepairAction::RemoveStateFile { file, .. } = a {
            fs.remove_file(file).at(file)?;
            out.removed_state_files += 1;
        }
    }
    fs.sync_dir(dir).at(dir)?;
    // 4. Cut.
    for a in &d.actions {
        if let RepairAction::Truncate { file, position, .. } = a {
            let f = fs.open(file, OpenMode::ReadWrite).at(file)?;
            f.set_len(*position).at(file)?;
            f.sync_data().at(file)?;
        }
    }
    // 5. An empty segment where everything was set aside.
    for a in &d.actions {
        if let RepairAction::CreateEmptySegment { base_offset, .. } = a {
            Segment::create(fs, dir, *base_offset, crate::types::now_ms())?;
        }
    }
    // 6. Indexes from the log, at the density of the topic's or queue's config when readable.
    let cfg = log_config_of(fs, dir).unwrap_or_default();
    for a in &d.actions {
        if let RepairAction::RebuildIndexes { file, .. } = a {
            rebuild_indexes(fs, dir, file, &cfg)?;
            out.rebuilt_indexes += 1;
        }
    }
    fs.sync_dir(dir).at(dir)?;
    Ok(())
}

/// The log settings saved in the `config` file of the topic or queue owning log directory `dir`.
fn log_config_of(fs: &dyn FileSystem, dir: &Path) -> Option<LogConfig> {
    let (_, _, state_dir) = layout(dir);
    let path = state_dir.join(crate::store::CONFIG_FILE);
    if !fs.exists(&path) {
        return None;
    }
    match read_config_file(fs, &path, None, &mut Vec::new()).ok()?? {
        ConfigFile::Topic(l) => Some(l),
        ConfigFile::Queue(q) => Some(q.log),
    }
}

fn rebuild_indexes(fs: &dyn FileSystem, dir: &Path, file: &Path, cfg: &LogConfig) -> Result<()> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((base, LOG_EXT)) = parse_segment_name(&name) else {
        return Err(Error::InvalidArgument(format!(
            "{} is not a segment file",
            file.display()
        )));
    };
    let (seg_file, len) =
        Segment::open_file(fs, dir, base)?.map_err(|reason| Error::corruption(file, 0, reason))?;
    let mut seg = Segment::from_parts(seg_file.clone(), len, base, crate::types::now_ms());
    let interval = cfg.index_interval_bytes;
    let end = scan_batches(
        &seg_file.file,
        &seg_file.path,
        FILE_HEADER_LEN as u64,
        len,
        base,
        u32::MAX,
        |pos, h, _| seg.index_batch(pos, h, interval),
    )?;
    if let Some((pos, stop)) = end.damage() {
        return Err(Error::corruption(file, pos, stop.to_string()));
    }
    seg.next_offset = end.next_offset;
    seg.size = end.position;
    seg.write_indexes(fs, dir)
}
