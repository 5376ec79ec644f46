//! Idempotent producers (Kafka's `enable.idempotence`): per producer id, the epoch and the last
//! few batches it appended to this log, so a retried batch is answered with the offsets it was
//! first given instead of being written twice, and a batch that skips ahead or comes from a
//! fenced (older) epoch is refused.
//!
//! The table is not a file of its own: the producer id, epoch and sequence are in every batch a
//! Kafka producer writes (the body of a version 2 batch), so the table is rebuilt from the log.
//! It is built the first time an idempotent producer appends after the log opens, from the batches
//! in the last [`PRODUCER_SCAN_BYTES_MAX`] bytes of the log; a producer whose batches all lie
//! before that is unknown, and an unknown producer's batches are accepted whatever their sequence
//! (as Kafka does once a producer's state has expired).

use std::collections::{HashMap, VecDeque};

use crate::types::Offset;

/// How many of a producer's most recent batches are remembered to answer retries, as in Kafka
/// (`max.in.flight.requests.per.connection` may not exceed 5 with idempotence).
pub const PRODUCER_BATCHES_KEPT: usize = 5;
/// How much of the end of a log is read to rebuild the table.
pub const PRODUCER_SCAN_BYTES_MAX: u64 = 256 << 20;
/// Most producers remembered per log; the longest idle is forgotten beyond it.
pub const PRODUCERS_PER_LOG_MAX: usize = 10_000;

/// An idempotent producer's batch: who sent it and its sequence numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    /// Producer id (never negative).
    pub id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Sequence number of the first record.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: u32,
}

impl ProducerBatch {
    /// Sequence number of the last record (sequences wrap from `i32::MAX` to 0, as in Kafka).
    pub fn last_sequence(&self) -> i32 {
        next_sequence(self.base_sequence, self.record_count as i64 - 1)
    }
}

/// `seq + n`, wrapping past `i32::MAX` to 0.
fn next_sequence(seq: i32, n: i64) -> i32 {
    ((seq as i64 + n) % (i32::MAX as i64 + 1)) as i32
}

/// Why an idempotent producer's batch is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    /// The batch's epoch is older than one this producer id has written with.
    #[error("producer {id} epoch {epoch} is fenced by epoch {current}")]
    Fenced {
        /// Producer id.
        id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The newest epoch seen.
        current: i16,
    },
    /// The batch's first sequence is not the one expected next.
    #[error("producer {id} sent sequence {found} where {expected} was expected")]
    OutOfOrder {
        /// Producer id.
        id: i64,
        /// The sequence expected.
        expected: i32,
        /// The batch's first sequence.
        found: i32,
    },
}

/// What the table says of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Append it.
    Append,
    /// A retry of a batch already in the log at these offsets.
    Duplicate {
        /// Its base offset.
        base: Offset,
        /// Its last offset.
        last: Offset,
    },
}

#[derive(Clone, Copy, Debug)]
struct Kept {
    first_seq: i32,
    last_seq: i32,
    base: Offset,
    last: Offset,
}

#[derive(Debug)]
struct Entry {
    epoch: i16,
    batches: VecDeque<Kept>,
    /// When it last appended, in appends to this table (for forgetting the longest idle).
    touched: u64,
}

/// The producers of one log.
#[derive(Debug, Default)]
pub struct ProducerTable {
    map: HashMap<i64, Entry>,
    clock: u64,
}

impl ProducerTable {
    /// Decides what to do with a batch.
    pub fn check(&self, p: &ProducerBatch) -> Result<Verdict, ProducerError> {
        let Some(e) = self.map.get(&p.id) else {
            return Ok(Verdict::Append);
        };
        if p.epoch < e.epoch {
            return Err(ProducerError::Fenced {
                id: p.id,
                epoch: p.epoch,
                current: e.epoch,
            });
        }
        if p.epoch > e.epoch {
            // A new epoch starts its sequences again at 0.
            return match p.base_sequence {
                0 => Ok(Verdict::Append),
                found => Err(ProducerError::OutOfOrder {
                    id: p.id,
                    expected: 0,
                    found,
                }),
            };
        }
        let last_seq = p.last_sequence();
        if let Some(k) = e
            .batches
            .iter()
            .find(|k| k.first_seq == p.base_sequence && k.last_seq == last_seq)
        {
            return Ok(Verdict::Duplicate {
                base: k.base,
                last: k.last,
            });
        }
        let expected = e.batches.back().map_or(0, |k| next_sequence(k.last_seq, 1));
        if p.base_sequence == expected {
            Ok(Verdict::Append)
        } else {
            Err(ProducerError::OutOfOrder {
                id: p.id,
                expected,
                found: p.base_sequence,
            })
        }
    }

    /// Records a batch appended at `base..=last`.
    pub fn record(&mut self, p: &ProducerBatch, base: Offset, last: Offset) {
        self.clock += 1;
        let clock = self.clock;
        let e = self.map.entry(p.id).or_insert_with(|| Entry {
            epoch: p.epoch,
            batches: VecDeque::new(),
            touched: clock,
        });
        if p.epoch != e.epoch {
            e.epoch = p.epoch;
            e.batches.clear();
        }
        e.touched = clock;
        if e.batches.len() == PRODUCER_BATCHES_KEPT {
            e.batches.pop_front();
        }
        e.batches.push_back(Kept {
            first_seq: p.base_sequence,
            last_seq: p.last_sequence(),
            base,
            last,
        });
        if self.map.len() > PRODUCERS_PER_LOG_MAX {
            self.forget_longest_idle();
        }
    }

    /// Sets the offsets of a batch recorded before they were known (a replicated log's leader
    /// records a batch when it proposes it, and learns its offsets once it is committed); false
    /// when the table no longer holds it.
    pub fn settle(&mut self, p: &ProducerBatch, base: Offset, last: Offset) -> bool {
        let Some(e) = self.map.get_mut(&p.id).filter(|e| e.epoch == p.epoch) else {
            return false;
        };
        let last_seq = p.last_sequence();
        match e
            .batches
            .iter_mut()
            .find(|k| k.first_seq == p.base_sequence && k.last_seq == last_seq)
        {
            Some(k) => {
                (k.base, k.last) = (base, last);
                true
            }
            None => false,
        }
    }

    fn forget_longest_idle(&mut self) {
        if let Some(id) = self
            .map
            .iter()
            .min_by_key(|(_, e)| e.touched)
            .map(|(id, _)| *id)
        {
            self.map.remove(&id);
        }
    }

    /// Number of producers known.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: i64, epoch: i16, seq: i32, n: u32) -> ProducerBatch {
        ProducerBatch {
            id,
            epoch,
            base_sequence: seq,
            record_count: n,
        }
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        let mut t = ProducerTable::default();
        assert_eq!(
            t.check(&b(1, 0, 7, 1)),
            Ok(Verdict::Append),
            "unknown: any sequence"
        );
        t.record(&b(1, 0, 0, 3), Offset(10), Offset(12));
        assert_eq!(t.check(&b(1, 0, 3, 2)), Ok(Verdict::Append));
        let dup = t.check(&b(1, 0, 0, 3));
        assert_eq!(
            dup,
            Ok(Verdict::Duplicate {
                base: Offset(10),
                last: Offset(12)
            })
        );
        assert!(matches!(
            t.check(&b(1, 0, 4, 1)),
            Err(ProducerError::OutOfOrder { expected: 3, .. })
        ));
        t.record(&b(1, 1, 0, 1), Offset(20), Offset(20));
        assert!(matches!(
            t.check(&b(1, 0, 1, 1)),
            Err(ProducerError::Fenced { current: 1, .. })
        ));
        assert!(matches!(
            t.check(&b(1, 2, 5, 1)),
            Err(ProducerError::OutOfOrder { expected: 0, .. })
        ));
        assert_eq!(t.check(&b(1, 2, 0, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn only_the_last_five_batches_answer_retries() {
        let mut t = ProducerTable::default();
        for i in 0..7 {
            t.record(&b(9, 0, i, 1), Offset(i as u64), Offset(i as u64));
        }
        assert!(matches!(
            t.check(&b(9, 0, 2, 1)),
            Ok(Verdict::Duplicate { .. })
        ));
        assert!(t.check(&b(9, 0, 1, 1)).is_err());
        assert_eq!(t.check(&b(9, 0, 7, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn sequences_wrap_past_the_largest() {
        let mut t = ProducerTable::default();
        t.record(&b(3, 0, i32::MAX - 1, 2), Offset(0), Offset(1));
        assert_eq!(b(3, 0, i32::MAX, 3).last_sequence(), 1);
        assert_eq!(t.check(&b(3, 0, 0, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = ProducerTable::default();
        for id in 0..(PRODUCERS_PER_LOG_MAX as i64 + 10) {
            t.record(&b(id, 0, 0, 1), Offset(id as u64), Offset(id as u64));
        }
        assert_eq!(t.len(), PRODUCERS_PER_LOG_MAX);
        // The first producers were the longest idle.
        assert_eq!(t.check(&b(0, 0, 5, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn a_batch_recorded_before_its_offsets_is_settled_later() {
        let mut t = ProducerTable::default();
        let p = b(7, 0, 0, 3);
        let unknown = Offset(u64::MAX);
        t.record(&p, unknown, unknown);
        assert_eq!(
            t.check(&p),
            Ok(Verdict::Duplicate {
                base: unknown,
                last: unknown
            })
        );
        assert_eq!(t.check(&b(7, 0, 3, 1)), Ok(Verdict::Append));
        assert!(t.settle(&p, Offset(10), Offset(12)));
        assert_eq!(
            t.check(&p),
            Ok(Verdict::Duplicate {
                base: Offset(10),
                last: Offset(12)
            })
        );
        // Another epoch, another sequence: nothing to settle.
        assert!(!t.settle(&b(7, 1, 0, 3), Offset(1), Offset(3)));
        assert!(!t.settle(&b(7, 0, 5, 1), Offset(1), Offset(3)));
    }
}
