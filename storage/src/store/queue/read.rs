//! Reading a queue's messages by offset, through a small cache of the batches read last.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::log::Batch;
use crate::types::{Offset, Record};

use super::super::lock;
use super::{delivery_bytes, Queue};

/// Most bytes of stored batches a queue keeps from its latest reads.
pub const READ_CACHE_BYTES_MAX: usize = 2 << 20;

/// The batches a queue read last, at most [`READ_CACHE_BYTES_MAX`] bytes (or the one latest
/// batch, when that alone is larger: up to `batch_bytes_max`), oldest dropped first.
/// Consumers take turns at the cursor, each a window's worth, and a read returns whole batches
/// (a producer's batch of 1000 holds two windows of 500): without this, every batch was read
/// and its checksum checked once per consumer round that touched it. Stored batches never
/// change, so a cached one is always right; one whose segment retention has since removed may
/// still be handed out if it was picked while visible.
#[derive(Debug, Default)]
pub(in crate::store) struct ReadCache {
    pub(in crate::store) batches: VecDeque<Batch>,
    pub(in crate::store) bytes: usize,
}

impl ReadCache {
    pub(in crate::store) fn find(&self, o: u64) -> Option<Batch> {
        self.batches
            .iter()
            .rev()
            .find(|b| b.header.base_offset.0 <= o && o <= b.header.last_offset().0)
            .cloned()
    }

    pub(in crate::store) fn put(&mut self, b: Batch) {
        if self
            .batches
            .iter()
            .any(|c| c.header.base_offset == b.header.base_offset)
        {
            return;
        }
        self.bytes += b.bytes.len();
        self.batches.push_back(b);
        while self.bytes > READ_CACHE_BYTES_MAX && self.batches.len() > 1 {
            let old = self.batches.pop_front().expect("more than one batch");
            self.bytes -= old.bytes.len();
        }
    }
}

impl Queue {
    /// Reads the records at `offsets` (ascending); a record the log no longer holds is `None`.
    pub(in crate::store) fn read_at(&self, offsets: &[u64]) -> Result<Vec<Option<Record>>> {
        self.read_at_within(offsets, usize::MAX)
    }

    /// [`Queue::read_at`] that stops once the records read take `max_bytes` ([`delivery_bytes`]):
    /// the result is then a prefix of `offsets`, of at least one record.
    pub(in crate::store) fn read_at_within(
        &self,
        offsets: &[u64],
        max_bytes: usize,
    ) -> Result<Vec<Option<Record>>> {
        let mut out: Vec<Option<Record>> = Vec::with_capacity(offsets.len());
        let mut bytes = 0usize;
        let mut i = 0;
        while i < offsets.len() {
            // A run of consecutive offsets is read together.
            let mut j = i + 1;
            while j < offsets.len() && offsets[j] == offsets[j - 1] + 1 {
                j += 1;
            }
            let mut from = offsets[i];
            let end = offsets[j - 1] + 1;
            while from < end {
                let cached = lock(&self.read_cache).find(from);
                let batch = match cached {
                    Some(b) => b,
                    None => {
                        let n = (end - from) as usize;
                        let bytes = (n * 512).clamp(64 << 10, 8 << 20);
                        let batches = match self.log.read(Offset(from), bytes) {
                            Ok(b) => b,
                            Err(Error::OffsetOutOfRange { .. }) => Vec::new(),
                            Err(e) => return Err(e),
                        };
                        let first = batches
                            .iter()
                            .find(|b| b.header.last_offset().0 >= from)
                            .cloned();
                        let mut cache = lock(&self.read_cache);
                        for b in batches {
                            cache.put(b);
                        }
                        match first {
                            Some(b) => b,
                            None => {
                                // Nothing at or after `from`: the rest of the run is gone.
                                while from < end {
                                    out.push(None);
                                    from += 1;
                                }
                                break;
                            }
                        }
                    }
                };
                if batch.header.is_control() {
                    // A replicated queue's control entry (its own state changes, a new
                    // leader's blank entry) takes offsets but holds no message: they count as
                    // gone, and are acked as the cursor passes them.
                    let next = batch.header.next_offset().0.min(end);
                    while from < next {
                        out.push(None);
                        from += 1;
                    }
                    continue;
                }
                let records = batch.records()?;
                let mut it = records.iter();
                it.skip_to(Offset(from));
                for r in it {
                    let r = r.map_err(crate::log::record_error)?;
                    let o = r.offset.0;
                    if o < from {
                        continue;
                    }
                    if o >= end {
                        break;
                    }
                    while from < o {
                        out.push(None);
                        from += 1;
                    }
                    let record = r.to_record();
                    bytes = bytes.saturating_add(delivery_bytes(&record));
                    out.push(Some(record));
                    from += 1;
                    if bytes >= max_bytes {
                        return Ok(out);
                    }
                }
                // Offsets of this batch past its last record (none are expected) are gone.
                let next = batch.header.next_offset().0.min(end);
                while from < next {
                    out.push(None);
                    from += 1;
                }
            }
            i = j;
        }
        debug_assert_eq!(out.len(), offsets.len());
        Ok(out)
    }
}
