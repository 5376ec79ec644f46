//! Embedded use: the storage engine in-process, no server.
//!
//! Run with `cargo run --example embedded`.

use std::time::Duration;

use sluice::storage::{FsyncPolicy, QueueConfig, Record, StartAt, Store};

fn main() -> Result<(), sluice::storage::Error> {
    let dir = std::env::temp_dir().join(format!("sluice-embedded-{}", std::process::id()));
    // The builder starts the store's upkeep thread: deliveries whose ack deadline passes go back
    // to their queue, and retention runs, without the program calling anything.
    let store = Store::builder(&dir).fsync(FsyncPolicy::Always).open()?;

    // A topic with a durable named subscriber.
    let orders = store.create_topic("orders", None)?;
    orders.publish(&[Record::from_value("order 1"), Record::from_value("order 2")])?;
    let mut billing = orders.subscriber("billing", StartAt::Earliest)?;
    for (offset, record) in billing.poll_wait(100, 1 << 20, Duration::from_secs(1))? {
        println!(
            "billing reads {offset}: {}",
            String::from_utf8_lossy(&record.value)
        );
        billing.commit(offset)?; // resumes after this message, even after a restart
    }

    // A queue with competing consumers and acks. A consumer handle gives back what it holds
    // when dropped.
    let jobs = store.create_queue("jobs", QueueConfig::default())?;
    jobs.publish(&[Record::from_value("resize image")])?;
    let worker = jobs.consumer();
    for d in worker.receive_wait(10, Duration::from_secs(1))? {
        println!("worker got job {} (attempt {})", d.offset, d.attempt);
        worker.ack(&[d.offset])?;
    }

    store.close()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
