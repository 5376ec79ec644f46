//! Kafka's records inside a record batch v2, parsed without allocating and encoded.
//!
//! ```text
//! { length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
//!   keyLength varint (-1: null) | key | valueLength varint (-1: null) | value |
//!   headerCount varint | { keyLength varint | key | valueLength varint (-1: null) | value }* }
//! ```
//! Every varint is zigzag-encoded (`varint` an i32, `varlong` an i64); `length` counts the bytes
//! after itself.

use crate::record::{get_varint, put_varint, unzigzag, varint_len, zigzag};
use crate::types::Header;

/// The fewest bytes a record can take: seven one-byte fields.
pub const KAFKA_RECORD_BYTES_MIN: usize = 7;

/// One record's fields, its headers left encoded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KafkaRecord<'a> {
    pub(crate) ts_delta: i64,
    pub(crate) offset_delta: i32,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) header_count: u32,
    /// The encoded headers, each checked to be well formed.
    pub(crate) headers: &'a [u8],
    /// Position just after the record.
    pub(crate) end: usize,
}

#[inline]
fn get_i32(b: &[u8], pos: &mut usize) -> Option<i32> {
    i32::try_from(unzigzag(get_varint(b, pos)?)).ok()
}

#[inline]
fn get_i64(b: &[u8], pos: &mut usize) -> Option<i64> {
    Some(unzigzag(get_varint(b, pos)?))
}

/// Bytes of length `len` at `*pos` (advancing it); `None` for a length below -1 or past the end,
/// `Some(None)` for -1 (null).
#[inline]
fn get_nullable<'a>(b: &'a [u8], pos: &mut usize) -> Option<Option<&'a [u8]>> {
    let len = get_i32(b, pos)?;
    if len == -1 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    let end = pos.checked_add(len)?;
    let s = b.get(*pos..end)?;
    *pos = end;
    Some(Some(s))
}

/// Parses the record at `pos` of `b` and checks its structure; `None` when it is malformed.
pub(crate) fn parse_kafka_record(b: &[u8], pos: usize) -> Option<KafkaRecord<'_>> {
    let mut p = pos;
    let len = usize::try_from(get_i32(b, &mut p)?).ok()?;
    let end = p.checked_add(len)?;
    let body = b.get(..end)?;
    p += 1; // attributes: unused by Kafka
    let ts_delta = get_i64(body, &mut p)?;
    let offset_delta = get_i32(body, &mut p)?;
    let key = get_nullable(body, &mut p)?;
    let value = get_nullable(body, &mut p)?;
    let header_count = u32::try_from(get_i32(body, &mut p)?).ok()?;
    if header_count as usize > len {
        return None;
    }
    let headers_start = p;
    for _ in 0..header_count {
        get_nullable(body, &mut p)??; // a header's key is never null
        get_nullable(body, &mut p)?;
    }
    if p != end {
        return None;
    }
    Some(KafkaRecord {
        ts_delta,
        offset_delta,
        key,
        value,
        header_count,
        headers: &body[headers_start..end],
        end,
    })
}

/// The headers of a parsed record: `(name, value)`, a null value read as empty.
pub(crate) fn kafka_headers<'a>(r: &KafkaRecord<'a>) -> Vec<(&'a [u8], &'a [u8])> {
    let mut out = Vec::new();
    let mut p = 0;
    for _ in 0..r.header_count {
        let (Some(Some(name)), Some(value)) = (
            get_nullable(r.headers, &mut p),
            get_nullable(r.headers, &mut p),
        ) else {
            unreachable!("headers were checked by parse_kafka_record");
        };
        out.push((name, value.unwrap_or(&[])));
    }
    out
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    put_varint(out, zigzag(v as i64));
}

fn i32_len(v: i32) -> usize {
    varint_len(zigzag(v as i64))
}

fn bytes_len(b: &[u8]) -> usize {
    i32_len(b.len() as i32) + b.len()
}

/// Appends one record to `out`.
pub(crate) fn put_kafka_record(
    out: &mut Vec<u8>,
    ts_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    headers: &[Header],
    value: &[u8],
) {
    let key_len = key.map_or(1, bytes_len);
    let mut body = 1 + varint_len(zigzag(ts_delta)) + i32_len(offset_delta) + key_len;
    body += bytes_len(value) + i32_len(headers.len() as i32);
    for h in headers {
        body += bytes_len(&h.name) + bytes_len(&h.value);
    }
    out.reserve(body + 5);
    put_i32(out, body as i32);
    out.push(0);
    put_varint(out, zigzag(ts_delta));
    put_i32(out, offset_delta);
    match key {
        Some(k) => {
            put_i32(out, k.len() as i32);
            out.extend_from_slice(k);
        }
        None => put_i32(out, -1),
    }
    put_i32(out, value.len() as i32);
    out.extend_from_slice(value);
    put_i32(out, headers.len() as i32);
    for h in headers {
        put_i32(out, h.name.len() as i32);
        out.extend_from_slice(&h.name);
        put_i32(out, h.value.len() as i32);
        out.extend_from_slice(&h.value);
    }
}
