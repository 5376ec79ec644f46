//! Topic subscriptions: a `Stream` of messages pushed by the server within a credit window,
//! and commits of a named subscriber's offset.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use sluice_format::Offset;
use tokio::sync::mpsc;

use super::{push_error, unexpected, Client, ClientError, Message, Result, Start};
use crate::protocol::{self, Reply, Request};

/// Options of [`Client::subscribe`].
#[derive(Clone, Debug)]
pub struct SubscribeOptions {
    /// Named (durable offset) or anonymous.
    pub name: Option<String>,
    /// The partitions to read (empty: every partition).
    pub partitions: Vec<u32>,
    /// Start position (on each partition).
    pub start: Start,
    /// Messages the server may send ahead of consumption (flow control window).
    pub credit: u32,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            name: None,
            partitions: Vec::new(),
            start: Start::Default,
            credit: 1000,
        }
    }
}

impl SubscribeOptions {
    /// An anonymous reader from the end.
    pub fn anonymous() -> Self {
        Self::default()
    }
    /// A named subscriber resuming at its committed offset.
    pub fn named(name: &str) -> Self {
        SubscribeOptions {
            name: Some(name.into()),
            ..Self::default()
        }
    }
    /// Sets the start position.
    pub fn from(mut self, start: Start) -> Self {
        self.start = start;
        self
    }
    /// Starts at `offset` (the same as `from(Start::Offset(offset.0))`).
    pub fn from_offset(self, offset: Offset) -> Self {
        self.from(Start::Offset(offset.0))
    }
    /// Reads only these partitions (by default every partition the topic has when the
    /// subscription opens).
    pub fn partitions(mut self, partitions: Vec<u32>) -> Self {
        self.partitions = partitions;
        self
    }
    /// Sets the credit window.
    pub fn credit(mut self, credit: u32) -> Self {
        self.credit = credit;
        self
    }
}

impl Client {
    /// Opens a subscription on a topic.
    ///
    /// Given several addresses, a subscription refused with `NotLeader` (in a cluster, a
    /// node holding no replica of a partition asked for) or whose node is lost before it
    /// opens is opened on the next address, as a publish is sent again.
    pub async fn subscribe(&self, topic: &str, opts: SubscribeOptions) -> Result<Subscription> {
        // The subscription lives on one connection, whatever the client moves to later.
        let client = self.pinned().await?;
        match client.open_subscription(topic, opts.clone()).await {
            Err(e) if super::failover::retriable(&e) => {
                let partitions = self.inner.partitions.clone();
                self.retry_on(client.conn(), e, |conn| {
                    let c = Client::on(conn, partitions.clone(), None);
                    let opts = opts.clone();
                    async move { c.open_subscription(topic, opts).await }
                })
                .await
            }
            r => r,
        }
    }

    async fn open_subscription(&self, topic: &str, opts: SubscribeOptions) -> Result<Subscription> {
        let id = self.next_id();
        let rx = self.open_stream(id);
        let credit = opts.credit.max(1);
        let req = Request::Subscribe {
            topic: topic.into(),
            name: opts.name.clone(),
            partitions: opts.partitions.clone(),
            start: opts.start,
            credit,
        };
        let start = match self.request_with_id(id, req).await {
            Ok(Reply::Positions(ps)) => ps,
            Ok(r) => return Err(self.drop_stream(id, unexpected(r))),
            Err(e) => return Err(self.drop_stream(id, e)),
        };
        Ok(Subscription {
            client: self.clone(),
            id,
            topic: topic.into(),
            name: opts.name,
            start,
            rx,
            buf: VecDeque::new(),
            credit,
            used: 0,
            cancelled: false,
            ended: false,
        })
    }

    /// Stores a named subscriber's next offset on `partition` (durable when this returns).
    pub async fn commit(&self, topic: &str, name: &str, partition: u32, next: u64) -> Result<()> {
        self.commit_with_metadata(topic, name, partition, next, &[])
            .await
    }

    /// Like [`Client::commit`], storing `metadata` (at most 4096 bytes) with the offset.
    pub async fn commit_with_metadata(
        &self,
        topic: &str,
        name: &str,
        partition: u32,
        next: u64,
        metadata: &[u8],
    ) -> Result<()> {
        self.expect_ok(Request::Commit {
            topic: topic.into(),
            name: name.into(),
            partition,
            next,
            metadata: metadata.to_vec(),
        })
        .await
    }
}

/// An open subscription: a `Stream` of topic messages. Credit is granted back to the server as
/// messages are taken, so at most `credit` messages are ever buffered.
pub struct Subscription {
    client: Client,
    id: u32,
    topic: String,
    name: Option<String>,
    start: Vec<(u32, u64)>,
    rx: mpsc::UnboundedReceiver<Reply>,
    buf: VecDeque<Message>,
    credit: u32,
    used: u32,
    /// Closed by [`Subscription::cancel`]: dropping it sends nothing more.
    cancelled: bool,
    ended: bool,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.cancelled {
            self.client.cancel_detached(self.id);
        }
    }
}

impl Subscription {
    /// The partitions it reads and the offset it started at on each.
    pub fn start_offsets(&self) -> &[(u32, u64)] {
        &self.start
    }

    /// The offset it started at on partition 0 (the only one of a single-partition topic);
    /// 0 when it does not read partition 0.
    pub fn start_offset(&self) -> u64 {
        self.start
            .iter()
            .find(|(p, _)| *p == 0)
            .map_or(0, |(_, o)| *o)
    }

    /// The next message; `None` once the subscription is closed.
    pub async fn next(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next_msg(cx)).await
    }

    /// Messages received and not yet taken.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stores this named subscriber's next offset on `partition`.
    pub async fn commit(&self, partition: u32, next: u64) -> Result<()> {
        let Some(name) = &self.name else {
            return Err(ClientError::Unexpected(
                "an anonymous subscription has no offset to commit".into(),
            ));
        };
        self.client.commit(&self.topic, name, partition, next).await
    }

    /// Like [`Subscription::commit`], with an [`Offset`].
    pub async fn commit_offset(&self, partition: u32, next: Offset) -> Result<()> {
        self.commit(partition, next.0).await
    }

    /// Commits `msg` as read: this named subscriber resumes after it (its offset + 1) on its
    /// partition.
    pub async fn commit_message(&self, msg: &Message) -> Result<()> {
        self.commit(msg.partition, msg.offset + 1).await
    }

    /// Closes the subscription and waits for the server's confirmation.
    pub async fn cancel(mut self) -> Result<()> {
        self.cancelled = true;
        self.client.cancel_stream(self.id).await
    }

    fn poll_next_msg(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        loop {
            if let Some(m) = self.buf.pop_front() {
                self.used += 1;
                if self.used >= self.credit.div_ceil(2) {
                    let credit = std::mem::take(&mut self.used);
                    let grant = Request::Credit {
                        id: self.id,
                        credit,
                    };
                    self.client.send_detached(grant.encode(0));
                }
                return Poll::Ready(Some(Ok(m)));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Reply::Deliver {
                    partition,
                    from,
                    to,
                    batch,
                })) => match protocol::decode_delivery(partition, from, to, &batch) {
                    Ok(ms) => self.buf.extend(ms),
                    Err(e) => return Poll::Ready(Some(Err(e.into()))),
                },
                Poll::Ready(Some(r)) => return Poll::Ready(Some(Err(push_error(r)))),
                Poll::Ready(None) => {
                    return Poll::Ready(self.client.end_of_stream(&mut self.ended))
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl futures_core::Stream for Subscription {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_msg(cx)
    }
}
