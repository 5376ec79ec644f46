//! The byte layouts of state files: file names, the journal header, records and snapshots.

use std::path::{Path, PathBuf};

use crate::format::crc;

use super::{
    u32_at, u64_at, version_supported, JOURNAL_HEADER_LEN, RECORD_MAX, SNAPSHOT_HEADER_LEN,
    STATE_VERSION,
};

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
    decode_snapshot_versioned(b, magic).map(|(_, g, body)| (g, body))
}

/// Like [`decode_snapshot`], also returning the layout version of the file (owners whose
/// snapshot body changed between versions decode by it).
pub fn decode_snapshot_versioned(
    b: &[u8],
    magic: [u8; 8],
) -> std::result::Result<(u16, u64, &[u8]), StateFileError> {
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
    Ok((v, u64_at(b, 12), body))
}
