//! Byte layouts of the log: file headers, batches and records. All integers little-endian.
//! The full specification, with diagrams and version history, is `docs/format.md`.
//!
//! ```text
//! Segment file header (32 bytes), at the start of every `.log`, `.index` and `.timeindex` file:
//! { magic [u8;8] | version u16 | entry_size u16 | reserved u32 | base_offset u64 | body_crc u32 | header_crc u32 }
//! `body_crc` is the CRC-32 of every byte after the header in index files (written whole), and 0
//! in `.log` files (whose batches carry their own checksums).
//!
//! Batch (48-byte header + records):
//! { header_crc u32 | magic u32 | version u8 | attributes u8 | reserved u16 | batch_len u32 |
//!   base_offset u64 | record_count u32 | first_timestamp_ms i64 | max_timestamp_ms i64 |
//!   records_crc u32 | records... }
//!
//! Record (varints are unsigned LEB128; `ts_delta` is zigzag-encoded):
//! { body_len varint | ts_delta varint | key_len+1 varint (0 = no key) | key |
//!   header_count varint | { name_len varint | name | value_len varint | value }* |
//!   value_len varint | value }
//! ```

use crate::types::{Header, Offset, Record, TimestampMs};

/// Length of every file header.
pub const FILE_HEADER_LEN: usize = 32;
/// Magic of a segment log file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SLUICELG";
/// Magic of an offset index file.
pub const INDEX_MAGIC: [u8; 8] = *b"SLUICEIX";
/// Magic of a time index file.
pub const TIME_INDEX_MAGIC: [u8; 8] = *b"SLUICETI";
/// Version of the segment, index and batch formats.
pub const FORMAT_VERSION: u16 = 1;

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

// Field positions of the file header.
const F_MAGIC: usize = 0;
const F_VERSION: usize = F_MAGIC + 8;
const F_ENTRY_SIZE: usize = F_VERSION + 2;
const F_RESERVED: usize = F_ENTRY_SIZE + 2;
const F_BASE_OFFSET: usize = F_RESERVED + 4;
const F_BODY_CRC: usize = F_BASE_OFFSET + 8;
const F_CRC: usize = F_BODY_CRC + 4;
const _: () = assert!(F_CRC + 4 == FILE_HEADER_LEN);

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The CRC-32 (IEEE) used everywhere in sluice.
pub fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Encodes a file header.
// Format: { magic [u8;8] | version u16 | entry_size u16 | reserved u32 | base_offset u64 | body_crc u32 | crc u32 }
// body_crc: CRC-32 of an index file's entries (0 in a segment file); crc covers bytes 0..28.
pub fn encode_file_header(magic: [u8; 8], entry_size: u16, base: Offset) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[F_MAGIC..F_MAGIC + 8].copy_from_slice(&magic);
    h[F_VERSION..F_VERSION + 2].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[F_ENTRY_SIZE..F_ENTRY_SIZE + 2].copy_from_slice(&entry_size.to_le_bytes());
    h[F_BASE_OFFSET..F_BASE_OFFSET + 8].copy_from_slice(&base.0.to_le_bytes());
    let c = crc(&h[..F_CRC]);
    h[F_CRC..].copy_from_slice(&c.to_le_bytes());
    h
}

/// Stores the CRC-32 of an index file's body in its header and recomputes the header checksum.
pub fn set_file_header_body_crc(header: &mut [u8], body_crc: u32) {
    header[F_BODY_CRC..F_BODY_CRC + 4].copy_from_slice(&body_crc.to_le_bytes());
    let c = crc(&header[..F_CRC]);
    header[F_CRC..F_CRC + 4].copy_from_slice(&c.to_le_bytes());
}

/// The body CRC stored in a file header (check the header with [`decode_file_header`] first).
pub fn file_header_body_crc(header: &[u8]) -> u32 {
    u32_at(header, F_BODY_CRC)
}

/// Decodes and checks a file header; returns the base offset.
pub fn decode_file_header(bytes: &[u8], magic: [u8; 8], entry_size: u16) -> Result<Offset, String> {
    if bytes.len() < FILE_HEADER_LEN {
        return Err(format!(
            "file header is {} bytes, expected {FILE_HEADER_LEN}",
            bytes.len()
        ));
    }
    let h = &bytes[..FILE_HEADER_LEN];
    if crc(&h[..F_CRC]) != u32_at(h, F_CRC) {
        return Err("file header checksum mismatch".into());
    }
    if h[F_MAGIC..F_MAGIC + 8] != magic {
        return Err(format!(
            "bad magic {:?}, expected {:?}",
            String::from_utf8_lossy(&h[..8]),
            String::from_utf8_lossy(&magic)
        ));
    }
    let version = u16_at(h, F_VERSION);
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    let es = u16_at(h, F_ENTRY_SIZE);
    if es != entry_size {
        return Err(format!("entry size {es}, expected {entry_size}"));
    }
    Ok(Offset(u64_at(h, F_BASE_OFFSET)))
}

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

/// Why a batch header is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    Short,
    /// The header checksum does not match.
    HeaderCrc,
    /// Checksum matches but a field is impossible.
    Invalid(String),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Short => write!(f, "short batch header"),
            HeaderError::HeaderCrc => write!(f, "batch header checksum mismatch"),
            HeaderError::Invalid(s) => write!(f, "{s}"),
        }
    }
}

/// Decodes and checks a batch header: checksum first, so a flipped length is never trusted.
/// `batch_bytes_max` bounds `batch_len`.
pub fn decode_batch_header(bytes: &[u8], batch_bytes_max: u32) -> Result<BatchHeader, HeaderError> {
    if bytes.len() < BATCH_HEADER_LEN {
        return Err(HeaderError::Short);
    }
    let b = &bytes[..BATCH_HEADER_LEN];
    let header_crc = u32_at(b, B_HEADER_CRC);
    if crc(&b[B_MAGIC..B_END]) != header_crc {
        return Err(HeaderError::HeaderCrc);
    }
    let magic = u32_at(b, B_MAGIC);
    if magic != BATCH_MAGIC {
        return Err(HeaderError::Invalid(format!(
            "bad batch magic {magic:#010x}"
        )));
    }
    if b[B_VERSION] != BATCH_VERSION {
        return Err(HeaderError::Invalid(format!(
            "unsupported batch version {}",
            b[B_VERSION]
        )));
    }
    let attributes = b[B_ATTRIBUTES];
    if attributes & ATTR_RESERVED_MASK != 0 || attributes & ATTR_COMPRESSION_MASK != 0 {
        return Err(HeaderError::Invalid(format!(
            "unsupported attributes {attributes:#04x}"
        )));
    }
    let batch_len = u32_at(b, B_LEN);
    if (batch_len as usize) < BATCH_HEADER_LEN {
        return Err(HeaderError::Invalid(format!(
            "batch length {batch_len} is below the header length"
        )));
    }
    if batch_len > batch_bytes_max {
        return Err(HeaderError::Invalid(format!(
            "batch length {batch_len} exceeds the limit of {batch_bytes_max}"
        )));
    }
    let record_count = u32_at(b, B_RECORD_COUNT);
    if record_count == 0 {
        return Err(HeaderError::Invalid("batch has no records".into()));
    }
    // Each record needs at least 5 bytes; a larger count cannot be honest.
    if record_count as u64 * 5 > (batch_len as u64 - BATCH_HEADER_LEN as u64) {
        return Err(HeaderError::Invalid(format!(
            "record count {record_count} does not fit in {batch_len} bytes"
        )));
    }
    let base_offset = u64_at(b, B_BASE_OFFSET);
    if base_offset.checked_add(record_count as u64).is_none() {
        return Err(HeaderError::Invalid("offsets overflow".into()));
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

/// Checks the records checksum of a whole batch whose header is already decoded.
pub fn check_records_crc(batch: &[u8], h: &BatchHeader) -> bool {
    batch.len() >= h.batch_len as usize
        && crc(&batch[BATCH_HEADER_LEN..h.batch_len as usize]) == h.records_crc
}

/// Sets the base offset of an encoded batch and recomputes its header checksum.
pub fn set_base_offset(batch: &mut [u8], base: Offset) {
    batch[B_BASE_OFFSET..B_BASE_OFFSET + 8].copy_from_slice(&base.0.to_le_bytes());
    let c = crc(&batch[B_MAGIC..B_END]);
    batch[B_HEADER_CRC..B_HEADER_CRC + 4].copy_from_slice(&c.to_le_bytes());
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads a varint at `*pos`, advancing it; `None` when truncated or longer than 10 bytes.
fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn get_bytes<'a>(b: &'a [u8], pos: &mut usize, len: u64) -> Option<&'a [u8]> {
    let len = usize::try_from(len).ok()?;
    let end = pos.checked_add(len)?;
    let s = b.get(*pos..end)?;
    *pos = end;
    Some(s)
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

/// A record read from a batch, borrowing the batch's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The record's offset.
    pub offset: Offset,
    /// Its timestamp.
    pub timestamp_ms: TimestampMs,
    /// Its key, if any.
    pub key: Option<&'a [u8]>,
    /// Its headers.
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    /// Its value.
    pub value: &'a [u8],
}

impl RecordView<'_> {
    /// An owned copy as a [`Record`] (the offset is dropped).
    pub fn to_record(&self) -> Record {
        Record {
            timestamp_ms: Some(self.timestamp_ms),
            key: self.key.map(<[u8]>::to_vec),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| Header::new(n.to_vec(), v.to_vec()))
                .collect(),
            value: self.value.to_vec(),
        }
    }
}

/// Iterates the records of a batch; yields `Err` once at the first malformed record.
#[derive(Debug)]
pub struct RecordIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    next_offset: Offset,
    remaining: u32,
    first_ts: TimestampMs,
    failed: bool,
}

impl<'a> RecordIter<'a> {
    /// Iterates a whole batch (header included) whose header is `h`.
    pub fn new(batch: &'a [u8], h: &BatchHeader) -> Self {
        let end = (h.batch_len as usize).min(batch.len());
        RecordIter {
            bytes: &batch[..end],
            pos: BATCH_HEADER_LEN.min(end),
            next_offset: h.base_offset,
            remaining: h.record_count,
            first_ts: h.first_timestamp_ms,
            failed: false,
        }
    }

    fn parse_one(&mut self) -> Option<RecordView<'a>> {
        let raw = parse_record(self.bytes, self.pos)?;
        // The count was checked against the body's length; the vector grows with the headers
        // actually read rather than being sized from the count.
        let mut headers = Vec::new();
        let mut p = 0;
        for _ in 0..raw.header_count {
            let nl = get_varint(raw.headers, &mut p)?;
            let name = get_bytes(raw.headers, &mut p, nl)?;
            let vl = get_varint(raw.headers, &mut p)?;
            let value = get_bytes(raw.headers, &mut p, vl)?;
            headers.push((name, value));
        }
        self.pos = raw.end;
        let offset = self.next_offset;
        self.next_offset = offset.add(1);
        Some(RecordView {
            offset,
            timestamp_ms: self.first_ts.wrapping_add(raw.ts_delta),
            key: raw.key,
            headers,
            value: raw.value,
        })
    }
}

/// One record's fields with its headers left encoded, as [`parse_record`] found them.
struct RawRecord<'a> {
    ts_delta: i64,
    key: Option<&'a [u8]>,
    header_count: u64,
    /// The encoded headers (`header_count` of them, each checked to be well formed).
    headers: &'a [u8],
    value: &'a [u8],
    /// Position just after the record.
    end: usize,
}

/// Parses the record at `pos` of `b` and checks its structure without allocating; `None` when
/// it is malformed.
fn parse_record(b: &[u8], pos: usize) -> Option<RawRecord<'_>> {
    let mut p = pos;
    let body_len = get_varint(b, &mut p)?;
    let body_end = p.checked_add(usize::try_from(body_len).ok()?)?;
    if body_end > b.len() {
        return None;
    }
    let body = &b[..body_end];
    let ts_delta = unzigzag(get_varint(body, &mut p)?);
    let key_field = get_varint(body, &mut p)?;
    let key = if key_field == 0 {
        None
    } else {
        Some(get_bytes(body, &mut p, key_field - 1)?)
    };
    let header_count = get_varint(body, &mut p)?;
    if header_count > body_len {
        return None;
    }
    let headers_start = p;
    for _ in 0..header_count {
        let nl = get_varint(body, &mut p)?;
        get_bytes(body, &mut p, nl)?;
        let vl = get_varint(body, &mut p)?;
        get_bytes(body, &mut p, vl)?;
    }
    let headers = &body[headers_start..p];
    let vl = get_varint(body, &mut p)?;
    let value = get_bytes(body, &mut p, vl)?;
    if p != body_end {
        return None;
    }
    Some(RawRecord {
        ts_delta,
        key,
        header_count,
        headers,
        value,
        end: body_end,
    })
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, String>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.remaining == 0 {
            if self.pos != self.bytes.len() {
                self.failed = true;
                return Some(Err(format!(
                    "{} bytes after the last record",
                    self.bytes.len() - self.pos
                )));
            }
            return None;
        }
        self.remaining -= 1;
        match self.parse_one() {
            Some(r) => Some(Ok(r)),
            None => {
                self.failed = true;
                Some(Err(format!("malformed record at batch byte {}", self.pos)))
            }
        }
    }
}

/// Fully validates an encoded batch arriving from outside (a client): header, both checksums and
/// the structure of every record, each with at most [`RECORD_HEADERS_MAX`] headers. Returns the
/// header.
pub fn validate_batch(batch: &[u8], batch_bytes_max: u32) -> Result<BatchHeader, String> {
    validate_batch_within(batch, batch_bytes_max, RECORD_HEADERS_MAX)
}

/// [`validate_batch`] with records of up to `headers_max` headers. Nothing is allocated per
/// record or per header, whatever the counts the batch claims.
pub fn validate_batch_within(
    batch: &[u8],
    batch_bytes_max: u32,
    headers_max: usize,
) -> Result<BatchHeader, String> {
    let h = decode_batch_header(batch, batch_bytes_max).map_err(|e| e.to_string())?;
    if h.batch_len as usize != batch.len() {
        return Err(format!(
            "batch length field says {} bytes but {} were given",
            h.batch_len,
            batch.len()
        ));
    }
    if !check_records_crc(batch, &h) {
        return Err("records checksum mismatch".into());
    }
    let mut max_ts = i64::MIN;
    let mut pos = BATCH_HEADER_LEN;
    for k in 0..h.record_count {
        let r = parse_record(batch, pos)
            .ok_or_else(|| format!("malformed record at batch byte {pos}"))?;
        if r.header_count > headers_max as u64 {
            return Err(format!(
                "record {k} has {} headers, more than the limit of {headers_max}",
                r.header_count
            ));
        }
        max_ts = max_ts.max(h.first_timestamp_ms.wrapping_add(r.ts_delta));
        pos = r.end;
    }
    if pos != batch.len() {
        return Err(format!("{} bytes after the last record", batch.len() - pos));
    }
    if max_ts != h.max_timestamp_ms {
        return Err(format!(
            "max timestamp field {} differs from the records' {max_ts}",
            h.max_timestamp_ms
        ));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record {
                timestamp_ms: Some(1000),
                key: Some(b"k".to_vec()),
                headers: vec![Header::new("h1", "v1")],
                value: b"hello".to_vec(),
            },
            Record {
                timestamp_ms: Some(990),
                key: None,
                headers: vec![],
                value: vec![],
            },
            Record::from_value(vec![7u8; 300]),
        ]
    }

    #[test]
    fn batch_round_trips() {
        let mut b = encode_batch(&sample(), 5000);
        set_base_offset(&mut b, Offset(42));
        let h = validate_batch(&b, u32::MAX).unwrap();
        assert_eq!(h.base_offset, Offset(42));
        assert_eq!(h.record_count, 3);
        assert_eq!(h.first_timestamp_ms, 1000);
        assert_eq!(h.max_timestamp_ms, 5000);
        let rs: Vec<_> = RecordIter::new(&b, &h).map(|r| r.unwrap()).collect();
        assert_eq!(rs[0].offset, Offset(42));
        assert_eq!(rs[0].key, Some(&b"k"[..]));
        assert_eq!(rs[0].headers, vec![(&b"h1"[..], &b"v1"[..])]);
        assert_eq!(rs[1].timestamp_ms, 990);
        assert_eq!(rs[2].value.len(), 300);
        assert_eq!(rs[2].offset, Offset(44));
        assert_eq!(rs[0].to_record(), sample()[0]);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let mut b = encode_batch(&sample()[..2], 0);
        set_base_offset(&mut b, Offset(7));
        for bit in 0..b.len() * 8 {
            let mut c = b.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(
                validate_batch(&c, 1 << 20).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn file_header_checks() {
        let h = encode_file_header(SEGMENT_MAGIC, 0, Offset(9));
        assert_eq!(decode_file_header(&h, SEGMENT_MAGIC, 0), Ok(Offset(9)));
        assert!(decode_file_header(&h, INDEX_MAGIC, 0).is_err());
        assert!(decode_file_header(&h[..10], SEGMENT_MAGIC, 0).is_err());
        for bit in 0..FILE_HEADER_LEN * 8 {
            let mut c = h;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_file_header(&c, SEGMENT_MAGIC, 0).is_err());
        }
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            let mut p = 0;
            assert_eq!(get_varint(&out, &mut p), Some(v));
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
