//! Competing consumers of a queue or of a topic's consumer group: the prefetch window, delivery
//! rounds bounded by bytes, acks (which run the consumer's next round in the same sync), nacks,
//! expiry and release.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sluice_storage::{
    now_ms, ConsumerId, Delivery, Error as StoreError, Offset, Pending, Queue, QueueConfig,
};
use tokio::sync::{watch, Notify};
use tokio::task::spawn_blocking;
use tokio::time::sleep;
use tracing::warn;

use super::types::Source;
use super::{blocking, Broker, BrokerError, ErrorKind, Result};

/// One consumer: its id, its queue once open, and the messages it holds.
pub struct Consumer {
    cid: ConsumerId,
    queue: OnceLock<Arc<Queue>>,
    events: OnceLock<Arc<Notify>>,
    /// Offsets delivered to this consumer and not settled, with their ack deadline (after it the
    /// queue takes them back, so they stop counting against the prefetch).
    inflight: Mutex<HashMap<u64, i64>>,
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

/// What an open consumer waits on: its queue, the append listener of the queue's log and the
/// queue's events (messages returned by nacks, releases, expiries).
pub struct ConsumerFeed {
    /// The queue (a group's queue for a topic's group).
    pub queue: Arc<Queue>,
    /// The visible end of the queue's (or topic's) log.
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
            queue: OnceLock::new(),
            events: OnceLock::new(),
            inflight: Mutex::default(),
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

    /// Opens the queue or group of `source` for this consumer.
    pub async fn open(&self, broker: &Arc<Broker>, source: &Source) -> Result<ConsumerFeed> {
        let b = broker.clone();
        let src = source.clone();
        let (queue, log_key, ptr, ev_key) = blocking(move || {
            Ok(match src {
                Source::Queue(q) => {
                    let queue = b.store.queue(&q)?;
                    let ptr = Arc::as_ptr(&queue) as usize;
                    (queue, format!("q/{q}"), ptr, format!("q/{q}"))
                }
                Source::Group { topic, group } => {
                    let t = b.store.topic(&topic)?;
                    let cfg = QueueConfig {
                        max_unacked_per_consumer: b.limits.unacked_per_consumer_max,
                        ..QueueConfig::default()
                    };
                    let queue = t.group(&group, cfg)?.queue(0)?;
                    let ptr = Arc::as_ptr(&t) as usize;
                    let ev = format!("g/{topic}/{group}");
                    (queue, format!("t/{topic}"), ptr, ev)
                }
            })
        })
        .await?;
        let appended = broker.watch_log(log_key, ptr, queue.log());
        let events = broker.queue_events(&ev_key);
        let _ = self.queue.set(queue.clone());
        let _ = self.events.set(events.clone());
        Ok(ConsumerFeed {
            queue,
            appended,
            events,
        })
    }

    fn open_queue(&self) -> Result<Arc<Queue>> {
        self.queue
            .get()
            .cloned()
            .ok_or_else(|| BrokerError::new(ErrorKind::UnknownId, "consumer is not open yet"))
    }

    /// Forgets settled offsets (their window slots open).
    fn forget(&self, offsets: &[Offset]) {
        let mut f = self.inflight.lock().unwrap();
        for o in offsets {
            f.remove(&o.0);
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

    /// One delivery round: up to the free window and about `max_bytes`, journaled but not
    /// synced. The messages must not leave before [`Queue::commit`] of the returned
    /// [`Pending`]. The window is computed under the consumer's gate, so rounds run by its own
    /// task and by its acks never hand out more than the prefetch together, nor anything after
    /// the consumer was released. Blocking.
    pub fn deliver_round(&self, q: &Queue, max_bytes: usize) -> Result<(Vec<Delivery>, Pending)> {
        let _gate = self.gate.lock().unwrap();
        if self.closed.load(Ordering::Acquire) {
            return Ok((Vec::new(), Pending::NONE));
        }
        let window = self.window();
        if window == 0 {
            return Ok((Vec::new(), Pending::NONE));
        }
        let (ds, pending) = q.deliver_pending_within(self.cid, window, max_bytes)?;
        if ds.is_empty() {
            return Ok((Vec::new(), pending));
        }
        let ack_timeout_ms = i64::try_from(q.config().ack_timeout_ms).unwrap_or(i64::MAX);
        let deadline = now_ms().saturating_add(ack_timeout_ms);
        let mut f = self.inflight.lock().unwrap();
        f.extend(ds.iter().map(|d| (d.offset.0, deadline)));
        Ok((ds, pending))
    }

    /// A delivery round made durable: the messages to send now. Blocking.
    pub fn deliver(&self, q: &Queue, max_bytes: usize) -> Result<Vec<Delivery>> {
        let (ds, pending) = self.deliver_round(q, max_bytes)?;
        q.commit(pending)?;
        Ok(ds)
    }

    /// Acks `offsets` and fills the window they open with a round of about `round_bytes`
    /// (`None`: the consumer's own task does it later), both made durable by one sync. The
    /// round's messages go to `encode` before that sync, so they are ready to leave the moment
    /// it completes, and what `encode` made goes to `send` after it (never before: a delivery
    /// leaves only once it is durable). Offsets the consumer does not hold are refused
    /// (`NotHeld`) after the others were acked. Blocking.
    pub fn ack<T>(
        &self,
        offsets: &[Offset],
        round_bytes: Option<usize>,
        encode: impl FnOnce(Vec<Delivery>) -> T,
        send: impl FnOnce(T),
    ) -> Result<()> {
        let q = self.open_queue()?;
        let acked = q.ack_pending(self.cid, offsets)?;
        let (acked, not_held) = (acked.pending, acked.not_held);
        self.forget(offsets);
        // The window the acks opened is filled here and now, so the deliveries share the acks'
        // sync and leave with their confirm: one blocking call and one sync per round trip of
        // the consumer instead of two of each. Without push budget to spare (the client is slow
        // to read), the consumer's own task fills it once there is.
        let round = match round_bytes {
            Some(bytes) => self.deliver_round(&q, bytes),
            None => {
                self.wake.notify_one();
                Ok((Vec::new(), Pending::NONE))
            }
        };
        let (deliveries, delivered) = match round {
            Ok(r) => r,
            Err(e) => {
                // The consumer's own task retries, and reports the error if it stays.
                warn!(
                    queue = q.name(),
                    "delivering after an ack failed: {}", e.message
                );
                self.wake.notify_one();
                (Vec::new(), Pending::NONE)
            }
        };
        let ready = encode(deliveries);
        q.commit(acked.and(delivered))?;
        send(ready);
        self.acked(&q);
        if !not_held.is_empty() {
            return Err(StoreError::NotHeld { offsets: not_held }.into());
        }
        Ok(())
    }

    /// After an ack whose round filled this consumer's window: wakes the queue's consumers if
    /// one was held back by its `max_unacked` bound (the acks may have made room). Nothing else
    /// waits for an ack: messages published later, expiries and nacks wake consumers by their
    /// own paths, and this consumer's window was just filled.
    fn acked(&self, q: &Queue) {
        if q.take_held_back() {
            if let Some(ev) = self.events.get() {
                ev.notify_waiters();
            }
        }
    }

    /// Returns `offsets` to the queue, redelivered after `delay_ms`. Blocking.
    pub fn nack(&self, offsets: &[Offset], delay_ms: u64) -> Result<()> {
        let q = self.open_queue()?;
        q.nack(self.cid, offsets, delay_ms)?;
        self.forget(offsets);
        self.wake.notify_one();
        if let Some(ev) = self.events.get() {
            ev.notify_waiters();
        }
        Ok(())
    }

    /// Closes the consumer and returns what it holds to its queue at once (on the blocking
    /// pool).
    pub fn release(self: &Arc<Self>) {
        self.closed.store(true, Ordering::Release);
        if let Some(q) = self.queue.get().cloned() {
            let ev = self.events.get().cloned();
            let state = self.clone();
            spawn_blocking(move || {
                let _gate = state.gate.lock().unwrap();
                q.release(state.cid);
                if let Some(ev) = ev {
                    ev.notify_waiters();
                }
            });
        }
    }

    /// How long an idle consumer sleeps: until the queue's next deadline, and also until this
    /// consumer's own held entries lapse (they are stamped after a round returns, so they can
    /// end a little after the queue's deadline, and waking only at that one would leave the
    /// window shut, with no deadline left in the queue, until some other event).
    pub fn wait_ms(&self, queue: &Queue) -> u64 {
        let own_next = self.inflight.lock().unwrap().values().min().copied();
        [queue.next_deadline(), own_next]
            .into_iter()
            .flatten()
            .min()
            .map(|d| (d - now_ms()).clamp(1, 3_600_000) as u64)
            .unwrap_or(3_600_000)
    }
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
                Pass::Fail(_) if feed.queue.log().is_closed() => return Err(deleted()),
                Pass::Fail(e) => return Err(e),
            }
            let wait = Duration::from_millis(self.wait_ms(&feed.queue));
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
        let (q, c, s) = (feed.queue.clone(), self.clone(), sink.clone());
        // Encoded before the sync, sent after it: the frames are ready the moment the round is
        // durable, and never leave before.
        let delivered = blocking(move || {
            let (ds, pending) = c.deliver_round(&q, bytes)?;
            let encoded = s.encode(ds, room);
            q.commit(pending)?;
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
        if self.queue.next_deadline().is_some_and(|d| d <= now_ms()) {
            let q = self.queue.clone();
            let n = blocking(move || Ok(q.expire()?)).await?;
            if n > 0 {
                self.events.notify_waiters();
            }
        }
        Ok(())
    }
}
