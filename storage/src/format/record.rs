//! Records inside a batch (layout: `docs/format.md`, "Record"): varints, parsing one record
//! without allocating, [`RecordIter`] and [`RecordView`].

use crate::types::{Header, Offset, Record, TimestampMs};

use super::batch::{BatchHeader, BATCH_HEADER_LEN};
use super::error::RecordError;

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(super) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads a varint at `*pos`, advancing it; `None` when truncated or longer than 10 bytes.
pub(super) fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
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
