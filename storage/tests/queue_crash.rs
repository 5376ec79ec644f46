//! A broker crash simulated through the storage I/O trait at every operation of a mixed workload
//! of publishes, commits, deliveries, nacks and acks (and again during the recovery that
//! follows). After each crash: no confirmed message, commit or ack is lost, no acked or
//! dead-lettered message is delivered again, every other message is available again, and
//! delivery counts never go backwards. The same workload also runs with the Nth write, sync,
//! directory sync, create, rename or remove failing (EIO, and ENOSPC for writes and creates),
//! once or forever, for every N: the caller gets a typed error, and after a restart (or a power
//! loss) the same holds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sluice_storage::fs::sim::{CrashMode, Fault, FaultError, OpKind, SimFs};
use sluice_storage::offsets::set_offsets_snapshot_bytes;
use sluice_storage::store::{dead_letter_headers as dlh, set_ack_snapshot_bytes};
use sluice_storage::{
    ConsumerId, Error, FsRef, LogConfig, ManualClock, Offset, Queue, QueueConfig, Record, Result,
    StartAt, Store, StoreConfig, Topic,
};

/// What the workload was told (confirmed) and what it attempted.
#[derive(Default, Debug)]
struct Seen {
    queue_created: bool,
    topic_created: bool,
    subscribed: bool,
    /// Confirmed queue messages: offset -> value.
    published: BTreeMap<u64, Vec<u8>>,
    topic_published: BTreeMap<u64, Vec<u8>>,
    /// Acks confirmed / attempted.
    acked: BTreeSet<u64>,
    ack_attempted: BTreeSet<u64>,
    /// Highest attempt number handed out per offset.
    attempts: BTreeMap<u64, u32>,
    committed: u64,
    /// Group acks confirmed / attempted.
    group_acked: BTreeSet<u64>,
    group_ack_attempted: BTreeSet<u64>,
}

fn cfg() -> QueueConfig {
    QueueConfig {
        log: LogConfig {
            segment_bytes_max: 600,
            ..LogConfig::default()
        },
        max_deliveries: 3,
        ack_timeout_ms: 1_000,
        ..QueueConfig::default()
    }
}

fn open(sim: &SimFs, clock: &Arc<ManualClock>) -> Result<Store> {
    let fs: FsRef = Arc::new(sim.clone());
    Store::open_with_clock(fs, "/data", StoreConfig::default(), clock.clone())
}

/// The workload; stops at the first error (the crash point).
fn workload(sim: &SimFs, clock: &Arc<ManualClock>, seen: &mut Seen) -> Result<()> {
    let s = open(sim, clock)?;
    let q = s.create_queue("q", cfg())?;
    seen.queue_created = true;
    let t = s.create_topic(
        "t",
        Some(LogConfig {
            segment_bytes_max: 600,
            ..LogConfig::default()
        }),
    )?;
    seen.topic_created = true;
    t.subscribe("sub", StartAt::Earliest)?;
    seen.subscribed = true;
    let g = t.group("g", cfg())?.queue(0)?;
    for i in 0..20u64 {
        let recs: Vec<Record> = (0..3)
            .map(|k| Record::from_value(format!("q{i}-{k}")))
            .collect();
        let info = q.publish(&recs)?;
        for (k, r) in recs.iter().enumerate() {
            seen.published
                .insert(info.base_offset.0 + k as u64, r.value.clone());
        }
        let tr = Record::from_value(format!("t{i}"));
        let ti = t.publish(std::slice::from_ref(&tr))?;
        seen.topic_published.insert(ti.base_offset.0, tr.value);
        let c = ConsumerId(i % 2);
        let ds = q.deliver(c, 3)?;
        for d in &ds {
            let a = seen.attempts.entry(d.offset.0).or_default();
            assert!(d.attempt > *a, "delivery count went backwards");
            *a = d.attempt;
        }
        // Nack the first (the oldest, so some reach max_deliveries), keep the second, ack
        // the third.
        if let Some(d) = ds.get(2) {
            seen.ack_attempted.insert(d.offset.0);
            q.ack(c, &[d.offset])?;
            seen.acked.insert(d.offset.0);
        }
        if let Some(d) = ds.first() {
            q.nack(c, &[d.offset], 0)?;
        }
        if i % 3 == 2 {
            q.release(ConsumerId(0));
            clock.advance(2_000);
            q.expire()?;
        }
        let gd = g.deliver(c, 2)?;
        let offs: Vec<Offset> = gd.iter().map(|d| d.offset).collect();
        // Ack only the even ones; the odd ones stay in flight.
        let even: Vec<Offset> = offs.into_iter().filter(|o| o.0 % 2 == 0).collect();
        seen.group_ack_attempted.extend(even.iter().map(|o| o.0));
        g.ack(c, &even)?;
        seen.group_acked.extend(even.iter().map(|o| o.0));
        let next = seen.committed + 1;
        t.commit("sub", 0, Offset(next), &[])?;
        seen.committed = next;
    }
    s.close()?;
    Ok(())
}

/// Reopens the store after a crash (or none) and checks it against what the workload saw.
fn check(sim: &SimFs, clock: &Arc<ManualClock>, seen: &Seen, label: &str) {
    let s = open(sim, clock).unwrap_or_else(|e| panic!("{label}: reopen failed: {e}"));
    if !seen.queue_created {
        return;
    }
    check_queue(&s, seen, label);
    if seen.subscribed {
        check_topic(&s, seen, label);
    }
    s.close().unwrap();
}

/// Queue `q`: every confirmed message is kept, and each is available again, acked or
/// dead-lettered, never two of these.
fn check_queue(s: &Store, seen: &Seen, label: &str) {
    let q = s.queue("q").unwrap_or_else(|e| panic!("{label}: {e}"));
    // Segments go only below the ack floor.
    let start = q.log().start_offset();
    assert!(
        start <= q.stats().ack_floor,
        "{label}: reclaimed unacked messages"
    );
    for (o, v) in seen.published.range(start.0..) {
        let r = q.log().read_records(Offset(*o), 1, 1 << 16).unwrap();
        assert_eq!(&r[0].1.value, v, "{label}: confirmed message {o} lost");
    }
    assert!(q.stats().ack_floor <= q.log().end_offset());
    let delivered = drain_queue(&q, seen, label);
    let dead = dead_lettered(s);
    for o in seen.published.keys() {
        assert!(
            *o < start.0
                || delivered.contains(o)
                || seen.ack_attempted.contains(o)
                || dead.contains(o),
            "{label}: message {o} neither available, acked nor dead-lettered"
        );
    }
    assert!(
        delivered.is_disjoint(&dead),
        "{label}: dead letter delivered"
    );
    if label == "no crash" {
        assert!(!dead.is_empty(), "the workload dead-letters something");
    }
}

/// Delivers everything the queue has, to new consumers; the offsets delivered. None twice,
/// none acked, and no attempt number at or below one handed out before.
fn drain_queue(q: &Queue, seen: &Seen, label: &str) -> BTreeSet<u64> {
    let mut delivered = BTreeSet::new();
    let mut c = 100;
    loop {
        let ds = q.deliver(ConsumerId(c), 1_000).unwrap();
        if ds.is_empty() {
            break;
        }
        for d in &ds {
            assert!(delivered.insert(d.offset.0), "{label}: {} twice", d.offset);
            assert!(
                !seen.acked.contains(&d.offset.0),
                "{label}: acked message {} delivered again",
                d.offset
            );
            let before = seen.attempts.get(&d.offset.0).copied().unwrap_or(0);
            assert!(
                d.attempt > before,
                "{label}: {} attempt {} after {before}",
                d.offset,
                d.attempt
            );
        }
        c += 1;
    }
    delivered
}

/// The original offsets of the messages in `q.dlq` (none when it does not exist).
fn dead_lettered(s: &Store) -> BTreeSet<u64> {
    let mut dead = BTreeSet::new();
    if let Ok(dlq) = s.queue("q.dlq") {
        for d in dlq.deliver(ConsumerId(9), 10_000).unwrap() {
            let h = d
                .record
                .headers
                .iter()
                .find(|h| h.name == dlh::ORIGINAL_OFFSET.as_bytes())
                .expect("dead letter has its origin");
            dead.insert(String::from_utf8_lossy(&h.value).parse::<u64>().unwrap());
        }
    }
    dead
}

/// Topic `t`: its confirmed messages and the subscriber's commit are kept, and group `g` gets
/// back everything not acked.
fn check_topic(s: &Store, seen: &Seen, label: &str) {
    let t = s.topic("t").unwrap();
    // Reclaim never passes the subscriber.
    let start = t.log().start_offset();
    assert!(
        start <= t.committed("sub", 0).map(|c| c.0).unwrap(),
        "{label}: reclaimed past a reader"
    );
    for (o, v) in seen.topic_published.range(start.0..) {
        let r = t.log().read_records(Offset(*o), 1, 1 << 16);
        let r = r.unwrap_or_else(|e| panic!("{label}: topic message {o}: {e}"));
        assert_eq!(&r[0].1.value, v);
    }
    let c = t
        .committed("sub", 0)
        .map(|c| c.0)
        .expect("confirmed subscriber");
    assert!(c.0 >= seen.committed, "{label}: commit lost");
    assert!(c <= t.log().end_offset());
    // The group: nothing acked comes back, everything else does.
    if let Ok(g) = t.group("g", cfg()).and_then(|g| g.queue(0)) {
        check_group(&t, &g, seen, label);
    }
}

/// Drains the group's queue: nothing acked or twice, and nothing the log still holds missing.
fn check_group(t: &Topic, g: &Queue, seen: &Seen, label: &str) {
    let mut got = BTreeSet::new();
    loop {
        let ds = g.deliver(ConsumerId(50 + got.len() as u64), 1_000).unwrap();
        if ds.is_empty() {
            break;
        }
        for d in ds {
            assert!(
                !seen.group_acked.contains(&d.offset.0),
                "{label}: group redelivered an ack"
            );
            assert!(
                got.insert(d.offset.0),
                "{label}: group delivered {} twice",
                d.offset
            );
        }
    }
    let gstart = t.log().start_offset().0;
    for o in seen.topic_published.keys().filter(|&&o| o >= gstart) {
        assert!(
            got.contains(o) || seen.group_ack_attempted.contains(o),
            "{label}: group lost {o}"
        );
    }
}

#[test]
fn crash_at_every_operation_loses_nothing_confirmed() {
    // Snapshots every few hundred bytes (ack state) and every few commits (subscriber offsets),
    // so crashes also hit generation switches of both journals.
    set_ack_snapshot_bytes(300);
    set_offsets_snapshot_bytes(100);
    let total = {
        let sim = SimFs::new();
        let clock = Arc::new(ManualClock::new(0));
        let mut seen = Seen::default();
        workload(&sim, &clock, &mut seen).unwrap();
        let ops = sim.op_count();
        check(&sim, &clock, &seen, "no crash");
        ops
    };
    assert!(total > 200, "workload too small: {total} ops");
    eprintln!(
        "queue_crash: crashing at each of {total} I/O operations (DropUnsynced and TornTail)"
    );
    for n in 0..total {
        let sim = SimFs::new();
        let clock = Arc::new(ManualClock::new(0));
        let mut seen = Seen::default();
        sim.crash_after(n);
        let r = workload(&sim, &clock, &mut seen);
        assert!(
            r.is_err() || n + 1 >= total,
            "op {n} of {total}: no crash happened"
        );
        let mode = if n % 2 == 0 {
            CrashMode::DropUnsynced
        } else {
            CrashMode::TornTail(n)
        };
        sim.crash(mode);
        if n % 7 == 3 {
            // Crash again in the middle of recovery, then recover for real.
            sim.crash_after(n % 40 + 1);
            drop(open(&sim, &clock));
            sim.crash(CrashMode::DropUnsynced);
        }
        check(&sim, &clock, &seen, &format!("crash after op {n}"));
    }
}

/// Concurrent consumers with group commit and frequent snapshots, crashed at many points: no
/// ack confirmed to any thread is lost, and delivery counts never go backwards.
#[test]
fn concurrent_consumers_crash_loses_no_confirmed_ack() {
    set_ack_snapshot_bytes(300);
    for n in (40..1_400).step_by(53) {
        let sim = SimFs::new();
        let clock = Arc::new(ManualClock::new(0));
        let s = open(&sim, &clock).unwrap();
        let q = s
            .create_queue(
                "q",
                QueueConfig {
                    max_deliveries: 0,
                    ..cfg()
                },
            )
            .unwrap();
        let recs: Vec<Record> = (0..200)
            .map(|i| Record::from_value(format!("{i}")))
            .collect();
        for c in recs.chunks(20) {
            q.publish(c).unwrap();
        }
        let acked = std::sync::Mutex::new(BTreeSet::new());
        let attempts = std::sync::Mutex::new(BTreeMap::<u64, u32>::new());
        sim.crash_after(n);
        std::thread::scope(|sc| {
            for t in 0..4u64 {
                let (q, acked, attempts) = (&q, &acked, &attempts);
                sc.spawn(move || {
                    for round in 0.. {
                        let Ok(ds) = q.deliver(ConsumerId(t), 5) else {
                            return;
                        };
                        if ds.is_empty() && round > 50 {
                            return;
                        }
                        {
                            let mut a = attempts.lock().unwrap();
                            for d in &ds {
                                let e = a.entry(d.offset.0).or_default();
                                *e = (*e).max(d.attempt);
                            }
                        }
                        // Ack all but one; give that one back.
                        let (keep, rest) = match ds.split_first() {
                            Some((k, r)) => (Some(k.offset), r),
                            None => (None, &ds[..]),
                        };
                        let offs: Vec<Offset> = rest.iter().map(|d| d.offset).collect();
                        if q.ack(ConsumerId(t), &offs).is_err() {
                            return;
                        }
                        acked.lock().unwrap().extend(offs.iter().map(|o| o.0));
                        if let Some(k) = keep {
                            if q.nack(ConsumerId(t), &[k], 0).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        drop(q);
        drop(s);
        sim.crash(CrashMode::DropUnsynced);
        let acked = acked.into_inner().unwrap();
        let attempts = attempts.into_inner().unwrap();
        let s = open(&sim, &clock).unwrap();
        let q = s.queue("q").unwrap();
        let mut seen = BTreeSet::new();
        loop {
            let ds = q.deliver(ConsumerId(99), 1_000).unwrap();
            if ds.is_empty() {
                break;
            }
            for d in ds {
                assert!(
                    !acked.contains(&d.offset.0),
                    "crash at {n}: ack of {} lost",
                    d.offset
                );
                assert!(seen.insert(d.offset.0));
                let before = attempts.get(&d.offset.0).copied().unwrap_or(0);
                assert!(
                    d.attempt > before,
                    "crash at {n}: count of {} went back",
                    d.offset
                );
            }
            let offs: Vec<Offset> = seen.iter().map(|&o| Offset(o)).collect();
            q.ack(ConsumerId(99), &offs).unwrap();
        }
        // Nothing is stuck: every message was acked before the crash or delivered after it.
        assert_eq!(q.stats().ack_floor, Offset(200), "crash at {n}");
    }
}

/// I/O errors on the store side (journals, snapshots, configs, directories, segments): the Nth
/// call of a kind fails, once or from then on, for every N the workload reaches. The workload
/// stops at the first error it is given, which must be a typed I/O error (disk full reported as
/// such). The store is then dropped and reopened: after a one-off failure as it is on disk (a
/// restart once the disk works again), after a lasting one through a power loss (only synced
/// bytes survive). Nothing confirmed is lost, nothing acked comes back, nothing else is stuck.
#[test]
fn failing_the_nth_call_of_each_kind_loses_nothing_confirmed() {
    set_ack_snapshot_bytes(300);
    set_offsets_snapshot_bytes(100);
    let mut runs = 0u64;
    for (kind, error) in [
        (OpKind::Write, FaultError::Io),
        (OpKind::Write, FaultError::NoSpace),
        (OpKind::Sync, FaultError::Io),
        (OpKind::SyncDir, FaultError::Io),
        (OpKind::Create, FaultError::Io),
        (OpKind::Create, FaultError::NoSpace),
        (OpKind::Rename, FaultError::Io),
        (OpKind::Remove, FaultError::Io),
    ] {
        for forever in [false, true] {
            let mut n = 1;
            loop {
                let label = format!(
                    "{kind:?} #{n} failing with {error:?}{}",
                    if forever { " forever" } else { "" }
                );
                let sim = SimFs::new();
                let clock = Arc::new(ManualClock::new(0));
                let mut seen = Seen::default();
                sim.add_fault(Fault {
                    kind,
                    nth: n,
                    forever,
                    error,
                });
                let r = workload(&sim, &clock, &mut seen);
                if sim.count(kind) < n {
                    assert!(r.is_ok(), "{label}: failed without a fault: {r:?}");
                    assert!(n > 1, "{kind:?}: the workload never calls it");
                    break;
                }
                match &r {
                    Ok(()) => {} // absorbed (a cache file, a leftover to remove later)
                    Err(e @ Error::Io { .. }) => {
                        if error == FaultError::NoSpace {
                            assert!(e.is_disk_full(), "{label}: not reported as disk full: {e}");
                        }
                    }
                    Err(Error::FailStop { .. }) => {}
                    Err(e) => panic!("{label}: not an I/O error: {e}"),
                }
                sim.clear_faults();
                if forever {
                    sim.crash(CrashMode::DropUnsynced);
                }
                check(&sim, &clock, &seen, &label);
                runs += 1;
                // Every call early on (creation, first records, first snapshot), then a sample.
                n += if n < 150 { 1 } else { 7 };
            }
        }
    }
    eprintln!("queue_crash: {runs} runs with a failing I/O call, none lost anything confirmed");
    assert!(runs > 500, "too few fault points: {runs}");
}
