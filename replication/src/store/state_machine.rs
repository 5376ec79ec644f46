//! openraft's `RaftStateMachine` for a replicated log. The state is the log itself: applying
//! an entry moves the log's commit point past its batch, which is when readers (subscribers,
//! consumers, Kafka fetches) first see it, and answers the offsets it was stored at.
//!
//! `raft-applied` keeps the last applied log id and membership, saved when the membership
//! changes and at most every [`APPLIED_SAVE_INTERVAL`] otherwise. A saved value behind the truth
//! only makes a restart apply some entries again, which moves the commit point to where it was.
//!
//! A group with an [`ApplyHook`] (a replicated queue) keeps its state outside: its
//! `raft-applied` is written only when the group compacts ([`Command::Compact`]), once the hook
//! has made its state durable, and names the last entry compacted. A restart applies every
//! entry after it again; the hook handles them idempotently. A hook whose state is small
//! beside its log (a topic partition's consumer groups, [`ApplyHook::saves_applied`]) has
//! `raft-applied` saved as without a hook, each time once [`ApplyHook::persist`] made its
//! state durable.
//!
//! Snapshots ([`super::snapshot`]): the log is never compacted behind a follower's back; a
//! compaction ([`Command::Compact`]) records the entry it cut at in `raft-snapshot`, and the
//! snapshot openraft builds to purge the log stands for that entry. Only a replica that joins
//! after the cut (a node added to the group) needs one: the leader then sends where its log
//! continues and, for a queue, the hook's committed state; the replica starts its log over
//! there and installs the state.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, CommittedLeaderId, EntryPayload, LogId, OptionalSend, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use sluice_storage::Offset;

use super::entry::Entry;
use super::snapshot::{SnapshotData, SnapshotRecord, RECORD_FILE, RECORD_MAGIC};
use super::{state_file, Replica};
use crate::types::{Applied, Command, Node, NodeId, TypeConfig};

const APPLIED_FILE: &str = "raft-applied";
const APPLIED_MAGIC: [u8; 4] = *b"SLAP";
/// Longest the saved applied log id may lag behind the applied one.
pub const APPLIED_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// How many of the latest memberships applied are kept in memory, to name the one in force at
/// a compaction's entry (a membership change is two entries, joint then uniform).
pub const MEMBERSHIPS_KEPT: usize = 8;

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

    /// Applies committed entries in log order, all at once; by default one by one with
    /// [`ApplyHook::apply`] and [`ApplyHook::pass`]. A hook whose every call costs a thread hop
    /// applies them together.
    fn apply_all(&self, entries: Vec<HookEntry>) -> crate::group::BoxFuture<'_, ()> {
        Box::pin(async move {
            for e in entries {
                match e {
                    HookEntry::Control {
                        index,
                        offset,
                        payload,
                    } => self.apply(index, offset, &payload).await,
                    HookEntry::Pass { index, offset } => self.pass(index, offset).await,
                }
            }
        })
    }

    /// Told of a committed entry stored at `offset` that holds nothing for the hook (a new
    /// leader's blank entry, a membership change), in log order with the others. By default
    /// nothing happens.
    fn pass(&self, index: u64, offset: u64) -> crate::group::BoxFuture<'_, ()> {
        let _ = (index, offset);
        Box::pin(async {})
    }

    /// Applies a [`Command::Compact`] stored at `offset`: makes the state of every entry
    /// applied so far durable, so that entries up to `upto` need not be applied again after a
    /// restart; answers whether it did. Only then may the group drop them. By default it does
    /// not, and nothing is dropped.
    fn compact(&self, upto: u64, offset: u64) -> crate::group::BoxFuture<'_, bool> {
        let _ = (upto, offset);
        Box::pin(async { false })
    }

    /// The committed state, for a snapshot a replica joining after a compaction installs (a
    /// queue's ack state); `None` when the hook cannot give one (its group's snapshots are
    /// then refused by the replicas). By default `None`.
    fn snapshot(&self) -> crate::group::BoxFuture<'_, Option<Vec<u8>>> {
        Box::pin(async { None })
    }

    /// Replaces the hook's state with `state` from another replica's
    /// [`ApplyHook::snapshot`], durably. By default refused.
    fn install(&self, state: Vec<u8>) -> crate::group::BoxFuture<'_, Result<(), String>> {
        let _ = state;
        Box::pin(async { Err("this group's state cannot be installed from a snapshot".into()) })
    }

    /// True when the group saves `raft-applied` as a group without a hook does (at most every
    /// [`APPLIED_SAVE_INTERVAL`], naming the last entry applied), each time once
    /// [`ApplyHook::persist`] made the hook's state durable: a hook whose state is small beside
    /// its log (a topic partition's consumer groups), so a restart does not apply the whole log
    /// again. False by default: `raft-applied` is then saved only at a compaction.
    fn saves_applied(&self) -> bool {
        false
    }

    /// Makes the state of every entry handed to the hook so far durable; answers whether it
    /// did (`raft-applied` is saved only then). Called only when [`ApplyHook::saves_applied`].
    fn persist(&self) -> crate::group::BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

/// A committed entry for an [`ApplyHook`].
#[derive(Clone, Debug)]
pub enum HookEntry {
    /// A [`Command::Control`] stored at `offset`: the hook applies `payload`.
    Control {
        /// Its Raft index.
        index: u64,
        /// Where it is stored in the log.
        offset: u64,
        /// Its bytes.
        payload: bytes::Bytes,
    },
    /// An entry holding nothing for the hook (a new leader's blank entry, a membership
    /// change), stored at `offset`.
    Pass {
        /// Its Raft index.
        index: u64,
        /// Where it is stored in the log.
        offset: u64,
    },
}

/// The state machine of one replicated log.
pub struct StateMachine {
    replica: Arc<Replica>,
    state: AppliedState,
    saved_at: Instant,
    hook: Option<Arc<dyn ApplyHook>>,
    /// `raft-applied` saved as the group applies, not only at compactions: no hook, or one
    /// that [`ApplyHook::saves_applied`].
    saves_applied: bool,
    /// The latest memberships applied, oldest first ([`MEMBERSHIPS_KEPT`]).
    memberships: std::collections::VecDeque<StoredMembership<NodeId, Node>>,
    /// The last compaction: what a snapshot stands for.
    compacted: Option<SnapshotRecord>,
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
    /// at the end of the last applied entry. With a `hook` (unless it
    /// [`ApplyHook::saves_applied`]), the saved state names the last entry compacted (none
    /// before the first compaction), so every committed entry after it is applied again.
    pub fn open(
        replica: Arc<Replica>,
        hook: Option<Arc<dyn ApplyHook>>,
    ) -> crate::Result<StateMachine> {
        let path = replica.path(APPLIED_FILE);
        let state: AppliedState =
            state_file::load(&*replica.fs, &path, APPLIED_MAGIC)?.unwrap_or_default();
        if let Some(applied) = state.applied {
            let end = match replica.locator.find(applied.index)? {
                Some(p) => p.next,
                None => replica.log.start_offset(),
            };
            replica.log.set_commit_end(end);
        }
        let compacted = state_file::load(&*replica.fs, &replica.path(RECORD_FILE), RECORD_MAGIC)?;
        Ok(StateMachine {
            replica,
            memberships: [state.membership.clone()].into(),
            state,
            saved_at: Instant::now(),
            saves_applied: hook.as_ref().map_or(true, |h| h.saves_applied()),
            hook,
            compacted,
        })
    }

    /// Writes `record` as `raft-snapshot` (atomically, synced) and keeps it.
    async fn record_compaction(
        &mut self,
        record: SnapshotRecord,
    ) -> Result<(), StorageError<NodeId>> {
        self.save_file(RECORD_FILE, RECORD_MAGIC, record.clone())
            .await?;
        self.compacted = Some(record);
        Ok(())
    }

    /// Writes `value` as the state file `name` (atomically, synced), off the async threads.
    async fn save_file<T: Serialize + Send + 'static>(
        &self,
        name: &'static str,
        magic: [u8; 4],
        value: T,
    ) -> Result<(), StorageError<NodeId>> {
        let replica = self.replica.clone();
        tokio::task::spawn_blocking(move || {
            state_file::save(&*replica.fs, &replica.path(name), magic, &value)
        })
        .await
        .map_err(sm_error)?
        .map_err(sm_error)
    }

    /// The membership in force at `log_id`, when it is among those kept.
    fn membership_at(&self, log_id: LogId<NodeId>) -> Option<StoredMembership<NodeId, Node>> {
        // The latest at or before it: in force from its own entry until the next one's.
        let at = Some(log_id);
        self.memberships
            .iter()
            .rev()
            .find(|m| m.log_id() <= &at)
            .cloned()
    }

    async fn save(&mut self) -> Result<(), StorageError<NodeId>> {
        self.write(self.state.clone()).await?;
        self.saved_at = Instant::now();
        Ok(())
    }

    /// Writes `state` as `raft-applied` (atomically, synced).
    async fn write(&self, state: AppliedState) -> Result<(), StorageError<NodeId>> {
        self.save_file(APPLIED_FILE, APPLIED_MAGIC, state).await
    }

    /// Hands the entries gathered in `calls` to the hook, if any, and empties it.
    async fn hand_to_hook(&self, calls: &mut Vec<HookEntry>) {
        if calls.is_empty() {
            return;
        }
        let entries = std::mem::take(calls);
        if let Some(h) = &self.hook {
            h.apply_all(entries).await;
        }
    }

    /// Applies [`Command::Compact`]: once the state of the entries up to `upto` is durable
    /// (the hook's, made so by the hook; without a hook, the log itself, a topic's), records
    /// them as applied for good (a restart applies only the entries after them) and tells the
    /// group it may purge the log up to `upto`. When the entry is gone already, not applied, or
    /// the hook cannot, nothing happens: the entries stay.
    async fn compact(&mut self, upto: u64, offset: u64) -> Result<(), StorageError<NodeId>> {
        let replica = self.replica.clone();
        let place = tokio::task::spawn_blocking(move || replica.locator.find(upto))
            .await
            .map_err(sm_error)?
            .map_err(sm_error)?;
        // The hook is told in any case: the entry is its to apply (its own offset, say).
        let durable = match self.hook.clone() {
            Some(hook) => hook.compact(upto, offset).await,
            None => true,
        };
        let Some(place) = place else {
            return Ok(()); // dropped already
        };
        let log_id = LogId::new(CommittedLeaderId::new(place.term, 0), upto);
        let later_membership = self.state.membership.log_id() > &Some(log_id);
        if self.state.applied < Some(log_id) || (!self.saves_applied && later_membership) {
            // Not applied yet, or (a hook's group, whose saved state would name this entry)
            // the membership in force came later: not this entry's to drop.
            tracing::warn!(dir = %self.replica.dir.display(), upto, "compaction skipped");
            return Ok(());
        }
        if !durable {
            return Ok(());
        }
        let Some(membership) = self.membership_at(log_id) else {
            // A snapshot standing for this entry would not know its members.
            tracing::warn!(dir = %self.replica.dir.display(), upto, "compaction skipped: membership at it unknown");
            return Ok(());
        };
        if !self.saves_applied {
            // A hook's group saves `raft-applied` only here: it names the last entry dropped.
            self.write(AppliedState {
                applied: Some(log_id),
                membership: self.state.membership.clone(),
            })
            .await?;
        } else {
            // Saved now, naming an entry at or after `upto`: never one before the log's start.
            self.save().await?;
        }
        self.record_compaction(SnapshotRecord {
            last: log_id,
            membership,
            start: place.next.0,
        })
        .await?;
        self.replica.compact_to.send_if_modified(|at| {
            let later = upto > *at;
            *at = (*at).max(upto);
            later
        });
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
        // The hook's share of these entries, handed to it together, in log order.
        let mut calls = Vec::new();
        for e in entries {
            let (applied, next) = self.place(e.log_id.index).map_err(sm_error)?;
            let (index, offset) = (e.log_id.index, applied.base_offset);
            match e.payload {
                EntryPayload::Membership(m) => {
                    self.state.membership = StoredMembership::new(Some(e.log_id), m);
                    self.memberships.push_back(self.state.membership.clone());
                    if self.memberships.len() > MEMBERSHIPS_KEPT {
                        self.memberships.pop_front();
                    }
                    membership_changed = true;
                    calls.push(HookEntry::Pass { index, offset });
                }
                EntryPayload::Blank => calls.push(HookEntry::Pass { index, offset }),
                EntryPayload::Normal(Command::Control(payload)) => {
                    calls.push(HookEntry::Control {
                        index,
                        offset,
                        payload,
                    });
                }
                EntryPayload::Normal(Command::Compact { upto }) => {
                    // Everything before it applied first.
                    self.hand_to_hook(&mut calls).await;
                    self.compact(upto, offset).await?;
                }
                EntryPayload::Normal(Command::Batch(_)) => {}
            }
            self.state.applied = Some(e.log_id);
            commit = Some(next);
            out.push(applied);
        }
        self.hand_to_hook(&mut calls).await;
        if let Some(end) = commit {
            self.replica.log.set_commit_end(end);
        }
        let due = membership_changed || self.saved_at.elapsed() >= APPLIED_SAVE_INTERVAL;
        if due && self.saves_applied {
            let durable = match &self.hook {
                Some(h) => h.persist().await,
                None => true,
            };
            if durable {
                self.save().await?;
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            applied: self.state.applied,
            membership: self.state.membership.clone(),
            compacted: self.compacted.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Continues the log where the snapshot's entry left it: the log is kept when it holds
    /// that entry, and started over, empty, at the snapshot's offset otherwise; a queue's
    /// state is replaced by the snapshot's. Then the entry is the last applied.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let dir = self.replica.dir.display().to_string();
        let data = SnapshotData::decode(snapshot.get_ref()).map_err(sm_error)?;
        let Some(last) = meta.last_log_id else {
            return Err(sm_error(format!("{dir}: a snapshot of no entry")));
        };
        if self.hook.is_some() != data.state.is_some() {
            return Err(sm_error(format!(
                "{dir}: snapshot {} {} a state, this group {} one",
                meta.snapshot_id,
                if data.state.is_some() {
                    "carries"
                } else {
                    "lacks"
                },
                if self.hook.is_some() {
                    "keeps"
                } else {
                    "keeps no"
                },
            )));
        }
        let replica = self.replica.clone();
        let start = data.start;
        let over = tokio::task::spawn_blocking(move || replica.continue_at(last, start))
            .await
            .map_err(sm_error)?
            .map_err(sm_error)?;
        if let (Some(hook), Some(state)) = (self.hook.clone(), data.state) {
            hook.install(state).await.map_err(sm_error)?;
        }
        let membership = meta.last_membership.clone();
        self.state = AppliedState {
            applied: Some(last),
            membership: membership.clone(),
        };
        self.memberships = [membership.clone()].into();
        self.save().await?;
        self.record_compaction(SnapshotRecord {
            last,
            membership,
            start,
        })
        .await?;
        self.replica.log.set_commit_end(Offset(start));
        tracing::info!(dir, snapshot = %meta.snapshot_id, start, started_over = over, "snapshot installed");
        Ok(())
    }

    /// The snapshot of the last compaction, with the hook's committed state now (at or after
    /// the compaction's entry; the entries after it are applied over it again by the replica
    /// that installs it, which leaves it as it is).
    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(record) = self.compacted.clone() else {
            return Ok(None);
        };
        let state = match &self.hook {
            Some(hook) => hook.snapshot().await,
            None => None,
        };
        let data = SnapshotData {
            start: record.start,
            state,
        };
        Ok(Some(Snapshot {
            meta: meta_of(&record),
            snapshot: Box::new(Cursor::new(data.encode())),
        }))
    }
}

/// The meta of the snapshot standing for `record`'s compaction.
fn meta_of(record: &SnapshotRecord) -> SnapshotMeta<NodeId, Node> {
    SnapshotMeta {
        last_log_id: Some(record.last),
        last_membership: record.membership.clone(),
        snapshot_id: format!("{}-{}", record.last.leader_id.term, record.last.index),
    }
}

/// Builds the snapshot openraft asks for when told to (to purge what a compaction cut): it
/// stands for the last compaction; its data is made when a replica needs it
/// ([`RaftStateMachine::get_current_snapshot`]), so none here. Before any compaction, the
/// applied log id and membership.
#[derive(Debug)]
pub struct SnapshotBuilder {
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    compacted: Option<SnapshotRecord>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        if let Some(record) = &self.compacted {
            return Ok(Snapshot {
                meta: meta_of(record),
                snapshot: Box::new(Cursor::new(Vec::new())),
            });
        }
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
