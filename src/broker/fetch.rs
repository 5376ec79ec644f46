//! Reads of raw stored batches from one partition of a topic, with a long-poll wait for new
//! messages: what a pull frontend (Kafka's Fetch) serves, apart from pushed subscriptions.

use std::sync::Arc;
use std::time::Duration;

use sluice_storage::{Batch, Error as StoreError, Offset};
use tokio::time::{timeout_at, Instant};

use super::{blocking, Broker, Result};

/// What a fetch of one partition found.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// Whole stored batches from the one holding the asked offset, about `max_bytes` at most
    /// (at least one batch when there is one, however large). Empty when nothing is visible at
    /// the offset yet, or when the offset is out of the partition's range.
    pub batches: Vec<Batch>,
    /// The partition's first offset held.
    pub log_start: Offset,
    /// One past its last visible offset (Kafka's high watermark).
    pub end: Offset,
    /// True when the offset is outside `log_start..=end` (Kafka's OFFSET_OUT_OF_RANGE).
    pub out_of_range: bool,
}

impl Broker {
    /// Reads stored batches of partition `partition` of `topic` from offset `from`, about
    /// `max_bytes` at most (at least one whole batch), exactly as stored. When nothing is
    /// visible at `from` yet, waits up to `wait` for a publish to the topic (a long poll);
    /// returns empty batches when the wait ends first. A batch holding `from` is returned
    /// whole: the caller skips its records below `from`.
    pub async fn read_batches(
        self: &Arc<Self>,
        topic: &str,
        partition: u32,
        from: Offset,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Fetched> {
        let t = self.store.topic(topic)?;
        let log = t.partition(partition)?;
        let deadline = Instant::now() + wait;
        let mut rx = self.watch_topic(&t);
        loop {
            rx.borrow_and_update();
            let (start, end) = (log.start_offset(), log.visible_end());
            if from < start || from > end {
                return Ok(Fetched {
                    batches: Vec::new(),
                    log_start: start,
                    end,
                    out_of_range: true,
                });
            }
            if from < end {
                let l = log.clone();
                let read = blocking(move || match l.read_messages(from, max_bytes) {
                    Ok((b, _)) => Ok(b),
                    // Retention moved the start past `from` since the check.
                    Err(StoreError::OffsetOutOfRange { .. }) => Ok(Vec::new()),
                    Err(e) => Err(e.into()),
                })
                .await?;
                return Ok(Fetched {
                    batches: read,
                    log_start: log.start_offset(),
                    end: log.visible_end(),
                    out_of_range: false,
                });
            }
            let closed = log.is_closed();
            match timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) if !closed => continue,
                Ok(_) => {
                    let m = format!("topic {topic:?} was deleted or closed");
                    return Err(super::BrokerError::new(super::ErrorKind::NotFound, m));
                }
                Err(_) => {
                    return Ok(Fetched {
                        batches: Vec::new(),
                        log_start: start,
                        end,
                        out_of_range: false,
                    })
                }
            }
        }
    }
}
