//! The log against a model (a vector of records): random appends of records with various sizes,
//! keys, headers and timestamps; reads from random offsets with random byte limits; timestamp
//! lookups; small segments so rolls happen; retention and `delete_before`; close and reopen;
//! crash and reopen. Every answer must match the model.

mod common;

use common::*;
use proptest::prelude::*;
use sluice_storage::fs::sim::{CrashMode, SimFs};
use sluice_storage::{FsyncPolicy, Header, Log, LogConfig, Offset, Record};

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<Record>),
    Read {
        at: u64,
        max_bytes: usize,
        max_records: usize,
    },
    /// A random timestamp, or (when `existing`) the timestamp of a record of the log.
    Time {
        ts: i64,
        existing: Option<u64>,
    },
    DeleteBefore(u64),
    Retention,
    CloseReopen,
    CrashReopen,
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        0i64..5_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 0..6),
                proptest::collection::vec(any::<u8>(), 0..10),
            ),
            0..3,
        ),
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..40),
            1 => proptest::collection::vec(any::<u8>(), 100..300),
        ],
    )
        .prop_map(|(ts, key, headers, value)| Record {
            timestamp_ms: Some(ts),
            key,
            headers: headers
                .into_iter()
                .map(|(n, v)| Header::new(n, v))
                .collect(),
            value,
        })
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => proptest::collection::vec(arb_record(), 1..5).prop_map(Op::Append),
        4 => (any::<u64>(), 1usize..2_000, 1usize..20)
            .prop_map(|(at, max_bytes, max_records)| Op::Read { at, max_bytes, max_records }),
        2 => (-10i64..5_100, proptest::option::of(any::<u64>()))
            .prop_map(|(ts, existing)| Op::Time { ts, existing }),
        1 => any::<u64>().prop_map(Op::DeleteBefore),
        1 => Just(Op::Retention),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::CrashReopen),
    ]
}

struct Model {
    /// Records by offset; offsets below `start` are deleted.
    records: Vec<Record>,
    start: u64,
}

fn check_read(log: &Log, m: &Model, at: u64, max_bytes: usize, max_records: usize) {
    let end = m.records.len() as u64;
    let span = end - m.start + 1;
    let from = Offset(m.start + at % span);
    let batches = log.read(from, max_bytes).unwrap();
    if from.0 == end {
        assert!(batches.is_empty());
        return;
    }
    assert!(!batches.is_empty(), "read at {from} returned nothing");
    assert!(batches[0].header.base_offset <= from && from <= batches[0].header.last_offset());
    let mut total = 0;
    for w in batches.windows(2) {
        assert_eq!(w[0].header.next_offset(), w[1].header.base_offset);
        total += w[0].bytes.len();
    }
    assert!(total < max_bytes, "read went past its byte limit");
    let recs = log.read_records(from, max_records, max_bytes).unwrap();
    assert!(!recs.is_empty() && recs.len() <= max_records);
    for (k, (o, r)) in recs.iter().enumerate() {
        assert_eq!(*o, from.add(k as u64));
        assert_eq!(r, &m.records[o.0 as usize], "record at {o}");
    }
}

/// Retention: none, by size, or by age (every record is from 1970, so age deletes every sealed
/// segment).
fn config(fsync: FsyncPolicy, retention: u8) -> LogConfig {
    LogConfig {
        fsync,
        retention_bytes: (retention == 1).then_some(1500),
        retention_ms: (retention == 2).then_some(60_000),
        recovery_point_interval_bytes: 300,
        ..small_config(600)
    }
}

fn run(ops: Vec<Op>, fsync: FsyncPolicy, retention: u8) {
    let fs = SimFs::new();
    let cfg = config(fsync, retention);
    let mut log = open_sim(&fs, cfg.clone()).unwrap().0;
    let mut m = Model {
        records: Vec::new(),
        start: 0,
    };
    for op in ops {
        match op {
            Op::Append(batch) => {
                let info = log.append(&batch).unwrap();
                assert_eq!(info.base_offset, Offset(m.records.len() as u64));
                assert_eq!(
                    info.last_offset.0 + 1 - info.base_offset.0,
                    batch.len() as u64
                );
                m.records.extend(batch);
            }
            Op::Read {
                at,
                max_bytes,
                max_records,
            } => check_read(&log, &m, at, max_bytes, max_records),
            Op::Time { ts, existing } => {
                let ts = match existing {
                    Some(x) if m.records.len() as u64 > m.start => {
                        let span = m.records.len() as u64 - m.start;
                        m.records[(m.start + x % span) as usize]
                            .timestamp_ms
                            .unwrap()
                    }
                    _ => ts,
                };
                let want = (m.start..m.records.len() as u64)
                    .find(|&o| m.records[o as usize].timestamp_ms.unwrap() >= ts);
                assert_eq!(
                    log.offset_for_timestamp(ts).unwrap(),
                    want.map(Offset),
                    "ts {ts}"
                );
            }
            Op::DeleteBefore(x) => {
                let floor = x % (m.records.len() as u64 + 1);
                log.delete_before(Offset(floor)).unwrap();
                assert!(log.start_offset().0 <= floor.max(m.start));
            }
            Op::Retention => {
                log.enforce_retention().unwrap();
                if let Some(max) = cfg.retention_bytes {
                    assert!(log.size_bytes() <= max || log.segments().len() == 1);
                }
                if cfg.retention_ms.is_some() {
                    assert_eq!(log.segments().len(), 1, "every sealed segment is too old");
                }
            }
            Op::CloseReopen => {
                log.close().unwrap();
                let (l, report) = open_sim(&fs, cfg.clone()).unwrap();
                assert!(report.clean, "{report:?}");
                assert_eq!(report.scanned_bytes, 0);
                log = l;
            }
            Op::CrashReopen => {
                if fsync != FsyncPolicy::Always {
                    log.flush().unwrap();
                }
                drop(log);
                fs.crash(CrashMode::DropUnsynced);
                log = open_sim(&fs, cfg.clone()).unwrap().0;
            }
        }
        // Retention (explicit or at a roll) only moves the start forward, by whole segments.
        let start = log.start_offset().0;
        assert!(
            start >= m.start,
            "start went back from {} to {start}",
            m.start
        );
        assert!(start <= m.records.len() as u64);
        assert_eq!(log.segments()[0].base_offset.0, start);
        m.start = start;
        assert_eq!(log.end_offset().0, m.records.len() as u64);
    }
    let all = read_all(&log);
    assert_eq!(all.len() as u64, m.records.len() as u64 - m.start);
    for (o, r) in all {
        assert_eq!(r, m.records[o.0 as usize]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_a_vector_of_records(
        ops in proptest::collection::vec(arb_op(), 1..60),
        always in any::<bool>(),
        retention in 0u8..3,
    ) {
        let fsync = if always { FsyncPolicy::Always } else { FsyncPolicy::Never };
        run(ops, fsync, retention);
    }
}
