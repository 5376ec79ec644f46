//! An open journal: appends, group-commit syncs, preallocated room and snapshots that switch
//! generation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::fs::{self, FileRef, FileSystem, FsRef, OpenMode};

use super::format::*;
use super::load::{load, Loaded};
use super::{lock, JOURNAL_HEADER_LEN, STATE_VERSION};

struct Inner {
    file: FileRef,
    path: PathBuf,
    generation: u64,
    /// Write position in the current file.
    pos: u64,
    /// Length of the current file: the bytes from `pos` to it are zeros (preallocated).
    len: u64,
    /// Layout version of the current file's header.
    version: u16,
    /// Logical position of byte 0 of the current file.
    base: u64,
    /// Bytes appended since the last snapshot.
    since_snapshot: u64,
}

/// An open journal. See the module documentation.
pub struct Journal {
    fs: FsRef,
    dir: PathBuf,
    prefix: &'static str,
    magic: [u8; 8],
    inner: Mutex<Inner>,
    sync_lock: Mutex<()>,
    durable: AtomicU64,
    failed: AtomicBool,
    stopped: AtomicBool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn create_journal_file(
    fs: &dyn FileSystem,
    path: &Path,
    magic: [u8; 8],
    gen: u64,
) -> Result<FileRef> {
    let f = fs.open(path, OpenMode::CreateTruncate).at(path)?;
    f.write_all_at(&encode_journal_header(magic, gen), 0)
        .at(path)?;
    f.sync_data().at(path)?;
    Ok(f)
}

/// Smallest and largest run of zeros written ahead of the records at a time: each run doubles
/// the file, from the smaller to the larger, so an idle queue's journal stays small.
pub const PREALLOC_BYTES_MIN: u64 = 64 << 10;
/// See [`PREALLOC_BYTES_MIN`].
pub const PREALLOC_BYTES_MAX: u64 = 1 << 20;

/// Writes zeros from the end of the current file to past `end`, so the appends up to there do
/// not grow the file: `fdatasync` after such an append writes the data and flushes, without
/// also writing the inode for a new file size (one device round trip fewer on every sync).
/// A failure here wrote nothing a reader could take for a record, so the journal goes on; the
/// append that needed the room fails.
fn preallocate(g: &mut Inner, end: u64) -> Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let run = g.len.clamp(PREALLOC_BYTES_MIN, PREALLOC_BYTES_MAX);
    let target = end.max(g.len) + run;
    let mut at = g.len;
    while at < target {
        let n = (target - at).min(ZEROS.len() as u64) as usize;
        g.file.write_all_at(&ZEROS[..n], at).at(&g.path)?;
        at += n as u64;
    }
    g.len = target;
    Ok(())
}

impl Journal {
    /// Opens (creating when absent) the journal of `prefix` in `dir` (which must exist), after
    /// recovering it: the torn tail is cut and the cut synced, stale generations removed.
    pub fn open(
        fs: FsRef,
        dir: &Path,
        prefix: &'static str,
        magic: [u8; 8],
    ) -> Result<(Journal, Loaded)> {
        let loaded = load(&*fs, dir, prefix, magic)?;
        let jp = journal_path(dir, prefix, loaded.generation);
        let file = if loaded.valid_len == 0 {
            let f = create_journal_file(&*fs, &jp, magic, loaded.generation)?;
            fs.sync_dir(dir).at(dir)?;
            f
        } else {
            let f = fs.open(&jp, OpenMode::ReadWrite).at(&jp)?;
            if loaded.damaged_mid {
                tracing::error!(
                    path = %jp.display(),
                    "state journal is damaged before valid records: the records after the damage are dropped \
                     (acknowledged messages may be delivered again, offsets may move back)"
                );
            }
            if loaded.torn_len() > 0 {
                tracing::warn!(
                    path = %jp.display(),
                    "cutting {} bytes of torn journal tail",
                    loaded.torn_len()
                );
                f.set_len(loaded.valid_len).at(&jp)?;
                f.sync_data().at(&jp)?;
            }
            f
        };
        // After a cut the file ends at the valid prefix; otherwise zeros may follow it.
        let len = if loaded.torn_len() > 0 {
            loaded.valid_len
        } else {
            loaded.journal_len
        };
        // Leftovers: older generations, a newer one whose snapshot never landed, temporaries.
        let own = jp.file_name().map(|n| n.to_string_lossy().into_owned());
        for name in fs.read_dir(dir).at(dir)? {
            let stale_journal =
                name.starts_with(&format!("{prefix}.")) && name.ends_with(".journal");
            let tmp = name == format!("{prefix}.snapshot.tmp");
            if (stale_journal && Some(&name) != own.as_ref()) || tmp {
                let p = dir.join(&name);
                fs.remove_file(&p).at(&p)?;
            }
        }
        let pos = loaded.valid_len.max(JOURNAL_HEADER_LEN as u64);
        let j = Journal {
            fs,
            dir: dir.to_path_buf(),
            prefix,
            magic,
            inner: Mutex::new(Inner {
                file,
                path: jp,
                generation: loaded.generation,
                pos,
                len: len.max(pos),
                version: if loaded.valid_len == 0 {
                    STATE_VERSION
                } else {
                    loaded.version
                },
                base: 0,
                since_snapshot: pos - JOURNAL_HEADER_LEN as u64,
            }),
            sync_lock: Mutex::new(()),
            durable: AtomicU64::new(pos),
            failed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        };
        Ok((j, loaded))
    }

    /// `FailStop` once a write or sync of the journal failed (until it is reopened).
    pub fn check(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(Error::FailStop {
                path: self.dir.clone(),
                cause: "a write or sync of the state journal failed".into(),
            });
        }
        Ok(())
    }

    fn fail(&self, e: Error) -> Error {
        tracing::error!(dir = %self.dir.display(), "state journal fails: {e}");
        self.failed.store(true, Ordering::Release);
        e
    }

    /// Appends already-encoded records (see [`encode_record`]); returns the logical position to
    /// pass to [`Journal::sync_to`]. Callers hold their own state lock so records are in the same
    /// order as the state changes they describe.
    pub fn append(&self, bytes: &[u8]) -> Result<u64> {
        self.check()?;
        let mut g = lock(&self.inner);
        let end = g.pos + bytes.len() as u64;
        if end > g.len {
            preallocate(&mut g, end)?;
        }
        if let Err(e) = g.file.write_all_at(bytes, g.pos) {
            // A partial write may have landed; the journal is stopped, recovery cuts it.
            return Err(self.fail(Error::io(&g.path, e)));
        }
        g.pos += bytes.len() as u64;
        g.since_snapshot += bytes.len() as u64;
        Ok(g.base + g.pos)
    }

    /// Layout version of the journal file being appended to. An owner whose records changed
    /// since that version takes a snapshot before appending: the snapshot starts a journal of
    /// the current version.
    pub fn version(&self) -> u16 {
        lock(&self.inner).version
    }

    /// Bytes appended since the last snapshot.
    pub fn since_snapshot(&self) -> u64 {
        lock(&self.inner).since_snapshot
    }

    /// The logical end: everything appended so far.
    pub fn end(&self) -> u64 {
        let g = lock(&self.inner);
        g.base + g.pos
    }

    /// Makes everything up to logical position `target` durable (group commit).
    pub fn sync_to(&self, target: u64) -> Result<()> {
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _leader = lock(&self.sync_lock);
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        self.check()?;
        let (file, path, end) = {
            let g = lock(&self.inner);
            (g.file.clone(), g.path.clone(), g.base + g.pos)
        };
        if let Err(e) = file.sync_data() {
            return Err(self.fail(Error::io(path, e)));
        }
        self.durable.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Syncs everything appended so far.
    pub fn flush(&self) -> Result<()> {
        self.sync_to(self.end())
    }

    /// Starts a thread that syncs the journal every `every` (the `interval` fsync policy). It ends
    /// when the journal is dropped, stopped or has failed.
    pub fn spawn_flusher(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("sluice-state-flush".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(j) = weak.upgrade() else { return };
                if j.stopped.load(Ordering::Acquire) || j.failed.load(Ordering::Acquire) {
                    return;
                }
                if let Err(e) = j.flush() {
                    tracing::error!(dir = %j.dir.display(), "interval sync of state journal failed: {e}");
                    return;
                }
            });
        if let Err(e) = spawned {
            tracing::error!(dir = %self.dir.display(), "cannot start the state flusher: {e}");
        }
    }

    /// Stops the background flusher (at close).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// Writes a snapshot holding `body` and starts a new journal generation. The caller holds its
    /// state lock, so `body` covers every record appended so far.
    pub fn snapshot(&self, body: &[u8]) -> Result<()> {
        self.check()?;
        let mut g = lock(&self.inner);
        let next = g.generation + 1;
        let fs = &*self.fs;
        let jp = journal_path(&self.dir, self.prefix, next);
        let made = create_journal_file(fs, &jp, self.magic, next)
            .and_then(|f| fs.sync_dir(&self.dir).at(&self.dir).map(|()| f));
        let f = match made {
            Ok(f) => f,
            Err(e) if e.is_fd_exhausted() => {
                // No descriptor for the new file or its directory: nothing the snapshot would
                // replace was touched, so the journal goes on in its current generation.
                let _ = fs.remove_file(&jp);
                return Err(e);
            }
            Err(e) => return Err(self.fail(e)),
        };
        let sp = snapshot_path(&self.dir, self.prefix);
        if let Err(e) = fs::write_atomic(fs, &sp, &encode_snapshot(self.magic, next, body)) {
            // The rename may have happened: the journal cannot tell which generation is live.
            return Err(self.fail(Error::io(&sp, e)));
        }
        let old = std::mem::replace(&mut g.path, jp);
        g.file = f;
        g.generation = next;
        g.base += g.pos;
        g.pos = JOURNAL_HEADER_LEN as u64;
        g.len = g.pos;
        g.version = STATE_VERSION;
        g.since_snapshot = 0;
        self.durable.fetch_max(g.base + g.pos, Ordering::AcqRel);
        drop(g);
        // The old journal is covered by the snapshot; a crash before this removal leaves a stale
        // file that the next open deletes.
        if let Err(e) = fs.remove_file(&old) {
            tracing::warn!(path = %old.display(), "could not remove an old journal: {e}");
        }
        Ok(())
    }
}
