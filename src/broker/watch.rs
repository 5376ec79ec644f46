//! Log watchers (the fan-out of a log's one append listener), queue event notifies, and the
//! retention ticker.

use std::sync::Arc;
use std::time::Duration;

use sluice_storage::{Log, Offset, Topic};
use tokio::sync::{watch, Notify};
use tokio::task::spawn_blocking;
use tracing::{info, warn};

use super::Broker;

/// The fan-out of the append listeners of a queue's log or of a topic's partition logs: the
/// address of the topic or queue they were registered for, the channel (a queue's visible end;
/// for a topic a counter bumped by an append to any partition), and how many logs feed it.
pub(super) type LogWatch = (usize, Arc<watch::Sender<u64>>, u32);

impl Broker {
    /// A receiver of the visible end of `log`, the log of the topic or queue at address `ptr`
    /// registered under `key` (`t/<topic>` or `q/<queue>`). A log has one listener: the first
    /// watcher registers it, later ones share it; a recreated topic or queue (another address)
    /// gets a new one.
    pub fn watch_log(&self, key: String, ptr: usize, log: &Log) -> watch::Receiver<u64> {
        let mut m = self.watches.lock().unwrap();
        if let Some((p, tx, _)) = m.get(&key) {
            if *p == ptr {
                return tx.subscribe();
            }
        }
        let (tx, rx) = watch::channel(log.visible_end().0);
        let tx = Arc::new(tx);
        let weak = Arc::downgrade(&tx);
        log.set_listener(Arc::new(move |end: Offset| {
            if let Some(tx) = weak.upgrade() {
                tx.send_replace(end.0);
            }
        }));
        m.insert(key, (ptr, tx, 1));
        rx
    }

    /// A receiver that changes whenever any partition of `topic` makes messages visible (its
    /// value is a counter): the listener of every partition log feeds it, including partitions
    /// added since the last call. Keyed `t/<topic>`; a recreated topic gets a new one.
    pub fn watch_topic(&self, topic: &Arc<Topic>) -> watch::Receiver<u64> {
        let key = format!("t/{}", topic.name());
        let ptr = Arc::as_ptr(topic) as usize;
        let logs = topic.logs();
        let mut m = self.watches.lock().unwrap();
        let entry = match m.get_mut(&key) {
            Some(e) if e.0 == ptr => e,
            _ => {
                let (tx, _) = watch::channel(0u64);
                m.insert(key.clone(), (ptr, Arc::new(tx), 0));
                m.get_mut(&key).expect("just inserted")
            }
        };
        for log in logs.iter().skip(entry.2 as usize) {
            let weak = Arc::downgrade(&entry.1);
            log.set_listener(Arc::new(move |_: Offset| {
                if let Some(tx) = weak.upgrade() {
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            }));
        }
        entry.2 = entry.2.max(logs.len() as u32);
        entry.1.subscribe()
    }

    /// Drops a log's listener fan-out: its watchers see the channel close and end.
    pub(super) fn forget(&self, key: &str) {
        self.watches.lock().unwrap().remove(key);
    }

    /// The notify that wakes the consumers of a queue (`q/<queue>`) or group
    /// (`g/<topic>/<group>`) when messages return to it.
    pub fn queue_events(&self, key: &str) -> Arc<Notify> {
        self.queue_events
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// Applies time- and size-based retention to every topic and queue every `every`, forever
    /// (abort the task to stop it).
    pub async fn run_retention(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let s = self.clone();
            let _ = spawn_blocking(move || s.enforce_retention()).await;
        }
    }

    /// One retention pass over every open topic and queue (a closed one gets its retention
    /// when it next opens: it takes no appends meanwhile). Blocking.
    fn enforce_retention(&self) {
        let mut logs = Vec::new();
        for t in self.store.open_topics() {
            for (p, log) in t.logs().into_iter().enumerate() {
                logs.push((format!("{}/{p}", t.name()), log));
            }
        }
        for q in self.store.open_queues() {
            logs.push((q.name().to_string(), q.log().clone()));
        }
        for (name, log) in logs {
            match log.enforce_retention() {
                Ok(0) => {}
                Ok(n) => info!(%name, segments = n, "retention deleted segments"),
                Err(e) => warn!(%name, "retention failed: {e}"),
            }
        }
    }
}
