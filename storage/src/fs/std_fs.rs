//! The real file system.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::{File, FileRef, FileSystem, Mapped, OpenMode};

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(fs::File);

impl File for StdFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.0.read_at(buf, position)
    }
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        self.0.write_all_at(buf, position)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn map(&self) -> io::Result<Mapped> {
        if self.len()? == 0 {
            return Ok(Mapped::Owned(Vec::new()));
        }
        // SAFETY: sluice maps only sealed index files, which nothing writes to while mapped; a
        // file truncated by another process under the map is outside what the engine supports.
        let map = unsafe { memmap2::Mmap::map(&self.0)? };
        Ok(Mapped::Mmap(map))
    }
}

impl FileSystem for StdFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let mut o = fs::OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
            OpenMode::CreateTruncate => o.read(true).write(true).create(true).truncate(true),
        };
        Ok(Arc::new(StdFile(o.open(path)?)))
    }
    fn open_direct(&self, path: &Path) -> io::Result<FileRef> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)?;
        Ok(Arc::new(StdFile(f)))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        fs::File::open(path)?.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
    fn lock_exclusive(&self, path: &Path) -> io::Result<super::LockRef> {
        use std::os::unix::io::AsRawFd;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // For an operator: which process holds it.
        let _ = file.set_len(0);
        let _ =
            std::io::Write::write_all(&mut &file, format!("{}\n", std::process::id()).as_bytes());
        Ok(Box::new(FileLock(file)))
    }
    fn open_sync_all(&self, path: &Path) -> io::Result<super::SyncAllRef> {
        Ok(Box::new(SyncFs(fs::File::open(path)?)))
    }
}

/// A descriptor of a directory, kept open for `syncfs`: the kernel reports to it every
/// write-back error of the file system since it was opened.
#[derive(Debug)]
struct SyncFs(fs::File);

impl super::SyncAll for SyncFs {
    fn sync_all(&self) -> io::Result<()> {
        use std::os::unix::io::AsRawFd;
        // SAFETY: syncfs on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::syncfs(self.0.as_raw_fd()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// An `flock` held through an open descriptor; closing it releases the lock.
#[derive(Debug)]
struct FileLock(#[allow(dead_code)] fs::File);

impl super::LockHold for FileLock {}
