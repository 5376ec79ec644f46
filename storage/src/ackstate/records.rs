//! The journal records of the ack state (layouts in the module above): runs of consecutive
//! offsets, and the encoders of DELIVER_RUNS, ACK_RUNS/DEAD_RUNS and FLOOR records.

use crate::journal::encode_record;

use super::{
    REC_ACK_RUNS, REC_DEAD, REC_DEAD_RUNS, REC_DELIVER_RUNS, REC_FLOOR, REC_RESET, RUN_LEN_MAX,
};

/// Checks a run read from a record: 1 to [`RUN_LEN_MAX`] offsets, none past `u64::MAX`.
pub(super) fn run(first: u64, len: u32) -> std::result::Result<(u64, u64), String> {
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

/// A RESET record: the state starts over at `at` (journal version 4).
pub fn encode_reset(out: &mut Vec<u8>, at: u64) {
    encode_record(out, REC_RESET, &at.to_le_bytes());
}
