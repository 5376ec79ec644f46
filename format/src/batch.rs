//! The batch: its 48-byte header (layout: `docs/format.md`, "Batch"), decoding and checking
//! that header, the records checksum, writing it ([`write_header`]) and [`validate_batch`],
//! the full check of a batch arriving from outside.
//!
//! The header is decoded by [`decode_batch_header`], the one place that reads a header's fields
//! and tells the two layouts apart by their version: version 1, whose records are sluice's own
//! (`record`), and version 2, whose body is a Kafka record batch v2 (`kafka`), possibly
//! compressed. Both share the 48-byte header, so the scanner, the indexes, recovery and
//! retention never look at the body.

use crate::types::{Offset, TimestampMs};

use super::codec::{Codec, DECOMPRESSED_BYTES_MAX};
use super::error::BatchError;
use super::kafka::record::KAFKA_RECORD_BYTES_MIN;
use super::kafka::{validate::check_kafka_batch, KAFKA_HEADER_LEN, KAFKA_LOG_OVERHEAD};
use super::record::parse_record;
use super::{crc, u32_at, u64_at};

/// Magic of a batch: the bytes "SLB1" (the same for every version).
pub const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"SLB1");
/// Version of the batch layout written: 2, a Kafka record batch v2 as the body.
pub const BATCH_VERSION: u8 = 2;
/// Version 1: sluice's own record layout, still read.
pub const BATCH_VERSION_V1: u8 = 1;
/// Length of a batch header.
pub const BATCH_HEADER_LEN: usize = 48;

/// Most headers a published record may carry. A batch holding a record with more is refused
/// ([`validate_batch`]): a queue delivery counts a message's headers in 16 bits, and the broker
/// adds headers of its own to a message it dead-letters, so what a client may publish stays well
/// below what a stored record may hold ([`STORED_RECORD_HEADERS_MAX`]).
pub const RECORD_HEADERS_MAX: usize = 1024;
/// Most headers any stored record may carry, the broker's own copies (dead letters) included:
/// the 16-bit header count of a queue delivery.
pub const STORED_RECORD_HEADERS_MAX: usize = u16::MAX as usize;

/// Attribute bits 0-2: the compression codec of the body ([`Codec`]); always 0 in version 1.
pub const ATTR_COMPRESSION_MASK: u8 = 0b0000_0111;
/// Attribute bit 3: a control batch, written by a replicated log for what is not a message
/// (a new leader's blank entry, a membership change, a queue ack, a group commit); readers of
/// messages skip it. Version 2 only, and never accepted from a client.
pub const ATTR_CONTROL: u8 = 0b0000_1000;
/// Attribute bits that must be zero.
pub const ATTR_RESERVED_MASK: u8 = !(ATTR_COMPRESSION_MASK | ATTR_CONTROL);

// Field positions of the batch header, each built from the one before.
pub(crate) const B_HEADER_CRC: usize = 0;
pub(crate) const B_MAGIC: usize = B_HEADER_CRC + 4;
const B_VERSION: usize = B_MAGIC + 4;
pub(crate) const B_ATTRIBUTES: usize = B_VERSION + 1;
const B_RESERVED: usize = B_ATTRIBUTES + 1;
const B_LEN: usize = B_RESERVED + 2;
const B_BASE_OFFSET: usize = B_LEN + 4;
const B_RECORD_COUNT: usize = B_BASE_OFFSET + 8;
const B_FIRST_TS: usize = B_RECORD_COUNT + 4;
const B_MAX_TS: usize = B_FIRST_TS + 8;
pub(crate) const B_RECORDS_CRC: usize = B_MAX_TS + 8;
pub(crate) const B_END: usize = B_RECORDS_CRC + 4;
const _: () = assert!(B_END == BATCH_HEADER_LEN);

/// The decoded, checked header of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// The layout version (1 or 2).
    pub version: u8,
    /// Attribute bits.
    pub attributes: u8,
    /// Total length of the batch in bytes, header included.
    pub batch_len: u32,
    /// Offset of the first record.
    pub base_offset: Offset,
    /// Number of records (at least 1).
    pub record_count: u32,
    /// Timestamp of the first record.
    pub first_timestamp_ms: TimestampMs,
    /// Largest record timestamp.
    pub max_timestamp_ms: TimestampMs,
    /// CRC-32 of the records section.
    pub records_crc: u32,
    /// CRC-32 of header bytes 4..48 as stored.
    pub header_crc: u32,
}

impl BatchHeader {
    /// Offset of the last record.
    pub fn last_offset(&self) -> Offset {
        Offset(self.base_offset.0 + self.record_count as u64 - 1)
    }
    /// One past the last offset.
    pub fn next_offset(&self) -> Offset {
        Offset(self.base_offset.0 + self.record_count as u64)
    }
    /// The compression codec of the body.
    pub fn codec(&self) -> Codec {
        Codec::from_bits(self.attributes & ATTR_COMPRESSION_MASK).unwrap_or(Codec::None)
    }
    /// True for a control batch ([`ATTR_CONTROL`]), which holds no message.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// The former name of [`BatchError`].
pub type HeaderError = BatchError;

/// Decodes and checks a batch header: checksum first, so a flipped length is never trusted.
/// `batch_bytes_max` bounds `batch_len`.
pub fn decode_batch_header(bytes: &[u8], batch_bytes_max: u32) -> Result<BatchHeader, BatchError> {
    if bytes.len() < BATCH_HEADER_LEN {
        return Err(BatchError::Short { len: bytes.len() });
    }
    let b = &bytes[..BATCH_HEADER_LEN];
    let header_crc = u32_at(b, B_HEADER_CRC);
    let computed = crc(&b[B_MAGIC..B_END]);
    if computed != header_crc {
        return Err(BatchError::HeaderCrc {
            stored: header_crc,
            computed,
        });
    }
    let magic = u32_at(b, B_MAGIC);
    if magic != BATCH_MAGIC {
        return Err(BatchError::BadMagic(magic));
    }
    let version = b[B_VERSION];
    if version != BATCH_VERSION && version != BATCH_VERSION_V1 {
        return Err(BatchError::UnsupportedVersion(version));
    }
    decode_fields(b, version, header_crc, batch_bytes_max)
}

/// The fewest bytes a batch of `version` can take, and the most records it can hold, given its
/// length and codec: what makes a count honest before any record is read.
fn batch_bounds(version: u8, codec: Codec, batch_len: u32) -> (usize, u64) {
    let len = batch_len as u64;
    if version == BATCH_VERSION_V1 {
        let body = len.saturating_sub(BATCH_HEADER_LEN as u64);
        return (BATCH_HEADER_LEN, body / 5);
    }
    let min = BATCH_HEADER_LEN + KAFKA_HEADER_LEN + 1;
    let body = len.saturating_sub((BATCH_HEADER_LEN + KAFKA_HEADER_LEN) as u64);
    let records = match codec {
        Codec::None => body,
        _ => DECOMPRESSED_BYTES_MAX as u64,
    };
    (min, records / KAFKA_RECORD_BYTES_MIN as u64)
}

/// The fields of a header whose checksum, magic and version are checked.
fn decode_fields(
    b: &[u8],
    version: u8,
    header_crc: u32,
    batch_bytes_max: u32,
) -> Result<BatchHeader, BatchError> {
    let attributes = b[B_ATTRIBUTES];
    let codec = Codec::from_bits(attributes & ATTR_COMPRESSION_MASK);
    let codec = match codec {
        Some(c) if attributes & ATTR_RESERVED_MASK == 0 => c,
        _ => return Err(BatchError::UnsupportedAttributes(attributes)),
    };
    if version == BATCH_VERSION_V1 && (codec != Codec::None || attributes & ATTR_CONTROL != 0) {
        return Err(BatchError::UnsupportedAttributes(attributes));
    }
    let batch_len = u32_at(b, B_LEN);
    let (len_min, count_max) = batch_bounds(version, codec, batch_len);
    if (batch_len as usize) < len_min {
        return Err(BatchError::LengthBelowHeader(batch_len));
    }
    if batch_len > batch_bytes_max {
        return Err(BatchError::LengthOverLimit {
            len: batch_len,
            max: batch_bytes_max,
        });
    }
    let record_count = u32_at(b, B_RECORD_COUNT);
    if record_count == 0 {
        return Err(BatchError::NoRecords);
    }
    // Each record takes a few bytes at least; a larger count cannot be honest.
    if record_count as u64 > count_max {
        return Err(BatchError::CountDoesNotFit {
            count: record_count,
            len: batch_len,
        });
    }
    let base_offset = u64_at(b, B_BASE_OFFSET);
    if base_offset.checked_add(record_count as u64).is_none() {
        return Err(BatchError::OffsetOverflow);
    }
    Ok(BatchHeader {
        version,
        attributes,
        batch_len,
        base_offset: Offset(base_offset),
        record_count,
        first_timestamp_ms: u64_at(b, B_FIRST_TS) as i64,
        max_timestamp_ms: u64_at(b, B_MAX_TS) as i64,
        records_crc: u32_at(b, B_RECORDS_CRC),
        header_crc,
    })
}

/// The CRC-32 of the records of a whole batch (bytes 48..`batch_len`); `None` when `batch` is
/// shorter than the header says.
pub fn records_crc_of(batch: &[u8], h: &BatchHeader) -> Option<u32> {
    batch.get(BATCH_HEADER_LEN..h.batch_len as usize).map(crc)
}

/// Checks the records checksum of a whole batch whose header is already decoded.
pub fn check_records_crc(batch: &[u8], h: &BatchHeader) -> bool {
    records_crc_of(batch, h) == Some(h.records_crc)
}

/// Sets the base offset of an encoded batch and recomputes its header checksum.
pub fn set_base_offset(batch: &mut [u8], base: Offset) {
    batch[B_BASE_OFFSET..B_BASE_OFFSET + 8].copy_from_slice(&base.0.to_le_bytes());
    let c = crc(&batch[B_MAGIC..B_END]);
    batch[B_HEADER_CRC..B_HEADER_CRC + 4].copy_from_slice(&c.to_le_bytes());
}

/// Fully validates an encoded batch arriving from outside (a client): header, both checksums and
/// the structure of every record, each with at most [`RECORD_HEADERS_MAX`] headers. Returns the
/// header.
pub fn validate_batch(batch: &[u8], batch_bytes_max: u32) -> Result<BatchHeader, BatchError> {
    validate_batch_within(batch, batch_bytes_max, RECORD_HEADERS_MAX)
}

/// [`validate_batch`] with records of up to `headers_max` headers. Nothing is allocated per
/// record or per header, whatever the counts the batch claims.
pub fn validate_batch_within(
    batch: &[u8],
    batch_bytes_max: u32,
    headers_max: usize,
) -> Result<BatchHeader, BatchError> {
    let h = super::scan::check_batch(batch, batch_bytes_max)?;
    check_body(batch, &h, headers_max)?;
    Ok(h)
}

/// Checks the records of a whole batch whose header (and records checksum) are checked: their
/// structure, at most `headers_max` headers each, and the timestamps the header states; for
/// version 2, the Kafka batch inside (its CRC-32C, counts, and agreement with the header).
pub fn check_body(batch: &[u8], h: &BatchHeader, headers_max: usize) -> Result<(), BatchError> {
    let (first_ts, max_ts) = if h.version == BATCH_VERSION_V1 {
        walk_v1_records(batch, h, headers_max)?
    } else {
        check_kafka_body(batch, h, headers_max)?
    };
    if max_ts != h.max_timestamp_ms {
        return Err(BatchError::MaxTimestamp {
            field: h.max_timestamp_ms,
            records: max_ts,
        });
    }
    if first_ts != h.first_timestamp_ms {
        return Err(BatchError::EnvelopeMismatch {
            field: "first_timestamp_ms",
        });
    }
    Ok(())
}

/// Walks the records of a version 1 batch; returns the first and the largest timestamp.
fn walk_v1_records(
    batch: &[u8],
    h: &BatchHeader,
    headers_max: usize,
) -> Result<(TimestampMs, TimestampMs), BatchError> {
    let mut max_ts = i64::MIN;
    let mut pos = BATCH_HEADER_LEN;
    for k in 0..h.record_count {
        let r = parse_record(batch, pos).ok_or(super::RecordError::Malformed { at: pos })?;
        if r.header_count > headers_max as u64 {
            return Err(BatchError::TooManyHeaders {
                record: k,
                count: r.header_count,
                max: headers_max,
            });
        }
        max_ts = max_ts.max(h.first_timestamp_ms.wrapping_add(r.ts_delta));
        pos = r.end;
    }
    if pos != batch.len() {
        return Err(super::RecordError::TrailingBytes {
            len: batch.len() - pos,
        }
        .into());
    }
    Ok((h.first_timestamp_ms, max_ts))
}

/// Checks the Kafka batch inside a version 2 batch and that it agrees with the header around
/// it; returns the records' first and largest timestamp.
fn check_kafka_body(
    batch: &[u8],
    h: &BatchHeader,
    headers_max: usize,
) -> Result<(TimestampMs, TimestampMs), BatchError> {
    let k = check_kafka_batch(&batch[BATCH_HEADER_LEN..], headers_max)?;
    if k.record_count() != h.record_count {
        return Err(BatchError::EnvelopeMismatch {
            field: "record_count",
        });
    }
    if k.codec != h.codec() {
        return Err(BatchError::EnvelopeMismatch { field: "codec" });
    }
    if k.header.max_timestamp_ms != k.max_timestamp_ms {
        return Err(BatchError::MaxTimestamp {
            field: k.header.max_timestamp_ms,
            records: k.max_timestamp_ms,
        });
    }
    Ok((k.first_timestamp_ms, k.max_timestamp_ms))
}

/// What [`write_header`] writes besides the length, the base offset and the checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderFields {
    /// The layout version.
    pub version: u8,
    /// The codec of the body.
    pub codec: Codec,
    /// Number of records.
    pub record_count: u32,
    /// Timestamp of the first record.
    pub first_timestamp_ms: TimestampMs,
    /// Largest record timestamp.
    pub max_timestamp_ms: TimestampMs,
}

/// Writes the 48-byte header of `batch`, whose body (bytes 48..) is complete: the length is the
/// whole slice, the base offset 0 (the log assigns the real one), the records checksum that of
/// the body.
pub fn write_header(batch: &mut [u8], f: HeaderFields) {
    assert!(f.record_count > 0, "a batch holds at least one record");
    assert!(batch.len() > BATCH_HEADER_LEN && batch.len() <= u32::MAX as usize);
    let len = batch.len() as u32;
    let records_crc = crc(&batch[BATCH_HEADER_LEN..]);
    let b = batch;
    b[B_MAGIC..B_MAGIC + 4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
    b[B_VERSION] = f.version;
    b[B_ATTRIBUTES] = f.codec.bits();
    b[B_RESERVED..B_RESERVED + 2].copy_from_slice(&[0, 0]);
    b[B_LEN..B_LEN + 4].copy_from_slice(&len.to_le_bytes());
    b[B_RECORD_COUNT..B_RECORD_COUNT + 4].copy_from_slice(&f.record_count.to_le_bytes());
    b[B_FIRST_TS..B_FIRST_TS + 8].copy_from_slice(&f.first_timestamp_ms.to_le_bytes());
    b[B_MAX_TS..B_MAX_TS + 8].copy_from_slice(&f.max_timestamp_ms.to_le_bytes());
    b[B_RECORDS_CRC..B_RECORDS_CRC + 4].copy_from_slice(&records_crc.to_le_bytes());
    set_base_offset(b, Offset(0));
}

/// The Kafka batch inside a version 2 batch (its body), with the base offset it holds as
/// stored; `None` for a version 1 batch.
pub fn kafka_body<'a>(batch: &'a [u8], h: &BatchHeader) -> Option<&'a [u8]> {
    let end = (h.batch_len as usize).min(batch.len());
    (h.version == BATCH_VERSION && end >= BATCH_HEADER_LEN + KAFKA_LOG_OVERHEAD)
        .then(|| &batch[BATCH_HEADER_LEN..end])
}
