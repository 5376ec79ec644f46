//! Moving messages past their delivery bound to the dead-letter queue.

use crate::ackstate::{encode_offsets, REC_DEAD};
use crate::error::{Error, Result};
use crate::types::{Header, Record};

use super::super::lock;
use super::Queue;

/// Header names a dead-lettered message carries (besides its original headers).
pub mod dead_letter_headers {
    /// Why it was dead-lettered.
    pub const REASON: &str = "x-dead-letter-reason";
    /// The queue (or `<topic>/<group>`) it came from.
    pub const ORIGINAL_QUEUE: &str = "x-original-queue";
    /// Its offset there.
    pub const ORIGINAL_OFFSET: &str = "x-original-offset";
    /// How many times it was delivered.
    pub const DELIVERY_COUNT: &str = "x-delivery-count";
}

/// Why a message was dead-lettered: the value of its `x-dead-letter-reason` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Delivered `max_deliveries` times without an ack (`max-deliveries`).
    MaxDeliveries,
    /// Rejected by a consumer (`rejected`), for example a Kafka share consumer's REJECT.
    Rejected,
}

impl DeadLetterReason {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::MaxDeliveries => "max-deliveries",
            DeadLetterReason::Rejected => "rejected",
        }
    }
}

impl Queue {
    /// Moves messages to the dead-letter queue: published there first (durably under its
    /// policy), then marked DEAD in this queue's journal. A crash between the two leaves the
    /// message unacked here with its delivery count at the bound, so it is dead-lettered again
    /// after the restart: at worst twice, never lost.
    pub(in crate::store) fn dead_letter(&self, offsets: Vec<u64>) -> Result<usize> {
        self.dead_letter_for(offsets, DeadLetterReason::MaxDeliveries)
    }

    /// [`Queue::dead_letter`] with the reason the copies carry.
    pub(in crate::store) fn dead_letter_for(
        &self,
        mut offsets: Vec<u64>,
        reason: DeadLetterReason,
    ) -> Result<usize> {
        if offsets.is_empty() {
            return Ok(0);
        }
        offsets.sort_unstable();
        let put_back = |offs: &[u64]| {
            let mut st = lock(&self.state);
            for &o in offs {
                if !st.ack.acks.contains(o) {
                    st.ready.insert(o);
                }
            }
        };
        let records = match self.read_at(&offsets) {
            Ok(r) => r,
            Err(e) => {
                put_back(&offsets);
                return Err(e);
            }
        };
        let attempts: Vec<u32> = {
            let st = lock(&self.state);
            offsets.iter().map(|&o| st.attempts(o)).collect()
        };
        let letters: Vec<Record> = offsets
            .iter()
            .zip(records)
            .zip(&attempts)
            .filter_map(|((&o, r), &a)| {
                let mut r = r?;
                use dead_letter_headers as h;
                r.headers.push(Header::new(h::REASON, reason.as_str()));
                r.headers
                    .push(Header::new(h::ORIGINAL_QUEUE, self.source.as_bytes()));
                r.headers
                    .push(Header::new(h::ORIGINAL_OFFSET, o.to_string()));
                r.headers
                    .push(Header::new(h::DELIVERY_COUNT, a.to_string()));
                Some(r)
            })
            .collect();
        if !letters.is_empty() {
            let res = self.publish_dead_letters(&letters).unwrap_or_else(|| {
                let store = self.store.upgrade().ok_or(Error::Closed)?;
                let dlq = store.dead_letter_queue(&self.dlq_name, &self.config)?;
                // Dead-lettering adds headers: the copy may carry more than a publish.
                dlq.log().append_forwarded(&letters).map(|_| ())
            });
            if let Err(e) = res {
                put_back(&offsets);
                return Err(e);
            }
        }
        let (pos, floor) = {
            let mut st = self.lock_open()?;
            let list: Vec<u64> = offsets
                .into_iter()
                .filter(|&o| !st.ack.acks.contains(o))
                .collect();
            let mut rec = Vec::new();
            encode_offsets(&mut rec, REC_DEAD, &list);
            let pos = self.write_records(&st, &rec)?;
            for &o in &list {
                st.ack.acks.insert(o);
                st.ack.counts.remove(&o);
                st.ack.dead_lettered += 1;
                st.forget(o);
            }
            self.maybe_snapshot(&st)?;
            (pos, st.ack.acks.floor())
        };
        self.commit_journal(pos, floor)?;
        Ok(letters.len())
    }
}
