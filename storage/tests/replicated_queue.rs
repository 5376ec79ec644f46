//! A replicated queue's replica, as a follower applies its committed entries: control entries
//! ahead of the cursor are acked as they are applied, so the ack floor may pass the cursor;
//! the committed state written for a compaction (`Queue::persist_committed`) must then still
//! be a state the queue opens from, and it must survive a power loss that drops everything
//! applied without a sync.

use std::sync::Arc;

use sluice_storage::ackstate::{encode_deliver, encode_floor, encode_offsets, REC_ACK};
use sluice_storage::format::encode_control_batch;
use sluice_storage::fs::sim::{CrashMode, SimFs};
use sluice_storage::{
    Error, FsRef, ManualClock, QueueConfig, QueueReplicator, Record, Result, Store, StoreConfig,
};

/// A replica that never leads: it only applies what the cluster committed.
struct Follower;

impl QueueReplicator for Follower {
    fn leading(&self) -> Result<u64> {
        Err(Error::NotLeader("a follower".into()))
    }
    fn still_leading(&self, _generation: u64) -> bool {
        false
    }
    fn propose(&self, _generation: u64, _records: Vec<u8>) -> Result<u64> {
        Err(Error::NotLeader("a follower".into()))
    }
    fn wait(&self, _first: u64, _last: u64) -> Result<()> {
        Err(Error::NotLeader("a follower".into()))
    }
    fn dead_letters(&self, _queue: &str, _records: &[Record]) -> Result<()> {
        Err(Error::NotLeader("a follower".into()))
    }
}

fn open(fs: &Arc<SimFs>) -> Store {
    let fs: FsRef = fs.clone();
    let clock = Arc::new(ManualClock::new(0));
    Store::open_with_clock(fs, "/data", StoreConfig::default(), clock).unwrap()
}

#[test]
fn a_compacted_followers_state_reopens_after_a_power_loss() {
    let fs = Arc::new(SimFs::new());
    let store = open(&fs);
    let q = store.create_queue("jobs", QueueConfig::default()).unwrap();
    // Messages at offsets 0 to 2, then control entries at 3 to 5, as the replicated log would
    // have stored them.
    let records: Vec<Record> = (0..3)
        .map(|i| Record::from_value(format!("m{i}")))
        .collect();
    q.log().append(&records).unwrap();
    for _ in 3..6 {
        let control = encode_control_batch(b"control", 0);
        q.log().append_replicated(control).unwrap();
    }
    q.log().flush().unwrap();
    q.replicate(Arc::new(Follower)).unwrap();

    // A control entry at 3 while nothing is delivered yet: it acks its own offset, ahead of
    // the cursor.
    let mut floor = Vec::new();
    encode_floor(&mut floor, 0);
    q.apply_replicated(3, &floor).unwrap();
    // The entry at 4 delivers and acks 0 to 2: the floor passes 3 and 4, beyond the cursor
    // the deliveries moved to 3.
    let mut change = Vec::new();
    encode_deliver(&mut change, &[(0, 1), (1, 1), (2, 1)]);
    encode_offsets(&mut change, REC_ACK, &[0, 1, 2]);
    q.apply_replicated(4, &change).unwrap();
    assert_eq!(q.committed_floor(), Some(5));

    // A compaction stored at 5: its own offset acked, the state written durably.
    q.persist_committed(5).unwrap();
    let stats = q.stats();
    assert_eq!((stats.ack_floor.0, stats.depth), (6, 0), "{stats:?}");
    drop(q);

    // Power lost: only what was synced remains. The queue opens, from the written state.
    fs.crash(CrashMode::DropUnsynced);
    drop(store);
    let store = open(&fs);
    let q = store.queue("jobs").unwrap();
    let stats = q.stats();
    assert_eq!(
        (
            stats.ack_floor.0,
            stats.cursor.0,
            stats.depth,
            stats.in_flight
        ),
        (6, 6, 0, 0),
        "{stats:?}"
    );
}
