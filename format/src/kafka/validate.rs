//! The full check of one Kafka record batch v2 from outside, trusting none of its fields: the
//! length against the bytes, the magic, the CRC-32C, the attributes sluice serves, the counts,
//! and every record (decompressed, within [`DECOMPRESSED_BYTES_MAX`], when compressed), whose
//! offset deltas must run 0, 1, 2, ... as producers write them. Nothing is allocated per record
//! or per header, whatever the counts claim.

use std::borrow::Cow;

use crate::codec::{decompress, Codec, DECOMPRESSED_BYTES_MAX};
use crate::error::{BatchError, RecordError};

use super::record::{parse_kafka_record, KAFKA_RECORD_BYTES_MIN};
use super::{
    crc32c, KafkaHeader, KAFKA_HEADER_LEN, KAFKA_LOG_OVERHEAD, KAFKA_MAGIC, KATTR_CODEC_MASK,
    KATTR_CONTROL, KATTR_DELETE_HORIZON, KATTR_LOG_APPEND_TIME, KATTR_TRANSACTIONAL, K_ATTRIBUTES,
};

/// What the check of a Kafka batch found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KafkaChecked {
    /// The header's fields.
    pub header: KafkaHeader,
    /// Its codec.
    pub codec: Codec,
    /// Timestamp of its first record.
    pub first_timestamp_ms: i64,
    /// Largest timestamp of its records (which the header's `maxTimestamp` should equal).
    pub max_timestamp_ms: i64,
}

impl KafkaChecked {
    /// Number of records.
    pub fn record_count(&self) -> u32 {
        self.header.record_count as u32
    }
}

/// The header checks that need no records: length, magic, attributes, counts. `b` is exactly
/// one batch.
pub(crate) fn check_kafka_header(b: &[u8]) -> Result<(KafkaHeader, Codec), BatchError> {
    let h = KafkaHeader::read(b)?;
    if h.batch_length < (KAFKA_HEADER_LEN - KAFKA_LOG_OVERHEAD) as i32 || h.total_len() != b.len() {
        return Err(BatchError::KafkaLength {
            stated: h.batch_length,
            given: b.len(),
        });
    }
    if h.magic != KAFKA_MAGIC {
        return Err(BatchError::KafkaMagic(h.magic));
    }
    check_attributes(h.attributes)?;
    let codec = h.codec().ok_or(BatchError::UnsupportedAttributes(
        (h.attributes & KATTR_CODEC_MASK) as u8,
    ))?;
    let section = b.len() - KAFKA_HEADER_LEN;
    let fits = match codec {
        Codec::None => section / KAFKA_RECORD_BYTES_MIN,
        _ => DECOMPRESSED_BYTES_MAX / KAFKA_RECORD_BYTES_MIN,
    };
    if h.record_count < 1 || h.record_count as usize > fits {
        return Err(BatchError::CountDoesNotFit {
            count: h.record_count as u32,
            len: b.len() as u32,
        });
    }
    if h.last_offset_delta != h.record_count - 1 {
        return Err(BatchError::KafkaLastOffsetDelta {
            last_offset_delta: h.last_offset_delta,
            count: h.record_count,
        });
    }
    Ok((h, codec))
}

fn check_attributes(a: i16) -> Result<(), BatchError> {
    if a & KATTR_TRANSACTIONAL != 0 {
        return Err(BatchError::Transactional);
    }
    if a & KATTR_CONTROL != 0 {
        return Err(BatchError::Control);
    }
    let served = KATTR_CODEC_MASK;
    if a & (KATTR_LOG_APPEND_TIME | KATTR_DELETE_HORIZON) != 0 || a & !served != 0 {
        return Err(BatchError::UnsupportedAttributes((a & 0xff) as u8));
    }
    Ok(())
}

/// The records section of a checked batch, decompressed when compressed.
pub(crate) fn records_section(b: &[u8], codec: Codec) -> Result<Cow<'_, [u8]>, BatchError> {
    let section = &b[KAFKA_HEADER_LEN..];
    match codec {
        Codec::None => Ok(Cow::Borrowed(section)),
        _ => decompress(codec, section, DECOMPRESSED_BYTES_MAX).map(Cow::Owned),
    }
}

/// Fully checks one Kafka batch (`b` is exactly the batch) with records of at most
/// `headers_max` headers.
pub fn check_kafka_batch(b: &[u8], headers_max: usize) -> Result<KafkaChecked, BatchError> {
    let (h, codec) = check_kafka_header(b)?;
    let computed = crc32c(&b[K_ATTRIBUTES..]);
    if computed != h.crc {
        return Err(BatchError::KafkaCrc {
            stored: h.crc,
            computed,
        });
    }
    let section = records_section(b, codec)?;
    let (first, max) = walk_records(&section, &h, headers_max)?;
    Ok(KafkaChecked {
        header: h,
        codec,
        first_timestamp_ms: first,
        max_timestamp_ms: max,
    })
}

/// The header and CRC-32C checks of [`check_kafka_batch`] without the walk over the records:
/// for a reader of batches a broker checked when it stored them, whose iteration parses (and
/// refuses) each record anyway. The timestamps are the header's.
pub fn check_kafka_header_and_crc(b: &[u8]) -> Result<KafkaChecked, BatchError> {
    let (h, codec) = check_kafka_header(b)?;
    let computed = crc32c(&b[K_ATTRIBUTES..]);
    if computed != h.crc {
        return Err(BatchError::KafkaCrc {
            stored: h.crc,
            computed,
        });
    }
    Ok(KafkaChecked {
        first_timestamp_ms: h.base_timestamp_ms,
        max_timestamp_ms: h.max_timestamp_ms,
        header: h,
        codec,
    })
}

/// Walks every record of a records section; returns the first and the largest timestamp.
fn walk_records(
    section: &[u8],
    h: &KafkaHeader,
    headers_max: usize,
) -> Result<(i64, i64), BatchError> {
    let mut pos = 0;
    let (mut first, mut max) = (0, i64::MIN);
    for k in 0..h.record_count {
        let r = parse_kafka_record(section, pos).ok_or(RecordError::Malformed { at: pos })?;
        if r.offset_delta != k {
            return Err(BatchError::KafkaOffsetDelta {
                record: k as u32,
                found: r.offset_delta,
            });
        }
        if r.header_count as usize > headers_max {
            return Err(BatchError::TooManyHeaders {
                record: k as u32,
                count: r.header_count as u64,
                max: headers_max,
            });
        }
        let ts = h.base_timestamp_ms.wrapping_add(r.ts_delta);
        if k == 0 {
            first = ts;
        }
        max = max.max(ts);
        pos = r.end;
    }
    if pos != section.len() {
        return Err(RecordError::TrailingBytes {
            len: section.len() - pos,
        }
        .into());
    }
    Ok((first, max))
}
