//! Snapshots of a replicated log whose log was cut (a topic partition past its retention, a
//! queue's acked segments): what a replica needs to continue from where the cut left the
//! log, when the entries it lacks are gone.
//!
//! The state of a replicated log is its log, so a snapshot carries no messages: the entries
//! the leader still holds after the cut reach the replica as usual, by append-entries. The
//! snapshot names the last entry compacted (`last`, with the membership in force there), the
//! offset the next entry is stored at (`start`), and, for a queue, its committed ack state. A
//! replica that installs it drops what it holds (unless it holds `last` itself) and continues
//! empty at `start`; a queue replaces its ack state with the snapshot's. The leader's entries
//! after `last` are applied over it, which leaves a queue's state as it is (the same as a
//! restart applies them over what its journal kept).
//!
//! Data, as sent (little-endian, the CRC-32 over every byte before it):
//!
//! ```text
//!  0        4         6        8          16          20              20+n
//!  +--------+---------+--------+----------+-----------+---------------+---------+
//!  | magic  | version | flags  | start    | state_len | state         | crc u32 |
//!  | "SLSN" |  u16=1  |  u16   | u64      | u32 = n   | [u8; n]       |         |
//!  +--------+---------+--------+----------+-----------+---------------+---------+
//! ```
//!
//! `flags` bit 0: the snapshot carries a state (a queue's ack-state snapshot body); the other
//! bits are zero. `raft-snapshot` (a [`super::state_file`]) keeps the last compaction's
//! [`SnapshotRecord`], from which a leader makes the snapshot when a replica needs one.

use openraft::{LogId, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::{Node, NodeId};

/// The name of the file holding the last compaction's [`SnapshotRecord`].
pub const RECORD_FILE: &str = "raft-snapshot";
/// Its magic.
pub const RECORD_MAGIC: [u8; 4] = *b"SLSR";
const MAGIC: [u8; 4] = *b"SLSN";
const VERSION: u16 = 1;
const FLAG_STATE: u16 = 1;
const HEADER_LEN: usize = 20;
const CRC_LEN: usize = 4;
/// The most state a snapshot may carry; a longer length field is damage.
pub const SNAPSHOT_STATE_BYTES_MAX: u32 = 256 << 20;

/// Where a replicated log was last compacted: the entry a snapshot stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The last entry compacted.
    pub last: LogId<NodeId>,
    /// The membership in force at `last`.
    pub membership: StoredMembership<NodeId, Node>,
    /// The offset the entry after `last` is stored at.
    pub start: u64,
}

/// What a snapshot's data holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotData {
    /// The offset the entry after the snapshot's is stored at.
    pub start: u64,
    /// A queue's committed ack state, as an ack-state snapshot body.
    pub state: Option<Vec<u8>>,
}

impl SnapshotData {
    /// Its bytes, as sent.
    pub fn encode(&self) -> Vec<u8> {
        let state = self.state.as_deref().unwrap_or_default();
        let n = u32::try_from(state.len()).expect("a snapshot's state fits its length field");
        assert!(
            n <= SNAPSHOT_STATE_BYTES_MAX,
            "a snapshot's state of {n} bytes"
        );
        let mut b = Vec::with_capacity(HEADER_LEN + state.len() + CRC_LEN);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        let flags = if self.state.is_some() { FLAG_STATE } else { 0 };
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&self.start.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(state);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes `b`; an error names what is wrong, never a panic.
    pub fn decode(b: &[u8]) -> Result<SnapshotData> {
        let bad = |reason: String| Error::BadEntry(format!("snapshot data: {reason}"));
        if b.len() < HEADER_LEN + CRC_LEN {
            return Err(bad(format!("{} bytes, shorter than a header", b.len())));
        }
        if b[..4] != MAGIC {
            return Err(bad(format!("magic {:?}", &b[..4])));
        }
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let version = u16_at(4);
        if version != VERSION {
            return Err(bad(format!(
                "version {version}, this sluice reads {VERSION}"
            )));
        }
        let flags = u16_at(6);
        if flags & !FLAG_STATE != 0 {
            return Err(bad(format!("unknown flags {flags:#x}")));
        }
        let start = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
        let n = u32::from_le_bytes(b[16..20].try_into().expect("4 bytes"));
        if n > SNAPSHOT_STATE_BYTES_MAX || b.len() != HEADER_LEN + n as usize + CRC_LEN {
            return Err(bad(format!("state of {n} bytes in {} bytes", b.len())));
        }
        let body = b.len() - CRC_LEN;
        let crc = u32::from_le_bytes(b[body..].try_into().expect("4 bytes"));
        if crc32fast::hash(&b[..body]) != crc {
            return Err(bad("checksum mismatch".into()));
        }
        if flags & FLAG_STATE == 0 && n != 0 {
            return Err(bad(format!("{n} bytes of state without the state flag")));
        }
        let state = (flags & FLAG_STATE != 0).then(|| b[HEADER_LEN..body].to_vec());
        Ok(SnapshotData { start, state })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips_and_any_damage_is_an_error() {
        for state in [None, Some(vec![]), Some(b"acks".to_vec())] {
            let d = SnapshotData {
                start: 1234,
                state: state.clone(),
            };
            let b = d.encode();
            assert_eq!(SnapshotData::decode(&b).unwrap(), d);
            for i in 0..b.len() {
                let mut bad = b.clone();
                bad[i] ^= 0x40;
                assert!(
                    SnapshotData::decode(&bad).is_err(),
                    "flip at {i} of {state:?}"
                );
            }
            for len in 0..b.len() {
                assert!(SnapshotData::decode(&b[..len]).is_err(), "cut at {len}");
            }
        }
    }

    #[test]
    fn a_hostile_length_is_refused_before_anything_is_read() {
        let mut b = SnapshotData {
            start: 0,
            state: Some(vec![1, 2, 3]),
        }
        .encode();
        b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = SnapshotData::decode(&b).unwrap_err().to_string();
        assert!(err.contains("state of"), "{err}");
    }
}
