//! sluice's byte layouts and the types they carry, shared by the storage engine
//! (`sluice-storage`, which re-exports this crate as `sluice_storage::format`), the broker and
//! the client (which needs no engine to build and read batches): file headers, batches and
//! records. All integers little-endian. The full specification, with diagrams and version
//! history, is `docs/format.md`.
//!
//! # Layout
//! - [`types`]: [`Offset`], [`TimestampMs`], [`Record`], [`Header`], [`TopicId`].
//! - [`file_header`]: the 32-byte header of `.log`, `.index` and `.timeindex` files.
//! - [`batch`]: the batch header (both versions), its checks, [`write_header`] and
//!   [`validate_batch`].
//! - [`builder`]: [`BatchBuilder`] (version 2) and the version 1 encoder kept for tests.
//! - [`record`]: records inside a batch of either version: [`BatchRecords`], [`RecordIter`],
//!   [`RecordView`].
//! - [`kafka`]: Kafka's record batch v2, the body of a version 2 batch: its header, records,
//!   full check, and the conversions a Kafka produce and fetch need ([`kafka_to_stored`],
//!   [`stored_to_kafka`]).
//! - [`codec`]: bounded decompression of compressed bodies.
//! - [`scan`]: the one batch scanner ([`scan::step`]) and why a walk stops ([`ScanStop`]).
//! - [`error`]: the typed errors of these layouts.
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
//! Version 2 body: a Kafka record batch v2 (big-endian; `kafka`), its records Kafka's.
//!
//! Version 1 record (varints are unsigned LEB128; `ts_delta` is zigzag-encoded):
//! { body_len varint | ts_delta varint | key_len+1 varint (0 = no key) | key |
//!   header_count varint | { name_len varint | name | value_len varint | value }* |
//!   value_len varint | value }
//! ```

#![warn(missing_docs)]

pub mod batch;
pub mod builder;
pub mod codec;
pub mod error;
pub mod file_header;
pub mod kafka;
pub mod record;
pub mod replicated;
pub mod scan;
pub mod types;

pub use batch::{
    check_body, check_records_crc, decode_batch_header, kafka_body, records_crc_of,
    set_base_offset, validate_batch, validate_batch_within, write_header, BatchHeader, HeaderError,
    HeaderFields, ATTR_COMPRESSION_MASK, ATTR_CONTROL, ATTR_RESERVED_MASK, BATCH_HEADER_LEN,
    BATCH_MAGIC, BATCH_VERSION, BATCH_VERSION_V1, RECORD_HEADERS_MAX, STORED_RECORD_HEADERS_MAX,
};
pub use builder::{encode_batch, encode_batch_v1, BatchBuilder};
pub use codec::{Codec, DECOMPRESSED_BYTES_MAX};
pub use error::{BatchError, FileHeaderError, RecordError};
pub use file_header::{
    decode_file_header, encode_file_header, file_header_body_crc, set_file_header_body_crc,
    FILE_HEADER_LEN, FORMAT_VERSION, INDEX_MAGIC, SEGMENT_MAGIC, TIME_INDEX_MAGIC,
};
pub use kafka::convert::{kafka_to_stored, stored_to_kafka, stored_to_kafka_pieces, KafkaBatch};
pub use kafka::validate::{check_kafka_batch, check_kafka_header_and_crc, KafkaChecked};
pub use kafka::{crc32c, KafkaHeader};
pub use record::{BatchRecords, RecordIter, RecordView};
pub use replicated::{
    control_payload, encode_control_batch, raft_stamp, set_raft_stamp, RaftStamp, RAFT_INDEX_MAX,
    RAFT_MORE_MAX, RAFT_TERM_MAX,
};
pub use scan::{check_batch, ScanEnd, ScanRules, ScanStop, ScannedBatch, Step};
pub use types::{now_ms, Header, Offset, Record, TimestampMs, TopicId};

/// The CRC-32 (IEEE) used everywhere in sluice.
pub fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::record::{get_varint, put_varint, unzigzag, varint_len, zigzag};
    use super::*;
    use crate::types::{Header, Offset, Record};

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
        let recs = BatchRecords::new(&b, &h).unwrap();
        let rs: Vec<_> = recs.iter().map(|r| r.unwrap()).collect();
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
        assert_eq!(
            decode_file_header(&h, INDEX_MAGIC, 0)
                .unwrap_err()
                .to_string(),
            "bad magic \"SLUICELG\", expected \"SLUICEIX\""
        );
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
