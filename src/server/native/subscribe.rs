//! Topic subscriptions: `SUBSCRIBE` (a task pushing `DELIVER` frames of stored batches as read,
//! within credit and the connection's push budget), `CREDIT`, `CANCEL` and `COMMIT`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::security::Direction;

use bytes::Bytes;
use sluice_storage::Offset;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::AbortHandle;

use super::connection::Conn;
use super::{
    fill, fill_and_wait, push_error, Budgeted, End, Fail, SlotTx, StreamEnd, PUSH_BYTES_MAX,
};
use crate::broker::{BatchSink, Credit, HeldName, Subscription};
use crate::protocol::{ErrorCode, OutFrame, Reply, Start};

/// An open subscription, as its connection keeps it.
pub(super) struct SubHandle {
    credit: Arc<Credit>,
    task: AbortHandle,
    pub(super) ended: Arc<AtomicBool>,
    held: Option<Arc<HeldName>>,
    /// Lists the subscription in the connection registry while it is open.
    _listed: crate::metrics::Subscribed,
}

impl SubHandle {
    /// Stops the subscription; its named subscriber is free at once.
    pub(super) fn cancel(self) {
        self.task.abort();
        if let Some(h) = &self.held {
            h.release();
        }
    }
}

/// Encodes a subscription's batches as `DELIVER` frames; each holds its share of the
/// connection's push budget until written.
struct Pusher {
    id: u32,
    out: mpsc::Sender<OutFrame>,
    /// The connection's push budget (`PUSH_BYTES_MAX`).
    budget: Arc<Semaphore>,
    /// The user's fetch quota.
    throttle: super::auth::Throttle,
}

impl BatchSink for Pusher {
    async fn push(&mut self, partition: u32, from: Offset, to: Offset, batch: Bytes) -> bool {
        let len = batch.len();
        let share = len.clamp(1, PUSH_BYTES_MAX) as u32;
        let Ok(permit) = self.budget.clone().acquire_many_owned(share).await else {
            return false;
        };
        let batch = Bytes::from_owner(Budgeted {
            bytes: batch,
            _permit: permit,
        });
        let frame = Reply::Deliver {
            partition,
            from: from.0,
            to: to.0,
            batch,
        }
        .encode(self.id);
        if self.out.send(frame).await.is_err() {
            return false;
        }
        self.throttle.after(Direction::Fetch, len).await;
        true
    }
}

/// A subscription's task: opens it (the reply to `SUBSCRIBE`), then pushes until the
/// connection goes or the subscription ends with an error pushed to the client.
async fn run(sub: Subscription, start: Start, slot: SlotTx, mut sink: Pusher, end: StreamEnd) {
    let id = sink.id;
    let (reader, next) = match sub.open(start).await {
        Ok(x) => x,
        Err(e) => {
            end.mark();
            fill(slot, id, Fail::from(e).reply());
            return;
        }
    };
    let positions = next.iter().map(|(p, o)| (*p, o.0)).collect();
    if !fill_and_wait(slot, id, Reply::Positions(positions)).await {
        return;
    }
    if let Err(e) = reader.run(&mut sink).await {
        end.mark();
        push_error(&sink.out, id, e.into());
    }
}

impl Conn {
    pub(super) async fn subscribe(
        &mut self,
        id: u32,
        topic: String,
        name: Option<String>,
        partitions: Vec<u32>,
        start: Start,
        credit: u32,
    ) -> Result<(), End> {
        let tx = self.slot().await?;
        if let Some(refused) = self.refuse_stream(id, "subscription") {
            fill(tx, id, refused);
            return Ok(());
        }
        let listed = self.conn.subscribe(
            crate::metrics::SubscriptionKind::Topic,
            &topic,
            name.as_deref().map_or("", |n| n),
        );
        let sub = match Subscription::new(&self.broker, &topic, name, partitions, credit) {
            Ok(s) => s,
            Err(e) => {
                fill(tx, id, Fail::from(e).reply());
                return Ok(());
            }
        };
        let credit = sub.credit().clone();
        let held = sub.held().cloned();
        let (end, ended) = self.stream_end();
        let sink = Pusher {
            id,
            out: self.out.clone(),
            budget: self.push_budget.clone(),
            throttle: self.throttle(),
        };
        let task = crate::broker::spawn_in_span(run(sub, start, tx, sink, end));
        let handle = SubHandle {
            credit,
            task: task.abort_handle(),
            ended,
            held,
            _listed: listed,
        };
        self.subs.insert(id, handle);
        Ok(())
    }

    /// Grants credit to a subscription or widens a consumer's window (no reply).
    pub(super) fn credit(&self, target: u32, credit: u32) {
        let limits = self.broker.limits();
        if let Some(s) = self.subs.get(&target) {
            s.credit.grant(credit, limits.credit_max);
        } else if let Some(c) = self.consumers.get(&target) {
            c.consumer().grant(credit, limits.unacked_per_consumer_max);
        }
    }

    /// Closes a subscription or consumer of this connection.
    pub(super) async fn cancel(&mut self, id: u32, target: u32) -> Result<(), End> {
        let tx = self.slot().await?;
        if let Some(s) = self.subs.remove(&target) {
            s.cancel();
            fill(tx, id, Reply::Ok);
        } else if let Some(c) = self.consumers.remove(&target) {
            c.release();
            fill(tx, id, Reply::Ok);
        } else {
            let m = format!("no open subscription or consumer {target}");
            fill(tx, id, Reply::error(ErrorCode::UnknownId, m));
        }
        Ok(())
    }

    /// Stores a named subscriber's offset on a partition, with its metadata.
    pub(super) async fn commit(&self, id: u32, c: Commit) -> Result<(), End> {
        let tx = self.slot().await?;
        let broker = self.broker.clone();
        self.spawn_reply(tx, id, move || {
            broker.commit(&c.topic, &c.name, c.partition, Offset(c.next), &c.metadata)?;
            Ok(Reply::Ok)
        });
        Ok(())
    }
}

/// The fields of a `COMMIT` request.
pub(super) struct Commit {
    pub(super) topic: String,
    pub(super) name: String,
    pub(super) partition: u32,
    pub(super) next: u64,
    pub(super) metadata: Vec<u8>,
}
