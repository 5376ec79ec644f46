//! The storage of one replicated log: the message log itself as the Raft log, with two small
//! state files beside it.
//!
//! ```text
//! <group dir>/
//!   log/           the message log (docs/format.md): one or more batches per Raft entry
//!   raft-vote      the vote and the last purged log id (log_store)
//!   raft-applied   the last applied log id and membership (state_machine)
//!   raft-snapshot  the last compaction: the entry a snapshot stands for (snapshot)
//! ```
//!
//! - `entry`: a Raft entry as a stored batch and back;
//! - `locator`: from a Raft index to the offsets of its batch;
//! - `log_store`: openraft's `RaftLogStorage` on the message log;
//! - `recent`: the last entries appended, kept in memory for replication and apply;
//! - `state_machine`: openraft's `RaftStateMachine`: applying an entry moves the log's commit
//!   point, so readers see it;
//! - `snapshot`: what a replica joining after a compaction installs;
//! - `state_file`: the layout of the state files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_storage::{FsRef, Log, LogConfig};

use crate::error::Result;

pub mod entry;
pub mod locator;
pub mod log_store;
mod recent;
pub mod snapshot;
pub mod state_file;
pub mod state_machine;
#[cfg(test)]
mod tests;

pub use locator::Locator;
pub use log_store::LogStore;
pub use state_machine::{ApplyHook, HookEntry, StateMachine};

/// The message log of a replicated log and where its Raft entries are.
#[derive(Debug)]
pub struct Replica {
    pub(crate) fs: FsRef,
    pub(crate) dir: PathBuf,
    pub(crate) log: Log,
    pub(crate) locator: Locator,
    /// The last entries appended, for reads that would otherwise go back to the disk.
    pub(crate) recent: recent::Recent,
    /// The last entry the state machine has made durable through its hook and found on every
    /// replica ([`Command::Compact`](crate::Command::Compact)): the group's log may drop it and
    /// those before it. Watched by the group, which has openraft purge them.
    pub(crate) compact_to: tokio::sync::watch::Sender<u64>,
    /// Held while the log's extent changes (an append, a truncation, a purge, a start over):
    /// a snapshot is installed by the state machine's task, the others by openraft's core.
    layout: std::sync::Mutex<()>,
}

impl Replica {
    /// Opens (or creates) the replicated log in `dir`. Its readers see nothing until the
    /// group commits (the commit point starts at the log's start).
    pub fn open(fs: FsRef, dir: &Path, config: LogConfig) -> Result<Arc<Replica>> {
        fs.create_dir_all(dir).map_err(|source| crate::Error::Io {
            path: dir.into(),
            source,
        })?;
        let log = Log::open(fs.clone(), dir.join("log"), config)?;
        Replica::attach(fs, dir, log)
    }

    /// Makes `log`, opened by its owner (a topic partition of the store), the log of a
    /// replicated log whose state files live in `dir`.
    pub fn attach(fs: FsRef, dir: &Path, log: Log) -> Result<Arc<Replica>> {
        fs.create_dir_all(dir).map_err(|source| crate::Error::Io {
            path: dir.into(),
            source,
        })?;
        log.set_commit_end(log.start_offset());
        let locator = Locator::new(log.clone());
        if let Some(at) = locator.torn_tail()? {
            // Some batches of the last entry only: it was never reported durable, so no node
            // counted this one in a majority for it.
            tracing::warn!(dir = %dir.display(), offset = %at, "dropping a torn last entry");
            log.truncate_from(at)?;
        }
        Ok(Arc::new(Replica {
            fs,
            dir: dir.into(),
            locator,
            recent: recent::Recent::default(),
            log,
            compact_to: tokio::sync::watch::Sender::new(0),
            layout: std::sync::Mutex::new(()),
        }))
    }

    /// Holds the log's extent still ([`Replica::layout`]).
    pub(crate) fn layout(&self) -> std::sync::MutexGuard<'_, ()> {
        self.layout.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the log continue at offset `start` after entry `last` of a snapshot: kept when it
    /// holds `last` itself, ending at `start`; otherwise started over, empty, at `start`.
    /// Answers whether it started over.
    pub(crate) fn continue_at(
        &self,
        last: openraft::LogId<crate::NodeId>,
        start: u64,
    ) -> Result<bool> {
        let _layout = self.layout();
        if let Some(p) = self.locator.find(last.index)? {
            if p.term == last.leader_id.term && p.next.0 == start {
                return Ok(false);
            }
        }
        self.recent.clear();
        self.log.restart_at(sluice_storage::Offset(start))?;
        self.locator.forget_from(0);
        Ok(true)
    }

    /// The message log; readers of it see committed entries only.
    pub fn log(&self) -> &Log {
        &self.log
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}
