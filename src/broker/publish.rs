//! Publishing: the target's log, the append, and the durability wait (group commit), with the
//! permission to sync a small publish on the caller's own thread.

use std::sync::atomic::{AtomicBool, Ordering};

use sluice_storage::{Error as StoreError, FsyncPolicy, Log, Offset, Topic};

use super::types::{Route, Target};
use super::{Broker, BrokerError, ErrorKind, Result};

/// Largest publish appended and synced on the connection's own worker thread when the client
/// waits for each confirm. Handing a small publish to the blocking pool and its confirm back
/// costs thread wake-ups of tens of microseconds each on a small VM, a third of the whole
/// publish-to-confirm time. Doing it inline blocks one runtime worker for one small sync, so
/// it is done only when the runtime has another worker, by one connection at a time
/// ([`Broker::try_inline_sync`]), for a client with nothing else in flight or buffered;
/// everything else goes to the blocking pool and shares syncs (group commit). A large batch
/// gains little next to its write, and its client had better pipeline anyway.
pub const INLINE_SYNC_BATCH_BYTES_MAX: usize = 16 * 1024;

/// The offsets of a published batch (the partition is the caller's: see
/// [`Broker::resolve_target`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// First offset.
    pub base_offset: Offset,
    /// Last offset.
    pub last_offset: Offset,
}

/// The server-wide permission to sync on a worker thread, released on drop.
pub struct InlineSync<'a>(&'a AtomicBool);

impl Drop for InlineSync<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Broker {
    /// The partition and log a publish to `t` appends to: the partition `route` names, or
    /// for [`Route::Any`] the next partition in turn (round robin per batch; a queue's only
    /// log). A partition past the topic's count is `NotFound`; a route whose
    /// `expected_partitions` differs from the topic's count is `PartitionsChanged`.
    pub fn resolve_target(&self, t: &Target, route: Route) -> Result<(u32, Log)> {
        let queue = |q: std::sync::Arc<sluice_storage::Queue>| match route {
            Route::Partition { partition, .. } if partition != 0 => Err(BrokerError::new(
                ErrorKind::NotFound,
                format!("queue {:?} has one partition, 0, not {partition}", q.name()),
            )),
            _ => Ok((0, q.log().clone())),
        };
        match t {
            Target::Topic(n) => {
                let t = self.store.topic(n)?;
                self.topic_route(&t, route)
            }
            Target::Queue(n) => queue(self.store.queue(n)?),
            Target::Any(n) => match self.store.topic(n) {
                Ok(t) => self.topic_route(&t, route),
                Err(StoreError::NotFound { .. }) => match self.store.queue(n) {
                    Ok(q) => queue(q),
                    Err(StoreError::NotFound { .. }) => Err(BrokerError::new(
                        ErrorKind::NotFound,
                        format!("no topic or queue is named {n:?}"),
                    )),
                    Err(e) => Err(e.into()),
                },
                Err(e) => Err(e.into()),
            },
        }
    }

    fn topic_route(&self, t: &Topic, route: Route) -> Result<(u32, Log)> {
        let count = t.partition_count();
        let p = match route {
            Route::Any => {
                (self.next_partition.fetch_add(1, Ordering::Relaxed) % count as u64) as u32
            }
            Route::Partition {
                expected_partitions,
                ..
            } if expected_partitions != 0 && expected_partitions != count => {
                return Err(BrokerError::new(
                    ErrorKind::PartitionsChanged,
                    format!(
                        "topic {:?} has {count} partitions, not {expected_partitions}: \
                         refresh the partition count and choose again",
                        t.name()
                    ),
                ))
            }
            Route::Partition { partition, .. } => partition,
        };
        Ok((p, t.partition(p)?))
    }

    /// The log of partition `partition` of topic `topic`, or of queue `topic` (partition 0),
    /// for a frontend that publishes an already encoded batch to a chosen partition with
    /// [`publish`], or reads it.
    pub fn partition_log(&self, topic: &str, partition: u32) -> Result<Log> {
        match self.named_log(topic)? {
            super::partition::NamedLog::Topic(t) => Ok(t.partition(partition)?),
            super::partition::NamedLog::Queue(q) => {
                super::partition::queue_partition(&q, partition)
            }
        }
    }

    /// The permission to append and sync a batch of `len` bytes on the caller's own (runtime
    /// worker) thread, if the batch is small enough and no other caller holds it.
    pub fn try_inline_sync(&self, len: usize) -> Option<InlineSync<'_>> {
        if len > INLINE_SYNC_BATCH_BYTES_MAX {
            return None;
        }
        let flag = &self.inline_sync;
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| InlineSync(flag))
    }
}

/// Appends a published batch and, when `sync`, waits until it is durable (joining the log's
/// group commit); calls `appended` once the append is done or has failed, so the caller may
/// read its next request while the sync runs. Blocking.
pub fn publish(
    log: &Log,
    batch: Vec<u8>,
    sync: bool,
    appended: impl FnOnce(),
) -> Result<Published> {
    let info = log.append_unsynced(batch);
    appended();
    let info = info?;
    if sync {
        log.sync_to(info.next_offset())?;
    }
    Ok(Published {
        base_offset: info.base_offset,
        last_offset: info.last_offset,
    })
}

/// Waits until `log` is durable up to `end` when its fsync policy is `always`, joining the
/// log's group commit as [`publish`] does (under `interval` and `never` there is nothing to
/// wait for). A failed sync fail-stops the log. Blocking.
pub fn make_durable(log: &Log, end: Offset) -> Result<()> {
    if log.config().fsync == FsyncPolicy::Always {
        log.sync_to(end)?;
    }
    Ok(())
}
