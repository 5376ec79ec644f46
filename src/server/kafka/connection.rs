//! One Kafka connection: the reader (size-prefixed frames under the idle and frame timeouts),
//! the ordered response queue, the replier and the writer.

use crate::metrics::{
    Connection, ConnectionGuard, Protocol, Subscribed, SubscriptionKind, KAFKA_FATAL,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::server::tls::{ClientStream, ReadHalf as OwnedReadHalf, WriteHalf as OwnedWriteHalf};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{sleep, timeout};
use tracing::{debug, warn};

use super::codec::{self, DecodeError};
use super::{KafkaContext, FRAME_TIMEOUT, IN_FLIGHT_REQUESTS_MAX, WRITER_QUEUE};

/// A whole response frame, in pieces written one after the other (a Fetch response's record
/// batches are pieces of their own, written from the buffers they were read into).
pub(super) type Frame = Vec<Bytes>;

/// A response slot: filled with the whole response frame, or `None` for a request that gets
/// no response (Produce with `acks = 0`).
pub(super) type Slot = oneshot::Sender<Option<Frame>>;

/// How a connection ended.
pub(super) enum End {
    /// The peer closed, I/O failed, or the server is shutting down.
    Closed,
    /// A protocol violation or limit: logged, then the connection is closed.
    Fatal(String),
}

/// One connection's state, owned by its reader.
pub(super) struct Conn {
    pub(super) ctx: Arc<KafkaContext>,
    pub(super) peer: SocketAddr,
    slots: mpsc::Sender<oneshot::Receiver<Option<Frame>>>,
    /// This connection in the broker's registry (client name, counts, groups joined).
    pub(super) conn: ConnectionGuard,
    /// The groups it is listed in, by kind and name.
    pub(super) listed: HashMap<(SubscriptionKind, String), Subscribed>,
    /// Dropped when the connection ends: long polls then answer with what they have.
    ended: watch::Sender<()>,
    /// Who the connection is, and its SASL exchange (`sasl`).
    pub(super) auth: super::sasl::ConnAuth,
    /// Until when the connection's next request waits (quota throttling, KIP-219).
    pub(super) mute: Arc<Mute>,
}

/// A connection's quota delay: requests read after a throttled response wait until it ends,
/// as Kafka mutes a throttled channel. Milliseconds since `start`; 0: not muted.
pub(super) struct Mute {
    start: tokio::time::Instant,
    until_ms: std::sync::atomic::AtomicU64,
}

impl Mute {
    fn new() -> Mute {
        Mute {
            start: tokio::time::Instant::now(),
            until_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Mutes the connection for `delay` from now (a later end already set stays).
    pub(super) fn mute_for(&self, delay: Duration) {
        if delay.is_zero() {
            return;
        }
        let end = (tokio::time::Instant::now() + delay) - self.start;
        let ms = end.as_millis().min(u64::MAX as u128) as u64;
        self.until_ms
            .fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits until the connection is no longer muted.
    async fn wait(&self) {
        let ms = self.until_ms.load(std::sync::atomic::Ordering::Relaxed);
        if ms == 0 {
            return;
        }
        tokio::time::sleep_until(self.start + Duration::from_millis(ms)).await;
    }
}

/// Serves one accepted connection until it ends.
pub(super) async fn handle_connection(
    ctx: Arc<KafkaContext>,
    sock: ClientStream,
    peer: SocketAddr,
    mut shutdown: broadcast::Receiver<()>,
) {
    debug!(%peer, "kafka connection open");
    let metrics = ctx.broker.metrics().clone();
    let registered = metrics.open_connection(Protocol::Kafka, peer);
    tracing::Span::current().record("id", registered.id());
    let tls = matches!(sock, ClientStream::Tls(_));
    let anonymous = ctx.broker.security().anonymous_allowed(peer.ip());
    let (rd, wr) = sock.split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let (out_tx, out_rx) = mpsc::channel::<Frame>(WRITER_QUEUE);
    let writer = crate::broker::spawn_in_span(write_loop(wr, out_rx, (*registered).clone()));
    let (slot_tx, slot_rx) = mpsc::channel(IN_FLIGHT_REQUESTS_MAX);
    let replier = crate::broker::spawn_in_span(reply_loop(slot_rx, out_tx));
    let grace = Duration::from_millis(ctx.broker.limits().shutdown_timeout_ms);
    let mut conn = Conn {
        ctx,
        peer,
        slots: slot_tx,
        conn: registered,
        listed: HashMap::new(),
        ended: watch::channel(()).0,
        auth: super::sasl::ConnAuth::new(tls, anonymous),
        mute: Arc::new(Mute::new()),
    };
    if let End::Fatal(why) = conn.run(&mut rd, &mut shutdown).await {
        metrics.error(Protocol::Kafka, KAFKA_FATAL);
        warn!(%peer, "closing kafka connection: {why}");
    }
    drop(conn);
    // Requests already read are answered (within the grace), then the socket closes.
    let _ = timeout(grace, replier).await;
    let _ = timeout(grace, writer).await;
    debug!(%peer, "kafka connection closed");
}

async fn reply_loop(
    mut rx: mpsc::Receiver<oneshot::Receiver<Option<Frame>>>,
    out: mpsc::Sender<Frame>,
) {
    while let Some(slot) = rx.recv().await {
        if let Ok(Some(frame)) = slot.await {
            if out.send(frame).await.is_err() {
                return;
            }
        }
    }
}

async fn write_loop(wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Frame>, conn: Arc<Connection>) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    let sent = |f: &Frame| conn.sent(f.iter().map(|b| b.len()).sum());
    while let Some(f) = rx.recv().await {
        if write_frame(&mut w, &f).await.is_err() {
            return;
        }
        sent(&f);
        while let Ok(f) = rx.try_recv() {
            if write_frame(&mut w, &f).await.is_err() {
                return;
            }
            sent(&f);
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// Pieces handed to one vectored write (Linux takes up to 1024).
const PIECES_PER_WRITE: usize = 256;

/// Writes a frame: a frame of one piece through the buffer (small responses gather there); a
/// frame of many pieces (a Fetch response) after the buffer, with vectored writes, so its
/// small pieces do not become packets of their own.
async fn write_frame(w: &mut BufWriter<OwnedWriteHalf>, f: &Frame) -> std::io::Result<()> {
    if let [one] = f.as_slice() {
        return w.write_all(one).await;
    }
    w.flush().await?;
    let sock = w.get_mut();
    let mut left: std::collections::VecDeque<Bytes> = f.iter().cloned().collect();
    while !left.is_empty() {
        let slices: Vec<std::io::IoSlice<'_>> = left
            .iter()
            .take(PIECES_PER_WRITE)
            .map(|b| std::io::IoSlice::new(b))
            .collect();
        let mut n = sock.write_vectored(&slices).await?;
        drop(slices);
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let first = left.front_mut().expect("bytes written from a piece left");
            if n >= first.len() {
                n -= first.len();
                left.pop_front();
            } else {
                bytes::Buf::advance(first, n);
                n = 0;
            }
        }
    }
    Ok(())
}

impl Conn {
    async fn run(
        &mut self,
        rd: &mut BufReader<OwnedReadHalf>,
        shutdown: &mut broadcast::Receiver<()>,
    ) -> End {
        let topic_ids = self.ctx.broker.has_topic_ids();
        loop {
            let frame = match self.next_frame(rd, shutdown).await {
                Ok(f) => f,
                Err(end) => return end,
            };
            let mute = self.mute.clone();
            tokio::select! {
                _ = mute.wait() => {}
                _ = shutdown.recv() => return End::Closed,
            }
            self.conn.received(4 + frame.len());
            if let [a, b, ..] = frame[..] {
                self.conn
                    .request(i16::from_be_bytes([a, b]).max(0) as usize);
            }
            let decoded = match codec::decode_request(frame, topic_ids) {
                Ok(d) => d,
                Err(e @ DecodeError::Short(_)) | Err(e @ DecodeError::Malformed { .. }) => {
                    return End::Fatal(e.to_string())
                }
            };
            if let Err(end) = self.dispatch(decoded).await {
                return end;
            }
        }
    }

    /// Reads the next frame: waits for its size (under `idle_timeout_ms`), checks it against
    /// `frame_bytes_max`, then reads the rest within [`FRAME_TIMEOUT`].
    async fn next_frame(
        &mut self,
        rd: &mut BufReader<OwnedReadHalf>,
        shutdown: &mut broadcast::Receiver<()>,
    ) -> Result<Bytes, End> {
        let (idle_ms, max) = {
            let l = self.ctx.broker.limits();
            (l.idle_timeout_ms, l.frame_bytes_max)
        };
        let size = tokio::select! {
            _ = shutdown.recv() => return Err(End::Closed),
            r = rd.read_i32() => r,
            _ = sleep(Duration::from_millis(idle_ms)) => {
                return Err(End::Fatal(format!("idle for idle_timeout_ms ({idle_ms} ms)")));
            }
        };
        // End of stream (the peer closed) or a failed read: nothing to answer.
        let Ok(size) = size else {
            return Err(End::Closed);
        };
        if size < 0 || size as u32 > max {
            let m = format!("frame size {size} is outside 0..={max} (limits.frame_bytes_max)");
            return Err(End::Fatal(m));
        }
        let mut buf = BytesMut::zeroed(size as usize);
        match timeout(FRAME_TIMEOUT, rd.read_exact(&mut buf)).await {
            Err(_) => {
                let m = format!("frame not completed within {} s", FRAME_TIMEOUT.as_secs());
                Err(End::Fatal(m))
            }
            Ok(Err(_)) => Err(End::Closed),
            Ok(Ok(_)) => Ok(buf.freeze()),
        }
    }

    /// A receiver that closes when the connection ends.
    pub(super) fn ended(&self) -> watch::Receiver<()> {
        self.ended.subscribe()
    }

    /// The next response slot, in request order (waits while [`IN_FLIGHT_REQUESTS_MAX`]
    /// requests are unanswered).
    pub(super) async fn slot(&self) -> Result<Slot, End> {
        let (tx, rx) = oneshot::channel();
        self.slots.send(rx).await.map_err(|_| End::Closed)?;
        Ok(tx)
    }
}
