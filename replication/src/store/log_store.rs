//! openraft's `RaftLogStorage` on the message log: an entry is appended as its batch, the
//! append is reported once the batch is fsynced, and a conflict truncates the log itself.
//! The vote, and the last purged log id, live in `raft-vote` ([`super::state_file`]), saved
//! and fsynced before the vote is reported saved.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use super::entry::{self, Entry};
use super::locator::Place;
use super::{state_file, Replica};
use crate::error::{Error, Result};
use crate::types::{NodeId, TypeConfig};

const VOTE_FILE: &str = "raft-vote";
const VOTE_MAGIC: [u8; 4] = *b"SLVT";
/// About how many bytes of batches one read of entries takes from the log at a time.
pub const ENTRY_READ_BYTES: usize = 1 << 20;
/// About the most bytes of entries one append-entries request carries to a follower (well
/// within a cluster frame, `net::FRAME_BYTES_MAX`): a read for replication stops after the
/// entry that reaches it.
pub const REPLICATION_READ_BYTES: usize = 2 << 20;

/// What `raft-vote` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VoteState {
    pub(crate) vote: Option<Vote<NodeId>>,
    pub(crate) purged: Option<LogId<NodeId>>,
}

/// The Raft log of one replicated log. Clones share it.
#[derive(Clone, Debug)]
pub struct LogStore {
    replica: Arc<Replica>,
    state: Arc<Mutex<VoteState>>,
}

fn storage_error(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T, StorageError<NodeId>> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(storage_error),
        Err(e) => Err(storage_error(format!("storage task failed: {e}"))),
    }
}

impl LogStore {
    /// The Raft log of `replica`, with its saved vote.
    pub fn open(replica: Arc<Replica>) -> Result<LogStore> {
        let path = replica.path(VOTE_FILE);
        let state = state_file::load(&*replica.fs, &path, VOTE_MAGIC)?.unwrap_or_default();
        Ok(LogStore {
            replica,
            state: Arc::new(Mutex::new(state)),
        })
    }

    fn state(&self) -> VoteState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn save(&self, state: VoteState) -> Result<(), StorageError<NodeId>> {
        let replica = self.replica.clone();
        let saved = state.clone();
        blocking(move || {
            let path = replica.path(VOTE_FILE);
            state_file::save(&*replica.fs, &path, VOTE_MAGIC, &saved)
        })
        .await?;
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        Ok(())
    }
}

impl Replica {
    /// The entries `start..end` (to the end of the log when `end` is `None`), in order; with
    /// `budget`, only up to the entry that reaches that many bytes (at least one).
    pub(crate) fn entries(
        &self,
        start: u64,
        end: Option<u64>,
        budget: Option<usize>,
    ) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        if end.is_some_and(|e| e <= start) {
            return Ok(out);
        }
        let Some(first) = self.locator.find(start)? else {
            return Ok(out);
        };
        let (mut at, mut want) = (first.base, start);
        // The batches of the entry being gathered.
        let mut parts = Vec::new();
        let mut bytes = 0usize;
        loop {
            let batches = self.log.read_uncommitted(at, ENTRY_READ_BYTES)?;
            if batches.is_empty() {
                return Ok(out);
            }
            for b in batches {
                let s = entry::stamp_of(&b)?;
                if s.index != want {
                    return Err(Error::BadEntry(format!(
                        "{}: expected entry {want} at offset {}, found {}",
                        self.dir.display(),
                        b.header.base_offset,
                        s.index
                    )));
                }
                at = b.header.next_offset();
                bytes += b.bytes.len();
                parts.push(b);
                if s.more > 0 {
                    continue;
                }
                out.push(entry::from_batches(&parts)?);
                parts.clear();
                want += 1;
                if end.is_some_and(|e| want >= e) || budget.is_some_and(|b| bytes >= b) {
                    return Ok(out);
                }
            }
        }
    }

    /// Appends entries as batches and makes them durable with one sync.
    pub(crate) fn append_entries(&self, entries: &[Entry]) -> Result<()> {
        let _layout = self.layout();
        let mut next = None;
        for e in entries {
            let mut base = None;
            for batch in entry::to_batches(e)? {
                let info = self.log.append_replicated(batch)?;
                base.get_or_insert(info.base_offset);
                next = Some(info.next_offset());
            }
            if let (Some(base), Some(next)) = (base, next) {
                self.locator.push(Place {
                    index: e.log_id.index,
                    term: e.log_id.leader_id.term,
                    base,
                    next,
                });
            }
        }
        if let Some(n) = next {
            self.log.sync_to(n)?;
        }
        self.recent.push(entries);
        Ok(())
    }

    /// [`Replica::entries`] from memory when the entries are among the last appended
    /// ([`super::recent`]), from the disk otherwise.
    async fn entries_kept(
        self: &Arc<Self>,
        start: u64,
        end: Option<u64>,
        budget: Option<usize>,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        if let Some(kept) = end.and_then(|end| self.recent.get(start, end, budget)) {
            return Ok(kept);
        }
        let replica = self.clone();
        blocking(move || replica.entries(start, end, budget)).await
    }
}

fn range_of<RB: RangeBounds<u64>>(range: &RB) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some(e + 1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let (start, end) = range_of(&range);
        self.replica.entries_kept(start, end, None).await
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.replica
            .entries_kept(start, Some(end), Some(REPLICATION_READ_BYTES))
            .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let purged = self.state().purged;
        let replica = self.replica.clone();
        let last = blocking(move || replica.locator.last()).await?;
        let last_log_id = last
            .map(|p| {
                entry::log_id(sluice_storage::format::RaftStamp {
                    term: p.term,
                    index: p.index,
                    more: 0,
                })
            })
            .or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut state = self.state();
        state.vote = Some(*vote);
        self.save(state).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.state().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let replica = self.replica.clone();
        // Reported only once fsynced: a follower's ack and a leader's own vote in the majority
        // both mean "on disk".
        match blocking(move || replica.append_entries(&entries)).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let replica = self.replica.clone();
        blocking(move || {
            let _layout = replica.layout();
            replica.recent.forget_from(log_id.index);
            if let Some(p) = replica.locator.find(log_id.index)? {
                replica.log.truncate_from(p.base)?;
            }
            replica.locator.forget_from(log_id.index);
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut state = self.state();
        state.purged = Some(log_id);
        self.save(state).await?;
        let replica = self.replica.clone();
        blocking(move || {
            let _layout = replica.layout();
            let below = match replica.locator.find(log_id.index + 1)? {
                Some(p) => p.base,
                None => replica.log.end_offset(),
            };
            replica.log.delete_before(below)?;
            replica.recent.forget_before(log_id.index + 1);
            Ok(())
        })
        .await
    }
}
