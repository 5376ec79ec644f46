//! Moving a dead-letter queue's messages back (redrive): each message is published again,
//! without the dead-letter headers, to the queue it names in `x-original-queue` (or to a
//! queue the caller names), then acknowledged in the dead-letter queue. Blocking.
//!
//! A message is acknowledged only after its copy is durable in the target, so a crash between
//! the two leaves a duplicate, never a loss. A message whose origin is not a queue (a topic's
//! consumer group, `<topic>/<group>`) or no longer exists stops the redrive there and stays.
//!
//! On a cluster it runs on the dead-letter queue's leader (its deliveries and acks are that
//! queue's replicated changes; another node answers NotLeader), and each copy goes through the
//! target queue's group, wherever it leads, committed before the ack.

use serde::Serialize;
use sluice_storage::store::dead_letter_headers as dl;
use sluice_storage::{ConsumerId, Delivery, Offset, Record};

use super::{Broker, BrokerError, ErrorKind, Result};

/// Messages taken from the dead-letter queue per round.
pub const REDRIVE_ROUND_MAX: usize = 256;

/// Asked before a redrive moves messages into a queue: `Err` with the reason refuses it.
pub type MayWrite<'a> = dyn Fn(&str) -> std::result::Result<(), String> + Sync + 'a;

/// What a redrive did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Redriven {
    /// Messages moved.
    pub moved: u64,
    /// Why it stopped before `count`, when a message could not be moved.
    pub stopped: Option<String>,
}

/// The message as first published: without the headers dead-lettering added.
fn original(mut r: Record) -> Record {
    let added = [
        dl::REASON,
        dl::ORIGINAL_QUEUE,
        dl::ORIGINAL_OFFSET,
        dl::DELIVERY_COUNT,
    ];
    r.headers
        .retain(|h| !added.iter().any(|a| h.name == a.as_bytes()));
    r
}

fn origin(d: &Delivery) -> Option<String> {
    d.record
        .headers
        .iter()
        .find(|h| h.name == dl::ORIGINAL_QUEUE.as_bytes())
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
}

impl Broker {
    /// Moves up to `count` messages of dead-letter queue `dlq` back to their queue (or to
    /// `to`). Messages held by consumers of `dlq` are left to them.
    pub fn redrive(&self, dlq: &str, count: u64, to: Option<&str>) -> Result<Redriven> {
        self.redrive_checked(dlq, count, to, &|_| Ok(()))
    }

    /// [`Broker::redrive`], asking `may_write` before moving messages into each target queue:
    /// a target it refuses (with the reason) stops the redrive there, as a target that does
    /// not exist does.
    pub fn redrive_checked(
        &self,
        dlq: &str,
        count: u64,
        to: Option<&str>,
        may_write: &MayWrite<'_>,
    ) -> Result<Redriven> {
        if count == 0 {
            let m = "count must be at least 1".to_string();
            return Err(BrokerError::new(ErrorKind::InvalidArgument, m));
        }
        let source = self.store.queue(dlq)?;
        if let Some(t) = to {
            self.store.queue(t)?; // NotFound before anything moves
        }
        let cid = ConsumerId(
            self.next_consumer
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        let mut done = Redriven::default();
        let r = self.redrive_rounds(&source, cid, (count, to), may_write, &mut done);
        source.release(cid);
        r?;
        tracing::info!(queue = dlq, moved = done.moved, stopped = ?done.stopped, "redrive");
        Ok(done)
    }

    fn redrive_rounds(
        &self,
        source: &sluice_storage::Queue,
        cid: ConsumerId,
        (count, to): (u64, Option<&str>),
        may_write: &MayWrite<'_>,
        done: &mut Redriven,
    ) -> Result<()> {
        while done.moved < count && done.stopped.is_none() {
            let want = (count - done.moved).min(REDRIVE_ROUND_MAX as u64) as usize;
            let ds = source.deliver(cid, want)?;
            if ds.is_empty() {
                break;
            }
            // Runs of messages with the same target, in order, up to the first unmovable one.
            let mut runs: Vec<(String, Vec<Record>, Vec<Offset>)> = Vec::new();
            for d in ds {
                let target = match to.map(str::to_string).or_else(|| origin(&d)) {
                    Some(t) if self.store.queue(&t).is_ok() => match may_write(&t) {
                        Ok(()) => t,
                        Err(why) => {
                            done.stopped = Some(format!(
                                "message at offset {} goes back to queue {t}: {why}",
                                d.offset.0
                            ));
                            break;
                        }
                    },
                    other => {
                        done.stopped = Some(format!(
                            "message at offset {} names no queue to go back to ({other:?}); \
                             give one with \"to\"",
                            d.offset.0
                        ));
                        break;
                    }
                };
                match runs.last_mut() {
                    Some((t, recs, offs)) if *t == target => {
                        recs.push(original(d.record));
                        offs.push(d.offset);
                    }
                    _ => runs.push((target, vec![original(d.record)], vec![d.offset])),
                }
            }
            for (target, records, offsets) in runs {
                // Durable in the target (per its fsync policy; in a cluster, committed by a
                // majority of its group) before the ack below.
                match self.cluster() {
                    Some(c) => c.append_to_queue_blocking(&target, &records)?,
                    None => {
                        self.store.queue(&target)?.publish(&records)?;
                    }
                }
                source.ack(cid, &offsets)?;
                done.moved += offsets.len() as u64;
            }
        }
        Ok(())
    }
}
