//! The async Rust client.
//!
//! One [`Client`] is one connection; it is cheap to clone and every call can run concurrently:
//! requests are pipelined and matched to their replies by request id.
//!
//! ```no_run
//! use sluice::client::{Client, SubscribeOptions};
//! use sluice::protocol::{LogSettings, Start};
//! use sluice::storage::Record;
//!
//! # async fn demo() -> Result<(), sluice::client::ClientError> {
//! let client = Client::connect("127.0.0.1:7450").await?;
//! client.create_topic("orders", LogSettings::default()).await?;
//!
//! // One call is one batch; the reply comes once the batch is durable.
//! let published = client
//!     .publish("orders", &[Record::from_value("a"), Record::from_value("b")])
//!     .await?;
//! assert_eq!(published.last_offset - published.base_offset, 1);
//!
//! // A durable named subscriber, read as a stream (also a `futures_core::Stream`).
//! let mut sub = client
//!     .subscribe("orders", SubscribeOptions::named("billing").from(Start::Earliest))
//!     .await?;
//! while let Some(msg) = sub.next().await {
//!     let msg = msg?;
//!     println!("{}: {:?}", msg.offset, msg.record.value);
//!     sub.commit(msg.offset + 1).await?;
//!     if msg.offset == published.last_offset {
//!         break;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Competing consumers of a queue ack each message through its handle:
//!
//! ```no_run
//! # async fn demo(client: sluice::client::Client) -> Result<(), sluice::client::ClientError> {
//! use sluice::protocol::{QueueSettings, Source};
//! client.create_queue("jobs", QueueSettings::default()).await?;
//! let mut consumer = client.consume(Source::Queue("jobs".into()), 100).await?;
//! while let Some(job) = consumer.next().await {
//!     let job = job?;
//!     println!("job {} (attempt {})", job.offset, job.attempt);
//!     job.ack().await?;
//! }
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use sluice_storage::{format, now_ms, Record};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::{
    self, ErrorCode, LogSettings, Message, OutFrame, ProtocolError, QueueInfo, QueueMessage,
    QueueSettings, Reply, Request, Source, Start, Target, TopicInfo,
};

/// Largest frame the client reads.
const CLIENT_FRAME_MAX: u32 = 256 << 20;

/// A client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The server answered with an error.
    #[error("{message} ({code})")]
    Server {
        /// The error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The connection is gone.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The server sent bytes this client cannot decode.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The server sent a reply of the wrong kind.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

type Result<T, E = ClientError> = std::result::Result<T, E>;

#[derive(Default)]
struct Routes {
    pending: Mutex<HashMap<u32, oneshot::Sender<Reply>>>,
    streams: Mutex<HashMap<u32, mpsc::UnboundedSender<Reply>>>,
    closed: Mutex<Option<String>>,
}

impl Routes {
    fn closed_reason(&self) -> String {
        self.closed
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| "connection lost".into())
    }

    fn close(&self, reason: String) {
        self.closed.lock().unwrap().get_or_insert(reason);
        self.pending.lock().unwrap().clear();
        // Dropping the senders ends each stream, which then reports `Closed` with the reason.
        self.streams.lock().unwrap().clear();
    }
}

struct Inner {
    out: mpsc::Sender<OutFrame>,
    routes: Arc<Routes>,
    next_id: AtomicU32,
}

/// A connection to a sluice server.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// The offsets given to a published batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    /// First offset.
    pub base_offset: u64,
    /// Last offset.
    pub last_offset: u64,
}

fn unexpected(r: Reply) -> ClientError {
    ClientError::Unexpected(format!("{r:?}"))
}

impl Client {
    /// Connects and performs the version handshake.
    pub async fn connect(addr: &str) -> Result<Client> {
        let sock = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let _ = sock.set_nodelay(true);
        let (rd, wr) = sock.into_split();
        let (out, mut out_rx) = mpsc::channel::<OutFrame>(256);
        let routes = Arc::new(Routes::default());
        tokio::spawn(async move {
            let mut w = BufWriter::with_capacity(64 * 1024, wr);
            while let Some(f) = out_rx.recv().await {
                let mut batch = vec![f];
                while batch.len() < 64 {
                    match out_rx.try_recv() {
                        Ok(f) => batch.push(f),
                        Err(_) => break,
                    }
                }
                for f in batch {
                    if w.write_all(&f.head).await.is_err() {
                        return;
                    }
                    if let Some(t) = &f.tail {
                        if w.write_all(t).await.is_err() {
                            return;
                        }
                    }
                }
                if w.flush().await.is_err() {
                    return;
                }
            }
            let _ = w.shutdown().await;
        });
        let r = routes.clone();
        tokio::spawn(async move {
            let mut rd = BufReader::with_capacity(64 * 1024, rd);
            let reason = loop {
                let frame = match protocol::read_frame(&mut rd, CLIENT_FRAME_MAX).await {
                    Ok(Some(f)) => f,
                    Ok(None) => break "server closed the connection".to_string(),
                    Err(e) => break e.to_string(),
                };
                let id = frame.request_id;
                let reply = match Reply::decode(frame) {
                    Ok(r) => r,
                    Err(e) => break e.to_string(),
                };
                if id == 0 {
                    if let Reply::Error { code, message } = &reply {
                        break format!("{message} ({code})");
                    }
                    continue;
                }
                let is_push = matches!(reply, Reply::Deliver { .. } | Reply::Messages(_));
                if !is_push {
                    if let Some(tx) = r.pending.lock().unwrap().remove(&id) {
                        let _ = tx.send(reply);
                        continue;
                    }
                }
                if let Some(tx) = r.streams.lock().unwrap().get(&id) {
                    let _ = tx.send(reply);
                }
            };
            r.close(reason);
        });
        let client = Client {
            inner: Arc::new(Inner {
                out,
                routes,
                next_id: AtomicU32::new(1),
            }),
        };
        match client
            .request(Request::Hello {
                version: protocol::VERSION,
                client: format!("sluice-rust {}", env!("CARGO_PKG_VERSION")),
            })
            .await?
        {
            Reply::HelloOk { .. } => Ok(client),
            r => Err(unexpected(r)),
        }
    }

    fn next_id(&self) -> u32 {
        loop {
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    async fn send(&self, frame: OutFrame) -> Result<()> {
        self.inner
            .out
            .send(frame)
            .await
            .map_err(|_| ClientError::Closed(self.inner.routes.closed_reason()))
    }

    /// Queues a request to the server; the returned receiver gets its reply.
    async fn send_request(&self, id: u32, req: Request) -> Result<oneshot::Receiver<Reply>> {
        let (tx, rx) = oneshot::channel();
        self.inner.routes.pending.lock().unwrap().insert(id, tx);
        if let Some(reason) = self.inner.routes.closed.lock().unwrap().clone() {
            self.inner.routes.pending.lock().unwrap().remove(&id);
            return Err(ClientError::Closed(reason));
        }
        self.send(req.encode(id)).await?;
        Ok(rx)
    }

    async fn await_reply(&self, rx: oneshot::Receiver<Reply>) -> Result<Reply> {
        match rx.await {
            Ok(Reply::Error { code, message }) => Err(ClientError::Server { code, message }),
            Ok(r) => Ok(r),
            Err(_) => Err(ClientError::Closed(self.inner.routes.closed_reason())),
        }
    }

    async fn request_with_id(&self, id: u32, req: Request) -> Result<Reply> {
        let rx = self.send_request(id, req).await?;
        self.await_reply(rx).await
    }

    /// Sends a request and waits for its reply (an `ERROR` reply becomes `Err`).
    pub async fn request(&self, req: Request) -> Result<Reply> {
        let id = self.next_id();
        self.request_with_id(id, req).await
    }

    async fn expect_ok(&self, req: Request) -> Result<()> {
        match self.request(req).await? {
            Reply::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// Round trip to the server.
    pub async fn ping(&self) -> Result<()> {
        match self.request(Request::Ping).await? {
            Reply::Pong => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// Publishes records as one batch to the topic, or else the queue, called `name`; returns
    /// once the batch is durable under the server's fsync policy. Concurrent calls pipeline but
    /// may reach the server in any order; use [`Client::send_publish`] to pipeline batches
    /// while keeping their order.
    pub async fn publish(&self, name: &str, records: &[Record]) -> Result<Published> {
        self.publish_to(Target::Any(name.into()), records).await
    }

    /// Publishes records as one batch to an explicit target.
    pub async fn publish_to(&self, target: Target, records: &[Record]) -> Result<Published> {
        if records.is_empty() {
            return Err(ClientError::Unexpected(
                "a batch holds at least one record".into(),
            ));
        }
        self.publish_encoded(target, format::encode_batch(records, now_ms()))
            .await
    }

    /// Publishes a batch already in the storage batch layout
    /// ([`sluice_storage::format::BatchBuilder`]).
    pub async fn publish_encoded(&self, target: Target, batch: Vec<u8>) -> Result<Published> {
        match self.request(Request::Publish { target, batch }).await? {
            Reply::Published {
                base_offset,
                last_offset,
            } => Ok(Published {
                base_offset,
                last_offset,
            }),
            r => Err(unexpected(r)),
        }
    }

    /// Sends one batch and returns as soon as it is queued on the connection, before it is
    /// confirmed: batches sent this way from one task are appended in the order sent, and many
    /// can be in flight at once. Await [`PendingPublish::confirmed`] for the offsets.
    pub async fn send_publish(&self, target: Target, records: &[Record]) -> Result<PendingPublish> {
        if records.is_empty() {
            return Err(ClientError::Unexpected(
                "a batch holds at least one record".into(),
            ));
        }
        self.send_publish_encoded(target, format::encode_batch(records, now_ms()))
            .await
    }

    /// Like [`Client::send_publish`] for a batch already in the storage batch layout
    /// ([`sluice_storage::format::BatchBuilder`]).
    pub async fn send_publish_encoded(
        &self,
        target: Target,
        batch: Vec<u8>,
    ) -> Result<PendingPublish> {
        let id = self.next_id();
        let rx = self
            .send_request(id, Request::Publish { target, batch })
            .await?;
        Ok(PendingPublish {
            client: self.clone(),
            rx,
        })
    }

    /// Opens a subscription on a topic.
    pub async fn subscribe(&self, topic: &str, opts: SubscribeOptions) -> Result<Subscription> {
        let id = self.next_id();
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner.routes.streams.lock().unwrap().insert(id, tx);
        let credit = opts.credit.max(1);
        let r = self
            .request_with_id(
                id,
                Request::Subscribe {
                    topic: topic.into(),
                    name: opts.name.clone(),
                    start: opts.start,
                    credit,
                },
            )
            .await;
        let start = match r {
            Ok(Reply::Subscribed { value }) => value,
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

    fn drop_stream(&self, id: u32, e: ClientError) -> ClientError {
        self.inner.routes.streams.lock().unwrap().remove(&id);
        e
    }

    /// Stores a named subscriber's next offset (durable when this returns).
    pub async fn commit(&self, topic: &str, name: &str, next: u64) -> Result<()> {
        self.expect_ok(Request::Commit {
            topic: topic.into(),
            name: name.into(),
            next,
        })
        .await
    }

    /// Becomes a competing consumer of a queue or of a topic's consumer group, holding at most
    /// `prefetch` unacked messages (the server may lower it).
    pub async fn consume(&self, source: Source, prefetch: u32) -> Result<Consumer> {
        let id = self.next_id();
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner.routes.streams.lock().unwrap().insert(id, tx);
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

    /// Creates a topic.
    pub async fn create_topic(&self, name: &str, settings: LogSettings) -> Result<()> {
        self.expect_ok(Request::CreateTopic {
            name: name.into(),
            settings,
        })
        .await
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.expect_ok(Request::DeleteTopic { name: name.into() })
            .await
    }

    /// Names of all topics.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        match self.request(Request::ListTopics).await? {
            Reply::Names(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    /// Figures of a topic.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        match self
            .request(Request::DescribeTopic { name: name.into() })
            .await?
        {
            Reply::TopicInfo(t) => Ok(t),
            r => Err(unexpected(r)),
        }
    }

    /// Creates a queue and its dead-letter queue.
    pub async fn create_queue(&self, name: &str, settings: QueueSettings) -> Result<()> {
        self.expect_ok(Request::CreateQueue {
            name: name.into(),
            settings,
        })
        .await
    }

    /// Deletes a queue and its data (not its dead-letter queue).
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        self.expect_ok(Request::DeleteQueue { name: name.into() })
            .await
    }

    /// Names of all queues.
    pub async fn list_queues(&self) -> Result<Vec<String>> {
        match self.request(Request::ListQueues).await? {
            Reply::Names(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    /// Figures of a queue.
    pub async fn describe_queue(&self, name: &str) -> Result<QueueInfo> {
        match self
            .request(Request::DescribeQueue { name: name.into() })
            .await?
        {
            Reply::QueueInfo(q) => Ok(q),
            r => Err(unexpected(r)),
        }
    }

    /// Closes a subscription or consumer without waiting (from `Drop`: no runtime needed).
    fn cancel_detached(&self, id: u32) {
        self.inner.routes.streams.lock().unwrap().remove(&id);
        let req = self.next_id();
        let _ = self.inner.out.try_send(Request::Cancel { id }.encode(req));
    }

    /// What a stream yields when its channel ends: once `Closed` with the reason if the
    /// connection is gone, then `None`.
    fn end_of_stream<T>(&self, ended: &mut bool) -> Option<Result<T>> {
        if std::mem::replace(ended, true) {
            return None;
        }
        let reason = self.inner.routes.closed.lock().unwrap().clone()?;
        Some(Err(ClientError::Closed(reason)))
    }

    fn send_detached(&self, frame: OutFrame) {
        let out = self.inner.out.clone();
        tokio::spawn(async move {
            let _ = out.send(frame).await;
        });
    }
}

/// A batch sent by [`Client::send_publish`], awaiting its confirmation.
pub struct PendingPublish {
    client: Client,
    rx: oneshot::Receiver<Reply>,
}

impl PendingPublish {
    /// Waits until the batch is durable and returns its offsets.
    pub async fn confirmed(self) -> Result<Published> {
        match self.client.await_reply(self.rx).await? {
            Reply::Published {
                base_offset,
                last_offset,
            } => Ok(Published {
                base_offset,
                last_offset,
            }),
            r => Err(unexpected(r)),
        }
    }
}

/// Options of [`Client::subscribe`].
#[derive(Clone, Debug)]
pub struct SubscribeOptions {
    /// Named (durable offset) or anonymous.
    pub name: Option<String>,
    /// Start position.
    pub start: Start,
    /// Messages the server may send ahead of consumption (flow control window).
    pub credit: u32,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            name: None,
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
    /// Sets the credit window.
    pub fn credit(mut self, credit: u32) -> Self {
        self.credit = credit;
        self
    }
}

fn push_error(r: Reply) -> ClientError {
    match r {
        Reply::Error { code, message } => ClientError::Server { code, message },
        r => unexpected(r),
    }
}

/// An open subscription: a `Stream` of topic messages. Credit is granted back to the server as
/// messages are taken, so at most `credit` messages are ever buffered.
pub struct Subscription {
    client: Client,
    id: u32,
    topic: String,
    name: Option<String>,
    start: u64,
    rx: mpsc::UnboundedReceiver<Reply>,
    buf: VecDeque<Message>,
    credit: u32,
    used: u32,
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
    /// The offset the subscription started at.
    pub fn start_offset(&self) -> u64 {
        self.start
    }

    /// The next message; `None` once the subscription is closed.
    pub async fn next(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next_msg(cx)).await
    }

    /// Messages received and not yet taken.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stores this named subscriber's next offset.
    pub async fn commit(&self, next: u64) -> Result<()> {
        let Some(name) = &self.name else {
            return Err(ClientError::Unexpected(
                "an anonymous subscription has no offset to commit".into(),
            ));
        };
        self.client.commit(&self.topic, name, next).await
    }

    /// Closes the subscription.
    pub async fn cancel(self) -> Result<()> {
        self.client
            .drop_stream(self.id, ClientError::Closed(String::new()));
        self.client.expect_ok(Request::Cancel { id: self.id }).await
    }

    fn poll_next_msg(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        loop {
            if let Some(m) = self.buf.pop_front() {
                self.used += 1;
                if self.used >= self.credit.div_ceil(2) {
                    let credit = std::mem::take(&mut self.used);
                    self.client.send_detached(
                        Request::Credit {
                            id: self.id,
                            credit,
                        }
                        .encode(0),
                    );
                }
                return Poll::Ready(Some(Ok(m)));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Reply::Deliver { from, to, batch })) => {
                    match protocol::decode_delivery(from, to, &batch) {
                        Ok(ms) => self.buf.extend(ms),
                        Err(e) => return Poll::Ready(Some(Err(e.into()))),
                    }
                }
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

/// Acknowledges messages of one consumer; cheap to clone.
#[derive(Clone)]
pub struct Acker {
    client: Client,
    id: u32,
}

impl Acker {
    /// Acknowledges messages; returns once the acks are durable.
    pub async fn ack(&self, offsets: &[u64]) -> Result<()> {
        self.client
            .expect_ok(Request::Ack {
                id: self.id,
                offsets: offsets.to_vec(),
            })
            .await
    }

    /// Returns messages to the queue, redelivered after `delay_ms`.
    pub async fn nack(&self, offsets: &[u64], delay_ms: u64) -> Result<()> {
        self.client
            .expect_ok(Request::Nack {
                id: self.id,
                delay_ms,
                offsets: offsets.to_vec(),
            })
            .await
    }
}

/// A message delivered to a consumer, with its ack handle.
pub struct Delivery {
    /// Offset (the ack handle's key).
    pub offset: u64,
    /// 1 for a first delivery.
    pub attempt: u32,
    /// The message.
    pub record: Record,
    acker: Acker,
}

impl Delivery {
    /// Acknowledges this message.
    pub async fn ack(&self) -> Result<()> {
        self.acker.ack(&[self.offset]).await
    }
    /// Returns this message to the queue.
    pub async fn nack(&self, delay_ms: u64) -> Result<()> {
        self.acker.nack(&[self.offset], delay_ms).await
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
        let c = &self.acker.client;
        c.drop_stream(self.acker.id, ClientError::Closed(String::new()));
        c.expect_ok(Request::Cancel { id: self.acker.id }).await
    }

    fn poll_next_delivery(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        loop {
            if let Some(m) = self.buf.pop_front() {
                return Poll::Ready(Some(Ok(Delivery {
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
