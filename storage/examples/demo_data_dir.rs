//! Writes a small data directory to try `sluice inspect` and `sluice repair` on (the examples in
//! `docs/operations.md` come from it): a topic `orders` over a few small segments and a queue
//! `jobs`, both closed cleanly.
//!
//! ```sh
//! cargo run -p sluice-storage --example demo_data_dir -- /tmp/sluice-demo
//! ```

use std::sync::Arc;

use sluice_storage::{Header, Log, LogConfig, Record, StdFs};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::args()
        .nth(1)
        .ok_or("usage: demo_data_dir <new data directory>")?;
    let root = std::path::PathBuf::from(root);
    if root.exists() {
        return Err(format!("{} exists already", root.display()).into());
    }
    let cfg = LogConfig {
        segment_bytes_max: 1024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    };
    let t0 = 1_764_000_000_000; // 2025-11-24T16:00:00Z
    for (dir, n) in [("topics/orders", 12u64), ("queues/jobs", 3)] {
        let log = Log::open(Arc::new(StdFs), root.join(dir), cfg.clone())?;
        for i in 0..n {
            let batch: Vec<Record> = (0..2)
                .map(|j| Record {
                    timestamp_ms: Some(t0 + (i * 2 + j) as i64 * 1000),
                    key: Some(format!("customer-{}", (i * 2 + j) % 5).into_bytes()),
                    headers: vec![Header::new("content-type", "text/plain")],
                    value: format!("order {} of {dir}", i * 2 + j).into_bytes(),
                })
                .collect();
            log.append(&batch)?;
        }
        log.close()?;
    }
    println!("wrote {}", root.display());
    Ok(())
}
