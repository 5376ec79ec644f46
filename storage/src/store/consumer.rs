//! [`Consumer`]: an embedding program's handle on a queue (or a topic's consumer group) as one
//! competing consumer. What it holds goes back to the queue when the handle is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::types::Offset;

use super::{ConsumerId, Delivery, Queue};

/// Consumer ids handed to embedded consumers: the upper half of the id space, apart from the
/// ids a server gives its connections' consumers.
pub(in crate::store) static NEXT_EMBEDDED_CONSUMER: AtomicU64 = AtomicU64::new(1 << 63);

/// Longest single wait of [`Consumer::receive_wait`] before it looks again (redeliveries after
/// an ack deadline do not wake it).
const RECEIVE_WAIT_STEP: Duration = Duration::from_millis(20);

/// One competing consumer of a queue (see [`Queue::consumer`]). Dropping it returns every
/// message it holds to the queue at once, as a consumer whose connection closed.
#[derive(Debug)]
pub struct Consumer {
    queue: Arc<Queue>,
    id: ConsumerId,
}

impl Queue {
    /// A new consumer of this queue, with an id of its own.
    pub fn consumer(self: &Arc<Self>) -> Consumer {
        Consumer {
            queue: self.clone(),
            id: ConsumerId(NEXT_EMBEDDED_CONSUMER.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

impl Consumer {
    /// Its id in the queue.
    pub fn id(&self) -> ConsumerId {
        self.id
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Takes up to `max` messages (within the queue's unacked bounds); empty when none is
    /// available. Each delivery is durable (its attempt counted) before it is returned.
    pub fn receive(&self, max: usize) -> Result<Vec<Delivery>> {
        self.queue.deliver(self.id, max)
    }

    /// Like [`Consumer::receive`], waiting up to `timeout` for a message.
    pub fn receive_wait(&self, max: usize, timeout: Duration) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.receive(max)?;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let log = self.queue.log();
            let end = log.visible_end();
            log.wait_visible(end, RECEIVE_WAIT_STEP.min(deadline - now));
        }
    }

    /// Acknowledges messages it holds; durable on return. Offsets it does not hold are refused
    /// with [`crate::Error::NotHeld`] (the others are acked).
    pub fn ack(&self, offsets: &[Offset]) -> Result<()> {
        self.queue.ack(self.id, offsets)
    }

    /// Returns messages it holds to the queue, to be delivered again after `delay_ms`.
    pub fn nack(&self, offsets: &[Offset], delay_ms: u64) -> Result<()> {
        self.queue.nack(self.id, offsets, delay_ms)
    }

    /// Offsets it holds (delivered to it and not settled).
    pub fn held(&self) -> Vec<Offset> {
        self.queue.held_by(self.id)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.queue.release(self.id);
    }
}
