//! A dead-lettering that fails (its dead-letter queue cannot take the message: a full disk)
//! returns the message to be tried again, and never costs the other messages of the same
//! delivery round: they are handed out with the attempt they were journaled with.

use std::sync::Arc;

use sluice_storage::fs::sim::{Fault, FaultError, OpKind, SimFs};
use sluice_storage::{
    ConsumerId, FsRef, ManualClock, Offset, QueueConfig, Record, Store, StoreConfig,
};

const A: ConsumerId = ConsumerId(1);
const B: ConsumerId = ConsumerId(2);

#[test]
fn a_failed_dead_lettering_does_not_cost_the_rest_of_the_round() {
    let sim = SimFs::new();
    let fs: FsRef = Arc::new(sim.clone());
    let clock = Arc::new(ManualClock::new(0));
    let s = Store::open_with_clock(fs, "/data", StoreConfig::default(), clock.clone()).unwrap();
    let cfg = QueueConfig {
        max_deliveries: 1,
        ..QueueConfig::default()
    };
    let q = s.create_queue("jobs", cfg).unwrap();
    q.publish(&[Record::from_value("poison")]).unwrap();
    assert_eq!(q.deliver(A, 1).unwrap().len(), 1);
    q.release(A); // offset 0 is back, at its delivery bound
    let fresh: Vec<Record> = (1..4)
        .map(|i| Record::from_value(format!("m{i}")))
        .collect();
    q.publish(&fresh).unwrap();
    // The dead-letter queue's disk is full from now on; the queue's own journal still writes.
    let dlq_dir = std::path::Path::new("/data/queues/jobs.dlq/log");
    assert!(!sluice_storage::FileSystem::exists(&sim, dlq_dir));
    s.queue("jobs.dlq").unwrap(); // made by its first lookup
    assert!(sluice_storage::FileSystem::exists(&sim, dlq_dir));
    sim.add_fault(Fault {
        kind: OpKind::Write,
        nth: sim.count(OpKind::Write) + 2,
        forever: true,
        error: FaultError::NoSpace,
    });
    let round = q.deliver(B, 10);
    sim.clear_faults();
    let got: Vec<(u64, u32)> = round
        .expect("the round is delivered despite the failed dead letter")
        .iter()
        .map(|d| (d.offset.0, d.attempt))
        .collect();
    assert_eq!(got, vec![(1, 1), (2, 1), (3, 1)]);
    // The poison message is dead-lettered at the next try, once the disk has room.
    assert_eq!(q.expire().unwrap(), 1);
    // The refused append stayed queued in the direct-write buffer and is written once the disk
    // has room (docs/reliability.md, "Direct writes"): the letter may be there twice, never
    // lost, and the queue settles it once.
    let dlq = s.queue("jobs.dlq").unwrap();
    let letters = dlq.log().read_records(Offset(0), 10, 1 << 20).unwrap();
    assert!((1..=2).contains(&letters.len()), "{letters:?}");
    assert!(letters.iter().all(|(_, r)| r.value == b"poison"));
    assert_eq!(q.stats().dead_lettered, 1);
    q.ack(B, &[Offset(1), Offset(2), Offset(3)]).unwrap();
    assert_eq!(q.stats().ack_floor, Offset(4));
}
