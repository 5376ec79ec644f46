//! Pushed subscriptions of a topic: the registry of named subscribers held by an open
//! subscription, credit (messages granted and not yet delivered, capped), and the read side of
//! the push loop, which hands stored batches to a [`BatchSink`] exactly as read.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use sluice_storage::{Batch, Error as StoreError, Offset, StartAt, Topic};
use tokio::sync::{watch, Semaphore};
use tokio::task::spawn_blocking;

use super::types::Start;
use super::{blocking, Broker, BrokerError, ErrorKind, Result};

/// Bytes read from a log per read call of a subscription.
const READ_BYTES: usize = 1 << 20;

/// Where a subscription's messages go: the frontend's encoder and writer.
pub trait BatchSink: Send {
    /// Pushes offsets `from..to` of `batch`, a stored batch as read (it may hold records outside
    /// the range); false once the receiver is gone.
    fn push(&mut self, from: Offset, to: Offset, batch: Bytes)
        -> impl Future<Output = bool> + Send;
}

/// A named subscriber held by one open subscription. Released (once) when the subscription
/// ends, when its connection cancels it (at once, not when the aborted task is dropped), or when
/// the last reference goes.
pub struct HeldName {
    broker: Arc<Broker>,
    key: (usize, String),
    released: AtomicBool,
}

impl HeldName {
    /// Frees the name.
    pub fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.broker.held_names.lock().unwrap().remove(&self.key);
        }
    }
}

impl Drop for HeldName {
    fn drop(&mut self) {
        self.release();
    }
}

/// A subscription's credit: messages granted and not delivered yet, at most a cap
/// (`limits.credit_max`).
pub struct Credit {
    /// Credit the subscription's task has not taken yet.
    sem: Semaphore,
    /// Credit granted and not yet used by a delivery: the semaphore's permits plus those the
    /// task took and has not delivered. Grants are capped against this, not against the
    /// permits alone (the task takes them all while it waits for messages).
    outstanding: AtomicU64,
}

impl Credit {
    /// `initial` credit (at most `max`).
    pub fn new(initial: u32, max: u32) -> Credit {
        let initial = initial.min(max);
        Credit {
            sem: Semaphore::new(initial as usize),
            outstanding: AtomicU64::new(initial as u64),
        }
    }

    /// Grants up to `n` more, within `max` outstanding.
    pub fn grant(&self, n: u32, max: u32) {
        let mut added = 0;
        let _ = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                added = (max as u64).saturating_sub(o).min(n as u64);
                Some(o + added)
            });
        if added > 0 {
            self.sem.add_permits(added as usize);
        }
    }

    /// `n` messages were delivered: their credit is used up.
    fn spend(&self, n: u64) {
        self.outstanding.fetch_sub(n, Ordering::AcqRel);
    }

    /// Waits for at least one credit and takes all there is; `None` once closed.
    async fn take_all(&self) -> Option<u64> {
        let p = self.sem.acquire().await.ok()?;
        p.forget();
        let mut have = 1u64;
        let extra = self.sem.available_permits() as u32;
        if extra > 0 {
            if let Ok(p) = self.sem.try_acquire_many(extra) {
                p.forget();
                have += extra as u64;
            }
        }
        Some(have)
    }
}

/// An open subscription of a topic: where it reads next, its credit, and the named subscriber
/// it holds (if named).
pub struct Subscription {
    broker: Arc<Broker>,
    topic: Arc<Topic>,
    name: Option<String>,
    credit: Arc<Credit>,
    held: Option<Arc<HeldName>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(h) = &self.held {
            h.release();
        }
    }
}

fn start_at(s: Start) -> StartAt {
    match s {
        Start::Default | Start::Latest => StartAt::Latest,
        Start::Earliest => StartAt::Earliest,
        Start::Offset(o) => StartAt::Offset(Offset(o)),
        Start::Timestamp(t) => StartAt::Timestamp(t),
    }
}

impl Subscription {
    /// A subscription of `topic` with `credit` (capped by `limits.credit_max`), holding the
    /// named subscriber `name` if given (`InUse` when another open subscription holds it).
    /// Nothing is read or written yet: [`Subscription::open`] and [`SubscriptionReader::run`] do that.
    pub fn new(
        broker: &Arc<Broker>,
        topic: &str,
        name: Option<String>,
        credit: u32,
    ) -> Result<Subscription> {
        let topic = broker.store.topic(topic)?;
        let held = match &name {
            Some(n) => Some(hold(broker, &topic, n)?),
            None => None,
        };
        Ok(Subscription {
            broker: broker.clone(),
            credit: Arc::new(Credit::new(credit, broker.limits.credit_max)),
            topic,
            name,
            held,
        })
    }

    /// Its credit, which the frontend grants to.
    pub fn credit(&self) -> &Arc<Credit> {
        &self.credit
    }

    /// The named subscriber it holds, which the frontend may release at once on a cancel.
    pub fn held(&self) -> Option<&Arc<HeldName>> {
        self.held.as_ref()
    }

    /// The topic's name.
    pub fn topic_name(&self) -> &str {
        self.topic.name()
    }

    /// Opens the subscription: registers its watcher, then resolves where it starts (a named
    /// subscriber's committed offset for [`Start::Default`]; another start is committed for
    /// it). Returns the reader to pass to [`SubscriptionReader::run`] and the first offset.
    pub async fn open(self, start: Start) -> Result<(SubscriptionReader, Offset)> {
        let log = self.topic.log().clone();
        let key = format!("t/{}", self.topic.name());
        let rx = self
            .broker
            .watch_log(key, Arc::as_ptr(&self.topic) as usize, &log);
        let (t, name) = (self.topic.clone(), self.name.clone());
        let next = blocking(move || {
            Ok(match (name, start) {
                (Some(n), Start::Default) => t.subscribe(&n, StartAt::Latest)?[0],
                (Some(n), s) => {
                    let at = t.resolve(0, start_at(s))?;
                    t.subscribe(&n, start_at(s))?;
                    t.commit(&n, 0, at, &[])?;
                    at
                }
                (None, s) => t.resolve(0, start_at(s))?,
            })
        })
        .await?;
        Ok((
            SubscriptionReader {
                sub: self,
                rx,
                next,
            },
            next,
        ))
    }
}

/// Holds `name` of `topic`, unless another subscription holds it.
fn hold(broker: &Arc<Broker>, topic: &Arc<Topic>, name: &str) -> Result<Arc<HeldName>> {
    let key = (Arc::as_ptr(topic) as usize, name.to_owned());
    if !broker.held_names.lock().unwrap().insert(key.clone()) {
        return Err(BrokerError::new(
            ErrorKind::InUse,
            format!(
                "subscriber {name:?} of topic {:?} is held by another open subscription",
                topic.name()
            ),
        ));
    }
    Ok(Arc::new(HeldName {
        broker: broker.clone(),
        key,
        released: AtomicBool::new(false),
    }))
}

/// The read side of an open subscription's push loop.
pub struct SubscriptionReader {
    sub: Subscription,
    rx: watch::Receiver<u64>,
    next: Offset,
}

impl SubscriptionReader {
    /// Pushes messages to `sink` as credit and messages arrive: waits for credit, then for
    /// messages past the next offset, reads stored batches and hands them on as read. Returns
    /// `Ok` once the sink is gone, an error when the subscription ends by itself (its topic
    /// was deleted or closed: `NotFound`; a read failed).
    pub async fn run(mut self, sink: &mut impl BatchSink) -> Result<()> {
        let log = self.sub.topic.log().clone();
        loop {
            let Some(mut have) = self.sub.credit.take_all().await else {
                return Ok(());
            };
            // Wait for data.
            loop {
                self.rx.borrow_and_update();
                if log.visible_end() > self.next {
                    break;
                }
                if log.is_closed() || self.rx.changed().await.is_err() {
                    let msg = format!("topic {:?} was deleted or closed", self.sub.topic.name());
                    return Err(BrokerError::new(ErrorKind::NotFound, msg));
                }
            }
            let l = log.clone();
            let from = self.next;
            match spawn_blocking(move || l.read(from, READ_BYTES)).await {
                Ok(Ok(batches)) => {
                    if !self.push(batches, sink, &mut have).await {
                        return Ok(());
                    }
                }
                Ok(Err(StoreError::OffsetOutOfRange { start, .. })) if self.next < start => {
                    // Retention removed what this subscription had not read yet.
                    self.next = start;
                }
                Ok(Err(e)) => {
                    let kind = BrokerError::from(e).kind;
                    return Err(BrokerError::new(kind, "read failed; subscription closed"));
                }
                Err(_) => return Ok(()),
            }
            if have > 0 {
                self.sub.credit.sem.add_permits(have as usize);
            }
        }
    }

    /// Pushes the messages of `batches` from the next offset, as many as `have` credits; false
    /// once the sink is gone.
    async fn push(
        &mut self,
        batches: Vec<Batch>,
        sink: &mut impl BatchSink,
        have: &mut u64,
    ) -> bool {
        for b in batches {
            if *have == 0 {
                break;
            }
            let f = self.next.0.max(b.header.base_offset.0);
            let end = b.header.next_offset().0;
            if f >= end {
                continue;
            }
            let to = end.min(f + *have);
            if !sink.push(Offset(f), Offset(to), b.bytes).await {
                return false;
            }
            *have -= to - f;
            self.sub.credit.spend(to - f);
            self.next = Offset(to);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_is_capped_counting_what_the_task_holds() {
        let c = Credit::new(150, 100);
        assert_eq!(c.sem.available_permits(), 100);
        // The task takes everything while it waits for messages.
        c.sem.try_acquire_many(100).unwrap().forget();
        c.grant(60, 100);
        assert_eq!(c.sem.available_permits(), 0);
        c.spend(30);
        c.grant(60, 100);
        assert_eq!(c.sem.available_permits(), 30);
        assert_eq!(c.outstanding.load(Ordering::Acquire), 100);
    }
}
