//! Between Kafka's record batches and sluice's stored batches.
//!
//! - [`kafka_to_stored`]: the record batches of one partition of a Kafka produce, each checked in
//!   full and wrapped, as sent, in the 48-byte header of a version 2 batch. Only the fields Kafka
//!   itself lets a broker set are changed: `baseOffset` and `partitionLeaderEpoch` (outside the
//!   CRC-32C) are stored as 0, and a `maxTimestamp` that disagrees with the records is corrected
//!   (with the CRC-32C recomputed), as Kafka's own broker does.
//! - [`stored_to_kafka`]: the Kafka batches of a run of stored batches, for a fetch: a version 2
//!   batch is its body with the real base offset written in (no record is re-encoded); a version
//!   1 batch, written before version 2, is re-encoded.

use bytes::Bytes;

use crate::batch::{
    decode_batch_header, write_header, HeaderFields, BATCH_HEADER_LEN, BATCH_VERSION,
    STORED_RECORD_HEADERS_MAX,
};
use crate::builder::BatchBuilder;
use crate::error::BatchError;
use crate::record::BatchRecords;
use crate::types::Header;

use super::validate::check_kafka_batch;
use super::{
    be_i32, crc32c, KAFKA_LOG_OVERHEAD, K_ATTRIBUTES, K_BASE_OFFSET, K_CRC, K_LEADER_EPOCH,
    K_LENGTH, K_MAX_TS,
};

/// One Kafka record batch of a produce, checked and in the stored layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaBatch {
    /// The stored batch (version 2), base offset 0 until the log assigns it.
    pub bytes: Vec<u8>,
    /// `producerId` (-1 when the producer is not idempotent).
    pub producer_id: i64,
    /// `producerEpoch`.
    pub producer_epoch: i16,
    /// `baseSequence`.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: u32,
    /// Largest record timestamp.
    pub max_timestamp_ms: i64,
}

/// Checks the concatenated record batches of one partition of a produce (`records`) and
/// returns each in the stored layout. `batch_bytes_max` bounds a stored batch (header included).
/// Records may carry at most [`crate::RECORD_HEADERS_MAX`] headers.
pub fn kafka_to_stored(
    records: &[u8],
    batch_bytes_max: u32,
) -> Result<Vec<KafkaBatch>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < KAFKA_LOG_OVERHEAD {
            return Err(BatchError::KafkaTooShort { len: rest.len() });
        }
        let stated = be_i32(rest, K_LENGTH);
        let total = usize::try_from(stated)
            .ok()
            .and_then(|n| n.checked_add(KAFKA_LOG_OVERHEAD))
            .filter(|&n| n <= rest.len())
            .ok_or(BatchError::KafkaLength {
                stated,
                given: rest.len(),
            })?;
        let stored_len = total as u64 + BATCH_HEADER_LEN as u64;
        if stored_len > batch_bytes_max as u64 {
            return Err(BatchError::LengthOverLimit {
                len: stored_len.min(u32::MAX as u64) as u32,
                max: batch_bytes_max,
            });
        }
        out.push(wrap(&rest[..total])?);
        pos += total;
    }
    if out.is_empty() {
        return Err(BatchError::NoRecords);
    }
    Ok(out)
}

/// Checks one Kafka batch and wraps it.
fn wrap(kafka: &[u8]) -> Result<KafkaBatch, BatchError> {
    let k = check_kafka_batch(kafka, crate::RECORD_HEADERS_MAX)?;
    let mut bytes = Vec::with_capacity(BATCH_HEADER_LEN + kafka.len());
    bytes.resize(BATCH_HEADER_LEN, 0);
    bytes.extend_from_slice(kafka);
    let body = &mut bytes[BATCH_HEADER_LEN..];
    body[K_BASE_OFFSET..K_BASE_OFFSET + 8].copy_from_slice(&0i64.to_be_bytes());
    body[K_LEADER_EPOCH..K_LEADER_EPOCH + 4].copy_from_slice(&0i32.to_be_bytes());
    if k.header.max_timestamp_ms != k.max_timestamp_ms {
        body[K_MAX_TS..K_MAX_TS + 8].copy_from_slice(&k.max_timestamp_ms.to_be_bytes());
        let c = crc32c(&body[K_ATTRIBUTES..]);
        body[K_CRC..K_CRC + 4].copy_from_slice(&c.to_be_bytes());
    }
    write_header(
        &mut bytes,
        HeaderFields {
            version: BATCH_VERSION,
            codec: k.codec,
            record_count: k.record_count(),
            first_timestamp_ms: k.first_timestamp_ms,
            max_timestamp_ms: k.max_timestamp_ms,
        },
    );
    Ok(KafkaBatch {
        bytes,
        producer_id: k.header.producer_id,
        producer_epoch: k.header.producer_epoch,
        base_sequence: k.header.base_sequence,
        record_count: k.record_count(),
        max_timestamp_ms: k.max_timestamp_ms,
    })
}

/// Appends to `out` the Kafka record batches of `stored`, a run of whole stored batches as the
/// log reads them (their checksums checked by the read).
pub fn stored_to_kafka(stored: &[u8], out: &mut Vec<u8>) -> Result<(), BatchError> {
    let mut pos = 0;
    while pos < stored.len() {
        let h = decode_batch_header(&stored[pos..], u32::MAX)?;
        let end = pos + h.batch_len as usize;
        let batch = stored.get(pos..end).ok_or(BatchError::LengthMismatch {
            stated: h.batch_len,
            given: stored.len() - pos,
        })?;
        if h.version == BATCH_VERSION {
            let at = out.len();
            out.extend_from_slice(&batch[BATCH_HEADER_LEN..]);
            let base = h.base_offset.0 as i64;
            out[at + K_BASE_OFFSET..at + K_BASE_OFFSET + 8].copy_from_slice(&base.to_be_bytes());
        } else {
            reencode_v1(batch, &h, out)?;
        }
        pos = end;
    }
    Ok(())
}

/// [`stored_to_kafka`] without copying the records: appends to `out` the pieces that, written
/// one after the other, are the Kafka record batches of `stored` (for a version 2 batch, its
/// base offset then a slice of `stored` from the byte after it; a version 1 batch re-encoded).
/// Returns the bytes added.
pub fn stored_to_kafka_pieces(stored: &Bytes, out: &mut Vec<Bytes>) -> Result<usize, BatchError> {
    let (mut pos, mut added) = (0, 0);
    while pos < stored.len() {
        let h = decode_batch_header(&stored[pos..], u32::MAX)?;
        let end = pos + h.batch_len as usize;
        if end > stored.len() {
            return Err(BatchError::LengthMismatch {
                stated: h.batch_len,
                given: stored.len() - pos,
            });
        }
        if h.version == BATCH_VERSION {
            let base = h.base_offset.0 as i64;
            let body = pos + BATCH_HEADER_LEN;
            out.push(Bytes::copy_from_slice(&base.to_be_bytes()));
            out.push(stored.slice(body + K_BASE_OFFSET + 8..end));
            added += end - body;
        } else {
            let mut v = Vec::new();
            reencode_v1(&stored[pos..end], &h, &mut v)?;
            added += v.len();
            out.push(Bytes::from(v));
        }
        pos = end;
    }
    Ok(added)
}

/// A version 1 batch as a Kafka batch: its records re-encoded, its offsets kept.
fn reencode_v1(batch: &[u8], h: &crate::BatchHeader, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let records = BatchRecords::new(batch, h)?;
    let mut b = BatchBuilder::with_capacity(batch.len() + 64);
    for r in records.iter() {
        let r = r?;
        let headers: Vec<Header> = r
            .headers
            .iter()
            .map(|(n, v)| Header::new(n.to_vec(), v.to_vec()))
            .collect();
        debug_assert!(headers.len() <= STORED_RECORD_HEADERS_MAX);
        b.push(r.timestamp_ms, r.key, &headers, r.value);
    }
    let v2 = b.finish();
    let at = out.len();
    out.extend_from_slice(&v2[BATCH_HEADER_LEN..]);
    let base = h.base_offset.0 as i64;
    out[at + K_BASE_OFFSET..at + K_BASE_OFFSET + 8].copy_from_slice(&base.to_be_bytes());
    Ok(())
}
