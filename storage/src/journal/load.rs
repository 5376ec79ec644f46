//! Reading a state directory without changing anything: what each file holds and where it is
//! damaged ([`examine`]), and what recovery replays ([`load`]).

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fs::{self, FileSystem};

use super::format::*;
use super::{u32_at, JOURNAL_HEADER_LEN, RECORD_MAX};

/// What a read-only load of a state directory found.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The snapshot body, when there is a snapshot.
    pub snapshot: Option<Vec<u8>>,
    /// Layout version of the snapshot file (0 without a snapshot).
    pub snapshot_version: u16,
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
    /// Its layout version (0 when it does not decode).
    pub version: u16,
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
        let decoded = decode_snapshot_versioned(&bytes, magic);
        let version = decoded.as_ref().map_or(0, |(v, _, _)| *v);
        let decoded = decoded.map(|(_, g, body)| (g, body.to_vec()));
        let ok = decoded.as_ref().map(|(g, _)| *g).ok();
        out.snapshot = Some(SnapshotFile {
            path: sp,
            len: bytes.len() as u64,
            decoded,
            version,
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
        out.snapshot_version = s.version;
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
