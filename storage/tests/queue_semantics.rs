//! Queue semantics: competing consumers, redelivery after a consumer crash, nack, ack
//! deadlines, dead letters, in-flight bounds, reclaim, and a consumer group on a topic.
//!
//! Longer than most files on purpose: each file under `tests/` is a binary of its own that links
//! the whole broker, so the scenarios of one subject share one binary (and one set of helpers)
//! rather than adding links to a CI run on two cores.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use sluice_storage::fs::sim::{CrashMode, OpKind, SimFs};
use sluice_storage::store::dead_letter_headers as dlh;
use sluice_storage::{
    inspect_queue_state, ConsumerId, FsRef, Header, LogConfig, ManualClock, Offset, QueueConfig,
    Record, StartAt, Store, StoreConfig,
};

fn open(sim: &SimFs, clock: &Arc<ManualClock>) -> Store {
    let fs: FsRef = Arc::new(sim.clone());
    Store::open_with_clock(fs, "/data", StoreConfig::default(), clock.clone()).unwrap()
}

fn publish_n(q: &sluice_storage::Queue, n: usize) {
    let recs: Vec<Record> = (0..n)
        .map(|i| Record::from_value(format!("m{i}")))
        .collect();
    for chunk in recs.chunks(50) {
        q.publish(chunk).unwrap();
    }
}

const A: ConsumerId = ConsumerId(1);
const B: ConsumerId = ConsumerId(2);

#[test]
fn competing_consumers_ack_every_message_exactly_once() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let q = s
        .create_queue(
            "jobs",
            QueueConfig {
                max_unacked_per_consumer: 16,
                ..QueueConfig::default()
            },
        )
        .unwrap();
    publish_n(&q, 1000);
    let acked = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for c in 0..4u64 {
            let q = &q;
            let acked = &acked;
            sc.spawn(move || loop {
                let got = q.deliver(ConsumerId(c), 10).unwrap();
                if got.is_empty() {
                    if q.stats().depth == 0 {
                        return;
                    }
                    std::thread::yield_now();
                    continue;
                }
                let offs: Vec<Offset> = got.iter().map(|d| d.offset).collect();
                // Acks in any order.
                let mut rev = offs.clone();
                rev.reverse();
                q.ack(ConsumerId(c), &rev).unwrap();
                acked.lock().unwrap().extend(offs);
            });
        }
    });
    let mut all = acked.into_inner().unwrap();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(n, 1000, "no message acked twice");
    assert_eq!(all, (0..1000).map(Offset).collect::<Vec<_>>());
    let st = q.stats();
    assert_eq!(st.ack_floor, Offset(1000));
    assert_eq!((st.depth, st.in_flight, st.acked_above_floor), (0, 0, 0));
}

#[test]
fn consumer_crash_before_ack_redelivers_and_after_ack_never() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let q = s.create_queue("jobs", QueueConfig::default()).unwrap();
    publish_n(&q, 3);
    let d = q.deliver(A, 2).unwrap();
    assert_eq!(d.iter().map(|d| d.offset.0).collect::<Vec<_>>(), vec![0, 1]);
    q.ack(A, &[Offset(1)]).unwrap();
    q.release(A); // A's connection dropped holding 0.
    let d = q.deliver(B, 10).unwrap();
    let got: Vec<(u64, u32)> = d.iter().map(|d| (d.offset.0, d.attempt)).collect();
    assert_eq!(got, vec![(0, 2), (2, 1)]);
    assert_eq!(d[0].record.value, b"m0");
    // 77 was never delivered: refused by name, while B's own acks (one given twice) apply.
    let r = q.ack(B, &[Offset(0), Offset(2), Offset(2), Offset(77)]);
    assert!(
        matches!(&r, Err(sluice_storage::Error::NotHeld { offsets }) if offsets == &[Offset(77)]),
        "{r:?}"
    );
    q.release(B);
    assert!(q.deliver(A, 10).unwrap().is_empty());
    assert_eq!(q.stats().ack_floor, Offset(3));
}

#[test]
fn broker_crash_redelivers_unacked_and_never_acked() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let q = s.create_queue("jobs", QueueConfig::default()).unwrap();
    publish_n(&q, 10);
    let d = q.deliver(A, 6).unwrap();
    assert_eq!(d.len(), 6);
    q.ack(A, &[Offset(0), Offset(2), Offset(5)]).unwrap();
    drop(q);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let rep = inspect_queue_state(&sim, Path::new("/data/queues/jobs")).unwrap();
    assert_eq!((rep.floor, rep.cursor, rep.acked_above_floor), (1, 6, 2));
    assert_eq!(rep.in_flight, vec![(1, 1), (3, 1), (4, 1)]);
    let s = open(&sim, &clock);
    let q = s.queue("jobs").unwrap();
    let got: Vec<(u64, u32)> = q
        .deliver(B, 100)
        .unwrap()
        .iter()
        .map(|d| (d.offset.0, d.attempt))
        .collect();
    assert_eq!(
        got,
        vec![(1, 2), (3, 2), (4, 2), (6, 1), (7, 1), (8, 1), (9, 1)]
    );
}

#[test]
fn nack_with_delay_and_ack_deadline() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(1_000));
    let s = open(&sim, &clock);
    let q = s
        .create_queue(
            "jobs",
            QueueConfig {
                ack_timeout_ms: 500,
                ..QueueConfig::default()
            },
        )
        .unwrap();
    publish_n(&q, 2);
    q.deliver(A, 2).unwrap();
    assert_eq!(q.next_deadline(), Some(1_500));
    q.nack(A, &[Offset(0)], 100).unwrap();
    // B does not hold it: refused, and A keeps it.
    assert!(matches!(
        q.nack(B, &[Offset(1)], 0),
        Err(sluice_storage::Error::NotHeld { .. })
    ));
    assert!(q.deliver(B, 10).unwrap().is_empty());
    assert_eq!(q.next_deadline(), Some(1_100));
    clock.advance(100);
    let d = q.deliver(B, 10).unwrap();
    assert_eq!((d[0].offset, d[0].attempt), (Offset(0), 2));
    // 1 is still A's until its deadline.
    assert_eq!(q.expire().unwrap(), 0);
    clock.advance(400);
    assert_eq!(q.expire().unwrap(), 1);
    assert_eq!(q.held_by(A), vec![]);
    let d = q.deliver(B, 10).unwrap();
    assert_eq!((d[0].offset, d[0].attempt), (Offset(1), 2));
    // A late ack from A is refused: the message is B's now, and B's work decides it.
    assert!(matches!(
        q.ack(A, &[Offset(1)]),
        Err(sluice_storage::Error::NotHeld { .. })
    ));
    assert_eq!(q.held_by(B), vec![Offset(0), Offset(1)]);
}

#[test]
fn poison_message_reaches_the_dead_letter_queue_with_headers() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let q = s
        .create_queue(
            "jobs",
            QueueConfig {
                max_deliveries: 3,
                ack_timeout_ms: 10,
                ..QueueConfig::default()
            },
        )
        .unwrap();
    q.publish(&[Record {
        key: Some(b"k".to_vec()),
        headers: vec![Header::new("trace", "t1")],
        ..Record::from_value("poison")
    }])
    .unwrap();
    publish_n(&q, 1);
    // Attempt 1 nacked, attempt 2 times out, attempt 3 crashes the broker.
    assert_eq!(q.deliver(A, 1).unwrap()[0].attempt, 1);
    q.nack(A, &[Offset(0)], 0).unwrap();
    assert_eq!(q.deliver(A, 1).unwrap()[0].attempt, 2);
    clock.advance(10);
    assert_eq!(q.expire().unwrap(), 1);
    assert_eq!(q.deliver(A, 1).unwrap()[0].attempt, 3);
    drop(q);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let s = open(&sim, &clock);
    let q = s.queue("jobs").unwrap();
    // The count survived: the poison message is dead-lettered, not delivered a fourth time.
    let d = q.deliver(A, 10).unwrap();
    assert_eq!(d.iter().map(|d| d.offset.0).collect::<Vec<_>>(), vec![1]);
    let st = q.stats();
    assert_eq!((st.dead_lettered, st.ack_floor), (1, Offset(1)));
    let dlq = s.queue("jobs.dlq").unwrap();
    let dd = dlq.deliver(B, 10).unwrap();
    assert_eq!(dd.len(), 1);
    let r = &dd[0].record;
    assert_eq!(r.value, b"poison");
    assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
    let h = |n: &str| {
        r.headers
            .iter()
            .find(|h| h.name == n.as_bytes())
            .map(|h| String::from_utf8(h.value.clone()).unwrap())
    };
    assert_eq!(h("trace").as_deref(), Some("t1"));
    assert_eq!(h(dlh::REASON).as_deref(), Some("max-deliveries"));
    assert_eq!(h(dlh::ORIGINAL_QUEUE).as_deref(), Some("jobs"));
    assert_eq!(h(dlh::ORIGINAL_OFFSET).as_deref(), Some("0"));
    assert_eq!(h(dlh::DELIVERY_COUNT).as_deref(), Some("3"));
    // Nacked at the bound: dead-lettered at once.
    q.nack(A, &[Offset(1)], 0).unwrap();
    assert_eq!(q.deliver(A, 1).unwrap()[0].attempt, 2);
    q.nack(A, &[Offset(1)], 0).unwrap();
    assert_eq!(q.deliver(A, 1).unwrap()[0].attempt, 3);
    q.nack(A, &[Offset(1)], 0).unwrap();
    assert_eq!(q.stats().dead_lettered, 2);
    assert_eq!(dlq.stats().end_offset, Offset(2));
}

#[test]
fn unacked_bounds_pause_delivery_without_dropping_state() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let q = s
        .create_queue(
            "jobs",
            QueueConfig {
                max_unacked: 5,
                max_unacked_per_consumer: 3,
                ..QueueConfig::default()
            },
        )
        .unwrap();
    publish_n(&q, 20);
    assert_eq!(q.deliver(A, 10).unwrap().len(), 3);
    assert_eq!(q.deliver(A, 10).unwrap().len(), 0);
    assert!(!q.take_held_back(), "held back by its own bound only");
    assert_eq!(q.deliver(B, 10).unwrap().len(), 2);
    assert!(
        q.take_held_back(),
        "B got 2 of its 3: the queue's bound held it back"
    );
    assert!(!q.take_held_back(), "told once");
    assert_eq!(q.deliver(ConsumerId(3), 10).unwrap().len(), 0);
    q.ack(A, &[Offset(0)]).unwrap();
    assert!(
        q.take_held_back(),
        "an ack after that may make room for consumer 3"
    );
    assert_eq!(q.deliver(ConsumerId(3), 10).unwrap().len(), 1);
    assert_eq!(q.stats().in_flight, 5);
}

#[test]
fn segments_below_the_ack_floor_are_reclaimed() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let q = s
        .create_queue(
            "jobs",
            QueueConfig {
                log: LogConfig {
                    segment_bytes_max: 1024,
                    ..LogConfig::default()
                },
                max_unacked: 0,
                max_unacked_per_consumer: 0,
                ..QueueConfig::default()
            },
        )
        .unwrap();
    publish_n(&q, 400);
    let before = q.log().segments().len();
    assert!(before > 5);
    let d = q.deliver(A, 1000).unwrap();
    assert_eq!(d.len(), 400);
    // Acking all but the first message pins everything.
    let rest: Vec<Offset> = d[1..].iter().map(|d| d.offset).collect();
    q.ack(A, &rest).unwrap();
    assert_eq!(q.log().segments().len(), before);
    q.ack(A, &[Offset(0)]).unwrap();
    assert_eq!(q.log().segments().len(), 1);
    assert_eq!(q.stats().ack_floor, Offset(400));
    // Recovery with the log start past every acked message.
    drop(q);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let s = open(&sim, &clock);
    let q = s.queue("jobs").unwrap();
    assert!(q.deliver(A, 10).unwrap().is_empty());
    publish_n(&q, 1);
    assert_eq!(q.deliver(A, 10).unwrap()[0].offset, Offset(400));
}

#[test]
fn topic_group_feeds_competing_workers_while_subscribers_see_everything() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let t = s
        .create_topic(
            "events",
            Some(LogConfig {
                segment_bytes_max: 1024,
                ..LogConfig::default()
            }),
        )
        .unwrap();
    t.subscribe("audit", StartAt::Earliest).unwrap();
    let g = t
        .group("workers", QueueConfig::default())
        .unwrap()
        .queue(0)
        .unwrap();
    for i in 0..200 {
        t.publish(&[Record::from_value(format!("e{i}"))]).unwrap();
    }
    let mut seen = BTreeSet::new();
    loop {
        let a = g.deliver(A, 7).unwrap();
        let b = g.deliver(B, 7).unwrap();
        if a.is_empty() && b.is_empty() {
            break;
        }
        for (c, ds) in [(A, a), (B, b)] {
            let offs: Vec<Offset> = ds.iter().map(|d| d.offset).collect();
            for o in &offs {
                assert!(seen.insert(*o));
            }
            g.ack(c, &offs).unwrap();
        }
    }
    assert_eq!(seen.len(), 200);
    // The audit subscriber still has everything: the group's floor alone reclaims nothing.
    assert_eq!(t.log().start_offset(), Offset(0));
    let all = t.log().read_records(Offset(0), 1000, 1 << 20).unwrap();
    assert!(!all.is_empty());
    t.commit("audit", 0, Offset(200), &[]).unwrap();
    assert!(t.log().start_offset() > Offset(100));
    // The group survives a restart.
    drop((g, t));
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let s = open(&sim, &clock);
    let t = s.topic("events").unwrap();
    assert_eq!(t.list_groups(), vec!["workers"]);
    let g = t
        .group("workers", QueueConfig::default())
        .unwrap()
        .queue(0)
        .unwrap();
    assert_eq!(g.stats().ack_floor, Offset(200));
    t.publish(&[Record::from_value("late")]).unwrap();
    assert_eq!(g.deliver(A, 10).unwrap()[0].offset, Offset(200));
}

#[test]
fn interval_policy_syncs_acks_and_commits_in_the_background() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let log = LogConfig {
        fsync: sluice_storage::FsyncPolicy::Interval(10),
        ..LogConfig::default()
    };
    let q = s
        .create_queue(
            "jobs",
            QueueConfig {
                log: log.clone(),
                ..QueueConfig::default()
            },
        )
        .unwrap();
    let t = s.create_topic("t", Some(log)).unwrap();
    t.subscribe("s", StartAt::Earliest).unwrap();
    publish_n(&q, 4);
    t.publish(&[Record::from_value("x")]).unwrap();
    q.deliver(A, 4).unwrap();
    q.ack(A, &[Offset(0), Offset(1)]).unwrap();
    t.commit("s", 0, Offset(1), &[]).unwrap();
    // Ten intervals later the flushers have synced the ack journal and the offsets.
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop((q, t));
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let s = open(&sim, &clock);
    let q = s.queue("jobs").unwrap();
    assert_eq!(q.stats().ack_floor, Offset(2));
    let again: Vec<u64> = q
        .deliver(B, 10)
        .unwrap()
        .iter()
        .map(|d| d.offset.0)
        .collect();
    assert_eq!(again, vec![2, 3]);
    assert_eq!(
        s.topic("t").unwrap().committed("s", 0).map(|c| c.0),
        Some(Offset(1))
    );
}

#[test]
fn garbage_after_the_journal_is_cut_and_reported_by_inspect() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let q = s.create_queue("jobs", QueueConfig::default()).unwrap();
    publish_n(&q, 5);
    q.deliver(A, 5).unwrap();
    q.ack(A, &[Offset(0), Offset(3)]).unwrap();
    drop(q);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let dir = Path::new("/data/queues/jobs");
    let journal = sluice_storage::FileSystem::read_dir(&sim, dir)
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(".journal"))
        .unwrap();
    let jp = dir.join(journal);
    let mut bytes = sim.read_file(&jp).unwrap();
    // Garbage right after the records, over the zeros preallocated for more.
    let (_, valid) = sluice_storage::journal::decode_records(&bytes[24..]);
    bytes.truncate(24 + valid);
    bytes.extend_from_slice(&[0x11; 37]);
    sim.write_file(&jp, &bytes).unwrap();
    let rep = inspect_queue_state(&sim, dir).unwrap();
    assert_eq!(rep.torn_bytes, 37);
    assert!(!rep.damaged_mid, "garbage at the end is a torn tail");
    // A flipped byte in the first record is damage in the middle: reported as such.
    let mut mid = bytes.clone();
    mid[24 + 9] ^= 1;
    sim.write_file(&jp, &mid).unwrap();
    assert!(inspect_queue_state(&sim, dir).unwrap().damaged_mid);
    sim.write_file(&jp, &bytes).unwrap();
    assert_eq!((rep.floor, rep.acked_above_floor), (1, 1));
    let s = open(&sim, &clock);
    let q = s.queue("jobs").unwrap();
    let again: Vec<u64> = q
        .deliver(B, 10)
        .unwrap()
        .iter()
        .map(|d| d.offset.0)
        .collect();
    assert_eq!(again, vec![1, 2, 4]);
    assert_eq!(inspect_queue_state(&sim, dir).unwrap().torn_bytes, 0);
}

#[test]
fn ack_state_is_clamped_when_the_log_lost_its_tail() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let q = s
        .create_queue(
            "jobs",
            QueueConfig {
                log: LogConfig {
                    fsync: sluice_storage::FsyncPolicy::Never,
                    ..LogConfig::default()
                },
                ..QueueConfig::default()
            },
        )
        .unwrap();
    publish_n(&q, 5);
    q.log().flush().unwrap();
    publish_n(&q, 5); // never synced
    assert_eq!(q.deliver(A, 10).unwrap().len(), 10);
    q.ack(A, &[Offset(1), Offset(7), Offset(8)]).unwrap();
    q.flush().unwrap(); // the ack journal is durable, the log's tail is not
    drop(q);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let s = open(&sim, &clock);
    let q = s.queue("jobs").unwrap();
    let st = q.stats();
    assert_eq!(q.log().end_offset(), Offset(5));
    assert_eq!((st.cursor, st.acked_above_floor), (Offset(5), 1));
    // New messages reuse offsets 5..: none of them counts as acked.
    publish_n(&q, 5);
    q.log().flush().unwrap();
    let got: Vec<(u64, u32)> = q
        .deliver(B, 10)
        .unwrap()
        .iter()
        .map(|d| (d.offset.0, d.attempt))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 2),
            (2, 2),
            (3, 2),
            (4, 2),
            (5, 1),
            (6, 1),
            (7, 1),
            (8, 1),
            (9, 1)
        ]
    );
    q.flush().unwrap();
    drop(q);
    drop(s);
    // And the clamp was durable: another crash does not bring the old acks back.
    sim.crash(CrashMode::DropUnsynced);
    let s = open(&sim, &clock);
    let q = s.queue("jobs").unwrap();
    assert_eq!(q.stats().acked_above_floor, 1);
    assert_eq!(q.deliver(A, 20).unwrap().len(), 9);
}

#[test]
fn retention_past_unacked_messages_moves_the_floor_durably() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let q = s
        .create_queue(
            "jobs",
            QueueConfig {
                log: LogConfig {
                    segment_bytes_max: 1024,
                    retention_bytes: Some(2048),
                    ..LogConfig::default()
                },
                ..QueueConfig::default()
            },
        )
        .unwrap();
    publish_n(&q, 10);
    let first = q.deliver(A, 3).unwrap();
    assert_eq!(first.len(), 3);
    publish_n(&q, 300);
    let start = q.log().start_offset();
    assert!(start > Offset(10), "retention ran");
    let d = q.deliver(B, 5).unwrap();
    assert_eq!(d[0].offset, start);
    let st = q.stats();
    assert_eq!(st.ack_floor, start);
    assert_eq!(st.in_flight, 5, "A's messages are gone with their segment");
    assert!(q.held_by(A).is_empty());
    drop(q);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let s = open(&sim, &clock);
    let q = s.queue("jobs").unwrap();
    let again: Vec<u64> = q
        .deliver(A, 5)
        .unwrap()
        .iter()
        .map(|d| d.offset.0)
        .collect();
    assert_eq!(again, (start.0..start.0 + 5).collect::<Vec<_>>());
}

#[test]
fn a_failed_journal_sync_stops_the_queue_until_it_is_reopened() {
    use sluice_storage::fs::sim::{Fault, FaultError, OpKind};
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let q = s.create_queue("jobs", QueueConfig::default()).unwrap();
    publish_n(&q, 6);
    q.deliver(A, 6).unwrap();
    q.ack(A, &[Offset(0)]).unwrap();
    sim.add_fault(Fault {
        kind: OpKind::Sync,
        nth: sim.count(OpKind::Sync) + 1,
        forever: false,
        error: FaultError::Io,
    });
    assert!(
        q.ack(A, &[Offset(1)]).is_err(),
        "the failed sync is reported"
    );
    // Fail-stop: the kernel may have dropped the dirty pages, so nothing more is confirmed.
    assert!(matches!(
        q.ack(A, &[Offset(2)]),
        Err(sluice_storage::Error::FailStop { .. })
    ));
    assert!(q.deliver(B, 1).is_err());
    drop(q);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let s = open(&sim, &clock);
    let q = s.queue("jobs").unwrap();
    let st = q.stats();
    assert!(st.ack_floor >= Offset(1), "the confirmed ack survived");
    // After the restart nothing is held: the messages are delivered again before an ack.
    assert!(q.ack(A, &[Offset(2)]).is_err());
    let again: Vec<Offset> = q.deliver(A, 10).unwrap().iter().map(|d| d.offset).collect();
    assert!(again.contains(&Offset(2)), "{again:?}");
    q.ack(A, &[Offset(2)]).unwrap();
}

#[test]
fn pending_acks_and_deliveries_share_one_commit() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let q = s.create_queue("jobs", QueueConfig::default()).unwrap();
    publish_n(&q, 10);
    assert_eq!(q.deliver(A, 4).unwrap().len(), 4);
    let syncs_before = sim.count(OpKind::Sync);
    let acked = q.ack_pending(A, &[Offset(0), Offset(1)]).unwrap();
    let (ds, delivered) = q.deliver_pending(A, 2).unwrap();
    assert_eq!(
        ds.iter().map(|d| d.offset).collect::<Vec<_>>(),
        vec![Offset(4), Offset(5)]
    );
    assert_eq!(
        sim.count(OpKind::Sync),
        syncs_before,
        "nothing synced before commit"
    );
    assert!(acked.not_held.is_empty());
    q.commit(acked.pending.and(delivered)).unwrap();
    assert_eq!(
        sim.count(OpKind::Sync),
        syncs_before + 1,
        "one sync covers the acks and the deliveries"
    );
    // An offset already acked is no longer held: refused, nothing journaled.
    let again = q.ack_pending(A, &[Offset(0)]).unwrap();
    assert_eq!(again.not_held, vec![Offset(0)]);
    assert_eq!(again.pending, sluice_storage::Pending::NONE);
    drop(q);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let rep = inspect_queue_state(&sim, Path::new("/data/queues/jobs")).unwrap();
    assert_eq!(
        (rep.floor, rep.cursor),
        (2, 6),
        "the committed acks and deliveries survived the crash"
    );
}

#[test]
fn a_version_1_ack_journal_is_replayed_and_replaced_before_run_records_go_in() {
    use sluice_storage::ackstate::{ACK_MAGIC, ACK_PREFIX, REC_ACK, REC_DELIVER};
    use sluice_storage::journal::{self, encode_record, JOURNAL_HEADER_LEN};
    use sluice_storage::FileSystem;
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let dir = Path::new("/data/queues/jobs");
    {
        let s = open(&sim, &clock);
        let q = s.create_queue("jobs", QueueConfig::default()).unwrap();
        publish_n(&q, 10);
    }
    // The ack state as version 1 wrote it: a journal of generation 0, one entry per offset.
    for name in sim.read_dir(dir).unwrap() {
        if name.starts_with(&format!("{ACK_PREFIX}.")) {
            sim.remove_file(&dir.join(name)).unwrap();
        }
    }
    let mut header = journal::encode_journal_header(ACK_MAGIC, 0);
    header[8..10].copy_from_slice(&1u16.to_le_bytes());
    let crc = crc32fast::hash(&header[..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    let mut v1 = header.to_vec();
    let mut p = 4u32.to_le_bytes().to_vec();
    for o in 0..4u64 {
        p.extend_from_slice(&o.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
    }
    encode_record(&mut v1, REC_DELIVER, &p);
    let mut p = 2u32.to_le_bytes().to_vec();
    for o in [0u64, 1] {
        p.extend_from_slice(&o.to_le_bytes());
    }
    encode_record(&mut v1, REC_ACK, &p);
    let f = sim
        .open(
            &journal::journal_path(dir, ACK_PREFIX, 0),
            sluice_storage::fs::OpenMode::CreateTruncate,
        )
        .unwrap();
    f.write_all_at(&v1, 0).unwrap();
    f.sync_data().unwrap();
    sim.sync_dir(dir).unwrap();
    let rep = inspect_queue_state(&sim, dir).unwrap();
    assert_eq!((rep.floor, rep.cursor, rep.torn_bytes), (2, 4, 0));

    let s = open(&sim, &clock);
    let q = s.queue("jobs").unwrap();
    // Replaced at the open: a snapshot and a version-2 journal; the old one is gone.
    let l = journal::load(&sim, dir, ACK_PREFIX, ACK_MAGIC).unwrap();
    assert!(l.snapshot.is_some());
    assert_eq!((l.generation, l.version), (1, journal::STATE_VERSION));
    let jp = journal::journal_path(dir, ACK_PREFIX, 1);
    assert_eq!(
        &sim.read_file(&jp).unwrap()[8..10],
        &journal::STATE_VERSION.to_le_bytes()
    );
    assert!(!sim.exists(&journal::journal_path(dir, ACK_PREFIX, 0)));
    let again: Vec<(u64, u32)> = q
        .deliver(B, 10)
        .unwrap()
        .iter()
        .map(|d| (d.offset.0, d.attempt))
        .collect();
    let mut want = vec![(2, 2), (3, 2)];
    want.extend((4..10).map(|o| (o, 1)));
    assert_eq!(again, want);
    q.ack(B, &(2..10).map(Offset).collect::<Vec<_>>()).unwrap();
    assert!(sim.read_file(&jp).unwrap().len() > JOURNAL_HEADER_LEN);
    drop(q);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let rep = inspect_queue_state(&sim, dir).unwrap();
    assert_eq!((rep.floor, rep.cursor), (10, 10));
}

#[test]
fn consumers_taking_turns_inside_large_batches_get_the_right_records() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let q = s.create_queue("jobs", QueueConfig::default()).unwrap();
    // Batches of 1000 (more bytes in all than the read cache holds), read in windows of
    // 300 by two consumers in turn, with nacked messages coming back in between.
    let mut next = 0;
    for _ in 0..12 {
        let recs: Vec<Record> = (next..next + 1000)
            .map(|i| Record::from_value(format!("message {i} {}", "x".repeat(i % 300))))
            .collect();
        q.publish(&recs).unwrap();
        next += 1000;
    }
    let mut seen = BTreeSet::new();
    let mut turn = 0;
    loop {
        let c = if turn % 2 == 0 { A } else { B };
        turn += 1;
        let ds = q.deliver(c, 300).unwrap();
        if ds.is_empty() {
            break;
        }
        let mut nack = Vec::new();
        for d in &ds {
            let i = d.offset.0 as usize;
            let want = format!("message {i} {}", "x".repeat(i % 300));
            assert_eq!(d.record.value, want.as_bytes(), "offset {i}");
            if d.attempt == 1 && i % 97 == 0 {
                nack.push(d.offset);
            } else {
                seen.insert(d.offset.0);
            }
        }
        q.nack(c, &nack, 0).unwrap();
        let acks: Vec<Offset> = ds
            .iter()
            .map(|d| d.offset)
            .filter(|o| !nack.contains(o))
            .collect();
        q.ack(c, &acks).unwrap();
    }
    assert_eq!(seen.len(), 12_000);
    assert_eq!(q.stats().ack_floor, Offset(12_000));
}

#[test]
fn a_group_partition_reset_moves_its_cursor_durably_and_only_when_nothing_is_held() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let t = s.create_topic("t", None).unwrap();
    let recs: Vec<Record> = (0..10)
        .map(|i| Record::from_value(format!("m{i}")))
        .collect();
    t.publish(&recs).unwrap();
    let q = t
        .group("g", QueueConfig::default())
        .unwrap()
        .queue(0)
        .unwrap();
    let d = q.deliver(A, 4).unwrap();
    assert!(
        q.reset_to(Offset(0)).is_err(),
        "refused while A holds 4 messages"
    );
    q.ack(A, &d.iter().map(|d| d.offset).collect::<Vec<_>>())
        .unwrap();
    // Forward past what was acked: 4..7 are skipped.
    q.reset_to(Offset(7)).unwrap();
    let got: Vec<u64> = q
        .deliver(B, 100)
        .unwrap()
        .iter()
        .map(|d| d.offset.0)
        .collect();
    assert_eq!(got, vec![7, 8, 9]);
    q.ack(B, &[Offset(7), Offset(8), Offset(9)]).unwrap();
    // Back: everything from 2 again, as first deliveries; then the reset survives a crash.
    q.reset_to(Offset(2)).unwrap();
    // Past the end clamps to the end.
    drop(q);
    drop(t);
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let s = open(&sim, &clock);
    let q = s
        .topic("t")
        .unwrap()
        .group("g", QueueConfig::default())
        .unwrap()
        .queue(0)
        .unwrap();
    let got: Vec<(u64, u32)> = q
        .deliver(A, 100)
        .unwrap()
        .iter()
        .map(|d| (d.offset.0, d.attempt))
        .collect();
    assert_eq!(got, (2..10).map(|o| (o, 1)).collect::<Vec<_>>());
    q.ack(A, &(2..10).map(Offset).collect::<Vec<_>>()).unwrap();
    q.reset_to(Offset(1_000)).unwrap();
    assert_eq!(q.stats().ack_floor, Offset(10), "clamped to the end");
}
