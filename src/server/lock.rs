//! The data directory's `LOCK` file: one broker process per data directory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::ServerError;

/// An exclusive `flock` on `<data-dir>/LOCK`, held for the life of the value (and released by
/// the kernel if the process dies).
#[derive(Debug)]
pub struct LockFile {
    _file: File,
    path: PathBuf,
}

impl LockFile {
    /// Creates `dir` if needed and locks `dir/LOCK`; fails at once if another process holds it.
    pub fn acquire(dir: &Path) -> Result<LockFile, ServerError> {
        let path = dir.join("LOCK");
        let err = |source| ServerError::Lock {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err)?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(ServerError::Locked {
                    dir: dir.to_owned(),
                    lock: path,
                });
            }
            return Err(err(e));
        }
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(LockFile { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_a_directory_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = LockFile::acquire(dir.path()).unwrap();
        match LockFile::acquire(dir.path()) {
            Err(ServerError::Locked { .. }) => {}
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(a);
        LockFile::acquire(dir.path()).unwrap();
    }
}
