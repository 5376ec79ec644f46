//! [`Subscriber`]: an embedding program's handle on a topic's named subscriber on one
//! partition: it reads from its own position there and commits what it handled, and resumes
//! from its last commit after a restart.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::types::{Offset, Record};

use super::{StartAt, Topic};

/// A named subscriber of a topic, reading from its position (see [`Topic::subscriber`]).
///
/// Reading moves the position; only [`Subscriber::commit`] makes progress durable, so after a
/// crash the subscriber resumes at its last commit and may read messages again.
#[derive(Debug)]
pub struct Subscriber {
    topic: Arc<Topic>,
    name: String,
    partition: u32,
    position: Offset,
}

impl Topic {
    /// A handle on the named subscriber `name` on partition 0 (the only one of a
    /// single-partition topic); see [`Topic::subscriber_on`].
    pub fn subscriber(&self, name: &str, start: StartAt) -> Result<Subscriber> {
        self.subscriber_on(name, 0, start)
    }

    /// A handle on the named subscriber `name` on partition `p`, registered (on every
    /// partition) at `start` if new; an existing one resumes at its committed offset there
    /// (clamped to the partition's range).
    pub fn subscriber_on(&self, name: &str, p: u32, start: StartAt) -> Result<Subscriber> {
        let topic = self.me.upgrade().ok_or(Error::Closed)?;
        self.partition(p)?;
        let position = self.subscribe(name, start)?[p as usize];
        Ok(Subscriber {
            topic,
            name: name.to_string(),
            partition: p,
            position,
        })
    }
}

impl Subscriber {
    /// The subscriber's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The partition it reads.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The next offset it will read.
    pub fn position(&self) -> Offset {
        self.position
    }

    /// Reads up to `max_records` messages (about `max_bytes` at most, at least one) from its
    /// position and moves the position past them. Messages retention deleted before they were
    /// read are skipped: the position moves to the log start.
    pub fn poll(&mut self, max_records: usize, max_bytes: usize) -> Result<Vec<(Offset, Record)>> {
        let log = self.topic.partition(self.partition)?;
        self.position = self.position.max(log.start_offset());
        let out = match log.read_records(self.position, max_records, max_bytes) {
            Ok(r) => r,
            Err(Error::OffsetOutOfRange { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        if let Some((last, _)) = out.last() {
            self.position = last.add(1);
        }
        Ok(out)
    }

    /// Like [`Subscriber::poll`], waiting up to `timeout` for a message when none is there.
    pub fn poll_wait(
        &mut self,
        max_records: usize,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<Vec<(Offset, Record)>> {
        let got = self.poll(max_records, max_bytes)?;
        if !got.is_empty() {
            return Ok(got);
        }
        // Wakes once a message at the position is visible (or at the timeout).
        self.topic
            .partition(self.partition)?
            .wait_visible(self.position, timeout);
        self.poll(max_records, max_bytes)
    }

    /// Commits the message at `offset` as handled, with everything before it: the subscriber
    /// resumes after it (its committed offset becomes `offset + 1`). Durable under the topic's
    /// fsync policy on return.
    pub fn commit(&self, offset: Offset) -> Result<()> {
        self.topic
            .commit(&self.name, self.partition, offset.add(1), &[])
    }

    /// Commits everything read so far (the position).
    pub fn commit_position(&self) -> Result<()> {
        self.topic
            .commit(&self.name, self.partition, self.position, &[])
    }

    /// Moves the position (not the committed offset) to `start`.
    pub fn seek(&mut self, start: StartAt) -> Result<()> {
        self.position = self.topic.resolve(self.partition, start)?;
        Ok(())
    }
}
