//! One native connection: the reader (handshake, then frames under the idle and frame
//! timeouts), the ordered reply queue, the writer, and the connection's streams and push budget.

use crate::metrics::{Connection, ConnectionGuard, Protocol};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::broker::spawn_blocking;
use crate::server::tls::{ClientStream, ReadHalf as OwnedReadHalf, WriteHalf as OwnedWriteHalf};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio::time::{sleep, timeout};
use tracing::{debug, info, warn};

use super::consume::ConsumerHandle;
use super::subscribe::SubHandle;
use super::{
    fill, fill_catching, End, Fail, Slot, SlotTx, StreamEnd, PUSH_BYTES_MAX, WRITER_QUEUE,
};
use crate::broker::Broker;
use crate::protocol::{self, ErrorCode, OutFrame, ProtocolError, RawFrame, Reply, Request};

/// One connection's state, owned by its reader.
pub(super) struct Conn {
    pub(super) broker: Arc<Broker>,
    pub(super) peer: SocketAddr,
    /// This connection in the broker's registry (client name, counts, subscriptions).
    pub(super) conn: ConnectionGuard,
    pub(super) out: mpsc::Sender<OutFrame>,
    /// Bytes of subscription pushes not yet written (`PUSH_BYTES_MAX`).
    pub(super) push_budget: Arc<Semaphore>,
    replies: mpsc::Sender<oneshot::Receiver<Slot>>,
    pub(super) subs: HashMap<u32, SubHandle>,
    pub(super) consumers: HashMap<u32, ConsumerHandle>,
    /// Publishes of this connection handed to the blocking pool and not yet confirmed.
    pub(super) publishing: Arc<AtomicUsize>,
    /// Set before each request: the runtime has another worker thread, no publish of this
    /// connection is in flight and nothing more from it is buffered (a client that waits for
    /// each confirm). A small publish under `always` may then be appended and synced on this
    /// thread ([`crate::broker::INLINE_SYNC_BATCH_BYTES_MAX`]). A pipelining client keeps the
    /// blocking pool, so its batches share syncs (group commit).
    pub(super) can_sync_inline: bool,
    /// The runtime has more than one worker thread, so one may block on a sync.
    spare_worker: bool,
    /// Set when a subscription or consumer of this connection ended by itself ([`StreamEnd`]):
    /// the next request first forgets the ended ones.
    ended: Arc<AtomicBool>,
    /// Who the connection is, and its authentication under way.
    pub(super) auth: super::auth::AuthState,
    /// Its user's produce quota: the next request is read no sooner than this.
    pub(super) throttle_until: Option<tokio::time::Instant>,
}

/// Serves one accepted connection until it ends.
pub(crate) async fn handle_connection(
    broker: Arc<Broker>,
    sock: ClientStream,
    peer: SocketAddr,
    mut shutdown: broadcast::Receiver<()>,
) {
    info!(%peer, "connection open");
    let registered = broker.metrics().open_connection(Protocol::Native, peer);
    tracing::Span::current().record("id", registered.id());
    let tls = sock.is_tls();
    let (rd, wr) = sock.split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let (out_tx, out_rx) = mpsc::channel::<OutFrame>(WRITER_QUEUE);
    let writer = crate::broker::spawn_in_span(write_loop(wr, out_rx, (*registered).clone()));
    let (reply_tx, reply_rx) = mpsc::channel(broker.limits().pending_requests_max);
    let replier = crate::broker::spawn_in_span(reply_loop(
        reply_rx,
        out_tx.clone(),
        broker.metrics().clone(),
    ));
    let grace = Duration::from_millis(broker.limits().shutdown_timeout_ms);
    let mut conn = Conn {
        broker,
        peer,
        conn: registered,
        out: out_tx,
        push_budget: Arc::new(Semaphore::new(PUSH_BYTES_MAX)),
        replies: reply_tx,
        subs: HashMap::new(),
        consumers: HashMap::new(),
        publishing: Arc::new(AtomicUsize::new(0)),
        can_sync_inline: false,
        spare_worker: tokio::runtime::Handle::current().metrics().num_workers() > 1,
        ended: Arc::new(AtomicBool::new(false)),
        auth: super::auth::AuthState::new(tls),
        throttle_until: None,
    };
    let end = conn.run(&mut rd, &mut shutdown).await;
    conn.cancel_all();
    if let End::Fatal(id, code, message) = end {
        warn!(%peer, %code, "closing connection: {message}");
        let (tx, rx) = oneshot::channel();
        if conn.replies.send(rx).await.is_ok() {
            fill(tx, id, Reply::error(code, message));
        }
    }
    let Conn { out, replies, .. } = conn;
    drop(replies);
    drop(out);
    let _ = timeout(grace, replier).await;
    let _ = timeout(grace, writer).await;
    info!(%peer, "connection closed");
}

/// Refuses a connection with an error frame (at most a second), then closes it.
pub(crate) async fn reject(mut sock: TcpStream, code: ErrorCode, msg: &str) {
    let f = Reply::error(code, msg).encode(0).to_vec();
    let _ = timeout(Duration::from_secs(1), async {
        let _ = sock.write_all(&f).await;
        let _ = sock.shutdown().await;
    })
    .await;
}

async fn reply_loop(
    mut rx: mpsc::Receiver<oneshot::Receiver<Slot>>,
    out: mpsc::Sender<OutFrame>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    while let Some(slot) = rx.recv().await {
        if let Ok(slot) = slot.await {
            // An error reply: { length u32 | kind u8 | request id u32 | code u16 | ... }.
            if let [_, _, _, _, crate::protocol::kind::ERROR, _, _, _, _, lo, hi, ..] =
                slot.frame.head[..]
            {
                metrics.error(Protocol::Native, u16::from_le_bytes([lo, hi]) as usize);
            }
            if out.send(slot.frame).await.is_err() {
                return;
            }
            if let Some(w) = slot.written {
                let _ = w.send(());
            }
        }
    }
}

async fn write_loop(wr: OwnedWriteHalf, mut rx: mpsc::Receiver<OutFrame>, conn: Arc<Connection>) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    async fn put(w: &mut BufWriter<OwnedWriteHalf>, f: &OutFrame) -> io::Result<()> {
        w.write_all(&f.head).await?;
        if let Some(t) = &f.tail {
            w.write_all(t).await?;
        }
        Ok(())
    }
    let sent = |f: &OutFrame| conn.sent(f.head.len() + f.tail.as_ref().map_or(0, |t| t.len()));
    while let Some(f) = rx.recv().await {
        if put(&mut w, &f).await.is_err() {
            return;
        }
        sent(&f);
        let mut n = 0;
        while n < 64 {
            match rx.try_recv() {
                Ok(f) => {
                    if put(&mut w, &f).await.is_err() {
                        return;
                    }
                    sent(&f);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

impl Conn {
    async fn run(
        &mut self,
        rd: &mut BufReader<OwnedReadHalf>,
        shutdown: &mut broadcast::Receiver<()>,
    ) -> End {
        if let Err(end) = self.handshake(rd, shutdown).await {
            return end;
        }
        loop {
            if let Some(until) = self.throttle_until.take() {
                tokio::select! {
                    _ = shutdown.recv() => return End::Closed,
                    _ = tokio::time::sleep_until(until) => {}
                }
            }
            let (id, req) = match self.next_request(rd, shutdown).await {
                Ok(r) => r,
                Err(end) => return end,
            };
            self.can_sync_inline = self.spare_worker
                && rd.buffer().is_empty()
                && self.publishing.load(Ordering::Acquire) == 0;
            if let Err(end) = self.dispatch(id, req).await {
                return end;
            }
        }
    }

    /// Reads the `HELLO` (within `handshake_timeout_ms`) and answers it.
    async fn handshake(
        &mut self,
        rd: &mut BufReader<OwnedReadHalf>,
        shutdown: &mut broadcast::Receiver<()>,
    ) -> Result<(), End> {
        let limits = self.broker.limits().clone();
        let max = limits.frame_bytes_max;
        let hs = tokio::select! {
            _ = shutdown.recv() => return Err(End::Closed),
            r = timeout(Duration::from_millis(limits.handshake_timeout_ms), protocol::read_frame(rd, max)) => r,
        };
        let frame = match hs {
            Err(_) => {
                let m = format!(
                    "no HELLO within handshake_timeout_ms ({} ms)",
                    limits.handshake_timeout_ms
                );
                return Err(End::Fatal(0, ErrorCode::Timeout, m));
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(None)) => return Err(End::Closed),
            Ok(Ok(Some(f))) => f,
        };
        let id = frame.request_id;
        self.count(&frame);
        match Request::decode(&frame) {
            Ok(Request::Hello { version, client }) if version == protocol::VERSION => {
                debug!(peer = %self.peer, %client, "handshake");
                self.conn.set_client(&client);
                let tx = self.slot().await?;
                let hello = Reply::HelloOk {
                    version: protocol::VERSION,
                    server: format!("sluice {}", env!("CARGO_PKG_VERSION")),
                    frame_bytes_max: max,
                };
                fill(tx, id, hello);
                Ok(())
            }
            Ok(Request::Hello { version, .. }) => {
                let m = format!(
                    "protocol version {version} is not supported (this server speaks {})",
                    protocol::VERSION
                );
                Err(End::Fatal(id, ErrorCode::UnsupportedVersion, m))
            }
            Ok(_) => Err(End::Fatal(
                id,
                ErrorCode::Malformed,
                "the first frame must be HELLO".into(),
            )),
            Err(e @ ProtocolError::BadMagic(_)) => {
                Err(End::Fatal(id, ErrorCode::UnsupportedVersion, e.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads and decodes the next request: waits for its first byte (under `idle_timeout_ms`
    /// while the connection has no stream open), then the rest within `frame_timeout_ms`.
    async fn next_request(
        &mut self,
        rd: &mut BufReader<OwnedReadHalf>,
        shutdown: &mut broadcast::Receiver<()>,
    ) -> Result<(u32, Request), End> {
        let (idle_ms, frame_ms, max) = {
            let l = self.broker.limits();
            (l.idle_timeout_ms, l.frame_timeout_ms, l.frame_bytes_max)
        };
        self.reap();
        let idle = self.subs.is_empty() && self.consumers.is_empty();
        let sec = self.broker.security().clone();
        let first = tokio::select! {
            _ = shutdown.recv() => {
                let (tx, rx) = oneshot::channel();
                if self.replies.send(rx).await.is_ok() {
                    fill(tx, 0, Reply::error(ErrorCode::ShuttingDown, "server shutting down"));
                }
                return Err(End::Closed);
            }
            r = rd.read_u8() => r,
            why = self.auth.revoked(&sec), if self.auth.watching() => {
                warn!(peer = %self.peer, "closing connection: {why}");
                return Err(End::Fatal(0, ErrorCode::Unauthenticated, why));
            }
            _ = sleep(Duration::from_millis(idle_ms)), if idle => {
                let m = format!("idle for idle_timeout_ms ({idle_ms} ms)");
                return Err(End::Fatal(0, ErrorCode::Timeout, m));
            }
        };
        let Ok(first) = first else {
            return Err(End::Closed);
        };
        let frame: RawFrame = match timeout(
            Duration::from_millis(frame_ms),
            protocol::read_frame_rest(rd, first, max),
        )
        .await
        {
            Err(_) => {
                let m = format!("frame not completed within frame_timeout_ms ({frame_ms} ms)");
                return Err(End::Fatal(0, ErrorCode::Timeout, m));
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(f)) => f,
        };
        let id = frame.request_id;
        self.count(&frame);
        match Request::decode(&frame) {
            Ok(r) => Ok((id, r)),
            Err(e) => Err(match End::from(e) {
                End::Fatal(_, c, m) => End::Fatal(id, c, m),
                other => other,
            }),
        }
    }

    /// Counts a request frame read: its bytes (length prefix, kind, id, body) and its kind.
    fn count(&self, frame: &RawFrame) {
        self.conn.received(9 + frame.body.len());
        self.conn.request(frame.kind as usize);
    }

    /// The next reply slot, in request order.
    pub(super) async fn slot(&self) -> Result<SlotTx, End> {
        let (tx, rx) = oneshot::channel();
        self.replies.send(rx).await.map_err(|_| End::Closed)?;
        Ok(tx)
    }

    /// Takes the next reply slot and fills it with `reply` at once.
    pub(super) async fn reply(&self, id: u32, reply: Reply) -> Result<(), End> {
        let tx = self.slot().await?;
        fill(tx, id, reply);
        Ok(())
    }

    /// Runs `f` on the blocking pool and fills the slot with its result from there (no task
    /// in between to wake). A panic in `f` becomes an internal error reply.
    pub(super) fn spawn_reply(
        &self,
        tx: SlotTx,
        id: u32,
        f: impl FnOnce() -> Result<Reply, Fail> + Send + 'static,
    ) {
        spawn_blocking(move || fill_catching(tx, id, || f().unwrap_or_else(Fail::reply)));
    }

    /// A new stream's end mark, and the flag its handle keeps.
    pub(super) fn stream_end(&self) -> (StreamEnd, Arc<AtomicBool>) {
        let ended = Arc::new(AtomicBool::new(false));
        let end = StreamEnd {
            ended: ended.clone(),
            conn: self.ended.clone(),
        };
        (end, ended)
    }

    /// Forgets the subscriptions and consumers that ended by themselves (their topic or queue
    /// was deleted, a read failed, their setup was refused); a consumer's messages go back.
    pub(super) fn reap(&mut self) {
        if !self.ended.swap(false, Ordering::AcqRel) {
            return;
        }
        self.subs.retain(|_, s| !s.ended.load(Ordering::Acquire));
        let gone: Vec<u32> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.ended.load(Ordering::Acquire))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(c) = self.consumers.remove(&id) {
                c.release();
            }
        }
    }

    /// Why a new subscription or consumer under request `id` is refused, if it is: the
    /// per-connection stream limit, or an id that already names an open stream.
    pub(super) fn refuse_stream(&self, id: u32, what: &str) -> Option<Reply> {
        if self.subs.len() + self.consumers.len()
            >= self.broker.limits().subscriptions_per_connection_max
        {
            return Some(Reply::error(
                ErrorCode::LimitReached,
                "subscriptions_per_connection_max reached",
            ));
        }
        if self.subs.contains_key(&id) || self.consumers.contains_key(&id) {
            return Some(Reply::error(
                ErrorCode::InvalidArgument,
                format!("request id {id} already names an open {what}"),
            ));
        }
        None
    }

    fn cancel_all(&mut self) {
        for (_, s) in self.subs.drain() {
            s.cancel();
        }
        for (_, c) in self.consumers.drain() {
            c.release();
        }
    }
}
