//! Partitioned topics: partitions open, close and recover with their data; topic ids persist;
//! offsets are per partition with metadata; groups keep an ack state per partition; adding
//! partitions is crash-safe; a data directory written before partitions opens unchanged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_storage::fs::sim::{CrashMode, OpKind, SimFs};
use sluice_storage::fs::FileSystem;
use sluice_storage::{
    ConsumerId, Error, Offset, QueueConfig, Record, StartAt, StdFs, Store, StoreConfig, TopicId,
    COMMIT_METADATA_BYTES_MAX,
};

fn open(sim: &SimFs) -> Store {
    Store::open(Arc::new(sim.clone()), "/data", StoreConfig::default()).unwrap()
}

fn rec(v: &str) -> Record {
    Record::from_value(v.to_string())
}

fn values(t: &sluice_storage::Topic, p: u32) -> Vec<String> {
    t.read(p, Offset(0), 1000, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|(_, r)| String::from_utf8(r.value).unwrap())
        .collect()
}

#[test]
fn partitions_keep_their_own_logs_across_a_restart_and_a_crash() {
    let sim = SimFs::new();
    let s = open(&sim);
    let t = s.create_topic_with_partitions("orders", None, 3).unwrap();
    assert_eq!(t.partition_count(), 3);
    let id = t.id();
    assert!(!id.is_nil());
    for p in 0..3u32 {
        for i in 0..=p {
            t.publish_to(p, &[rec(&format!("p{p}-{i}"))]).unwrap();
        }
    }
    assert!(matches!(
        t.publish_to(3, &[rec("x")]),
        Err(Error::NotFound { .. })
    ));
    let st = t.stats();
    let ends: Vec<u64> = st.partitions.iter().map(|p| p.end_offset.0).collect();
    assert_eq!(ends, vec![1, 2, 3]);
    assert_eq!(st.id, id);
    drop(t);
    s.close().unwrap();
    drop(s);

    let s = open(&sim);
    let t = s.topic("orders").unwrap();
    assert_eq!((t.partition_count(), t.id()), (3, id));
    assert_eq!(values(&t, 2), vec!["p2-0", "p2-1", "p2-2"]);
    assert_eq!(s.topic_by_id(id).unwrap().name(), "orders");
    t.publish_to(1, &[rec("p1-2")]).unwrap();
    drop(t);
    // A crash: only what was synced (everything, under `always`) survives.
    sim.crash(CrashMode::DropUnsynced);
    drop(s);
    let s = open(&sim);
    let t = s.topic("orders").unwrap();
    assert_eq!(values(&t, 1), vec!["p1-0", "p1-1", "p1-2"]);
    assert_eq!(values(&t, 0), vec!["p0-0"]);
    // Deleted and created again: a new id.
    drop(t);
    s.delete_topic("orders").unwrap();
    let t = s.create_topic_with_partitions("orders", None, 2).unwrap();
    assert_ne!(t.id(), id);
    assert!(s.topic_by_id(id).is_err());
    assert!(s.create_topic_with_partitions("zero", None, 0).is_err());
}

#[test]
fn subscribers_commit_per_partition_with_metadata() {
    let sim = SimFs::new();
    let s = open(&sim);
    let t = s.create_topic_with_partitions("t", None, 2).unwrap();
    for i in 0..5 {
        t.publish_to(0, &[rec(&format!("a{i}"))]).unwrap();
        t.publish_to(1, &[rec(&format!("b{i}"))]).unwrap();
    }
    assert_eq!(
        t.subscribe("s", StartAt::Earliest).unwrap(),
        vec![Offset(0), Offset(0)]
    );
    t.commit("s", 0, Offset(3), b"zero").unwrap();
    t.commit("s", 1, Offset(5), &[]).unwrap();
    let big = vec![7u8; COMMIT_METADATA_BYTES_MAX + 1];
    assert!(matches!(
        t.commit("s", 1, Offset(4), &big),
        Err(Error::InvalidArgument(_))
    ));
    // The largest blob goes through.
    let max = vec![9u8; COMMIT_METADATA_BYTES_MAX];
    t.commit_offset("kafka-group", 1, Offset(2), &max).unwrap();
    assert_eq!(t.committed("s", 0), Some((Offset(3), b"zero".to_vec())));
    drop(t);
    // Kept by the journal (a crash) and by the snapshot (a close).
    sim.crash(CrashMode::DropUnsynced);
    drop(s);
    let s = open(&sim);
    let t = s.topic("t").unwrap();
    assert_eq!(t.committed("s", 0), Some((Offset(3), b"zero".to_vec())));
    assert_eq!(t.committed("s", 1), Some((Offset(5), vec![])));
    assert_eq!(
        t.committed("kafka-group", 1),
        Some((Offset(2), max.clone()))
    );
    assert_eq!(t.committed("kafka-group", 0), None);
    assert_eq!(
        t.subscribe("s", StartAt::Latest).unwrap(),
        vec![Offset(3), Offset(5)]
    );
    let lags: Vec<u64> = t
        .stats()
        .partitions
        .iter()
        .map(|p| p.subscribers.iter().find(|x| x.name == "s").unwrap().lag)
        .collect();
    assert_eq!(lags, vec![2, 0]);
    let mut sub = t.subscriber_on("s", 1, StartAt::Earliest).unwrap();
    assert_eq!(sub.position(), Offset(5));
    sub.seek(StartAt::Offset(Offset(1))).unwrap();
    assert_eq!(sub.poll(10, 1 << 20).unwrap().len(), 4);
    drop(t);
    s.close().unwrap();
    drop(s);
    let s = open(&sim);
    let t = s.topic("t").unwrap();
    assert_eq!(t.committed("kafka-group", 1), Some((Offset(2), max)));
}

#[test]
fn a_batch_of_commits_takes_one_sync_and_refuses_only_its_bad_entries() {
    let sim = SimFs::new();
    let s = open(&sim);
    let t = s.create_topic_with_partitions("t", None, 4).unwrap();
    for p in 0..4 {
        t.publish_to(p, &[rec("a"), rec("b")]).unwrap();
    }
    let syncs = sim.count(OpKind::Sync);
    let big = vec![1u8; COMMIT_METADATA_BYTES_MAX + 1];
    let results = t
        .commit_offsets(
            "g",
            &[
                (0, Offset(1), b"m0".as_slice()),
                (1, Offset(2), b"m1".as_slice()),
                (2, Offset(3), b"".as_slice()), // past the end
                (3, Offset(1), big.as_slice()),
                (9, Offset(0), b"".as_slice()), // no such partition
                (3, Offset(2), b"m3".as_slice()),
            ],
        )
        .unwrap();
    assert!(results[0].is_ok() && results[1].is_ok() && results[5].is_ok());
    assert!(matches!(results[2], Err(Error::OffsetOutOfRange { .. })));
    assert!(matches!(results[3], Err(Error::InvalidArgument(_))));
    assert!(matches!(results[4], Err(Error::NotFound { .. })));
    assert_eq!(sim.count(OpKind::Sync) - syncs, 1, "one sync for the batch");
    assert!(t
        .commit_offsets("bad name", &[(0, Offset(0), b"".as_slice())])
        .is_err());
    drop(t);
    sim.crash(CrashMode::DropUnsynced);
    drop(s);
    let s = open(&sim);
    let t = s.topic("t").unwrap();
    assert_eq!(t.committed("g", 0), Some((Offset(1), b"m0".to_vec())));
    assert_eq!(t.committed("g", 1), Some((Offset(2), b"m1".to_vec())));
    assert_eq!(t.committed("g", 2), None);
    assert_eq!(t.committed("g", 3), Some((Offset(2), b"m3".to_vec())));
    assert!(t.has_subscriber("g"));
    assert!(!t.has_subscriber("h"));
}

#[test]
fn a_group_keeps_an_ack_state_per_partition() {
    let sim = SimFs::new();
    let s = open(&sim);
    let t = s.create_topic_with_partitions("t", None, 2).unwrap();
    for i in 0..4 {
        t.publish_to(i % 2, &[rec(&format!("m{i}"))]).unwrap();
    }
    let g = t.group("g", QueueConfig::default()).unwrap();
    assert_eq!(g.partition_count(), 2);
    let c = ConsumerId(1);
    let d0 = g.queue(0).unwrap().deliver(c, 10).unwrap();
    let d1 = g.queue(1).unwrap().deliver(c, 10).unwrap();
    assert_eq!((d0.len(), d1.len()), (2, 2));
    assert_eq!(g.queue(1).unwrap().partition(), 1);
    g.queue(1).unwrap().ack(c, &[Offset(0), Offset(1)]).unwrap();
    g.queue(0).unwrap().ack(c, &[Offset(0)]).unwrap();
    drop((g, t));
    sim.crash(CrashMode::DropUnsynced);
    drop(s);
    let s = open(&sim);
    let g = s
        .topic("t")
        .unwrap()
        .group("g", QueueConfig::default())
        .unwrap();
    assert_eq!(g.queue(0).unwrap().stats().ack_floor, Offset(1));
    assert_eq!(g.queue(1).unwrap().stats().ack_floor, Offset(2));
    // Offset 1 of partition 0 was delivered and not acked: available again.
    let again = g.queue(0).unwrap().deliver(c, 10).unwrap();
    assert_eq!(
        again.iter().map(|d| d.offset).collect::<Vec<_>>(),
        vec![Offset(1)]
    );
    assert!(sim.is_dir(Path::new("/data/topics/t/groups/g/partition-1")));
}

#[test]
fn adding_partitions_grows_the_topic_and_its_groups() {
    let sim = SimFs::new();
    let s = open(&sim);
    let t = s.create_topic("t", None).unwrap();
    t.publish(&[rec("old")]).unwrap();
    t.subscribe("s", StartAt::Latest).unwrap();
    let g = t.group("g", QueueConfig::default()).unwrap();
    assert!(matches!(
        s.add_partitions("t", 1),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(s.add_partitions("t", 3).unwrap(), 3);
    assert_eq!((t.partition_count(), g.partition_count()), (3, 3));
    t.publish_to(2, &[rec("new")]).unwrap();
    let got = g.queue(2).unwrap().deliver(ConsumerId(1), 10).unwrap();
    assert_eq!(got.len(), 1);
    // An existing subscriber reads a new partition from its start.
    assert_eq!(
        t.subscribe("s", StartAt::Latest).unwrap(),
        vec![Offset(1), Offset(0), Offset(0)]
    );
    drop((g, t));
    s.close().unwrap();
    drop(s);
    let s = open(&sim);
    let t = s.topic("t").unwrap();
    assert_eq!(t.partition_count(), 3);
    assert_eq!(values(&t, 2), vec!["new"]);
    assert_eq!(values(&t, 0), vec!["old"]);
}

/// A crash at every point of a create with partitions or an add of partitions: the store opens,
/// and the topic has either the old shape or the new one, whole, with its data; a confirmed
/// change is never lost.
#[test]
fn a_crash_in_the_middle_of_a_create_or_an_add_of_partitions_leaves_one_shape() {
    type Change = fn(&Store) -> sluice_storage::Result<()>;
    let setup = |sim: &SimFs| {
        let s = open(sim);
        let t = s.create_topic("a", None).unwrap();
        t.publish(&[rec("kept")]).unwrap();
        t.group("g", QueueConfig::default()).unwrap();
        s
    };
    let changes: [(&str, Change, u32); 2] = [
        (
            "create",
            |s| s.create_topic_with_partitions("b", None, 4).map(|_| ()),
            4,
        ),
        ("add", |s| s.add_partitions("a", 3).map(|_| ()), 3),
    ];
    let mut points = 0;
    for (what, change, want) in changes {
        let sim = SimFs::new();
        let s = setup(&sim);
        let before = sim.op_count();
        change(&s).unwrap();
        let calls = sim.op_count() - before;
        drop(s);
        for k in 0..=calls {
            points += 1;
            let sim = SimFs::new();
            let s = setup(&sim);
            sim.crash_after(k);
            let confirmed = change(&s).is_ok();
            sim.crash(CrashMode::DropUnsynced);
            drop(s);
            let at = format!("{what}, crash after {k} of {calls} calls");
            let s = Store::open(Arc::new(sim.clone()), "/data", StoreConfig::default())
                .unwrap_or_else(|e| panic!("{at}: the store did not open: {e}"));
            let name = if what == "create" { "b" } else { "a" };
            match s.topic(name) {
                Ok(t) => {
                    let n = t.partition_count();
                    assert!(
                        n == want || (what == "add" && n == 1),
                        "{at}: {n} partitions"
                    );
                    assert!(!confirmed || n == want, "{at}: a confirmed change was lost");
                    let g = t.group("g", QueueConfig::default()).unwrap();
                    assert_eq!(g.partition_count(), n, "{at}");
                    for p in 0..n {
                        t.publish_to(p, &[rec("after")]).unwrap();
                    }
                    if name == "a" {
                        assert_eq!(values(&t, 0)[0], "kept", "{at}");
                    }
                    // Nothing past the count is left on disk.
                    let dir = PathBuf::from(format!("/data/topics/{name}"));
                    let logs = sim
                        .read_dir(&dir)
                        .unwrap()
                        .into_iter()
                        .filter(|e| e.starts_with("log"))
                        .count();
                    assert_eq!(logs as u32, n, "{at}");
                }
                Err(e) => {
                    assert!(what == "create" && !confirmed, "{at}: {e}");
                }
            }
            s.close().unwrap();
        }
    }
    assert!(points > 10);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Data directories written by sluice before partitions (`demo_store_dir` at commit 6b33f38,
/// closed cleanly and stopped without closing): topic `orders` with 24 records, subscribers
/// `billing` at 20 and `audit` at 6, group `shipping` with 0..8 acked and 8, 9 in flight.
#[test]
fn a_data_directory_from_before_partitions_opens_as_one_partition() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v0_single_log");
    for case in ["closed", "crashed"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        copy_dir(&fixtures.join(case), &root);
        let open = || Store::open(Arc::new(StdFs), &root, StoreConfig::default()).unwrap();
        let s = open();
        let t = s.topic("orders").unwrap();
        assert_eq!(t.partition_count(), 1, "{case}");
        let id = t.id();
        assert!(!id.is_nil());
        assert_eq!(t.log().end_offset(), Offset(24), "{case}");
        let from = t.log().start_offset();
        let kept = t.read(0, from, 100, 1 << 20).unwrap();
        assert_eq!(kept.len() as u64, 24 - from.0, "{case}");
        assert_eq!(kept.last().unwrap().1.value, b"order 23", "{case}");
        assert_eq!(t.committed("billing", 0), Some((Offset(20), vec![])));
        assert_eq!(t.committed("audit", 0), Some((Offset(6), vec![])));
        let g = t.group("shipping", QueueConfig::default()).unwrap();
        assert_eq!(g.queue(0).unwrap().stats().ack_floor, Offset(8), "{case}");
        assert_eq!(s.queue("jobs").unwrap().stats().end_offset, Offset(10));
        // New commits with metadata go into the upgraded journal.
        t.commit("audit", 0, Offset(7), b"m").unwrap();
        drop((g, t));
        s.close().unwrap();
        drop(s);
        let s = open();
        let t = s.topic("orders").unwrap();
        assert_eq!(t.id(), id, "{case}: the id assigned at first open persists");
        assert_eq!(t.committed("audit", 0), Some((Offset(7), b"m".to_vec())));
        assert_eq!(t.committed("billing", 0), Some((Offset(20), vec![])));
        let cfg = sluice_storage::store::inspect_topic_config(&StdFs, t.dir())
            .unwrap()
            .unwrap();
        assert_eq!((cfg.partitions, cfg.id), (1, id));
        assert_eq!(
            TopicId::parse(&id.to_string()),
            Some(id),
            "{case}: ids print and parse as UUIDs"
        );
    }
}

/// `inspect` walks every partition's log of a topic and names the partition; the state shared
/// by the partitions (config, offsets) is read once, each partition's figures on their own.
#[test]
fn inspect_reports_each_partition() {
    use sluice_storage::inspect::{self, InspectOptions, Item};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let s = Store::open(Arc::new(StdFs), &root, StoreConfig::default()).unwrap();
    let t = s.create_topic_with_partitions("t", None, 3).unwrap();
    for p in 0..3u32 {
        for _ in 0..=p {
            t.publish_to(p, &[rec("x")]).unwrap();
        }
    }
    t.subscribe("s", StartAt::Earliest).unwrap();
    t.commit("s", 2, Offset(1), b"meta").unwrap();
    let g = t.group("g", QueueConfig::default()).unwrap();
    g.queue(1).unwrap().deliver(ConsumerId(1), 10).unwrap();
    g.queue(1)
        .unwrap()
        .ack(ConsumerId(1), &[Offset(0)])
        .unwrap();
    drop((g, t));
    s.close().unwrap();
    drop(s);
    let v = inspect::verify(&StdFs, &root).unwrap();
    assert!(v.problems.is_empty(), "{:#?}", v.problems);
    let r = inspect::inspect_path(&StdFs, &root, &InspectOptions::default()).unwrap();
    let mut parts: Vec<(u32, Option<Offset>, Offset, Offset)> = r
        .items
        .iter()
        .filter_map(|i| match i {
            Item::LogDir(d) if d.kind == "topic" && d.name == "t" => {
                let sub = d.subscribers.as_ref().unwrap();
                let floor = d.groups[0].state.as_ref().unwrap().ack_floor;
                Some((d.partition, d.end_offset, sub[0].committed, floor))
            }
            _ => None,
        })
        .collect();
    parts.sort();
    assert_eq!(
        parts,
        vec![
            (0, Some(Offset(1)), Offset(0), Offset(0)),
            (1, Some(Offset(2)), Offset(0), Offset(1)),
            (2, Some(Offset(3)), Offset(1), Offset(0)),
        ]
    );
    // The shared config is reported once.
    let configs = r
        .items
        .iter()
        .filter(|i| matches!(i, Item::State(s) if s.file.ends_with("topics/t/config")))
        .count();
    assert_eq!(configs, 1);
}

/// `repair` walks every partition's log: a torn tail in partition 2 is cut there (the plan
/// names the partition) and the other partitions are left alone.
#[test]
fn repair_cuts_the_damaged_partition_only() {
    use sluice_storage::inspect;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let s = Store::open(Arc::new(StdFs), &root, StoreConfig::default()).unwrap();
    let t = s.create_topic_with_partitions("t", None, 3).unwrap();
    for i in 0..5 {
        for p in 0..3u32 {
            t.publish_to(p, &[rec(&format!("{p}-{i}"))]).unwrap();
        }
    }
    drop(t);
    s.close().unwrap();
    drop(s);
    let log2 = root.join("topics/t/log-2");
    let seg = std::fs::read_dir(&log2)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let plan = inspect::plan_repair(&StdFs, &root, 7).unwrap();
    assert_eq!(plan.dirs.len(), 1, "{plan:#?}");
    assert_eq!(
        (plan.dirs[0].dir.clone(), plan.dirs[0].partition),
        (log2, 2)
    );
    assert_eq!(plan.dirs[0].kept, (Offset(0), Offset(4)));
    assert_eq!(plan.clean_dirs.len(), 2);
    inspect::apply_repair(&StdFs, &plan).unwrap();
    assert!(inspect::verify(&StdFs, &root).unwrap().ok());
    let s = Store::open(Arc::new(StdFs), &root, StoreConfig::default()).unwrap();
    let t = s.topic("t").unwrap();
    assert_eq!(values(&t, 2), vec!["2-0", "2-1", "2-2", "2-3"]);
    assert_eq!(values(&t, 0).len(), 5);
    assert_eq!(values(&t, 1).len(), 5);
}

/// The embedded group consumer takes from every partition in turn and acks by (partition,
/// offset); what it holds goes back when it is dropped.
#[test]
fn an_embedded_group_consumer_rotates_over_partitions() {
    let sim = SimFs::new();
    let s = open(&sim);
    let t = s.create_topic_with_partitions("t", None, 3).unwrap();
    for p in 0..3u32 {
        for i in 0..4 {
            t.publish_to(p, &[rec(&format!("{p}-{i}"))]).unwrap();
        }
    }
    let g = t.group("g", QueueConfig::default()).unwrap();
    let c = g.consumer();
    let firsts: Vec<u32> = (0..3)
        .map(|_| {
            let ds = c.receive(2).unwrap();
            assert_eq!(ds.len(), 2);
            let ids: Vec<(u32, Offset)> = ds.iter().map(|d| (d.partition, d.offset)).collect();
            c.ack(&ids).unwrap();
            ds[0].partition
        })
        .collect();
    assert_eq!(firsts, vec![0, 1, 2]);
    let held = c.receive(100).unwrap();
    assert_eq!(held.len(), 6);
    assert!(matches!(
        c.ack(&[(1, Offset(0))]),
        Err(Error::NotHeld { .. })
    ));
    drop(c);
    // Released: another consumer gets the same six again.
    let c2 = g.consumer();
    assert_eq!(c2.receive(100).unwrap().len(), 6);
}
