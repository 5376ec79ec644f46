//! The embedding API: a store opened with its builder, a named subscriber handle that resumes
//! from its commit, a consumer handle that gives back what it holds when dropped, and the
//! store's own upkeep thread returning expired deliveries without anyone calling `expire`.

use std::time::{Duration, Instant};

use sluice_storage::{FsyncPolicy, Offset, QueueConfig, Record, StartAt, Store};

fn open(dir: &std::path::Path) -> Store {
    Store::builder(dir)
        .fsync(FsyncPolicy::Always)
        .upkeep(Duration::from_millis(10), Duration::from_secs(60))
        .open()
        .unwrap()
}

#[test]
fn a_subscriber_reads_from_its_position_and_resumes_after_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let orders = store.create_topic("orders", None).unwrap();
    let recs: Vec<Record> = (0..10)
        .map(|i| Record::from_value(format!("o{i}")))
        .collect();
    orders.publish(&recs).unwrap();
    let mut billing = orders.subscriber("billing", StartAt::Earliest).unwrap();
    let first = billing.poll(4, 1 << 20).unwrap();
    assert_eq!(first.len(), 4);
    assert_eq!(billing.position(), Offset(4));
    // Handled up to offset 2 only: commit that message.
    billing.commit(Offset(2)).unwrap();
    drop(billing);
    store.close().unwrap();
    drop(store);

    let store = open(dir.path());
    let orders = store.topic("orders").unwrap();
    let mut billing = orders.subscriber("billing", StartAt::Latest).unwrap();
    assert_eq!(
        billing.position(),
        Offset(3),
        "resumes after the committed message"
    );
    let rest = billing.poll(100, 1 << 20).unwrap();
    assert_eq!(rest.first().unwrap().1.value, b"o3");
    assert_eq!(rest.len(), 7);
    // Nothing more: a bounded wait returns empty, then a publish wakes it.
    assert!(billing
        .poll_wait(10, 1 << 20, Duration::from_millis(20))
        .unwrap()
        .is_empty());
    let t = orders.clone();
    let publisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        t.publish(&[Record::from_value("late")]).unwrap();
    });
    let late = billing
        .poll_wait(10, 1 << 20, Duration::from_secs(10))
        .unwrap();
    publisher.join().unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].0, Offset(10));
    store.close().unwrap();
}

#[test]
fn a_dropped_consumer_gives_back_what_it_holds_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let jobs = store.create_queue("jobs", QueueConfig::default()).unwrap();
    jobs.publish(&[Record::from_value("a"), Record::from_value("b")])
        .unwrap();
    let worker = jobs.consumer();
    assert_eq!(worker.receive(10).unwrap().len(), 2);
    assert_eq!(worker.held(), vec![Offset(0), Offset(1)]);
    let other = jobs.consumer();
    assert!(other.receive(10).unwrap().is_empty());
    drop(worker);
    let again = other.receive(10).unwrap();
    let got: Vec<(u64, u32)> = again.iter().map(|d| (d.offset.0, d.attempt)).collect();
    assert_eq!(got, vec![(0, 2), (1, 2)]);
    other.ack(&[Offset(0), Offset(1)]).unwrap();
    assert_eq!(jobs.stats().ack_floor, Offset(2));
    store.close().unwrap();
}

#[test]
fn the_upkeep_thread_returns_expired_deliveries_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let cfg = QueueConfig {
        ack_timeout_ms: 50,
        ..QueueConfig::default()
    };
    let jobs = store.create_queue("jobs", cfg).unwrap();
    jobs.publish(&[Record::from_value("slow")]).unwrap();
    let stalled = jobs.consumer();
    assert_eq!(stalled.receive(1).unwrap().len(), 1);
    // Nobody calls expire: the store's upkeep returns the message after its deadline.
    let started = Instant::now();
    while jobs.stats().in_flight == 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the upkeep thread never returned the message"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let other = jobs.consumer();
    let got = other.receive_wait(1, Duration::from_secs(10)).unwrap();
    assert_eq!((got[0].offset, got[0].attempt), (Offset(0), 2));
    // The stalled consumer's late ack is refused: the message is the other's now.
    assert!(stalled.ack(&[Offset(0)]).is_err());
    other.ack(&[Offset(0)]).unwrap();
    store.close().unwrap();
}

/// One lock for a data directory, taken by the store itself: a second store on the same
/// directory (here in the same process; a second broker is the same case) is refused at once,
/// and the directory is free again once the first store is dropped.
#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    match Store::builder(dir.path()).no_upkeep().open() {
        Err(sluice_storage::Error::Locked { lock, .. }) => {
            assert_eq!(lock, dir.path().join("LOCK"));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    first.close().unwrap();
    drop(first);
    let again = open(dir.path());
    again.close().unwrap();
}

#[test]
fn the_simulated_file_system_models_the_lock_and_a_crash_releases_it() {
    use sluice_storage::fs::sim::{CrashMode, SimFs};
    let sim = SimFs::new();
    let fs: sluice_storage::FsRef = std::sync::Arc::new(sim.clone());
    let first = Store::builder("/data")
        .fs(fs.clone())
        .no_upkeep()
        .open()
        .unwrap();
    assert!(matches!(
        Store::builder("/data").fs(fs.clone()).no_upkeep().open(),
        Err(sluice_storage::Error::Locked { .. })
    ));
    // A crash is the death of the process that held it.
    sim.crash(CrashMode::DropUnsynced);
    let after = Store::builder("/data").fs(fs).no_upkeep().open().unwrap();
    drop(first);
    drop(after);
}
