//! openraft's `RaftStateMachine` for a replicated log. The state is the log itself: applying
//! an entry moves the log's commit point past its batch, which is when readers (subscribers,
//! consumers, Kafka fetches) first see it, and answers the offsets it was stored at.
//!
//! `raft-applied` keeps the last applied log id and membership, saved when the membership
//! changes and at most every [`APPLIED_SAVE_INTERVAL`] otherwise. A saved value behind the truth
//! only makes a restart apply some entries again, which moves the commit point to where it was.
//!
//! Snapshots: the log is never compacted behind a follower's back (snapshots are off), so a
//! follower is always caught up from the log itself; installing a snapshot is refused.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, EntryPayload, LogId, OptionalSend, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use sluice_storage::Offset;

use super::entry::Entry;
use super::{state_file, Replica};
use crate::types::{Applied, Command, Node, NodeId, TypeConfig};

const APPLIED_FILE: &str = "raft-applied";
const APPLIED_MAGIC: [u8; 4] = *b"SLAP";
/// Longest the saved applied log id may lag behind the applied one.
pub const APPLIED_SAVE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct AppliedState {
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
}

/// Told of each committed [`Command::Control`] of a group, in log order, once per apply (so
/// again after a restart for entries past the saved applied log id: handle them idempotently).
pub trait ApplyHook: Send + Sync + 'static {
    /// Applies one control entry's payload; `offset` is where the entry is stored in the log.
    fn apply(&self, index: u64, offset: u64, payload: &[u8]) -> crate::group::BoxFuture<'_, ()>;
}

/// The state machine of one replicated log.
pub struct StateMachine {
    replica: Arc<Replica>,
    state: AppliedState,
    saved_at: Instant,
    hook: Option<Arc<dyn ApplyHook>>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("replica", &self.replica.dir)
            .field("applied", &self.state.applied)
            .finish()
    }
}

fn sm_error(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

impl StateMachine {
    /// The state machine of `replica`: its saved applied state, and the commit point of its log
    /// at the end of the last applied entry. With a `hook` whose state lives in memory only,
    /// nothing is taken as applied at open, so every committed entry is applied again.
    pub fn open(
        replica: Arc<Replica>,
        hook: Option<Arc<dyn ApplyHook>>,
    ) -> crate::Result<StateMachine> {
        let path = replica.path(APPLIED_FILE);
        let state: AppliedState = if hook.is_some() {
            AppliedState::default()
        } else {
            state_file::load(&*replica.fs, &path, APPLIED_MAGIC)?.unwrap_or_default()
        };
        if let Some(applied) = state.applied {
            let end = match replica.locator.find(applied.index)? {
                Some(p) => p.next,
                None => replica.log.start_offset(),
            };
            replica.log.set_commit_end(end);
        }
        Ok(StateMachine {
            replica,
            state,
            saved_at: Instant::now(),
            hook,
        })
    }

    async fn save(&mut self) -> Result<(), StorageError<NodeId>> {
        let replica = self.replica.clone();
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            state_file::save(
                &*replica.fs,
                &replica.path(APPLIED_FILE),
                APPLIED_MAGIC,
                &state,
            )
        })
        .await
        .map_err(sm_error)?
        .map_err(sm_error)?;
        self.saved_at = Instant::now();
        Ok(())
    }

    /// The offsets of entry `index`, and the commit point after it.
    fn place(&self, index: u64) -> crate::Result<(Applied, Offset)> {
        let p = self.replica.locator.find(index)?.ok_or_else(|| {
            crate::Error::BadEntry(format!("entry {index} to apply is not in the log"))
        })?;
        let applied = Applied {
            base_offset: p.base.0,
            last_offset: p.next.0 - 1,
        };
        Ok((applied, p.next))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        Ok((self.state.applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut membership_changed = false;
        let mut commit = None;
        for e in entries {
            let (applied, next) = self.place(e.log_id.index).map_err(sm_error)?;
            match &e.payload {
                EntryPayload::Membership(m) => {
                    self.state.membership = StoredMembership::new(Some(e.log_id), m.clone());
                    membership_changed = true;
                }
                EntryPayload::Normal(Command::Control(payload)) => {
                    if let Some(h) = &self.hook {
                        h.apply(e.log_id.index, applied.base_offset, payload).await;
                    }
                }
                _ => {}
            }
            self.state.applied = Some(e.log_id);
            commit = Some(next);
            out.push(applied);
        }
        if let Some(end) = commit {
            self.replica.log.set_commit_end(end);
        }
        let due = membership_changed || self.saved_at.elapsed() >= APPLIED_SAVE_INTERVAL;
        if due && self.hook.is_none() {
            self.save().await?;
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            applied: self.state.applied,
            membership: self.state.membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        Err(sm_error(format!(
            "{}: a replicated log is caught up from the log, not from a snapshot ({})",
            self.replica.dir.display(),
            meta.snapshot_id
        )))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(None)
    }
}

/// Builds the (empty) snapshot openraft asks for when told to: the applied log id and
/// membership, with no data, since the data is the log.
#[derive(Debug)]
pub struct SnapshotBuilder {
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let id = self
            .applied
            .map(|l| format!("{}-{}", l.leader_id.term, l.index))
            .unwrap_or_else(|| "empty".into());
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id: self.applied,
                last_membership: self.membership.clone(),
                snapshot_id: id,
            },
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}
