//! An append-only, checksummed state journal with group commit, periodic snapshots and
//! generations: the durable home of subscriber offsets and of queue ack state.
//!
//! A state directory holds, for one `prefix`:
//! ```text
//! <prefix>.snapshot                 the last snapshot; names the journal generation that follows it
//! <prefix>.<gen as 16 hex>.journal  the records written since that snapshot
//! ```
//! Byte layouts (all integers little-endian; spec in `docs/format-state.md`):
//! ```text
//! journal header (24 B): { magic [u8;8] | version u16 | reserved u16 | generation u64 | crc u32 }
//!                        crc covers the 20 bytes before it
//! journal record:        { len u32 | crc u32 | kind u8 | payload [u8; len-1] }
//!                        len counts kind + payload; crc covers len, kind and payload
//! snapshot:              { magic [u8;8] | version u16 | reserved u16 | generation u64 |
//!                          body_len u32 | crc u32 | body [u8; body_len] }
//!                        crc covers the 24 header bytes before it and the body
//! ```
//! Writers append records under their own state lock (a pwrite into the page cache) and then
//! call [`Journal::sync_to`] outside it: the first caller becomes the group-commit leader and
//! syncs once for every record appended meanwhile. Positions handed out are *logical*: they keep
//! growing across generations, so a waiter whose record went into a journal that a snapshot has
//! since replaced is covered by that snapshot.
//!
//! A snapshot switches generation: the next journal file is created with its header and synced,
//! the directory synced, then the snapshot naming that generation is written atomically (temporary
//! file, fsync, rename, directory fsync), and only then is the old journal removed. A crash at
//! any point leaves either the old snapshot with its complete journal, or the new snapshot with
//! an empty (or valid) journal.
//!
//! Recovery reads the snapshot, replays the journal of its generation up to the first short or
//! bad record, cuts the file there and syncs the cut (a torn tail can only hold records whose
//! writers were never told they were durable).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::format::crc;
use crate::fs::{self, FileRef, FileSystem, FsRef, OpenMode};

/// Version of the journal and snapshot layouts written. Version 2 added the ack-state run
/// records (kinds 5-7); the framing, the offsets records and the snapshot bodies are unchanged.
pub const STATE_VERSION: u16 = 2;
/// Oldest version still read.
pub const STATE_VERSION_MIN: u16 = 1;

/// True for a layout version this build reads.
pub fn version_supported(v: u16) -> bool {
    (STATE_VERSION_MIN..=STATE_VERSION).contains(&v)
}
/// Length of the journal file header.
pub const JOURNAL_HEADER_LEN: usize = 24;
/// Length of the snapshot header (before the body).
pub const SNAPSHOT_HEADER_LEN: usize = 28;
/// Largest record accepted (kind + payload).
pub const RECORD_MAX: u32 = 64 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Path of the snapshot of `prefix` in `dir`.
pub fn snapshot_path(dir: &Path, prefix: &str) -> PathBuf {
    dir.join(format!("{prefix}.snapshot"))
}

/// Path of journal generation `gen` of `prefix` in `dir`.
pub fn journal_path(dir: &Path, prefix: &str, gen: u64) -> PathBuf {
    dir.join(format!("{prefix}.{gen:016x}.journal"))
}

/// Encodes a journal file header.
// Format: { magic [u8;8] | version u16 | reserved u16 | generation u64 | crc u32 }
pub fn encode_journal_header(magic: [u8; 8], gen: u64) -> [u8; JOURNAL_HEADER_LEN] {
    let mut h = [0u8; JOURNAL_HEADER_LEN];
    h[..8].copy_from_slice(&magic);
    h[8..10].copy_from_slice(&STATE_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&gen.to_le_bytes());
    let c = crc(&h[..20]);
    h[20..24].copy_from_slice(&c.to_le_bytes());
    h
}

/// Why a journal header or a snapshot (or config) file does not decode. The `Display` text is
/// the reason users see.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateFileError {
    /// The journal is shorter than its header.
    #[error("journal header is {len} bytes")]
    JournalShort {
        /// Bytes there are.
        len: usize,
    },
    /// The journal header's checksum does not match.
    #[error("journal header checksum mismatch")]
    JournalHeaderCrc {
        /// True when the magic is the expected one (the damage is past it).
        magic_ok: bool,
    },
    /// Not the journal magic expected.
    #[error("bad journal magic")]
    JournalMagic,
    /// A journal layout version this build does not read.
    #[error("unsupported journal version {0}")]
    JournalVersion(u16),
    /// The snapshot is shorter than its header.
    #[error("snapshot is {len} bytes")]
    SnapshotShort {
        /// Bytes there are.
        len: usize,
    },
    /// Not the snapshot magic expected.
    #[error("bad snapshot magic")]
    SnapshotMagic,
    /// A snapshot layout version this build does not read.
    #[error("unsupported snapshot version {0}")]
    SnapshotVersion(u16),
    /// The body's length differs from the header's.
    #[error("snapshot body is {body} bytes, header says {stated}")]
    SnapshotLength {
        /// Bytes of body there are.
        body: usize,
        /// The header's length field.
        stated: usize,
    },
    /// The snapshot checksum does not match.
    #[error("snapshot checksum mismatch")]
    SnapshotCrc,
}

impl StateFileError {
    /// Byte position of the field at fault in the file.
    pub fn position(&self) -> u64 {
        match self {
            StateFileError::JournalShort { .. }
            | StateFileError::JournalMagic
            | StateFileError::JournalHeaderCrc { magic_ok: false }
            | StateFileError::SnapshotShort { .. }
            | StateFileError::SnapshotMagic => 0,
            StateFileError::JournalVersion(_) | StateFileError::SnapshotVersion(_) => 8,
            StateFileError::JournalHeaderCrc { magic_ok: true }
            | StateFileError::SnapshotLength { .. } => 20,
            StateFileError::SnapshotCrc => 24,
        }
    }
}

/// The text of a state file error, for callers that carry reasons as strings.
impl From<StateFileError> for String {
    fn from(e: StateFileError) -> String {
        e.to_string()
    }
}

/// Decodes a journal header; returns its generation.
pub fn decode_journal_header(b: &[u8], magic: [u8; 8]) -> std::result::Result<u64, StateFileError> {
    if b.len() < JOURNAL_HEADER_LEN {
        return Err(StateFileError::JournalShort { len: b.len() });
    }
    if crc(&b[..20]) != u32_at(b, 20) {
        return Err(StateFileError::JournalHeaderCrc {
            magic_ok: b[..8] == magic,
        });
    }
    if b[..8] != magic {
        return Err(StateFileError::JournalMagic);
    }
    let v = u16::from_le_bytes([b[8], b[9]]);
    if !version_supported(v) {
        return Err(StateFileError::JournalVersion(v));
    }
    Ok(u64_at(b, 12))
}

/// True when a journal header that does not decode can only be a creation that never became
/// durable: its checksum fails (or the file is shorter than a header) and nothing but zeros
/// follows it. A journal gets records only after its header was synced, so a header whose
/// checksum holds (a foreign magic, a version this build does not read) or one followed by
/// record bytes is damage, not a torn creation: recreating the journal would drop the acks or
/// commits those records hold.
pub fn header_never_durable(bytes: &[u8]) -> bool {
    let intact = bytes.len() >= JOURNAL_HEADER_LEN && crc(&bytes[..20]) == u32_at(bytes, 20);
    !intact && bytes.iter().skip(JOURNAL_HEADER_LEN).all(|&b| b == 0)
}

/// Encodes one journal record.
// Format: { len u32 | crc u32 | kind u8 | payload }, len = 1 + payload.len(),
// crc = CRC-32(len bytes ++ kind ++ payload)
pub fn encode_record(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let len = (1 + payload.len()) as u32;
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&[kind]);
    h.update(payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

/// Decodes the records of a journal body (the bytes after the header). Returns the records and
/// the length of the valid prefix; decoding stops at the first short or bad record.
pub fn decode_records(b: &[u8]) -> (Vec<(u8, Vec<u8>)>, usize) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 9 <= b.len() {
        let len = u32_at(b, at);
        if len == 0 || len > RECORD_MAX || at + 8 + len as usize > b.len() {
            break;
        }
        let body = &b[at + 8..at + 8 + len as usize];
        let mut h = crc32fast::Hasher::new();
        h.update(&len.to_le_bytes());
        h.update(body);
        if h.finalize() != u32_at(b, at + 4) {
            break;
        }
        out.push((body[0], body[1..].to_vec()));
        at += 8 + len as usize;
    }
    (out, at)
}

/// Encodes a snapshot file.
// Format: { magic [u8;8] | version u16 | reserved u16 | generation u64 | body_len u32 | crc u32 | body }
pub fn encode_snapshot(magic: [u8; 8], gen: u64, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(SNAPSHOT_HEADER_LEN + body.len());
    b.extend_from_slice(&magic);
    b.extend_from_slice(&STATE_VERSION.to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&gen.to_le_bytes());
    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&b[..24]);
    h.update(body);
    b.extend_from_slice(&h.finalize().to_le_bytes());
    b.extend_from_slice(body);
    b
}

/// Decodes and checks a snapshot file; returns its generation and body.
pub fn decode_snapshot(
    b: &[u8],
    magic: [u8; 8],
) -> std::result::Result<(u64, &[u8]), StateFileError> {
    if b.len() < SNAPSHOT_HEADER_LEN {
        return Err(StateFileError::SnapshotShort { len: b.len() });
    }
    if b[..8] != magic {
        return Err(StateFileError::SnapshotMagic);
    }
    let v = u16::from_le_bytes([b[8], b[9]]);
    if !version_supported(v) {
        return Err(StateFileError::SnapshotVersion(v));
    }
    let len = u32_at(b, 20) as usize;
    if b.len() != SNAPSHOT_HEADER_LEN + len {
        return Err(StateFileError::SnapshotLength {
            body: b.len() - SNAPSHOT_HEADER_LEN,
            stated: len,
        });
    }
    let body = &b[SNAPSHOT_HEADER_LEN..];
    let mut h = crc32fast::Hasher::new();
    h.update(&b[..24]);
    h.update(body);
    if h.finalize() != u32_at(b, 24) {
        return Err(StateFileError::SnapshotCrc);
    }
    Ok((u64_at(b, 12), body))
}

/// What a read-only load of a state directory found.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The snapshot body, when there is a snapshot.
    pub snapshot: Option<Vec<u8>>,
    /// Generation of the journal that follows the snapshot.
    pub generation: u64,
    /// Valid records of that journal, in order.
    pub records: Vec<(u8, Vec<u8>)>,
    /// Journal length in bytes (0 when the file is absent).
    pub journal_len: u64,
    /// Length of the valid prefix of the journal (header included).
    pub valid_len: u64,
    /// Layout version of the journal's header (0 when there is no valid journal).
    pub version: u16,
    /// Zero bytes after the valid prefix, up to the end of the file: space preallocated for
    /// records, not a torn write. 0 when anything after the prefix is not zero.
    pub zeroed_len: u64,
    /// True when a valid record was found after the first bad one: the damage is in the middle
    /// of written data, not a torn tail, and the records after it are lost by the cut.
    pub damaged_mid: bool,
}

impl Loaded {
    /// Bytes after the valid prefix that are neither records nor preallocated zeros: a torn or
    /// damaged tail, cut at the next open.
    pub fn torn_len(&self) -> u64 {
        self.journal_len
            .saturating_sub(self.valid_len)
            .saturating_sub(self.zeroed_len)
    }
}

/// How far past the first bad record to look for valid ones.
pub const DAMAGE_SCAN_BYTES: usize = 64 << 10;

/// True when a valid record starts somewhere in the first [`DAMAGE_SCAN_BYTES`] of `tail`
/// (after its first byte).
pub fn valid_record_after(tail: &[u8]) -> bool {
    (1..tail.len().min(DAMAGE_SCAN_BYTES)).any(|at| !decode_records(&tail[at..]).0.is_empty())
}

/// Why the bytes at a record boundary of a journal do not start with a valid record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordFault {
    /// Fewer bytes left than a record's framing.
    #[error("{len} trailing bytes{}, too short for a record", if *zeros { " of zeros" } else { "" })]
    Short {
        /// Bytes left.
        len: usize,
        /// True when they are all zeros.
        zeros: bool,
    },
    /// The length field is 0 or above [`RECORD_MAX`].
    #[error("invalid record length {0}")]
    BadLength(u32),
    /// The record is longer than what is left of the file.
    #[error("record of {need} bytes runs past the end of the file: {left} bytes left")]
    PastEnd {
        /// Bytes the record takes, framing included.
        need: u64,
        /// Bytes left.
        left: usize,
    },
    /// The record checksum does not match.
    #[error("record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// The checksum stored.
        stored: u32,
        /// The checksum of the record's bytes.
        computed: u32,
    },
}

/// Why `b` (starting at a record boundary) does not start with a valid record; `None` when it
/// does.
pub fn record_fault(b: &[u8]) -> Option<RecordFault> {
    if b.len() < 9 {
        let zeros = b.iter().all(|x| *x == 0);
        return Some(RecordFault::Short {
            len: b.len(),
            zeros,
        });
    }
    let len = u32_at(b, 0);
    if len == 0 || len > RECORD_MAX {
        return Some(RecordFault::BadLength(len));
    }
    if 8 + len as u64 > b.len() as u64 {
        return Some(RecordFault::PastEnd {
            need: 8 + len as u64,
            left: b.len(),
        });
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&b[0..4]);
    h.update(&b[8..8 + len as usize]);
    let (stored, computed) = (u32_at(b, 4), h.finalize());
    (stored != computed).then_some(RecordFault::Checksum { stored, computed })
}

/// A snapshot file as read.
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    /// Its path.
    pub path: PathBuf,
    /// Its length in bytes.
    pub len: u64,
    /// Its generation and body, or why it does not decode.
    pub decoded: std::result::Result<(u64, Vec<u8>), StateFileError>,
}

/// The journal named by the snapshot (or of generation 0), as read.
#[derive(Clone, Debug)]
pub struct JournalFile {
    /// Its path.
    pub path: PathBuf,
    /// Its length in bytes.
    pub len: u64,
    /// The generation its header names, or why the header does not decode.
    pub header: std::result::Result<u64, StateFileError>,
    /// True when the header does not decode and can only be a creation that never became
    /// durable ([`header_never_durable`]).
    pub never_durable: bool,
    /// Layout version of its header (0 when the header is not the expected one).
    pub version: u16,
    /// Valid records, each with its byte position in the file (none unless the header decodes
    /// with the expected generation).
    pub records: Vec<(u64, u8, Vec<u8>)>,
    /// Length of the valid prefix (header included); 0 when the header is not valid.
    pub valid_len: u64,
    /// Zero bytes after the valid prefix, up to the end of the file: preallocated space. 0
    /// when anything after the prefix is not zero.
    pub zeroed_len: u64,
    /// Why the first record after the valid prefix is bad, when that is not all zeros.
    pub fault: Option<RecordFault>,
    /// True when a valid record follows the first bad one (damage in the middle, not a torn
    /// tail).
    pub damaged_mid: bool,
}

/// What reading a state directory's snapshot and journal found, file by file, before any
/// decision: the one reading shared by recovery ([`load`]) and `sluice inspect`.
#[derive(Clone, Debug, Default)]
pub struct Examined {
    /// The snapshot, when there is one. When it does not decode, nothing else is read.
    pub snapshot: Option<SnapshotFile>,
    /// The generation the snapshot names (0 without a snapshot).
    pub generation: u64,
    /// The journal of that generation, when present.
    pub journal: Option<JournalFile>,
}

/// Reads the snapshot and the journal of `prefix` in `dir` and checks them, changing nothing.
/// Only I/O fails; what is wrong with the files is in the answer.
pub fn examine(fs: &dyn FileSystem, dir: &Path, prefix: &str, magic: [u8; 8]) -> Result<Examined> {
    let sp = snapshot_path(dir, prefix);
    let mut out = Examined::default();
    if fs.exists(&sp) {
        let bytes = fs::read_all(fs, &sp).at(&sp)?;
        let decoded = decode_snapshot(&bytes, magic).map(|(g, body)| (g, body.to_vec()));
        let ok = decoded.as_ref().map(|(g, _)| *g).ok();
        out.snapshot = Some(SnapshotFile {
            path: sp,
            len: bytes.len() as u64,
            decoded,
        });
        match ok {
            Some(g) => out.generation = g,
            None => return Ok(out),
        }
    }
    let jp = journal_path(dir, prefix, out.generation);
    if fs.exists(&jp) {
        let bytes = fs::read_all(fs, &jp).at(&jp)?;
        out.journal = Some(examine_journal(jp, &bytes, magic, out.generation));
    }
    Ok(out)
}

/// Checks the bytes of the journal `path` of generation `generation`.
fn examine_journal(path: PathBuf, bytes: &[u8], magic: [u8; 8], generation: u64) -> JournalFile {
    let header = decode_journal_header(bytes, magic);
    let mut j = JournalFile {
        path,
        len: bytes.len() as u64,
        never_durable: header.is_err() && header_never_durable(bytes),
        header,
        version: 0,
        records: Vec::new(),
        valid_len: 0,
        zeroed_len: 0,
        fault: None,
        damaged_mid: false,
    };
    if j.header != Ok(generation) {
        return j;
    }
    j.version = u16::from_le_bytes([bytes[8], bytes[9]]);
    let (records, valid) = decode_records(&bytes[JOURNAL_HEADER_LEN..]);
    let mut at = JOURNAL_HEADER_LEN as u64;
    for (k, p) in records {
        let n = 9 + p.len() as u64;
        j.records.push((at, k, p));
        at += n;
    }
    j.valid_len = (JOURNAL_HEADER_LEN + valid) as u64;
    let tail = &bytes[JOURNAL_HEADER_LEN + valid..];
    if tail.iter().all(|&b| b == 0) {
        j.zeroed_len = tail.len() as u64;
    } else {
        j.fault = record_fault(tail);
        j.damaged_mid = valid_record_after(tail);
    }
    j
}

/// Reads a state directory without changing anything, as recovery takes it: a snapshot that
/// does not decode, a journal of another generation, or a journal header that does not decode
/// but did become durable is a `Corruption` error.
pub fn load(fs: &dyn FileSystem, dir: &Path, prefix: &str, magic: [u8; 8]) -> Result<Loaded> {
    let ex = examine(fs, dir, prefix, magic)?;
    let mut out = Loaded {
        generation: ex.generation,
        ..Loaded::default()
    };
    if let Some(s) = ex.snapshot {
        let (_, body) = s
            .decoded
            .map_err(|reason| Error::corruption(&s.path, 0, reason))?;
        out.snapshot = Some(body);
    }
    let Some(j) = ex.journal else {
        return Ok(out);
    };
    out.journal_len = j.len;
    match j.header {
        Ok(g) if g == out.generation => {
            out.version = j.version;
            out.records = j.records.into_iter().map(|(_, k, p)| (k, p)).collect();
            out.valid_len = j.valid_len;
            out.zeroed_len = j.zeroed_len;
            out.damaged_mid = j.damaged_mid;
        }
        Ok(g) => {
            return Err(Error::corruption(
                &j.path,
                0,
                format!("journal generation {g}, expected {}", out.generation),
            ))
        }
        // A header that never became durable: the journal was created and the crash came
        // before its first sync, so it held nothing confirmed.
        Err(_) if j.never_durable => out.valid_len = 0,
        Err(reason) => {
            return Err(Error::corruption(
                &j.path,
                0,
                format!(
                    "{reason}, with {} bytes after the header: refusing to recreate the \
                     journal, which would drop its records (see `sluice inspect`)",
                    j.len.saturating_sub(JOURNAL_HEADER_LEN as u64)
                ),
            ))
        }
    }
    Ok(out)
}

struct Inner {
    file: FileRef,
    path: PathBuf,
    generation: u64,
    /// Write position in the current file.
    pos: u64,
    /// Length of the current file: the bytes from `pos` to it are zeros (preallocated).
    len: u64,
    /// Layout version of the current file's header.
    version: u16,
    /// Logical position of byte 0 of the current file.
    base: u64,
    /// Bytes appended since the last snapshot.
    since_snapshot: u64,
}

/// An open journal. See the module documentation.
pub struct Journal {
    fs: FsRef,
    dir: PathBuf,
    prefix: &'static str,
    magic: [u8; 8],
    inner: Mutex<Inner>,
    sync_lock: Mutex<()>,
    durable: AtomicU64,
    failed: AtomicBool,
    stopped: AtomicBool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn create_journal_file(
    fs: &dyn FileSystem,
    path: &Path,
    magic: [u8; 8],
    gen: u64,
) -> Result<FileRef> {
    let f = fs.open(path, OpenMode::CreateTruncate).at(path)?;
    f.write_all_at(&encode_journal_header(magic, gen), 0)
        .at(path)?;
    f.sync_data().at(path)?;
    Ok(f)
}

/// Smallest and largest run of zeros written ahead of the records at a time: each run doubles
/// the file, from the smaller to the larger, so an idle queue's journal stays small.
pub const PREALLOC_BYTES_MIN: u64 = 64 << 10;
/// See [`PREALLOC_BYTES_MIN`].
pub const PREALLOC_BYTES_MAX: u64 = 1 << 20;

/// Writes zeros from the end of the current file to past `end`, so the appends up to there do
/// not grow the file: `fdatasync` after such an append writes the data and flushes, without
/// also writing the inode for a new file size (one device round trip fewer on every sync).
/// A failure here wrote nothing a reader could take for a record, so the journal goes on; the
/// append that needed the room fails.
fn preallocate(g: &mut Inner, end: u64) -> Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let run = g.len.clamp(PREALLOC_BYTES_MIN, PREALLOC_BYTES_MAX);
    let target = end.max(g.len) + run;
    let mut at = g.len;
    while at < target {
        let n = (target - at).min(ZEROS.len() as u64) as usize;
        g.file.write_all_at(&ZEROS[..n], at).at(&g.path)?;
        at += n as u64;
    }
    g.len = target;
    Ok(())
}

impl Journal {
    /// Opens (creating when absent) the journal of `prefix` in `dir` (which must exist), after
    /// recovering it: the torn tail is cut and the cut synced, stale generations removed.
    pub fn open(
        fs: FsRef,
        dir: &Path,
        prefix: &'static str,
        magic: [u8; 8],
    ) -> Result<(Journal, Loaded)> {
        let loaded = load(&*fs, dir, prefix, magic)?;
        let jp = journal_path(dir, prefix, loaded.generation);
        let file = if loaded.valid_len == 0 {
            let f = create_journal_file(&*fs, &jp, magic, loaded.generation)?;
            fs.sync_dir(dir).at(dir)?;
            f
        } else {
            let f = fs.open(&jp, OpenMode::ReadWrite).at(&jp)?;
            if loaded.damaged_mid {
                tracing::error!(
                    path = %jp.display(),
                    "state journal is damaged before valid records: the records after the damage are dropped \
                     (acknowledged messages may be delivered again, offsets may move back)"
                );
            }
            if loaded.torn_len() > 0 {
                tracing::warn!(
                    path = %jp.display(),
                    "cutting {} bytes of torn journal tail",
                    loaded.torn_len()
                );
                f.set_len(loaded.valid_len).at(&jp)?;
                f.sync_data().at(&jp)?;
            }
            f
        };
        // After a cut the file ends at the valid prefix; otherwise zeros may follow it.
        let len = if loaded.torn_len() > 0 {
            loaded.valid_len
        } else {
            loaded.journal_len
        };
        // Leftovers: older generations, a newer one whose snapshot never landed, temporaries.
        let own = jp.file_name().map(|n| n.to_string_lossy().into_owned());
        for name in fs.read_dir(dir).at(dir)? {
            let stale_journal =
                name.starts_with(&format!("{prefix}.")) && name.ends_with(".journal");
            let tmp = name == format!("{prefix}.snapshot.tmp");
            if (stale_journal && Some(&name) != own.as_ref()) || tmp {
                let p = dir.join(&name);
                fs.remove_file(&p).at(&p)?;
            }
        }
        let pos = loaded.valid_len.max(JOURNAL_HEADER_LEN as u64);
        let j = Journal {
            fs,
            dir: dir.to_path_buf(),
            prefix,
            magic,
            inner: Mutex::new(Inner {
                file,
                path: jp,
                generation: loaded.generation,
                pos,
                len: len.max(pos),
                version: if loaded.valid_len == 0 {
                    STATE_VERSION
                } else {
                    loaded.version
                },
                base: 0,
                since_snapshot: pos - JOURNAL_HEADER_LEN as u64,
            }),
            sync_lock: Mutex::new(()),
            durable: AtomicU64::new(pos),
            failed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        };
        Ok((j, loaded))
    }

    /// `FailStop` once a write or sync of the journal failed (until it is reopened).
    pub fn check(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(Error::FailStop {
                path: self.dir.clone(),
                cause: "a write or sync of the state journal failed".into(),
            });
        }
        Ok(())
    }

    fn fail(&self, e: Error) -> Error {
        tracing::error!(dir = %self.dir.display(), "state journal fails: {e}");
        self.failed.store(true, Ordering::Release);
        e
    }

    /// Appends already-encoded records (see [`encode_record`]); returns the logical position to
    /// pass to [`Journal::sync_to`]. Callers hold their own state lock so records are in the same
    /// order as the state changes they describe.
    pub fn append(&self, bytes: &[u8]) -> Result<u64> {
        self.check()?;
        let mut g = lock(&self.inner);
        let end = g.pos + bytes.len() as u64;
        if end > g.len {
            preallocate(&mut g, end)?;
        }
        if let Err(e) = g.file.write_all_at(bytes, g.pos) {
            // A partial write may have landed; the journal is stopped, recovery cuts it.
            return Err(self.fail(Error::io(&g.path, e)));
        }
        g.pos += bytes.len() as u64;
        g.since_snapshot += bytes.len() as u64;
        Ok(g.base + g.pos)
    }

    /// Layout version of the journal file being appended to. An owner whose records changed
    /// since that version takes a snapshot before appending: the snapshot starts a journal of
    /// the current version.
    pub fn version(&self) -> u16 {
        lock(&self.inner).version
    }

    /// Bytes appended since the last snapshot.
    pub fn since_snapshot(&self) -> u64 {
        lock(&self.inner).since_snapshot
    }

    /// The logical end: everything appended so far.
    pub fn end(&self) -> u64 {
        let g = lock(&self.inner);
        g.base + g.pos
    }

    /// Makes everything up to logical position `target` durable (group commit).
    pub fn sync_to(&self, target: u64) -> Result<()> {
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _leader = lock(&self.sync_lock);
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        self.check()?;
        let (file, path, end) = {
            let g = lock(&self.inner);
            (g.file.clone(), g.path.clone(), g.base + g.pos)
        };
        if let Err(e) = file.sync_data() {
            return Err(self.fail(Error::io(path, e)));
        }
        self.durable.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Syncs everything appended so far.
    pub fn flush(&self) -> Result<()> {
        self.sync_to(self.end())
    }

    /// Starts a thread that syncs the journal every `every` (the `interval` fsync policy). It ends
    /// when the journal is dropped, stopped or has failed.
    pub fn spawn_flusher(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("sluice-state-flush".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(j) = weak.upgrade() else { return };
                if j.stopped.load(Ordering::Acquire) || j.failed.load(Ordering::Acquire) {
                    return;
                }
                if let Err(e) = j.flush() {
                    tracing::error!(dir = %j.dir.display(), "interval sync of state journal failed: {e}");
                    return;
                }
            });
        if let Err(e) = spawned {
            tracing::error!(dir = %self.dir.display(), "cannot start the state flusher: {e}");
        }
    }

    /// Stops the background flusher (at close).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// Writes a snapshot holding `body` and starts a new journal generation. The caller holds its
    /// state lock, so `body` covers every record appended so far.
    pub fn snapshot(&self, body: &[u8]) -> Result<()> {
        self.check()?;
        let mut g = lock(&self.inner);
        let next = g.generation + 1;
        let fs = &*self.fs;
        let jp = journal_path(&self.dir, self.prefix, next);
        let made = create_journal_file(fs, &jp, self.magic, next)
            .and_then(|f| fs.sync_dir(&self.dir).at(&self.dir).map(|()| f));
        let f = match made {
            Ok(f) => f,
            Err(e) if e.is_fd_exhausted() => {
                // No descriptor for the new file or its directory: nothing the snapshot would
                // replace was touched, so the journal goes on in its current generation.
                let _ = fs.remove_file(&jp);
                return Err(e);
            }
            Err(e) => return Err(self.fail(e)),
        };
        let sp = snapshot_path(&self.dir, self.prefix);
        if let Err(e) = fs::write_atomic(fs, &sp, &encode_snapshot(self.magic, next, body)) {
            // The rename may have happened: the journal cannot tell which generation is live.
            return Err(self.fail(Error::io(&sp, e)));
        }
        let old = std::mem::replace(&mut g.path, jp);
        g.file = f;
        g.generation = next;
        g.base += g.pos;
        g.pos = JOURNAL_HEADER_LEN as u64;
        g.len = g.pos;
        g.version = STATE_VERSION;
        g.since_snapshot = 0;
        self.durable.fetch_max(g.base + g.pos, Ordering::AcqRel);
        drop(g);
        // The old journal is covered by the snapshot; a crash before this removal leaves a stale
        // file that the next open deletes.
        if let Err(e) = fs.remove_file(&old) {
            tracing::warn!(path = %old.display(), "could not remove an old journal: {e}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::sim::{CrashMode, SimFs};
    use std::sync::Arc;

    const M: [u8; 8] = *b"SLUICETJ";

    fn rec(kind: u8, p: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_record(&mut v, kind, p);
        v
    }

    #[test]
    fn records_roundtrip_and_stop_at_damage() {
        let mut b = rec(1, b"abc");
        b.extend(rec(2, b""));
        b.extend(rec(3, b"xyz"));
        let (r, n) = decode_records(&b);
        assert_eq!(r.len(), 3);
        assert_eq!(n, b.len());
        // Flip a byte of the second record's length: decoding stops after the first.
        let mut d = b.clone();
        d[12] ^= 0x40;
        let (r, n) = decode_records(&d);
        assert_eq!(r, vec![(1, b"abc".to_vec())]);
        assert_eq!(n, 12);
        // A short tail is ignored.
        let (r, _) = decode_records(&b[..b.len() - 1]);
        assert_eq!(r.len(), 2);
        // Damage before valid records is told apart from a torn tail.
        assert!(valid_record_after(&d[12..]));
        assert!(!valid_record_after(&b[..b.len() - 1][12..]));
        assert!(!valid_record_after(&[0u8; 100]));
    }

    #[test]
    fn journal_survives_crash_and_snapshots_switch_generation() {
        let sim = SimFs::new();
        let fs: FsRef = Arc::new(sim.clone());
        let dir = Path::new("/s");
        fs.create_dir_all(dir).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let (j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        assert!(l.snapshot.is_none() && l.records.is_empty());
        let p = j.append(&rec(1, b"one")).unwrap();
        j.sync_to(p).unwrap();
        j.append(&rec(1, b"lost")).unwrap();
        sim.crash(CrashMode::DropUnsynced);
        let (j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        assert_eq!(l.records, vec![(1, b"one".to_vec())]);
        j.append(&rec(1, b"two")).unwrap();
        j.snapshot(b"state").unwrap();
        let p = j.append(&rec(1, b"three")).unwrap();
        j.sync_to(p).unwrap();
        sim.crash(CrashMode::DropUnsynced);
        let (_j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        assert_eq!(l.snapshot.as_deref(), Some(&b"state"[..]));
        assert_eq!(l.generation, 1);
        assert_eq!(l.records, vec![(1, b"three".to_vec())]);
        let names = fs.read_dir(dir).unwrap();
        assert_eq!(names.iter().filter(|n| n.ends_with(".journal")).count(), 1);
    }

    /// A header that does not decode is recreated only when it never became durable; a future
    /// version, a foreign magic or bit rot before records refuses the open and keeps the file.
    #[test]
    fn a_damaged_or_future_header_refuses_the_open_instead_of_dropping_records() {
        let sim = SimFs::new();
        let fs: FsRef = Arc::new(sim.clone());
        let dir = Path::new("/s");
        fs.create_dir_all(dir).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let (j, _) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        j.sync_to(j.append(&rec(1, b"ack 7")).unwrap()).unwrap();
        drop(j);
        let jp = journal_path(dir, "t", 0);
        let good = sim.read_file(&jp).unwrap();
        let future = {
            let mut h = good.clone();
            h[8..10].copy_from_slice(&(STATE_VERSION + 1).to_le_bytes());
            let c = crc(&h[..20]);
            h[20..24].copy_from_slice(&c.to_le_bytes());
            h
        };
        let foreign = {
            let mut h = good.clone();
            h[..8].copy_from_slice(b"SLUICEXX");
            let c = crc(&h[..20]);
            h[20..24].copy_from_slice(&c.to_le_bytes());
            h
        };
        let rotten = {
            let mut h = good.clone();
            h[13] ^= 0x10;
            h
        };
        for (what, bytes) in [("future", future), ("foreign", foreign), ("rotten", rotten)] {
            sim.write_file(&jp, &bytes).unwrap();
            let err = Journal::open(fs.clone(), dir, "t", M).err();
            assert!(
                matches!(err, Some(Error::Corruption { .. })),
                "{what}: {err:?}"
            );
            assert_eq!(sim.read_file(&jp).unwrap(), bytes, "{what}: file kept");
        }
        // A torn creation (bad header, only zeros after it) is recreated empty.
        let mut torn = vec![0u8; 4096];
        torn[..10].copy_from_slice(&good[..10]);
        sim.write_file(&jp, &torn).unwrap();
        let (_j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        assert!(l.records.is_empty());
        // And the intact file opens with its record.
        sim.write_file(&jp, &good).unwrap();
        let (_j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        assert_eq!(l.records, vec![(1, b"ack 7".to_vec())]);
    }

    /// No descriptor for a snapshot's new journal file: the snapshot is refused, the journal is
    /// not stopped, and it goes on in its generation (EMFILE is not a failed sync).
    #[test]
    fn no_descriptor_for_a_snapshot_postpones_it_without_stopping_the_journal() {
        use crate::fs::sim::{Fault, FaultError, OpKind};
        let sim = SimFs::new();
        let fs: FsRef = Arc::new(sim.clone());
        let dir = Path::new("/s");
        fs.create_dir_all(dir).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let (j, _) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        j.sync_to(j.append(&rec(1, b"one")).unwrap()).unwrap();
        for kind in [OpKind::Create, OpKind::SyncDir] {
            sim.add_fault(Fault {
                kind,
                nth: sim.count(kind) + 1,
                forever: false,
                error: FaultError::TooManyFiles,
            });
            let err = j.snapshot(b"state").unwrap_err();
            assert!(err.is_fd_exhausted(), "{kind:?}: {err}");
            j.check().unwrap();
        }
        j.sync_to(j.append(&rec(1, b"two")).unwrap()).unwrap();
        sim.crash(CrashMode::DropUnsynced);
        let (j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        assert_eq!(l.generation, 0);
        assert_eq!(l.records, vec![(1, b"one".to_vec()), (1, b"two".to_vec())]);
        j.snapshot(b"state").unwrap();
    }

    #[test]
    fn a_full_disk_while_making_room_fails_only_that_append() {
        use crate::fs::sim::{Fault, FaultError, OpKind};
        let sim = SimFs::new();
        let fs: FsRef = Arc::new(sim.clone());
        let dir = Path::new("/s");
        fs.create_dir_all(dir).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let (j, _) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        j.sync_to(j.append(&rec(1, b"one")).unwrap()).unwrap();
        // The next append needs more room than the first run of zeros left.
        let big = vec![7u8; PREALLOC_BYTES_MIN as usize];
        sim.add_fault(Fault {
            kind: OpKind::Write,
            nth: sim.count(OpKind::Write) + 1,
            forever: false,
            error: FaultError::NoSpace,
        });
        let e = j.append(&rec(2, &big)).unwrap_err();
        assert!(e.is_disk_full(), "{e}");
        // Nothing of the record was written: the journal goes on, the record after lands
        // right behind the first.
        j.check().unwrap();
        j.sync_to(j.append(&rec(1, b"two")).unwrap()).unwrap();
        drop(j);
        sim.crash(CrashMode::DropUnsynced);
        let (_j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        assert_eq!(l.records, vec![(1, b"one".to_vec()), (1, b"two".to_vec())]);
    }

    #[test]
    fn zeros_ahead_of_the_records_are_room_not_a_torn_tail() {
        let sim = SimFs::new();
        let fs: FsRef = Arc::new(sim.clone());
        let dir = Path::new("/s");
        fs.create_dir_all(dir).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let jp = journal_path(dir, "t", 0);
        let (j, _) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        let one = rec(1, b"one");
        j.sync_to(j.append(&one).unwrap()).unwrap();
        let records_end = (JOURNAL_HEADER_LEN + one.len()) as u64;
        let file_len = sim.read_file(&jp).unwrap().len() as u64;
        assert_eq!(
            file_len,
            records_end + PREALLOC_BYTES_MIN,
            "room was written ahead"
        );
        // Reopened: no cut, and the next record goes right after the last one.
        drop(j);
        let l = load(&*fs, dir, "t", M).unwrap();
        assert_eq!(
            (l.valid_len, l.zeroed_len, l.torn_len()),
            (records_end, PREALLOC_BYTES_MIN, 0)
        );
        let (j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        assert_eq!(l.records.len(), 1);
        assert_eq!(
            sim.read_file(&jp).unwrap().len() as u64,
            file_len,
            "nothing was cut"
        );
        j.sync_to(j.append(&rec(1, b"two")).unwrap()).unwrap();
        // Past the room, the file grows by a run as long as itself (up to the largest run).
        let big = vec![7u8; PREALLOC_BYTES_MIN as usize];
        j.sync_to(j.append(&rec(2, &big)).unwrap()).unwrap();
        let grown = sim.read_file(&jp).unwrap().len() as u64;
        assert!(grown >= 2 * file_len, "{grown} after {file_len}");
        drop(j);
        let (j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        assert_eq!(
            l.records.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![1, 1, 2]
        );
        // Half a record over the zeros is a torn tail: cut at the open, zeros and all.
        let p = j.append(&rec(1, b"three")).unwrap();
        j.sync_to(p).unwrap();
        drop(j);
        let mut b = sim.read_file(&jp).unwrap();
        let l = load(&*fs, dir, "t", M).unwrap();
        let end = l.valid_len as usize;
        b[end..end + 6].copy_from_slice(&rec(1, b"four")[..6]);
        sim.write_file(&jp, &b).unwrap();
        let l = load(&*fs, dir, "t", M).unwrap();
        assert_eq!(
            (l.zeroed_len, l.torn_len()),
            (0, b.len() as u64 - end as u64)
        );
        let (_j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
        assert_eq!(l.records.len(), 4);
        assert_eq!(
            sim.read_file(&jp).unwrap().len(),
            end,
            "the torn tail was cut"
        );
    }
}
