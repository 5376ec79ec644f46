//! Records inside a batch: varints, parsing one version 1 record (layout: `docs/format.md`,
//! "Record") without allocating, and reading the records of a batch of either version
//! ([`BatchRecords`], decompressing a compressed body once, and its [`RecordIter`] of
//! [`RecordView`]s).

use std::borrow::Cow;

use crate::types::{Header, Offset, Record, TimestampMs};

use super::batch::{BatchHeader, BATCH_HEADER_LEN, BATCH_VERSION_V1};
use super::error::{BatchError, RecordError};
use super::kafka::record::{kafka_headers, parse_kafka_record};
use super::kafka::validate::records_section;
use super::kafka::KafkaHeader;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads a varint at `*pos`, advancing it; `None` when truncated or longer than 10 bytes.
#[inline]
pub(crate) fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
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

#[inline]
fn get_bytes<'a>(b: &'a [u8], pos: &mut usize, len: u64) -> Option<&'a [u8]> {
    let len = usize::try_from(len).ok()?;
    let end = pos.checked_add(len)?;
    let s = b.get(*pos..end)?;
    *pos = end;
    Some(s)
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

/// The records of one batch: its records section, decompressed when the batch is compressed
/// (once, here, within the codec's bound), ready to iterate as often as needed.
#[derive(Debug)]
pub struct BatchRecords<'a> {
    section: Cow<'a, [u8]>,
    layout: Layout,
    base_offset: Offset,
    count: u32,
}

#[derive(Clone, Copy, Debug)]
enum Layout {
    /// Version 1: timestamps are deltas from the header's first timestamp.
    V1 { first_ts: TimestampMs },
    /// Version 2: Kafka records, timestamps deltas from the Kafka header's base timestamp.
    Kafka { base_ts: TimestampMs },
}

impl<'a> BatchRecords<'a> {
    /// The records of the whole batch `batch` (header included) whose header is `h`.
    pub fn new(batch: &'a [u8], h: &BatchHeader) -> Result<Self, BatchError> {
        let end = (h.batch_len as usize).min(batch.len());
        let batch = &batch[..end];
        let (section, layout) = if h.version == BATCH_VERSION_V1 {
            // Positions in version 1 errors count from the start of the batch.
            let section = Cow::Borrowed(batch);
            let layout = Layout::V1 {
                first_ts: h.first_timestamp_ms,
            };
            (section, layout)
        } else {
            let body = batch.get(BATCH_HEADER_LEN..).unwrap_or(&[]);
            let k = KafkaHeader::read(body)?;
            let section = records_section(body, h.codec())?;
            let layout = Layout::Kafka {
                base_ts: k.base_timestamp_ms,
            };
            (section, layout)
        };
        Ok(BatchRecords {
            section,
            layout,
            base_offset: h.base_offset,
            count: h.record_count,
        })
    }

    /// The records of `kafka`, a Kafka record batch (as a fetch returns it) that
    /// [`check_kafka_batch`](super::check_kafka_batch) accepted as `checked`, with its first
    /// record at `base_offset`: read in place, not wrapped in a stored batch first.
    pub fn kafka(
        kafka: &'a [u8],
        checked: &super::KafkaChecked,
        base_offset: Offset,
    ) -> Result<Self, BatchError> {
        Ok(BatchRecords {
            section: records_section(kafka, checked.codec)?,
            layout: Layout::Kafka {
                base_ts: checked.header.base_timestamp_ms,
            },
            base_offset,
            count: checked.record_count(),
        })
    }

    /// Iterates the records.
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            bytes: &self.section,
            pos: match self.layout {
                Layout::V1 { .. } => BATCH_HEADER_LEN.min(self.section.len()),
                Layout::Kafka { .. } => 0,
            },
            next_offset: self.base_offset,
            index: 0,
            remaining: self.count,
            layout: self.layout,
            failed: false,
        }
    }
}

/// Iterates the records of a batch; yields `Err` once at the first malformed record.
#[derive(Debug)]
pub struct RecordIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    next_offset: Offset,
    index: u32,
    remaining: u32,
    layout: Layout,
    failed: bool,
}

impl<'a> RecordIter<'a> {
    /// Moves past the records before `offset` reading only their length fields, for a reader
    /// that wants the rest of a batch it has already been through (the skipped records are
    /// not checked; the first one that cannot even be skipped is left for [`Iterator::next`]
    /// to report).
    pub fn skip_to(&mut self, offset: Offset) {
        while !self.failed && self.remaining > 0 && self.next_offset < offset {
            let mut p = self.pos;
            let len = match self.layout {
                Layout::V1 { .. } => get_varint(self.bytes, &mut p),
                Layout::Kafka { .. } => {
                    get_varint(self.bytes, &mut p).and_then(|v| u64::try_from(unzigzag(v)).ok())
                }
            };
            let end = len
                .and_then(|l| usize::try_from(l).ok())
                .and_then(|l| p.checked_add(l))
                .filter(|&e| e <= self.bytes.len());
            let Some(end) = end else { return };
            self.pos = end;
            self.remaining -= 1;
            self.index += 1;
            self.next_offset = self.next_offset.add(1);
        }
    }

    fn parse_one(&mut self) -> Option<RecordView<'a>> {
        let view = match self.layout {
            Layout::V1 { first_ts } => self.parse_v1(first_ts)?,
            Layout::Kafka { base_ts } => self.parse_kafka(base_ts)?,
        };
        self.next_offset = self.next_offset.add(1);
        self.index += 1;
        Some(view)
    }

    fn parse_v1(&mut self, first_ts: TimestampMs) -> Option<RecordView<'a>> {
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
        Some(RecordView {
            offset: self.next_offset,
            timestamp_ms: first_ts.wrapping_add(raw.ts_delta),
            key: raw.key,
            headers,
            value: raw.value,
        })
    }

    fn parse_kafka(&mut self, base_ts: TimestampMs) -> Option<RecordView<'a>> {
        let r = parse_kafka_record(self.bytes, self.pos)?;
        if r.offset_delta as i64 != self.index as i64 {
            return None;
        }
        self.pos = r.end;
        Some(RecordView {
            offset: self.next_offset,
            timestamp_ms: base_ts.wrapping_add(r.ts_delta),
            key: r.key,
            headers: kafka_headers(&r),
            value: r.value.unwrap_or(&[]),
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, RecordError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.remaining == 0 {
            if self.pos != self.bytes.len() {
                self.failed = true;
                return Some(Err(RecordError::TrailingBytes {
                    len: self.bytes.len() - self.pos,
                }));
            }
            return None;
        }
        self.remaining -= 1;
        match self.parse_one() {
            Some(r) => Some(Ok(r)),
            None => {
                self.failed = true;
                Some(Err(RecordError::Malformed { at: self.pos }))
            }
        }
    }
}

/// One record's fields with its headers left encoded, as [`parse_record`] found them.
pub(super) struct RawRecord<'a> {
    pub(super) ts_delta: i64,
    key: Option<&'a [u8]>,
    pub(super) header_count: u64,
    /// The encoded headers (`header_count` of them, each checked to be well formed).
    headers: &'a [u8],
    value: &'a [u8],
    /// Position just after the record.
    pub(super) end: usize,
}

/// Parses the record at `pos` of `b` and checks its structure without allocating; `None` when
/// it is malformed.
pub(super) fn parse_record(b: &[u8], pos: usize) -> Option<RawRecord<'_>> {
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
