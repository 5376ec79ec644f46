//! Building batches: [`BatchBuilder`] writes version 2 (a 48-byte header around an uncompressed
//! Kafka record batch v2), the layout every append writes; [`encode_batch_v1`] writes the former
//! version 1, kept so tests can make the segments older brokers wrote.

use crate::types::{Header, Record, TimestampMs};

use super::batch::{write_header, HeaderFields, BATCH_HEADER_LEN, BATCH_VERSION, BATCH_VERSION_V1};
use super::codec::Codec;
use super::kafka::record::put_kafka_record;
use super::kafka::{
    crc32c, KAFKA_HEADER_LEN, KAFKA_LOG_OVERHEAD, KAFKA_MAGIC, K_ATTRIBUTES, K_BASE_OFFSET,
    K_BASE_SEQUENCE, K_BASE_TS, K_CRC, K_LAST_OFFSET_DELTA, K_LEADER_EPOCH, K_LENGTH, K_MAGIC,
    K_MAX_TS, K_PRODUCER_EPOCH, K_PRODUCER_ID, K_RECORD_COUNT, NO_PRODUCER_ID,
};
use super::record::{put_varint, varint_len, zigzag};

/// Where the records start in a version 2 batch.
const RECORDS_AT: usize = BATCH_HEADER_LEN + KAFKA_HEADER_LEN;

/// Builds a batch in the on-disk layout (version 2), record by record.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
    /// The offset delta of the last record added (-1 before the first).
    last_delta: i32,
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
        let mut buf = Vec::with_capacity(bytes.max(RECORDS_AT));
        buf.resize(RECORDS_AT, 0);
        BatchBuilder {
            buf,
            count: 0,
            last_delta: -1,
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

    /// Adds a record with its timestamp resolved, at the offset after the last one's.
    pub fn push(
        &mut self,
        timestamp_ms: TimestampMs,
        key: Option<&[u8]>,
        headers: &[Header],
        value: &[u8],
    ) {
        assert!(self.last_delta < i32::MAX, "too many records for one batch");
        self.push_at_delta(self.last_delta + 1, timestamp_ms, key, headers, value);
    }

    /// Adds a record `offset_delta` offsets after the batch's base: past the last one's,
    /// perhaps leaving a gap. Only for [`BatchBuilder::finish_kafka`]: a stored batch holds
    /// consecutive offsets.
    pub fn push_at_delta(
        &mut self,
        offset_delta: i32,
        timestamp_ms: TimestampMs,
        key: Option<&[u8]>,
        headers: &[Header],
        value: &[u8],
    ) {
        assert!(offset_delta > self.last_delta, "offsets must increase");
        if self.count == 0 {
            self.first_ts = timestamp_ms;
        }
        self.max_ts = self.max_ts.max(timestamp_ms);
        let ts_delta = timestamp_ms.wrapping_sub(self.first_ts);
        put_kafka_record(&mut self.buf, ts_delta, offset_delta, key, headers, value);
        self.count += 1;
        self.last_delta = offset_delta;
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
        let body_len = self.buf.len() - BATCH_HEADER_LEN;
        let k = &mut self.buf[BATCH_HEADER_LEN..];
        k[K_BASE_OFFSET..K_BASE_OFFSET + 8].copy_from_slice(&0i64.to_be_bytes());
        let batch_length = (body_len - KAFKA_LOG_OVERHEAD) as i32;
        k[K_LENGTH..K_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
        k[K_LEADER_EPOCH..K_LEADER_EPOCH + 4].copy_from_slice(&0i32.to_be_bytes());
        k[K_MAGIC] = KAFKA_MAGIC as u8;
        k[K_ATTRIBUTES..K_ATTRIBUTES + 2].copy_from_slice(&0i16.to_be_bytes());
        let last_delta = self.last_delta;
        k[K_LAST_OFFSET_DELTA..K_LAST_OFFSET_DELTA + 4].copy_from_slice(&last_delta.to_be_bytes());
        k[K_BASE_TS..K_BASE_TS + 8].copy_from_slice(&self.first_ts.to_be_bytes());
        k[K_MAX_TS..K_MAX_TS + 8].copy_from_slice(&self.max_ts.to_be_bytes());
        k[K_PRODUCER_ID..K_PRODUCER_ID + 8].copy_from_slice(&NO_PRODUCER_ID.to_be_bytes());
        k[K_PRODUCER_EPOCH..K_PRODUCER_EPOCH + 2].copy_from_slice(&(-1i16).to_be_bytes());
        k[K_BASE_SEQUENCE..K_BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
        k[K_RECORD_COUNT..K_RECORD_COUNT + 4].copy_from_slice(&(self.count as i32).to_be_bytes());
        let c = crc32c(&k[K_ATTRIBUTES..]);
        k[K_CRC..K_CRC + 4].copy_from_slice(&c.to_be_bytes());
        write_header(
            &mut self.buf,
            HeaderFields {
                version: BATCH_VERSION,
                codec: Codec::None,
                record_count: self.count,
                first_timestamp_ms: self.first_ts,
                max_timestamp_ms: self.max_ts,
            },
        );
        self.buf
    }
}

impl BatchBuilder {
    /// Finishes the batch as a Kafka record batch (magic 2, uncompressed) at `base_offset`:
    /// without the stored header, its checksum over what it holds.
    pub fn finish_kafka(self, base_offset: i64) -> Vec<u8> {
        let mut v = self.finish();
        v.drain(..BATCH_HEADER_LEN);
        v[K_BASE_OFFSET..K_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
        v
    }
}

/// Encodes records into one batch (base offset 0).
pub fn encode_batch(records: &[Record], now: TimestampMs) -> Vec<u8> {
    let mut b = BatchBuilder::with_capacity(
        RECORDS_AT + records.iter().map(|r| r.value.len() + 16).sum::<usize>(),
    );
    for r in records {
        b.push_record(r, now);
    }
    b.finish()
}

/// Encodes records into one batch of the former version 1 (base offset 0): what brokers wrote
/// before version 2, for tests that make old segments.
#[doc(hidden)]
pub fn encode_batch_v1(records: &[Record], now: TimestampMs) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let mut buf = vec![0u8; BATCH_HEADER_LEN];
    let first_ts = records[0].timestamp_ms.unwrap_or(now);
    let mut max_ts = i64::MIN;
    for r in records {
        let ts = r.timestamp_ms.unwrap_or(now);
        max_ts = max_ts.max(ts);
        put_v1_record(&mut buf, zigzag(ts.wrapping_sub(first_ts)), r);
    }
    write_header(
        &mut buf,
        HeaderFields {
            version: BATCH_VERSION_V1,
            codec: Codec::None,
            record_count: records.len() as u32,
            first_timestamp_ms: first_ts,
            max_timestamp_ms: max_ts,
        },
    );
    buf
}

fn put_v1_record(buf: &mut Vec<u8>, ts_delta: u64, r: &Record) {
    let key = r.key.as_deref();
    let key_field = key.map(|k| k.len() as u64 + 1).unwrap_or(0);
    let mut body = varint_len(ts_delta) + varint_len(key_field) + key.map_or(0, |k| k.len());
    body += varint_len(r.headers.len() as u64);
    for h in &r.headers {
        body += varint_len(h.name.len() as u64) + h.name.len();
        body += varint_len(h.value.len() as u64) + h.value.len();
    }
    body += varint_len(r.value.len() as u64) + r.value.len();
    put_varint(buf, body as u64);
    put_varint(buf, ts_delta);
    put_varint(buf, key_field);
    if let Some(k) = key {
        buf.extend_from_slice(k);
    }
    put_varint(buf, r.headers.len() as u64);
    for h in &r.headers {
        put_varint(buf, h.name.len() as u64);
        buf.extend_from_slice(&h.name);
        put_varint(buf, h.value.len() as u64);
        buf.extend_from_slice(&h.value);
    }
    put_varint(buf, r.value.len() as u64);
    buf.extend_from_slice(&r.value);
}
