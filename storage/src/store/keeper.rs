//! What keeps a store's cost in proportion to what is used rather than to how many topics and
//! queues it holds: closing the ones that sat unused, and opening, after an unclean stop, the
//! ones nobody asked for yet.
//!
//! A store opens no topic or queue at start; each is opened (and its log recovered) by its first
//! lookup. The keeper thread then, every [`KEEP_EVERY`]:
//! - closes every topic and queue that nobody holds, that has nothing in flight, and that was
//!   not looked up for [`OpenSettings::idle_close_ms`];
//! - closes more, least recently used first, while the open ones hold more files than
//!   [`OpenSettings::files_max`] (a create or an open makes room the same way at once when the
//!   open ones are near the budget).
//!
//! A close syncs everything first (a snapshot of the ack state, the log's tail and indexes, its
//! clean-shutdown marker), so the next open replays nothing. After an unclean stop (no
//! [`CLEAN_FILE`] at open) the thread first opens every closed log once and closes it again, so
//! a torn tail is cut in the background as well as before its log's first use.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::fs::{write_atomic, FileSystem};

use super::background::{Background, Stop};
use super::catalog::Catalog;
use super::inner::StoreInner;
use super::{Queue, Topic};

/// The file at the root of a data directory whose presence at open says the store was closed
/// cleanly last time: every topic and queue was synced and closed. Removed (durably) at open.
/// Its 16 bytes: [`CLEAN_MAGIC`], version 1 (u32, little-endian), CRC-32 of the 12 before.
pub const CLEAN_FILE: &str = "store.clean";
/// The magic of [`CLEAN_FILE`].
pub const CLEAN_MAGIC: &[u8; 8] = b"SLUICESC";
const CLEAN_VERSION: u32 = 1;

fn clean_mark_bytes() -> Vec<u8> {
    let mut b = CLEAN_MAGIC.to_vec();
    b.extend_from_slice(&CLEAN_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// How often the keeper thread closes idle topics and queues.
pub const KEEP_EVERY: Duration = Duration::from_secs(1);

/// Files an open queue or topic is assumed to hold when deciding whether a pass is due
/// without counting (a log's active segment, its direct-write handle, an ack journal).
pub(super) const FILES_PER_OPEN_GUESS: usize = 3;

/// Most creates (and lazy opens) of topics and queues at once: each holds a few files while
/// it works (directory fsyncs, a config written through a temporary file, the new log and
/// journal), so this bounds what they hold on top of the budget of open ones.
pub const OPENS_CONCURRENT_MAX: usize = 16;

/// A counting gate of [`OPENS_CONCURRENT_MAX`] places.
#[derive(Debug, Default)]
pub(super) struct OpenGate {
    taken: Mutex<usize>,
    freed: Condvar,
}

/// A place in the [`OpenGate`], given back on drop.
pub(super) struct GatePlace<'a>(&'a OpenGate);

impl OpenGate {
    pub(super) fn enter(&self) -> GatePlace<'_> {
        let mut n = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= OPENS_CONCURRENT_MAX {
            n = self.freed.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        GatePlace(self)
    }
}

impl Drop for GatePlace<'_> {
    fn drop(&mut self) {
        *self.0.taken.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.freed.notify_one();
    }
}

/// How many topics and queues stay open, and when closed ones are opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSettings {
    /// Most files the open topics and queues may hold: unused ones are closed, least recently
    /// used first, to stay within it. 0: a quarter of the process's open-file limit at open
    /// (the rest is for connections and for the files creates, opens and closes hold briefly).
    pub files_max: usize,
    /// A topic or queue not looked up for this long, held by no one and with nothing in
    /// flight, is closed.
    pub idle_close_ms: u64,
    /// After an unclean stop, open (and so recover) every log in the background.
    pub recover_in_background: bool,
}

impl Default for OpenSettings {
    fn default() -> Self {
        OpenSettings {
            files_max: 0,
            idle_close_ms: 60_000,
            recover_in_background: true,
        }
    }
}

/// The process's soft open-file limit (`RLIMIT_NOFILE`), if it can be read.
pub fn open_file_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    (rc == 0).then_some(r.rlim_cur)
}

/// The file budget `s` gives: its own, or a quarter of the open-file limit (at least 64).
pub(super) fn files_budget(s: &OpenSettings) -> usize {
    if s.files_max > 0 {
        return s.files_max;
    }
    let limit = open_file_limit().unwrap_or(1024);
    usize::try_from(limit / 4).unwrap_or(usize::MAX).max(64)
}

/// Takes the clean-shutdown mark of the data directory at `root`: true when it was there (the
/// last close was clean). Its removal is durable before this returns, so a crash from now on
/// is never taken for a clean stop.
pub(super) fn take_clean_mark(fs: &dyn FileSystem, root: &Path) -> Result<bool> {
    let path = root.join(CLEAN_FILE);
    if !fs.exists(&path) {
        return Ok(false);
    }
    // Anything but the exact mark (a torn or foreign file) counts as an unclean stop.
    let valid = crate::fs::read_all(fs, &path).is_ok_and(|b| b == clean_mark_bytes());
    fs.remove_file(&path).at(&path)?;
    fs.sync_dir(root).at(root)?;
    Ok(valid)
}

/// Writes the clean-shutdown mark, once everything is closed.
pub(super) fn write_clean_mark(fs: &dyn FileSystem, root: &Path) -> Result<()> {
    let path = root.join(CLEAN_FILE);
    write_atomic(fs, &path, &clean_mark_bytes()).at(&path)
}

impl StoreInner {
    /// Closes idle topics and queues: those not used for the idle time, and more while the
    /// open ones hold more than the file budget. Returns how many were closed.
    pub(super) fn close_idle(self: &Arc<Self>) -> usize {
        let unused = Duration::from_millis(self.config.open.idle_close_ms);
        self.close_unused(unused, self.files_budget)
    }

    /// Closes the idle topics and queues unused for `unused`, and more while the open ones hold
    /// more than `budget` files.
    fn close_unused(self: &Arc<Self>, unused: Duration, budget: usize) -> usize {
        let topic_files = self.topics.cost(|t| t.open_files());
        let queues = self.queues.take_idle(
            unused,
            budget.saturating_sub(topic_files),
            |q| q.open_files(),
            |q| q.can_close(),
        );
        let queue_files = self.queues.cost(|q| q.open_files());
        let topics = self.topics.take_idle(
            unused,
            budget.saturating_sub(queue_files),
            |t| t.open_files(),
            |t| t.can_close(),
        );
        let n = queues.len() + topics.len();
        for (name, q) in queues {
            if let Err(e) = q.close() {
                tracing::warn!(queue = %name, "closing an idle queue failed: {e}");
            }
            drop(q);
            self.queues.closed(&name);
        }
        for (name, t) in topics {
            if let Err(e) = t.close() {
                tracing::warn!(topic = %name, "closing an idle topic failed: {e}");
            }
            drop(t);
            self.topics.closed(&name);
        }
        n
    }

    /// Runs `f`; when it fails for want of a file descriptor, closes every idle topic and
    /// queue, however recently used, and runs it once more.
    pub(super) fn retry_without_fds<T>(self: &Arc<Self>, f: impl Fn() -> Result<T>) -> Result<T> {
        match f() {
            Err(e) if e.is_fd_exhausted() => {
                let closed = self.close_unused(Duration::ZERO, 0);
                tracing::warn!(
                    closed,
                    "no file descriptor left ({e}); closed idle ones to retry"
                );
                f()
            }
            r => r,
        }
    }

    /// Before opening or creating one more topic or queue: closes idle ones when the open ones
    /// are near the file budget, so the new one's files fit.
    pub(super) fn make_room(self: &Arc<Self>) {
        let open = self.queues.open_count() + self.topics.open_count();
        if (open + 1) * FILES_PER_OPEN_GUESS > self.files_budget {
            self.close_idle();
        }
    }

    /// Opens every closed topic and queue once (recovering its log) and closes it again unless
    /// someone took it meanwhile; stops early when the store closes.
    fn recover_all(self: &Arc<Self>, stop: &Stop) {
        let started = Instant::now();
        let mut opened = 0u64;
        let queues = self.queues.closed_names().into_iter().map(|n| (true, n));
        let topics = self.topics.closed_names().into_iter().map(|n| (false, n));
        for (queue, name) in queues.chain(topics) {
            if stop.stopped() || self.check_open().is_err() {
                return;
            }
            self.make_room();
            let r = match queue {
                true => self.queue(&name).map(drop),
                false => self.topic(&name).map(drop),
            };
            match r {
                Ok(()) if queue => self.close_if_idle_queue(&name),
                Ok(()) => self.close_if_idle_topic(&name),
                Err(Error::NotFound { .. }) => continue,
                Err(e) => {
                    tracing::warn!(%name, queue, "background recovery: {e}");
                    continue;
                }
            }
            opened += 1;
        }
        tracing::info!(
            logs = opened,
            ms = started.elapsed().as_millis() as u64,
            "background recovery after an unclean stop done"
        );
    }

    fn close_if_idle_queue(&self, name: &str) {
        close_if_idle(&self.queues, name, "queue", Queue::can_close, Queue::close);
    }

    fn close_if_idle_topic(&self, name: &str) {
        close_if_idle(&self.topics, name, "topic", Topic::can_close, Topic::close);
    }
}

/// Starts the keeper thread of a store; with `recover`, it first opens every closed log once.
pub(super) fn start(inner: &Arc<StoreInner>, recover: bool) -> Result<Background> {
    Background::start("sluice-keeper", inner, move |weak, stop| {
        run(weak, stop, recover)
    })
}

fn run(weak: Weak<StoreInner>, stop: Stop, recover: bool) {
    if recover {
        match weak.upgrade() {
            Some(inner) => inner.recover_all(&stop),
            None => return,
        }
    }
    while !stop.wait(KEEP_EVERY) {
        let Some(inner) = weak.upgrade() else { return };
        if inner.check_open().is_err() {
            return;
        }
        inner.close_idle();
    }
}

/// Closes `name` of `catalog` now if it is open and idle (see [`Catalog::take_if_idle`]).
fn close_if_idle<T>(
    catalog: &Catalog<T>,
    name: &str,
    kind: &str,
    idle: impl Fn(&T) -> bool,
    close: impl Fn(&T) -> Result<()>,
) {
    if let Some(x) = catalog.take_if_idle(name, idle) {
        if let Err(e) = close(&x) {
            tracing::warn!(%kind, %name, "closing after recovery failed: {e}");
        }
        drop(x);
        catalog.closed(name);
    }
}
