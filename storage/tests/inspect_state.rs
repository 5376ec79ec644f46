//! Inspection of topic and queue state: real data directories written by `Store` on `StdFs`
//! (subscribers, a consumer group, a queue with acks, in-flight messages and a dead letter), the
//! exact figures `inspect` reports for them, damaged state files found and named, and repair of a
//! queue directory that `Store::open` then opens with every intact record and ack.
//!
//! Longer than most files on purpose: each file under `tests/` is a binary of its own that links
//! the whole broker, so the scenarios of one subject share one binary (and one set of helpers)
//! rather than adding links to a CI run on two cores.

mod inspect_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use inspect_common::{batches, flip, segments};
use sluice_storage::ackstate::{encode_deliver, ACK_PREFIX};
use sluice_storage::inspect::{
    self, GroupState, InspectOptions, Item, LogDirReport, Problem, QueueState, Severity,
};
use sluice_storage::journal::{decode_records, journal_path, JOURNAL_HEADER_LEN};
use sluice_storage::offsets::{encode_commit, OFFSETS_PREFIX};
use sluice_storage::{
    ConsumerId, LogConfig, Offset, QueueConfig, Record, StartAt, StdFs, Store, StoreConfig,
};

const C: ConsumerId = ConsumerId(1);

/// Small segments. Buffered writes: after an unclean stop, O_DIRECT leaves the active segment
/// zero-padded to the block size, which `verify` reports on its own (these tests are about the
/// state files).
/// A journal's header and records, without the zeros preallocated after them.
fn records_only(j: &Path) -> Vec<u8> {
    let mut b = std::fs::read(j).unwrap();
    let (_, valid) = decode_records(&b[JOURNAL_HEADER_LEN..]);
    b.truncate(JOURNAL_HEADER_LEN + valid);
    b
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 1024,
        index_interval_bytes: 256,
        direct_io: false,
        ..LogConfig::default()
    }
}

fn open(root: &Path) -> Store {
    Store::open(
        Arc::new(StdFs),
        root,
        StoreConfig {
            default_log: log_config(),
            ..Default::default()
        },
    )
    .unwrap()
}

fn record(i: u64) -> Record {
    Record {
        // Now: the topic's 7-day retention must keep it.
        timestamp_ms: None,
        key: Some(format!("customer-{}", i % 5).into_bytes()),
        headers: vec![],
        value: format!("message {i}").into_bytes(),
    }
}

struct Dir {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    topic: PathBuf,
    queue: PathBuf,
}

/// Topic `orders` (24 records, retention 1 MiB / 7 days, subscribers `billing` at 20 and `audit`
/// at 6, group `shipping` with 0..8 acked and 8, 9 in flight) and queue `jobs`
/// (`max_deliveries` 2, 10 records in batches of 2: 0, 1, 3, 7 acked, 2 dead-lettered after two
/// deliveries, 4 and 6 delivered once, 5 twice). Closed cleanly (state in snapshots) or left
/// as a crash leaves it (state in journals).
fn build(close: bool) -> Dir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let s = open(&root);
    let orders = s
        .create_topic(
            "orders",
            Some(LogConfig {
                retention_bytes: Some(1 << 20),
                retention_ms: Some(7 * 24 * 3600 * 1000),
                ..log_config()
            }),
        )
        .unwrap();
    for i in 0..12u64 {
        orders.publish(&[record(2 * i), record(2 * i + 1)]).unwrap();
    }
    orders.subscribe("billing", StartAt::Earliest).unwrap();
    orders.commit("billing", 0, Offset(20), &[]).unwrap();
    orders.subscribe("audit", StartAt::Earliest).unwrap();
    orders.commit("audit", 0, Offset(6), &[]).unwrap();
    let g = orders
        .group("shipping", QueueConfig::default())
        .unwrap()
        .queue(0)
        .unwrap();
    let got: Vec<(u64, u32)> = g
        .deliver(C, 10)
        .unwrap()
        .iter()
        .map(|d| (d.offset.0, d.attempt))
        .collect();
    assert_eq!(
        got.len(),
        10,
        "{got:?} {:?} {:?}",
        g.stats(),
        orders.stats()
    );
    g.ack(C, &(0..8).map(Offset).collect::<Vec<_>>()).unwrap();

    let q = s
        .create_queue(
            "jobs",
            QueueConfig {
                log: log_config(),
                max_deliveries: 2,
                ..QueueConfig::default()
            },
        )
        .unwrap();
    for i in 0..5u64 {
        q.publish(&[record(2 * i), record(2 * i + 1)]).unwrap();
    }
    assert_eq!(q.deliver(C, 6).unwrap().len(), 6);
    q.ack(C, &[Offset(0), Offset(1), Offset(3)]).unwrap();
    q.nack(C, &[Offset(2)], 0).unwrap();
    let d = q.deliver(C, 1).unwrap();
    assert_eq!((d[0].offset, d[0].attempt), (Offset(2), 2));
    q.nack(C, &[Offset(2)], 0).unwrap(); // second delivery: dead-lettered
    q.nack(C, &[Offset(5)], 0).unwrap();
    let d = q.deliver(C, 1).unwrap();
    assert_eq!((d[0].offset, d[0].attempt), (Offset(5), 2));
    assert_eq!(q.deliver(C, 2).unwrap().len(), 2); // 6 and 7
    q.ack(C, &[Offset(7)]).unwrap();
    let st = q.stats();
    assert_eq!(
        (
            st.ack_floor,
            st.cursor,
            st.acked_above_floor,
            st.dead_lettered
        ),
        (Offset(4), Offset(8), 1, 1)
    );
    if close {
        s.close().unwrap();
    } else {
        // Stopped as a crash stops it: under `always` every record is durable already.
        drop(s);
    }
    Dir {
        _tmp: tmp,
        topic: root.join("topics").join("orders"),
        queue: root.join("queues").join("jobs"),
        root,
    }
}

fn log_dirs(items: &[Item]) -> Vec<LogDirReport> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::LogDir(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn dir_named<'a>(dirs: &'a [LogDirReport], kind: &str, name: &str) -> &'a LogDirReport {
    dirs.iter()
        .find(|d| d.kind == kind && d.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {dirs:#?}"))
}

fn in_flight(q: &QueueState) -> Vec<(u64, u32)> {
    q.in_flight
        .iter()
        .map(|f| (f.offset.0, f.deliveries))
        .collect()
}

/// (floor, cursor, acked above floor, dead-lettered, depth, undelivered)
fn figures(q: &QueueState) -> (u64, u64, u64, u64, u64, u64) {
    (
        q.ack_floor.0,
        q.cursor.0,
        q.acked_above_floor,
        q.dead_lettered,
        q.depth,
        q.undelivered,
    )
}

fn check_figures(root: &Path) -> Vec<LogDirReport> {
    let r = inspect::inspect_path(&StdFs, root, &InspectOptions::default()).unwrap();
    let errors: Vec<&Problem> = r
        .problems()
        .filter(|p| p.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let dirs = log_dirs(&r.items);
    assert_eq!(dirs.len(), 3, "orders, jobs, jobs.dlq");

    let t = dir_named(&dirs, "topic", "orders");
    assert_eq!(t.dir, root.join("topics/orders/log"));
    assert_eq!(t.state_dir, root.join("topics/orders"));
    assert_eq!(
        (t.start_offset, t.end_offset),
        (Some(Offset(0)), Some(Offset(24)))
    );
    let ret = t.retention.as_ref().unwrap();
    assert_eq!(
        (ret.retention_bytes, ret.retention_ms),
        (Some(1 << 20), Some(604_800_000))
    );
    let subs: Vec<(String, u64, u64)> = t
        .subscribers
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| (s.name.clone(), s.committed.0, s.lag))
        .collect();
    assert_eq!(
        subs,
        vec![("audit".to_string(), 6, 18), ("billing".to_string(), 20, 4)]
    );
    assert!(t.queue.is_none());
    assert_eq!(t.groups.len(), 1);
    let GroupState {
        name,
        max_deliveries,
        state,
        ..
    } = &t.groups[0];
    assert_eq!((name.as_str(), *max_deliveries), ("shipping", Some(5)));
    let g = state.as_ref().unwrap();
    assert_eq!(figures(g), (8, 10, 0, 0, 16, 14));
    assert_eq!(in_flight(g), vec![(8, 1), (9, 1)]);
    assert!(t.unknown_files.is_empty(), "{:?}", t.unknown_files);

    let q = dir_named(&dirs, "queue", "jobs");
    assert_eq!(
        (q.start_offset, q.end_offset),
        (Some(Offset(0)), Some(Offset(10)))
    );
    assert_eq!(q.retention.as_ref().unwrap().retention_bytes, None);
    assert!(q.subscribers.is_none());
    let qs = q.queue.as_ref().unwrap();
    assert_eq!(figures(qs), (4, 8, 1, 1, 5, 2));
    assert_eq!(in_flight(qs), vec![(4, 1), (5, 2), (6, 1)]);
    assert!(q.unknown_files.is_empty(), "{:?}", q.unknown_files);

    let dlq = dir_named(&dirs, "queue", "jobs.dlq");
    assert_eq!(dlq.end_offset, Some(Offset(1)));
    let ds = dlq.queue.as_ref().unwrap();
    assert_eq!(figures(ds), (0, 0, 0, 0, 1, 1));
    assert!(ds.in_flight.is_empty());
    dirs
}

#[test]
fn figures_of_subscribers_groups_and_queues_from_journals_and_from_snapshots() {
    let d = build(false);
    // After a crash: everything is in the journals.
    let dirs = check_figures(&d.root);
    let q = dir_named(&dirs, "queue", "jobs").queue.clone().unwrap();
    assert_eq!(q.generation, 0);
    assert!(q.journal_records > 0);

    // The broker's own view agrees.
    let s = open(&d.root);
    let jobs = s.queue("jobs").unwrap();
    let st = jobs.stats();
    assert_eq!(
        (
            st.ack_floor.0,
            st.cursor.0,
            st.acked_above_floor,
            st.dead_lettered,
            st.depth
        ),
        (4, 8, 1, 1, 5)
    );
    let ts = s.topic("orders").unwrap().stats();
    let lags: Vec<(String, u64)> = ts.partitions[0]
        .subscribers
        .iter()
        .map(|x| (x.name.clone(), x.lag))
        .collect();
    assert_eq!(lags, vec![("audit".into(), 18), ("billing".into(), 4)]);
    s.close().unwrap();

    // After a clean close: the same figures, from the snapshots, with empty journals.
    let dirs = check_figures(&d.root);
    let q = dir_named(&dirs, "queue", "jobs").queue.clone().unwrap();
    assert!(q.generation > 0);
    assert_eq!(q.journal_records, 0);
    let v = inspect::verify(&StdFs, &d.root).unwrap();
    assert!(v.ok(), "{:#?}", v.problems);
    assert_eq!(v.summary.warnings, 0, "{:#?}", v.problems);
}

/// The one error `verify` finds, which must name `file`.
fn only_error(root: &Path, file: &Path) -> Problem {
    let v = inspect::verify(&StdFs, root).unwrap();
    assert!(!v.ok());
    let errors: Vec<Problem> = v
        .problems
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].file, file);
    errors[0].clone()
}

#[test]
fn garbage_truncated_and_flipped_snapshots_and_configs_are_named() {
    // A bit flipped in the body of the queue's ack snapshot: its checksum (bytes 24..28) fails.
    let d = build(true);
    let snap = d.queue.join("acks.snapshot");
    flip(&snap, 30);
    let p = only_error(&d.root, &snap);
    assert_eq!(p.position, Some(24));
    assert!(p.what.contains("snapshot checksum mismatch"), "{}", p.what);
    let r = inspect::inspect_path(&StdFs, &d.root, &InspectOptions::default()).unwrap();
    let dirs = log_dirs(&r.items);
    assert!(dir_named(&dirs, "queue", "jobs").queue.is_none());

    // Garbage in place of the topic's offsets snapshot.
    let d = build(true);
    let snap = d.topic.join("offsets.snapshot");
    std::fs::write(&snap, b"garbage").unwrap();
    let p = only_error(&d.root, &snap);
    assert_eq!(p.position, Some(0));
    assert!(p.what.contains("snapshot is 7 bytes"), "{}", p.what);

    // The group's ack snapshot cut short: its body length (bytes 20..24) disagrees.
    let d = build(true);
    let snap = d.topic.join("groups/shipping/acks.snapshot");
    let b = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &b[..b.len() - 3]).unwrap();
    let p = only_error(&d.root, &snap);
    assert_eq!(p.position, Some(20));
    assert!(p.what.contains("header says"), "{}", p.what);

    // A flipped bit in the queue's config, and garbage in the topic's.
    let d = build(true);
    let cfg = d.queue.join("config");
    flip(&cfg, 29);
    let p = only_error(&d.root, &cfg);
    assert_eq!(p.position, Some(24));
    assert!(p.what.contains("invalid config file"), "{}", p.what);
    let cfg = d.topic.join("config");
    std::fs::write(&cfg, vec![0x5a; 64]).unwrap();
    let v = inspect::verify(&StdFs, &d.root).unwrap();
    let p = v.problems.iter().find(|p| p.file == cfg).unwrap();
    assert_eq!((p.severity, p.position), (Severity::Error, Some(0)));
    assert!(p.what.contains("bad config magic"), "{}", p.what);
    // Retention is then unknown, the rest is still read.
    let r = inspect::inspect_path(&StdFs, &d.root, &InspectOptions::default()).unwrap();
    let dirs = log_dirs(&r.items);
    let t = dir_named(&dirs, "topic", "orders");
    assert!(t.retention.is_none());
    assert_eq!(t.subscribers.as_ref().unwrap().len(), 2);

    // A state file given alone is decoded and checked the same way.
    let r = inspect::inspect_path(&StdFs, &cfg, &InspectOptions::default()).unwrap();
    assert_eq!(r.problems().count(), 1);
    assert_eq!(r.problems().next().unwrap().file, cfg);
    let r = inspect::inspect_path(
        &StdFs,
        &d.queue.join("acks.snapshot"),
        &InspectOptions::default(),
    )
    .unwrap();
    assert_eq!(r.problems().count(), 0);
    let kinds: Vec<String> = r
        .items
        .iter()
        .filter_map(|i| match i {
            Item::State(s) => Some(s.kind.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, vec!["acks-snapshot"]);
}

#[test]
fn journal_damage_torn_tail_is_a_warning_and_mid_damage_an_error() {
    // A torn tail: half a record appended after the last one.
    let d = build(false);
    let j = journal_path(&d.queue, ACK_PREFIX, 0);
    let mut b = records_only(&j);
    let len = b.len() as u64;
    b.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
    std::fs::write(&j, &b).unwrap();
    let v = inspect::verify(&StdFs, &d.root).unwrap();
    assert!(v.ok(), "{:#?}", v.problems);
    let p = v.problems.iter().find(|p| p.file == j).unwrap();
    assert_eq!((p.severity, p.position), (Severity::Warning, Some(len)));
    assert!(p.what.contains("torn tail of 6 bytes"), "{}", p.what);
    // The figures are those of the valid records.
    check_figures(&d.root);

    // A bit flipped in the first record (position 24) with valid records after it.
    let d = build(false);
    let j = journal_path(&d.queue, ACK_PREFIX, 0);
    flip(&j, 24 + 12);
    let p = only_error(&d.root, &j);
    assert_eq!(p.position, Some(24));
    assert!(p.what.contains("record checksum mismatch"), "{}", p.what);
    assert!(p.what.contains("damage in the middle"), "{}", p.what);

    // A damaged journal header with records after it.
    let d = build(false);
    let j = journal_path(&d.topic, OFFSETS_PREFIX, 0);
    flip(&j, 13);
    let p = only_error(&d.root, &j);
    assert_eq!(p.position, Some(20));
    assert!(
        p.what.contains("journal header checksum mismatch"),
        "{}",
        p.what
    );
}

#[test]
fn offsets_past_the_log_end_are_warnings_naming_the_record() {
    let d = build(false);
    // Records about offsets the log does not hold (as after losing an unsynced log tail).
    let oj = journal_path(&d.topic, OFFSETS_PREFIX, 0);
    let mut b = records_only(&oj);
    let opos = b.len() as u64;
    let mut rec = Vec::new();
    encode_commit(&mut rec, "billing", 30);
    b.extend_from_slice(&rec);
    std::fs::write(&oj, &b).unwrap();
    let aj = journal_path(&d.queue, ACK_PREFIX, 0);
    let mut b = records_only(&aj);
    let apos = b.len() as u64;
    let mut rec = Vec::new();
    encode_deliver(&mut rec, &[(12, 1)]);
    b.extend_from_slice(&rec);
    std::fs::write(&aj, &b).unwrap();

    let v = inspect::verify(&StdFs, &d.root).unwrap();
    assert!(v.ok(), "{:#?}", v.problems);
    let p = v.problems.iter().find(|p| p.file == oj).unwrap();
    assert_eq!((p.severity, p.position), (Severity::Warning, Some(opos)));
    assert!(
        p.what
            .contains("subscriber billing committed offset 30 is past the log end 24"),
        "{}",
        p.what
    );
    let p = v.problems.iter().find(|p| p.file == aj).unwrap();
    assert_eq!((p.severity, p.position), (Severity::Warning, Some(apos)));
    assert!(
        p.what.contains("cursor 13 is past the log end 10"),
        "{}",
        p.what
    );
    assert!(p.what.contains("forgets 1 in-flight"), "{}", p.what);

    // Recovery clamps both, as the warnings say.
    let s = open(&d.root);
    assert_eq!(
        s.topic("orders")
            .unwrap()
            .committed("billing", 0)
            .map(|c| c.0),
        Some(Offset(24))
    );
    assert_eq!(s.queue("jobs").unwrap().stats().cursor, Offset(10));
    s.close().unwrap();
    let v = inspect::verify(&StdFs, &d.root).unwrap();
    assert_eq!(
        (v.summary.errors, v.summary.warnings),
        (0, 0),
        "{:#?}",
        v.problems
    );
}

#[test]
fn repair_of_a_queue_keeps_state_files_and_the_store_opens_with_every_intact_record_and_ack() {
    let d = build(true);
    let log = d.queue.join("log");
    let seg = segments(&log)[0].clone();
    // Damage the records of batch 6..7: repair cuts the log there, at offset 6.
    let b = batches(&seg)
        .into_iter()
        .find(|b| b.base_offset == Offset(6))
        .unwrap();
    flip(&seg, b.position + b.size_bytes as u64 - 1);
    let state_files = ["config", "acks.snapshot"];
    let before: Vec<Vec<u8>> = state_files
        .iter()
        .map(|f| std::fs::read(d.queue.join(f)).unwrap())
        .collect();

    let plan = inspect::plan_repair(&StdFs, &d.root, 1).unwrap();
    assert_eq!(plan.dirs.len(), 1, "{plan:#?}");
    let dp = &plan.dirs[0];
    assert_eq!(dp.dir, log);
    assert_eq!(dp.kept, (Offset(0), Offset(6)));
    assert_eq!(dp.state_notes.len(), 1, "{:?}", dp.state_notes);
    assert!(
        dp.state_notes[0].contains("ack floor 4 and cursor 8 go down to at most 6"),
        "{}",
        dp.state_notes[0]
    );
    inspect::apply_repair(&StdFs, &plan).unwrap();
    // Journals, snapshots and configs are never rewritten.
    for (f, b) in state_files.iter().zip(&before) {
        assert_eq!(&std::fs::read(d.queue.join(f)).unwrap(), b, "{f}");
    }
    let v = inspect::verify(&StdFs, &d.root).unwrap();
    assert!(v.ok(), "{:#?}", v.problems);
    // Before the next open the stored cursor is still past the cut: a warning, not an error.
    let p = v
        .problems
        .iter()
        .find(|p| p.file == d.queue.join("acks.snapshot"))
        .unwrap();
    assert_eq!(p.severity, Severity::Warning);
    assert!(
        p.what.contains("cursor 8 is past the log end 6"),
        "{}",
        p.what
    );

    let s = open(&d.root);
    let q = s.queue("jobs").unwrap();
    let recs = q.log().read_records(Offset(0), 100, 1 << 20).unwrap();
    assert_eq!(recs.len(), 6);
    for (i, (o, r)) in recs.iter().enumerate() {
        assert_eq!((o.0, &r.value), (i as u64, &record(i as u64).value));
    }
    let st = q.stats();
    // Every ack below the cut kept (0..4 and nothing else acked below 6), the cursor clamped.
    assert_eq!(
        (
            st.ack_floor.0,
            st.cursor.0,
            st.acked_above_floor,
            st.dead_lettered,
            st.depth
        ),
        (4, 6, 0, 1, 2)
    );
    s.close().unwrap();
    let r = inspect::inspect_path(&StdFs, &d.queue, &InspectOptions::default()).unwrap();
    let dirs = log_dirs(&r.items);
    let qs = dir_named(&dirs, "queue", "jobs").queue.clone().unwrap();
    assert_eq!(figures(&qs), (4, 6, 0, 1, 2, 0));
    assert_eq!(in_flight(&qs), vec![(4, 1), (5, 2)]);
    let v = inspect::verify(&StdFs, &d.root).unwrap();
    assert_eq!(
        (v.summary.errors, v.summary.warnings),
        (0, 0),
        "{:#?}",
        v.problems
    );
}

/// Recovery and inspect replay state files with one function: a record under a valid checksum
/// that does not apply is the same fault for both, named at the same place.
#[test]
fn a_malformed_state_record_is_refused_by_recovery_and_named_by_inspect() {
    for (what, file) in [("offsets", 0), ("ack", 1)] {
        let d = build(false);
        let j = if file == 0 {
            journal_path(&d.topic, OFFSETS_PREFIX, 0)
        } else {
            journal_path(&d.queue, ACK_PREFIX, 0)
        };
        let mut b = records_only(&j);
        let pos = b.len() as u64;
        let mut rec = Vec::new();
        sluice_storage::journal::encode_record(&mut rec, 99, b"not a record of this kind");
        b.extend_from_slice(&rec);
        std::fs::write(&j, &b).unwrap();

        let p = only_error(&d.root, &j);
        assert_eq!(p.position, Some(pos), "{what}");
        assert!(
            p.what.contains(&format!(
                "{what} record under a valid checksum is malformed"
            )),
            "{}",
            p.what
        );
        assert!(p.what.contains("the broker refuses to start"), "{}", p.what);
        let s = open(&d.root);
        let r = if file == 0 {
            s.topic("orders").map(|_| ())
        } else {
            s.queue("jobs").map(|_| ())
        };
        assert!(
            matches!(r, Err(sluice_storage::Error::Corruption { .. })),
            "{what}: recovery must refuse it too: {r:?}"
        );
    }
}
