//! Kafka's record batch v2 (magic 2), the body of a stored batch of version 2 (layout:
//! `docs/format.md`, "Batch version 2"). Big-endian, as Kafka writes it.
//!
//! - this file: the 61-byte header's fields and [`KafkaHeader`], decoded without trusting it;
//! - `record`: Kafka's records (zigzag varints), parsed without allocating, and encoded;
//! - `validate`: the full check of a Kafka batch from outside (CRC-32C, lengths, counts,
//!   attributes, every record, decompressing when compressed);
//! - `convert`: a Kafka produce's batches into stored batches, and stored batches (of either
//!   version) into the Kafka batches a fetch returns.
//!
//! ```text
//!  0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8 |
//! 17 crc u32 (CRC-32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32 |
//! 27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16 |
//! 53 baseSequence i32 | 57 recordCount i32 | 61 records (compressed as attributes say)
//! ```

pub(crate) mod convert;
pub(crate) mod record;
pub(crate) mod validate;

use super::codec::Codec;
use super::error::BatchError;

/// Length of a Kafka record batch v2 header.
pub const KAFKA_HEADER_LEN: usize = 61;
/// The magic of record batch v2.
pub const KAFKA_MAGIC: i8 = 2;

pub(crate) const K_BASE_OFFSET: usize = 0;
pub(crate) const K_LENGTH: usize = 8;
pub(crate) const K_LEADER_EPOCH: usize = 12;
pub(crate) const K_MAGIC: usize = 16;
pub(crate) const K_CRC: usize = 17;
pub(crate) const K_ATTRIBUTES: usize = 21;
pub(crate) const K_LAST_OFFSET_DELTA: usize = 23;
pub(crate) const K_BASE_TS: usize = 27;
pub(crate) const K_MAX_TS: usize = 35;
pub(crate) const K_PRODUCER_ID: usize = 43;
pub(crate) const K_PRODUCER_EPOCH: usize = 51;
pub(crate) const K_BASE_SEQUENCE: usize = 53;
pub(crate) const K_RECORD_COUNT: usize = 57;
const _: () = assert!(K_RECORD_COUNT + 4 == KAFKA_HEADER_LEN);

/// Bytes of a batch before its `batchLength` counts (baseOffset and batchLength themselves).
pub const KAFKA_LOG_OVERHEAD: usize = 12;

/// Attribute bits 0-2: the compression codec.
pub const KATTR_CODEC_MASK: i16 = 0b111;
/// Attribute bit 3: the timestamps are the broker's append times.
pub const KATTR_LOG_APPEND_TIME: i16 = 1 << 3;
/// Attribute bit 4: part of a transaction.
pub const KATTR_TRANSACTIONAL: i16 = 1 << 4;
/// Attribute bit 5: a control batch (transaction markers).
pub const KATTR_CONTROL: i16 = 1 << 5;
/// Attribute bit 6: the batch carries a delete horizon (compacted topics).
pub const KATTR_DELETE_HORIZON: i16 = 1 << 6;

/// "No producer": the producer id, epoch and sequence of a batch from a producer that is not
/// idempotent.
pub const NO_PRODUCER_ID: i64 = -1;

/// The fields of a Kafka batch header, as found (see [`validate`] for what is checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KafkaHeader {
    /// `baseOffset`.
    pub base_offset: i64,
    /// `batchLength`: bytes after this field.
    pub batch_length: i32,
    /// `partitionLeaderEpoch`.
    pub leader_epoch: i32,
    /// `magic`.
    pub magic: i8,
    /// `crc`.
    pub crc: u32,
    /// `attributes`.
    pub attributes: i16,
    /// `lastOffsetDelta`.
    pub last_offset_delta: i32,
    /// `baseTimestamp`.
    pub base_timestamp_ms: i64,
    /// `maxTimestamp`.
    pub max_timestamp_ms: i64,
    /// `producerId`.
    pub producer_id: i64,
    /// `producerEpoch`.
    pub producer_epoch: i16,
    /// `baseSequence`.
    pub base_sequence: i32,
    /// `recordCount`.
    pub record_count: i32,
}

impl KafkaHeader {
    /// Reads the fields of the header at the start of `b`, trusting nothing.
    pub fn read(b: &[u8]) -> Result<KafkaHeader, BatchError> {
        if b.len() < KAFKA_HEADER_LEN {
            return Err(BatchError::KafkaTooShort { len: b.len() });
        }
        Ok(KafkaHeader {
            base_offset: be_i64(b, K_BASE_OFFSET),
            batch_length: be_i32(b, K_LENGTH),
            leader_epoch: be_i32(b, K_LEADER_EPOCH),
            magic: b[K_MAGIC] as i8,
            crc: be_i32(b, K_CRC) as u32,
            attributes: i16::from_be_bytes([b[K_ATTRIBUTES], b[K_ATTRIBUTES + 1]]),
            last_offset_delta: be_i32(b, K_LAST_OFFSET_DELTA),
            base_timestamp_ms: be_i64(b, K_BASE_TS),
            max_timestamp_ms: be_i64(b, K_MAX_TS),
            producer_id: be_i64(b, K_PRODUCER_ID),
            producer_epoch: i16::from_be_bytes([b[K_PRODUCER_EPOCH], b[K_PRODUCER_EPOCH + 1]]),
            base_sequence: be_i32(b, K_BASE_SEQUENCE),
            record_count: be_i32(b, K_RECORD_COUNT),
        })
    }

    /// The compression codec of the attributes; `None` for a number no codec has.
    pub fn codec(&self) -> Option<Codec> {
        Codec::from_bits((self.attributes & KATTR_CODEC_MASK) as u8)
    }

    /// The whole batch's length in bytes.
    pub fn total_len(&self) -> usize {
        KAFKA_LOG_OVERHEAD + self.batch_length.max(0) as usize
    }
}

pub(crate) fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// CRC-32C (Castagnoli), the checksum of Kafka's record batches.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

#[cfg(test)]
mod tests;
