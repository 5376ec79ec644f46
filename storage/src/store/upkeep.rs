//! The upkeep thread of an embedded store: it returns messages whose ack deadline or nack
//! delay passed (so a consumer that died or stalled does not keep them) and applies retention,
//! without the program calling anything. The server runs its own timers instead.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

use super::inner::StoreInner;
use super::Queue;

/// Periods of the upkeep thread.
#[derive(Clone, Copy, Debug)]
pub(super) struct UpkeepSettings {
    pub(super) every: Duration,
    pub(super) retention_every: Duration,
}

/// A running upkeep thread; stopped (and joined) on drop.
#[derive(Debug)]
pub(super) struct Upkeep {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Upkeep {
    pub(super) fn start(inner: &Arc<StoreInner>, s: UpkeepSettings) -> Result<Upkeep> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let weak = Arc::downgrade(inner);
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-upkeep".into())
            .spawn(move || run(weak, flag, s))
            .map_err(|e| Error::io(&inner.root, e))?;
        Ok(Upkeep {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for its current pass to end.
    pub(super) fn stop(&mut self) {
        *self.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(weak: Weak<StoreInner>, stop: Arc<(Mutex<bool>, Condvar)>, s: UpkeepSettings) {
    let mut last_retention = Instant::now();
    loop {
        {
            let g = stop.0.lock().unwrap_or_else(|e| e.into_inner());
            let (g, _) = stop
                .1
                .wait_timeout_while(g, s.every, |stopped| !*stopped)
                .unwrap_or_else(|e| e.into_inner());
            if *g {
                return;
            }
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
