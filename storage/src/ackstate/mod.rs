//! Durable ack state of a queue (or of a consumer group on a topic): an ack floor, a bitmap of
//! acknowledged offsets above it, the shared cursor and per-message delivery counts, with the
//! journal records and snapshot body that persist them.
//!
//! Memory is proportional to the unacked window (floor to cursor), not to the queue length: the
//! bitmap drops whole words as the floor passes them, and delivery counts exist only for
//! delivered, unacked offsets.
//!
//! Journal records (framed by [`crate::journal`]: `{ len u32 | crc u32 | kind u8 | payload }`).
//! Writers use the run kinds (journal version 2): a delivery or ack of consecutive offsets, the
//! common case, is one entry of 12 or 16 bytes however many messages it covers. Kinds 1-3 (one
//! entry per offset) are those of version 1, still replayed.
//! ```text
//! DELIVER      (1): { count u32 | { offset u64 | attempt u32 }* }  handed out; the cursor passes them
//! ACK          (2): { count u32 | offset u64* }                    acknowledged
//! DEAD         (3): { count u32 | offset u64* }                    dead-lettered (counts as acked)
//! FLOOR        (4): { floor u64 }                                  everything below is acked (the log
//!                                                                  start moved past unacked messages)
//! DELIVER_RUNS (5): { count u32 | { first u64 | len u32 | attempt u32 }* }  as DELIVER, for each
//!                                                                  offset of first..first+len
//! ACK_RUNS     (6): { count u32 | { first u64 | len u32 }* }       as ACK, per offset of each run
//! DEAD_RUNS    (7): { count u32 | { first u64 | len u32 }* }       as DEAD, per offset of each run
//! RESET        (8): { at u64 }                                     the state starts over at `at`:
//!                                                                  every offset below it settled,
//!                                                                  none from it on (journal version 4)
//! ```
//! Snapshot body (postcard of [`AckSnapshot`]): floor, cursor, dead-lettered count, the bitmap
//! words with the offset of their first bit, and the delivery counts.
//!
//! Delivery counts survive crashes because every delivery is journaled (and, under the `always`
//! fsync policy, synced) *before* the message is handed out: a message that crashes the broker
//! each time it is delivered still reaches `max_deliveries` and the dead-letter queue.

//!
//! Files: `set` ([`AckSet`], the integer-keyed maps), `records` (run splitting and the record
//! encoders), `report` (the offline look of `sluice inspect`); the state machine here.

mod records;
mod report;
mod set;

use std::path::Path;

use crate::error::{Error, Result};

use records::run;
pub use records::{encode_deliver, encode_floor, encode_offsets, encode_reset, RECORD_ENTRIES_MAX};
pub use report::{inspect_queue_state, QueueStateReport};
pub use set::{AckSet, IntHasher, IntMap, IntSet};

/// File prefix of ack state in a queue directory.
pub const ACK_PREFIX: &str = "acks";
/// Magic of the ack journal and snapshot.
pub const ACK_MAGIC: [u8; 8] = *b"SLUICEAK";

/// Journal record kinds.
pub const REC_DELIVER: u8 = 1;
/// An ack record.
pub const REC_ACK: u8 = 2;
/// A dead-letter record.
pub const REC_DEAD: u8 = 3;
/// A floor record.
pub const REC_FLOOR: u8 = 4;
/// A delivery record of runs of consecutive offsets.
pub const REC_DELIVER_RUNS: u8 = 5;
/// An ack record of runs.
pub const REC_ACK_RUNS: u8 = 6;
/// A dead-letter record of runs.
pub const REC_DEAD_RUNS: u8 = 7;
/// A reset record: the state starts over at an offset (a cursor move).
pub const REC_RESET: u8 = 8;
/// Most offsets in one run: longer runs are split (and a longer one read back is corruption).
pub const RUN_LEN_MAX: u32 = 1 << 16;

/// The persistent part of a queue's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckState {
    /// Acknowledged offsets.
    pub acks: AckSet,
    /// Next never-delivered offset.
    pub cursor: u64,
    /// Deliveries so far of delivered, unacked offsets.
    pub counts: IntMap<u64, u32>,
    /// Messages dead-lettered since creation.
    pub dead_lettered: u64,
}

/// Snapshot body of [`AckState`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AckSnapshot {
    /// The ack floor.
    pub floor: u64,
    /// The cursor.
    pub cursor: u64,
    /// Dead-lettered count.
    pub dead_lettered: u64,
    /// Offset of bit 0 of `words[0]`.
    pub words_base: u64,
    /// The bitmap.
    pub words: Vec<u64>,
    /// Delivery counts, sorted by offset.
    pub counts: Vec<(u64, u32)>,
}

impl AckState {
    /// A fresh state starting at `start`.
    pub fn new(start: u64) -> Self {
        AckState {
            acks: AckSet::new(start),
            cursor: start,
            ..AckState::default()
        }
    }

    /// Applies one journal record.
    pub fn apply(&mut self, kind: u8, p: &[u8]) -> std::result::Result<(), String> {
        let rd = |at: usize, n: usize| -> std::result::Result<&[u8], String> {
            p.get(at..at + n)
                .ok_or_else(|| format!("record kind {kind} is too short"))
        };
        let u64_at = |at| rd(at, 8).map(|b| u64::from_le_bytes(b.try_into().expect("8")));
        let u32_at = |at| rd(at, 4).map(|b| u32::from_le_bytes(b.try_into().expect("4")));
        match kind {
            REC_DELIVER => {
                let n = u32_at(0)? as usize;
                for i in 0..n {
                    let o = u64_at(4 + i * 12)?;
                    let a = u32_at(12 + i * 12)?;
                    if !self.acks.contains(o) {
                        self.counts.insert(o, a);
                    }
                    self.cursor = self.cursor.max(o + 1);
                }
            }
            REC_ACK | REC_DEAD => {
                let n = u32_at(0)? as usize;
                for i in 0..n {
                    let o = u64_at(4 + i * 8)?;
                    if self.acks.insert(o) && kind == REC_DEAD {
                        self.dead_lettered += 1;
                    }
                    // The floor only passes acked offsets, whose counts are removed here, so
                    // no count is left below it.
                    self.counts.remove(&o);
                }
            }
            REC_FLOOR => {
                let f = u64_at(0)?;
                self.raise_floor(f);
            }
            REC_RESET => {
                // As a single node's `Queue::reset_to` leaves it: a fresh state at `at`.
                *self = AckState::new(u64_at(0)?);
            }
            REC_DELIVER_RUNS => {
                let n = u32_at(0)? as usize;
                for i in 0..n {
                    let (first, len) = run(u64_at(4 + i * 16)?, u32_at(12 + i * 16)?)?;
                    let a = u32_at(16 + i * 16)?;
                    for o in first..first + len {
                        if !self.acks.contains(o) {
                            self.counts.insert(o, a);
                        }
                    }
                    self.cursor = self.cursor.max(first + len);
                }
            }
            REC_ACK_RUNS | REC_DEAD_RUNS => {
                let n = u32_at(0)? as usize;
                for i in 0..n {
                    let (first, len) = run(u64_at(4 + i * 12)?, u32_at(12 + i * 12)?)?;
                    for o in first..first + len {
                        if self.acks.insert(o) && kind == REC_DEAD_RUNS {
                            self.dead_lettered += 1;
                        }
                        self.counts.remove(&o);
                    }
                }
            }
            k => return Err(format!("unknown ack record kind {k}")),
        }
        Ok(())
    }

    /// Acknowledges everything below `f` (and moves the cursor there if behind).
    pub fn raise_floor(&mut self, f: u64) {
        self.acks.raise_floor(f);
        self.cursor = self.cursor.max(self.acks.floor());
        self.prune();
    }

    fn prune(&mut self) {
        let floor = self.acks.floor();
        if self.counts.keys().any(|&o| o < floor) {
            self.counts.retain(|&o, _| o >= floor);
        }
    }

    /// Clamps to a log that ends at `end`; true when anything changed.
    pub fn clamp(&mut self, end: u64) -> bool {
        let before = (
            self.acks.floor(),
            self.cursor,
            self.acks.above(),
            self.counts.len(),
        );
        self.acks.clamp(end);
        self.cursor = self.cursor.min(end).max(self.acks.floor());
        self.counts.retain(|&o, _| o < end);
        before
            != (
                self.acks.floor(),
                self.cursor,
                self.acks.above(),
                self.counts.len(),
            )
    }

    /// The snapshot body.
    pub fn to_snapshot(&self) -> AckSnapshot {
        let mut counts: Vec<(u64, u32)> = self.counts.iter().map(|(&o, &c)| (o, c)).collect();
        counts.sort_unstable();
        AckSnapshot {
            floor: self.acks.floor,
            cursor: self.cursor,
            dead_lettered: self.dead_lettered,
            words_base: self.acks.base,
            words: self.acks.words.iter().copied().collect(),
            counts,
        }
    }

    /// Rebuilds a state from a snapshot body.
    pub fn from_snapshot(s: AckSnapshot) -> std::result::Result<AckState, String> {
        if s.words_base % 64 != 0 || s.words_base > s.floor || s.cursor < s.floor {
            return Err("inconsistent ack snapshot".into());
        }
        let mut acks = AckSet {
            floor: s.floor,
            base: s.words_base,
            words: s.words.into(),
            above: 0,
        };
        acks.recount();
        acks.trim();
        Ok(AckState {
            acks,
            cursor: s.cursor,
            counts: s.counts.into_iter().collect(),
            dead_lettered: s.dead_lettered,
        })
    }

    /// Encodes the snapshot body.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        postcard::to_stdvec(&self.to_snapshot()).expect("snapshot encodes")
    }

    /// Rebuilds a state from the snapshot body and the journal records that follow it.
    pub fn recover(
        path: &Path,
        snapshot: Option<&[u8]>,
        records: &[(u8, Vec<u8>)],
        start: u64,
    ) -> Result<AckState> {
        let recs = records.iter().map(|(k, p)| (*k, p.as_slice()));
        AckState::replay(snapshot, recs, start, |_, _| {}).map_err(|f| match f {
            ReplayFault::Snapshot(e) => Error::corruption(path, 0, format!("ack snapshot: {e}")),
            ReplayFault::Record { index, reason } => Error::corruption(
                path,
                index as u64,
                format!("ack journal record {index}: {reason}"),
            ),
        })
    }

    /// The one replay of ack state, for recovery and `sluice inspect` alike: the snapshot body
    /// (or a fresh state at `start`), then each journal record in order. `after` sees the state
    /// after the snapshot (`None`) and after each record (its index).
    pub fn replay<'a>(
        snapshot: Option<&[u8]>,
        records: impl IntoIterator<Item = (u8, &'a [u8])>,
        start: u64,
        mut after: impl FnMut(&AckState, Option<usize>),
    ) -> std::result::Result<AckState, ReplayFault> {
        let mut st = match snapshot {
            Some(b) => postcard::from_bytes::<AckSnapshot>(b)
                .map_err(|e| e.to_string())
                .and_then(AckState::from_snapshot)
                .map_err(ReplayFault::Snapshot)?,
            None => AckState::new(start),
        };
        if snapshot.is_some() {
            after(&st, None);
        }
        for (index, (k, p)) in records.into_iter().enumerate() {
            st.apply(k, p)
                .map_err(|reason| ReplayFault::Record { index, reason })?;
            after(&st, Some(index));
        }
        Ok(st)
    }
}

/// Where a replay of a state file stopped: its snapshot body does not decode, or a record under
/// a valid checksum is malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayFault {
    /// The snapshot body does not decode.
    Snapshot(String),
    /// The record at this index (0 = the first after the snapshot) is malformed.
    Record {
        /// Its index among the journal's records.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests;
