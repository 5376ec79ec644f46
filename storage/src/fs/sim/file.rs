//! Open files and held locks of the simulated file system.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::super::{File, LockHold, Mapped, SyncAll};
use super::{crashed_err, err, OpKind, State};

#[derive(Debug)]
pub(super) struct SimFile {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) inode: u64,
    pub(super) generation: u64,
    pub(super) writable: bool,
    /// Opened for direct writes: misaligned writes fail with EINVAL, as O_DIRECT does.
    pub(super) direct: bool,
}

impl SimFile {
    fn lock(&self) -> io::Result<MutexGuard<'_, State>> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.generation != self.generation || st.crashed {
            return Err(crashed_err());
        }
        Ok(st)
    }
}

impl File for SimFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        let mut st = self.lock()?;
        st.op(OpKind::Read)?;
        let data = &st.inodes[&self.inode].live;
        let pos = position as usize;
        if pos >= data.len() {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - pos);
        buf[..n].copy_from_slice(&data[pos..pos + n]);
        Ok(n)
    }
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        if !self.writable {
            return Err(err(io::ErrorKind::PermissionDenied, "opened read-only"));
        }
        if self.direct
            && (position % 4096 != 0 || buf.len() % 4096 != 0 || buf.as_ptr() as usize % 4096 != 0)
        {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut st = self.lock()?;
        st.op(OpKind::Write)?;
        let data = &mut st.inodes.get_mut(&self.inode).expect("open inode").live;
        let end = position as usize + buf.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[position as usize..end].copy_from_slice(buf);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        let st = self.lock()?;
        Ok(st.inodes[&self.inode].live.len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(err(io::ErrorKind::PermissionDenied, "opened read-only"));
        }
        let mut st = self.lock()?;
        st.op(OpKind::Write)?;
        st.inodes
            .get_mut(&self.inode)
            .expect("open inode")
            .live
            .resize(len as usize, 0);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let delay = self.lock()?.sync_delay;
        std::thread::sleep(delay);
        let mut st = self.lock()?;
        st.op(OpKind::Sync)?;
        let node = st.inodes.get_mut(&self.inode).expect("open inode");
        node.durable = node.live.clone();
        Ok(())
    }
    fn map(&self) -> io::Result<Mapped> {
        let mut st = self.lock()?;
        st.op(OpKind::Read)?;
        Ok(Mapped::Owned(st.inodes[&self.inode].live.clone()))
    }
}

/// The whole-file-system sync of the simulated file system: every file's bytes become durable.
/// Directory entries do not (a real `syncfs` makes them durable too): the engine syncs each
/// directory it changes, and the simulation keeps checking that it does. Counts as a `Sync`.
#[derive(Debug)]
pub(super) struct SimSyncAll {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) generation: u64,
}

impl SyncAll for SimSyncAll {
    fn sync_all(&self) -> io::Result<()> {
        let delay = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sync_delay;
        std::thread::sleep(delay);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.generation != self.generation || st.crashed {
            return Err(crashed_err());
        }
        st.op(OpKind::Sync)?;
        for node in st.inodes.values_mut() {
            node.durable.clone_from(&node.live);
        }
        Ok(())
    }
}

/// An advisory lock of the simulated file system, released on drop unless a crash came first.
#[derive(Debug)]
pub(super) struct SimLock {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) path: PathBuf,
    pub(super) generation: u64,
}

impl LockHold for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.generation == self.generation {
            st.locks.remove(&self.path);
        }
    }
}
