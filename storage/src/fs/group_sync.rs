//! Group commit across files: the syncs of different topics and queues that arrive together are
//! made durable together.
//!
//! [`GroupSyncFs`] wraps a store's file system. Every `sync_data` of a file it opened joins a
//! round: a caller that finds fewer than [`ROUNDS_CONCURRENT_MAX`] rounds running leads one and
//! syncs for everyone who joined meanwhile; the others wait for the next round to start and
//! for its outcome. A round of one file is that file's fdatasync. A
//! round of [`SYNC_ALL_FILES_MIN`] or more files is one sync of the whole file system (`syncfs`:
//! every dirty page written, one journal commit, one device cache flush) instead of one
//! fdatasync, and one device flush, per file: on ext4, after 1 KiB written into each of 8 files,
//! one `syncfs` took 0.32 ms against 0.88 ms for their fdatasyncs, and a sixth of the time for
//! 64 files (docs/benchmarks.md).
//!
//! A failed sync of the whole file system cannot say which file lost data, so it stops every
//! later sync of the store (fail-stop for the store, where a failed fdatasync stops one log): each
//! log then stops writing on its next sync. The handle `syncfs` goes through is opened with the
//! store and kept, so a write-back error of any file since then is reported (Linux 5.8 and later
//! report such errors to `syncfs`).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{File, FileRef, FileSystem, FsRef, LockRef, Mapped, OpenMode, SyncAllRef};

/// Most rounds running at once. Two: a queue's publish (its log) and its acks (its state
/// journal) sync side by side as before rounds existed; a third caller waits and its round takes
/// everyone who arrived meanwhile. While a sync of the whole file system runs, no other round
/// starts.
pub const ROUNDS_CONCURRENT_MAX: usize = 2;

/// Fewest distinct files in a round for it to sync the whole file system rather than each file.
pub const SYNC_ALL_FILES_MIN: usize = 2;

/// Upper bounds, in microseconds, of the buckets of [`SyncStats::round_us_buckets`].
pub const ROUND_US_BOUNDS: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];
/// Upper bounds of the buckets of [`SyncStats::round_files_buckets`].
pub const ROUND_FILES_BOUNDS: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024];

/// Counts of a store's syncs (see [`GroupSync::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Rounds run: each one fdatasync or one sync of the file system.
    pub rounds: u64,
    /// Of them, syncs of the whole file system.
    pub file_system_syncs: u64,
    /// File syncs asked for: `requests / rounds` is the mean group size.
    pub requests: u64,
    /// The longest round so far, in microseconds.
    pub round_us_max: u64,
    /// Time spent in rounds, in microseconds.
    pub round_us_total: u64,
    /// Rounds by duration: entry `i` counts rounds of at most `ROUND_US_BOUNDS[i]` µs and more
    /// than the bound before; the last entry those over every bound.
    pub round_us_buckets: [u64; ROUND_US_BOUNDS.len() + 1],
    /// Rounds by the number of sync requests they served, bucketed by `ROUND_FILES_BOUNDS`
    /// likewise: the group-commit sizes.
    pub round_files_buckets: [u64; ROUND_FILES_BOUNDS.len() + 1],
}

/// Counters of one histogram: a bucket per bound and one past them all.
struct Buckets<const N: usize>([AtomicU64; N]);

impl<const N: usize> Buckets<N> {
    fn new() -> Self {
        Buckets(std::array::from_fn(|_| AtomicU64::new(0)))
    }
    fn add(&self, bounds: &[u64], value: u64) {
        let i = bounds.partition_point(|b| *b < value);
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }
    fn load(&self) -> [u64; N] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

/// Why a sync failed, kept so every waiter of the round gets the error.
#[derive(Clone, Debug)]
struct Failure {
    raw: Option<i32>,
    kind: io::ErrorKind,
    message: String,
}

impl Failure {
    fn of(e: &io::Error) -> Failure {
        Failure {
            raw: e.raw_os_error(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }
    fn to_error(&self) -> io::Error {
        match self.raw {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.kind, self.message.clone()),
        }
    }
}

/// What a waiter learns of its round.
type Outcome = Arc<Mutex<Option<Result<(), Failure>>>>;

struct Waiter {
    file: FileRef,
    outcome: Outcome,
}

#[derive(Default)]
struct Rounds {
    running: usize,
    /// A round syncing the whole file system is running.
    whole_running: bool,
    pending: Vec<Waiter>,
    /// Set by a failed sync of the whole file system: every later sync fails with it.
    failed: Option<Failure>,
}

/// The rounds of one store (see the module documentation).
pub struct GroupSync {
    all: Option<SyncAllRef>,
    rounds: Mutex<Rounds>,
    done: Condvar,
    count_rounds: AtomicU64,
    count_all: AtomicU64,
    count_requests: AtomicU64,
    round_us_max: AtomicU64,
    round_us_total: AtomicU64,
    round_us: Buckets<{ ROUND_US_BOUNDS.len() + 1 }>,
    round_files: Buckets<{ ROUND_FILES_BOUNDS.len() + 1 }>,
}

impl fmt::Debug for GroupSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupSync")
            .field("sync_all", &self.all.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GroupSync {
    /// Rounds for files of `fs`; `all` syncs the whole file system (`None`: each file on its own,
    /// which still shares a round's wait).
    pub fn new(all: Option<SyncAllRef>) -> GroupSync {
        GroupSync {
            all,
            rounds: Mutex::new(Rounds::default()),
            done: Condvar::new(),
            count_rounds: AtomicU64::new(0),
            count_all: AtomicU64::new(0),
            count_requests: AtomicU64::new(0),
            round_us_max: AtomicU64::new(0),
            round_us_total: AtomicU64::new(0),
            round_us: Buckets::new(),
            round_files: Buckets::new(),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> SyncStats {
        SyncStats {
            rounds: self.count_rounds.load(Ordering::Relaxed),
            file_system_syncs: self.count_all.load(Ordering::Relaxed),
            requests: self.count_requests.load(Ordering::Relaxed),
            round_us_max: self.round_us_max.load(Ordering::Relaxed),
            round_us_total: self.round_us_total.load(Ordering::Relaxed),
            round_us_buckets: self.round_us.load(),
            round_files_buckets: self.round_files.load(),
        }
    }

    /// Makes `file`'s data durable, in the next round that starts.
    pub fn sync(&self, file: &FileRef) -> io::Result<()> {
        self.count_requests.fetch_add(1, Ordering::Relaxed);
        let outcome: Outcome = Arc::default();
        let mut rounds = lock(&self.rounds);
        if let Some(f) = &rounds.failed {
            return Err(f.to_error());
        }
        rounds.pending.push(Waiter {
            file: file.clone(),
            outcome: outcome.clone(),
        });
        loop {
            if let Some(result) = lock(&outcome).take() {
                return result.map_err(|f| f.to_error());
            }
            let whole = self.all.is_some() && distinct(&rounds.pending) >= SYNC_ALL_FILES_MIN;
            // Nothing pending: a running round took this caller's file. Nothing beside a sync
            // of the whole file system: it covers what is pending now only if it started after
            // it, and two at once could each take the other's write-back error (the kernel
            // reports one to the first `syncfs` that looks).
            if rounds.running >= ROUNDS_CONCURRENT_MAX
                || rounds.pending.is_empty()
                || rounds.whole_running
            {
                rounds = self.done.wait(rounds).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            rounds.running += 1;
            rounds.whole_running |= whole;
            let waiters = std::mem::take(&mut rounds.pending);
            let failed = rounds.failed.clone();
            drop(rounds);
            self.lead(waiters, whole, failed);
            rounds = lock(&self.rounds);
        }
    }

    /// Runs one round for `waiters`, a sync of the whole file system when `whole`, and hands
    /// each its outcome; after a failed sync of the whole file system (`failed`) syncs nothing
    /// and fails them all: a later `syncfs` would report success, the error having been
    /// reported once.
    fn lead(&self, waiters: Vec<Waiter>, whole: bool, failed: Option<Failure>) {
        if let Some(f) = failed {
            self.finish(waiters, whole, |_| Err(f.clone()), None);
            return;
        }
        let started = std::time::Instant::now();
        let mut per_file: HashMap<usize, Result<(), Failure>> = HashMap::new();
        let mut whole_result = None;
        match &self.all {
            Some(all) if whole => {
                self.count_all.fetch_add(1, Ordering::Relaxed);
                whole_result = Some(all.sync_all().map_err(|e| Failure::of(&e)));
            }
            _ => {
                for w in &waiters {
                    per_file
                        .entry(file_key(&w.file))
                        .or_insert_with(|| w.file.sync_data().map_err(|e| Failure::of(&e)));
                }
            }
        }
        self.count_rounds.fetch_add(1, Ordering::Relaxed);
        let us = started.elapsed().as_micros() as u64;
        self.round_us_total.fetch_add(us, Ordering::Relaxed);
        self.round_us_max.fetch_max(us, Ordering::Relaxed);
        self.round_us.add(&ROUND_US_BOUNDS, us);
        self.round_files
            .add(&ROUND_FILES_BOUNDS, waiters.len() as u64);
        let failed_all = whole_result.clone().and_then(|r| r.err());
        self.finish(
            waiters,
            whole,
            |w| match &whole_result {
                Some(r) => r.clone(),
                None => per_file[&file_key(&w.file)].clone(),
            },
            failed_all,
        );
    }

    /// Hands each waiter its outcome, ends the round and wakes everyone.
    fn finish(
        &self,
        waiters: Vec<Waiter>,
        whole: bool,
        mut outcome: impl FnMut(&Waiter) -> Result<(), Failure>,
        failed_all: Option<Failure>,
    ) {
        for w in &waiters {
            *lock(&w.outcome) = Some(outcome(w));
        }
        let mut rounds = lock(&self.rounds);
        rounds.running -= 1;
        if whole {
            rounds.whole_running = false;
        }
        if let Some(f) = failed_all {
            tracing::error!(
                "sync of the data directory's file system failed, the store stops writing: {}",
                f.message
            );
            rounds.failed.get_or_insert(f);
        }
        drop(rounds);
        self.done.notify_all();
    }
}

/// Identifies an open file by its handle's address.
fn file_key(f: &FileRef) -> usize {
    Arc::as_ptr(f) as *const () as usize
}

/// How many different files `waiters` wait for.
fn distinct(waiters: &[Waiter]) -> usize {
    match waiters {
        [] => 0,
        [_] => 1,
        [a, b] => 1 + usize::from(file_key(&a.file) != file_key(&b.file)),
        _ => {
            let keys: std::collections::HashSet<usize> =
                waiters.iter().map(|w| file_key(&w.file)).collect();
            keys.len()
        }
    }
}

/// A file system whose files sync through a [`GroupSync`].
#[derive(Debug)]
pub struct GroupSyncFs {
    inner: FsRef,
    group: Arc<GroupSync>,
}

impl GroupSyncFs {
    /// Wraps `inner`; the whole-file-system sync goes through a handle opened on `root` now, or
    /// each file syncs on its own where `inner` has none.
    pub fn wrap(inner: FsRef, root: &Path) -> (FsRef, Arc<GroupSync>) {
        let all = match inner.open_sync_all(root) {
            Ok(all) => Some(all),
            Err(e) => {
                tracing::info!(root = %root.display(), "no sync of the whole file system ({e}): each file syncs on its own");
                None
            }
        };
        let group = Arc::new(GroupSync::new(all));
        let fs = GroupSyncFs {
            inner,
            group: group.clone(),
        };
        (Arc::new(fs), group)
    }

    fn wrap_file(&self, file: FileRef) -> FileRef {
        Arc::new(GroupFile {
            inner: file,
            group: self.group.clone(),
        })
    }
}

impl FileSystem for GroupSyncFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        Ok(self.wrap_file(self.inner.open(path, mode)?))
    }
    fn open_direct(&self, path: &Path) -> io::Result<FileRef> {
        Ok(self.wrap_file(self.inner.open_direct(path)?))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.read_dir(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }
    fn lock_exclusive(&self, path: &Path) -> io::Result<LockRef> {
        self.inner.lock_exclusive(path)
    }
    fn open_sync_all(&self, path: &Path) -> io::Result<SyncAllRef> {
        self.inner.open_sync_all(path)
    }
}

/// A file of a [`GroupSyncFs`].
#[derive(Debug)]
struct GroupFile {
    inner: FileRef,
    group: Arc<GroupSync>,
}

impl File for GroupFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.inner.read_at(buf, position)
    }
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, position)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.group.sync(&self.inner)
    }
    fn map(&self) -> io::Result<Mapped> {
        self.inner.map()
    }
}

#[cfg(test)]
mod tests;
