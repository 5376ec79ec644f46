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
    pub async fn consume(&self, source: Source, prefetch: u32) -> Result<Consumer> {
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
        let id = self.next_id();
        let rx = self.open_stream(id);
        match self
            .request_with_id(id, Request::Consume { source, prefetch })
            .await
        {
            Ok(Reply::Subscribed { value }) => Ok(Consumer {
                acker: Acker {
                    client: self.clone(),
                    id,
                },
                prefetch: value as u32,
                rx,
                buf: VecDeque::new(),
                cancelled: false,
                ended: false,
            }),
            Ok(r) => Err(self.drop_stream(id, unexpected(r))),
            Err(e) => Err(self.drop_stream(id, e)),
        }
    }
}

/// Acknowledges messages of one consumer; cheap to clone.
#[derive(Clone)]
pub struct Acker {
    client: Client,
    id: u32,
}

impl Acker {
    /// Acknowledges messages named by (partition, offset); returns once the acks are durable.
    pub async fn ack(&self, ids: &[(u32, u64)]) -> Result<()> {
        self.client
            .expect_ok(Request::Ack {
                id: self.id,
                offsets: ids.to_vec(),
            })
            .await
    }

    /// Acknowledges messages of partition 0 (a queue's) by offset.
    pub async fn ack_offsets(&self, offsets: &[Offset]) -> Result<()> {
        let ids: Vec<(u32, u64)> = offsets.iter().map(|o| (0, o.0)).collect();
        self.ack(&ids).await
    }

    /// Returns messages named by (partition, offset) to the queue, redelivered after
    /// `delay_ms`.
    pub async fn nack(&self, ids: &[(u32, u64)], delay_ms: u64) -> Result<()> {
        self.client
            .expect_ok(Request::Nack {
                id: self.id,
                delay_ms,
                offsets: ids.to_vec(),
            })
            .await
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
    acker: Acker,
    prefetch: u32,
    rx: mpsc::UnboundedReceiver<Reply>,
    buf: VecDeque<QueueMessage>,
    cancelled: bool,
    ended: bool,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if !self.cancelled {
            self.acker.client.cancel_detached(self.acker.id);
        }
    }
}

impl Consumer {
    /// The prefetch the server granted.
    pub fn prefetch(&self) -> u32 {
        self.prefetch
    }

    /// A handle to ack or nack by offset.
    pub fn acker(&self) -> Acker {
        self.acker.clone()
    }

    /// Messages received and not yet taken.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next delivery; `None` once the consumer is closed.
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next_delivery(cx)).await
    }

    /// Closes the consumer; its unacked messages go back to the queue (dropping it does too,
    /// without waiting).
    pub async fn cancel(mut self) -> Result<()> {
        self.cancelled = true;
        self.acker.client.cancel_stream(self.acker.id).await
    }

    fn poll_next_delivery(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
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
}

impl futures_core::Stream for Consumer {
    type Item = Result<Delivery>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_delivery(cx)
    }
}
