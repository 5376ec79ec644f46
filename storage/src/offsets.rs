//! Durable committed offsets of a topic's named subscribers, one per partition with an optional
//! metadata blob, in a checksummed journal with group commit and periodic snapshots (see
//! [`crate::journal`]).
//!
//! Journal records (framed `{ len u32 | crc u32 | kind u8 | payload }`):
//! ```text
//! COMMIT (1):           { offset u64 | name_len u16 | name [u8] }       partition 0, no metadata
//!                                                                       (read, no longer written)
//! DELETE (2):           { name_len u16 | name [u8] }                    remove a subscriber
//! COMMIT_PARTITION (3): { partition u32 | offset u64 | meta_len u16 | meta [u8] |
//!                         name_len u16 | name [u8] }                    set (or create) the offset
//!                                                                       of one partition
//! ```
//! Kind 3 is written only into journals of state version 3 or later: an older journal is
//! replaced by a snapshot at open. Snapshot body: postcard of `Vec<(String, u64)>` (sorted by
//! name; partition 0) up to state version 2; from version 3 postcard of
//! `Vec<(String, Vec<(u32, u64, Vec<u8>)>)>` (name, then partition, offset, metadata; sorted).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ackstate::ReplayFault;
use crate::config::FsyncPolicy;
use crate::error::{Error, Result};
use crate::fs::{FileSystem, FsRef};
use crate::journal::{self, encode_record, Journal};

/// File prefix of subscriber offsets in a topic directory.
pub const OFFSETS_PREFIX: &str = "offsets";
/// Magic of the offsets journal and snapshot.
pub const OFFSETS_MAGIC: [u8; 8] = *b"SLUICEOF";
/// A COMMIT record (partition 0, no metadata; versions 1 and 2).
pub const REC_COMMIT: u8 = 1;
/// A DELETE record.
pub const REC_DELETE: u8 = 2;
/// A COMMIT_PARTITION record (state version 3).
pub const REC_COMMIT_PARTITION: u8 = 3;
/// Longest metadata blob of one commit (Kafka's OffsetCommit metadata fits in it).
pub const COMMIT_METADATA_BYTES_MAX: usize = 4096;
/// First state version whose snapshot body and records carry partitions and metadata.
pub const PARTITIONED_SINCE_VERSION: u16 = 3;

/// A committed position of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// The next offset the subscriber reads.
    pub offset: u64,
    /// The metadata stored with it (empty when none).
    pub metadata: Vec<u8>,
}

/// Committed positions by subscriber name, then partition.
pub type OffsetsMap = BTreeMap<String, BTreeMap<u32, Committed>>;

/// Snapshot once the journal grows past this many bytes (1 MiB by default).
static SNAPSHOT_BYTES: AtomicU64 = AtomicU64::new(1 << 20);

/// Sets the journal size that triggers a subscriber-offsets snapshot, for every topic of the
/// process. Tests lower it to exercise snapshots; the default is 1 MiB.
#[doc(hidden)]
pub fn set_offsets_snapshot_bytes(bytes: u64) {
    SNAPSHOT_BYTES.store(bytes, Ordering::Relaxed);
}

fn snapshot_bytes() -> u64 {
    SNAPSHOT_BYTES.load(Ordering::Relaxed)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Encodes a COMMIT record of the old layout (partition 0, no metadata): written by versions
/// before 3 only; kept for tests of the replay of old journals.
// Format: { len u32 | crc u32 | kind=1 u8 | offset u64 | name_len u16 | name }
pub fn encode_commit(out: &mut Vec<u8>, name: &str, offset: u64) {
    let mut p = Vec::with_capacity(10 + name.len());
    p.extend_from_slice(&offset.to_le_bytes());
    p.extend_from_slice(&(name.len() as u16).to_le_bytes());
    p.extend_from_slice(name.as_bytes());
    encode_record(out, REC_COMMIT, &p);
}

/// Encodes a COMMIT_PARTITION record. `metadata` is at most [`COMMIT_METADATA_BYTES_MAX`].
// Format: { len u32 | crc u32 | kind=3 u8 | partition u32 | offset u64 | meta_len u16 | meta |
//           name_len u16 | name }
pub fn encode_commit_partition(
    out: &mut Vec<u8>,
    name: &str,
    partition: u32,
    offset: u64,
    metadata: &[u8],
) {
    assert!(metadata.len() <= COMMIT_METADATA_BYTES_MAX);
    let mut p = Vec::with_capacity(16 + metadata.len() + name.len());
    p.extend_from_slice(&partition.to_le_bytes());
    p.extend_from_slice(&offset.to_le_bytes());
    p.extend_from_slice(&(metadata.len() as u16).to_le_bytes());
    p.extend_from_slice(metadata);
    p.extend_from_slice(&(name.len() as u16).to_le_bytes());
    p.extend_from_slice(name.as_bytes());
    encode_record(out, REC_COMMIT_PARTITION, &p);
}

/// Encodes a DELETE record.
// Format: { len u32 | crc u32 | kind=2 u8 | name_len u16 | name }
pub fn encode_delete(out: &mut Vec<u8>, name: &str) {
    let mut p = Vec::with_capacity(2 + name.len());
    p.extend_from_slice(&(name.len() as u16).to_le_bytes());
    p.extend_from_slice(name.as_bytes());
    encode_record(out, REC_DELETE, &p);
}

fn bytes_at(p: &[u8], at: usize) -> std::result::Result<(&[u8], usize), String> {
    let n = p
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .ok_or("short record")?;
    let b = p.get(at + 2..at + 2 + n).ok_or("short field")?;
    Ok((b, at + 2 + n))
}

fn name_at(p: &[u8], at: usize) -> std::result::Result<String, String> {
    let (b, _) = bytes_at(p, at)?;
    String::from_utf8(b.to_vec()).map_err(|_| "name is not UTF-8".to_string())
}

/// One decoded offsets record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OffsetsOp {
    /// Set a subscriber's position on a partition.
    Commit {
        /// The subscriber.
        name: String,
        /// The partition.
        partition: u32,
        /// What is committed.
        committed: Committed,
    },
    /// Remove a subscriber from every partition.
    Delete {
        /// The subscriber.
        name: String,
    },
}

/// Decodes one record.
pub fn decode(kind: u8, p: &[u8]) -> std::result::Result<OffsetsOp, String> {
    let u64_at = |at: usize| {
        p.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
            .ok_or("short record")
    };
    match kind {
        REC_COMMIT => Ok(OffsetsOp::Commit {
            name: name_at(p, 8)?,
            partition: 0,
            committed: Committed {
                offset: u64_at(0)?,
                metadata: Vec::new(),
            },
        }),
        REC_DELETE => Ok(OffsetsOp::Delete {
            name: name_at(p, 0)?,
        }),
        REC_COMMIT_PARTITION => {
            let partition = p
                .get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
                .ok_or("short record")?;
            let offset = u64_at(4)?;
            let (meta, next) = bytes_at(p, 12)?;
            if meta.len() > COMMIT_METADATA_BYTES_MAX {
                return Err(format!(
                    "metadata of {} bytes, over the limit of {COMMIT_METADATA_BYTES_MAX}",
                    meta.len()
                ));
            }
            Ok(OffsetsOp::Commit {
                name: name_at(p, next)?,
                partition,
                committed: Committed {
                    offset,
                    metadata: meta.to_vec(),
                },
            })
        }
        k => Err(format!("unknown offsets record kind {k}")),
    }
}

/// Applies one record to a map of offsets.
pub fn apply(map: &mut OffsetsMap, kind: u8, p: &[u8]) -> std::result::Result<(), String> {
    match decode(kind, p)? {
        OffsetsOp::Commit {
            name,
            partition,
            committed,
        } => {
            map.entry(name).or_default().insert(partition, committed);
        }
        OffsetsOp::Delete { name } => {
            map.remove(&name);
        }
    }
    Ok(())
}

/// The snapshot body of state version 3 and later.
type SnapshotBody = Vec<(String, Vec<(u32, u64, Vec<u8>)>)>;

fn encode_snapshot_body(map: &OffsetsMap) -> Vec<u8> {
    let v: SnapshotBody = map
        .iter()
        .map(|(n, parts)| {
            let ps = parts
                .iter()
                .map(|(p, c)| (*p, c.offset, c.metadata.clone()))
                .collect();
            (n.clone(), ps)
        })
        .collect();
    postcard::to_stdvec(&v).expect("offsets encode")
}

fn decode_snapshot_body(
    b: &[u8],
    version: u16,
) -> std::result::Result<OffsetsMap, postcard::Error> {
    let mut map = OffsetsMap::new();
    if version < PARTITIONED_SINCE_VERSION {
        for (n, o) in postcard::from_bytes::<Vec<(String, u64)>>(b)? {
            let c = Committed {
                offset: o,
                metadata: Vec::new(),
            };
            map.entry(n).or_default().insert(0, c);
        }
    } else {
        for (n, ps) in postcard::from_bytes::<SnapshotBody>(b)? {
            let e = map.entry(n).or_default();
            for (p, offset, metadata) in ps {
                e.insert(p, Committed { offset, metadata });
            }
        }
    }
    Ok(map)
}

fn recover(
    dir: &Path,
    snapshot: Option<(u16, &[u8])>,
    records: &[(u8, Vec<u8>)],
) -> Result<OffsetsMap> {
    let recs = records.iter().map(|(k, p)| (*k, p.as_slice()));
    replay(snapshot, recs, |_, _| {}).map_err(|f| match f {
        ReplayFault::Snapshot(e) => Error::corruption(dir, 0, format!("offsets snapshot: {e}")),
        ReplayFault::Record { index, reason } => Error::corruption(
            dir,
            index as u64,
            format!("offsets record {index}: {reason}"),
        ),
    })
}

/// The one replay of committed offsets, for recovery and `sluice inspect` alike: the snapshot
/// body (with the state version of its file), then each journal record in order. `after` sees
/// each subscriber the snapshot sets (`None`) and each record applied (its index, kind and
/// payload).
pub fn replay<'a>(
    snapshot: Option<(u16, &[u8])>,
    records: impl IntoIterator<Item = (u8, &'a [u8])>,
    mut after: impl FnMut(&str, Option<(usize, u8)>),
) -> std::result::Result<OffsetsMap, ReplayFault> {
    let mut map = OffsetsMap::new();
    if let Some((version, b)) = snapshot {
        map = decode_snapshot_body(b, version).map_err(|e| ReplayFault::Snapshot(e.to_string()))?;
        for n in map.keys() {
            after(n, None);
        }
    }
    for (index, (k, p)) in records.into_iter().enumerate() {
        let op = decode(k, p).map_err(|reason| ReplayFault::Record { index, reason })?;
        let name = match &op {
            OffsetsOp::Commit { name, .. } | OffsetsOp::Delete { name } => name.clone(),
        };
        apply(&mut map, k, p).map_err(|reason| ReplayFault::Record { index, reason })?;
        after(&name, Some((index, k)));
    }
    Ok(map)
}

/// Reads the committed offsets of a topic directory without opening it for writing.
pub fn inspect_offsets(fs: &dyn FileSystem, dir: &Path) -> Result<OffsetsMap> {
    let l = journal::load(fs, dir, OFFSETS_PREFIX, OFFSETS_MAGIC)?;
    let snap = l.snapshot.as_deref().map(|b| (l.snapshot_version, b));
    recover(dir, snap, &l.records)
}

/// The offsets of one topic's subscribers.
#[derive(Debug)]
pub struct SubscriberOffsets {
    journal: Arc<Journal>,
    fsync: FsyncPolicy,
    map: Mutex<OffsetsMap>,
    last_sync: Mutex<std::time::Instant>,
}

impl SubscriberOffsets {
    /// Opens and recovers the offsets in `dir`; every offset of partition `p` is clamped to
    /// `ends[p]` (the partition log's end after its own recovery), and entries of partitions
    /// past `ends.len()` are dropped. A clamp is made durable at once with a snapshot, so
    /// journal records about offsets the log lost are never replayed again; so is a journal of
    /// a version before 3, so that partitioned records only go where their version allows.
    pub fn open(fs: FsRef, dir: &Path, fsync: FsyncPolicy, ends: &[u64]) -> Result<Self> {
        let (journal, l) = Journal::open(fs, dir, OFFSETS_PREFIX, OFFSETS_MAGIC)?;
        let journal = Arc::new(journal);
        if let Some(every) = fsync.interval() {
            journal.spawn_flusher(every);
        }
        let snap = l.snapshot.as_deref().map(|b| (l.snapshot_version, b));
        let mut map = recover(dir, snap, &l.records)?;
        let mut clamped = false;
        for (name, parts) in map.iter_mut() {
            let before = parts.len();
            parts.retain(|p, _| (*p as usize) < ends.len());
            clamped |= parts.len() != before;
            for (p, c) in parts.iter_mut() {
                let end = ends[*p as usize];
                if c.offset > end {
                    tracing::warn!(dir = %dir.display(), "subscriber {name} was at {} of partition {p}, past the log end {end}: clamped", c.offset);
                    c.offset = end;
                    clamped = true;
                }
            }
        }
        let s = SubscriberOffsets {
            journal,
            fsync,
            map: Mutex::new(map),
            last_sync: Mutex::new(std::time::Instant::now()),
        };
        if clamped
            || s.journal.since_snapshot() > snapshot_bytes()
            || s.journal.version() < PARTITIONED_SINCE_VERSION
        {
            let g = lock(&s.map);
            s.snapshot_locked(&g)?;
        }
        Ok(s)
    }

    fn snapshot_locked(&self, map: &OffsetsMap) -> Result<()> {
        self.journal.snapshot(&encode_snapshot_body(map))
    }

    /// True when the subscriber exists (on any partition).
    pub fn exists(&self, name: &str) -> bool {
        lock(&self.map).contains_key(name)
    }

    /// A subscriber's position on a partition.
    pub fn get(&self, name: &str, partition: u32) -> Option<Committed> {
        lock(&self.map).get(name)?.get(&partition).cloned()
    }

    /// Every subscriber and its positions, sorted by name.
    pub fn all(&self) -> Vec<(String, BTreeMap<u32, Committed>)> {
        lock(&self.map)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The smallest offset of any subscriber on `partition`.
    pub fn min(&self, partition: u32) -> Option<u64> {
        lock(&self.map)
            .values()
            .filter_map(|ps| ps.get(&partition).map(|c| c.offset))
            .min()
    }

    fn write(&self, rec: Vec<u8>, change: impl FnOnce(&mut OffsetsMap)) -> Result<()> {
        let pos = {
            let mut g = lock(&self.map);
            let pos = self.journal.append(&rec)?;
            change(&mut g);
            if self.journal.since_snapshot() > snapshot_bytes() {
                self.snapshot_locked(&g)?;
            }
            pos
        };
        self.sync_per_policy(pos)
    }

    /// Makes the journal durable up to `pos` as the fsync policy promises.
    fn sync_per_policy(&self, pos: u64) -> Result<()> {
        match self.fsync {
            FsyncPolicy::Always => self.journal.sync_to(pos)?,
            FsyncPolicy::Interval(ms) => {
                // Synced by the first commit after the interval elapsed (and at close).
                let mut last = lock(&self.last_sync);
                if last.elapsed().as_millis() as u64 >= ms {
                    *last = std::time::Instant::now();
                    drop(last);
                    self.journal.sync_to(pos)?;
                }
            }
            FsyncPolicy::Never => {}
        }
        Ok(())
    }

    /// Sets a subscriber's position on a partition (creating it); durable on return under
    /// `always`. Metadata over [`COMMIT_METADATA_BYTES_MAX`] is refused (`InvalidArgument`).
    pub fn set(&self, name: &str, partition: u32, offset: u64, metadata: &[u8]) -> Result<()> {
        if metadata.len() > COMMIT_METADATA_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "commit metadata of {} bytes, over the limit of {COMMIT_METADATA_BYTES_MAX}",
                metadata.len()
            )));
        }
        let mut rec = Vec::new();
        encode_commit_partition(&mut rec, name, partition, offset, metadata);
        self.write(rec, |m| {
            let c = Committed {
                offset,
                metadata: metadata.to_vec(),
            };
            m.entry(name.to_string()).or_default().insert(partition, c);
        })
    }

    /// Sets a subscriber's positions on several partitions (`(partition, offset, metadata)`)
    /// with one sync: durable on return under `always`. Refused whole (`InvalidArgument`) if
    /// any metadata is over [`COMMIT_METADATA_BYTES_MAX`].
    pub fn set_many(&self, name: &str, commits: &[(u32, u64, &[u8])]) -> Result<()> {
        if let Some((_, _, m)) = commits
            .iter()
            .find(|(_, _, m)| m.len() > COMMIT_METADATA_BYTES_MAX)
        {
            return Err(Error::InvalidArgument(format!(
                "commit metadata of {} bytes, over the limit of {COMMIT_METADATA_BYTES_MAX}",
                m.len()
            )));
        }
        if commits.is_empty() {
            return Ok(());
        }
        let pos = {
            let mut g = lock(&self.map);
            let mut pos = 0;
            for &(partition, offset, metadata) in commits {
                let mut rec = Vec::new();
                encode_commit_partition(&mut rec, name, partition, offset, metadata);
                pos = self.journal.append(&rec)?;
                let c = Committed {
                    offset,
                    metadata: metadata.to_vec(),
                };
                g.entry(name.to_string()).or_default().insert(partition, c);
            }
            if self.journal.since_snapshot() > snapshot_bytes() {
                self.snapshot_locked(&g)?;
            }
            pos
        };
        self.sync_per_policy(pos)
    }

    /// Creates a subscriber's position on a partition at `offset` unless it has one; returns
    /// its offset there.
    pub fn get_or_create(&self, name: &str, partition: u32, offset: u64) -> Result<u64> {
        if let Some(c) = self.get(name, partition) {
            self.wait_durable()?;
            return Ok(c.offset);
        }
        // Two racing creators both write; the last one wins, and both return what it wrote
        // only when they agree, which is the common case (same start position).
        self.set(name, partition, offset, &[])?;
        Ok(self.get(name, partition).map_or(offset, |c| c.offset))
    }

    /// Under `always`, waits until every record appended so far is durable (a subscriber seen in
    /// memory may have been created by a caller still syncing its record).
    pub fn wait_durable(&self) -> Result<()> {
        if self.fsync == FsyncPolicy::Always {
            self.journal.flush()?;
        }
        Ok(())
    }

    /// Removes a subscriber from every partition; false when absent.
    pub fn remove(&self, name: &str) -> Result<bool> {
        if !self.exists(name) {
            return Ok(false);
        }
        let mut rec = Vec::new();
        encode_delete(&mut rec, name);
        self.write(rec, |m| {
            m.remove(name);
        })?;
        Ok(true)
    }

    /// Syncs everything and writes a snapshot (at close).
    pub fn close(&self) -> Result<()> {
        self.journal.stop();
        let g = lock(&self.map);
        self.snapshot_locked(&g)
    }

    /// Syncs the journal (for the `interval` and `never` policies at chosen points).
    pub fn flush(&self) -> Result<()> {
        self.journal.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_every_version_decode() {
        let mut b = Vec::new();
        encode_commit(&mut b, "old", 7);
        encode_commit_partition(&mut b, "new", 5, 9, b"meta");
        encode_delete(&mut b, "old");
        let (recs, _) = journal::decode_records(&b);
        let mut m = OffsetsMap::new();
        apply(&mut m, recs[0].0, &recs[0].1).unwrap();
        assert_eq!(
            m["old"][&0],
            Committed {
                offset: 7,
                metadata: vec![]
            }
        );
        apply(&mut m, recs[1].0, &recs[1].1).unwrap();
        assert_eq!(m["new"][&5].metadata, b"meta");
        apply(&mut m, recs[2].0, &recs[2].1).unwrap();
        assert!(!m.contains_key("old"));
        // A metadata length running past the record is refused, never read past.
        let mut bad = recs[1].1.clone();
        bad[12] = 0xff;
        assert!(decode(REC_COMMIT_PARTITION, &bad).is_err());
        assert!(decode(9, &[]).is_err());
    }

    #[test]
    fn snapshot_bodies_of_both_layouts_decode() {
        let old = postcard::to_stdvec(&vec![("a".to_string(), 4u64)]).unwrap();
        let m = decode_snapshot_body(&old, 2).unwrap();
        assert_eq!(m["a"][&0].offset, 4);
        let mut new = OffsetsMap::new();
        new.entry("b".into()).or_default().insert(
            3,
            Committed {
                offset: 11,
                metadata: b"x".to_vec(),
            },
        );
        let body = encode_snapshot_body(&new);
        assert_eq!(decode_snapshot_body(&body, 3).unwrap(), new);
    }
}
