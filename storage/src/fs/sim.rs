//! An in-memory file system that remembers what is durable, for crash and fault tests.
//!
//! Every file is an inode with two contents: `live` (what reads see) and `durable` (what a crash
//! keeps). `sync_data` copies live to durable. Every directory has live and durable entries;
//! `sync_dir` copies live entries to durable. [`SimFs::crash`] replaces the whole state by its
//! durable image: files created, renamed or removed since the last `sync_dir` of their directory
//! are undone, and unsynced bytes are lost (or, with [`CrashMode::TornTail`], a random prefix of
//! the unsynced appended bytes survives, as a torn write would leave).
//!
//! A [`Fault`] fails the Nth call of one kind (once, or forever from then on), and
//! [`SimFs::crash_after`] makes every call after the Nth fail as if the process had died there.
//! Handles opened before a crash fail afterwards, like file descriptors of a dead process.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{File, FileRef, FileSystem, Mapped, OpenMode};

/// The kinds of calls a fault can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `write_all_at` and `set_len`.
    Write,
    /// `sync_data`.
    Sync,
    /// `sync_dir`.
    SyncDir,
    /// `open` with a create mode.
    Create,
    /// `rename`.
    Rename,
    /// `remove_file` and `remove_dir_all`.
    Remove,
    /// `read_at` and `map`.
    Read,
}

/// The error an injected fault returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// EIO.
    Io,
    /// ENOSPC: the disk is full.
    NoSpace,
    /// EMFILE: the process has no file descriptor left (only an `open` can fail so; a
    /// `sync_dir` opens its directory first).
    TooManyFiles,
}

/// Fails the `nth` call (1-based) of `kind`.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// The kind of call.
    pub kind: OpKind,
    /// Which call of that kind fails first (1 = the first).
    pub nth: u64,
    /// When true, every later call of that kind fails too.
    pub forever: bool,
    /// The error returned.
    pub error: FaultError,
}

/// What a crash keeps of bytes written but not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Lose every unsynced byte.
    DropUnsynced,
    /// Keep a pseudo-random prefix of each file's unsynced appended bytes (seeded).
    TornTail(u64),
}

#[derive(Debug, Default, Clone)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default, Clone)]
struct Dir {
    live: BTreeMap<String, Entry>,
    durable: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
    next_inode: u64,
    inodes: HashMap<u64, Inode>,
    dirs: HashMap<PathBuf, Dir>,
    ops: u64,
    counts: HashMap<OpKind, u64>,
    faults: Vec<Fault>,
    crash_after: Option<u64>,
    crashed: bool,
}

/// The simulated file system. Cloning gives another handle to the same state.
#[derive(Debug, Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

fn norm(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn split(path: &Path) -> (PathBuf, String) {
    let p = norm(path);
    let name = p
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = p
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| "/".into());
    (parent, name)
}

fn err(kind: io::ErrorKind, msg: &str) -> io::Error {
    io::Error::new(kind, msg.to_string())
}

fn crashed_err() -> io::Error {
    err(io::ErrorKind::Other, "simulated crash: the process is gone")
}

impl SimFs {
    /// An empty file system holding only the root directory.
    pub fn new() -> Self {
        let mut st = State::default();
        st.dirs.insert("/".into(), Dir::default());
        SimFs {
            state: Arc::new(Mutex::new(st)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a fault.
    pub fn add_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every fault (the disk works again, for example after space was freed).
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Every call after the next `n` fails, as if the process died at that point.
    pub fn crash_after(&self, n: u64) {
        let mut st = self.lock();
        st.crash_after = Some(st.ops + n);
    }

    /// The number of calls made so far (each kind counted).
    pub fn op_count(&self) -> u64 {
        self.lock().ops
    }

    /// How many calls of a kind were made so far.
    pub fn count(&self, kind: OpKind) -> u64 {
        self.lock().counts.get(&kind).copied().unwrap_or(0)
    }

    /// True once a `crash_after` point was passed.
    pub fn has_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Simulates a power loss: only durable bytes and directory entries remain. Handles opened
    /// before fail from now on. Faults and the crash point are cleared.
    pub fn crash(&self, mode: CrashMode) {
        let mut st = self.lock();
        let mut rng = match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::TornTail(seed) => seed | 1,
        };
        let mut next = || {
            // xorshift64
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        // Directories survive only when reachable through durable entries.
        let mut dirs: HashMap<PathBuf, Dir> = HashMap::new();
        let mut keep_inodes = Vec::new();
        let mut stack = vec![PathBuf::from("/")];
        while let Some(p) = stack.pop() {
            let Some(d) = st.dirs.get(&p) else { continue };
            let entries = d.durable.clone();
            for (name, e) in &entries {
                match e {
                    Entry::Dir => stack.push(p.join(name)),
                    Entry::File(ino) => keep_inodes.push(*ino),
                }
            }
            dirs.insert(
                p,
                Dir {
                    live: entries.clone(),
                    durable: entries,
                },
            );
        }
        let mut inodes = HashMap::new();
        for ino in keep_inodes {
            if let Some(node) = st.inodes.get(&ino) {
                let mut content = node.durable.clone();
                if mode != CrashMode::DropUnsynced
                    && node.live.len() > content.len()
                    && node.live.starts_with(&content)
                {
                    let extra = node.live.len() - content.len();
                    let keep = (next() % (extra as u64 + 1)) as usize;
                    content.extend_from_slice(
                        &node.live[node.durable.len()..node.durable.len() + keep],
                    );
                }
                inodes.insert(
                    ino,
                    Inode {
                        live: content.clone(),
                        durable: content,
                    },
                );
            }
        }
        st.generation += 1;
        st.dirs = dirs;
        st.inodes = inodes;
        st.faults.clear();
        st.crash_after = None;
        st.crashed = false;
    }

    /// Reads a file's live bytes (for tests that damage files).
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.lock();
        let ino = lookup(&st, path)?;
        Ok(st.inodes[&ino].live.clone())
    }

    /// Replaces a file's bytes, live and durable (for tests that damage files).
    pub fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        let ino = lookup(&st, path)?;
        let node = st.inodes.get_mut(&ino).expect("inode of a live entry");
        node.live = bytes.to_vec();
        node.durable = bytes.to_vec();
        Ok(())
    }
}

fn lookup(st: &State, path: &Path) -> io::Result<u64> {
    let (parent, name) = split(path);
    match st.dirs.get(&parent).and_then(|d| d.live.get(&name)) {
        Some(Entry::File(ino)) => Ok(*ino),
        Some(Entry::Dir) => Err(err(io::ErrorKind::Other, "is a directory")),
        None => Err(err(io::ErrorKind::NotFound, "no such file")),
    }
}

impl State {
    /// Counts a call and applies the crash point and faults.
    fn op(&mut self, kind: OpKind) -> io::Result<()> {
        if self.crashed {
            return Err(crashed_err());
        }
        self.ops += 1;
        if let Some(limit) = self.crash_after {
            if self.ops > limit {
                self.crashed = true;
                return Err(crashed_err());
            }
        }
        let count = {
            let c = self.counts.entry(kind).or_insert(0);
            *c += 1;
            *c
        };
        for f in &self.faults {
            if f.kind == kind && (count == f.nth || (f.forever && count > f.nth)) {
                return Err(match f.error {
                    FaultError::Io => io::Error::from_raw_os_error(libc::EIO),
                    FaultError::NoSpace => io::Error::from_raw_os_error(libc::ENOSPC),
                    FaultError::TooManyFiles => io::Error::from_raw_os_error(libc::EMFILE),
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    generation: u64,
    writable: bool,
    /// Opened for direct writes: misaligned writes fail with EINVAL, as O_DIRECT does.
    direct: bool,
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

impl FileSystem for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let mut st = self.lock();
        let (parent, name) = split(path);
        let creates = matches!(mode, OpenMode::CreateNew | OpenMode::CreateTruncate);
        st.op(if creates {
            OpKind::Create
        } else {
            OpKind::Read
        })?;
        if !st.dirs.contains_key(&parent) {
            return Err(err(io::ErrorKind::NotFound, "no such directory"));
        }
        let existing = st.dirs[&parent].live.get(&name).copied();
        let inode = match (existing, mode) {
            (Some(Entry::Dir), _) => return Err(err(io::ErrorKind::Other, "is a directory")),
            (Some(Entry::File(_)), OpenMode::CreateNew) => {
                return Err(err(io::ErrorKind::AlreadyExists, "file exists"))
            }
            (Some(Entry::File(ino)), OpenMode::CreateTruncate) => {
                st.inodes.get_mut(&ino).expect("inode").live.clear();
                ino
            }
            (Some(Entry::File(ino)), _) => ino,
            (None, OpenMode::Read | OpenMode::ReadWrite) => {
                return Err(err(io::ErrorKind::NotFound, "no such file"))
            }
            (None, _) => {
                st.next_inode += 1;
                let ino = st.next_inode;
                st.inodes.insert(ino, Inode::default());
                st.dirs
                    .get_mut(&parent)
                    .expect("parent")
                    .live
                    .insert(name, Entry::File(ino));
                ino
            }
        };
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            inode,
            generation: st.generation,
            writable: mode != OpenMode::Read,
            direct: false,
        }))
    }

    fn open_direct(&self, path: &Path) -> io::Result<FileRef> {
        let mut st = self.lock();
        st.op(OpKind::Read)?;
        let inode = lookup(&st, path)?;
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            inode,
            generation: st.generation,
            writable: true,
            direct: true,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.op(OpKind::Create)?;
        let p = norm(path);
        let mut cur = PathBuf::from("/");
        for c in p.components().skip(1) {
            let Component::Normal(name) = c else { continue };
            let name = name.to_string_lossy().into_owned();
            let child = cur.join(&name);
            if !st.dirs.contains_key(&child) {
                st.dirs.insert(child.clone(), Dir::default());
                st.dirs
                    .get_mut(&cur)
                    .expect("parent dir")
                    .live
                    .insert(name, Entry::Dir);
            }
            cur = child;
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut st = self.lock();
        st.op(OpKind::Read)?;
        match st.dirs.get(&norm(path)) {
            Some(d) => Ok(d.live.keys().cloned().collect()),
            None => Err(err(io::ErrorKind::NotFound, "no such directory")),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.op(OpKind::Remove)?;
        let (parent, name) = split(path);
        let dir = st
            .dirs
            .get_mut(&parent)
            .ok_or_else(|| err(io::ErrorKind::NotFound, "no such directory"))?;
        match dir.live.get(&name) {
            Some(Entry::File(_)) => {
                dir.live.remove(&name);
                Ok(())
            }
            Some(Entry::Dir) => Err(err(io::ErrorKind::Other, "is a directory")),
            None => Err(err(io::ErrorKind::NotFound, "no such file")),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.op(OpKind::Remove)?;
        let p = norm(path);
        let (parent, name) = split(&p);
        let removed = st
            .dirs
            .get_mut(&parent)
            .map(|d| d.live.remove(&name).is_some())
            .unwrap_or(false);
        if !removed {
            return Err(err(io::ErrorKind::NotFound, "no such directory"));
        }
        // Forget the subtree's live view; a crash before the parent's sync_dir brings it back.
        let sub: Vec<PathBuf> = st
            .dirs
            .keys()
            .filter(|k| k.starts_with(&p))
            .cloned()
            .collect();
        for k in sub {
            if let Some(d) = st.dirs.get_mut(&k) {
                d.live.clear();
            }
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.op(OpKind::Rename)?;
        let (fp, fname) = split(from);
        let (tp, tname) = split(to);
        let entry = st
            .dirs
            .get_mut(&fp)
            .and_then(|d| d.live.remove(&fname))
            .ok_or_else(|| err(io::ErrorKind::NotFound, "no such file"))?;
        match st.dirs.get_mut(&tp) {
            Some(d) => {
                d.live.insert(tname, entry);
                Ok(())
            }
            None => Err(err(io::ErrorKind::NotFound, "no such directory")),
        }
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if path.as_os_str().is_empty() {
            // As the OS: an empty path names nothing.
            return Err(err(io::ErrorKind::NotFound, "empty path"));
        }
        let mut st = self.lock();
        st.op(OpKind::SyncDir)?;
        match st.dirs.get_mut(&norm(path)) {
            Some(d) => {
                d.durable = d.live.clone();
                Ok(())
            }
            None => Err(err(io::ErrorKind::NotFound, "no such directory")),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.lock();
        let p = norm(path);
        if st.dirs.contains_key(&p)
            && (p == Path::new("/") || {
                let (parent, name) = split(&p);
                st.dirs
                    .get(&parent)
                    .is_some_and(|d| d.live.contains_key(&name))
            })
        {
            return true;
        }
        lookup(&st, &p).is_ok()
    }

    fn is_dir(&self, path: &Path) -> bool {
        let st = self.lock();
        let p = norm(path);
        let (parent, name) = split(&p);
        p == Path::new("/")
            || matches!(
                st.dirs.get(&parent).and_then(|d| d.live.get(&name)),
                Some(Entry::Dir)
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_drops_unsynced_bytes_and_entries() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let f = fs.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b" world", 5).unwrap();
        // The entry of "a" is not durable yet: a crash loses the file.
        fs.crash(CrashMode::DropUnsynced);
        assert!(!fs.exists(Path::new("/d/a")));
        assert!(f.len().is_err(), "old handles die with the crash");

        let f = fs.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        f.write_all_at(b" world", 5).unwrap();
        fs.crash(CrashMode::DropUnsynced);
        assert_eq!(fs.read_file(Path::new("/d/a")).unwrap(), b"hello");
    }

    #[test]
    fn faults_fail_the_nth_call_once_or_forever() {
        let fs = SimFs::new();
        let f = fs.open(Path::new("/a"), OpenMode::CreateNew).unwrap();
        fs.add_fault(Fault {
            kind: OpKind::Sync,
            nth: 2,
            forever: false,
            error: FaultError::Io,
        });
        assert!(f.sync_data().is_ok());
        assert!(f.sync_data().is_err());
        assert!(f.sync_data().is_ok());
        fs.add_fault(Fault {
            kind: OpKind::Write,
            nth: 1,
            forever: true,
            error: FaultError::NoSpace,
        });
        let e = f.write_all_at(b"x", 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(f.write_all_at(b"x", 0).is_err());
        fs.clear_faults();
        assert!(f.write_all_at(b"x", 0).is_ok());
    }

    #[test]
    fn crash_after_stops_every_later_call() {
        let fs = SimFs::new();
        let f = fs.open(Path::new("/a"), OpenMode::CreateNew).unwrap();
        fs.crash_after(1);
        assert!(f.write_all_at(b"x", 0).is_ok());
        assert!(f.write_all_at(b"y", 1).is_err());
        assert!(fs.has_crashed());
    }

    #[test]
    fn torn_tail_keeps_a_prefix_of_unsynced_appends() {
        for seed in 1..50 {
            let fs = SimFs::new();
            let f = fs.open(Path::new("/a"), OpenMode::CreateNew).unwrap();
            fs.sync_dir(Path::new("/")).unwrap();
            f.write_all_at(b"abc", 0).unwrap();
            f.sync_data().unwrap();
            f.write_all_at(b"defgh", 3).unwrap();
            fs.crash(CrashMode::TornTail(seed));
            let got = fs.read_file(Path::new("/a")).unwrap();
            assert!(got.len() >= 3 && b"abcdefgh".starts_with(&got));
        }
    }
}
