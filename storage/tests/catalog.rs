//! The store's catalog of topics, queues and groups: creates and deletes of one name never
//! overlap on its directory, a delete is atomic on disk, one damaged log keeps only itself
//! offline, directory I/O runs outside the catalog's locks, and a create is refused whole when a
//! derived dead-letter name would be too long.

use std::io;
use std::path::Path;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use sluice_storage::fs::sim::{CrashMode, SimFs};
use sluice_storage::fs::{FileRef, FileSystem, OpenMode};
use sluice_storage::store::NAME_MAX;
use sluice_storage::{
    ConsumerId, Error, FsRef, LogConfig, Offset, QueueConfig, Record, Store, StoreConfig,
};

/// Which call a [`GateFs`] holds back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GateOp {
    CreateDir,
    RemoveDirAll,
}

#[derive(Debug, Default)]
struct Gate {
    /// The call to hold and a part of its path; cleared once a call matched.
    armed: Option<(GateOp, String)>,
    reached: bool,
    open: bool,
}

/// A simulated file system whose first call of one kind under a path waits until released.
#[derive(Debug)]
struct GateFs {
    sim: SimFs,
    gate: Mutex<Gate>,
    cv: Condvar,
}

impl GateFs {
    fn new(sim: &SimFs) -> Arc<GateFs> {
        Arc::new(GateFs {
            sim: sim.clone(),
            gate: Mutex::new(Gate::default()),
            cv: Condvar::new(),
        })
    }

    fn arm(&self, op: GateOp, path_part: &str) {
        *self.gate.lock().unwrap() = Gate {
            armed: Some((op, path_part.into())),
            ..Gate::default()
        };
    }

    fn pass(&self, op: GateOp, path: &Path) {
        let mut g = self.gate.lock().unwrap();
        let hit = matches!(&g.armed, Some((o, p)) if *o == op && path.to_string_lossy().contains(p.as_str()));
        if !hit {
            return;
        }
        g.armed = None;
        g.reached = true;
        self.cv.notify_all();
        while !g.open {
            g = self.cv.wait(g).unwrap();
        }
    }

    fn wait_reached(&self) {
        let mut g = self.gate.lock().unwrap();
        while !g.reached {
            let (ng, t) = self.cv.wait_timeout(g, Duration::from_secs(10)).unwrap();
            g = ng;
            assert!(!t.timed_out() || g.reached, "the held call never came");
        }
    }

    fn release(&self) {
        self.gate.lock().unwrap().open = true;
        self.cv.notify_all();
    }
}

impl FileSystem for GateFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        self.sim.open(path, mode)
    }
    fn open_direct(&self, path: &Path) -> io::Result<FileRef> {
        self.sim.open_direct(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.pass(GateOp::CreateDir, path);
        self.sim.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.sim.read_dir(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.sim.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.pass(GateOp::RemoveDirAll, path);
        self.sim.remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.sim.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.sim.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.sim.exists(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.sim.is_dir(path)
    }
}

fn open(fs: FsRef) -> Store {
    Store::open(fs, "/data", StoreConfig::default()).unwrap()
}

fn small_log() -> LogConfig {
    LogConfig {
        segment_bytes_max: 1024,
        ..LogConfig::default()
    }
}

fn plain_queue() -> QueueConfig {
    QueueConfig {
        log: small_log(),
        max_deliveries: 0,
        ..QueueConfig::default()
    }
}

fn rec(i: u64) -> Record {
    Record::from_value(format!("message {i:05} {}", "x".repeat((i % 50) as usize)))
}

fn values(log: &sluice_storage::Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    loop {
        let got = log.read_records(from, 1000, 1 << 20).unwrap();
        let Some(last) = got.last() else { return out };
        from = last.0.add(1);
        out.extend(got.into_iter().map(|(_, r)| r.value));
    }
}

/// Runs `f` on a thread; true when it finished within a few seconds.
fn finishes_soon(f: impl FnOnce() + Send + 'static) -> bool {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(5)).is_ok()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Topic,
    Queue,
    Group,
}

const KINDS: [Kind; 3] = [Kind::Topic, Kind::Queue, Kind::Group];

/// Creates (or re-creates) `x` of `kind` and confirms one message in it: published to a topic
/// or queue, delivered and acked in a group (on topic `host`).
fn create_and_confirm(s: &Store, kind: Kind, value: &str) {
    match kind {
        Kind::Topic => {
            let t = s.create_topic("x", Some(small_log())).unwrap();
            t.publish(&[Record::from_value(value)]).unwrap();
        }
        Kind::Queue => {
            let q = s.create_queue("x", plain_queue()).unwrap();
            q.publish(&[Record::from_value(value)]).unwrap();
        }
        Kind::Group => {
            let t = s.topic("host").unwrap();
            let g = t.group("x", plain_queue()).unwrap().queue(0).unwrap();
            let d = g.deliver(ConsumerId(1), 1).unwrap();
            assert_eq!(d.len(), 1, "the group starts at the log start");
            g.ack(ConsumerId(1), &[d[0].offset]).unwrap();
        }
    }
}

fn delete(s: &Store, kind: Kind) -> sluice_storage::Result<()> {
    match kind {
        Kind::Topic => s.delete_topic("x"),
        Kind::Queue => s.delete_queue("x"),
        Kind::Group => s.topic("host")?.delete_group("x"),
    }
}

/// What the re-created `x` holds after a reopen: its messages, or for a group its ack floor.
fn confirmed_after_reopen(s: &Store, kind: Kind) -> Result<String, Error> {
    Ok(match kind {
        Kind::Topic => format!("{:?}", values(s.topic("x")?.log())),
        Kind::Queue => format!("{:?}", values(s.queue("x")?.log())),
        Kind::Group => {
            let t = s.topic("host")?;
            if !t.list_groups().contains(&"x".to_string()) {
                return Err(Error::NotFound {
                    kind: "group",
                    name: "x".into(),
                });
            }
            let g = t.group("x", plain_queue())?.queue(0)?;
            format!("floor {}", g.stats().ack_floor.0)
        }
    })
}

/// Item 1 of the review: a delete and a create of the same name at the same time. The delete is
/// held in its directory removal while the create makes the name anew and confirms a message;
/// the delete's removal must not take the new directory with it.
#[test]
fn a_create_during_a_delete_of_the_same_name_keeps_what_it_confirmed() {
    for kind in KINDS {
        let sim = SimFs::new();
        let fs = GateFs::new(&sim);
        let s = open(fs.clone());
        let host = s.create_topic("host", Some(small_log())).unwrap();
        host.publish(&[rec(0)]).unwrap();
        create_and_confirm(&s, kind, "old");
        let parent = match kind {
            Kind::Topic => "/data/topics/",
            Kind::Queue => "/data/queues/",
            Kind::Group => "/data/topics/host/groups/",
        };
        fs.arm(GateOp::RemoveDirAll, parent);
        let s = Arc::new(s);
        let deleter = {
            let s = s.clone();
            std::thread::spawn(move || delete(&s, kind))
        };
        fs.wait_reached();
        create_and_confirm(&s, kind, "new");
        fs.release();
        deleter.join().unwrap().unwrap();
        let closed = s.close();
        let s = open(Arc::new(sim.clone()));
        let want = match kind {
            Kind::Group => "floor 1".to_string(),
            _ => format!("{:?}", vec![b"new".to_vec()]),
        };
        match confirmed_after_reopen(&s, kind) {
            Ok(got) => assert_eq!(got, want, "{kind:?}: the re-created one lost data"),
            Err(e) => panic!("{kind:?}: the re-created one is gone after a reopen: {e}"),
        }
        closed.unwrap();
    }
}

/// Builds a store with a topic `a` of many segments and a group, a topic `b` and a queue `q`.
fn populated(sim: &SimFs) -> Store {
    let s = open(Arc::new(sim.clone()));
    for name in ["a", "b"] {
        let t = s.create_topic(name, Some(small_log())).unwrap();
        for i in 0..40 {
            let batch: Vec<Record> = (0..5).map(|j| rec(i * 5 + j)).collect();
            t.publish(&batch).unwrap();
        }
        t.subscribe("s", sluice_storage::StartAt::Earliest).unwrap();
        t.commit("s", 0, Offset(17), &[]).unwrap();
    }
    let g = s
        .topic("a")
        .unwrap()
        .group("g", plain_queue())
        .unwrap()
        .queue(0)
        .unwrap();
    let d = g.deliver(ConsumerId(1), 3).unwrap();
    g.ack(ConsumerId(1), &[d[0].offset]).unwrap();
    let q = s.create_queue("q", plain_queue()).unwrap();
    for i in 0..100 {
        q.publish(&[rec(i)]).unwrap();
    }
    let d = q.deliver(ConsumerId(1), 10).unwrap();
    q.ack(ConsumerId(1), &[d[0].offset, d[1].offset]).unwrap();
    s
}

fn expect_intact(s: &Store, what: &str) {
    let want: Vec<Vec<u8>> = (0..200).map(|i| rec(i).value).collect();
    let b = s
        .topic("b")
        .unwrap_or_else(|e| panic!("{what}: topic b: {e}"));
    assert_eq!(values(b.log()), want, "{what}: topic b");
    assert_eq!(
        b.committed("s", 0).map(|c| c.0),
        Some(Offset(17)),
        "{what}: subscriber of b"
    );
    let q = s
        .queue("q")
        .unwrap_or_else(|e| panic!("{what}: queue q: {e}"));
    let st = q.stats();
    assert_eq!(
        (st.end_offset, st.ack_floor),
        (Offset(100), Offset(2)),
        "{what}"
    );
}

/// Item 2 of the review: a crash at every point of a delete (with the non-atomic directory
/// removal of the simulated file system, in several removal orders) leaves a store that opens,
/// with everything else intact, and the deleted one either whole or gone (gone when the delete
/// was confirmed).
#[test]
fn a_crash_in_the_middle_of_a_delete_leaves_a_store_that_opens_with_the_rest_intact() {
    type Delete = fn(&Store) -> sluice_storage::Result<()>;
    let (mut points, mut not_opened, mut damaged) = (0, 0, 0);
    for (what, del) in [
        ("topic", (|s: &Store| s.delete_topic("a")) as Delete),
        ("queue", |s: &Store| s.delete_queue("q")),
        ("group", |s: &Store| s.topic("a")?.delete_group("g")),
    ] {
        for seed in 0..3 {
            // How many calls the whole delete makes.
            let sim = SimFs::new();
            let s = populated(&sim);
            sim.set_removal_seed(seed);
            let before = sim.op_count();
            del(&s).unwrap();
            let calls = sim.op_count() - before;
            drop(s);
            for k in 0..calls {
                points += 1;
                let sim = SimFs::new();
                let s = populated(&sim);
                sim.set_removal_seed(seed);
                sim.crash_after(k);
                let r = del(&s);
                sim.crash(CrashMode::DropUnsynced);
                drop(s);
                let confirmed = r.is_ok();
                let at = format!("{what} delete, removal seed {seed}, crash after {k} calls");
                let Ok(s) = Store::open(Arc::new(sim.clone()), "/data", StoreConfig::default())
                else {
                    not_opened += 1;
                    continue;
                };
                let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    check_after_delete_crash(&s, what, confirmed, &at)
                }));
                if check.is_err() {
                    damaged += 1;
                    continue;
                }
                // Nothing of the deleted one is left on disk once the store opened.
                let left: Vec<String> = ["/data/topics", "/data/queues", "/data/topics/a/groups"]
                    .iter()
                    .flat_map(|d| sim.read_dir(Path::new(d)).unwrap_or_default())
                    .filter(|n| n.contains('~'))
                    .collect();
                assert!(left.is_empty(), "{at}: leftovers {left:?}");
            }
        }
    }
    assert_eq!(
        (not_opened, damaged),
        (0, 0),
        "of {points} crash points, the store did not open after {not_opened} and lost or \
         damaged data after {damaged}"
    );
}

fn check_after_delete_crash(s: &Store, what: &str, confirmed: bool, at: &str) {
    match what {
        "topic" => {
            let want: Vec<Vec<u8>> = (0..200).map(|i| rec(i).value).collect();
            match s.topic("a") {
                Ok(t) if !confirmed => assert_eq!(values(t.log()), want, "{at}"),
                Ok(_) => panic!("{at}: a confirmed delete came back"),
                Err(Error::NotFound { .. }) => {}
                Err(e) => panic!("{at}: topic a: {e}"),
            }
            expect_intact(s, at);
        }
        "queue" => {
            match s.queue("q") {
                Ok(_) if !confirmed => expect_intact(s, at),
                Ok(_) => panic!("{at}: a confirmed delete came back"),
                Err(Error::NotFound { .. }) => {}
                Err(e) => panic!("{at}: queue q: {e}"),
            }
            let b = s.topic("b").unwrap();
            assert_eq!(values(b.log()).len(), 200, "{at}");
        }
        _ => {
            let groups = s.topic("a").unwrap().list_groups();
            assert!(!confirmed || groups.is_empty(), "{at}: the group came back");
            if !groups.is_empty() {
                let g = s
                    .topic("a")
                    .unwrap()
                    .group("g", plain_queue())
                    .unwrap()
                    .queue(0)
                    .unwrap();
                assert_eq!(g.stats().ack_floor, Offset(1), "{at}");
            }
            expect_intact(s, at);
        }
    }
}

/// Item 2 of the review: a damaged log keeps only its own topic or queue offline. The rest open;
/// requests to the damaged one get a `Corruption` naming it (not `NotFound`, so nobody creates
/// over it) until it is deleted.
#[test]
fn a_damaged_log_keeps_only_itself_offline() {
    let sim = SimFs::new();
    populated(&sim).close().unwrap();
    // A segment in the middle of topic a's log goes missing.
    let log_dir = Path::new("/data/topics/a/log");
    let segs: Vec<String> = sim
        .read_dir(log_dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .collect();
    assert!(segs.len() > 3, "topic a has {} segments", segs.len());
    sim.remove_file(&log_dir.join(&segs[1])).unwrap();
    sim.sync_dir(log_dir).unwrap();
    // Queue q's config is garbage.
    sim.write_file(Path::new("/data/queues/q/config"), b"garbage")
        .unwrap();

    let s = Store::open(Arc::new(sim.clone()), "/data", StoreConfig::default())
        .expect("one damaged log must not keep the store closed");
    expect_intact_b(&s);
    for (r, path) in [
        (s.topic("a").map(|_| ()), "topics/a"),
        (s.queue("q").map(|_| ()), "queues/q"),
    ] {
        match r {
            Err(Error::Corruption { segment, .. }) => assert!(
                segment.to_string_lossy().contains(path),
                "the error names {}, not {path}",
                segment.display()
            ),
            Err(e) => panic!("{path}: expected a corruption error, got {e}"),
            Ok(()) => panic!("{path}: a damaged log opened"),
        }
    }
    assert!(s.list_topics().contains(&"a".to_string()));
    assert!(matches!(
        s.create_topic("a", None),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        s.create_queue("q", plain_queue()),
        Err(Error::AlreadyExists { .. })
    ));
    // Deleting a damaged one frees its name.
    s.delete_topic("a").unwrap();
    s.delete_queue("q").unwrap();
    s.create_topic("a", None)
        .unwrap()
        .publish(&[rec(1)])
        .unwrap();
    s.create_queue("q", plain_queue()).unwrap();
    s.close().unwrap();
    drop(s);
    let s = open(Arc::new(sim.clone()));
    assert_eq!(values(s.topic("a").unwrap().log()), vec![rec(1).value]);
    assert_eq!(s.queue("q").unwrap().stats().end_offset, Offset(0));
    expect_intact_b(&s);
}

fn expect_intact_b(s: &Store) {
    let b = s.topic("b").unwrap();
    let want: Vec<Vec<u8>> = (0..200).map(|i| rec(i).value).collect();
    assert_eq!(values(b.log())[..200], want[..]);
    b.publish(&[rec(7)]).unwrap();
}

/// Item 9 of the review: while a create waits on its directory I/O, other names are served (the
/// catalog's lock is not held across it), and the name being created is not found yet.
#[test]
fn a_slow_create_does_not_hold_up_other_names() {
    for kind in KINDS {
        let sim = SimFs::new();
        let fs = GateFs::new(&sim);
        let s = Arc::new(open(fs.clone()));
        let t = s.create_topic("fast", Some(small_log())).unwrap();
        s.create_queue("fastq", plain_queue()).unwrap();
        t.group("fastg", plain_queue()).unwrap();
        fs.arm(GateOp::CreateDir, "slow");
        let creator = {
            let s = s.clone();
            std::thread::spawn(move || match kind {
                Kind::Topic => s.create_topic("slow", None).map(|_| ()),
                Kind::Queue => s.create_queue("slow", plain_queue()).map(|_| ()),
                Kind::Group => s.topic("fast")?.group("slow", plain_queue()).map(|_| ()),
            })
        };
        fs.wait_reached();
        let s2 = s.clone();
        let served = finishes_soon(move || {
            s2.topic("fast").unwrap().publish(&[rec(1)]).unwrap();
            s2.queue("fastq").unwrap().publish(&[rec(1)]).unwrap();
            let t = s2.topic("fast").unwrap();
            t.group("fastg", plain_queue()).unwrap();
            assert_eq!(t.list_groups(), vec!["fastg".to_string()]);
            assert!(!s2.list_topics().contains(&"slow".to_string()));
            assert!(!s2.list_queues().contains(&"slow".to_string()));
            assert!(matches!(s2.topic("slow"), Err(Error::NotFound { .. })));
            assert!(matches!(s2.queue("slow"), Err(Error::NotFound { .. })));
            s2.create_queue("other", plain_queue()).unwrap();
        });
        fs.release();
        creator.join().unwrap().unwrap();
        assert!(served, "{kind:?}: a create held up requests to other names");
        match kind {
            Kind::Topic => drop(s.topic("slow").unwrap()),
            Kind::Queue => drop(s.queue("slow").unwrap()),
            Kind::Group => assert!(t.list_groups().contains(&"slow".to_string())),
        }
    }
}

/// Item 15 of the review: a create whose derived dead-letter name (`<queue>.dlq`, or
/// `<topic>.<group>.dlq` for a group) would be over the name limit is refused before anything is
/// created.
#[test]
fn a_derived_dead_letter_name_over_the_limit_refuses_the_create_whole() {
    let sim = SimFs::new();
    let s = open(Arc::new(sim.clone()));
    let long = "q".repeat(NAME_MAX - 3);
    let dlq = QueueConfig {
        max_deliveries: 3,
        ..QueueConfig::default()
    };
    let r = s.create_queue(&long, dlq.clone());
    assert!(
        s.list_queues().is_empty(),
        "a refused create left {} queue(s)",
        s.list_queues().len()
    );
    match r {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("dead-letter"), "{m}"),
        r => panic!("expected InvalidArgument, got {r:?}"),
    }
    assert!(sim.read_dir(Path::new("/data/queues")).unwrap().is_empty());
    // With an explicit dead-letter queue, or none at all, the name is fine.
    let named = QueueConfig {
        dead_letter: Some("dead".into()),
        ..dlq.clone()
    };
    s.create_queue(&long, named).unwrap();
    s.delete_queue(&long).unwrap();
    s.create_queue(&long, plain_queue()).unwrap();

    let t = s.create_topic(&"t".repeat(100), None).unwrap();
    let g = "g".repeat(100);
    match t.group(&g, dlq.clone()) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("dead-letter"), "{m}"),
        r => panic!("expected InvalidArgument, got {r:?}"),
    }
    assert!(t.list_groups().is_empty());
    t.group(&g, plain_queue()).unwrap();
}
