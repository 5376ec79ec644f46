//! Idempotent producers: a retried batch is answered with its first offsets and not written
//! twice, out-of-sequence and fenced batches are refused, and after a restart or a crash the
//! table is rebuilt from the log, so a retry of a batch that survived is still recognised and a
//! batch that did not survive is written once.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record as KRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_storage::format::kafka_to_stored;
use sluice_storage::fs::sim::{CrashMode, SimFs};
use sluice_storage::{Appended, Error, Log, Offset, ProducerBatch, ProducerError};

/// A Kafka batch of `n` records from producer `id`/`epoch` starting at sequence `seq`.
fn kafka_batch(id: i64, epoch: i16, seq: i32, n: i32) -> (Vec<u8>, ProducerBatch) {
    let records: Vec<KRecord> = (0..n)
        .map(|i| KRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i,
            timestamp: 1_000 + i as i64,
            key: None,
            value: Some(Bytes::from(format!("p{id} e{epoch} s{}", seq + i))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &opts).unwrap();
    let stored = kafka_to_stored(&buf, 1 << 20).unwrap().remove(0);
    let p = ProducerBatch {
        id: stored.producer_id,
        epoch: stored.producer_epoch,
        base_sequence: stored.base_sequence,
        record_count: stored.record_count,
    };
    (stored.bytes, p)
}

fn append(log: &Log, id: i64, epoch: i16, seq: i32, n: i32) -> sluice_storage::Result<Appended> {
    let (bytes, p) = kafka_batch(id, epoch, seq, n);
    let r = log.append_idempotent(bytes, p)?;
    let info = match r {
        Appended::New(i) | Appended::Duplicate(i) => i,
    };
    log.sync_to(info.next_offset())?;
    Ok(r)
}

fn values(log: &Log) -> Vec<Vec<u8>> {
    read_all(log).into_iter().map(|(_, r)| r.value).collect()
}

#[test]
fn retries_are_answered_not_written() {
    let fs = SimFs::new();
    let (log, _) = open_sim(&fs, small_config(4096)).unwrap();
    let Appended::New(first) = append(&log, 5, 0, 0, 3).unwrap() else {
        panic!("first batch not written")
    };
    log.append(&[record(99)]).unwrap(); // a producer without idempotence in between
    assert!(matches!(
        append(&log, 5, 0, 3, 2).unwrap(),
        Appended::New(_)
    ));
    match append(&log, 5, 0, 0, 3).unwrap() {
        Appended::Duplicate(i) => assert_eq!(i, first),
        other => panic!("retry written again: {other:?}"),
    }
    assert_eq!(values(&log).len(), 6);
    let gap = append(&log, 5, 0, 9, 1).unwrap_err();
    assert!(
        matches!(
            gap,
            Error::Producer(ProducerError::OutOfOrder {
                expected: 5,
                found: 9,
                ..
            })
        ),
        "{gap}"
    );
    assert!(matches!(
        append(&log, 5, 1, 0, 1).unwrap(),
        Appended::New(_)
    ));
    let fenced = append(&log, 5, 0, 5, 1).unwrap_err();
    assert!(matches!(
        fenced,
        Error::Producer(ProducerError::Fenced { .. })
    ));
    assert_eq!(values(&log).len(), 7, "refused batches wrote nothing");
}

const BATCHES: i32 = 16;

#[test]
fn the_table_is_rebuilt_from_the_log_after_a_restart_and_a_crash() {
    let fs = SimFs::new();
    let cfg = small_config(400); // several segments
    let (log, _) = open_sim(&fs, cfg.clone()).unwrap();
    let mut seq = 0;
    let mut last = None;
    for _ in 0..BATCHES {
        if let Appended::New(i) = append(&log, 8, 2, seq, 2).unwrap() {
            last = Some(i);
        }
        seq += 2;
    }
    assert!(log.segments().len() > 2);
    log.close().unwrap();

    let (log, _) = open_sim(&fs, cfg.clone()).unwrap();
    match append(&log, 8, 2, seq - 2, 2).unwrap() {
        Appended::Duplicate(i) => assert_eq!(Some(i), last),
        other => panic!("after a restart the retry was written again: {other:?}"),
    }
    assert!(matches!(
        append(&log, 8, 1, seq, 1),
        Err(Error::Producer(_))
    ));
    // A batch written but never synced is lost in a crash; its retry is then written once.
    let (bytes, p) = kafka_batch(8, 2, seq, 1);
    log.append_idempotent(bytes, p).unwrap();
    fs.crash(CrashMode::DropUnsynced);
    drop(log);
    let (log, _) = open_sim(&fs, cfg).unwrap();
    let end = log.end_offset();
    let Appended::New(i) = append(&log, 8, 2, seq, 1).unwrap() else {
        panic!("a batch lost in the crash was taken for a retry")
    };
    assert_eq!(i.base_offset, end);
    assert!(matches!(
        append(&log, 8, 2, seq, 1).unwrap(),
        Appended::Duplicate(_)
    ));
    assert_eq!(values(&log).len(), 2 * BATCHES as usize + 1);
    assert_eq!(log.start_offset(), Offset(0));
}
