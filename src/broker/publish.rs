//! Publishing: the target's log, the append, and the durability wait (group commit), with the
//! permission to sync a small publish on the caller's own thread.

use std::sync::atomic::{AtomicBool, Ordering};

use sluice_storage::{Error as StoreError, FsyncPolicy, Log, Offset};

use super::types::Target;
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

/// The offsets of a published batch.
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
    /// The log a publish to `t` appends to.
    pub fn resolve_target(&self, t: &Target) -> Result<Log> {
        match t {
            Target::Topic(n) => Ok(self.store.topic(n)?.log().clone()),
            Target::Queue(n) => Ok(self.store.queue(n)?.log().clone()),
            Target::Any(n) => match self.store.topic(n) {
                Ok(t) => Ok(t.log().clone()),
                Err(StoreError::NotFound { .. }) => match self.store.queue(n) {
                    Ok(q) => Ok(q.log().clone()),
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
