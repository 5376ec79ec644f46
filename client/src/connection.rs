//! The connection: its writer and reader tasks, request ids, and the routing of replies to the
//! request waiting for them or to the stream (subscription, consumer) they belong to.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::failover::Failover;
use super::options::ConnectOptions;
use super::{unexpected, Client, ClientError, Result};
use crate::protocol::{self, OutFrame, Reply, Request};

#[derive(Default)]
pub(super) struct Routes {
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

    /// Hands a frame read from the server to whoever waits for it; `Err` with the reason when
    /// the frame ends the connection.
    fn route(&self, id: u32, reply: Reply) -> Result<(), String> {
        if id == 0 {
            if let Reply::Error { code, message } = &reply {
                return Err(format!("{message} ({code})"));
            }
            return Ok(());
        }
        let is_push = matches!(reply, Reply::Deliver { .. } | Reply::Messages(_));
        if !is_push {
            if let Some(tx) = self.pending.lock().unwrap().remove(&id) {
                let _ = tx.send(reply);
                return Ok(());
            }
        }
        if let Some(tx) = self.streams.lock().unwrap().get(&id) {
            let _ = tx.send(reply);
        }
        Ok(())
    }
}

/// One connection to one server: its frame queue, reply routes and request ids.
pub(super) struct Conn {
    out: mpsc::Sender<OutFrame>,
    routes: Arc<Routes>,
    next_id: AtomicU32,
}

/// What the handles of one [`Client`] share: the connection they use now, and how to replace
/// it (failover).
pub(super) struct Inner {
    conn: RwLock<Arc<Conn>>,
    /// Partition counts of topics as last learned, for the partition of keyed publishes.
    pub(super) partitions: Arc<Mutex<HashMap<String, u32>>>,
    /// Present when requests are retried on other addresses.
    pub(super) failover: Option<Arc<Failover>>,
}

/// Writes queued frames, many per flush.
/// The read half of a connection, plain or TLS.
type OwnedReadHalf = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
/// The write half of a connection, plain or TLS.
type OwnedWriteHalf = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// The halves of `sock`, after the TLS handshake when `opts` asks for TLS.
async fn split(
    sock: TcpStream,
    opts: &ConnectOptions,
    addr: &str,
) -> Result<(OwnedReadHalf, OwnedWriteHalf)> {
    let Some(tls) = &opts.tls else {
        let (r, w) = sock.into_split();
        return Ok((Box::new(r), Box::new(w)));
    };
    let (connector, name) = tls.connector(addr)?;
    let s = connector
        .connect(name, sock)
        .await
        .map_err(|e| ClientError::Tls(format!("handshake with {addr}: {e}")))?;
    let (r, w) = tokio::io::split(s);
    Ok((Box::new(r), Box::new(w)))
}

async fn write_loop(wr: OwnedWriteHalf, mut out_rx: mpsc::Receiver<OutFrame>) {
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
}

/// Reads and routes frames until the connection ends, then closes the routes with the reason.
async fn read_loop(rd: OwnedReadHalf, routes: Arc<Routes>, frame_max: u32) {
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let reason = loop {
        let frame = match protocol::read_frame(&mut rd, frame_max).await {
            Ok(Some(f)) => f,
            Ok(None) => break "server closed the connection".to_string(),
            Err(e) => break e.to_string(),
        };
        let id = frame.request_id;
        let reply = match Reply::decode(frame) {
            Ok(r) => r,
            Err(e) => break e.to_string(),
        };
        if let Err(reason) = routes.route(id, reply) {
            break reason;
        }
    };
    routes.close(reason);
}

/// Longest the TCP connect and the handshake to one of several addresses may take together,
/// unless [`ConnectOptions::connect_timeout`] says otherwise: a stopped node that still accepts
/// connections must not hold the client.
pub const ADDR_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl Conn {
    /// Connects to `addr`, performs the version handshake and authenticates, within the
    /// connect timeout.
    pub(super) async fn open(opts: &ConnectOptions, addr: &str) -> Result<Arc<Conn>> {
        let several = opts.addrs.len() > 1;
        let limit = opts
            .connect_timeout
            .or(several.then_some(ADDR_CONNECT_TIMEOUT));
        let Some(t) = limit else {
            return Conn::open_now(opts, addr).await;
        };
        match tokio::time::timeout(t, Conn::open_now(opts, addr)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Connect {
                addr: addr.to_string(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection and handshake within {t:?}"),
                ),
            }),
        }
    }

    async fn open_now(opts: &ConnectOptions, addr: &str) -> Result<Arc<Conn>> {
        let sock = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = sock.set_nodelay(true);
        let (rd, wr) = split(sock, opts, addr).await?;
        let (out, out_rx) = mpsc::channel::<OutFrame>(256);
        let routes = Arc::new(Routes::default());
        tokio::spawn(write_loop(wr, out_rx));
        tokio::spawn(read_loop(rd, routes.clone(), opts.frame_bytes_max));
        let conn = Arc::new(Conn {
            out,
            routes,
            next_id: AtomicU32::new(1),
        });
        let hello = Request::Hello {
            version: protocol::VERSION,
            client: opts.client_name.clone(),
        };
        match conn.request(&hello).await? {
            Reply::HelloOk { .. } => {}
            r => return Err(unexpected(r)),
        }
        if let Some(c) = &opts.credentials {
            super::auth::authenticate_on(&conn, c).await?;
        }
        Ok(conn)
    }

    /// True once the connection is gone.
    pub(super) fn is_closed(&self) -> bool {
        self.routes.closed.lock().unwrap().is_some()
    }

    pub(super) fn next_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    async fn send(&self, frame: OutFrame) -> Result<()> {
        self.out
            .send(frame)
            .await
            .map_err(|_| ClientError::Closed(self.routes.closed_reason()))
    }

    /// Queues a request to the server; the returned receiver gets its reply.
    pub(super) async fn send_request(
        &self,
        id: u32,
        req: &Request,
    ) -> Result<oneshot::Receiver<Reply>> {
        let (tx, rx) = oneshot::channel();
        self.routes.pending.lock().unwrap().insert(id, tx);
        if let Some(reason) = self.routes.closed.lock().unwrap().clone() {
            self.routes.pending.lock().unwrap().remove(&id);
            return Err(ClientError::Closed(reason));
        }
        self.send(req.encode(id)).await?;
        Ok(rx)
    }

    pub(super) async fn await_reply(&self, rx: oneshot::Receiver<Reply>) -> Result<Reply> {
        match rx.await {
            Ok(Reply::Error { code, message }) => Err(ClientError::Server { code, message }),
            Ok(r) => Ok(r),
            Err(_) => Err(ClientError::Closed(self.routes.closed_reason())),
        }
    }

    /// Sends a request on this connection and waits for its reply.
    pub(super) async fn request(&self, req: &Request) -> Result<Reply> {
        let rx = self.send_request(self.next_id(), req).await?;
        self.await_reply(rx).await
    }
}

impl Client {
    /// A handle on `conn`.
    pub(super) fn on(
        conn: Arc<Conn>,
        partitions: Arc<Mutex<HashMap<String, u32>>>,
        failover: Option<Arc<Failover>>,
    ) -> Client {
        Client {
            inner: Arc::new(Inner {
                conn: RwLock::new(conn),
                partitions,
                failover,
            }),
        }
    }

    /// The connection requests go to now.
    pub(super) fn conn(&self) -> Arc<Conn> {
        self.inner
            .conn
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_conn(&self, conn: Arc<Conn>) {
        *self.inner.conn.write().unwrap_or_else(|e| e.into_inner()) = conn;
    }

    /// A handle bound to the connection in use (or, failing over, to a live one), for what
    /// lives on one connection: subscriptions and consumers.
    pub(super) async fn pinned(&self) -> Result<Client> {
        let conn = self.live_conn().await?;
        Ok(Client::on(conn, self.inner.partitions.clone(), None))
    }

    /// Connects to `addr` (`host:port`, or several comma-separated: see
    /// [`ConnectOptions::new`]) with the default options and performs the version handshake.
    pub async fn connect(addr: &str) -> Result<Client> {
        Client::connect_with(ConnectOptions::new(addr)).await
    }

    /// Options to connect to `addr` (one `host:port`, or the nodes of a cluster
    /// comma-separated): set them, then call [`ConnectOptions::connect`].
    pub fn builder(addr: impl Into<String>) -> ConnectOptions {
        ConnectOptions::new(addr)
    }

    /// Connects with `opts`, trying its addresses in turn, and performs the version
    /// handshake; the last failure when no address answers.
    pub async fn connect_with(opts: ConnectOptions) -> Result<Client> {
        let (conn, at) = super::failover::connect_first(&opts, 0).await?;
        let failover = opts
            .fails_over()
            .then(|| Arc::new(Failover::new(opts.clone(), at)));
        Ok(Client::on(conn, Arc::default(), failover))
    }

    pub(super) fn next_id(&self) -> u32 {
        self.conn().next_id()
    }

    pub(super) async fn request_with_id(&self, id: u32, req: Request) -> Result<Reply> {
        let conn = self.conn();
        let rx = conn.send_request(id, &req).await?;
        conn.await_reply(rx).await
    }

    /// Sends a request and waits for its reply (an `ERROR` reply becomes `Err`). With several
    /// addresses, a request that may go to any node (publishes, topic administration, figures,
    /// cluster status) and is refused with `NotLeader` or cut by a lost connection is retried
    /// on the next nodes until [`ConnectOptions::retry_deadline`].
    pub async fn request(&self, req: Request) -> Result<Reply> {
        let conn = self.conn();
        let first = match super::failover::retried_kind(&req) {
            true => self.timed(conn.request(&req)).await,
            false => conn.request(&req).await,
        };
        match first {
            Err(e) if self.inner.failover.is_some() && super::failover::retried(&req, &e) => {
                let req = &req;
                self.retry_on(conn, e, |c| async move { c.request(req).await })
                    .await
            }
            r => r,
        }
    }

    pub(super) async fn expect_ok(&self, req: Request) -> Result<()> {
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

    /// Registers stream `id` (a subscription or consumer): its pushes go to the receiver.
    pub(super) fn open_stream(&self, id: u32) -> mpsc::UnboundedReceiver<Reply> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.conn().routes.streams.lock().unwrap().insert(id, tx);
        rx
    }

    /// Forgets stream `id` (its pushes are dropped from now on); returns `e`.
    pub(super) fn drop_stream(&self, id: u32, e: ClientError) -> ClientError {
        self.conn().routes.streams.lock().unwrap().remove(&id);
        e
    }

    /// Closes a subscription or consumer without waiting (from `Drop`: no runtime needed).
    pub(super) fn cancel_detached(&self, id: u32) {
        let conn = self.conn();
        conn.routes.streams.lock().unwrap().remove(&id);
        let req = conn.next_id();
        let _ = conn.out.try_send(Request::Cancel { id }.encode(req));
    }

    /// Closes a subscription or consumer and waits for the server's confirmation.
    pub(super) async fn cancel_stream(&self, id: u32) -> Result<()> {
        self.drop_stream(id, ClientError::Closed(String::new()));
        self.expect_ok(Request::Cancel { id }).await
    }

    /// What a stream yields when its channel ends: once `Closed` with the reason if the
    /// connection is gone, then `None`.
    pub(super) fn end_of_stream<T>(&self, ended: &mut bool) -> Option<Result<T>> {
        if std::mem::replace(ended, true) {
            return None;
        }
        let reason = self.conn().routes.closed.lock().unwrap().clone()?;
        Some(Err(ClientError::Closed(reason)))
    }

    /// Sends a frame with no reply from a task of its own (no waiting in a `poll`).
    pub(super) fn send_detached(&self, frame: OutFrame) {
        let out = self.conn().out.clone();
        tokio::spawn(async move {
            let _ = out.send(frame).await;
        });
    }
}
