//! Whether a broker holds a data directory (`LOCK`, an exclusive `flock`), and the lock repair
//! takes.

use super::*;

/// Whether a broker holds the data directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum LockStatus {
    /// No `LOCK` file found in the path or its parents.
    NoLockFile,
    /// The lock file exists and nobody holds it.
    Free(PathBuf),
    /// A process (a running broker) holds it.
    Held(PathBuf),
}

/// Finds `LOCK` in `path` or up to four of its parents (a segment file is four levels below the
/// data directory: `<root>/topics/<name>/<segment>`).
pub fn find_lock_file(path: &Path) -> Option<PathBuf> {
    let start = if path.is_dir() {
        Some(path)
    } else {
        path.parent()
    };
    start?
        .ancestors()
        .take(4)
        .map(|d| d.join(LOCK_FILE))
        .find(|p| p.is_file())
}

pub(super) fn flock(file: &std::fs::File, op: libc::c_int) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Tells whether a running broker holds the lock of the data directory containing `path`, by a
/// non-blocking shared `flock` attempt (released at once).
pub fn lock_status(path: &Path) -> LockStatus {
    let Some(lock) = find_lock_file(path) else {
        return LockStatus::NoLockFile;
    };
    match std::fs::File::open(&lock).and_then(|f| flock(&f, libc::LOCK_SH)) {
        Ok(true) => LockStatus::Free(lock),
        Ok(false) => LockStatus::Held(lock),
        // Cannot tell: assume held, the safe answer for repair.
        Err(_) => LockStatus::Held(lock),
    }
}

/// An exclusive hold on a data directory's lock, released on drop.
#[derive(Debug)]
pub struct LockGuard {
    _file: Option<std::fs::File>,
}

/// Takes the data directory's lock exclusively for a repair, so a broker cannot start meanwhile.
/// Fails when a broker holds it. Without a lock file there is nothing to take.
pub fn lock_for_repair(path: &Path) -> Result<LockGuard> {
    let Some(lock) = find_lock_file(path) else {
        return Ok(LockGuard { _file: None });
    };
    let f = std::fs::File::open(&lock).at(&lock)?;
    match flock(&f, libc::LOCK_EX) {
        Ok(true) => Ok(LockGuard { _file: Some(f) }),
        Ok(false) => Err(Error::InvalidArgument(format!(
            "{} is held by a running broker: stop it before repairing",
            lock.display()
        ))),
        Err(e) => Err(Error::io(lock, e)),
    }
}
