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
//! ```
//! Snapshot body (postcard of [`AckSnapshot`]): floor, cursor, dead-lettered count, the bitmap
//! words with the offset of their first bit, and the delivery counts.
//!
//! Delivery counts survive crashes because every delivery is journaled (and, under the `always`
//! fsync policy, synced) *before* the message is handed out: a message that crashes the broker
//! each time it is delivered still reaches `max_deliveries` and the dead-letter queue.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::journal::{self, encode_record};

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
/// Most offsets in one run: longer runs are split (and a longer one read back is corruption).
pub const RUN_LEN_MAX: u32 = 1 << 16;

/// A fast hasher for integer keys (offsets, consumer ids): the Fx multiply-rotate mix. The keys
/// are not attacker-chosen strings, so SipHash's flood resistance buys nothing here.
#[derive(Clone, Copy, Debug, Default)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// A hash map keyed by integers.
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;
/// A hash set of integers.
pub type IntSet<K> = HashSet<K, BuildHasherDefault<IntHasher>>;

/// The ack floor plus a bitmap of acknowledged offsets above it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckSet {
    floor: u64,
    /// Offset of bit 0 of `words[0]`: a multiple of 64, at most `floor`.
    base: u64,
    words: VecDeque<u64>,
    /// Set bits at or above the floor.
    above: u64,
}

impl AckSet {
    /// An empty set whose floor is `floor`.
    pub fn new(floor: u64) -> Self {
        AckSet {
            floor,
            base: floor & !63,
            words: VecDeque::new(),
            above: 0,
        }
    }

    /// Every offset below it is acknowledged.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Acknowledged offsets above the floor.
    pub fn above(&self) -> u64 {
        self.above
    }

    /// Words of bitmap held (memory is 8 bytes each).
    pub fn words(&self) -> usize {
        self.words.len()
    }

    /// True when `o` is acknowledged.
    pub fn contains(&self, o: u64) -> bool {
        if o < self.floor {
            return true;
        }
        let i = ((o - self.base) / 64) as usize;
        i < self.words.len() && self.words[i] & (1 << ((o - self.base) % 64)) != 0
    }

    /// Acknowledges `o`; false when it already was.
    pub fn insert(&mut self, o: u64) -> bool {
        if self.contains(o) {
            return false;
        }
        let i = ((o - self.base) / 64) as usize;
        if i >= self.words.len() {
            self.words.resize(i + 1, 0);
        }
        self.words[i] |= 1 << ((o - self.base) % 64);
        self.above += 1;
        if o == self.floor {
            self.advance();
        }
        true
    }

    fn advance(&mut self) {
        loop {
            let rel = self.floor - self.base;
            let i = (rel / 64) as usize;
            if i >= self.words.len() {
                break;
            }
            let sh = rel % 64;
            let ones = ((!(self.words[i] >> sh)).trailing_zeros() as u64).min(64 - sh);
            self.floor += ones;
            self.above -= ones;
            if ones < 64 - sh {
                break;
            }
        }
        self.trim();
    }

    fn trim(&mut self) {
        while !self.words.is_empty() && self.base + 64 <= self.floor {
            self.words.pop_front();
            self.base += 64;
        }
        if self.words.is_empty() {
            self.base = self.floor & !63;
        }
    }

    fn recount(&mut self) {
        let mut n = 0u64;
        for (i, w) in self.words.iter().enumerate() {
            let lo = self.base + i as u64 * 64;
            let mut w = *w;
            if lo < self.floor {
                let sh = self.floor - lo;
                w = if sh >= 64 { 0 } else { w & (!0u64 << sh) };
            }
            n += w.count_ones() as u64;
        }
        self.above = n;
    }

    /// Acknowledges everything below `f`.
    pub fn raise_floor(&mut self, f: u64) {
        if f <= self.floor {
            return;
        }
        self.floor = f;
        self.trim();
        self.recount();
        self.advance();
    }

    /// Forgets everything at or above `end` (the log lost its tail); the floor is clamped to it.
    pub fn clamp(&mut self, end: u64) {
        if self.floor >= end {
            *self = AckSet::new(end);
            return;
        }
        let keep = (end - self.base).div_ceil(64) as usize;
        self.words.truncate(keep);
        if self.words.len() == keep {
            // The last word straddles `end`: clear its bits at or above it.
            let top = end - self.base - (keep as u64 - 1) * 64;
            if top < 64 {
                let last = self.words.back_mut().expect("keep >= 1 words");
                *last &= (1u64 << top) - 1;
            }
        }
        self.recount();
    }

    /// Acked offsets at or above the floor, ascending (for tests and inspection).
    pub fn acked_above(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for (i, w) in self.words.iter().enumerate() {
            let mut w = *w;
            while w != 0 {
                let b = w.trailing_zeros() as u64;
                let o = self.base + i as u64 * 64 + b;
                if o >= self.floor {
                    out.push(o);
                }
                w &= w - 1;
            }
        }
        out
    }
}

/// Checks a run read from a record: 1 to [`RUN_LEN_MAX`] offsets, none past `u64::MAX`.
fn run(first: u64, len: u32) -> std::result::Result<(u64, u64), String> {
    if len == 0 || len > RUN_LEN_MAX {
        return Err(format!("run of {len} offsets (1 to {RUN_LEN_MAX} allowed)"));
    }
    if first.checked_add(len as u64).is_none() {
        return Err(format!(
            "run of {len} offsets from {first} passes the largest offset"
        ));
    }
    Ok((first, len as u64))
}

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

/// Most entries in one record, which keeps every record far below the journal's record limit.
pub const RECORD_ENTRIES_MAX: usize = 1 << 16;

/// Splits items (ascending by offset) into runs of consecutive offsets that share a value.
fn runs<T: Copy + PartialEq>(items: impl IntoIterator<Item = (u64, T)>) -> Vec<(u64, u32, T)> {
    let mut out: Vec<(u64, u32, T)> = Vec::new();
    for (o, v) in items {
        match out.last_mut() {
            Some((first, len, w))
                if *w == v && *len < RUN_LEN_MAX && first.checked_add(*len as u64) == Some(o) =>
            {
                *len += 1
            }
            _ => out.push((o, 1, v)),
        }
    }
    out
}

/// Encodes DELIVER_RUNS records (one per [`RECORD_ENTRIES_MAX`] runs) for `(offset, attempt)`
/// items, ascending by offset (any order is correct, ascending is compact).
// Format: { len u32 | crc u32 | kind=5 u8 | count u32 | { first u64 | len u32 | attempt u32 }* }
pub fn encode_deliver(out: &mut Vec<u8>, items: &[(u64, u32)]) {
    let runs = runs(items.iter().copied());
    for runs in runs.chunks(RECORD_ENTRIES_MAX) {
        let mut p = Vec::with_capacity(4 + runs.len() * 16);
        p.extend_from_slice(&(runs.len() as u32).to_le_bytes());
        for (first, len, attempt) in runs {
            p.extend_from_slice(&first.to_le_bytes());
            p.extend_from_slice(&len.to_le_bytes());
            p.extend_from_slice(&attempt.to_le_bytes());
        }
        encode_record(out, REC_DELIVER_RUNS, &p);
    }
}

/// Encodes ACK_RUNS or DEAD_RUNS records (`kind` is [`REC_ACK`] or [`REC_DEAD`]; one record per
/// [`RECORD_ENTRIES_MAX`] runs), for offsets ascending (any order is correct).
// Format: { len u32 | crc u32 | kind=6|7 u8 | count u32 | { first u64 | len u32 }* }
pub fn encode_offsets(out: &mut Vec<u8>, kind: u8, offsets: &[u64]) {
    let kind = match kind {
        REC_DEAD | REC_DEAD_RUNS => REC_DEAD_RUNS,
        _ => REC_ACK_RUNS,
    };
    let runs = runs(offsets.iter().map(|&o| (o, ())));
    for runs in runs.chunks(RECORD_ENTRIES_MAX) {
        let mut p = Vec::with_capacity(4 + runs.len() * 12);
        p.extend_from_slice(&(runs.len() as u32).to_le_bytes());
        for (first, len, ()) in runs {
            p.extend_from_slice(&first.to_le_bytes());
            p.extend_from_slice(&len.to_le_bytes());
        }
        encode_record(out, kind, &p);
    }
}

/// Encodes a FLOOR record.
// Format: { len u32 | crc u32 | kind=4 u8 | floor u64 }
pub fn encode_floor(out: &mut Vec<u8>, floor: u64) {
    encode_record(out, REC_FLOOR, &floor.to_le_bytes());
}

/// What an offline look at a queue's ack state found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStateReport {
    /// True when a snapshot exists.
    pub has_snapshot: bool,
    /// Journal generation in use.
    pub generation: u64,
    /// Valid journal records after the snapshot.
    pub journal_records: usize,
    /// Bytes of torn or bad journal tail (cut at the next open).
    pub torn_bytes: u64,
    /// True when valid records follow the bad one: damage in the middle, not a torn write.
    pub damaged_mid: bool,
    /// The ack floor.
    pub floor: u64,
    /// The cursor.
    pub cursor: u64,
    /// Acked offsets above the floor.
    pub acked_above_floor: u64,
    /// Delivered, unacked offsets with their delivery counts (these are redelivered after a
    /// restart), sorted by offset.
    pub in_flight: Vec<(u64, u32)>,
    /// Dead-lettered since creation.
    pub dead_lettered: u64,
}

/// Reads the ack state of the queue or group directory `dir` without opening it for writing
/// (nothing is cut, created or removed). Offsets are as stored, not clamped to the log end.
pub fn inspect_queue_state(fs: &dyn FileSystem, dir: &Path) -> Result<QueueStateReport> {
    let l = journal::load(fs, dir, ACK_PREFIX, ACK_MAGIC)?;
    let st = AckState::recover(dir, l.snapshot.as_deref(), &l.records, 0)?;
    let mut in_flight: Vec<(u64, u32)> = st.counts.iter().map(|(&o, &c)| (o, c)).collect();
    in_flight.sort_unstable();
    Ok(QueueStateReport {
        has_snapshot: l.snapshot.is_some(),
        generation: l.generation,
        journal_records: l.records.len(),
        torn_bytes: l.torn_len(),
        damaged_mid: l.damaged_mid,
        floor: st.acks.floor(),
        cursor: st.cursor,
        acked_above_floor: st.acks.above(),
        in_flight,
        dead_lettered: st.dead_lettered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn floor_advances_over_runs_and_memory_follows_the_window() {
        let mut a = AckSet::new(0);
        for o in (1..1000).rev() {
            assert!(a.insert(o));
        }
        assert_eq!(a.floor(), 0);
        assert_eq!(a.above(), 999);
        assert!(a.insert(0));
        assert_eq!(a.floor(), 1000);
        assert_eq!(a.above(), 0);
        assert!(a.words() <= 1);
        assert!(!a.insert(5));
        a.insert(1100);
        assert_eq!(a.acked_above(), vec![1100]);
        a.raise_floor(1050);
        assert_eq!(a.floor(), 1050);
        a.clamp(1080);
        assert_eq!(a.above(), 0);
        a.clamp(10);
        assert_eq!(a.floor(), 10);
    }

    proptest! {
        #[test]
        fn ackset_matches_a_set(ops in proptest::collection::vec((0u64..300, 0u8..12), 1..200)) {
            let mut a = AckSet::new(0);
            let mut model = BTreeSet::new();
            let mut floor = 0u64;
            for (o, op) in ops {
                if op == 0 {
                    a.raise_floor(o);
                    if o > floor { floor = o; }
                } else if op == 1 {
                    // The log lost everything from `o` on.
                    a.clamp(o);
                    model.retain(|&x| x < o);
                    if floor > o { floor = o; }
                } else {
                    a.insert(o);
                    model.insert(o);
                }
                while model.contains(&floor) { floor += 1; }
                prop_assert_eq!(a.floor(), floor);
                let above: Vec<u64> = model.iter().copied().filter(|&x| x >= floor).collect();
                prop_assert_eq!(a.acked_above(), above.clone());
                prop_assert_eq!(a.above(), above.len() as u64);
                // The snapshot roundtrips.
                let st = AckState { acks: a.clone(), cursor: 300, ..AckState::default() };
                let back = AckState::from_snapshot(st.to_snapshot()).unwrap();
                prop_assert_eq!(back.acks.acked_above(), above);
                prop_assert_eq!(back.acks.floor(), floor);
            }
        }
    }

    #[test]
    fn runs_are_compact_and_replay_like_single_offsets() {
        // The same history in version-1 records (one entry per offset) and in runs.
        let deliveries: Vec<(u64, u32)> = (10..1010).map(|o| (o, 1)).chain([(1010, 2)]).collect();
        let acks: Vec<u64> = (10..500).chain(600..700).collect();
        let mut v1 = Vec::new();
        let mut p = (deliveries.len() as u32).to_le_bytes().to_vec();
        for (o, a) in &deliveries {
            p.extend_from_slice(&o.to_le_bytes());
            p.extend_from_slice(&a.to_le_bytes());
        }
        encode_record(&mut v1, REC_DELIVER, &p);
        let mut p = (acks.len() as u32).to_le_bytes().to_vec();
        for o in &acks {
            p.extend_from_slice(&o.to_le_bytes());
        }
        encode_record(&mut v1, REC_ACK, &p);
        let mut v2 = Vec::new();
        encode_deliver(&mut v2, &deliveries);
        encode_offsets(&mut v2, REC_ACK, &acks);
        assert!(
            v2.len() < 100,
            "two runs of deliveries, two of acks: {} bytes",
            v2.len()
        );
        let replay = |b: &[u8]| {
            let mut st = AckState::new(10);
            for (k, p) in crate::journal::decode_records(b).0 {
                st.apply(k, &p).unwrap();
            }
            st
        };
        let (a, b) = (replay(&v1), replay(&v2));
        assert_eq!(a, b);
        assert_eq!((b.acks.floor(), b.cursor, b.counts.len()), (500, 1011, 411));
        assert_eq!(b.counts.get(&1010), Some(&2));
        // A run longer than the limit is split; a bad run read back is an error, not a panic.
        let long: Vec<u64> = (0..RUN_LEN_MAX as u64 + 5).collect();
        let mut b = Vec::new();
        encode_offsets(&mut b, REC_DEAD, &long);
        let recs = crate::journal::decode_records(&b).0;
        assert_eq!(recs[0].0, REC_DEAD_RUNS);
        assert_eq!(u32::from_le_bytes(recs[0].1[..4].try_into().unwrap()), 2);
        let mut st = AckState::new(0);
        st.apply(recs[0].0, &recs[0].1).unwrap();
        assert_eq!(
            (st.acks.floor(), st.dead_lettered),
            (long.len() as u64, long.len() as u64)
        );
        for bad in [(5u64, 0u32), (5, RUN_LEN_MAX + 1), (u64::MAX - 1, 3)] {
            let mut p = 1u32.to_le_bytes().to_vec();
            p.extend_from_slice(&bad.0.to_le_bytes());
            p.extend_from_slice(&bad.1.to_le_bytes());
            assert!(AckState::new(0).apply(REC_ACK_RUNS, &p).is_err(), "{bad:?}");
        }
        assert!(AckState::new(0)
            .apply(REC_DELIVER_RUNS, &[1, 0, 0, 0, 9])
            .is_err());
    }

    #[test]
    fn records_apply() {
        let mut st = AckState::new(0);
        let mut b = Vec::new();
        encode_deliver(&mut b, &[(0, 1), (1, 1), (2, 1)]);
        encode_offsets(&mut b, REC_ACK, &[1]);
        encode_offsets(&mut b, REC_DEAD, &[0]);
        encode_deliver(&mut b, &[(2, 2)]);
        let (recs, _) = crate::journal::decode_records(&b);
        for (k, p) in &recs {
            st.apply(*k, p).unwrap();
        }
        assert_eq!(st.acks.floor(), 2);
        assert_eq!(st.cursor, 3);
        assert_eq!(st.dead_lettered, 1);
        assert_eq!(st.counts.get(&2), Some(&2));
        assert!(st.clamp(2));
        assert_eq!(st.cursor, 2);
        assert!(st.counts.is_empty());
    }
}
