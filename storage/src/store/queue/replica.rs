//! A replicated queue (cluster mode): the queue's state changes (deliveries with their attempt
//! numbers, acks, dead letters, floor moves) go through the queue's replicated log as control
//! entries instead of into its journal, and every replica, the leader included, journals and
//! applies them once committed. The journal therefore holds only committed state on every node.
//!
//! The leader serves consumers from a working state ahead of what is committed (deliveries and
//! acks proposed, not yet confirmed), as a single node serves from a state ahead of what is
//! synced. Whenever its leadership starts anew (a new term, or the first use after a failed
//! proposal), its working state is reset to the committed one: every delivered, unacked message
//! is available again at once, as after a restart.

use std::sync::{Arc, Mutex};

use crate::ackstate::{encode_offsets, AckState, REC_ACK};
use crate::error::{Error, Result};
use crate::journal::decode_records;
use crate::types::Record;

use super::super::lock;
use super::state::QState;
use super::{ack_snapshot_bytes, Queue};

/// What a replicated queue's state changes go through: the queue's replicated log, run by the
/// cluster. Implemented outside the storage engine, which has no networking.
pub trait QueueReplicator: Send + Sync {
    /// The generation of this node's leadership of the queue: it changes whenever the working
    /// state must be reset to the committed one (a new term, a failed proposal). Fails with
    /// [`Error::NotLeader`] when this node does not lead the queue, or has not yet applied
    /// every entry of the terms before its own.
    fn leading(&self) -> Result<u64>;
    /// True when [`QueueReplicator::leading`] would answer `generation`; cheap.
    fn still_leading(&self, generation: u64) -> bool;
    /// Queues journal records (acks, deliveries, dead letters) for the log behind those
    /// proposed before them; returns their ticket for [`QueueReplicator::wait`]. Never blocks.
    fn propose(&self, generation: u64, records: Vec<u8>) -> Result<u64>;
    /// Waits until the proposals of tickets `first` to `last` are committed (a majority has
    /// them on disk) and applied here. [`Error::NotLeader`] when one of them failed: its fate
    /// is then unknown, and nothing may be confirmed on it.
    fn wait(&self, first: u64, last: u64) -> Result<()>;
    /// Publishes dead letters to the dead-letter queue `queue`, through its replicated log;
    /// returns once they are committed.
    fn dead_letters(&self, queue: &str, records: &[Record]) -> Result<()>;
}

/// A queue's link to its replicated log.
pub(in crate::store) struct Replica {
    pub(in crate::store) rep: Arc<dyn QueueReplicator>,
    /// The state every committed entry produced: what the journal holds.
    committed: Mutex<AckState>,
    /// The leadership generation the working state was reset for; `None` while following.
    led: Mutex<Option<u64>>,
}

impl Queue {
    /// Makes this queue a replica of a replicated queue: from now on its state changes go
    /// through `rep`, and [`Queue::apply_replicated`] applies the committed ones. Set once,
    /// before the queue is used.
    pub fn replicate(&self, rep: Arc<dyn QueueReplicator>) -> Result<()> {
        let st = lock(&self.state);
        let replica = Replica {
            rep,
            committed: Mutex::new(st.ack.clone()),
            led: Mutex::new(None),
        };
        self.replica.set(replica).map_err(|_| {
            Error::InvalidArgument(format!("queue {} is replicated already", self.source))
        })
    }

    /// `Ok` when this node may serve the queue's consumers: a single node's queue, or a
    /// replicated queue this node leads; [`Error::NotLeader`] naming the leader otherwise.
    pub fn check_leader(&self) -> Result<()> {
        match self.replica.get() {
            Some(r) => r.rep.leading().map(|_| ()),
            None => Ok(()),
        }
    }

    fn not_replicated(&self) -> Error {
        Error::InvalidArgument(format!("queue {} is not replicated", self.source))
    }

    /// True when this queue is a replica of a replicated queue.
    pub fn is_replicated(&self) -> bool {
        self.replica.get().is_some()
    }

    /// The ack floor of a replicated queue's committed state: every offset below it is acked,
    /// and the ack committed. `None` on a single node's queue.
    pub fn committed_floor(&self) -> Option<u64> {
        self.replica.get().map(|r| lock(&r.committed).acks.floor())
    }

    /// Applies a committed compaction of the replicated log, stored at `offset` (which holds
    /// no message: acked like a control entry's), then writes the committed state as the
    /// journal's snapshot, synced: the entries of the log applied so far need not be applied
    /// again at the next start, and may leave the log.
    pub fn persist_committed(&self, offset: u64) -> Result<()> {
        self.apply_entry(offset, &[])?;
        let Some(r) = self.replica.get() else {
            return Err(self.not_replicated());
        };
        let st = lock(&self.state);
        if st.closed {
            return Err(Error::Closed);
        }
        let committed = lock(&r.committed);
        self.journal.snapshot(&committed.encode_snapshot())
    }

    /// The committed state as an ack-state snapshot body (format.md, "Ack journal"): what a
    /// replica whose log was cut below what it has installs ([`Queue::install_committed`]).
    pub fn committed_snapshot(&self) -> Result<Vec<u8>> {
        let Some(r) = self.replica.get() else {
            return Err(self.not_replicated());
        };
        let committed = lock(&r.committed).encode_snapshot();
        Ok(committed)
    }

    /// Replaces the committed state with `snapshot` (an ack-state snapshot body from
    /// [`Queue::committed_snapshot`] on another replica) and writes it as the journal's
    /// snapshot, synced. The working state is reset to it, as after a restart. The committed
    /// entries after the snapshot's point are applied over it again, which leaves it as it is.
    pub fn install_committed(&self, snapshot: &[u8]) -> Result<()> {
        let Some(r) = self.replica.get() else {
            return Err(self.not_replicated());
        };
        let state = AckState::replay(Some(snapshot), [], 0, |_, _| {}).map_err(|e| {
            Error::InvalidArgument(format!(
                "queue {}: the ack state of a snapshot does not decode: {e:?}",
                self.source
            ))
        })?;
        let mut st = lock(&self.state);
        if st.closed {
            return Err(Error::Closed);
        }
        let mut committed = lock(&r.committed);
        *committed = state;
        *lock(&r.led) = None;
        reset(&mut st, &committed);
        self.journal.snapshot(&committed.encode_snapshot())
    }

    /// Applies a committed control entry of the queue's replicated log, stored at `offset`:
    /// `records` are ack journal records (format.md, "Ack journal"), to which the entry adds
    /// the ack of its own offset, which holds no message, then journaled, not synced: the
    /// cluster applies again at every start each entry of the queue's log after the last one
    /// compacted ([`Queue::persist_committed`]), so the journal only saves work (and is
    /// written whole by a clean close). Applying entries again leaves the state as it was.
    pub fn apply_replicated(&self, offset: u64, records: &[u8]) -> Result<()> {
        let (recs, used) = decode_records(records);
        if used != records.len() || recs.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "a replicated entry of queue {} is not whole ack records ({used} of {} bytes)",
                self.source,
                records.len()
            )));
        }
        self.apply_entry(offset, records)
    }

    /// Applies a committed entry of the replicated log stored at `offset` that holds neither
    /// messages nor queue changes (a new leader's blank entry, a membership change): its
    /// offset is acked, so it never counts as a message waiting.
    pub fn pass_replicated(&self, offset: u64) -> Result<()> {
        self.apply_entry(offset, &[])
    }

    /// Applies a committed entry stored at `offset`: its `records` (none for an entry that
    /// is not the queue's, such as a compaction) and the ack of its own offset.
    fn apply_entry(&self, offset: u64, records: &[u8]) -> Result<()> {
        let Some(r) = self.replica.get() else {
            return Err(self.not_replicated());
        };
        let (mut recs, _) = decode_records(records);
        let mut own = Vec::new();
        encode_offsets(&mut own, REC_ACK, &[offset]);
        recs.extend(decode_records(&own).0);
        let mut st = lock(&self.state);
        if st.closed {
            return Err(Error::Closed);
        }
        let mut committed = lock(&r.committed);
        for (kind, p) in &recs {
            committed.apply(*kind, p).map_err(Error::InvalidArgument)?;
        }
        pass_own(&mut committed, offset);
        let mut led = lock(&r.led);
        match *led {
            // The leader's working state has these changes already, and later ones; only the
            // entry's own offset is new to it.
            Some(g) if r.rep.still_leading(g) => {
                st.ack.acks.insert(offset);
                pass_own(&mut st.ack, offset);
            }
            Some(_) => {
                *led = None;
                reset(&mut st, &committed);
            }
            None => {
                for (kind, p) in &recs {
                    st.ack.apply(*kind, p).map_err(Error::InvalidArgument)?;
                }
                pass_own(&mut st.ack, offset);
                st.drop_below_floor();
            }
        }
        drop(led);
        // Not synced here: the replicated log is the truth, and a restart applies all of it
        // again over whatever the journal kept.
        if !records.is_empty() {
            self.journal.append(records)?;
        }
        self.journal.append(&own)?;
        if self.journal.since_snapshot() > ack_snapshot_bytes() {
            self.journal.snapshot(&committed.encode_snapshot())?;
        }
        Ok(())
    }

    /// On a replicated queue, checks that this node leads it and resets the working state when
    /// its leadership started anew. Called with the state locked, before any change.
    pub(in crate::store) fn check_leading(&self, st: &mut QState) -> Result<()> {
        let Some(r) = self.replica.get() else {
            return Ok(());
        };
        let g = r.rep.leading()?;
        let mut led = lock(&r.led);
        if *led != Some(g) {
            reset(st, &lock(&r.committed));
            *led = Some(g);
        }
        st.generation = Some(g);
        Ok(())
    }

    /// True on a replica that does not lead its queue now (nothing to expire there).
    pub(in crate::store) fn following(&self) -> bool {
        self.replica.get().is_some_and(|r| r.rep.leading().is_err())
    }

    /// Writes journal records of a change: into the journal on a single node, proposed to the
    /// replicated log on a replica (under the leadership [`Queue::check_leading`] saw when `st`
    /// was locked). Returns the position or ticket a [`super::Pending`] waits for.
    pub(in crate::store) fn write_records(&self, st: &QState, rec: &[u8]) -> Result<u64> {
        match (self.replica.get(), st.generation) {
            (Some(r), Some(g)) => r.rep.propose(g, rec.to_vec()),
            (Some(_), None) => Err(Error::NotLeader(format!(
                "queue {} changed without its leadership checked",
                self.source
            ))),
            (None, _) => self.journal.append(rec),
        }
    }

    /// The state to snapshot at a clean close: the committed one on a replica.
    pub(in crate::store) fn snapshot_state(&self, st: &QState) -> Vec<u8> {
        match self.replica.get() {
            Some(r) => lock(&r.committed).encode_snapshot(),
            None => st.ack.encode_snapshot(),
        }
    }

    /// On a replica: waits for the proposals of tickets `first` to `last`. `None` on a
    /// single node.
    pub(in crate::store) fn wait_replicated(&self, first: u64, last: u64) -> Option<Result<()>> {
        self.replica.get().map(|r| r.rep.wait(first, last))
    }

    /// On a replica: publishes dead letters through the replicated dead-letter queue.
    pub(in crate::store) fn publish_dead_letters(&self, records: &[Record]) -> Option<Result<()>> {
        self.replica
            .get()
            .map(|r| r.rep.dead_letters(&self.dlq_name, records))
    }
}

/// A control entry's own offset, acked, is passed by a cursor standing on it; and a cursor
/// is never below the ack floor (control entries ahead of the cursor are acked as they are
/// applied, so the floor may pass it), which the ack-state snapshot requires.
fn pass_own(ack: &mut AckState, offset: u64) {
    if ack.cursor == offset {
        ack.cursor = offset + 1;
    }
    ack.cursor = ack.cursor.max(ack.acks.floor());
}

/// The working state set back to the committed one: nothing in flight, every delivered and
/// unacked message ready again.
fn reset(st: &mut QState, committed: &AckState) {
    st.ack = committed.clone();
    st.inflight.clear();
    st.deadlines.clear();
    st.by_consumer.clear();
    st.delayed.clear();
    st.delayed_at.clear();
    let (f, c) = (st.ack.acks.floor(), st.ack.cursor);
    st.ready = (f..c).filter(|&o| !st.ack.acks.contains(o)).collect();
}
