//! The one small trait all file I/O of the engine goes through.
//!
//! [`StdFs`] is the real file system. `sim::SimFs` (feature `sim`) is an in-memory file system for tests that
//! remembers what was synced: a simulated crash keeps only bytes made durable by `sync_data` and
//! directory entries made durable by `sync_dir`, and a fault plan fails the Nth call of a kind.

mod group_sync;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
mod std_fs;

pub use group_sync::{
    GroupSync, GroupSyncFs, SyncStats, ROUNDS_CONCURRENT_MAX, ROUND_FILES_BOUNDS, ROUND_US_BOUNDS,
    SYNC_ALL_FILES_MIN,
};

use std::fmt::Debug;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use std_fs::StdFs;

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// Create the file (it must not exist), read and write.
    CreateNew,
    /// Create the file or truncate it to zero, read and write.
    CreateTruncate,
}

/// A read-only view of a whole file: an mmap on the real file system, a copy in simulation.
pub enum Mapped {
    /// A memory map.
    Mmap(memmap2::Mmap),
    /// Owned bytes.
    Owned(Vec<u8>),
}

impl Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Mapped::Mmap(m) => m,
            Mapped::Owned(v) => v,
        }
    }
}

impl Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapped({} bytes)", self.len())
    }
}

/// An open file. Reads and writes take explicit byte positions (pread/pwrite), so one handle can
/// be shared by a writer and many readers.
#[allow(clippy::len_without_is_empty)] // a file's length, not a collection
pub trait File: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `position`; returns how many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `position`.
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()>;
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data (and the metadata needed to read it) durable: fdatasync.
    fn sync_data(&self) -> io::Result<()>;
    /// A read-only view of the whole file.
    fn map(&self) -> io::Result<Mapped>;

    /// Reads exactly `buf.len()` bytes at `position`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut position: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, position) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file ends before the expected bytes",
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    position += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A shared file handle.
pub type FileRef = Arc<dyn File>;

/// The file system: every file and directory call of the engine.
pub trait FileSystem: Send + Sync + Debug {
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef>;
    /// Opens an existing file for direct (O_DIRECT) writes: every write must start at a multiple
    /// of 4096 bytes, be a multiple of 4096 bytes long and come from 4096-aligned memory. `Err`
    /// when the file system does not support it; the caller then falls back to buffered writes.
    fn open_direct(&self, path: &Path) -> io::Result<FileRef>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory, sorted.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing the target.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable: fsync of the directory.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// True when the path exists.
    fn exists(&self, path: &Path) -> bool;
    /// True when the path is a directory.
    fn is_dir(&self, path: &Path) -> bool;
    /// Takes an exclusive advisory lock on the file `path` (created when missing), held until
    /// the returned value is dropped. Never blocks: `Err` of kind `WouldBlock` when someone else
    /// holds it. The default holds nothing (for wrappers that do not forward it).
    fn lock_exclusive(&self, path: &Path) -> io::Result<LockRef> {
        let _ = path;
        Ok(Box::new(NoLock))
    }
    /// A handle that syncs every file of the file system holding the directory `path` at once
    /// (`syncfs`), kept open so that it reports every write-back error from now on. `Err` of
    /// kind `Unsupported` where there is none (the default).
    fn open_sync_all(&self, path: &Path) -> io::Result<SyncAllRef> {
        let _ = path;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this file system has no sync of all its files",
        ))
    }
}

/// Syncs every file of one file system (see [`FileSystem::open_sync_all`]).
pub trait SyncAll: Send + Sync + Debug {
    /// Makes the data of every file of the file system durable: syncfs.
    fn sync_all(&self) -> io::Result<()>;
}

/// A held whole-file-system sync handle.
pub type SyncAllRef = Box<dyn SyncAll>;

/// An advisory lock held on a file, released when dropped (see [`FileSystem::lock_exclusive`]).
pub trait LockHold: Send + Sync + Debug {}

/// A held lock.
pub type LockRef = Box<dyn LockHold>;

/// A lock that holds nothing.
#[derive(Debug)]
pub struct NoLock;

impl LockHold for NoLock {}

/// A shared file system handle.
pub type FsRef = Arc<dyn FileSystem>;

/// Writes `bytes` to `path` atomically and durably: a temporary file, fsync, rename, fsync of the
/// directory. A crash leaves either the old file or the new one, never a mix.
pub fn write_atomic(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = PathBuf::from(path);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    tmp.set_file_name(name);
    let f = fs.open(&tmp, OpenMode::CreateTruncate)?;
    f.write_all_at(bytes, 0)?;
    f.sync_data()?;
    drop(f);
    fs.rename(&tmp, path)?;
    fs.sync_dir(dir)
}

/// The directory holding `path`: its parent, or `.` for a bare relative name.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` and every missing ancestor, and makes each new entry durable by fsyncing the
/// directory that holds it: a crash must not lose a directory, and all beneath it, whose
/// parent was never synced.
pub fn create_dir_durable(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() && !fs.is_dir(d) {
        missing.push(d);
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir)?;
    for d in missing.iter().rev() {
        fs.sync_dir(parent_dir(d))?;
    }
    Ok(())
}

/// Reads a whole file.
pub fn read_all(fs: &dyn FileSystem, path: &Path) -> io::Result<Vec<u8>> {
    let f = fs.open(path, OpenMode::Read)?;
    let len = f.len()? as usize;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}
