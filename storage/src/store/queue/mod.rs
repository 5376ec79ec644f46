//! A queue: a log, a shared cursor and ack state. Also a consumer group on a topic.

mod dead_letter;
mod deliver;
mod read;
mod replica;
mod settle;
mod state;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use crate::ackstate::{AckState, ACK_MAGIC, ACK_PREFIX};
use crate::error::{Error, Result};
use crate::fs::FsRef;
use crate::journal::{self, Journal};
use crate::log::{AppendInfo, Log};
use crate::types::{Offset, Record, TimestampMs};

use super::inner::StoreInner;
use super::{lock, ClockRef, QueueConfig, Topic};

pub use dead_letter::{dead_letter_headers, DeadLetterReason};
pub use deliver::delivery_bytes;
use read::ReadCache;
pub use read::READ_CACHE_BYTES_MAX;
pub use replica::QueueReplicator;
use replica::Replica;
pub use settle::{Acked, Pending};
use state::QState;

/// Identifies one consumer of a queue (for example one connection's consume call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerId(pub u64);

/// A message handed to one consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The partition of the group's topic it is from (0 for a queue).
    pub partition: u32,
    /// Its offset in the queue's log (the partition's, for a group).
    pub offset: Offset,
    /// 1 for the first delivery, 2 for the first redelivery, ...
    pub attempt: u32,
    /// The message.
    pub record: Record,
}

/// Figures of a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStats {
    /// First offset held.
    pub start_offset: Offset,
    /// One past the last visible offset.
    pub end_offset: Offset,
    /// Every offset below it is acknowledged.
    pub ack_floor: Offset,
    /// Next never-delivered offset.
    pub cursor: Offset,
    /// Acknowledged offsets above the floor.
    pub acked_above_floor: u64,
    /// Messages not yet acknowledged (delivered or not).
    pub depth: u64,
    /// Delivered and not yet acked.
    pub in_flight: u64,
    /// Messages moved to the dead-letter queue since creation.
    pub dead_lettered: u64,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Delivered before, returned (nack, expiry, a consumer gone) and waiting to be delivered
    /// again now.
    pub redelivery_ready: u64,
    /// Returned with a delay (nack with a delay) and waiting it out.
    pub delayed: u64,
    /// Consumers holding at least one message.
    pub consumers_holding: u64,
    /// Deliveries of a message delivered before (attempt 2 and up), since the queue opened.
    pub redelivered: u64,
}

/// Snapshot the ack state once its journal grows past this many bytes (4 MiB by default).
pub(in crate::store) static ACK_SNAPSHOT_BYTES: AtomicU64 = AtomicU64::new(4 << 20);

/// Sets the journal size that triggers an ack-state snapshot, for every queue of the process.
/// Tests lower it to exercise snapshots; the default is 4 MiB.
#[doc(hidden)]
pub fn set_ack_snapshot_bytes(bytes: u64) {
    ACK_SNAPSHOT_BYTES.store(bytes, Ordering::Relaxed);
}

pub(in crate::store) fn ack_snapshot_bytes() -> u64 {
    ACK_SNAPSHOT_BYTES.load(Ordering::Relaxed)
}

pub(in crate::store) struct QueueParts {
    pub(in crate::store) fs: FsRef,
    pub(in crate::store) dir: PathBuf,
    pub(in crate::store) name: String,
    pub(in crate::store) source: String,
    pub(in crate::store) default_dlq: String,
    pub(in crate::store) config: QueueConfig,
    pub(in crate::store) log: Log,
    pub(in crate::store) owns_log: bool,
    /// The partition of the parent topic whose log this is (0 for a queue).
    pub(in crate::store) partition: u32,
    pub(in crate::store) parent: Option<Weak<Topic>>,
    pub(in crate::store) store: Weak<StoreInner>,
    pub(in crate::store) clock: ClockRef,
}

/// A queue: a log, a shared cursor and ack state. Also a consumer group on a topic.
pub struct Queue {
    pub(in crate::store) name: String,
    /// `name` for a queue, `<topic>/<group>` for a group (the `x-original-queue` of dead letters).
    pub(in crate::store) source: String,
    pub(in crate::store) dlq_name: String,
    pub(in crate::store) dir: PathBuf,
    pub(in crate::store) log: Log,
    pub(in crate::store) owns_log: bool,
    pub(in crate::store) partition: u32,
    pub(in crate::store) config: QueueConfig,
    pub(in crate::store) journal: Arc<Journal>,
    pub(in crate::store) state: Mutex<QState>,
    pub(in crate::store) parent: Option<Weak<Topic>>,
    pub(in crate::store) store: Weak<StoreInner>,
    pub(in crate::store) clock: ClockRef,
    /// The ack floor as of the last journal sync or snapshot: segments below it may go.
    pub(in crate::store) synced_floor: AtomicU64,
    pub(in crate::store) last_sync: AtomicI64,
    /// Batches read lately (see [`ReadCache`]).
    pub(in crate::store) read_cache: Mutex<ReadCache>,
    /// Set when a delivery was held back by `max_unacked`, cleared by
    /// [`Queue::take_held_back`]: only then may an ack have room for another consumer.
    pub(in crate::store) held_back: AtomicBool,
    /// Deliveries of a message delivered before, since the queue was opened.
    pub(in crate::store) redelivered: AtomicU64,
    /// In a cluster: the queue's replicated log ([`Queue::replicate`]).
    pub(in crate::store) replica: OnceLock<Replica>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("name", &self.source).finish()
    }
}

impl Queue {
    pub(in crate::store) fn open(p: QueueParts) -> Result<Queue> {
        let (journal, l) = Journal::open(p.fs.clone(), &p.dir, ACK_PREFIX, ACK_MAGIC)?;
        let start = p.log.start_offset().0;
        let mut ack = AckState::recover(&p.dir, l.snapshot.as_deref(), &l.records, start)?;
        let end = p.log.end_offset().0;
        let mut changed = ack.clamp(end);
        if changed {
            tracing::warn!(dir = %p.dir.display(), "ack state was past the log end {end}: clamped");
        }
        if ack.acks.floor() < start {
            // Messages the log no longer holds (retention) count as gone.
            ack.raise_floor(start);
            changed = true;
        }
        let mut st = QState {
            ack,
            ..QState::default()
        };
        // Every delivered, unacked message is available again at once.
        let (f, c) = (st.ack.acks.floor(), st.ack.cursor);
        st.ready = (f..c).filter(|&o| !st.ack.acks.contains(o)).collect();
        let floor = st.ack.acks.floor();
        if changed
            || journal.since_snapshot() > ack_snapshot_bytes()
            || journal.version() < journal::STATE_VERSION
        {
            // Journal records about offsets the log lost must never be replayed again, and
            // run records go only into a journal whose header says they may be there.
            journal.snapshot(&st.ack.encode_snapshot())?;
        }
        let dlq_name = p.config.dead_letter.clone().unwrap_or(p.default_dlq);
        let journal = Arc::new(journal);
        if let Some(every) = p.log.config().fsync.interval() {
            journal.spawn_flusher(every);
        }
        Ok(Queue {
            name: p.name,
            source: p.source,
            dlq_name,
            dir: p.dir,
            log: p.log,
            owns_log: p.owns_log,
            partition: p.partition,
            config: p.config,
            journal,
            state: Mutex::new(st),
            parent: p.parent,
            store: p.store,
            last_sync: AtomicI64::new(p.clock.now_ms()),
            clock: p.clock,
            synced_floor: AtomicU64::new(floor),
            read_cache: Mutex::new(ReadCache::default()),
            held_back: AtomicBool::new(false),
            redelivered: AtomicU64::new(0),
            replica: OnceLock::new(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its log.
    pub fn log(&self) -> &Log {
        &self.log
    }
    /// The partition of its topic that it consumes (0 for a queue, which has one log).
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Its settings.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }
    /// Its state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Name of its dead-letter queue.
    pub fn dlq_name(&self) -> &str {
        &self.dlq_name
    }
    /// Appends records (durable per the fsync policy on return).
    pub fn publish(&self, records: &[Record]) -> Result<AppendInfo> {
        if self.is_replicated() {
            return Err(Error::InvalidArgument(format!(
                "queue {} is replicated: publish through its replicated log",
                self.source
            )));
        }
        self.log.append(records)
    }

    /// The state, locked for a change: refused when the queue is closed, its journal failed,
    /// or, on a replicated queue, when this node does not lead it.
    pub(in crate::store) fn lock_open(&self) -> Result<MutexGuard<'_, QState>> {
        let mut g = lock(&self.state);
        if g.closed {
            return Err(Error::Closed);
        }
        self.journal.check()?;
        self.check_leading(&mut g)?;
        Ok(g)
    }

    pub(in crate::store) fn max_deliveries_reached(&self, attempts: u32) -> bool {
        self.config.max_deliveries > 0 && attempts >= self.config.max_deliveries
    }

    /// The earliest ack deadline or nack delay pending, to schedule the next `expire`.
    pub fn next_deadline(&self) -> Option<TimestampMs> {
        let mut st = lock(&self.state);
        while let Some(&(t, o)) = st.deadlines.first() {
            if st.live_deadline(t, o) {
                break;
            }
            st.deadlines.pop_first();
        }
        let a = st.deadlines.first().map(|d| d.0);
        let b = st.delayed.first().map(|d| d.0);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Messages held by a consumer (delivered to it, not acked).
    pub fn held_by(&self, consumer: ConsumerId) -> Vec<Offset> {
        let st = lock(&self.state);
        let mut v: Vec<Offset> = st
            .by_consumer
            .get(&consumer)
            .map(|s| s.iter().map(|&o| Offset(o)).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Figures.
    pub fn stats(&self) -> QueueStats {
        let st = lock(&self.state);
        let end = self.log.visible_end();
        let floor = st.ack.acks.floor();
        let above = st.ack.acks.above();
        QueueStats {
            start_offset: self.log.start_offset(),
            end_offset: end,
            ack_floor: Offset(floor),
            cursor: Offset(st.ack.cursor),
            acked_above_floor: above,
            depth: end.0.saturating_sub(floor).saturating_sub(above),
            in_flight: st.inflight.len() as u64,
            dead_lettered: st.ack.dead_lettered,
            size_bytes: if self.owns_log {
                self.log.size_bytes()
            } else {
                0
            },
            redelivery_ready: st.ready.len() as u64,
            delayed: st.delayed.len() as u64,
            consumers_holding: st.by_consumer.values().filter(|h| !h.is_empty()).count() as u64,
            redelivered: self.redelivered.load(Ordering::Relaxed),
        }
    }

    /// The files this queue holds open: its log's (when it owns it) and its ack journal.
    pub fn open_files(&self) -> usize {
        1 + if self.owns_log {
            self.log.open_files()
        } else {
            0
        }
    }

    /// True when closing the queue now changes nothing for anyone: nothing is in flight or
    /// waiting out a nack delay (both live only in memory), and no one else holds its log.
    pub(in crate::store) fn can_close(&self) -> bool {
        let settled = {
            let st = lock(&self.state);
            !st.closed && st.inflight.is_empty() && st.delayed.is_empty()
        };
        settled && (!self.owns_log || self.log.handles() == 1)
    }

    /// Syncs the ack journal whatever the policy.
    pub fn flush(&self) -> Result<()> {
        self.journal.flush()
    }

    /// Stops the queue; with `clean`, first writes a snapshot so the next open replays nothing.
    pub(in crate::store) fn shut(&self, clean: bool) -> Result<()> {
        let mut first = Ok(());
        {
            let mut st = lock(&self.state);
            if st.closed {
                return Ok(());
            }
            self.journal.stop();
            if clean {
                first = self.journal.snapshot(&self.snapshot_state(&st));
            }
            st.closed = true;
        }
        if self.owns_log {
            let r = self.log.close();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    pub(in crate::store) fn close(&self) -> Result<()> {
        self.shut(true)
    }
}
