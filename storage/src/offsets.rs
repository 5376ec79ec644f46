//! Durable committed offsets of a topic's named subscribers, in a checksummed journal with group
//! commit and periodic snapshots (see [`crate::journal`]).
//!
//! Journal records (framed `{ len u32 | crc u32 | kind u8 | payload }`):
//! ```text
//! COMMIT (1): { offset u64 | name_len u16 | name [u8] }   set (or create) a subscriber's offset
//! DELETE (2): { name_len u16 | name [u8] }                remove a subscriber
//! ```
//! Snapshot body: postcard of `Vec<(String, u64)>`, sorted by name.

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
/// A COMMIT record.
pub const REC_COMMIT: u8 = 1;
/// A DELETE record.
pub const REC_DELETE: u8 = 2;

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

/// Encodes a COMMIT record.
// Format: { len u32 | crc u32 | kind=1 u8 | offset u64 | name_len u16 | name }
pub fn encode_commit(out: &mut Vec<u8>, name: &str, offset: u64) {
    let mut p = Vec::with_capacity(10 + name.len());
    p.extend_from_slice(&offset.to_le_bytes());
    p.extend_from_slice(&(name.len() as u16).to_le_bytes());
    p.extend_from_slice(name.as_bytes());
    encode_record(out, REC_COMMIT, &p);
}

/// Encodes a DELETE record.
// Format: { len u32 | crc u32 | kind=2 u8 | name_len u16 | name }
pub fn encode_delete(out: &mut Vec<u8>, name: &str) {
    let mut p = Vec::with_capacity(2 + name.len());
    p.extend_from_slice(&(name.len() as u16).to_le_bytes());
    p.extend_from_slice(name.as_bytes());
    encode_record(out, REC_DELETE, &p);
}

fn name_at(p: &[u8], at: usize) -> std::result::Result<String, String> {
    let n = p
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .ok_or("short record")?;
    let b = p.get(at + 2..at + 2 + n).ok_or("short name")?;
    String::from_utf8(b.to_vec()).map_err(|_| "name is not UTF-8".to_string())
}

/// Applies one record to a map of offsets.
pub fn apply(
    map: &mut BTreeMap<String, u64>,
    kind: u8,
    p: &[u8],
) -> std::result::Result<(), String> {
    match kind {
        REC_COMMIT => {
            let o = p
                .get(..8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
                .ok_or("short record")?;
            map.insert(name_at(p, 8)?, o);
        }
        REC_DELETE => {
            map.remove(&name_at(p, 0)?);
        }
        k => return Err(format!("unknown offsets record kind {k}")),
    }
    Ok(())
}

fn recover(
    dir: &Path,
    snapshot: Option<&[u8]>,
    records: &[(u8, Vec<u8>)],
) -> Result<BTreeMap<String, u64>> {
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
/// body, then each journal record in order. `after` sees each subscriber the snapshot sets
/// (`None`) and each record applied (its index, kind and payload).
pub fn replay<'a>(
    snapshot: Option<&[u8]>,
    records: impl IntoIterator<Item = (u8, &'a [u8])>,
    mut after: impl FnMut(&str, Option<(usize, u8)>),
) -> std::result::Result<BTreeMap<String, u64>, ReplayFault> {
    let mut map: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(b) = snapshot {
        let v = postcard::from_bytes::<Vec<(String, u64)>>(b)
            .map_err(|e| ReplayFault::Snapshot(e.to_string()))?;
        for (n, o) in v {
            after(&n, None);
            map.insert(n, o);
        }
    }
    for (index, (k, p)) in records.into_iter().enumerate() {
        apply(&mut map, k, p).map_err(|reason| ReplayFault::Record { index, reason })?;
        let name = if k == REC_COMMIT {
            name_at(p, 8)
        } else {
            name_at(p, 0)
        };
        after(name.as_deref().unwrap_or(""), Some((index, k)));
    }
    Ok(map)
}

/// Reads the committed offsets of a topic directory without opening it for writing.
pub fn inspect_offsets(fs: &dyn FileSystem, dir: &Path) -> Result<BTreeMap<String, u64>> {
    let l = journal::load(fs, dir, OFFSETS_PREFIX, OFFSETS_MAGIC)?;
    recover(dir, l.snapshot.as_deref(), &l.records)
}

/// The offsets of one topic's subscribers.
#[derive(Debug)]
pub struct SubscriberOffsets {
    journal: Arc<Journal>,
    fsync: FsyncPolicy,
    map: Mutex<BTreeMap<String, u64>>,
    last_sync: Mutex<std::time::Instant>,
}

impl SubscriberOffsets {
    /// Opens and recovers the offsets in `dir`; every offset is clamped to `end` (the log end
    /// after its own recovery). A clamp is made durable at once with a snapshot, so journal
    /// records about offsets the log lost are never replayed again.
    pub fn open(fs: FsRef, dir: &Path, fsync: FsyncPolicy, end: u64) -> Result<Self> {
        let (journal, l) = Journal::open(fs, dir, OFFSETS_PREFIX, OFFSETS_MAGIC)?;
        let journal = Arc::new(journal);
        if let Some(every) = fsync.interval() {
            journal.spawn_flusher(every);
        }
        let mut map = recover(dir, l.snapshot.as_deref(), &l.records)?;
        let mut clamped = false;
        for (name, o) in map.iter_mut() {
            if *o > end {
                tracing::warn!(dir = %dir.display(), "subscriber {name} was at {o}, past the log end {end}: clamped");
                *o = end;
                clamped = true;
            }
        }
        let s = SubscriberOffsets {
            journal,
            fsync,
            map: Mutex::new(map),
            last_sync: Mutex::new(std::time::Instant::now()),
        };
        if clamped || s.journal.since_snapshot() > snapshot_bytes() {
            let g = lock(&s.map);
            s.snapshot_locked(&g)?;
        }
        Ok(s)
    }

    fn snapshot_locked(&self, map: &BTreeMap<String, u64>) -> Result<()> {
        let v: Vec<(&String, &u64)> = map.iter().collect();
        let body = postcard::to_stdvec(&v).expect("offsets encode");
        self.journal.snapshot(&body)
    }

    /// A subscriber's offset.
    pub fn get(&self, name: &str) -> Option<u64> {
        lock(&self.map).get(name).copied()
    }

    /// Every subscriber and its offset, sorted by name.
    pub fn all(&self) -> Vec<(String, u64)> {
        lock(&self.map)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The smallest offset of any subscriber.
    pub fn min(&self) -> Option<u64> {
        lock(&self.map).values().copied().min()
    }

    fn write(&self, rec: Vec<u8>, change: impl FnOnce(&mut BTreeMap<String, u64>)) -> Result<()> {
        let pos = {
            let mut g = lock(&self.map);
            let pos = self.journal.append(&rec)?;
            change(&mut g);
            if self.journal.since_snapshot() > snapshot_bytes() {
                self.snapshot_locked(&g)?;
            }
            pos
        };
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

    /// Sets a subscriber's offset (creating it); durable on return under `always`.
    pub fn set(&self, name: &str, offset: u64) -> Result<()> {
        let mut rec = Vec::new();
        encode_commit(&mut rec, name, offset);
        self.write(rec, |m| {
            m.insert(name.to_string(), offset);
        })
    }

    /// Creates a subscriber at `offset` unless it exists; returns its offset.
    pub fn get_or_create(&self, name: &str, offset: u64) -> Result<u64> {
        if let Some(o) = self.get(name) {
            self.wait_durable()?;
            return Ok(o);
        }
        // Two racing creators both write; the last one wins, and both return what it wrote
        // only when they agree, which is the common case (same start position).
        self.set(name, offset)?;
        Ok(self.get(name).unwrap_or(offset))
    }

    /// Under `always`, waits until every record appended so far is durable (a subscriber seen in
    /// memory may have been created by a caller still syncing its record).
    pub fn wait_durable(&self) -> Result<()> {
        if self.fsync == FsyncPolicy::Always {
            self.journal.flush()?;
        }
        Ok(())
    }

    /// Removes a subscriber; false when absent.
    pub fn remove(&self, name: &str) -> Result<bool> {
        if self.get(name).is_none() {
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
