//! An in-memory file system that remembers what is durable, for crash and fault tests.
//!
//! Every file is an inode with two contents: `live` (what reads see) and `durable` (what a crash
//! keeps). `sync_data` copies live to durable. Every directory is an inode too, with live and
//! durable entries; `sync_dir` copies live entries to durable. [`SimFs::crash`] replaces the
//! whole state by its durable image: files and directories created, renamed or removed since the
//! last `sync_dir` of their directory are undone, and unsynced bytes are lost (or, with
//! [`CrashMode::TornTail`], a random prefix of the unsynced appended bytes survives, as a torn
//! write would leave).
//!
//! `remove_dir_all` is not atomic, as on a real file system: it removes the entries of the tree
//! one by one, children before their directory, in a hash order of their names (as a directory
//! index hands them out; [`SimFs::set_removal_seed`] changes it). Each removal is one call, counted
//! and subject to faults and crash points, and reaches the durable image at once, like a
//! journaling file system that committed the unlinks made so far: a crash in the middle leaves
//! the tree partly removed, with holes anywhere in it.
//!
//! A [`Fault`] fails the Nth call of one kind (once, or forever from then on), and
//! [`SimFs::crash_after`] makes every call after the Nth fail as if the process had died there.
//! Handles opened before a crash fail afterwards, like file descriptors of a dead process.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{FileRef, FileSystem, OpenMode};

mod file;
#[cfg(test)]
mod tests;

use file::{SimFile, SimLock};

/// The kinds of calls a fault can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `write_all_at` and `set_len`.
    Write,
    /// `sync_data`, and a sync of the whole file system (`SyncAll`).
    Sync,
    /// `sync_dir`.
    SyncDir,
    /// `open` with a create mode.
    Create,
    /// `rename`.
    Rename,
    /// `remove_file`, and each entry `remove_dir_all` removes.
    Remove,
    /// `read_at` and `map`.
    Read,
    /// `open` of an existing file (and `open_direct`).
    Open,
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
    /// A directory, by its id in `State::dirs`.
    Dir(u64),
}

/// Id of the root directory.
const ROOT: u64 = 0;

#[derive(Debug, Default)]
struct State {
    generation: u64,
    next_inode: u64,
    inodes: HashMap<u64, Inode>,
    next_dir: u64,
    dirs: HashMap<u64, Dir>,
    /// Seed of the order in which `remove_dir_all` removes the entries of a directory.
    removal_seed: u64,
    ops: u64,
    counts: HashMap<OpKind, u64>,
    faults: Vec<Fault>,
    crash_after: Option<u64>,
    crashed: bool,
    /// How long each `sync_data` and whole-file-system sync takes (zero by default), so tests
    /// can make syncs of different threads overlap.
    sync_delay: std::time::Duration,
    /// Files an advisory lock is held on (dropped at a crash, as a dead process's locks).
    locks: std::collections::HashSet<PathBuf>,
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

/// The directory `path` names, following live entries.
fn resolve_dir(st: &State, path: &Path) -> Option<u64> {
    let mut cur = ROOT;
    for c in norm(path).components() {
        let Component::Normal(name) = c else { continue };
        match st.dirs.get(&cur)?.live.get(&*name.to_string_lossy()) {
            Some(Entry::Dir(id)) => cur = *id,
            _ => return None,
        }
    }
    Some(cur)
}

/// The live entry `path` names, with the id of the directory holding it.
fn resolve(st: &State, path: &Path) -> Option<(u64, String, Entry)> {
    let (parent, name) = split(path);
    let d = resolve_dir(st, &parent)?;
    let e = *st.dirs.get(&d)?.live.get(&name)?;
    Some((d, name, e))
}

/// A 64-bit FNV-1a hash of `name`, mixed with `seed`.
fn name_hash(seed: u64, name: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
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
        st.dirs.insert(ROOT, Dir::default());
        SimFs {
            state: Arc::new(Mutex::new(st)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every sync take `delay` (outside the file system's lock, as a disk's flush would).
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        self.lock().sync_delay = delay;
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

    /// Changes the order in which `remove_dir_all` removes the entries of each directory.
    pub fn set_removal_seed(&self, seed: u64) {
        self.lock().removal_seed = seed;
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
        let mut dirs: HashMap<u64, Dir> = HashMap::new();
        let mut keep_inodes = Vec::new();
        let mut stack = vec![ROOT];
        while let Some(id) = stack.pop() {
            if dirs.contains_key(&id) {
                continue;
            }
            let Some(d) = st.dirs.get(&id) else { continue };
            let entries = d.durable.clone();
            for e in entries.values() {
                match e {
                    Entry::Dir(child) => stack.push(*child),
                    Entry::File(ino) => keep_inodes.push(*ino),
                }
            }
            dirs.insert(
                id,
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
        st.locks.clear();
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
    match resolve(st, path) {
        Some((_, _, Entry::File(ino))) => Ok(ino),
        Some((_, _, Entry::Dir(_))) => Err(err(io::ErrorKind::Other, "is a directory")),
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

impl State {
    /// Removes the entry `name` of directory `dir`, and first everything beneath it: one call per
    /// entry, each durable at once (see the module documentation).
    fn remove_tree(&mut self, dir: u64, name: &str) -> io::Result<()> {
        let entry = self.dirs.get(&dir).and_then(|d| d.live.get(name).copied());
        if let Some(Entry::Dir(id)) = entry {
            let mut names: Vec<String> = self.dirs[&id].live.keys().cloned().collect();
            let seed = self.removal_seed;
            names.sort_by_key(|n| (name_hash(seed, n), n.clone()));
            for n in names {
                self.remove_tree(id, &n)?;
            }
        }
        self.op(OpKind::Remove)?;
        let d = self.dirs.get_mut(&dir).expect("directory of a live entry");
        d.live.remove(name);
        d.durable.remove(name);
        Ok(())
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
            OpKind::Open
        })?;
        let Some(pid) = resolve_dir(&st, &parent) else {
            return Err(err(io::ErrorKind::NotFound, "no such directory"));
        };
        let existing = st.dirs[&pid].live.get(&name).copied();
        let inode = match (existing, mode) {
            (Some(Entry::Dir(_)), _) => return Err(err(io::ErrorKind::Other, "is a directory")),
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
                    .get_mut(&pid)
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
        st.op(OpKind::Open)?;
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
        let mut cur = ROOT;
        for c in norm(path).components() {
            let Component::Normal(name) = c else { continue };
            let name = name.to_string_lossy().into_owned();
            match st.dirs[&cur].live.get(&name).copied() {
                Some(Entry::Dir(id)) => cur = id,
                Some(Entry::File(_)) => return Err(err(io::ErrorKind::AlreadyExists, "a file")),
                None => {
                    st.next_dir += 1;
                    let id = st.next_dir;
                    st.dirs.insert(id, Dir::default());
                    st.dirs
                        .get_mut(&cur)
                        .expect("parent dir")
                        .live
                        .insert(name, Entry::Dir(id));
                    cur = id;
                }
            }
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut st = self.lock();
        st.op(OpKind::Read)?;
        match resolve_dir(&st, path) {
            Some(d) => Ok(st.dirs[&d].live.keys().cloned().collect()),
            None => Err(err(io::ErrorKind::NotFound, "no such directory")),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.op(OpKind::Remove)?;
        match resolve(&st, path) {
            Some((d, name, Entry::File(_))) => {
                st.dirs.get_mut(&d).expect("parent").live.remove(&name);
                Ok(())
            }
            Some((_, _, Entry::Dir(_))) => Err(err(io::ErrorKind::Other, "is a directory")),
            None => Err(err(io::ErrorKind::NotFound, "no such file")),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if st.crashed {
            return Err(crashed_err());
        }
        match resolve(&st, path) {
            Some((d, name, Entry::Dir(_))) => st.remove_tree(d, &name),
            Some((_, _, Entry::File(_))) => Err(err(io::ErrorKind::Other, "not a directory")),
            None => Err(err(io::ErrorKind::NotFound, "no such directory")),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.op(OpKind::Rename)?;
        let (fd, fname, entry) =
            resolve(&st, from).ok_or_else(|| err(io::ErrorKind::NotFound, "no such file"))?;
        let (tp, tname) = split(to);
        let td = resolve_dir(&st, &tp)
            .ok_or_else(|| err(io::ErrorKind::NotFound, "no such directory"))?;
        if let (Entry::Dir(_), Some(e)) = (entry, st.dirs[&td].live.get(&tname)) {
            let empty = matches!(e, Entry::Dir(id) if st.dirs[id].live.is_empty());
            if !empty {
                return Err(err(io::ErrorKind::AlreadyExists, "target exists"));
            }
        }
        st.dirs
            .get_mut(&fd)
            .expect("source dir")
            .live
            .remove(&fname);
        st.dirs
            .get_mut(&td)
            .expect("target dir")
            .live
            .insert(tname, entry);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if path.as_os_str().is_empty() {
            // As the OS: an empty path names nothing.
            return Err(err(io::ErrorKind::NotFound, "empty path"));
        }
        let mut st = self.lock();
        st.op(OpKind::SyncDir)?;
        match resolve_dir(&st, path) {
            Some(id) => {
                let d = st.dirs.get_mut(&id).expect("resolved dir");
                d.durable = d.live.clone();
                Ok(())
            }
            None => Err(err(io::ErrorKind::NotFound, "no such directory")),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.lock();
        norm(path) == Path::new("/") || resolve(&st, path).is_some()
    }

    fn is_dir(&self, path: &Path) -> bool {
        let st = self.lock();
        resolve_dir(&st, path).is_some()
    }

    fn open_sync_all(&self, path: &Path) -> io::Result<super::SyncAllRef> {
        let st = self.lock();
        if st.crashed {
            return Err(crashed_err());
        }
        if resolve_dir(&st, path).is_none() {
            return Err(err(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(Box::new(file::SimSyncAll {
            state: self.state.clone(),
            generation: st.generation,
        }))
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<super::LockRef> {
        let mut st = self.lock();
        let p = norm(path);
        if !st.locks.insert(p.clone()) {
            return Err(err(io::ErrorKind::WouldBlock, "lock held"));
        }
        Ok(Box::new(SimLock {
            state: self.state.clone(),
            path: p,
            generation: st.generation,
        }))
    }
}
