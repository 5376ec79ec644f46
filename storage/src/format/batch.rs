//! The batch: its 48-byte header (layout: `docs/format.md`, "Batch"), decoding and checking
//! that header, the records checksum, [`BatchBuilder`] and [`validate_batch`], the full check
//! of a batch arriving from outside.
//!
//! The header is decoded by [`decode_batch_header`], the one place that reads a header's fields:
//! it is where a second batch layout would be told apart by its magic and version (today there
//! is one, version 1).

use crate::types::{Header, Offset, Record, TimestampMs};

use super::error::BatchError;
use super::record::{parse_record, put_varint, varint_len, zigzag};
use super::{crc, u32_at, u64_at};

/// Magic of a batch: the bytes "SLB1".
pub const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"SLB1");
/// Version of the batch layout.
pub const BATCH_VERSION: u8 = 1;
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

/// Attribute bits 0-2: compression codec. Only 0 (none) is defined; others are rejected.
pub const ATTR_COMPRESSION_MASK: u8 = 0b0000_0111;
/// Attribute bits that must be zero in this version.
pub const ATTR_RESERVED_MASK: u8 = !ATTR_COMPRESSION_MASK;

// Field positions of the batch header, each built from the one before.
const B_HEADER_CRC: usize = 0;
const B_MAGIC: usize = B_HEADER_CRC + 4;
const B_VERSION: usize = B_MAGIC + 4;
const B_ATTRIBUTES: usize = B_VERSION + 1;
const B_RESERVED: usize = B_ATTRIBUTES + 1;
const B_LEN: usize = B_RESERVED + 2;
const B_BASE_OFFSET: usize = B_LEN + 4;
const B_RECORD_COUNT: usize = B_BASE_OFFSET + 8;
const B_FIRST_TS: usize = B_RECORD_COUNT + 4;
const B_MAX_TS: usize = B_FIRST_TS + 8;
const B_RECORDS_CRC: usize = B_MAX_TS + 8;
const B_END: usize = B_RECORDS_CRC + 4;
const _: () = assert!(B_END == BATCH_HEADER_LEN);

/// The decoded, checked header of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
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
    // A second layout would be told apart here, by its magic and version.
    let magic = u32_at(b, B_MAGIC);
    if magic != BATCH_MAGIC {
        return Err(BatchError::BadMagic(magic));
    }
    if b[B_VERSION] != BATCH_VERSION {
        return Err(BatchError::UnsupportedVersion(b[B_VERSION]));
    }
    decode_v1_fields(b, header_crc, batch_bytes_max)
}

/// The fields of a version 1 header whose checksum, magic and version are checked.
fn decode_v1_fields(
    b: &[u8],
    header_crc: u32,
    batch_bytes_max: u32,
) -> Result<BatchHeader, BatchError> {
    let attributes = b[B_ATTRIBUTES];
    if attributes & ATTR_RESERVED_MASK != 0 || attributes & ATTR_COMPRESSION_MASK != 0 {
        return Err(BatchError::UnsupportedAttributes(attributes));
    }
    let batch_len = u32_at(b, B_LEN);
    if (batch_len as usize) < BATCH_HEADER_LEN {
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
    // Each record needs at least 5 bytes; a larger count cannot be honest.
    if record_count as u64 * 5 > (batch_len as u64 - BATCH_HEADER_LEN as u64) {
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
    if max_ts != h.max_timestamp_ms {
        return Err(BatchError::MaxTimestamp {
            field: h.max_timestamp_ms,
            records: max_ts,
        });
    }
    Ok(h)
}

/// Builds a batch in the on-disk layout, record by record.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
    first_ts: TimestampMs,
    max_ts: TimestampMs,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty batch.
    pub fn new() -> Self {
        Self::with_capacity(4096)
    }

    /// An empty batch with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(BATCH_HEADER_LEN));
        buf.resize(BATCH_HEADER_LEN, 0);
        BatchBuilder {
            buf,
            count: 0,
            first_ts: 0,
            max_ts: i64::MIN,
        }
    }

    /// Number of records added.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True when no record was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch takes so far.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Adds a record with its timestamp resolved.
    pub fn push(
        &mut self,
        timestamp_ms: TimestampMs,
        key: Option<&[u8]>,
        headers: &[Header],
        value: &[u8],
    ) {
        if self.count == 0 {
            self.first_ts = timestamp_ms;
        }
        self.max_ts = self.max_ts.max(timestamp_ms);
        let ts_delta = zigzag(timestamp_ms.wrapping_sub(self.first_ts));
        let key_field = key.map(|k| k.len() as u64 + 1).unwrap_or(0);
        let mut body = varint_len(ts_delta) + varint_len(key_field) + key.map_or(0, |k| k.len());
        body += varint_len(headers.len() as u64);
        for h in headers {
            body += varint_len(h.name.len() as u64) + h.name.len();
            body += varint_len(h.value.len() as u64) + h.value.len();
        }
        body += varint_len(value.len() as u64) + value.len();
        self.buf.reserve(body + 10);
        put_varint(&mut self.buf, body as u64);
        put_varint(&mut self.buf, ts_delta);
        put_varint(&mut self.buf, key_field);
        if let Some(k) = key {
            self.buf.extend_from_slice(k);
        }
        put_varint(&mut self.buf, headers.len() as u64);
        for h in headers {
            put_varint(&mut self.buf, h.name.len() as u64);
            self.buf.extend_from_slice(&h.name);
            put_varint(&mut self.buf, h.value.len() as u64);
            self.buf.extend_from_slice(&h.value);
        }
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(value);
        self.count += 1;
    }

    /// Adds a [`Record`], taking `now` when it has no timestamp.
    pub fn push_record(&mut self, r: &Record, now: TimestampMs) {
        self.push(
            r.timestamp_ms.unwrap_or(now),
            r.key.as_deref(),
            &r.headers,
            &r.value,
        );
    }

    /// Finishes the batch with base offset 0 (the log assigns the real one).
    pub fn finish(mut self) -> Vec<u8> {
        assert!(self.count > 0, "a batch holds at least one record");
        let len = self.buf.len() as u32;
        let records_crc = crc(&self.buf[BATCH_HEADER_LEN..]);
        let b = &mut self.buf;
        b[B_MAGIC..B_MAGIC + 4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
        b[B_VERSION] = BATCH_VERSION;
        b[B_ATTRIBUTES] = 0;
        b[B_LEN..B_LEN + 4].copy_from_slice(&len.to_le_bytes());
        b[B_RECORD_COUNT..B_RECORD_COUNT + 4].copy_from_slice(&self.count.to_le_bytes());
        b[B_FIRST_TS..B_FIRST_TS + 8].copy_from_slice(&self.first_ts.to_le_bytes());
        b[B_MAX_TS..B_MAX_TS + 8].copy_from_slice(&self.max_ts.to_le_bytes());
        b[B_RECORDS_CRC..B_RECORDS_CRC + 4].copy_from_slice(&records_crc.to_le_bytes());
        set_base_offset(b, Offset(0));
        self.buf
    }
}

/// Encodes records into one batch (base offset 0).
pub fn encode_batch(records: &[Record], now: TimestampMs) -> Vec<u8> {
    let mut b = BatchBuilder::with_capacity(
        BATCH_HEADER_LEN + records.iter().map(|r| r.value.len() + 16).sum::<usize>(),
    );
    for r in records {
        b.push_record(r, now);
    }
    b.finish()
}
