//! Pub-sub on a topic: fan-out, durable named subscribers, start positions, anonymous replay,
//! lag, and the store's directory of topics (names, persistence, deletion).

use std::sync::Arc;

use sluice_storage::fs::sim::{CrashMode, SimFs};
use sluice_storage::{
    inspect_offsets, Error, FsRef, LogConfig, Offset, Record, StartAt, Store, StoreConfig,
};

fn store(sim: &SimFs) -> Store {
    let fs: FsRef = Arc::new(sim.clone());
    Store::open(fs, "/data", StoreConfig::default()).unwrap()
}

fn small_log() -> LogConfig {
    LogConfig {
        segment_bytes_max: 4096,
        ..LogConfig::default()
    }
}

/// Reads everything from `from` to the visible end.
fn read_all(t: &sluice_storage::Topic, mut from: Offset) -> Vec<(Offset, Record)> {
    let mut out = Vec::new();
    loop {
        let got = t.log().read_records(from, 1000, 1 << 20).unwrap();
        if got.is_empty() {
            return out;
        }
        from = got.last().unwrap().0.add(1);
        out.extend(got);
    }
}

#[test]
fn fan_out_every_subscriber_gets_every_message_once_in_order() {
    let sim = SimFs::new();
    let s = store(&sim);
    let t = s.create_topic("orders", Some(small_log())).unwrap();
    let subs = ["a", "b", "c", "d"];
    for n in subs {
        assert_eq!(t.subscribe(n, StartAt::Earliest).unwrap()[0], Offset(0));
    }
    for i in 0..200u32 {
        t.publish(&[Record::from_value(i.to_be_bytes().to_vec())])
            .unwrap();
    }
    for n in subs {
        let mut seen = Vec::new();
        let mut at = t.committed(n, 0).map(|c| c.0).unwrap();
        // Read in small steps, committing as it goes.
        loop {
            let got = t.log().read_records(at, 7, 1 << 16).unwrap();
            if got.is_empty() {
                break;
            }
            for (o, r) in &got {
                assert_eq!(*o, at);
                seen.push(u32::from_be_bytes(r.value.clone().try_into().unwrap()));
                at = o.add(1);
            }
            t.commit(n, 0, at, &[]).unwrap();
        }
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        assert_eq!(t.committed(n, 0).map(|c| c.0), Some(Offset(200)));
    }
    let st = t.stats();
    assert_eq!(st.partitions[0].end_offset, Offset(200));
    assert!(st.partitions[0].subscribers.iter().all(|s| s.lag == 0));
    s.close().unwrap();
}

#[test]
fn subscribers_resume_after_a_broker_crash_and_lag_is_reported() {
    let sim = SimFs::new();
    let s = store(&sim);
    let t = s.create_topic("t", None).unwrap();
    t.subscribe("slow", StartAt::Earliest).unwrap();
    t.subscribe("fast", StartAt::Earliest).unwrap();
    for i in 0..10 {
        t.publish(&[Record::from_value(format!("m{i}"))]).unwrap();
    }
    t.commit("fast", 0, Offset(10), &[]).unwrap();
    t.commit("slow", 0, Offset(3), &[]).unwrap();
    let lag: Vec<(String, u64)> = t
        .stats()
        .partitions
        .remove(0)
        .subscribers
        .into_iter()
        .map(|s| (s.name, s.lag))
        .collect();
    assert_eq!(lag, vec![("fast".into(), 0), ("slow".into(), 7)]);
    drop(t);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let s = store(&sim);
    let t = s.topic("t").unwrap();
    assert_eq!(t.subscribe("slow", StartAt::Latest).unwrap()[0], Offset(3));
    assert_eq!(t.committed("fast", 0).map(|c| c.0), Some(Offset(10)));
    // The offline loader sees the same.
    let offs = inspect_offsets(&sim, std::path::Path::new("/data/topics/t")).unwrap();
    assert_eq!(offs.get("slow").map(|p| p[&0].offset), Some(3));
    // A commit past the end is refused and changes nothing; a commit below is a seek.
    assert!(matches!(
        t.commit("fast", 0, Offset(99), &[]),
        Err(Error::OffsetOutOfRange {
            offset: Offset(99),
            end: Offset(10),
            ..
        })
    ));
    assert_eq!(t.committed("fast", 0).map(|c| c.0), Some(Offset(10)));
    t.commit("fast", 0, Offset(2), &[]).unwrap();
    assert_eq!(t.committed("fast", 0).map(|c| c.0), Some(Offset(2)));
    t.delete_subscriber("fast").unwrap();
    assert_eq!(t.committed("fast", 0).map(|c| c.0), None);
    assert!(matches!(
        t.commit("nobody", 0, Offset(1), &[]),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn start_positions_and_anonymous_replay() {
    let sim = SimFs::new();
    let s = store(&sim);
    let t = s.create_topic("t", None).unwrap();
    for i in 0..10i64 {
        t.publish(&[Record {
            timestamp_ms: Some(1_000 + i * 10),
            ..Record::from_value(format!("m{i}"))
        }])
        .unwrap();
    }
    assert_eq!(t.subscribe("e", StartAt::Earliest).unwrap()[0], Offset(0));
    assert_eq!(t.subscribe("l", StartAt::Latest).unwrap()[0], Offset(10));
    assert_eq!(
        t.subscribe("o", StartAt::Offset(Offset(4))).unwrap()[0],
        Offset(4)
    );
    assert_eq!(
        t.subscribe("big", StartAt::Offset(Offset(400))).unwrap()[0],
        Offset(10)
    );
    assert_eq!(
        t.subscribe("ts", StartAt::Timestamp(1_045)).unwrap()[0],
        Offset(5)
    );
    assert_eq!(
        t.subscribe("future", StartAt::Timestamp(9_999)).unwrap()[0],
        Offset(10)
    );
    // An existing subscriber keeps its offset whatever start it asks for.
    assert_eq!(t.subscribe("o", StartAt::Earliest).unwrap()[0], Offset(4));
    // Anonymous readers replay any range without committing.
    let all = read_all(&t, Offset(3));
    assert_eq!(all.len(), 7);
    assert_eq!(all[0].1.value, b"m3");
    assert_eq!(t.stats().partitions[0].subscribers.len(), 6);
}

#[test]
fn store_persists_topics_and_queues_and_validates_names() {
    let sim = SimFs::new();
    let s = store(&sim);
    s.create_topic("b-topic", Some(small_log())).unwrap();
    s.create_topic("a.topic", None).unwrap();
    s.create_queue("jobs", Default::default()).unwrap();
    assert!(matches!(
        s.create_topic("a.topic", None),
        Err(Error::AlreadyExists { .. })
    ));
    for bad in ["", ".", "..", "a/b", "x y", "é", &"n".repeat(201)] {
        assert!(
            matches!(s.create_topic(bad, None), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
        assert!(s.create_queue(bad, Default::default()).is_err());
    }
    assert_eq!(s.list_topics(), vec!["a.topic", "b-topic"]);
    // The dead-letter queue is made by its first dead letter or lookup.
    assert_eq!(s.list_queues(), vec!["jobs"]);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let s = store(&sim);
    assert_eq!(s.list_topics(), vec!["a.topic", "b-topic"]);
    // The dead-letter queue is made by its first dead letter or lookup.
    assert_eq!(s.list_queues(), vec!["jobs"]);
    assert_eq!(s.topic("b-topic").unwrap().log().config(), &small_log());
    s.delete_topic("b-topic").unwrap();
    s.delete_queue("jobs").unwrap();
    assert!(matches!(s.topic("b-topic"), Err(Error::NotFound { .. })));
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let s = store(&sim);
    assert_eq!(s.list_topics(), vec!["a.topic"]);
    assert!(s.list_queues().is_empty(), "no dead letter made jobs.dlq");
    s.close().unwrap();
    assert!(matches!(s.create_topic("x", None), Err(Error::Closed)));
}

#[test]
fn offsets_are_clamped_when_the_log_lost_its_tail() {
    let sim = SimFs::new();
    let s = store(&sim);
    let cfg = LogConfig {
        fsync: sluice_storage::FsyncPolicy::Never,
        ..LogConfig::default()
    };
    let t = s.create_topic("t", Some(cfg)).unwrap();
    t.subscribe("s", StartAt::Earliest).unwrap();
    for i in 0..5 {
        t.publish(&[Record::from_value(format!("m{i}"))]).unwrap();
    }
    t.log().flush().unwrap();
    for i in 5..10 {
        t.publish(&[Record::from_value(format!("m{i}"))]).unwrap();
    }
    t.commit("s", 0, Offset(9), &[]).unwrap();
    // The offsets are synced, the log's last five messages are not.
    t.flush_offsets().unwrap();
    drop(t);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let s = store(&sim);
    let t = s.topic("t").unwrap();
    assert_eq!(t.log().end_offset(), Offset(5));
    assert_eq!(t.committed("s", 0).map(|c| c.0), Some(Offset(5)));
    // The clamp itself is durable: new messages at 5.. are not skipped after another crash.
    for i in 0..5 {
        t.publish(&[Record::from_value(format!("n{i}"))]).unwrap();
    }
    t.log().flush().unwrap();
    drop(t);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let s = store(&sim);
    assert_eq!(
        s.topic("t").unwrap().committed("s", 0).map(|c| c.0),
        Some(Offset(5))
    );
}
