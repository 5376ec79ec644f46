//! What a replicated log adds to a stored batch: the Raft log id stamped into the Kafka body,
//! and control batches (see docs/format.md, "Replicated logs").
//!
//! A replicated log stores each Raft entry as one batch or as several consecutive batches (the
//! publishes a leader gathered into one entry). Every batch of an entry carries the entry's log
//! id: its term in the Kafka body's `partitionLeaderEpoch` (which is what Kafka keeps there: the
//! leader epoch) and, in the body's `baseOffset` (not authoritative in a stored batch: the
//! header's `base_offset` is, and a Kafka fetch overwrites it in the copy it sends), its Raft
//! index in the low 48 bits and how many batches of the same entry follow this one in bits
//! 48-62 (0 in an entry's last batch, so an entry of one batch reads as before). Neither field
//! is under the Kafka CRC-32C; both are under sluice's records checksum, which stamping
//! recomputes. A single-node log leaves both 0.

use crate::batch::{
    BatchHeader, BATCH_HEADER_LEN, BATCH_VERSION, B_ATTRIBUTES, B_END, B_HEADER_CRC, B_MAGIC,
    B_RECORDS_CRC,
};
use crate::builder::BatchBuilder;
use crate::error::BatchError;
use crate::kafka::{KAFKA_LOG_OVERHEAD, K_BASE_OFFSET, K_LEADER_EPOCH};
use crate::types::TimestampMs;
use crate::{crc, ATTR_CONTROL};

/// The Raft log id of a stored batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RaftStamp {
    /// The term of the leader that appended the entry.
    pub term: u64,
    /// The entry's Raft index (1-based; 0 in a log never replicated).
    pub index: u64,
    /// How many batches of the same entry follow this one (0 in its last batch).
    pub more: u16,
}

/// The largest term a stamp can hold: `partitionLeaderEpoch` is an `i32`.
pub const RAFT_TERM_MAX: u64 = i32::MAX as u64;
/// Bits of `baseOffset` that hold the Raft index.
const RAFT_INDEX_BITS: u32 = 48;
/// The largest Raft index a stamp can hold.
pub const RAFT_INDEX_MAX: u64 = (1 << RAFT_INDEX_BITS) - 1;
/// The most batches that may follow one in the same entry (15 bits, below the sign bit).
pub const RAFT_MORE_MAX: u16 = (1 << 15) - 1;

/// The Raft log id stamped in a version 2 batch; `None` for version 1 or a batch too short.
pub fn raft_stamp(batch: &[u8], h: &BatchHeader) -> Option<RaftStamp> {
    if h.version != BATCH_VERSION || batch.len() < BATCH_HEADER_LEN + KAFKA_LOG_OVERHEAD + 4 {
        return None;
    }
    let k = &batch[BATCH_HEADER_LEN..];
    let field = i64::from_be_bytes(k[K_BASE_OFFSET..K_BASE_OFFSET + 8].try_into().ok()?);
    let field = u64::try_from(field).ok()?;
    let term = i32::from_be_bytes(k[K_LEADER_EPOCH..K_LEADER_EPOCH + 4].try_into().ok()?);
    Some(RaftStamp {
        term: u64::try_from(term).ok()?,
        index: field & RAFT_INDEX_MAX,
        more: (field >> RAFT_INDEX_BITS) as u16,
    })
}

/// Stamps a version 2 batch with its Raft log id and recomputes both of sluice's checksums.
pub fn set_raft_stamp(batch: &mut [u8], stamp: RaftStamp) -> Result<(), BatchError> {
    if batch.len() < BATCH_HEADER_LEN + KAFKA_LOG_OVERHEAD + 4 || batch[8] != BATCH_VERSION {
        return Err(BatchError::Short { len: batch.len() });
    }
    if stamp.term > RAFT_TERM_MAX || stamp.index > RAFT_INDEX_MAX || stamp.more > RAFT_MORE_MAX {
        return Err(BatchError::OffsetOverflow);
    }
    let field = stamp.index | (u64::from(stamp.more) << RAFT_INDEX_BITS);
    let k = &mut batch[BATCH_HEADER_LEN..];
    k[K_BASE_OFFSET..K_BASE_OFFSET + 8].copy_from_slice(&field.to_be_bytes());
    k[K_LEADER_EPOCH..K_LEADER_EPOCH + 4].copy_from_slice(&(stamp.term as i32).to_be_bytes());
    let records_crc = crc(&batch[BATCH_HEADER_LEN..]);
    batch[B_RECORDS_CRC..B_RECORDS_CRC + 4].copy_from_slice(&records_crc.to_le_bytes());
    reseal_header(batch);
    Ok(())
}

/// A control batch: one record whose value is `payload`, marked [`ATTR_CONTROL`].
pub fn encode_control_batch(payload: &[u8], now: TimestampMs) -> Vec<u8> {
    let mut b = BatchBuilder::with_capacity(BATCH_HEADER_LEN + 80 + payload.len());
    b.push(now, None, &[], payload);
    let mut batch = b.finish();
    batch[B_ATTRIBUTES] |= ATTR_CONTROL;
    reseal_header(&mut batch);
    batch
}

/// The payload of a control batch (the value of its one record).
pub fn control_payload(batch: &[u8], h: &BatchHeader) -> Option<bytes::Bytes> {
    if !h.is_control() {
        return None;
    }
    let records = crate::BatchRecords::new(batch, h).ok()?;
    let r = records.iter().next()?.ok()?;
    Some(bytes::Bytes::copy_from_slice(r.value))
}

fn reseal_header(batch: &mut [u8]) {
    let c = crc(&batch[B_MAGIC..B_END]);
    batch[B_HEADER_CRC..B_HEADER_CRC + 4].copy_from_slice(&c.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_batch_header, encode_batch, validate_batch, Record};

    #[test]
    fn a_stamp_reads_back_and_the_batch_stays_valid() {
        let mut b = encode_batch(&[Record::from_value(b"hello".to_vec())], 1_000);
        let h = validate_batch(&b, 1 << 20).unwrap();
        assert_eq!(raft_stamp(&b, &h), Some(RaftStamp::default()));
        for stamp in [
            RaftStamp {
                term: 7,
                index: 123_456_789_012,
                more: 0,
            },
            RaftStamp {
                term: RAFT_TERM_MAX,
                index: RAFT_INDEX_MAX,
                more: RAFT_MORE_MAX,
            },
            RaftStamp {
                term: 1,
                index: 1,
                more: 3,
            },
        ] {
            set_raft_stamp(&mut b, stamp).unwrap();
            let h = validate_batch(&b, 1 << 20).unwrap();
            assert_eq!(raft_stamp(&b, &h), Some(stamp));
            assert!(!h.is_control());
        }
    }

    #[test]
    fn a_stamp_out_of_range_is_refused() {
        let mut b = encode_batch(&[Record::from_value(b"x".to_vec())], 1);
        let big = RaftStamp {
            term: RAFT_TERM_MAX + 1,
            index: 1,
            more: 0,
        };
        assert!(set_raft_stamp(&mut b, big).is_err());
        let far = RaftStamp {
            term: 1,
            index: RAFT_INDEX_MAX + 1,
            more: 0,
        };
        assert!(set_raft_stamp(&mut b, far).is_err());
        let many = RaftStamp {
            term: 1,
            index: 1,
            more: RAFT_MORE_MAX + 1,
        };
        assert!(set_raft_stamp(&mut b, many).is_err());
        assert!(set_raft_stamp(&mut [0u8; 10], RaftStamp::default()).is_err());
    }

    #[test]
    fn a_control_batch_carries_its_payload_and_is_marked() {
        let b = encode_control_batch(b"membership", 5);
        let h = validate_batch(&b, 1 << 20).unwrap();
        assert!(h.is_control());
        assert_eq!(control_payload(&b, &h).unwrap().as_ref(), b"membership");
        let data = encode_batch(&[Record::from_value(b"m".to_vec())], 1);
        let dh = decode_batch_header(&data, 1 << 20).unwrap();
        assert_eq!(control_payload(&data, &dh), None);
    }
}
