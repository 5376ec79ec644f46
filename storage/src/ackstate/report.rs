//! [`inspect_queue_state`]: an offline, read-only look at a queue's (or group partition's) ack
//! state for `sluice inspect`.

use std::path::Path;

use crate::error::Result;
use crate::fs::FileSystem;
use crate::journal;

use super::{AckState, ACK_MAGIC, ACK_PREFIX};

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
