//! Many topics and queues: none is opened at start, each opens at its first lookup (its log
//! recovered then, or by the background pass after an unclean stop), and idle ones close, their
//! files synced first, to stay within a file budget. Closing and reopening loses nothing, a
//! crash while a log is being opened lazily loses nothing, and a full open-file table refuses
//! only the lookup that needed a file.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_storage::fs::sim::{CrashMode, Fault, FaultError, OpKind, SimFs};
use sluice_storage::{
    ConsumerId, Error, FileSystem, FsRef, OpenSettings, QueueConfig, Record, Store, StoreConfig,
    CLEAN_FILE,
};

fn config(files_max: usize, idle_close_ms: u64, recover_in_background: bool) -> StoreConfig {
    StoreConfig {
        open: OpenSettings {
            files_max,
            idle_close_ms,
            recover_in_background,
        },
        ..StoreConfig::default()
    }
}

fn open(sim: &SimFs, c: StoreConfig) -> Store {
    let fs: FsRef = Arc::new(sim.clone());
    Store::open(fs, "/data", c).unwrap()
}

fn values(n: usize, tag: &str) -> Vec<Record> {
    (0..n)
        .map(|i| Record::from_value(format!("{tag}-{i}")))
        .collect()
}

/// Takes every message of queue `name` (acking each) and returns their values.
fn drain(s: &Store, name: &str) -> Vec<String> {
    let q = s.queue(name).unwrap();
    let mut out = Vec::new();
    loop {
        let got = q.deliver(ConsumerId(9), 100).unwrap();
        if got.is_empty() {
            return out;
        }
        let offsets: Vec<_> = got.iter().map(|d| d.offset).collect();
        q.ack(ConsumerId(9), &offsets).unwrap();
        out.extend(
            got.into_iter()
                .map(|d| String::from_utf8(d.record.value).unwrap()),
        );
    }
}

#[test]
fn nothing_opens_at_start_and_a_lookup_opens_only_its_own() {
    let sim = SimFs::new();
    let s = open(&sim, config(0, 60_000, false));
    for i in 0..40 {
        s.create_queue(&format!("q{i}"), QueueConfig::default())
            .unwrap()
            .publish(&values(1, &format!("q{i}")))
            .unwrap();
    }
    for i in 0..5 {
        s.create_topic(&format!("t{i}"), None).unwrap();
    }
    s.close().unwrap();
    drop(s);
    let s = open(&sim, config(0, 60_000, true));
    let st = s.open_stats();
    assert_eq!(
        (st.queues_open, st.topics_open, st.files),
        (0, 0, 0),
        "{st:?}"
    );
    assert_eq!(
        (st.queues, st.topics),
        (40, 5),
        "dead-letter queues are made lazily"
    );
    assert_eq!(s.list_queues().len(), 40);
    // Passes over what is in use (retention) see nothing and open nothing.
    assert!(s.open_queues().is_empty() && s.open_topics().is_empty());
    assert_eq!(drain(&s, "q7"), vec!["q7-0"]);
    let open: Vec<String> = s
        .open_queues()
        .iter()
        .map(|q| q.name().to_string())
        .collect();
    assert_eq!(open, ["q7"]);
    let st = s.open_stats();
    assert_eq!((st.queues_open, st.topics_open), (1, 0), "{st:?}");
    assert!(st.files >= 2, "{st:?}");
    assert!(s.topic("t3").is_ok());
    assert_eq!(s.open_stats().topics_open, 1);
    assert!(matches!(s.queue("nope"), Err(Error::NotFound { .. })));
}

#[test]
fn an_idle_queue_closes_only_when_nothing_is_in_flight_and_reopens_whole() {
    let sim = SimFs::new();
    let s = open(&sim, config(0, 0, false));
    let q = s.create_queue("jobs", QueueConfig::default()).unwrap();
    q.publish(&values(10, "m")).unwrap();
    let got = q.deliver(ConsumerId(1), 4).unwrap();
    q.ack(ConsumerId(1), &[got[0].offset, got[1].offset])
        .unwrap();
    assert_eq!(s.close_idle(), 0, "a handle is held");
    drop(q);
    assert_eq!(s.close_idle(), 0, "two messages are in flight");
    let q = s.queue("jobs").unwrap();
    q.ack(ConsumerId(1), &[got[2].offset, got[3].offset])
        .unwrap();
    drop(q);
    assert_eq!(s.close_idle(), 1);
    assert_eq!(s.open_stats().queues_open, 0);
    assert_eq!(s.open_stats().files, 0);
    // Everything was synced at the close: a power loss now loses nothing acked or published.
    sim.crash(CrashMode::DropUnsynced);
    drop(s);
    let s = open(&sim, config(0, 0, false));
    let rest = drain(&s, "jobs");
    assert_eq!(rest, (4..10).map(|i| format!("m-{i}")).collect::<Vec<_>>());
}

#[test]
fn closing_and_reopening_mid_workload_delivers_each_message_once() {
    let sim = SimFs::new();
    let s = open(&sim, config(0, 0, false));
    let names: Vec<String> = (0..8).map(|i| format!("q{i}")).collect();
    for n in &names {
        s.create_queue(n, QueueConfig::default()).unwrap();
    }
    let mut got: Vec<Vec<String>> = vec![Vec::new(); names.len()];
    let mut closes = 0;
    for round in 0..20 {
        for (i, n) in names.iter().enumerate() {
            let q = s.queue(n).unwrap();
            q.publish(&values(3, &format!("{n}-{round}"))).unwrap();
            if (round + i) % 3 == 0 {
                let d = q.deliver(ConsumerId(1), 2).unwrap();
                let offsets: Vec<_> = d.iter().map(|d| d.offset).collect();
                q.ack(ConsumerId(1), &offsets).unwrap();
                got[i].extend(
                    d.into_iter()
                        .map(|d| String::from_utf8(d.record.value).unwrap()),
                );
            }
        }
        closes += s.close_idle();
    }
    assert!(
        closes >= 100,
        "queues were closed and reopened ({closes} closes)"
    );
    for (i, n) in names.iter().enumerate() {
        got[i].extend(drain(&s, n));
        let want: Vec<String> = (0..20)
            .flat_map(|r| (0..3).map(move |k| format!("{n}-{r}-{k}")))
            .collect();
        assert_eq!(got[i], want, "{n}: every message once, in order");
    }
}

#[test]
fn the_file_budget_bounds_what_stays_open() {
    let sim = SimFs::new();
    let s = open(&sim, config(40, 60_000, false));
    for i in 0..100 {
        let name = format!("q{i}");
        let q = s.create_queue(&name, QueueConfig::default()).unwrap();
        q.publish(&values(1, &name)).unwrap();
        drop(q);
        let st = s.open_stats();
        assert!(st.files <= 40 + 3, "{i}: {st:?}");
    }
    for i in (0..100).step_by(7) {
        assert_eq!(drain(&s, &format!("q{i}")), vec![format!("q{i}-0")]);
        assert!(s.open_stats().files <= 40 + 3);
    }
}

/// Writes three confirmed messages to queue `a`, then leaves it as a crash would: no
/// clean-shutdown marks, and junk after the last batch of its segment. Returns the segment and
/// its length with the junk.
fn torn_queue(sim: &SimFs) -> (std::path::PathBuf, usize) {
    let s = open(sim, config(0, 60_000, false));
    s.create_queue("a", QueueConfig::default())
        .unwrap()
        .publish(&values(3, "a"))
        .unwrap();
    s.create_queue("b", QueueConfig::default()).unwrap();
    drop(s);
    sim.crash(CrashMode::DropUnsynced);
    let seg = Path::new("/data/queues/a/log/00000000000000000000.log").to_path_buf();
    let mut bytes = sim.read_file(&seg).unwrap();
    bytes.extend_from_slice(&[0x5a; 700]);
    sim.write_file(&seg, &bytes).unwrap();
    (seg, bytes.len())
}

#[test]
fn a_torn_tail_in_an_untouched_log_is_cut_before_it_serves() {
    let sim = SimFs::new();
    let (seg, torn) = torn_queue(&sim);
    assert!(!sim.exists(&Path::new("/data").join(CLEAN_FILE)));
    let s = open(&sim, config(0, 60_000, false));
    s.queue("b").unwrap();
    assert_eq!(sim.read_file(&seg).unwrap().len(), torn, "not opened yet");
    assert_eq!(drain(&s, "a"), vec!["a-0", "a-1", "a-2"]);
    assert!(
        sim.read_file(&seg).unwrap().len() < torn,
        "cut at its first use"
    );
}

#[test]
fn after_an_unclean_stop_untouched_logs_are_recovered_in_the_background() {
    let sim = SimFs::new();
    let (seg, torn) = torn_queue(&sim);
    let s = open(&sim, config(0, 60_000, true));
    let start = Instant::now();
    while sim.read_file(&seg).unwrap().len() >= torn {
        assert!(start.elapsed() < Duration::from_secs(20), "never recovered");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Opened, recovered and closed again: nothing stays open for it.
    let start = Instant::now();
    while s.open_stats().queues_open != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:?}",
            s.open_stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(drain(&s, "a"), vec!["a-0", "a-1", "a-2"]);
    // A clean close leaves the mark, and the next open recovers nothing in the background.
    s.close().unwrap();
    drop(s);
    let s = open(&sim, config(0, 60_000, true));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(s.open_stats().queues_open, 0);
}

#[test]
fn a_crash_while_a_log_is_opened_lazily_loses_nothing() {
    // A crash after each call of the lazy open (and a publish after it), until one that the
    // workload finishes before.
    for n in 0u64.. {
        let sim = SimFs::new();
        let (_, _) = torn_queue(&sim);
        let s = open(&sim, config(0, 60_000, false));
        sim.crash_after(n);
        let _ = s.queue("a").map(|q| q.publish(&values(1, "late")));
        let crashed = sim.has_crashed();
        sim.crash(CrashMode::TornTail(n + 1));
        drop(s);
        let s = open(&sim, config(0, 60_000, false));
        let got = drain(&s, "a");
        assert_eq!(got[..3], ["a-0", "a-1", "a-2"], "crash after {n} calls");
        assert!(got.len() == 3 || got[3..] == ["late-0"], "{n}: {got:?}");
        if !crashed {
            assert_eq!(got.len(), 4, "a publish that returned is kept");
            assert!(n > 10, "the open took {n} calls");
            break;
        }
        s.queue("a").unwrap().publish(&values(1, "after")).unwrap();
        assert_eq!(drain(&s, "a"), vec!["after-0"]);
    }
}

#[test]
fn a_full_open_file_table_refuses_that_lookup_and_others_go_on() {
    let sim = SimFs::new();
    let s = open(&sim, config(0, 60_000, false));
    for n in ["a", "b"] {
        s.create_queue(n, QueueConfig::default())
            .unwrap()
            .publish(&values(2, n))
            .unwrap();
    }
    s.close().unwrap();
    drop(s);
    let s = open(&sim, config(0, 60_000, false));
    let b = s.queue("b").unwrap();
    sim.add_fault(Fault {
        kind: OpKind::Open,
        nth: sim.count(OpKind::Open) + 1,
        forever: true,
        error: FaultError::TooManyFiles,
    });
    let err = s.queue("a").unwrap_err();
    assert!(err.is_fd_exhausted(), "{err}");
    // The open queue keeps serving: publish and deliver need no new file.
    b.publish(&values(1, "more")).unwrap();
    assert_eq!(b.deliver(ConsumerId(1), 10).unwrap().len(), 3);
    sim.clear_faults();
    assert_eq!(
        drain(&s, "a"),
        vec!["a-0", "a-1"],
        "opens once files are free"
    );
}

#[test]
fn a_dead_letter_queue_is_made_by_its_first_dead_letter_or_lookup() {
    let sim = SimFs::new();
    let s = open(&sim, config(0, 60_000, false));
    let cfg = QueueConfig {
        max_deliveries: 1,
        ..QueueConfig::default()
    };
    let a = s.create_queue("a", cfg.clone()).unwrap();
    s.create_queue("b", QueueConfig::default()).unwrap();
    assert_eq!(s.list_queues(), vec!["a", "b"]);
    assert!(!sim.exists(Path::new("/data/queues/a.dlq")));
    // A lookup of a queue's default dead-letter queue makes it; of any other name, nothing.
    assert!(matches!(s.queue("zz.dlq"), Err(Error::NotFound { .. })));
    assert!(matches!(s.queue("a.dlq.dlq"), Err(Error::NotFound { .. })));
    assert_eq!(s.queue("b.dlq").unwrap().name(), "b.dlq");
    assert_eq!(s.list_queues(), vec!["a", "b", "b.dlq"]);
    // A dead letter makes it too.
    a.publish(&values(1, "poison")).unwrap();
    let d = a.deliver(ConsumerId(1), 1).unwrap();
    assert_eq!(d.len(), 1);
    a.release(ConsumerId(1));
    assert!(a.deliver(ConsumerId(1), 1).unwrap().is_empty());
    assert_eq!(s.list_queues(), vec!["a", "a.dlq", "b", "b.dlq"]);
    assert_eq!(drain(&s, "a.dlq"), vec!["poison-0"]);
    // A dead-letter queue named in the config is made with the queue: others may look for it.
    let named = QueueConfig {
        dead_letter: Some("shared-dead".into()),
        ..QueueConfig::default()
    };
    s.create_queue("c", named).unwrap();
    assert!(s.list_queues().contains(&"shared-dead".to_string()));
}

#[test]
fn a_topic_listing_opens_no_topic() {
    let sim = SimFs::new();
    let s = open(&sim, config(0, 60_000, false));
    let mut ids = Vec::new();
    for i in 0..10u32 {
        let t = s
            .create_topic_with_partitions(&format!("t{i}"), None, 1 + i % 3)
            .unwrap();
        ids.push((t.id(), 1 + i % 3));
    }
    s.create_queue("q", QueueConfig::default()).unwrap();
    s.close().unwrap();
    drop(s);
    let s = open(&sim, config(0, 60_000, false));
    for (i, want) in ids.iter().enumerate() {
        assert_eq!(s.topic_meta(&format!("t{i}")).unwrap(), *want);
    }
    assert!(s.has_queue("q") && !s.has_queue("t1") && !s.has_queue("zz"));
    assert_eq!(s.open_stats().topics_open + s.open_stats().queues_open, 0);
    assert!(matches!(s.topic_meta("zz"), Err(Error::NotFound { .. })));
    // Partitions added while open show once it is closed again; a topic made again under a
    // deleted one's name shows its own id.
    s.topic("t0").unwrap().add_partitions(4).unwrap();
    s.delete_topic("t1").unwrap();
    let t1 = s.create_topic("t1", None).unwrap().id();
    assert_eq!(s.close_idle(), 0, "used just now");
    let s2_cfg = config(0, 0, false);
    drop(s);
    let s = open(&sim, s2_cfg);
    assert_eq!(s.topic_meta("t0").unwrap(), (ids[0].0, 4));
    assert_eq!(s.topic_meta("t1").unwrap(), (t1, 1));
    assert_ne!(t1, ids[1].0);
    s.topic("t1").unwrap();
    assert_eq!(s.close_idle(), 1);
    assert_eq!(s.topic_meta("t1").unwrap(), (t1, 1));
}

#[test]
fn queues_publishing_together_share_syncs_and_a_crash_loses_no_confirmed_message() {
    let sim = SimFs::new();
    let s = Arc::new(open(&sim, config(0, 60_000, false)));
    let names: Vec<String> = (0..8).map(|i| format!("busy{i}")).collect();
    for n in &names {
        s.create_queue(n, QueueConfig::default()).unwrap();
    }
    // Slow syncs, as a disk's: the queues' syncs overlap and join rounds.
    sim.set_sync_delay(Duration::from_millis(2));
    let confirmed: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|n| {
                let s = s.clone();
                scope.spawn(move || {
                    let q = s.queue(n).unwrap();
                    (0..40)
                        .map(|i| {
                            let v = format!("{n}-{i}");
                            q.publish(&[Record::from_value(v.clone())]).unwrap();
                            v
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stats = s.sync_stats().expect("shared syncs are the default");
    assert!(stats.requests >= 8 * 40, "{stats:?}");
    assert!(stats.rounds < stats.requests / 2, "{stats:?}");
    assert!(stats.file_system_syncs > 0, "{stats:?}");
    sim.crash(CrashMode::DropUnsynced);
    drop(s);
    let s = open(&sim, config(0, 60_000, false));
    for (n, want) in names.iter().zip(&confirmed) {
        assert_eq!(&drain(&s, n), want, "queue {n} after the crash");
    }
}

#[test]
fn a_closed_topics_subscribers_and_groups_are_listed_without_opening_it() {
    let sim = SimFs::new();
    let s = open(&sim, config(0, 60_000, false));
    let t = s.create_topic_with_partitions("t", None, 2).unwrap();
    t.publish(&values(3, "m")).unwrap();
    t.commit_offset("sub-b", 1, sluice_storage::Offset(0), b"")
        .unwrap();
    t.commit_offset("sub-a", 0, sluice_storage::Offset(2), b"meta")
        .unwrap();
    t.commit_offset("gone", 0, sluice_storage::Offset(1), b"")
        .unwrap();
    t.delete_subscriber("gone").unwrap();
    t.group("g2", QueueConfig::default()).unwrap();
    t.group("g1", QueueConfig::default()).unwrap();
    s.create_topic("bare", None).unwrap();
    drop(t);
    s.close().unwrap();
    drop(s);
    let s = open(&sim, config(0, 60_000, false));
    assert_eq!(s.topic_subscribers("t").unwrap(), ["sub-a", "sub-b"]);
    assert_eq!(s.topic_groups("t").unwrap(), ["g1", "g2"]);
    assert!(s.topic_subscribers("bare").unwrap().is_empty());
    assert!(s.topic_groups("bare").unwrap().is_empty());
    assert_eq!(s.open_stats().topics_open, 0, "read, not opened");
    assert!(matches!(
        s.topic_groups("none"),
        Err(Error::NotFound { .. })
    ));
    // An open topic answers for itself, with what changed since.
    let t = s.topic("t").unwrap();
    t.delete_subscriber("sub-b").unwrap();
    t.delete_group("g2").unwrap();
    assert_eq!(s.topic_subscribers("t").unwrap(), ["sub-a"]);
    assert_eq!(s.topic_groups("t").unwrap(), ["g1"]);
    drop(t);
    assert_eq!(s.close_idle(), 0);
    s.close().unwrap();
    drop(s);
    let s = open(&sim, config(0, 60_000, false));
    assert_eq!(s.topic_subscribers("t").unwrap(), ["sub-a"]);
    assert_eq!(s.topic_groups("t").unwrap(), ["g1"]);
    assert_eq!(s.open_stats().topics_open, 0);
}
