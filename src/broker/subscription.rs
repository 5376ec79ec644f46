//! Pushed subscriptions of a topic: the registry of named subscribers held by an open
//! subscription, credit (messages granted and not yet delivered, capped), and the read side of
//! the push loop, which hands stored batches to a [`BatchSink`] exactly as read, taking the
//! partitions with messages in turn. Ordering is per partition.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use sluice_storage::{Batch, Error as StoreError, Log, Offset, StartAt, Topic, PARTITIONS_MAX};
use tokio::sync::{watch, Semaphore};
use tokio::task::spawn_blocking;

use super::types::Start;
use super::{blocking, Broker, BrokerError, ErrorKind, Result};

/// Bytes read from a log per read call of a subscription.
const READ_BYTES: usize = 1 << 20;

/// Where a subscription's messages go: the frontend's encoder and writer.
pub trait BatchSink: Send {
    /// Pushes offsets `from..to` of `batch`, a stored batch of `partition` as read (it may
    /// hold records outside the range); false once the receiver is gone.
    fn push(
        &mut self,
        partition: u32,
        from: Offset,
        to: Offset,
        batch: Bytes,
    ) -> impl Future<Output = bool> + Send;
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
    /// The partitions it reads, in order.
    partitions: Vec<u32>,
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
    /// A subscription of `partitions` of `topic` (empty: every partition it has now) with
    /// `credit` (capped by `limits.credit_max`), holding the named subscriber `name` if given
    /// (`InUse` when another open subscription holds it). A partition past the topic's count
    /// is `NotFound`, one named twice `InvalidArgument`. Nothing is read or written yet:
    /// [`Subscription::open`] and [`SubscriptionReader::run`] do that.
    pub fn new(
        broker: &Arc<Broker>,
        topic: &str,
        name: Option<String>,
        partitions: Vec<u32>,
        credit: u32,
    ) -> Result<Subscription> {
        let topic = broker.store.topic(topic)?;
        let partitions = chosen_partitions(&topic, partitions)?;
        let held = match &name {
            Some(n) => Some(hold(broker, &topic, n)?),
            None => None,
        };
        Ok(Subscription {
            broker: broker.clone(),
            credit: Arc::new(Credit::new(credit, broker.limits.credit_max)),
            topic,
            name,
            partitions,
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

    /// Opens the subscription: registers its watcher, then resolves where it starts on each
    /// of its partitions (a named subscriber's committed offsets for [`Start::Default`];
    /// another start is committed for it). Returns the reader to pass to
    /// [`SubscriptionReader::run`] and the first offset of each partition.
    pub async fn open(self, start: Start) -> Result<(SubscriptionReader, Vec<(u32, Offset)>)> {
        let rx = self.broker.watch_topic(&self.topic);
        let (t, name, ps) = (
            self.topic.clone(),
            self.name.clone(),
            self.partitions.clone(),
        );
        let next = blocking(move || {
            let at: Vec<Offset> = match (name, start) {
                (Some(n), Start::Default) => {
                    let all = t.subscribe(&n, StartAt::Latest)?;
                    ps.iter().map(|p| all[*p as usize]).collect()
                }
                (Some(n), s) => {
                    t.subscribe(&n, start_at(s))?;
                    let mut at = Vec::new();
                    for p in &ps {
                        let o = t.resolve(*p, start_at(s))?;
                        t.commit(&n, *p, o, &[])?;
                        at.push(o);
                    }
                    at
                }
                (None, s) => ps
                    .iter()
                    .map(|p| t.resolve(*p, start_at(s)))
                    .collect::<std::result::Result<_, _>>()?,
            };
            Ok(ps.into_iter().zip(at).collect::<Vec<_>>())
        })
        .await?;
        let parts = next
            .iter()
            .map(|(p, o)| {
                Ok(Part {
                    partition: *p,
                    log: self.topic.partition(*p)?,
                    next: *o,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((
            SubscriptionReader {
                sub: self,
                rx,
                parts,
                turn: 0,
            },
            next,
        ))
    }
}

/// The partitions a subscription reads: `asked` (checked) or every partition of `topic`.
fn chosen_partitions(topic: &Topic, asked: Vec<u32>) -> Result<Vec<u32>> {
    let count = topic.partition_count();
    if asked.is_empty() {
        return Ok((0..count).collect());
    }
    if asked.len() > PARTITIONS_MAX as usize {
        let m = format!("at most {PARTITIONS_MAX} partitions, not {}", asked.len());
        return Err(BrokerError::new(ErrorKind::InvalidArgument, m));
    }
    let mut seen = std::collections::HashSet::new();
    for p in &asked {
        if *p >= count {
            let m = format!(
                "topic {:?} has {count} partitions: no partition {p}",
                topic.name()
            );
            return Err(BrokerError::new(ErrorKind::NotFound, m));
        }
        if !seen.insert(*p) {
            let m = format!("partition {p} is named twice");
            return Err(BrokerError::new(ErrorKind::InvalidArgument, m));
        }
    }
    Ok(asked)
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

/// One partition a subscription reads: its log and the next offset to push.
struct Part {
    partition: u32,
    log: Log,
    next: Offset,
}

/// The read side of an open subscription's push loop.
pub struct SubscriptionReader {
    sub: Subscription,
    rx: watch::Receiver<u64>,
    parts: Vec<Part>,
    /// Where the next look for a partition with messages starts (each partition in turn).
    turn: usize,
}

impl SubscriptionReader {
    /// Pushes messages to `sink` as credit and messages arrive: waits for credit, then for
    /// messages past the next offset of any of its partitions, reads stored batches of one
    /// partition (taking the partitions with messages in turn) and hands them on as read.
    /// Returns `Ok` once the sink is gone, an error when the subscription ends by itself (its
    /// topic was deleted or closed: `NotFound`; a read failed).
    pub async fn run(mut self, sink: &mut impl BatchSink) -> Result<()> {
        loop {
            let Some(mut have) = self.sub.credit.take_all().await else {
                return Ok(());
            };
            let i = self.wait_ready().await?;
            self.turn = (i + 1) % self.parts.len();
            let (l, from) = (self.parts[i].log.clone(), self.parts[i].next);
            match spawn_blocking(move || l.read_messages(from, READ_BYTES)).await {
                Ok(Ok((batches, read_to))) if batches.is_empty() => {
                    // Only control batches of a replicated log: step past them.
                    self.parts[i].next = self.parts[i].next.max(read_to);
                }
                Ok(Ok((batches, _))) => {
                    if !self.push(i, batches, sink, &mut have).await {
                        return Ok(());
                    }
                }
                Ok(Err(StoreError::OffsetOutOfRange { start, .. })) if from < start => {
                    // Retention removed what this subscription had not read yet.
                    self.parts[i].next = start;
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

    /// Waits until one of its partitions has messages past its next offset; returns the first
    /// such partition's index from `turn` on.
    async fn wait_ready(&mut self) -> Result<usize> {
        let n = self.parts.len();
        loop {
            self.rx.borrow_and_update();
            let ready = (0..n)
                .map(|k| (self.turn + k) % n)
                .find(|&i| self.parts[i].log.visible_end() > self.parts[i].next);
            if let Some(i) = ready {
                return Ok(i);
            }
            let closed = self.parts.iter().any(|p| p.log.is_closed());
            if closed || self.rx.changed().await.is_err() {
                let msg = format!("topic {:?} was deleted or closed", self.sub.topic.name());
                return Err(BrokerError::new(ErrorKind::NotFound, msg));
            }
        }
    }

    /// Pushes the messages of `batches` (of part `i`) from its next offset, as many as `have`
    /// credits; false once the sink is gone.
    async fn push(
        &mut self,
        i: usize,
        batches: Vec<Batch>,
        sink: &mut impl BatchSink,
        have: &mut u64,
    ) -> bool {
        let part = &mut self.parts[i];
        for b in batches {
            if *have == 0 {
                break;
            }
            let f = part.next.0.max(b.header.base_offset.0);
            let end = b.header.next_offset().0;
            if f >= end {
                continue;
            }
            let to = end.min(f + *have);
            if !sink
                .push(part.partition, Offset(f), Offset(to), b.bytes)
                .await
            {
                return false;
            }
            *have -= to - f;
            self.sub.credit.spend(to - f);
            part.next = Offset(to);
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
