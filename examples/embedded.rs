//! Embedded use: the storage engine in-process, no server.
//!
//! Run with `cargo run --example embedded`.

use std::sync::Arc;

use sluice::storage::{ConsumerId, QueueConfig, Record, StartAt, StdFs, Store, StoreConfig};

fn main() -> Result<(), sluice::storage::Error> {
    let dir = std::env::temp_dir().join(format!("sluice-embedded-{}", std::process::id()));
    let store = Store::open(Arc::new(StdFs), &dir, StoreConfig::default())?;

    // A topic with a durable named subscriber.
    let orders = store.create_topic("orders", None)?;
    let info = orders.publish(&[Record::from_value("order 1"), Record::from_value("order 2")])?;
    let from = orders.subscribe("billing", StartAt::Earliest)?;
    for (offset, record) in orders.log().read_records(from, 100, 1 << 20)? {
        println!(
            "billing reads {offset}: {}",
            String::from_utf8_lossy(&record.value)
        );
    }
    orders.commit("billing", info.next_offset())?;

    // A queue with competing consumers and acks.
    let jobs = store.create_queue("jobs", QueueConfig::default())?;
    jobs.publish(&[Record::from_value("resize image")])?;
    let worker = ConsumerId(1);
    for d in jobs.deliver(worker, 10)? {
        println!("worker got job {} (attempt {})", d.offset, d.attempt);
        jobs.ack(worker, &[d.offset])?;
    }

    store.close()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
