//! Sparse indexes of a segment: offset → byte position (`.index`) and timestamp → offset
//! (`.timeindex`). Both are caches of the log: they are checked against it and rebuilt from it
//! whenever they disagree, never trusted over it.
//!
//! ```text
//! .index:     { file header (32 B, magic "SLUICEIX", entry_size 8) | { relative_offset u32 | position u32 }* }
//! .timeindex: { file header (32 B, magic "SLUICETI", entry_size 12) | { timestamp_ms i64 | relative_offset u32 }* }
//! ```
//! The header's `body_crc` covers all entries, so a damaged entry rejects the whole file.
//! `relative_offset` is the offset of a batch minus the segment's base offset; `position` is the
//! byte position of that batch in the `.log` file. Entries are strictly increasing in both fields.
//! Sealed segments keep their index as a read-only map (mmap on the real file system); the active
//! segment keeps its entries in memory and writes them out when it is sealed or the log closes.

use crate::format::{
    crc, decode_file_header, encode_file_header, file_header_body_crc, set_file_header_body_crc,
    FILE_HEADER_LEN, INDEX_MAGIC, TIME_INDEX_MAGIC,
};
use crate::fs::Mapped;
use crate::types::{Offset, TimestampMs};

/// One kind of index entry.
pub trait IndexEntry: Copy + std::fmt::Debug {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// File magic.
    const MAGIC: [u8; 8];
    /// The key the index is sorted and searched by.
    type Key: Ord + Copy;
    /// This entry's key.
    fn key(&self) -> Self::Key;
    /// Encodes the entry.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes an entry from exactly `SIZE` bytes.
    fn decode(b: &[u8]) -> Self;
    /// True when `next` may follow `self` (both fields strictly increase).
    fn precedes(&self, next: &Self) -> bool;
}

/// An offset index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Batch base offset minus the segment base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    const MAGIC: [u8; 8] = INDEX_MAGIC;
    type Key = u32;
    fn key(&self) -> u32 {
        self.relative_offset
    }
    // Format: { relative_offset u32 | position u32 }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
            position: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
        }
    }
    fn precedes(&self, next: &Self) -> bool {
        self.relative_offset < next.relative_offset && self.position < next.position
    }
}

/// A time index entry: every record in batches up to and including the batch at
/// `relative_offset` has a timestamp at most `timestamp_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest timestamp of the segment up to this batch.
    pub timestamp_ms: TimestampMs,
    /// Batch base offset minus the segment base offset.
    pub relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    const MAGIC: [u8; 8] = TIME_INDEX_MAGIC;
    type Key = TimestampMs;
    fn key(&self) -> TimestampMs {
        self.timestamp_ms
    }
    // Format: { timestamp_ms i64 | relative_offset u32 }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&self.relative_offset.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        TimeEntry {
            timestamp_ms: i64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            relative_offset: u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
        }
    }
    fn precedes(&self, next: &Self) -> bool {
        self.timestamp_ms < next.timestamp_ms && self.relative_offset <= next.relative_offset
    }
}

/// A sparse index: a mapped, sealed part followed by entries held in memory.
#[derive(Debug)]
pub struct Index<E: IndexEntry> {
    mapped: Option<Mapped>,
    mapped_count: usize,
    tail: Vec<E>,
}

impl<E: IndexEntry> Default for Index<E> {
    fn default() -> Self {
        Index {
            mapped: None,
            mapped_count: 0,
            tail: Vec::new(),
        }
    }
}

impl<E: IndexEntry> Index<E> {
    /// Loads an index file's bytes and checks its header, size and entry order.
    pub fn load(bytes: Mapped, base: Offset) -> Result<Self, String> {
        let file_base =
            decode_file_header(&bytes, E::MAGIC, E::SIZE as u16).map_err(String::from)?;
        if file_base != base {
            return Err(format!(
                "index base offset {file_base} differs from segment base {base}"
            ));
        }
        // Entries carry no checksum of their own: a damaged position or timestamp can still be
        // in order and would send reads or time lookups to the wrong place.
        if crc(&bytes[FILE_HEADER_LEN..]) != file_header_body_crc(&bytes) {
            return Err("index entries checksum mismatch".into());
        }
        let body = bytes.len() - FILE_HEADER_LEN;
        if body % E::SIZE != 0 {
            return Err(format!(
                "index body of {body} bytes is not a multiple of {}",
                E::SIZE
            ));
        }
        let idx = Index::<E> {
            mapped_count: body / E::SIZE,
            mapped: Some(bytes),
            tail: Vec::new(),
        };
        for i in 1..idx.len() {
            if !idx.get(i - 1).precedes(&idx.get(i)) {
                return Err(format!("index entries {} and {i} are out of order", i - 1));
            }
        }
        Ok(idx)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.mapped_count + self.tail.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> E {
        if i < self.mapped_count {
            let m = self.mapped.as_ref().expect("mapped part");
            let at = FILE_HEADER_LEN + i * E::SIZE;
            E::decode(&m[at..at + E::SIZE])
        } else {
            self.tail[i - self.mapped_count]
        }
    }

    /// The last entry.
    pub fn last(&self) -> Option<E> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }

    /// Appends an entry; it must follow the last one.
    pub fn push(&mut self, e: E) {
        if let Some(last) = self.last() {
            assert!(
                last.precedes(&e),
                "index entry {e:?} does not follow {last:?}"
            );
        }
        self.tail.push(e);
    }

    /// The last entry whose key is `<= key`.
    pub fn floor(&self, key: E::Key) -> Option<E> {
        // partition_point over 0..len: first index whose key > key.
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid).key() <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| self.get(i))
    }

    /// The last entry whose key is `< key`.
    pub fn lower(&self, key: E::Key) -> Option<E> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid).key() < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| self.get(i))
    }

    /// Keeps only the entries for which `keep` holds, as a prefix (stops at the first that fails).
    pub fn retain_prefix(&mut self, keep: impl Fn(&E) -> bool) {
        let n = (0..self.len()).take_while(|&i| keep(&self.get(i))).count();
        let entries: Vec<E> = (0..n).map(|i| self.get(i)).collect();
        *self = Index {
            mapped: None,
            mapped_count: 0,
            tail: entries,
        };
    }

    /// The whole index file: header and entries.
    pub fn encode_file(&self, base: Offset) -> Vec<u8> {
        let mut out = Vec::with_capacity(FILE_HEADER_LEN + self.len() * E::SIZE);
        out.extend_from_slice(&encode_file_header(E::MAGIC, E::SIZE as u16, base));
        for i in 0..self.len() {
            self.get(i).encode(&mut out);
        }
        let body_crc = crc(&out[FILE_HEADER_LEN..]);
        set_file_header_body_crc(&mut out, body_crc);
        out
    }
}

/// The offset index of a segment.
pub type OffsetIndex = Index<OffsetEntry>;
/// The time index of a segment.
pub type TimeIndex = Index<TimeEntry>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_and_lower_search() {
        let mut idx = OffsetIndex::default();
        for i in 0..10u32 {
            idx.push(OffsetEntry {
                relative_offset: i * 10,
                position: 32 + i * 100,
            });
        }
        assert_eq!(idx.floor(0).unwrap().relative_offset, 0);
        assert_eq!(idx.floor(15).unwrap().relative_offset, 10);
        assert_eq!(idx.floor(1000).unwrap().relative_offset, 90);
        assert_eq!(idx.lower(10).unwrap().relative_offset, 0);
        assert!(idx.lower(0).is_none());
        let file = idx.encode_file(Offset(5));
        let loaded = OffsetIndex::load(Mapped::Owned(file), Offset(5)).unwrap();
        assert_eq!(loaded.len(), 10);
        assert_eq!(loaded.floor(55).unwrap().position, 32 + 500);
    }

    #[test]
    fn bad_files_are_rejected() {
        let mut idx = TimeIndex::default();
        idx.push(TimeEntry {
            timestamp_ms: 1,
            relative_offset: 0,
        });
        let mut file = idx.encode_file(Offset(0));
        assert!(TimeIndex::load(Mapped::Owned(file.clone()), Offset(1)).is_err());
        file.push(0);
        assert!(TimeIndex::load(Mapped::Owned(file), Offset(0)).is_err());
        assert!(OffsetIndex::load(Mapped::Owned(vec![0; 40]), Offset(0)).is_err());
    }
}
