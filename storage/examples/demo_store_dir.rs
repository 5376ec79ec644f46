//! Writes a small data directory through `Store`, as the broker lays it out, to try
//! `sluice inspect` on topic and queue state (the examples of "Topics, queues and their state" in
//! `docs/operations.md` come from it):
//!
//! - topic `orders`: 24 records over 1 KiB segments, retention 1 MiB / 7 days, named subscribers
//!   `billing` (committed 20) and `audit` (committed 6), consumer group `shipping` that acked
//!   0..8 and holds 8 and 9 in flight;
//! - queue `jobs` (`max_deliveries` 2): 10 messages; 0, 1, 3 and 7 acked, 2 dead-lettered after
//!   two deliveries, 4 and 6 in flight once, 5 in flight for the second time;
//! - queue `jobs.dlq` holding the dead letter.
//!
//! Everything is closed cleanly, so the state is in the snapshots (pass `--no-close` to stop
//! without closing, as a crash would, leaving it in the journals).
//!
//! ```sh
//! cargo run -p sluice-storage --example demo_store_dir -- /tmp/sluice-demo
//! ```

use std::sync::Arc;

use sluice_storage::{
    ConsumerId, Header, LogConfig, Offset, QueueConfig, Record, StartAt, StdFs, Store, StoreConfig,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let root = args
        .next()
        .ok_or("usage: demo_store_dir <new data directory> [--no-close]")?;
    let close = args.next().as_deref() != Some("--no-close");
    // Absolute: the store fsyncs the parent of the data directory when it creates it.
    let root = std::env::current_dir()?.join(root);
    if root.exists() {
        return Err(format!("{} exists already", root.display()).into());
    }
    let log = LogConfig {
        segment_bytes_max: 1024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    };
    let store = Store::open(
        Arc::new(StdFs),
        &root,
        StoreConfig {
            default_log: log.clone(),
            ..Default::default()
        },
    )?;
    // Timestamped now (by the log), so that the 7-day retention of `orders` keeps everything.
    let record = |i: u64, what: &str| Record {
        timestamp_ms: None,
        key: Some(format!("customer-{}", i % 5).into_bytes()),
        headers: vec![Header::new("content-type", "text/plain")],
        value: format!("{what} {i}").into_bytes(),
    };

    let orders = store.create_topic(
        "orders",
        Some(LogConfig {
            retention_bytes: Some(1 << 20),
            retention_ms: Some(7 * 24 * 3600 * 1000),
            ..log.clone()
        }),
    )?;
    for i in 0..12u64 {
        orders.publish(&[record(2 * i, "order"), record(2 * i + 1, "order")])?;
    }
    orders.subscribe("billing", StartAt::Earliest)?;
    orders.commit("billing", 0, Offset(20), &[])?;
    orders.subscribe("audit", StartAt::Earliest)?;
    orders.commit("audit", 0, Offset(6), &[])?;
    let shipping = orders.group("shipping", QueueConfig::default())?.queue(0)?;
    let c = ConsumerId(1);
    shipping.deliver(c, 10)?;
    shipping.ack(c, &(0..8).map(Offset).collect::<Vec<_>>())?;

    let jobs = store.create_queue(
        "jobs",
        QueueConfig {
            log,
            max_deliveries: 2,
            ..QueueConfig::default()
        },
    )?;
    for i in 0..5u64 {
        jobs.publish(&[record(2 * i, "job"), record(2 * i + 1, "job")])?;
    }
    jobs.deliver(c, 6)?; // 0..6, first delivery
    jobs.ack(c, &[Offset(0), Offset(1), Offset(3)])?;
    jobs.nack(c, &[Offset(2)], 0)?;
    jobs.deliver(c, 1)?; // 2, second delivery
    jobs.nack(c, &[Offset(2)], 0)?; // two deliveries: dead-lettered
    jobs.nack(c, &[Offset(5)], 0)?;
    jobs.deliver(c, 1)?; // 5, second delivery
    jobs.deliver(c, 2)?; // 6 and 7
    jobs.ack(c, &[Offset(7)])?;

    if close {
        store.close()?;
    } else {
        std::mem::forget(store);
    }
    println!("wrote {}", root.display());
    Ok(())
}
