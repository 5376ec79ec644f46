//! Acks and nacks settle only what the acking consumer holds: never a message another consumer
//! is working on, one never delivered, or one the queue took back to redeliver or dead-letter.
//! So a message is never both acknowledged and dead-lettered.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use sluice_storage::fs::sim::SimFs;
use sluice_storage::store::dead_letter_headers as dlh;
use sluice_storage::{
    ConsumerId, Error, FsRef, ManualClock, Offset, QueueConfig, Record, Store, StoreConfig,
};

const A: ConsumerId = ConsumerId(1);
const B: ConsumerId = ConsumerId(2);
const C: ConsumerId = ConsumerId(3);

fn open(clock: &Arc<ManualClock>) -> Store {
    let fs: FsRef = Arc::new(SimFs::new());
    Store::open_with_clock(fs, "/data", StoreConfig::default(), clock.clone()).unwrap()
}

fn offsets(ds: &[sluice_storage::Delivery]) -> Vec<u64> {
    ds.iter().map(|d| d.offset.0).collect()
}

fn not_held(r: sluice_storage::Result<()>) -> Vec<Offset> {
    match r {
        Err(Error::NotHeld { offsets }) => offsets,
        other => panic!("expected NotHeld, got {other:?}"),
    }
}

#[test]
fn an_ack_settles_only_messages_the_consumer_holds() {
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&clock);
    let q = s.create_queue("jobs", QueueConfig::default()).unwrap();
    let recs: Vec<Record> = (0..6)
        .map(|i| Record::from_value(format!("m{i}")))
        .collect();
    q.publish(&recs).unwrap();
    assert_eq!(offsets(&q.deliver(A, 2).unwrap()), vec![0, 1]);
    assert_eq!(offsets(&q.deliver(B, 2).unwrap()), vec![2, 3]);
    // B acks A's message, its own, and one never delivered: only its own counts.
    let refused = not_held(q.ack(B, &[Offset(0), Offset(2), Offset(5)]));
    assert_eq!(refused, vec![Offset(0), Offset(5)]);
    assert_eq!(q.held_by(A), vec![Offset(0), Offset(1)]);
    assert_eq!(q.held_by(B), vec![Offset(3)]);
    // A dies: both of its messages go to the next consumer, B's ack notwithstanding.
    q.release(A);
    let again: Vec<(u64, u32)> = q
        .deliver(C, 10)
        .unwrap()
        .iter()
        .map(|d| (d.offset.0, d.attempt))
        .collect();
    assert_eq!(again, vec![(0, 2), (1, 2), (4, 1), (5, 1)]);
    // A nack of a message held by someone else is refused the same way.
    assert_eq!(not_held(q.nack(B, &[Offset(4)], 0)), vec![Offset(4)]);
    assert_eq!(q.held_by(C).len(), 4);
    q.ack(C, &[Offset(0), Offset(1), Offset(4), Offset(5)])
        .unwrap();
    q.ack(B, &[Offset(3)]).unwrap();
    assert_eq!(q.stats().ack_floor, Offset(6));
}

#[test]
fn a_message_taken_back_for_dead_lettering_cannot_be_acked() {
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&clock);
    let cfg = QueueConfig {
        ack_timeout_ms: 100,
        max_deliveries: 1,
        ..QueueConfig::default()
    };
    let q = s.create_queue("jobs", cfg).unwrap();
    q.publish(&[Record::from_value("poison")]).unwrap();
    assert_eq!(offsets(&q.deliver(A, 1).unwrap()), vec![0]);
    clock.advance(200);
    assert_eq!(q.expire().unwrap(), 1);
    assert_eq!(s.queue("jobs.dlq").unwrap().stats().end_offset, Offset(1));
    // The late ack is not confirmed: the message is in the dead-letter queue.
    assert_eq!(not_held(q.ack(A, &[Offset(0)])), vec![Offset(0)]);
}

/// A late ack racing the expiry that dead-letters the same messages: every message ends either
/// acknowledged (and the ack confirmed) or dead-lettered (and the ack refused), never both.
#[test]
fn racing_late_acks_and_dead_letters_never_settle_a_message_twice() {
    const N: u64 = 40;
    let mut both_seen = 0;
    for trial in 0..60 {
        let clock = Arc::new(ManualClock::new(0));
        let s = Arc::new(open(&clock));
        let cfg = QueueConfig {
            ack_timeout_ms: 10,
            max_deliveries: 1,
            ..QueueConfig::default()
        };
        let q = s.create_queue("jobs", cfg).unwrap();
        let recs: Vec<Record> = (0..N)
            .map(|i| Record::from_value(format!("m{i}")))
            .collect();
        q.publish(&recs).unwrap();
        assert_eq!(q.deliver(A, N as usize).unwrap().len(), N as usize);
        clock.advance(20);
        let go = Arc::new(Barrier::new(2));
        let expirer = {
            let (q, go) = (q.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                q.expire().unwrap()
            })
        };
        go.wait();
        // Land the ack at different points of the expiry, from before it to after it.
        let wait = std::time::Duration::from_micros(trial % 30 * 4);
        let t0 = std::time::Instant::now();
        while t0.elapsed() < wait {
            std::hint::spin_loop();
        }
        let all: Vec<Offset> = (0..N).map(Offset).collect();
        let refused: BTreeSet<u64> = match q.ack(A, &all) {
            Ok(()) => BTreeSet::new(),
            Err(Error::NotHeld { offsets }) => offsets.iter().map(|o| o.0).collect(),
            Err(e) => panic!("trial {trial}: {e}"),
        };
        expirer.join().unwrap();
        let dlq = s.queue("jobs.dlq").unwrap();
        let dead: BTreeSet<u64> = dlq
            .log()
            .read_records(Offset(0), 1000, 1 << 20)
            .unwrap()
            .iter()
            .map(|(_, r)| {
                let h = r
                    .headers
                    .iter()
                    .find(|h| h.name == dlh::ORIGINAL_OFFSET.as_bytes())
                    .expect("original offset header");
                String::from_utf8_lossy(&h.value).parse().unwrap()
            })
            .collect();
        both_seen += dead.difference(&refused).count();
        assert_eq!(
            dead, refused,
            "trial {trial}: dead-lettered and refused acks must be the same messages"
        );
        let st = q.stats();
        assert_eq!(st.ack_floor, Offset(N), "trial {trial}: all settled");
    }
    assert_eq!(both_seen, 0);
}
