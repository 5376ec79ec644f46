//! Settling deliveries: acks, nacks, releases and expired deadlines, and the commit that makes
//! them durable and lets the log reclaim what every ack released.

use std::sync::atomic::Ordering;

use crate::ackstate::{encode_offsets, REC_ACK};
use crate::config::{ms_i64, FsyncPolicy};
use crate::error::{Error, Result};
use crate::types::Offset;

use super::super::lock;
use super::state::QState;
use super::{ack_snapshot_bytes, ConsumerId, DeadLetterReason, Queue};

/// Queue changes journaled but not yet synced, from [`Queue::ack_pending`] or
/// [`Queue::deliver_pending`]. Pass it to [`Queue::commit`] before confirming the acks or handing
/// out the deliveries; [`Pending::and`] merges several into one sync.
#[must_use = "pending acks and deliveries are durable only after Queue::commit"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Logical journal position to sync to (on a replicated queue, the last proposal's ticket).
    pub(in crate::store) pos: u64,
    /// The ack floor those records produced (segments below it may be reclaimed once synced).
    pub(in crate::store) floor: u64,
    /// On a replicated queue, the first proposal's ticket: every proposal from it to `pos`
    /// must be committed.
    pub(in crate::store) first: u64,
}

impl Pending {
    /// Nothing to sync.
    pub const NONE: Pending = Pending {
        pos: 0,
        floor: 0,
        first: u64::MAX,
    };

    /// The records written at `pos`, which produced `floor`.
    pub(in crate::store) fn at(pos: u64, floor: u64) -> Pending {
        Pending {
            pos,
            floor,
            first: pos,
        }
    }

    /// Both this and `other`: one commit covers every record of the two.
    pub fn and(self, other: Pending) -> Pending {
        Pending {
            pos: self.pos.max(other.pos),
            floor: self.floor.max(other.floor),
            first: self.first.min(other.first),
        }
    }
}

/// What [`Queue::ack_pending`] did: the acks to commit, and the offsets it refused because the
/// consumer does not hold them.
#[must_use = "pending acks are durable only after Queue::commit"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    /// The journaled acks of the offsets the consumer held.
    pub pending: Pending,
    /// Offsets not acked: the consumer does not hold them.
    pub not_held: Vec<Offset>,
}

impl Acked {
    /// `Ok` when every offset was held; otherwise [`Error::NotHeld`] naming the others. Call it
    /// after committing [`Acked::pending`]: the held ones are acked either way.
    pub fn into_result(self) -> Result<()> {
        if self.not_held.is_empty() {
            Ok(())
        } else {
            Err(Error::NotHeld {
                offsets: self.not_held,
            })
        }
    }
}

impl Queue {
    /// Makes journal records up to `pos` durable as the fsync policy says, then lets the log
    /// reclaim segments below `floor` (the floor those records produced).
    pub(in crate::store) fn commit_journal(&self, pos: u64, floor: u64) -> Result<()> {
        self.commit_pending(Pending::at(pos, floor))
    }

    /// [`Queue::commit_journal`] of a [`Pending`]: on a replicated queue, waits until every
    /// proposal it covers is committed (journaled as they are applied; the segments stay, as a
    /// lagging replica may still need them).
    pub(in crate::store) fn commit_pending(&self, p: Pending) -> Result<()> {
        if let Some(r) = self.wait_replicated(p.first, p.pos) {
            return r;
        }
        let (pos, floor) = (p.pos, p.floor);
        let synced = match self.log.config().fsync {
            FsyncPolicy::Always => {
                self.journal.sync_to(pos)?;
                true
            }
            FsyncPolicy::Interval(ms) => {
                let now = self.clock.now_ms();
                if now.saturating_sub(self.last_sync.load(Ordering::Acquire)) >= ms_i64(ms) {
                    self.last_sync.store(now, Ordering::Release);
                    self.journal.sync_to(pos)?;
                    true
                } else {
                    false
                }
            }
            FsyncPolicy::Never => false,
        };
        if synced && self.synced_floor.fetch_max(floor, Ordering::AcqRel) < floor {
            self.reclaim();
        }
        Ok(())
    }

    pub(in crate::store) fn reclaim(&self) {
        match &self.parent {
            Some(t) => {
                if let Some(t) = t.upgrade() {
                    t.reclaim(self.partition);
                }
            }
            None => {
                let f = self.synced_floor.load(Ordering::Acquire);
                if let Err(e) = self.log.delete_before(Offset(f)) {
                    tracing::warn!(queue = %self.source, "reclaiming segments failed: {e}");
                }
            }
        }
    }

    /// Snapshots the ack state when the journal has grown enough. Runs under the state lock.
    pub(in crate::store) fn maybe_snapshot(&self, st: &QState) -> Result<()> {
        if self.is_replicated() {
            // Only committed state is snapshotted, as it is applied.
            return Ok(());
        }
        if self.journal.since_snapshot() > ack_snapshot_bytes() {
            match self.journal.snapshot(&st.ack.encode_snapshot()) {
                Ok(()) => {}
                Err(e) if e.is_fd_exhausted() => {
                    // The journal goes on as it is; the next append tries again.
                    tracing::warn!(queue = %self.source, "ack-state snapshot postponed: {e}");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            // The snapshot is durable: segments below its floor may go (at the next reclaim).
            self.synced_floor
                .fetch_max(st.ack.acks.floor(), Ordering::AcqRel);
        }
        Ok(())
    }

    /// Acknowledges messages `consumer` holds; returns once the acks are durable. Offsets it
    /// does not hold (never delivered to it, already acked, returned after their deadline or
    /// released, being dead-lettered) are not acked: after the others are durable the call
    /// fails with [`Error::NotHeld`] naming them.
    pub fn ack(&self, consumer: ConsumerId, offsets: &[Offset]) -> Result<()> {
        let acked = self.ack_pending(consumer, offsets)?;
        self.commit(acked.pending)?;
        acked.into_result()
    }

    /// [`Queue::ack`] without its sync: the acks of the offsets `consumer` holds are in the
    /// queue's state and journal, so the consumer's window may open and the next delivery's
    /// record share the acks' sync; they may be confirmed only after [`Queue::commit`] of the
    /// returned [`Acked::pending`]. An offset the consumer does not hold is listed in
    /// [`Acked::not_held`] and changes nothing: a consumer can never settle a message another
    /// consumer holds, nor one the queue decided to redeliver or dead-letter.
    pub fn ack_pending(&self, consumer: ConsumerId, offsets: &[Offset]) -> Result<Acked> {
        let mut st = self.lock_open()?;
        let (mut list, mut not_held) = (Vec::with_capacity(offsets.len()), Vec::new());
        for &o in offsets {
            if st.inflight.get(&o.0).map(|h| h.consumer) == Some(consumer) {
                list.push(o.0);
            } else {
                not_held.push(o);
            }
        }
        if list.is_empty() {
            return Ok(Acked {
                pending: Pending::NONE,
                not_held,
            });
        }
        list.sort_unstable();
        list.dedup();
        let mut rec = Vec::with_capacity(13 + 8 * list.len());
        encode_offsets(&mut rec, REC_ACK, &list);
        let pos = self.write_records(&st, &rec)?;
        for &o in &list {
            st.ack.acks.insert(o);
            st.ack.counts.remove(&o);
            st.forget(o);
        }
        st.maybe_shrink();
        self.maybe_snapshot(&st)?;
        Ok(Acked {
            pending: Pending::at(pos, st.ack.acks.floor()),
            not_held,
        })
    }

    /// True (once) when a delivery was held back by the queue's `max_unacked` bound since the
    /// last call: acks made since may leave room for consumers that were waiting for it. Read
    /// it after the acks are applied: a delivery held back before them set it already.
    pub fn take_held_back(&self) -> bool {
        self.held_back.swap(false, Ordering::AcqRel)
    }

    /// Makes pending acks and deliveries durable as the fsync policy says (one group-commit
    /// sync for all of them), then lets the log reclaim what the acks released.
    pub fn commit(&self, pending: Pending) -> Result<()> {
        if pending == Pending::NONE {
            return Ok(());
        }
        self.commit_pending(pending)
    }

    /// Returns messages `consumer` holds to the queue, redelivered after `delay_ms` (at most
    /// [`crate::config::DURATION_MS_MAX`]). A message already delivered `max_deliveries` times
    /// is dead-lettered instead. Offsets the consumer does not hold are left alone and named in
    /// the [`Error::NotHeld`] the call then fails with.
    pub fn nack(&self, consumer: ConsumerId, offsets: &[Offset], delay_ms: u64) -> Result<()> {
        if delay_ms > crate::config::DURATION_MS_MAX {
            return Err(Error::InvalidArgument(format!(
                "nack delay_ms must be at most {} (100 years), got {delay_ms}",
                crate::config::DURATION_MS_MAX
            )));
        }
        let now = self.clock.now_ms();
        let mut dead = Vec::new();
        let mut not_held = Vec::new();
        {
            let mut st = self.lock_open()?;
            for &off in offsets {
                let o = off.0;
                if st.inflight.get(&o).map(|h| h.consumer) != Some(consumer) {
                    not_held.push(off);
                    continue;
                }
                st.take_inflight(o);
                if self.max_deliveries_reached(st.attempts(o)) {
                    dead.push(o);
                } else if delay_ms == 0 {
                    st.ready.insert(o);
                } else {
                    let at = now.saturating_add(ms_i64(delay_ms));
                    st.delayed.insert((at, o));
                    st.delayed_at.insert(o, at);
                }
            }
        }
        self.dead_letter(dead)?;
        Acked {
            pending: Pending::NONE,
            not_held,
        }
        .into_result()
    }

    /// Dead-letters messages `consumer` holds at once, whatever their delivery count (reason
    /// `rejected`); returns once they are in the dead-letter queue and marked dead here,
    /// durably. Offsets it does not hold are left alone and named in the [`Error::NotHeld`]
    /// the call then fails with.
    pub fn reject(&self, consumer: ConsumerId, offsets: &[Offset]) -> Result<()> {
        let mut dead = Vec::new();
        let mut not_held = Vec::new();
        {
            let mut st = self.lock_open()?;
            for &off in offsets {
                if st.inflight.get(&off.0).map(|h| h.consumer) != Some(consumer) {
                    not_held.push(off);
                    continue;
                }
                st.take_inflight(off.0);
                dead.push(off.0);
            }
        }
        self.dead_letter_for(dead, DeadLetterReason::Rejected)?;
        Acked {
            pending: Pending::NONE,
            not_held,
        }
        .into_result()
    }

    /// Moves the shared cursor to `offset`, clamped to the log's start and end: every message
    /// from there on counts as neither delivered nor acked, every one before it as settled
    /// (delivery counts forgotten). Refused (`InvalidArgument`) while a consumer holds a
    /// message. Durable on return: the new state is a snapshot of the ack journal.
    ///
    /// On a replicated queue (or group), only its leader moves it: the move is a RESET record
    /// proposed to the replicated log, confirmed once committed, and the end is the committed
    /// end.
    pub fn reset_to(&self, offset: Offset) -> Result<()> {
        if self.is_replicated() {
            return self.reset_replicated(offset);
        }
        let mut st = self.lock_open()?;
        if !st.inflight.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{} messages of {} are held by consumers",
                st.inflight.len(),
                self.source
            )));
        }
        let (start, end) = (self.log.start_offset().0, self.log.end_offset().0);
        let at = offset.0.clamp(start, end);
        let ack = crate::ackstate::AckState::new(at);
        self.journal.snapshot(&ack.encode_snapshot())?;
        st.ack = ack;
        st.ready.clear();
        st.delayed.clear();
        st.delayed_at.clear();
        st.deadlines.clear();
        self.synced_floor.store(at, Ordering::Release);
        Ok(())
    }

    /// [`Queue::reset_to`] of a replicated queue, on its leader.
    fn reset_replicated(&self, offset: Offset) -> Result<()> {
        let (pos, floor) = {
            let mut st = self.lock_open()?;
            self.check_leading(&mut st)?;
            if !st.inflight.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "{} messages of {} are held by consumers",
                    st.inflight.len(),
                    self.source
                )));
            }
            let (start, end) = (self.log.start_offset().0, self.log.visible_end().0);
            let at = offset.0.clamp(start, end);
            let mut rec = Vec::new();
            crate::ackstate::encode_reset(&mut rec, at);
            let pos = self.write_records(&st, &rec)?;
            st.ack = crate::ackstate::AckState::new(at);
            st.ready.clear();
            st.delayed.clear();
            st.delayed_at.clear();
            st.deadlines.clear();
            (pos, at)
        };
        self.commit_journal(pos, floor)
    }

    /// A consumer went away: everything it held goes back to the queue at once (messages past
    /// `max_deliveries` are dead-lettered at the next `deliver` or `expire`).
    pub fn release(&self, consumer: ConsumerId) {
        let mut st = lock(&self.state);
        let held: Vec<u64> = st
            .by_consumer
            .get(&consumer)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for o in held {
            st.take_inflight(o);
            st.ready.insert(o);
        }
    }

    /// Returns messages whose ack deadline passed; dead-letters those past `max_deliveries`.
    /// Returns how many were returned or dead-lettered.
    pub fn expire(&self) -> Result<usize> {
        if self.following() {
            return Ok(0);
        }
        let now = self.clock.now_ms();
        let mut dead = Vec::new();
        let mut n = 0;
        {
            let mut st = self.lock_open()?;
            st.promote(now);
            while let Some(&(t, o)) = st.deadlines.first() {
                if t > now {
                    break;
                }
                st.deadlines.pop_first();
                if !st.live_deadline(t, o) {
                    continue;
                }
                st.take_inflight(o);
                n += 1;
                if self.max_deliveries_reached(st.attempts(o)) {
                    dead.push(o);
                } else {
                    st.ready.insert(o);
                }
            }
            // Returned messages that reached the bound (released ones, or after a restart).
            let over: Vec<u64> = st
                .ready
                .iter()
                .copied()
                .filter(|&o| self.max_deliveries_reached(st.attempts(o)))
                .collect();
            for o in over {
                st.ready.remove(&o);
                dead.push(o);
                n += 1;
            }
        }
        self.dead_letter(dead)?;
        Ok(n)
    }
}
