//! Handing messages to a consumer: redeliveries first, then new ones, within the unacked bounds
//! and a byte bound, each delivery journaled before it leaves.

use crate::ackstate::{encode_deliver, encode_floor, encode_offsets, IntSet, REC_ACK};
use crate::config::ms_i64;
use crate::error::Result;
use crate::types::{Offset, Record, TimestampMs};

use super::state::{Held, QState};
use super::{ConsumerId, Delivery, Pending, Queue};
use std::sync::atomic::Ordering;

/// Bytes a record counts for in a byte-bounded delivery ([`Queue::deliver_pending_within`]): its
/// key, header names and values and value, plus 8 for each header and 32 for the message (about
/// what lengths and offsets add when it is sent).
pub fn delivery_bytes(r: &Record) -> usize {
    let headers: usize = r
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 8)
        .sum();
    32 + r.key.as_ref().map_or(0, Vec::len) + headers + r.value.len()
}

impl Queue {
    /// Hands up to `max` messages to `consumer`: expired and nacked ones first, then new ones,
    /// within the unacked bounds. Never blocks; empty when nothing is available.
    ///
    /// Each delivery (with its attempt number) is journaled, and synced under `always`, before
    /// it is returned, so delivery counts survive a broker crash.
    pub fn deliver(&self, consumer: ConsumerId, max: usize) -> Result<Vec<Delivery>> {
        let (out, pending) = self.deliver_pending(consumer, max)?;
        self.commit(pending)?;
        Ok(out)
    }

    /// [`Queue::deliver`] without its sync: the deliveries are in the queue's state and journal,
    /// and must not leave the broker before [`Queue::commit`] of the returned [`Pending`] (with
    /// any other pending work, such as the acks that opened the consumer's window, so all of it
    /// shares one sync).
    pub fn deliver_pending(
        &self,
        consumer: ConsumerId,
        max: usize,
    ) -> Result<(Vec<Delivery>, Pending)> {
        self.deliver_pending_within(consumer, max, usize::MAX)
    }

    /// [`Queue::deliver_pending`] of messages taking about `max_bytes` at most (their keys,
    /// headers and values, see [`delivery_bytes`]); at least one message when any is available,
    /// however large. What does not fit stays in the queue for the next call.
    pub fn deliver_pending_within(
        &self,
        consumer: ConsumerId,
        max: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Delivery>, Pending)> {
        let now = self.clock.now_ms();
        let mut st = self.lock_open()?;
        st.promote(now);
        let start = self.log.start_offset().0;
        let room = self.room(&st, consumer, max);
        let round = self.pick(&mut st, room, start);
        let taken = match self.take(&mut st, &round.picks, max_bytes) {
            Ok(t) => t,
            Err(e) => {
                st.ready.extend(round.popped);
                return Err(e);
            }
        };
        let mut rec = Vec::new();
        if start > st.ack.acks.floor() {
            encode_floor(&mut rec, start);
        }
        taken.encode(&st, &mut rec);
        if rec.is_empty() {
            drop(st);
            self.dead_letter(round.dead)?;
            return Ok((taken.out, Pending::NONE));
        }
        let pos = match self.write_records(&st, &rec) {
            Ok(p) => p,
            Err(e) => {
                st.ready.extend(round.popped);
                return Err(e);
            }
        };
        if start > st.ack.acks.floor() {
            st.ack.raise_floor(start);
            st.drop_below_floor();
        }
        let deadline = now.saturating_add(ms_i64(self.config.ack_timeout_ms));
        taken.apply(&mut st, consumer, deadline);
        let again = taken.out.iter().filter(|d| d.attempt > 1).count() as u64;
        self.redelivered.fetch_add(again, Ordering::Relaxed);
        self.maybe_snapshot(&st)?;
        let floor = st.ack.acks.floor();
        drop(st);
        // Dead letters sync the journal up to their own record, after this one. A failed
        // dead-lettering puts its messages back to be tried again (next round or expiry); it
        // must not cost this round's deliveries, journaled already with their attempts.
        if let Err(e) = self.dead_letter(round.dead) {
            tracing::warn!(queue = %self.source, "dead-lettering failed, will retry: {e}");
        }
        Ok((taken.out, Pending::at(pos, floor)))
    }

    /// How many messages `consumer` may be handed now: `max` within the queue-wide and the
    /// per-consumer unacked bounds. Notes when the queue-wide bound held a delivery back.
    fn room(&self, st: &QState, consumer: ConsumerId, max: usize) -> usize {
        let global = match self.config.max_unacked {
            0 => usize::MAX,
            m => (m as usize).saturating_sub(st.inflight.len()),
        };
        let mine = st.by_consumer.get(&consumer).map_or(0, IntSet::len);
        let per = match self.config.max_unacked_per_consumer {
            0 => usize::MAX,
            m => (m as usize).saturating_sub(mine),
        };
        if global < max.min(per) {
            self.held_back.store(true, Ordering::Release);
        }
        max.min(global).min(per)
    }

    /// Chooses up to `room` offsets: returned messages first (those at their delivery bound go
    /// to `dead` instead), then new ones from the cursor up to the visible end.
    fn pick(&self, st: &mut QState, room: usize, start: u64) -> Round {
        let mut round = Round::default();
        while round.picks.len() < room {
            let Some(o) = st.ready.pop_first() else { break };
            if st.ack.acks.contains(o) || o < start {
                continue;
            }
            round.popped.push(o);
            let a = st.attempts(o);
            if self.max_deliveries_reached(a) {
                round.dead.push(o);
            } else {
                round.picks.push((o, a + 1));
            }
        }
        let visible = self.log.visible_end().0;
        let mut next = st.ack.cursor.max(start);
        while round.picks.len() < room && next < visible {
            // Acked ahead of the cursor: a replicated queue's control entries.
            if !st.ack.acks.contains(next) {
                round.picks.push((next, 1));
            }
            next += 1;
        }
        round.picks.sort_unstable();
        round
    }

    /// Reads the picked records within `max_bytes`. Picks past the byte bound were not read:
    /// returned ones go back to be ready, new ones (at or past the cursor) are simply not taken
    /// yet. A record the log no longer holds (retention) is `gone`.
    fn take(&self, st: &mut QState, picks: &[(u64, u32)], max_bytes: usize) -> Result<Taken> {
        let offs: Vec<u64> = picks.iter().map(|p| p.0).collect();
        let records = self.read_at_within(&offs, max_bytes)?;
        for &(o, _) in &picks[records.len()..] {
            if o < st.ack.cursor {
                st.ready.insert(o);
            }
        }
        let mut taken = Taken::default();
        for (&(o, a), r) in picks.iter().zip(records) {
            match r {
                Some(record) => {
                    taken.items.push((o, a));
                    taken.out.push(Delivery {
                        partition: self.partition,
                        offset: Offset(o),
                        attempt: a,
                        record,
                    });
                }
                None => taken.gone.push(o),
            }
        }
        Ok(taken)
    }
}

/// The offsets one delivery round chose.
#[derive(Default)]
struct Round {
    /// Offsets to deliver, with their attempt number, ascending.
    picks: Vec<(u64, u32)>,
    /// Returned offsets taken from `ready` (put back if the round fails).
    popped: Vec<u64>,
    /// Returned offsets at their delivery bound: to dead-letter.
    dead: Vec<u64>,
}

/// What a delivery round read.
#[derive(Default)]
struct Taken {
    /// Offsets delivered, with their attempt number.
    items: Vec<(u64, u32)>,
    /// The deliveries themselves.
    out: Vec<Delivery>,
    /// Offsets the log no longer holds.
    gone: Vec<u64>,
}

impl Taken {
    /// The journal records of this round: the deliveries; offsets gone from the log are
    /// journaled as passed by the cursor, then acked, so a replay moves the cursor past them.
    fn encode(&self, st: &QState, rec: &mut Vec<u8>) {
        if !self.items.is_empty() {
            encode_deliver(rec, &self.items);
        }
        if !self.gone.is_empty() {
            let passed: Vec<(u64, u32)> = self.gone.iter().map(|&o| (o, st.attempts(o))).collect();
            encode_deliver(rec, &passed);
            encode_offsets(rec, REC_ACK, &self.gone);
        }
    }

    /// Applies the journaled round to the queue's state: each delivery held by `consumer` until
    /// `deadline`, each gone offset acked.
    fn apply(&self, st: &mut QState, consumer: ConsumerId, deadline: TimestampMs) {
        for &(o, a) in &self.items {
            st.ack.counts.insert(o, a);
            st.ack.cursor = st.ack.cursor.max(o + 1);
            st.inflight.insert(o, Held { consumer, deadline });
            st.deadlines.insert((deadline, o));
            st.by_consumer.entry(consumer).or_default().insert(o);
        }
        for &o in &self.gone {
            st.ack.acks.insert(o);
            st.ack.counts.remove(&o);
            st.ack.cursor = st.ack.cursor.max(o + 1);
        }
    }
}
