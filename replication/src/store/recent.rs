//! The entries a replica appended last, kept in memory so that replication to followers and
//! the state machine's apply read them without going back to the disk.
//!
//! A log under `fsync = always` writes with O_DIRECT, which leaves nothing in the page cache:
//! without this, a leader reads every entry back from the disk once per follower and once more
//! to apply it, beside the writes and syncs of the same disk.
//!
//! The kept entries are always a contiguous run ending at the replica's last appended entry,
//! and always equal to the log's: an append that does not continue the run starts it over, a
//! truncation drops the entries it removes, and a log started over drops them all. Bounded per
//! replica ([`RECENT_BYTES_MAX`]) and per process ([`RECENT_NODE_BYTES_MAX`]): past either, the
//! oldest entries go, or the appended ones are not kept.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use openraft::EntryPayload;

use super::entry::Entry;
use crate::types::Command;

/// The most bytes of entries one replica keeps in memory: twice what one append-entries
/// request carries ([`super::log_store::REPLICATION_READ_BYTES`]).
pub const RECENT_BYTES_MAX: usize = 4 << 20;
/// The most bytes of entries all the replicas of this process keep together. Beyond it, a
/// replica's appended entries are not kept (and its older ones are dropped): reads of them go
/// to the disk, as without the cache.
pub const RECENT_NODE_BYTES_MAX: usize = 256 << 20;
/// What an entry without a message payload counts for.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// Bytes kept by every replica of this process.
static NODE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The last entries of one replica.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    inner: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    entries: VecDeque<Entry>,
    bytes: usize,
}

fn size_of(e: &Entry) -> usize {
    ENTRY_OVERHEAD_BYTES
        + match &e.payload {
            EntryPayload::Normal(Command::Batch(b)) | EntryPayload::Normal(Command::Control(b)) => {
                b.len()
            }
            _ => 0,
        }
}

impl Kept {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            let n = size_of(&e);
            self.bytes -= n;
            NODE_BYTES.fetch_sub(n, Ordering::Relaxed);
        }
    }

    fn pop_back(&mut self) {
        if let Some(e) = self.entries.pop_back() {
            let n = size_of(&e);
            self.bytes -= n;
            NODE_BYTES.fetch_sub(n, Ordering::Relaxed);
        }
    }

    fn clear(&mut self) {
        NODE_BYTES.fetch_sub(self.bytes, Ordering::Relaxed);
        self.entries.clear();
        self.bytes = 0;
    }

    fn check(&self) {
        debug_assert!(self
            .entries
            .iter()
            .zip(self.entries.iter().skip(1))
            .all(|(a, b)| a.log_id.index + 1 == b.log_id.index));
        debug_assert_eq!(self.bytes, self.entries.iter().map(size_of).sum::<usize>());
    }
}

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `entries`, just appended (and durable) after the last kept one; an append that
    /// does not continue the kept run replaces it.
    pub(crate) fn push(&self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let mut k = self.lock();
        let continues = k
            .entries
            .back()
            .is_some_and(|b| b.log_id.index + 1 == first.log_id.index);
        if !continues {
            k.clear();
        }
        for e in entries {
            let n = size_of(e);
            while !k.entries.is_empty() && k.bytes + n > RECENT_BYTES_MAX {
                k.pop_front();
            }
            let node = NODE_BYTES.load(Ordering::Relaxed);
            if n > RECENT_BYTES_MAX || node + n > RECENT_NODE_BYTES_MAX {
                // Not kept: neither are those before it, or the run would have a gap.
                k.clear();
                continue;
            }
            k.entries.push_back(e.clone());
            k.bytes += n;
            NODE_BYTES.fetch_add(n, Ordering::Relaxed);
        }
        k.check();
    }

    /// The kept entries from `start` up to (not including) `end`; with `budget`, only up to the
    /// one that reaches that many bytes (at least one). `None` unless every entry asked for is
    /// kept, or with `budget` at least the first: the disk has the others.
    pub(crate) fn get(&self, start: u64, end: u64, budget: Option<usize>) -> Option<Vec<Entry>> {
        let k = self.lock();
        let first = k.first_index()?;
        if start < first {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        if skip >= k.entries.len() {
            return None;
        }
        let last = first + k.entries.len() as u64 - 1;
        if end <= start || (end > last + 1 && budget.is_none()) {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in k.entries.iter().skip(skip) {
            if e.log_id.index >= end {
                break;
            }
            out.push(e.clone());
            bytes += size_of(e) - ENTRY_OVERHEAD_BYTES;
            if budget.is_some_and(|b| bytes >= b) {
                break;
            }
        }
        Some(out)
    }

    /// Drops the kept entries from `index` on (a truncated log).
    pub(crate) fn forget_from(&self, index: u64) {
        let mut k = self.lock();
        while k.entries.back().is_some_and(|e| e.log_id.index >= index) {
            k.pop_back();
        }
        k.check();
    }

    /// Drops the kept entries before `index` (a purged log).
    pub(crate) fn forget_before(&self, index: u64) {
        let mut k = self.lock();
        while k.entries.front().is_some_and(|e| e.log_id.index < index) {
            k.pop_front();
        }
    }

    /// Drops every kept entry (a log started over).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

impl Drop for Recent {
    fn drop(&mut self) {
        self.lock().clear();
    }
}
