//! Competing consumers of a queue or of a topic's consumer group: the prefetch window, delivery
//! rounds bounded by bytes, acks (which run the consumer's next round in the same sync), nacks,
//! expiry and release. A group has one queue per partition of its topic: a round takes from
//! each in turn (starting one partition further every round), and messages are named by
//! (partition, offset); a queue is partition 0.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sluice_storage::store::delivery_bytes;
use sluice_storage::{
    now_ms, ConsumerId, Delivery, Error as StoreError, Offset, Pending, Queue, QueueConfig,
};
use tokio::sync::{watch, Notify};
use tokio::task::spawn_blocking;
use tokio::time::sleep;
use tracing::warn;

use super::types::Source;
use super::{blocking, Broker, BrokerError, ErrorKind, Result};

/// A message a consumer holds: its partition and offset.
pub type MessageId = (u32, Offset);

/// One consumer: its id, its queues once open (one per partition), and the messages it holds.
pub struct Consumer {
    cid: ConsumerId,
    queues: OnceLock<Vec<Arc<Queue>>>,
    events: OnceLock<Arc<Notify>>,
    /// Offsets delivered to this consumer and not settled, with their ack deadline (after it the
    /// queue takes them back, so they stop counting against the prefetch).
    inflight: Mutex<HashMap<(u32, u64), i64>>,
    /// The partition the next delivery round starts at.
    turn: AtomicUsize,
    prefetch: AtomicU32,
    wake: Notify,
    /// Set once the consumer is released; a round that runs later (its task was aborted while
    /// the blocking call was queued) must hand out nothing.
    closed: AtomicBool,
    /// Held around a delivery round and the release so neither interleaves with the other.
    gate: Mutex<()>,
}

/// Where a consumer's messages go: the frontend's encoder and writer, with its push budget.
pub trait DeliverySink: Send + Sync + 'static {
    /// Room reserved for one delivery round (a share of the connection's push budget), held
    /// by what the round becomes until it is written.
    type Room: Send + 'static;
    /// A round's messages as the frontend sends them (encoded frames).
    type Encoded: Send + 'static;

    /// Sends what rounds run by acks left to the consumer's own task; false once the receiver
    /// is gone.
    fn flush(&self) -> impl Future<Output = bool> + Send;
    /// Waits for room for one round: the room and its size in bytes; `None` once the receiver
    /// is gone.
    fn reserve(&self) -> impl Future<Output = Option<(Self::Room, usize)>> + Send;
    /// Encodes a round's messages (on the blocking thread that made them durable); the result
    /// holds `room`.
    fn encode(&self, deliveries: Vec<Delivery>, room: Self::Room) -> Self::Encoded;
    /// Whether an encoded round holds no message.
    fn is_empty(encoded: &Self::Encoded) -> bool;
    /// Sends an encoded round; false once the receiver is gone.
    fn send(&self, encoded: Self::Encoded) -> impl Future<Output = bool> + Send;
}

/// What one pass of a consumer's loop did.
enum Pass {
    /// Delivered messages: look again at once.
    Delivered,
    /// Nothing to deliver: wait for an event.
    Idle,
    /// The receiver is gone.
    Stop,
    /// The consumer ends with this error.
    Fail(BrokerError),
}

/// The journaled, not yet synced, work of a delivery round or an ack over several queues: made
/// durable by [`Round::commit`].
#[derive(Default)]
pub struct Round(Vec<(Arc<Queue>, Pending)>);

impl Round {
    /// Makes everything of the round durable (one sync per queue touched). Blocking.
    pub fn commit(self) -> Result<()> {
        for (q, p) in self.0 {
            q.commit(p)?;
        }
        Ok(())
    }

    /// Adds `p` of `q`, merged with what the round already holds of `q` (one sync per queue).
    fn add(&mut self, q: &Arc<Queue>, p: Pending) {
        if p == Pending::NONE {
            return;
        }
        match self.0.iter_mut().find(|(x, _)| Arc::ptr_eq(x, q)) {
            Some((_, held)) => *held = held.and(p),
            None => self.0.push((q.clone(), p)),
        }
    }

    /// Adds everything of `other`.
    pub fn extend(&mut self, other: Round) {
        for (q, p) in other.0 {
            self.add(&q, p);
        }
    }
}

/// What an open consumer waits on: its queues, the append listener of their logs and the
/// queue's events (messages returned by nacks, releases, expiries).
pub struct ConsumerFeed {
    /// The queue, or a group's queue over each partition of its topic (in partition order).
    pub queues: Vec<Arc<Queue>>,
    /// Changes when messages are appended (to the queue's log, or any partition of the topic).
    pub appended: watch::Receiver<u64>,
    /// Messages returned to the queue.
    pub events: Arc<Notify>,
}

impl Broker {
    /// A new consumer with `prefetch` messages of window (1 to
    /// `limits.unacked_per_consumer_max`). Open it with [`Consumer::open`].
    pub fn new_consumer(&self, prefetch: u32) -> Arc<Consumer> {
        let prefetch = prefetch.clamp(1, self.limits.unacked_per_consumer_max);
        Arc::new(Consumer {
            cid: ConsumerId(self.next_consumer.fetch_add(1, Ordering::Relaxed)),
            queues: OnceLock::new(),
            events: OnceLock::new(),
            inflight: Mutex::default(),
            turn: AtomicUsize::new(0),
            prefetch: AtomicU32::new(prefetch),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            gate: Mutex::new(()),
        })
    }
}

impl Consumer {
    /// Its window size.
    pub fn prefetch(&self) -> u32 {
        self.prefetch.load(Ordering::Relaxed)
    }

    /// Widens the window by `credit`, up to `max`, and wakes the consumer.
    pub fn grant(&self, credit: u32, max: u32) {
        let p = self.prefetch.load(Ordering::Relaxed);
        self.prefetch
            .store(p.saturating_add(credit).min(max), Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Wakes the consumer's task.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Notified when the consumer should look again (credit, settled messages, work left).
    pub fn woken(&self) -> &Notify {
        &self.wake
    }

    /// Opens the queue or group of `source` for this consumer: a group over every partition
    /// the topic has now. In a cluster a group is served by a node leading one of its
    /// partitions at least (`NotLeader` otherwise, naming the leader of one), and each round
    /// takes from the partitions the node leads then.
    pub async fn open(&self, broker: &Arc<Broker>, source: &Source) -> Result<ConsumerFeed> {
        self.open_with(broker, source, true).await
    }

    /// [`Consumer::open`]; with `some_partition_led` false, a group in a cluster is opened
    /// however many partitions this node leads (a Kafka share fetch names the partitions the
    /// node leads, and gets an error for the others).
    pub async fn open_with(
        &self,
        broker: &Arc<Broker>,
        source: &Source,
        some_partition_led: bool,
    ) -> Result<ConsumerFeed> {
        let b = broker.clone();
        let src = source.clone();
        let (queues, appended, ev_key) = blocking(move || {
            Ok(match src {
                Source::Queue(q) => {
                    let queue = b.store.queue(&q)?;
                    // A replicated queue's consumers are served by its leader only.
                    queue.check_leader()?;
                    let ptr = Arc::as_ptr(&queue) as usize;
                    let rx = b.watch_log(format!("q/{q}"), ptr, queue.log());
                    (vec![queue], rx, format!("q/{q}"))
                }
                Source::Group { topic, group } => {
                    let t = b.store.topic(&topic)?;
                    let cfg = QueueConfig {
                        max_unacked_per_consumer: b.limits.unacked_per_consumer_max,
                        ..QueueConfig::default()
                    };
                    let g = t.group(&group, cfg)?;
                    if let Some(c) = b.cluster() {
                        // Each partition's share of the group goes through that partition's
                        // log, led by one node.
                        c.link_group(&topic, &g)?;
                        let led = g.partitions().iter().map(|q| q.check_leader()).collect();
                        if some_partition_led {
                            first_led(led)?;
                        }
                    }
                    let queues = g.partitions();
                    let rx = b.watch_topic(&t);
                    (queues, rx, format!("g/{topic}/{group}"))
                }
            })
        })
        .await?;
        let events = broker.queue_events(&ev_key);
        let _ = self.queues.set(queues.clone());
        let _ = self.events.set(events.clone());
        Ok(ConsumerFeed {
            queues,
            appended,
            events,
        })
    }

    fn open_queues(&self) -> Result<&[Arc<Queue>]> {
        self.queues
            .get()
            .map(|q| q.as_slice())
            .ok_or_else(|| BrokerError::new(ErrorKind::UnknownId, "consumer is not open yet"))
    }

    /// Forgets settled messages (their window slots open).
    fn forget(&self, ids: &[MessageId]) {
        let mut f = self.inflight.lock().unwrap();
        for (p, o) in ids {
            f.remove(&(*p, o.0));
        }
    }

    /// Free slots of the prefetch window; held entries past their deadline no longer count.
    pub fn window(&self) -> usize {
        let held = {
            let mut f = self.inflight.lock().unwrap();
            let now = now_ms();
            f.retain(|_, deadline| *deadline > now);
            f.len()
        };
        (self.prefetch.load(Ordering::Relaxed) as usize).saturating_sub(held)
    }

    /// One delivery round: up to the free window and about `max_bytes`, taken from `queues`
    /// in turn (one partition further on each round), journaled but not synced. The messages
    /// must not leave before [`Round::commit`] of the returned round. The window is computed
    /// under the consumer's gate, so rounds run by its own task and by its acks never hand out
    /// more than the prefetch together, nor anything after the consumer was released. Blocking.
    pub fn deliver_round(
        &self,
        queues: &[Arc<Queue>],
        max_bytes: usize,
    ) -> Result<(Vec<Delivery>, Round)> {
        self.deliver_round_within(queues, usize::MAX, max_bytes)
    }

    /// [`Consumer::deliver_round`] of at most `max_count` messages (and the free window).
    pub fn deliver_round_within(
        &self,
        queues: &[Arc<Queue>],
        max_count: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Delivery>, Round)> {
        let _gate = self.gate.lock().unwrap();
        let mut round = Round::default();
        if self.closed.load(Ordering::Acquire) || queues.is_empty() {
            return Ok((Vec::new(), round));
        }
        let mut window = self.window().min(max_count);
        let mut bytes = max_bytes;
        let mut out: Vec<Delivery> = Vec::new();
        let first = self.turn.fetch_add(1, Ordering::Relaxed) % queues.len();
        // In a cluster, only the partitions this node leads now (it may gain or lose some).
        let (mut led, mut not_led) = (false, None);
        for k in 0..queues.len() {
            if window == 0 || bytes == 0 {
                break;
            }
            let q = &queues[(first + k) % queues.len()];
            if let Err(e) = q.check_leader() {
                not_led.get_or_insert(e);
                continue;
            }
            led = true;
            let (ds, pending) = match q.deliver_pending_within(self.cid, window, bytes) {
                Ok(r) => r,
                Err(e) if out.is_empty() => return Err(e.into()),
                Err(e) => {
                    // What the round took from other partitions still goes out.
                    warn!(
                        queue = q.name(),
                        partition = q.partition(),
                        "delivery failed: {e}"
                    );
                    break;
                }
            };
            round.add(q, pending);
            if ds.is_empty() {
                continue;
            }
            window = window.saturating_sub(ds.len());
            let used: usize = ds.iter().map(|d| delivery_bytes(&d.record)).sum();
            bytes = bytes.saturating_sub(used);
            let ack_timeout_ms = i64::try_from(q.config().ack_timeout_ms).unwrap_or(i64::MAX);
            let deadline = now_ms().saturating_add(ack_timeout_ms);
            let mut f = self.inflight.lock().unwrap();
            f.extend(ds.iter().map(|d| ((d.partition, d.offset.0), deadline)));
            out.extend(ds);
        }
        match not_led {
            Some(e) if !led => Err(e.into()),
            _ => Ok((out, round)),
        }
    }

    /// A delivery round made durable: the messages to send now. Blocking.
    pub fn deliver(&self, queues: &[Arc<Queue>], max_bytes: usize) -> Result<Vec<Delivery>> {
        let (ds, round) = self.deliver_round(queues, max_bytes)?;
        round.commit()?;
        Ok(ds)
    }

    /// Acks `ids` and fills the window they open with a round of about `round_bytes`
    /// (`None`: the consumer's own task does it later), all made durable before `send`. The
    /// round's messages go to `encode` before the syncs, so they are ready to leave the moment
    /// they complete, and what `encode` made goes to `send` after them (never before: a
    /// delivery leaves only once it is durable). Messages the consumer does not hold are
    /// refused (`NotHeld`) after the others were acked. Blocking.
    pub fn ack<T>(
        &self,
        ids: &[MessageId],
        round_bytes: Option<usize>,
        encode: impl FnOnce(Vec<Delivery>) -> T,
        send: impl FnOnce(T),
    ) -> Result<()> {
        let queues = self.open_queues()?;
        let (mut acked, not_held) = self.ack_pending(ids)?;
        // The window the acks opened is filled here and now, so the deliveries share the acks'
        // syncs and leave with their confirm: one blocking call per round trip of the consumer
        // instead of two. Without push budget to spare (the client is slow to read), the
        // consumer's own task fills it once there is.
        let round = match round_bytes {
            Some(bytes) => self.deliver_round(queues, bytes),
            None => {
                self.wake.notify_one();
                Ok((Vec::new(), Round::default()))
            }
        };
        let (deliveries, delivered) = match round {
            Ok(r) => r,
            Err(e) => {
                // The consumer's own task retries, and reports the error if it stays.
                warn!("delivering after an ack failed: {}", e.message);
                self.wake.notify_one();
                (Vec::new(), Round::default())
            }
        };
        let ready = encode(deliveries);
        acked.extend(delivered);
        acked.commit()?;
        send(ready);
        self.acked(queues);
        not_held_error(not_held)
    }

    /// Acks `ids` without their sync: the round to commit before the acks may be confirmed,
    /// and the messages the consumer does not hold (not acked). Blocking.
    pub fn ack_pending(&self, ids: &[MessageId]) -> Result<(Round, Vec<MessageId>)> {
        let queues = self.open_queues()?;
        let mut acked = Round::default();
        let mut not_held: Vec<MessageId> = Vec::new();
        for (p, offsets) in by_partition(ids) {
            let Some(q) = queues.get(p as usize) else {
                not_held.extend(offsets.iter().map(|o| (p, *o)));
                continue;
            };
            let a = q.ack_pending(self.cid, &offsets)?;
            acked.add(q, a.pending);
            not_held.extend(a.not_held.into_iter().map(|o| (p, o)));
        }
        self.forget(ids);
        Ok((acked, not_held))
    }

    /// Dead-letters `ids` at once, whatever their delivery count (reason `rejected`); returns
    /// once they are durably in the dead-letter queue. Blocking.
    pub fn reject(&self, ids: &[MessageId]) -> Result<()> {
        self.settle_each(ids, |q, offsets| q.reject(self.cid, offsets))
    }

    /// Applies `settle` to the messages of `ids` in each partition, forgets them all, wakes
    /// the consumer; then the first error, or `NotHeld` naming those it did not hold.
    fn settle_each(
        &self,
        ids: &[MessageId],
        settle: impl Fn(&Queue, &[Offset]) -> std::result::Result<(), StoreError>,
    ) -> Result<()> {
        let queues = self.open_queues()?;
        let mut not_held: Vec<MessageId> = Vec::new();
        let mut first_err = None;
        for (p, offsets) in by_partition(ids) {
            let Some(q) = queues.get(p as usize) else {
                not_held.extend(offsets.iter().map(|o| (p, *o)));
                continue;
            };
            match settle(q, &offsets) {
                Ok(()) => {}
                Err(StoreError::NotHeld { offsets }) => {
                    not_held.extend(offsets.into_iter().map(|o| (p, o)))
                }
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        self.forget(ids);
        self.wake.notify_one();
        if let Some(e) = first_err {
            return Err(e.into());
        }
        not_held_error(not_held)
    }

    /// After an ack whose round filled this consumer's window: wakes the queue's consumers if
    /// one was held back by its `max_unacked` bound (the acks may have made room). Nothing else
    /// waits for an ack: messages published later, expiries and nacks wake consumers by their
    /// own paths, and this consumer's window was just filled.
    fn acked(&self, queues: &[Arc<Queue>]) {
        let mut held_back = false;
        for q in queues {
            held_back |= q.take_held_back();
        }
        if held_back {
            if let Some(ev) = self.events.get() {
                ev.notify_waiters();
            }
        }
    }

    /// Returns `ids` to their queues, redelivered after `delay_ms`. Blocking.
    pub fn nack(&self, ids: &[MessageId], delay_ms: u64) -> Result<()> {
        let r = self.settle_each(ids, |q, offsets| q.nack(self.cid, offsets, delay_ms));
        if let Some(ev) = self.events.get() {
            ev.notify_waiters();
        }
        r
    }

    /// Closes the consumer and returns what it holds to its queues at once (on the blocking
    /// pool).
    pub fn release(self: &Arc<Self>) {
        self.closed.store(true, Ordering::Release);
        if let Some(qs) = self.queues.get().cloned() {
            let ev = self.events.get().cloned();
            let state = self.clone();
            spawn_blocking(move || {
                let _gate = state.gate.lock().unwrap();
                for q in qs {
                    q.release(state.cid);
                }
                if let Some(ev) = ev {
                    ev.notify_waiters();
                }
            });
        }
    }

    /// How long an idle consumer sleeps: until its queues' next deadline, and also until this
    /// consumer's own held entries lapse (they are stamped after a round returns, so they can
    /// end a little after the queue's deadline, and waking only at that one would leave the
    /// window shut, with no deadline left in the queue, until some other event).
    pub fn wait_ms(&self, queues: &[Arc<Queue>]) -> u64 {
        let own_next = self.inflight.lock().unwrap().values().min().copied();
        queues
            .iter()
            .map(|q| q.next_deadline())
            .chain([own_next])
            .flatten()
            .min()
            .map(|d| (d - now_ms()).clamp(1, 3_600_000) as u64)
            .unwrap_or(3_600_000)
    }
}

/// Message ids grouped by partition, in partition order.
fn by_partition(ids: &[MessageId]) -> Vec<(u32, Vec<Offset>)> {
    let mut m: std::collections::BTreeMap<u32, Vec<Offset>> = Default::default();
    for (p, o) in ids {
        m.entry(*p).or_default().push(*o);
    }
    m.into_iter().collect()
}

/// `NotHeld` naming the messages not held (only offsets for a queue's, which are all of
/// partition 0); `Ok` when none.
fn not_held_error(not_held: Vec<MessageId>) -> Result<()> {
    if not_held.is_empty() {
        return Ok(());
    }
    if not_held.iter().all(|(p, _)| *p == 0) {
        let offsets = not_held.into_iter().map(|(_, o)| o).collect();
        return Err(StoreError::NotHeld { offsets }.into());
    }
    let list: Vec<String> = not_held
        .iter()
        .map(|(p, o)| format!("{}@{p}", o.0))
        .collect();
    Err(BrokerError::new(
        ErrorKind::NotHeld,
        format!(
            "not held by this consumer (offset@partition): {}",
            list.join(", ")
        ),
    ))
}

impl Consumer {
    /// The consumer's own delivery loop: delivers into its free window whenever messages are
    /// published, expire or return, and sends what its acks left, until `sink` is gone (`Ok`)
    /// or the consumer ends with an error (its queue or group was deleted: `NotFound` naming
    /// `what`).
    pub async fn run<S: DeliverySink>(
        self: &Arc<Self>,
        mut feed: ConsumerFeed,
        sink: Arc<S>,
        what: &str,
    ) -> Result<()> {
        let deleted = || BrokerError::new(ErrorKind::NotFound, format!("{what} was deleted"));
        loop {
            feed.appended.borrow_and_update();
            let events = feed.events.clone();
            let ev = events.notified();
            let own = self.wake.notified();
            tokio::pin!(ev, own);
            ev.as_mut().enable();
            match self.pass(&feed, &sink).await {
                Pass::Delivered => continue,
                Pass::Idle => {}
                Pass::Stop => return Ok(()),
                // Its queue (or the group's topic) was deleted under the pass.
                Pass::Fail(_) if feed.queues[0].log().is_closed() => return Err(deleted()),
                Pass::Fail(e) => return Err(e),
            }
            let wait = Duration::from_millis(self.wait_ms(&feed.queues));
            tokio::select! {
                r = feed.appended.changed() => if r.is_err() {
                    return Err(deleted());
                },
                _ = &mut ev => {}
                _ = &mut own => {}
                _ = sleep(wait) => {}
            }
        }
    }

    /// One pass of the loop: what acks left, expired deadlines, then a delivery round into the
    /// free window (within the sink's room, waited for).
    async fn pass<S: DeliverySink>(self: &Arc<Self>, feed: &ConsumerFeed, sink: &Arc<S>) -> Pass {
        if !sink.flush().await {
            return Pass::Stop;
        }
        if let Err(e) = feed.expire_due().await {
            return Pass::Fail(e);
        }
        // A cheap look before the blocking call; the round decides under the gate.
        if self.window() == 0 {
            return Pass::Idle;
        }
        let Some((room, bytes)) = sink.reserve().await else {
            return Pass::Stop;
        };
        let (qs, c, s) = (feed.queues.clone(), self.clone(), sink.clone());
        // Encoded before the sync, sent after it: the frames are ready the moment the round is
        // durable, and never leave before.
        let delivered = blocking(move || {
            let (ds, round) = c.deliver_round(&qs, bytes)?;
            let encoded = s.encode(ds, room);
            round.commit()?;
            Ok(encoded)
        });
        match delivered.await {
            Ok(encoded) if S::is_empty(&encoded) => Pass::Idle,
            Ok(encoded) => {
                if sink.send(encoded).await {
                    Pass::Delivered
                } else {
                    Pass::Stop
                }
            }
            Err(e) => Pass::Fail(e),
        }
    }
}

impl ConsumerFeed {
    /// Takes back the messages whose ack deadline passed, if any did, and wakes the queue's
    /// consumers when some returned.
    pub async fn expire_due(&self) -> Result<()> {
        let now = now_ms();
        let due: Vec<Arc<Queue>> = self
            .queues
            .iter()
            .filter(|q| q.next_deadline().is_some_and(|d| d <= now))
            .cloned()
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let n = blocking(move || {
            let mut n = 0;
            for q in due {
                n += q.expire()?;
            }
            Ok(n)
        })
        .await?;
        if n > 0 {
            self.events.notify_waiters();
        }
        Ok(())
    }
}

/// `Ok` when one of the partitions' leadership checks is: otherwise the first one's error (a
/// group none of whose partitions this node leads).
fn first_led(led: Vec<std::result::Result<(), StoreError>>) -> Result<()> {
    let mut first_err = None;
    for r in led {
        match r {
            Ok(()) => return Ok(()),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), |e| Err(e.into()))
}
