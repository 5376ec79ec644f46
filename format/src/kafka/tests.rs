//! Kafka batches against an independent implementation (the `kafka-protocol` crate): what it
//! encodes, sluice stores and reads back; what sluice hands a fetch, it decodes.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType,
};

use super::*;
use crate::types::{Header, Offset, Record};
use crate::{
    check_kafka_header_and_crc, decode_batch_header, encode_batch, encode_batch_v1,
    kafka_to_stored, set_base_offset, stored_to_kafka, stored_to_kafka_pieces, validate_batch,
    BatchRecords, BATCH_HEADER_LEN, RECORD_HEADERS_MAX,
};

fn krecord(i: i64, value: Option<&[u8]>) -> KRecord {
    let mut headers = IndexMap::new();
    headers.insert(
        StrBytes::from_static_str("h"),
        Some(Bytes::from(format!("v{i}"))),
    );
    KRecord {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: 7,
        producer_epoch: 1,
        timestamp_type: TimestampType::Creation,
        offset: i,
        sequence: 100 + i as i32,
        timestamp: 1_700_000_000_000 + (i * 37) % 100,
        key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
        value: value.map(Bytes::copy_from_slice),
        headers,
    }
}

fn kafka_encode(records: &[KRecord], compression: Compression) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options).unwrap();
    buf.to_vec()
}

fn sample(n: i64) -> Vec<KRecord> {
    (0..n)
        .map(|i| krecord(i, (i != 3).then_some(&b"some value bytes"[..])))
        .collect()
}

#[test]
fn produced_batches_are_stored_as_sent_and_read_back() {
    for compression in [Compression::None, Compression::Gzip, Compression::Snappy] {
        let records = sample(10);
        let wire = kafka_encode(&records, compression);
        let stored = kafka_to_stored(&wire, 1 << 20).unwrap();
        assert_eq!(stored.len(), 1);
        let b = &stored[0];
        assert_eq!(
            (b.producer_id, b.producer_epoch, b.base_sequence),
            (7, 1, 100)
        );
        assert_eq!(b.record_count, 10);
        // Stored as sent: the body is the client's batch, but for the fields outside its CRC.
        assert_eq!(&b.bytes[BATCH_HEADER_LEN + K_MAGIC..], &wire[K_MAGIC..]);
        let mut bytes = b.bytes.clone();
        set_base_offset(&mut bytes, Offset(1000));
        let h = validate_batch(&bytes, 1 << 20).unwrap();
        assert_eq!(h.record_count, 10);
        let expect_max = records.iter().map(|r| r.timestamp).max().unwrap();
        assert_eq!(h.max_timestamp_ms, expect_max);
        let recs = BatchRecords::new(&bytes, &h).unwrap();
        for (r, k) in recs.iter().zip(&records) {
            let r = r.unwrap();
            assert_eq!(r.offset, Offset(1000 + k.offset as u64));
            assert_eq!(r.timestamp_ms, k.timestamp);
            assert_eq!(r.key, k.key.as_deref());
            assert_eq!(r.value, k.value.as_deref().unwrap_or(&[]));
            assert_eq!(r.headers.len(), 1);
            assert_eq!(r.headers[0].1, k.headers[0].as_deref().unwrap());
        }
        assert_eq!(recs.iter().count(), 10);
    }
}

#[test]
fn fetched_batches_decode_in_an_independent_client() {
    // Version 2 (as sluice writes it) and version 1 (older segments) alike.
    let records: Vec<Record> = (0..5)
        .map(|i| Record {
            timestamp_ms: Some(1_000 + i),
            key: (i % 2 == 0).then(|| format!("k{i}").into_bytes()),
            headers: vec![Header::new("n", format!("{i}"))],
            value: format!("value {i}").into_bytes(),
        })
        .collect();
    for build in [encode_batch, encode_batch_v1] {
        let mut a = build(&records[..2], 0);
        set_base_offset(&mut a, Offset(40));
        let mut b = build(&records[2..], 0);
        set_base_offset(&mut b, Offset(42));
        let run = [a, b].concat();
        let mut out = Vec::new();
        stored_to_kafka(&run, &mut out).unwrap();
        // The pieces a fetch writes are the same bytes.
        let mut pieces = Vec::new();
        let added = stored_to_kafka_pieces(&Bytes::from(run.clone()), &mut pieces).unwrap();
        assert_eq!(added, out.len());
        assert_eq!(pieces.concat(), out);
        let sets = RecordBatchDecoder::decode_all(&mut Bytes::from(out)).unwrap();
        let got: Vec<_> = sets.iter().flat_map(|s| s.records.iter()).collect();
        assert_eq!(got.len(), 5);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.offset, 40 + i as i64);
            assert_eq!(r.timestamp, 1_000 + i as i64);
            assert_eq!(r.key.as_deref(), records[i].key.as_deref());
            assert_eq!(r.value.as_deref(), Some(&records[i].value[..]));
            assert_eq!(r.headers.len(), 1);
        }
    }
}

#[test]
fn several_batches_in_one_produce() {
    let wire = [
        kafka_encode(&sample(3), Compression::None),
        kafka_encode(&sample(2), Compression::Gzip),
    ]
    .concat();
    let stored = kafka_to_stored(&wire, 1 << 20).unwrap();
    assert_eq!(
        stored.iter().map(|b| b.record_count).collect::<Vec<_>>(),
        [3, 2]
    );
}

#[test]
fn every_flip_inside_the_crc_is_refused() {
    let wire = kafka_encode(&sample(3), Compression::None);
    for bit in 0..wire.len() * 8 {
        let mut c = wire.clone();
        c[bit / 8] ^= 1 << (bit % 8);
        let byte = bit / 8;
        let outside_crc = byte < K_LENGTH || (K_LEADER_EPOCH..K_MAGIC).contains(&byte);
        let r = kafka_to_stored(&c, 1 << 20);
        if outside_crc {
            assert!(
                r.is_ok(),
                "flip of bit {bit} (a field the broker sets) was refused"
            );
        } else {
            assert!(r.is_err(), "flip of bit {bit} went unnoticed");
            // A reader's lighter check (header and CRC) refuses it too.
            assert!(check_kafka_header_and_crc(&c).is_err(), "bit {bit}");
        }
    }
    assert!(check_kafka_header_and_crc(&wire).is_ok());
}

fn with_crc(mut b: Vec<u8>) -> Vec<u8> {
    let c = crc32c(&b[K_ATTRIBUTES..]);
    b[K_CRC..K_CRC + 4].copy_from_slice(&c.to_be_bytes());
    b
}

#[test]
fn hostile_headers_are_refused_without_allocating() {
    let good = kafka_encode(&sample(3), Compression::None);
    let set = |at: usize, v: &[u8]| {
        let mut b = good.clone();
        b[at..at + v.len()].copy_from_slice(v);
        with_crc(b)
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("huge count", set(K_RECORD_COUNT, &i32::MAX.to_be_bytes())),
        (
            "negative count",
            set(K_RECORD_COUNT, &(-1i32).to_be_bytes()),
        ),
        ("last delta", set(K_LAST_OFFSET_DELTA, &5i32.to_be_bytes())),
        ("magic 1", set(K_MAGIC, &[1])),
        (
            "transactional",
            set(K_ATTRIBUTES, &KATTR_TRANSACTIONAL.to_be_bytes()),
        ),
        ("control", set(K_ATTRIBUTES, &KATTR_CONTROL.to_be_bytes())),
        ("codec 5", set(K_ATTRIBUTES, &5i16.to_be_bytes())),
        (
            "gzip flag on plain records",
            set(K_ATTRIBUTES, &1i16.to_be_bytes()),
        ),
        ("negative length", set(K_LENGTH, &(-5i32).to_be_bytes())),
        (
            "length past the bytes",
            set(K_LENGTH, &i32::MAX.to_be_bytes()),
        ),
        ("short", good[..40].to_vec()),
    ];
    for (what, b) in cases {
        assert!(kafka_to_stored(&b, 1 << 20).is_err(), "{what} accepted");
    }
    // Records that claim more bytes than there are.
    let mut b = good.clone();
    b[KAFKA_HEADER_LEN] = 0x7e; // first record's length: 63, past the batch
    assert!(kafka_to_stored(&with_crc(b), 1 << 20).is_err());
    // A trailing partial batch.
    let mut two = good.clone();
    two.extend_from_slice(&good[..30]);
    assert!(kafka_to_stored(&two, 1 << 20).is_err());
    assert!(kafka_to_stored(&[], 1 << 20).is_err());
    // Over the stored-batch limit.
    assert!(kafka_to_stored(&good, good.len() as u32).is_err());
}

#[test]
fn a_wrong_max_timestamp_is_corrected_as_kafka_does() {
    let good = kafka_encode(&sample(3), Compression::None);
    let mut b = good.clone();
    b[K_MAX_TS..K_MAX_TS + 8].copy_from_slice(&5i64.to_be_bytes());
    let stored = kafka_to_stored(&with_crc(b), 1 << 20).unwrap();
    let h = validate_batch(&stored[0].bytes, 1 << 20).unwrap();
    let want = sample(3).iter().map(|r| r.timestamp).max().unwrap();
    assert_eq!(h.max_timestamp_ms, want);
}

#[test]
fn header_limits_hold_for_kafka_records() {
    let mut r = krecord(0, Some(b"v"));
    for i in 0..=RECORD_HEADERS_MAX {
        r.headers
            .insert(StrBytes::from_string(format!("h{i}")), Some(Bytes::new()));
    }
    let wire = kafka_encode(&[r], Compression::None);
    assert!(matches!(
        kafka_to_stored(&wire, 1 << 20),
        Err(BatchError::TooManyHeaders { .. })
    ));
}

#[test]
fn stored_version_2_bit_flips_are_detected_and_layout_is_kafkas() {
    let recs = [Record::from_value("x"), Record::from_value("yy")];
    let mut b = encode_batch(&recs, 9);
    set_base_offset(&mut b, Offset(3));
    let h = decode_batch_header(&b, u32::MAX).unwrap();
    assert_eq!(h.version, crate::BATCH_VERSION);
    let k = KafkaHeader::read(&b[BATCH_HEADER_LEN..]).unwrap();
    assert_eq!(k.magic, KAFKA_MAGIC);
    assert_eq!(k.record_count, 2);
    assert_eq!(k.total_len(), b.len() - BATCH_HEADER_LEN);
    assert_eq!(k.crc, crc32c(&b[BATCH_HEADER_LEN + K_ATTRIBUTES..]));
    for bit in 0..b.len() * 8 {
        let mut c = b.clone();
        c[bit / 8] ^= 1 << (bit % 8);
        assert!(validate_batch(&c, 1 << 20).is_err(), "flip of bit {bit}");
    }
}

#[test]
fn a_kafka_batch_with_gaps_decodes_at_its_offsets() {
    use crate::BatchBuilder;
    let offsets = [40i64, 41, 45, 100];
    let mut b = BatchBuilder::new();
    for (k, &o) in offsets.iter().enumerate() {
        let h = [Header::new("n", k.to_string())];
        let key = format!("k{o}");
        b.push_at_delta(
            (o - 40) as i32,
            1_700_000_000_000 + k as i64,
            Some(key.as_bytes()),
            &h,
            format!("v{o}").as_bytes(),
        );
    }
    let kafka = b.finish_kafka(40);
    let mut sets = RecordBatchDecoder::decode_all(&mut Bytes::from(kafka)).unwrap();
    assert_eq!(sets.len(), 1);
    let set = sets.remove(0);
    let got: Vec<(i64, Bytes, Bytes)> = set
        .records
        .iter()
        .map(|r| (r.offset, r.key.clone().unwrap(), r.value.clone().unwrap()))
        .collect();
    let want: Vec<(i64, Bytes, Bytes)> = offsets
        .iter()
        .map(|o| {
            (
                *o,
                Bytes::from(format!("k{o}")),
                Bytes::from(format!("v{o}")),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(set.records[3].timestamp, 1_700_000_000_003);
}

#[test]
fn skipping_records_lands_where_reading_them_would() {
    let records: Vec<Record> = (0..20u8)
        .map(|i| {
            let mut r = Record::from_value(vec![i; 1 + i as usize]);
            r.key = (i % 3 == 0).then(|| vec![b'k', i]);
            r.headers = vec![Header::new(b"h".to_vec(), vec![i])];
            r
        })
        .collect();
    for encode in [encode_batch, encode_batch_v1] {
        let mut b = encode(&records, 1_700_000_000_000);
        set_base_offset(&mut b, Offset(100));
        let h = decode_batch_header(&b, u32::MAX).unwrap();
        let all = BatchRecords::new(&b, &h).unwrap();
        for to in [0, 100, 101, 107, 119, 120, 500] {
            let mut it = all.iter();
            it.skip_to(Offset(to));
            let skipped: Vec<_> = it.map(|r| r.unwrap().to_record()).collect();
            let read: Vec<_> = all
                .iter()
                .map(|r| r.unwrap())
                .filter(|r| r.offset.0 >= to)
                .map(|r| r.to_record())
                .collect();
            assert_eq!(skipped, read, "skip to {to}, version {}", h.version);
        }
        // A length that runs past the end stops the skip; the next read reports it.
        let mut cut = b.clone();
        let pos = cut.len() - 3;
        cut.truncate(pos);
        let rc = BatchRecords::new(&cut, &h).unwrap();
        let mut it = rc.iter();
        it.skip_to(Offset(500));
        assert!(it.any(|r| r.is_err()), "version {}", h.version);
    }
}
