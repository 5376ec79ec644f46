//! Competing consumers: `CONSUME` (a task pushing `MESSAGES` frames into the consumer's free
//! window, within the connection's push budget), `ACK` (which sends the consumer's next round
//! with its confirm) and `NACK`.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use sluice_storage::{Delivery, Offset};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use super::connection::Conn;
use super::{
    fill, fill_and_wait, push_error, Budgeted, End, Fail, SlotTx, StreamEnd, PUSH_BYTES_MAX,
};
use crate::broker::{Broker, Consumer, DeliverySink, MessageId};
use crate::metrics::SubscriptionKind;
use crate::protocol::{self, ErrorCode, OutFrame, QueueMessage, Reply, Source};

/// Largest `MESSAGES` frame, every byte counted (keys and headers too); one message larger than
/// this goes alone in its frame (a record is at most a batch, `batch_bytes_max`).
const MESSAGES_FRAME_BYTES: usize = 1 << 20;
/// Bytes of queue messages one delivery round of a consumer reads and pushes at most (about:
/// one message larger than this goes alone). The round takes them from the connection's push
/// budget (`PUSH_BYTES_MAX`) before reading, and its frames hold them until written, so queue
/// deliveries are bounded by bytes as subscription pushes are.
const CONSUMER_ROUND_BYTES: usize = 2 << 20;

/// Permits of the push budget one delivery round takes (`CONSUMER_ROUND_BYTES`).
fn round_permits() -> u32 {
    CONSUMER_ROUND_BYTES.min(PUSH_BYTES_MAX) as u32
}

/// The native side of one consumer: where its frames go, and the frames its acks' rounds could
/// not queue to the writer.
struct Pusher {
    id: u32,
    consumer: Arc<Consumer>,
    out: mpsc::Sender<OutFrame>,
    /// The connection's push budget (`PUSH_BYTES_MAX`), shared with its subscriptions.
    budget: Arc<Semaphore>,
    /// Frames of rounds run by acks that found the connection's writer queue full: the
    /// consumer's own task sends them (an ack never waits for a slow reader on a shared
    /// thread). Bounded by the push budget their frames hold.
    backlog: Mutex<Vec<OutFrame>>,
    /// The user's fetch quota: acks' rounds record their bytes, the consumer's task waits.
    throttle: super::auth::Throttle,
}

/// An open consumer, as its connection keeps it.
pub(super) struct ConsumerHandle {
    pusher: Arc<Pusher>,
    task: AbortHandle,
    pub(super) ended: Arc<AtomicBool>,
    /// Lists the consumer in the connection registry while it is open.
    _listed: crate::metrics::Subscribed,
}

impl ConsumerHandle {
    pub(super) fn consumer(&self) -> &Consumer {
        &self.pusher.consumer
    }

    /// Stops the consumer and returns what it held to its queue at once.
    pub(super) fn release(self) {
        self.task.abort();
        self.pusher.consumer.release();
        self.pusher.backlog.lock().unwrap().clear();
    }
}

impl Pusher {
    /// A round's messages as `MESSAGES` frames holding `budget`.
    fn frames(&self, deliveries: Vec<Delivery>, budget: OwnedSemaphorePermit) -> Vec<OutFrame> {
        let messages = deliveries.into_iter().map(|d| QueueMessage {
            partition: d.partition,
            offset: d.offset.0,
            attempt: d.attempt,
            record: d.record,
        });
        messages_frames(messages, self.id, budget)
    }

    /// Sends an ack's round without waiting: what the writer's queue has no room for goes to
    /// the backlog that the consumer's own task sends.
    fn push_from_ack(&self, frames: Vec<OutFrame>) {
        if frames.is_empty() {
            return;
        }
        let bytes = frames.iter().map(frame_len).sum();
        // The delay owed is waited out by the consumer's own task at its next send.
        let _ = self
            .throttle
            .record(crate::security::Direction::Fetch, bytes);
        let mut backlog = self.backlog.lock().unwrap();
        let mut frames = frames.into_iter();
        if backlog.is_empty() {
            for f in frames.by_ref() {
                match self.out.try_send(f) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(f)) => {
                        backlog.push(f);
                        break;
                    }
                    // The connection is ending: the consumer is released with it.
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        }
        backlog.extend(frames);
        if !backlog.is_empty() {
            drop(backlog);
            self.consumer.wake();
        }
    }

    /// Sends the frames ack rounds left to this task; false once the connection is gone.
    async fn send_backlog(&self) -> bool {
        loop {
            let frames = std::mem::take(&mut *self.backlog.lock().unwrap());
            if frames.is_empty() {
                return true;
            }
            for f in frames {
                if self.out.send(f).await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// Encodes messages into `Messages` frames of at most `MESSAGES_FRAME_BYTES` each, every byte
/// counted (a larger message goes alone); each frame holds its size of `budget` (as much as is
/// left) until the writer has written it.
fn messages_frames(
    messages: impl Iterator<Item = QueueMessage>,
    id: u32,
    mut budget: OwnedSemaphorePermit,
) -> Vec<OutFrame> {
    let mut frames = Vec::new();
    let mut chunk = Vec::new();
    let mut bytes = protocol::MESSAGES_FRAME_OVERHEAD;
    let mut flush = |chunk: Vec<QueueMessage>, bytes: usize, budget: &mut OwnedSemaphorePermit| {
        let frame = Reply::Messages(chunk).encode(id);
        debug_assert_eq!(frame.len_field() as usize + 4, bytes);
        let share = bytes.min(budget.num_permits());
        let permit = budget.split(share).expect("a share of the permits held");
        frames.push(budgeted(frame, permit));
    };
    for m in messages {
        let len = m.encoded_len();
        if !chunk.is_empty() && bytes + len > MESSAGES_FRAME_BYTES {
            flush(std::mem::take(&mut chunk), bytes, &mut budget);
            bytes = protocol::MESSAGES_FRAME_OVERHEAD;
        }
        bytes += len;
        chunk.push(m);
    }
    if !chunk.is_empty() {
        flush(chunk, bytes, &mut budget);
    }
    frames
}

fn frame_len(f: &OutFrame) -> usize {
    f.head.len() + f.tail.as_ref().map_or(0, |t| t.len())
}

/// A frame whose body holds `permit` until the writer drops it.
fn budgeted(frame: OutFrame, permit: OwnedSemaphorePermit) -> OutFrame {
    let OutFrame { head, tail } = frame;
    debug_assert!(tail.is_none());
    let body = bytes::Bytes::from(head);
    OutFrame {
        head: body[..protocol::FRAME_HEAD_LEN + 4].to_vec(),
        tail: Some(bytes::Bytes::from_owner(Budgeted {
            bytes: body.slice(protocol::FRAME_HEAD_LEN + 4..),
            _permit: permit,
        })),
    }
}

impl DeliverySink for Pusher {
    type Room = OwnedSemaphorePermit;
    type Encoded = Vec<OutFrame>;

    async fn flush(&self) -> bool {
        self.send_backlog().await
    }

    async fn reserve(&self) -> Option<(OwnedSemaphorePermit, usize)> {
        let room = self
            .budget
            .clone()
            .acquire_many_owned(round_permits())
            .await
            .ok()?;
        let bytes = room.num_permits();
        Some((room, bytes))
    }

    fn encode(&self, deliveries: Vec<Delivery>, room: OwnedSemaphorePermit) -> Vec<OutFrame> {
        self.frames(deliveries, room)
    }

    fn is_empty(frames: &Vec<OutFrame>) -> bool {
        frames.is_empty()
    }

    async fn send(&self, frames: Vec<OutFrame>) -> bool {
        let bytes = frames.iter().map(frame_len).sum();
        for frame in frames {
            if self.out.send(frame).await.is_err() {
                return false;
            }
        }
        self.throttle
            .after(crate::security::Direction::Fetch, bytes)
            .await;
        true
    }
}

/// A consumer's task: opens it (the reply to `CONSUME`), then runs the consumer's delivery
/// loop until the connection goes or the consumer ends with an error pushed to the client.
async fn run(
    broker: Arc<Broker>,
    source: Source,
    pusher: Arc<Pusher>,
    slot: SlotTx,
    end: StreamEnd,
) {
    let (id, consumer) = (pusher.id, pusher.consumer.clone());
    let feed = match consumer.open(&broker, &source).await {
        Ok(f) => f,
        Err(e) => {
            end.mark();
            fill(slot, id, Fail::from(e).reply());
            return;
        }
    };
    let opened = Reply::Subscribed {
        value: consumer.prefetch() as u64,
    };
    if !fill_and_wait(slot, id, opened).await {
        return;
    }
    let what = format!("{source:?}");
    if let Err(e) = consumer.run(feed, pusher.clone(), &what).await {
        end.mark();
        push_error(&pusher.out, id, e.into());
    }
}

impl Conn {
    pub(super) async fn consume(
        &mut self,
        id: u32,
        source: Source,
        prefetch: u32,
    ) -> Result<(), End> {
        let tx = self.slot().await?;
        if let Some(refused) = self.refuse_stream(id, "consumer") {
            fill(tx, id, refused);
            return Ok(());
        }
        let pusher = Arc::new(Pusher {
            id,
            consumer: self.broker.new_consumer(prefetch),
            out: self.out.clone(),
            budget: self.push_budget.clone(),
            backlog: Mutex::default(),
            throttle: self.throttle(),
        });
        let (end, ended) = self.stream_end();
        let listed = match &source {
            Source::Queue(q) => self.conn.subscribe(SubscriptionKind::Queue, q, ""),
            Source::Group { topic, group } => {
                self.conn.subscribe(SubscriptionKind::Group, group, topic)
            }
        };
        let task =
            crate::broker::spawn_in_span(run(self.broker.clone(), source, pusher.clone(), tx, end));
        let handle = ConsumerHandle {
            pusher,
            task: task.abort_handle(),
            ended,
            _listed: listed,
        };
        self.consumers.insert(id, handle);
        Ok(())
    }

    /// The consumer `target` of this connection, or the `UnknownId` reply.
    async fn open_consumer(&self, id: u32, target: u32) -> Result<Option<Arc<Pusher>>, End> {
        match self.consumers.get(&target) {
            Some(c) => Ok(Some(c.pusher.clone())),
            None => {
                let m = format!("no open consumer {target} on this connection");
                self.reply(id, Reply::error(ErrorCode::UnknownId, m))
                    .await?;
                Ok(None)
            }
        }
    }

    /// Acks deliveries; the window they open is filled in the same sync and sent before the
    /// confirm.
    pub(super) async fn ack(
        &mut self,
        id: u32,
        target: u32,
        offsets: Vec<(u32, u64)>,
    ) -> Result<(), End> {
        let Some(pusher) = self.open_consumer(id, target).await? else {
            return Ok(());
        };
        let tx = self.slot().await?;
        self.spawn_reply(tx, id, move || {
            let offsets: Vec<MessageId> = offsets.iter().map(|(p, o)| (*p, Offset(*o))).collect();
            let budget = pusher
                .budget
                .clone()
                .try_acquire_many_owned(round_permits())
                .ok();
            let round_bytes = budget.as_ref().map(|b| b.num_permits());
            pusher.consumer.ack(
                &offsets,
                round_bytes,
                |deliveries| budget.map(|b| pusher.frames(deliveries, b)),
                |frames| {
                    if let Some(frames) = frames {
                        pusher.push_from_ack(frames);
                    }
                },
            )?;
            Ok(Reply::Ok)
        });
        Ok(())
    }

    /// Returns deliveries to the queue.
    pub(super) async fn nack(
        &mut self,
        id: u32,
        target: u32,
        delay_ms: u64,
        offsets: Vec<(u32, u64)>,
    ) -> Result<(), End> {
        let Some(pusher) = self.open_consumer(id, target).await? else {
            return Ok(());
        };
        let tx = self.slot().await?;
        self.spawn_reply(tx, id, move || {
            let offsets: Vec<MessageId> = offsets.iter().map(|(p, o)| (*p, Offset(*o))).collect();
            pusher.consumer.nack(&offsets, delay_ms)?;
            Ok(Reply::Ok)
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::{Header, Record};

    #[test]
    fn messages_frames_are_split_by_real_size_and_hold_their_budget() {
        let msg = |i: u64, key: usize, headers: usize| QueueMessage {
            partition: 0,
            offset: i,
            attempt: 1,
            record: Record {
                timestamp_ms: Some(0),
                key: Some(vec![1; key]),
                headers: vec![Header::new("h", vec![2; 1000]); headers],
                value: b"v".to_vec(),
            },
        };
        // Large keys and headers, tiny values, and one message over the frame limit by itself.
        let mut ms: Vec<QueueMessage> = (0..100).map(|i| msg(i, 20_000, 20)).collect();
        ms.insert(50, msg(1000, MESSAGES_FRAME_BYTES + 10, 0));
        let total: usize = ms.iter().map(QueueMessage::encoded_len).sum();
        let budget = Arc::new(Semaphore::new(PUSH_BYTES_MAX));
        let permit = budget
            .clone()
            .try_acquire_many_owned(round_permits())
            .unwrap();
        let frames = messages_frames(ms.into_iter(), 7, permit);
        let mut sizes = 0;
        let mut count = 0;
        for f in &frames {
            let bytes = f.to_vec();
            let raw = protocol::parse_frame(&bytes, u32::MAX).unwrap();
            let Reply::Messages(ms) = Reply::decode(raw).unwrap() else {
                panic!("not a MESSAGES frame")
            };
            assert!(bytes.len() <= MESSAGES_FRAME_BYTES || ms.len() == 1);
            sizes += bytes.len() - protocol::MESSAGES_FRAME_OVERHEAD;
            count += ms.len();
        }
        assert_eq!((count, sizes), (101, total));
        // The frames hold the round's permits (all of them: the messages take more) until
        // dropped.
        assert_eq!(
            budget.available_permits(),
            PUSH_BYTES_MAX - round_permits() as usize
        );
        drop(frames);
        assert_eq!(budget.available_permits(), PUSH_BYTES_MAX);
    }
}
