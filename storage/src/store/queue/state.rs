//! The volatile part of a queue's state around its persistent ack state: who holds what until
//! when, what is ready to be delivered again, what waits for a nack's delay.

use std::collections::BTreeSet;

use crate::ackstate::{AckState, IntMap, IntSet};
use crate::types::TimestampMs;

use super::ConsumerId;

#[derive(Clone, Copy, Debug)]
pub(in crate::store) struct Held {
    pub(in crate::store) consumer: ConsumerId,
    pub(in crate::store) deadline: TimestampMs,
}

/// The volatile part of a queue's state, around the persistent [`AckState`].
#[derive(Debug, Default)]
pub(in crate::store) struct QState {
    pub(in crate::store) ack: AckState,
    /// Delivered and not acked: who holds it and until when.
    pub(in crate::store) inflight: IntMap<u64, Held>,
    /// Ack deadlines, cleaned lazily: an entry is live only while `inflight` holds the offset
    /// with that same deadline. Stale entries are skipped by `expire`, dropped from the front by
    /// `next_deadline`, and swept when they outnumber live ones, so an ack costs no tree removal
    /// and memory stays proportional to the in-flight window.
    pub(in crate::store) deadlines: BTreeSet<(TimestampMs, u64)>,
    pub(in crate::store) by_consumer: IntMap<ConsumerId, IntSet<u64>>,
    /// Returned messages available now, lowest offset first.
    pub(in crate::store) ready: BTreeSet<u64>,
    /// Nacked messages waiting for their delay.
    pub(in crate::store) delayed: BTreeSet<(TimestampMs, u64)>,
    pub(in crate::store) delayed_at: IntMap<u64, TimestampMs>,
    pub(in crate::store) closed: bool,
    /// On a replicated queue: the leadership generation checked when the state was last
    /// locked for a change ([`super::Queue::check_leading`]).
    pub(in crate::store) generation: Option<u64>,
}

impl QState {
    pub(in crate::store) fn take_inflight(&mut self, o: u64) -> Option<Held> {
        let h = self.inflight.remove(&o)?;
        if let Some(s) = self.by_consumer.get_mut(&h.consumer) {
            s.remove(&o);
            if s.is_empty() {
                self.by_consumer.remove(&h.consumer);
            }
        }
        Some(h)
    }

    /// Gives memory back after a burst: maps that are mostly empty are shrunk, so the state
    /// stays proportional to the current window rather than to its high-water mark.
    pub(in crate::store) fn maybe_shrink(&mut self) {
        pub(in crate::store) fn shrink<K: std::hash::Hash + Eq, V>(m: &mut IntMap<K, V>) {
            if m.capacity() > 4096 && m.len() < m.capacity() / 8 {
                m.shrink_to_fit();
            }
        }
        shrink(&mut self.inflight);
        shrink(&mut self.ack.counts);
        for set in self.by_consumer.values_mut() {
            if set.capacity() > 4096 && set.len() < set.capacity() / 8 {
                set.shrink_to_fit();
            }
        }
        if self.deadlines.len() > 2 * self.inflight.len() + 1024 {
            let inflight = &self.inflight;
            self.deadlines
                .retain(|&(t, o)| inflight.get(&o).is_some_and(|h| h.deadline == t));
        }
    }

    pub(in crate::store) fn live_deadline(&self, t: TimestampMs, o: u64) -> bool {
        self.inflight.get(&o).is_some_and(|h| h.deadline == t)
    }

    pub(in crate::store) fn promote(&mut self, now: TimestampMs) {
        while let Some(&(t, o)) = self.delayed.first() {
            if t > now {
                break;
            }
            self.delayed.pop_first();
            self.delayed_at.remove(&o);
            self.ready.insert(o);
        }
    }

    pub(in crate::store) fn forget(&mut self, o: u64) {
        self.take_inflight(o);
        self.ready.remove(&o);
        if let Some(t) = self.delayed_at.remove(&o) {
            self.delayed.remove(&(t, o));
        }
    }

    /// Drops volatile entries below the floor (after the floor jumped).
    pub(in crate::store) fn drop_below_floor(&mut self) {
        let f = self.ack.acks.floor();
        let below: Vec<u64> = self
            .inflight
            .keys()
            .copied()
            .filter(|&o| o < f)
            .chain(self.ready.range(..f).copied())
            .chain(self.delayed_at.keys().copied().filter(|&o| o < f))
            .collect();
        for o in below {
            self.forget(o);
        }
    }

    pub(in crate::store) fn attempts(&self, o: u64) -> u32 {
        self.ack.counts.get(&o).copied().unwrap_or(0)
    }
}
