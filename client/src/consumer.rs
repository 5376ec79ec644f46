//! Competing consumers: a `Stream` of deliveries within a prefetch window, each acked or
//! nacked through its handle. A group's consumer gets messages of every partition of the
//! topic (the server takes from each in turn); a message is named by (partition, offset), and
//! a queue's messages are all of partition 0.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use sluice_format::{Offset, Record};
use tokio::sync::mpsc;

use super::{push_error, unexpected, Client, Result, Source};
use crate::protocol::{QueueMessage, Reply, Request};

impl Client {
    /// Becomes a competing consumer of a queue or of a topic's consumer group, holding at most
    /// `prefetch` unacked messages (the server may lower it).
    ///
    /// Given the nodes of a cluster, the consumer is opened on the node that serves it (a
    /// queue's leader): refused with `NotLeader` or cut, it is opened on the next node, as a
    /// publish is retried, until the retry deadline. It stays on that node: when the node
    /// fails or loses the queue's leadership the consumer ends with the error, and the next
    /// one opened finds the new leader.
    ///
    /// A group of a topic, given several nodes, is consumed on every node that leads one of
    /// its partitions (each serves the partitions it leads), merged into one consumer: see
    /// `spread`.
    pub async fn consume(&self, source: Source, prefetch: u32) -> Result<Consumer> {
        if let (Source::Group { .. }, Some(f)) = (&source, &self.inner.failover) {
            if let Some(c) = super::spread::consume_spread(self, f, &source, prefetch).await? {
                return Ok(c);
            }
        }
        // The consumer lives on one connection, whatever the client moves to later.
        let client = self.pinned().await?;
        match client.open_consumer(source.clone(), prefetch).await {
            Err(e) if super::failover::retriable(&e) => {
                let partitions = self.inner.partitions.clone();
                self.retry_on(client.conn(), e, |conn| {
                    let c = Client::on(conn, partitions.clone(), None);
                    let source = source.clone();
                    async move { c.open_consumer(source, prefetch).await }
                })
                .await
            }
            r => r,
        }
    }

    async fn open_consumer(&self, source: Source, prefetch: u32) -> Result<Consumer> {
        let (part, prefetch) = self.open_part(source, prefetch, 0).await?;
        Ok(Consumer {
            parts: vec![part],
            turn: 0,
            prefetch,
            spread: None,
            cancelled: false,
        })
    }

    /// Opens a consumer stream on this client's connection: the part, and the prefetch the
    /// server granted. `node` names it among the nodes of a spread consumer.
    pub(super) async fn open_part(
        &self,
        source: Source,
        prefetch: u32,
        node: usize,
    ) -> Result<(Part, u32)> {
        let id = self.next_id();
        let rx = self.open_stream(id);
        match self
            .request_with_id(id, Request::Consume { source, prefetch })
            .await
        {
            Ok(Reply::Subscribed { value }) => Ok((
                Part {
                    acker: Acker {
                        client: self.clone(),
                        id,
                        routes: None,
                    },
                    rx,
                    buf: VecDeque::new(),
                    ended: false,
                    node,
                },
                value as u32,
            )),
            Ok(r) => Err(self.drop_stream(id, unexpected(r))),
            Err(e) => Err(self.drop_stream(id, e)),
        }
    }
}

/// One consumer stream on one connection: the whole of a consumer, or one node's share of a
/// spread one.
pub(super) struct Part {
    pub(super) acker: Acker,
    rx: mpsc::UnboundedReceiver<Reply>,
    buf: VecDeque<QueueMessage>,
    ended: bool,
    /// Its node's index among the client's addresses (spread consumers).
    pub(super) node: usize,
}

/// Acknowledges messages of one consumer; cheap to clone.
#[derive(Clone)]
pub struct Acker {
    client: Client,
    id: u32,
    /// A spread consumer's: which node's stream delivered each partition.
    pub(super) routes: Option<std::sync::Arc<super::spread::Routes>>,
}

impl Acker {
    /// Acknowledges messages named by (partition, offset); returns once the acks are durable.
    pub async fn ack(&self, ids: &[(u32, u64)]) -> Result<()> {
        for (a, ids) in self.routed(ids) {
            a.client
                .expect_ok(Request::Ack {
                    id: a.id,
                    offsets: ids,
                })
                .await?;
        }
        Ok(())
    }

    /// True when both send to the same stream of the same connection.
    pub(super) fn same_stream(&self, other: &Acker) -> bool {
        self.id == other.id && std::sync::Arc::ptr_eq(&self.client.conn(), &other.client.conn())
    }

    /// `ids` split by the stream that delivered them: this one's own for a consumer of one
    /// stream.
    fn routed(&self, ids: &[(u32, u64)]) -> Vec<(Acker, Vec<(u32, u64)>)> {
        match &self.routes {
            Some(r) => r.split(self, ids),
            None => vec![(self.clone(), ids.to_vec())],
        }
    }

    /// Acknowledges messages of partition 0 (a queue's) by offset.
    pub async fn ack_offsets(&self, offsets: &[Offset]) -> Result<()> {
        let ids: Vec<(u32, u64)> = offsets.iter().map(|o| (0, o.0)).collect();
        self.ack(&ids).await
    }

    /// Returns messages named by (partition, offset) to the queue, redelivered after
    /// `delay_ms`.
    pub async fn nack(&self, ids: &[(u32, u64)], delay_ms: u64) -> Result<()> {
        for (a, ids) in self.routed(ids) {
            a.client
                .expect_ok(Request::Nack {
                    id: a.id,
                    delay_ms,
                    offsets: ids,
                })
                .await?;
        }
        Ok(())
    }

    /// Returns messages of partition 0 (a queue's) by offset.
    pub async fn nack_offsets(&self, offsets: &[Offset], delay_ms: u64) -> Result<()> {
        let ids: Vec<(u32, u64)> = offsets.iter().map(|o| (0, o.0)).collect();
        self.nack(&ids, delay_ms).await
    }
}

/// A message delivered to a consumer, with its ack handle.
pub struct Delivery {
    /// Partition of the group's topic (0 for a queue); with the offset, the ack handle's key.
    pub partition: u32,
    /// Offset in that partition.
    pub offset: u64,
    /// 1 for a first delivery.
    pub attempt: u32,
    /// The message.
    pub record: Record,
    acker: Acker,
}

impl Delivery {
    /// Its offset, typed.
    pub fn offset(&self) -> Offset {
        Offset(self.offset)
    }
    /// Its (partition, offset), the key of acks and nacks.
    pub fn id(&self) -> (u32, u64) {
        (self.partition, self.offset)
    }
    /// Acknowledges this message.
    pub async fn ack(&self) -> Result<()> {
        self.acker.ack(&[self.id()]).await
    }
    /// Returns this message to the queue.
    pub async fn nack(&self, delay_ms: u64) -> Result<()> {
        self.acker.nack(&[self.id()], delay_ms).await
    }
}

/// A competing consumer: a `Stream` of [`Delivery`]. The server keeps at most `prefetch`
/// messages unacked on it; acking makes room for more.
pub struct Consumer {
    /// Its streams: one, or one per node of a spread consumer.
    pub(super) parts: Vec<Part>,
    /// The part polled first next time (parts take turns).
    pub(super) turn: usize,
    prefetch: u32,
    /// A spread consumer's link to the task that opens its parts on other nodes.
    pub(super) spread: Option<super::spread::Joining>,
    cancelled: bool,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if !self.cancelled {
            for p in &self.parts {
                p.acker.client.cancel_detached(p.acker.id);
            }
        }
    }
}

impl Consumer {
    /// A spread consumer of `parts`, joined later by those `spread` opens.
    pub(super) fn spread(parts: Vec<Part>, prefetch: u32, spread: super::spread::Joining) -> Self {
        Consumer {
            parts,
            turn: 0,
            prefetch,
            spread: Some(spread),
            cancelled: false,
        }
    }

    /// The prefetch the server granted (of each node's stream, for a spread consumer).
    pub fn prefetch(&self) -> u32 {
        self.prefetch
    }

    /// A handle to ack or nack by (partition, offset).
    pub fn acker(&self) -> Acker {
        let mut a = self.parts[0].acker.clone();
        if let Some(s) = &self.spread {
            a.routes = Some(s.routes.clone());
        }
        a
    }

    /// Messages received and not yet taken.
    pub fn buffered(&self) -> usize {
        self.parts.iter().map(|p| p.buf.len()).sum()
    }

    /// The next delivery; `None` once the consumer is closed.
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next_delivery(cx)).await
    }

    /// Closes the consumer; its unacked messages go back to the queue (dropping it does too,
    /// without waiting).
    pub async fn cancel(mut self) -> Result<()> {
        self.cancelled = true;
        let mut first = Ok(());
        for p in &self.parts {
            let r = p.acker.client.cancel_stream(p.acker.id).await;
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn poll_next_delivery(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        if self.spread.is_none() {
            return self.parts[0].poll_delivery(cx);
        }
        super::spread::poll_spread(self, cx)
    }
}

impl Part {
    /// The part's next delivery; at its end, once `Closed` with the reason if the connection
    /// is gone, then `None`.
    pub(super) fn poll_delivery(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        loop {
            if let Some(m) = self.buf.pop_front() {
                return Poll::Ready(Some(Ok(Delivery {
                    partition: m.partition,
                    offset: m.offset,
                    attempt: m.attempt,
                    record: m.record,
                    acker: self.acker.clone(),
                })));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Reply::Messages(ms))) => self.buf.extend(ms),
                Poll::Ready(Some(r)) => return Poll::Ready(Some(Err(push_error(r)))),
                Poll::Ready(None) => {
                    return Poll::Ready(self.acker.client.end_of_stream(&mut self.ended))
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Closes this part's stream without waiting.
    pub(super) fn cancel_detached(&self) {
        self.acker.client.cancel_detached(self.acker.id);
    }
}

impl futures_core::Stream for Consumer {
    type Item = Result<Delivery>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_delivery(cx)
    }
}
