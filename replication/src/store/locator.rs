//! From a Raft index to the offsets of the batches that store it.
//!
//! Raft indexes and offsets both grow along the log, one or more batches per index, so an
//! index is found by a binary search over offsets for its first batch, reading one batch header
//! and stamp per step (about 20 steps for a million offsets), then forward to its last batch.
//! The entries appended since the log opened, the ones replication and apply ask for, are kept
//! in memory ([`RECENT_ENTRIES_MAX`]).

use std::collections::VecDeque;
use std::sync::Mutex;

use sluice_storage::{Log, Offset};

use super::entry::stamp_of;
use crate::error::{Error, Result};

/// The most recent entries whose offsets are kept in memory.
pub const RECENT_ENTRIES_MAX: usize = 16_384;

/// Where an entry's batches are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// The entry's Raft index.
    pub index: u64,
    /// The term it was appended in.
    pub term: u64,
    /// Offset of the first record of its first batch.
    pub base: Offset,
    /// One past the last record of its last batch.
    pub next: Offset,
}

/// Finds entries of one log.
#[derive(Debug)]
pub struct Locator {
    log: Log,
    recent: Mutex<VecDeque<Place>>,
}

impl Locator {
    pub(crate) fn new(log: Log) -> Locator {
        Locator {
            log,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, VecDeque<Place>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers an entry just appended.
    pub fn push(&self, p: Place) {
        let mut r = self.recent();
        if let Some(last) = r.back() {
            debug_assert!(
                p.index > last.index && p.base == last.next,
                "{p:?} after {last:?}"
            );
        }
        if r.len() == RECENT_ENTRIES_MAX {
            r.pop_front();
        }
        r.push_back(p);
    }

    /// Forgets every entry from `index` on (a truncation).
    pub fn forget_from(&self, index: u64) {
        self.recent().retain(|p| p.index < index);
    }

    /// Where entry `index` is; `None` when the log does not hold it.
    pub fn find(&self, index: u64) -> Result<Option<Place>> {
        {
            let r = self.recent();
            if let Some(first) = r.front() {
                if index >= first.index {
                    let k = (index - first.index) as usize;
                    return Ok(r
                        .get(k)
                        .copied()
                        .inspect(|p| debug_assert_eq!(p.index, index)));
                }
            }
        }
        self.search(index)
    }

    /// Binary search over the offsets of the log for the first batch stamped `index`, then
    /// forward to the entry's last batch.
    fn search(&self, index: u64) -> Result<Option<Place>> {
        // Up to what a read can reach: an append being synced (written, not yet durable) is
        // not readable yet, and is never the entry sought (only durable entries are asked for).
        let (mut lo, mut hi) = (self.log.start_offset(), self.log.readable_end());
        while lo < hi {
            let mid = Offset(lo.0 + (hi.0 - lo.0) / 2);
            let Some(b) = self.batch_at(mid)? else {
                return Ok(None);
            };
            if b.index < index {
                lo = b.next;
            } else {
                hi = b.base;
            }
        }
        self.entry_from(lo, index)
    }

    /// The stamp and offsets of the batch that holds offset `at`.
    fn batch_at(&self, at: Offset) -> Result<Option<StampedBatch>> {
        let Some(b) = self.log.read_uncommitted(at, 1)?.into_iter().next() else {
            return Ok(None);
        };
        let s = stamp_of(&b)?;
        Ok(Some(StampedBatch {
            index: s.index,
            term: s.term,
            more: s.more,
            base: b.header.base_offset,
            next: b.header.next_offset(),
        }))
    }

    /// Entry `index` whose first batch starts at `at`: `None` when another entry starts there,
    /// or when its last batch is not readable (not yet durable, or torn off).
    fn entry_from(&self, at: Offset, index: u64) -> Result<Option<Place>> {
        let Some(first) = self.batch_at(at)? else {
            return Ok(None);
        };
        if first.index != index || first.base != at {
            return Ok(None);
        }
        let mut last = first;
        while last.more > 0 {
            match self.batch_at(last.next)? {
                Some(b) if b.index == index && b.more == last.more - 1 => last = b,
                Some(b) => {
                    return Err(Error::BadEntry(format!(
                        "entry {index} expects {} more batches, but the batch at {} is of \
                         entry {} with {} to follow",
                        last.more, b.base, b.index, b.more
                    )))
                }
                None => return Ok(None),
            }
        }
        Ok(Some(Place {
            index,
            term: first.term,
            base: first.base,
            next: last.next,
        }))
    }

    /// The last batch of the log when it is not the last of its entry: the start of a torn
    /// entry, whose other batches were never written (the entry was never reported durable).
    pub fn torn_tail(&self) -> Result<Option<Offset>> {
        let end = self.log.readable_end();
        if end == self.log.start_offset() {
            return Ok(None);
        }
        let Some(b) = self.batch_at(Offset(end.0 - 1))? else {
            return Ok(None);
        };
        if b.more == 0 {
            return Ok(None);
        }
        // Back to the entry's first batch.
        let (mut lo, mut hi) = (self.log.start_offset(), b.base);
        while lo < hi {
            let mid = Offset(lo.0 + (hi.0 - lo.0) / 2);
            match self.batch_at(mid)? {
                Some(m) if m.index < b.index => lo = m.next,
                Some(m) => hi = m.base,
                None => break,
            }
        }
        Ok(Some(lo))
    }

    /// The last entry of the log.
    pub fn last(&self) -> Result<Option<Place>> {
        if let Some(p) = self.recent().back() {
            return Ok(Some(*p));
        }
        let end = self.log.readable_end();
        if end == self.log.start_offset() {
            return Ok(None);
        }
        let Some(b) = self.batch_at(Offset(end.0 - 1))? else {
            return Ok(None);
        };
        if b.more > 0 {
            return Err(Error::BadEntry(format!(
                "the log ends inside entry {} ({} batches missing)",
                b.index, b.more
            )));
        }
        let p = self.search(b.index)?;
        if let Some(p) = p {
            if p.next != end {
                return Err(Error::BadEntry(format!(
                    "the last entry ends at {} but the log at {end}",
                    p.next
                )));
            }
        }
        Ok(p)
    }
}

/// One stored batch's stamp and offsets.
#[derive(Clone, Copy, Debug)]
struct StampedBatch {
    index: u64,
    term: u64,
    more: u16,
    base: Offset,
    next: Offset,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sluice_storage::format::{encode_batch, set_raft_stamp, RaftStamp};
    use sluice_storage::{LogConfig, Record, StdFs};

    use super::*;

    fn stamped(index: u64, records: usize) -> Vec<u8> {
        let rs: Vec<Record> = (0..records)
            .map(|i| Record::from_value(vec![i as u8; 8]))
            .collect();
        let mut b = encode_batch(&rs, 1);
        set_raft_stamp(
            &mut b,
            RaftStamp {
                term: 1,
                index,
                more: 0,
            },
        )
        .unwrap();
        b
    }

    #[test]
    fn a_search_finds_old_entries_while_a_large_append_is_not_yet_durable() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(Arc::new(StdFs), dir.path(), LogConfig::default()).unwrap();
        for index in 1..=3 {
            let info = log.append_replicated(stamped(index, 1)).unwrap();
            log.sync_to(info.next_offset()).unwrap();
        }
        // Written, not synced: most offsets of the log are not readable yet.
        log.append_replicated(stamped(4, 100)).unwrap();
        assert!(log.end_offset() > log.readable_end());
        let locator = Locator::new(log.clone());
        for index in 1..=3 {
            let p = locator.find(index).unwrap().unwrap();
            assert_eq!((p.index, p.base), (index, Offset(index - 1)));
        }
        assert_eq!(locator.find(4).unwrap(), None);
        assert_eq!(locator.last().unwrap().unwrap().index, 3);
    }
}
