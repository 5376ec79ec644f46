//! The upkeep thread of an embedded store: it returns messages whose ack deadline or nack
//! delay passed (so a consumer that died or stalled does not keep them) and applies retention,
//! without the program calling anything. The server runs its own timers instead.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::error::Result;

use super::background::{Background, Stop};
use super::inner::StoreInner;
use super::Queue;

/// Periods of the upkeep thread.
#[derive(Clone, Copy, Debug)]
pub(super) struct UpkeepSettings {
    pub(super) every: Duration,
    pub(super) retention_every: Duration,
}

/// Starts the upkeep thread of a store.
pub(super) fn start(inner: &Arc<StoreInner>, s: UpkeepSettings) -> Result<Background> {
    Background::start("sluice-upkeep", inner, move |weak, stop| run(weak, stop, s))
}

fn run(weak: Weak<StoreInner>, stop: Stop, s: UpkeepSettings) {
    let mut last_retention = Instant::now();
    loop {
        if stop.wait(s.every) {
            return;
        }
        let Some(inner) = weak.upgrade() else { return };
        if inner.check_open().is_err() {
            return;
        }
        for q in queues(&inner) {
            if let Err(e) = q.expire() {
                tracing::warn!(queue = q.name(), "returning expired deliveries failed: {e}");
            }
        }
        if last_retention.elapsed() >= s.retention_every {
            last_retention = Instant::now();
            retention(&inner);
        }
    }
}

/// Every open queue and every partition's queue of every open consumer group of every open
/// topic.
fn queues(inner: &StoreInner) -> Vec<Arc<Queue>> {
    let mut all = inner.queues.open_values();
    for t in inner.topics.open_values() {
        for g in t.groups.open_values() {
            all.extend(g.partitions());
        }
    }
    all
}

fn retention(inner: &StoreInner) {
    let logs = inner
        .topics
        .open_values()
        .into_iter()
        .flat_map(|t| {
            let name = t.name().to_string();
            let logs = t.logs();
            let many = logs.len() > 1;
            logs.into_iter().enumerate().map(move |(p, l)| {
                let n = if many {
                    format!("{name}/{p}")
                } else {
                    name.clone()
                };
                (n, l)
            })
        })
        .chain(
            inner
                .queues
                .open_values()
                .into_iter()
                .map(|q| (q.name().to_string(), q.log().clone())),
        );
    for (name, log) in logs {
        match log.enforce_retention() {
            Ok(0) => {}
            Ok(n) => tracing::info!(%name, segments = n, "retention deleted segments"),
            Err(e) => tracing::warn!(%name, "retention failed: {e}"),
        }
    }
}
