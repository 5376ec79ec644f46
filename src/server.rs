//! The broker: a TCP listener with a connection limit, one task per connection, pushed
//! subscriptions and consumers with credit-based flow control, and graceful shutdown.
//!
//! Structure (one connection):
//! - the *reader* (the connection task) reads frames, decodes them and dispatches requests;
//! - every request gets a *reply slot* in a bounded FIFO (`pending_requests_max`); the *replier*
//!   task forwards slots to the writer in request order as they are filled, so replies are
//!   pipelined and ordered while work (fsync, admin) runs concurrently;
//! - the *writer* task owns the socket's write half and batches frames into one flush;
//! - each subscription and consumer is a task that pushes frames straight to the writer,
//!   woken by the topic's or queue's append listener (a `watch` channel per log: a log has one
//!   listener, so the server registers one per log and fans out).
//!
//! Disk work (appends, syncs, reads, acks, admin) runs on `spawn_blocking` threads.

use std::collections::{HashMap, HashSet};

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sluice_storage::{
    now_ms, Batch, ConsumerId, Error as StoreError, FsyncPolicy, Log, LogConfig, Offset, Pending,
    Queue, QueueConfig, StartAt, StdFs, Store, StoreConfig, Topic,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{spawn_blocking, AbortHandle};
use tokio::time::{sleep, timeout};
use tracing::{debug, info, warn};

use crate::config::{Config, ConfigError, Limits};
use crate::protocol::{
    self, ErrorCode, LogSettings, OutFrame, ProtocolError, QueueInfo, QueueMessage, Reply, Request,
    Source, Start, SubscriberStat, Target, TopicInfo,
};

/// Bytes read from a log per read call of a subscription.
const READ_BYTES: usize = 1 << 20;
/// Largest `MESSAGES` frame, every byte counted (keys and headers too); one message larger than
/// this goes alone in its frame (a record is at most a batch, `batch_bytes_max`).
const MESSAGES_FRAME_BYTES: usize = 1 << 20;
/// Bytes of queue messages one delivery round of a consumer reads and pushes at most (about:
/// one message larger than this goes alone). The round takes them from the connection's push
/// budget (`PUSH_BYTES_MAX`) before reading, and its frames hold them until written, so queue
/// deliveries are bounded by bytes as subscription pushes are.
const CONSUMER_ROUND_BYTES: usize = 2 << 20;
/// Frames queued to a connection's writer.
const WRITER_QUEUE: usize = 256;
/// Bytes of stored batches pushed to a connection's subscriptions and not yet written to its
/// socket. A subscriber that stops reading its socket (with credit left) pins at most this much
/// (plus one read) instead of `WRITER_QUEUE` batches of up to `batch_bytes_max` each.
const PUSH_BYTES_MAX: usize = 4 << 20;

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another process holds the data directory's lock file.
    #[error("data directory {dir} is already in use by another sluice process (lock file {lock} is held)")]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed to open or close.
    #[error("store in {dir}: {source}")]
    Store {
        /// The data directory.
        dir: PathBuf,
        /// Why.
        source: StoreError,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A blocking store task panicked.
    #[error("store task failed: {0}")]
    Task(String),
}

/// The fan-out of one log's append listener: the address of the topic or queue it was
/// registered for, and the channel carrying the visible end.
type LogWatch = (usize, Arc<watch::Sender<u64>>);

/// State shared by every connection.
struct Shared {
    store: Arc<Store>,
    limits: Limits,
    default_log: LogConfig,
    /// One append listener per log, keyed by `t/<topic>` or `q/<queue>`, with the address of the
    /// topic or queue it was registered for (a recreated one gets a new listener).
    watches: Mutex<HashMap<String, LogWatch>>,
    /// Wakes the consumers of a queue or group when messages return to it (nack, release, ack).
    queue_events: Mutex<HashMap<String, Arc<Notify>>>,
    next_consumer: AtomicU64,
    /// Held by the one connection syncing a publish on its own worker thread (see
    /// `INLINE_SYNC_BATCH_BYTES_MAX`): at most one worker blocks on a sync at a time.
    inline_sync: AtomicBool,
    /// Named subscribers held by an open subscription: the address of their topic and their
    /// name. One subscription at a time may hold a name ([`HeldName`]).
    held_names: Mutex<HashSet<(usize, String)>>,
}

/// A named subscriber held by one open subscription. Released (once) when the subscription's
/// task ends, when its connection cancels it (at once, not when the aborted task is dropped),
/// or when the last reference goes.
struct HeldName {
    shared: Arc<Shared>,
    key: (usize, String),
    released: AtomicBool,
}

impl HeldName {
    /// Holds `name` of the topic at `topic`, unless another subscription holds it.
    fn try_hold(shared: &Arc<Shared>, topic: usize, name: &str) -> Option<Arc<HeldName>> {
        let key = (topic, name.to_owned());
        if !shared.held_names.lock().unwrap().insert(key.clone()) {
            return None;
        }
        Some(Arc::new(HeldName {
            shared: shared.clone(),
            key,
            released: AtomicBool::new(false),
        }))
    }

    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.shared.held_names.lock().unwrap().remove(&self.key);
        }
    }
}

impl Drop for HeldName {
    fn drop(&mut self) {
        self.release();
    }
}

impl Shared {
    fn watch_log(&self, key: String, ptr: usize, log: &Log) -> watch::Receiver<u64> {
        let mut m = self.watches.lock().unwrap();
        if let Some((p, tx)) = m.get(&key) {
            if *p == ptr {
                return tx.subscribe();
            }
        }
        let (tx, rx) = watch::channel(log.visible_end().0);
        let tx = Arc::new(tx);
        let weak = Arc::downgrade(&tx);
        log.set_listener(Arc::new(move |end: Offset| {
            if let Some(tx) = weak.upgrade() {
                tx.send_replace(end.0);
            }
        }));
        m.insert(key, (ptr, tx));
        rx
    }

    /// Drops a log's listener fan-out: its subscriptions end.
    fn forget(&self, key: &str) {
        self.watches.lock().unwrap().remove(key);
    }

    fn queue_events(&self, key: &str) -> Arc<Notify> {
        self.queue_events
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    fn log_config(&self, s: &LogSettings) -> Result<LogConfig, Fail> {
        let mut c = self.default_log.clone();
        if let Some(v) = s.segment_bytes_max {
            let min = self.limits.segment_bytes_min;
            if v < min {
                return Err(Fail(
                    ErrorCode::InvalidArgument,
                    format!("segment_bytes_max must be at least {min} (limits.segment_bytes_min), got {v}"),
                ));
            }
            c.segment_bytes_max = v;
        }
        if s.retention_bytes.is_some() {
            c.retention_bytes = s.retention_bytes;
        }
        if let Some(v) = s.retention_ms {
            c.retention_ms = Some(v);
        }
        c.validate()
            .map_err(|m| Fail(ErrorCode::InvalidArgument, m))?;
        Ok(c)
    }

    fn resolve_target(&self, t: &Target) -> Result<Log, Fail> {
        match t {
            Target::Topic(n) => Ok(self.store.topic(n)?.log().clone()),
            Target::Queue(n) => Ok(self.store.queue(n)?.log().clone()),
            Target::Any(n) => match self.store.topic(n) {
                Ok(t) => Ok(t.log().clone()),
                Err(StoreError::NotFound { .. }) => match self.store.queue(n) {
                    Ok(q) => Ok(q.log().clone()),
                    Err(StoreError::NotFound { .. }) => Err(Fail(
                        ErrorCode::NotFound,
                        format!("no topic or queue is named {n:?}"),
                    )),
                    Err(e) => Err(e.into()),
                },
                Err(e) => Err(e.into()),
            },
        }
    }
}

/// A request failure: code and message of the `ERROR` reply.
#[derive(Debug)]
struct Fail(ErrorCode, String);

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::NotFound { .. } => ErrorCode::NotFound,
            StoreError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            StoreError::InvalidBatch(_) => ErrorCode::InvalidBatch,
            StoreError::InvalidArgument(_) | StoreError::OffsetOutOfRange { .. } => {
                ErrorCode::InvalidArgument
            }
            StoreError::LimitReached(_) => ErrorCode::LimitReached,
            StoreError::NotHeld { .. } => ErrorCode::NotHeld,
            _ => ErrorCode::Storage,
        };
        Fail(code, e.to_string())
    }
}

impl Fail {
    fn reply(self) -> Reply {
        Reply::error(self.0, self.1)
    }
}

/// Runs blocking store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Fail> + Send + 'static,
) -> Result<T, Fail> {
    match spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(Fail(ErrorCode::Internal, format!("store task failed: {e}"))),
    }
}

/// The broker: bound and holding its data directory, not yet serving.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    dir: PathBuf,
    retention_check: Duration,
}

impl Server {
    /// Validates the configuration, locks the data directory, opens (recovering) the store and
    /// binds the listen address.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        config.validate()?;
        let dir = config.data_dir.clone();
        let store_config = StoreConfig {
            default_log: config.log.clone(),
        };
        let d = dir.clone();
        let store = spawn_blocking(move || Store::open(Arc::new(StdFs), d, store_config))
            .await
            .map_err(|e| ServerError::Task(e.to_string()))?
            .map_err(|source| match source {
                // The store holds the data directory's LOCK while it is open.
                StoreError::Locked { dir, lock } => ServerError::Locked { dir, lock },
                source => ServerError::Store {
                    dir: dir.clone(),
                    source,
                },
            })?;
        let addr = config.listen_addr()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        info!(data_dir = %dir.display(), fsync = %config.log.fsync, "store open");
        let retention_check = Duration::from_millis(config.retention_check_ms);
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                store: Arc::new(store),
                limits: config.limits,
                default_log: config.log,
                watches: Mutex::default(),
                queue_events: Mutex::default(),
                next_consumer: AtomicU64::new(1),
                inline_sync: AtomicBool::new(false),
                held_names: Mutex::default(),
            }),
            dir: config.data_dir.clone(),
            retention_check,
        })
    }

    /// The bound address (with the real port when the configuration asked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets connections finish their
    /// in-flight requests (up to `shutdown_timeout_ms`), closes the store (sync and clean-shutdown
    /// markers) and releases the lock.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server {
            listener,
            shared,
            dir,
            retention_check,
        } = self;
        let retention = tokio::spawn(apply_retention(shared.clone(), retention_check));
        let (notify_shutdown, _) = broadcast::channel::<()>(1);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let permits = Arc::new(Semaphore::new(shared.limits.connections_max));
        let accept = async {
            loop {
                let (sock, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        warn!("accept failed: {e}");
                        sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let permit = permits.clone().try_acquire_owned();
                let shared = shared.clone();
                let shutdown_rx = notify_shutdown.subscribe();
                let done = done_tx.clone();
                tokio::spawn(async move {
                    let _done = done;
                    match permit {
                        Ok(_permit) => handle_connection(shared, sock, peer, shutdown_rx).await,
                        Err(_) => {
                            warn!(%peer, limit = shared.limits.connections_max, "connection refused: connections_max reached");
                            reject(sock, ErrorCode::LimitReached, "connections_max reached").await;
                        }
                    }
                });
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = shutdown => info!("shutdown requested: no longer accepting connections"),
        }
        drop(listener);
        retention.abort();
        drop(notify_shutdown);
        drop(done_tx);
        let grace = Duration::from_millis(shared.limits.shutdown_timeout_ms);
        if timeout(grace, done_rx.recv()).await.is_err() {
            warn!("connections still open after {grace:?}; closing the store anyway");
        }
        let store = shared.store.clone();
        spawn_blocking(move || store.close())
            .await
            .map_err(|e| ServerError::Task(e.to_string()))?
            .map_err(|source| ServerError::Store { dir, source })?;
        info!("store closed cleanly");
        Ok(())
    }
}

/// Applies time- and size-based retention to every topic and queue periodically.
async fn apply_retention(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let s = shared.clone();
        let _ = spawn_blocking(move || {
            let mut logs = Vec::new();
            for n in s.store.list_topics() {
                if let Ok(t) = s.store.topic(&n) {
                    logs.push((n, t.log().clone()));
                }
            }
            for n in s.store.list_queues() {
                if let Ok(q) = s.store.queue(&n) {
                    logs.push((n, q.log().clone()));
                }
            }
            for (name, log) in logs {
                match log.enforce_retention() {
                    Ok(0) => {}
                    Ok(n) => info!(%name, segments = n, "retention deleted segments"),
                    Err(e) => warn!(%name, "retention failed: {e}"),
                }
            }
        })
        .await;
    }
}

async fn reject(mut sock: TcpStream, code: ErrorCode, msg: &str) {
    let f = Reply::error(code, msg).encode(0).to_vec();
    let _ = timeout(Duration::from_secs(1), async {
        let _ = sock.write_all(&f).await;
        let _ = sock.shutdown().await;
    })
    .await;
}

/// A filled reply slot: the frame and, optionally, who to tell once it is queued to the writer.
struct Slot {
    frame: OutFrame,
    written: Option<oneshot::Sender<()>>,
}

type SlotTx = oneshot::Sender<Slot>;

fn fill(tx: SlotTx, id: u32, reply: Reply) {
    let _ = tx.send(Slot {
        frame: reply.encode(id),
        written: None,
    });
}

/// Largest publish appended and synced on the connection's own worker thread when the client
/// waits for each confirm. Handing a small publish to the blocking pool and its confirm back
/// costs thread wake-ups of tens of microseconds each on a small VM, a third of the whole
/// publish-to-confirm time. Doing it inline blocks one runtime worker for one small sync, so
/// it is done only when the runtime has another worker, by one connection at a time
/// (`Shared::inline_sync`), for a client with nothing else in flight or buffered; everything
/// else goes to the blocking pool and shares syncs (group commit). A large batch gains little
/// next to its write, and its client had better pipeline anyway.
const INLINE_SYNC_BATCH_BYTES_MAX: usize = 16 * 1024;

/// The server-wide permission to sync on a worker thread, released on drop.
struct InlineSync<'a>(&'a AtomicBool);

impl<'a> InlineSync<'a> {
    fn try_hold(flag: &'a AtomicBool) -> Option<InlineSync<'a>> {
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| InlineSync(flag))
    }
}

impl Drop for InlineSync<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Fills the slot with `f`'s reply; a panic in `f` becomes an internal error reply rather than
/// a request that is never answered.
fn fill_catching(tx: SlotTx, id: u32, f: impl FnOnce() -> Reply) {
    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Reply::error(ErrorCode::Internal, "store task failed: it panicked"));
    fill(tx, id, reply);
}

/// Appends a published batch and, when `sync`, makes it durable (group commit); calls
/// `appended` once the append is done or has failed. Blocking.
fn publish(log: &Log, batch: Vec<u8>, sync: bool, appended: impl FnOnce()) -> Reply {
    let info = log.append_unsynced(batch);
    appended();
    let info = match info {
        Ok(i) => i,
        Err(e) => return Fail::from(e).reply(),
    };
    if sync {
        if let Err(e) = log.sync_to(info.next_offset()) {
            return Fail::from(e).reply();
        }
    }
    Reply::Published {
        base_offset: info.base_offset.0,
        last_offset: info.last_offset.0,
    }
}

/// Counts one in-flight item: increments on creation, decrements when dropped (however the
/// holder ends).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn count(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a connection ended.
enum End {
    /// Peer closed, I/O failed, or shutdown.
    Closed,
    /// A protocol violation or limit: send this error, then close.
    Fatal(u32, ErrorCode, String),
}

impl From<ProtocolError> for End {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Io(_) => End::Closed,
            ProtocolError::TooLarge { .. } => {
                End::Fatal(0, ErrorCode::FrameTooLarge, e.to_string())
            }
            ProtocolError::Malformed(_) | ProtocolError::UnknownKind(_) => {
                End::Fatal(0, ErrorCode::Malformed, e.to_string())
            }
        }
    }
}

/// A stored batch on its way to a subscriber, holding its share of the connection's push budget
/// until the writer has written and dropped the frame.
struct Budgeted {
    bytes: bytes::Bytes,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A subscription's credit: messages granted and not delivered yet, at most `credit_max`.
struct Credit {
    /// Credit the subscription's task has not taken yet.
    sem: Semaphore,
    /// Credit granted and not yet used by a delivery: the semaphore's permits plus those the
    /// task took and has not delivered. Grants are capped against this, not against the
    /// permits alone (the task takes them all while it waits for messages).
    outstanding: AtomicU64,
}

impl Credit {
    fn new(initial: u32, max: u32) -> Credit {
        let initial = initial.min(max);
        Credit {
            sem: Semaphore::new(initial as usize),
            outstanding: AtomicU64::new(initial as u64),
        }
    }

    /// Grants up to `n` more, within `max` outstanding.
    fn grant(&self, n: u32, max: u32) {
        let mut added = 0;
        let _ = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                added = (max as u64).saturating_sub(o).min(n as u64);
                Some(o + added)
            });
        if added > 0 {
            self.sem.add_permits(added as usize);
        }
    }

    /// `n` messages were delivered: their credit is used up.
    fn spend(&self, n: u64) {
        self.outstanding.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Marks a subscription or consumer as ended for its connection, which then forgets it (later
/// `CREDIT`, `ACK`, `NACK` or `CANCEL` naming it answer `UnknownId`). Marked explicitly before
/// an error push (so the mark is set before the client can see the error) and on drop.
struct StreamEnd {
    ended: Arc<AtomicBool>,
    conn: Arc<AtomicBool>,
}

impl StreamEnd {
    fn mark(&self) {
        self.ended.store(true, Ordering::Release);
        self.conn.store(true, Ordering::Release);
    }
}

impl Drop for StreamEnd {
    fn drop(&mut self) {
        self.mark();
    }
}

struct SubHandle {
    credit: Arc<Credit>,
    task: AbortHandle,
    ended: Arc<AtomicBool>,
    held: Option<Arc<HeldName>>,
}

impl SubHandle {
    /// Stops the subscription; its named subscriber is free at once.
    fn cancel(self) {
        self.task.abort();
        if let Some(h) = &self.held {
            h.release();
        }
    }
}

struct ConsumerState {
    cid: ConsumerId,
    queue: OnceLock<Arc<Queue>>,
    events: OnceLock<Arc<Notify>>,
    /// Offsets delivered to this consumer and not settled, with their ack deadline (after it the
    /// queue takes them back, so they stop counting against the prefetch).
    inflight: Mutex<HashMap<u64, i64>>,
    prefetch: AtomicU32,
    wake: Notify,
    /// Set once the consumer is released; a `deliver` that runs later (its task was aborted
    /// while the blocking call was queued) must hand out nothing.
    closed: AtomicBool,
    /// Held around `deliver` and `release` so neither interleaves with the other.
    gate: Mutex<()>,
    /// Frames of rounds run by acks that found the connection's writer queue full: the
    /// consumer's own task sends them (an ack never waits for a slow reader on a shared
    /// thread). Bounded by the push budget their frames hold.
    backlog: Mutex<Vec<OutFrame>>,
    /// The connection's push budget (`PUSH_BYTES_MAX`), shared with its subscriptions.
    budget: Arc<Semaphore>,
}

struct ConsumerHandle {
    state: Arc<ConsumerState>,
    task: AbortHandle,
    ended: Arc<AtomicBool>,
}

struct Conn {
    shared: Arc<Shared>,
    peer: SocketAddr,
    out: mpsc::Sender<OutFrame>,
    /// Bytes of subscription pushes not yet written (`PUSH_BYTES_MAX`).
    push_budget: Arc<Semaphore>,
    replies: mpsc::Sender<oneshot::Receiver<Slot>>,
    subs: HashMap<u32, SubHandle>,
    consumers: HashMap<u32, ConsumerHandle>,
    /// Publishes of this connection handed to the blocking pool and not yet confirmed.
    publishing: Arc<AtomicUsize>,
    /// Set before each request: the runtime has another worker thread, no publish of this
    /// connection is in flight and nothing more from it is buffered (a client that waits for
    /// each confirm). A small publish under `always` may then be appended and synced on this
    /// thread (`INLINE_SYNC_BATCH_BYTES_MAX`). A pipelining client keeps the blocking pool, so
    /// its batches share syncs (group commit).
    can_sync_inline: bool,
    /// The runtime has more than one worker thread, so one may block on a sync.
    spare_worker: bool,
    /// Set when a subscription or consumer of this connection ended by itself ([`StreamEnd`]):
    /// the next request first forgets the ended ones.
    ended: Arc<AtomicBool>,
}

async fn handle_connection(
    shared: Arc<Shared>,
    sock: TcpStream,
    peer: SocketAddr,
    mut shutdown: broadcast::Receiver<()>,
) {
    let _ = sock.set_nodelay(true);
    info!(%peer, "connection open");
    let (rd, wr) = sock.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let (out_tx, out_rx) = mpsc::channel::<OutFrame>(WRITER_QUEUE);
    let writer = tokio::spawn(write_loop(wr, out_rx));
    let (reply_tx, reply_rx) = mpsc::channel(shared.limits.pending_requests_max);
    let replier = tokio::spawn(reply_loop(reply_rx, out_tx.clone()));
    let mut conn = Conn {
        shared: shared.clone(),
        peer,
        out: out_tx,
        push_budget: Arc::new(Semaphore::new(PUSH_BYTES_MAX)),
        replies: reply_tx,
        subs: HashMap::new(),
        consumers: HashMap::new(),
        publishing: Arc::new(AtomicUsize::new(0)),
        can_sync_inline: false,
        spare_worker: tokio::runtime::Handle::current().metrics().num_workers() > 1,
        ended: Arc::new(AtomicBool::new(false)),
    };
    let end = conn.run(&mut rd, &mut shutdown).await;
    conn.cancel_all();
    match end {
        End::Fatal(id, code, message) => {
            warn!(%peer, %code, "closing connection: {message}");
            let (tx, rx) = oneshot::channel();
            if conn.replies.send(rx).await.is_ok() {
                fill(tx, id, Reply::error(code, message));
            }
        }
        End::Closed => {}
    }
    let Conn { out, replies, .. } = conn;
    drop(replies);
    drop(out);
    let grace = Duration::from_millis(shared.limits.shutdown_timeout_ms);
    let _ = timeout(grace, replier).await;
    let _ = timeout(grace, writer).await;
    info!(%peer, "connection closed");
}

async fn reply_loop(mut rx: mpsc::Receiver<oneshot::Receiver<Slot>>, out: mpsc::Sender<OutFrame>) {
    while let Some(slot) = rx.recv().await {
        if let Ok(slot) = slot.await {
            if out.send(slot.frame).await.is_err() {
                return;
            }
            if let Some(w) = slot.written {
                let _ = w.send(());
            }
        }
    }
}

async fn write_loop(wr: OwnedWriteHalf, mut rx: mpsc::Receiver<OutFrame>) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    async fn put(w: &mut BufWriter<OwnedWriteHalf>, f: &OutFrame) -> io::Result<()> {
        w.write_all(&f.head).await?;
        if let Some(t) = &f.tail {
            w.write_all(t).await?;
        }
        Ok(())
    }
    while let Some(f) = rx.recv().await {
        if put(&mut w, &f).await.is_err() {
            return;
        }
        let mut n = 0;
        while n < 64 {
            match rx.try_recv() {
                Ok(f) => {
                    if put(&mut w, &f).await.is_err() {
                        return;
                    }
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
        let limits = self.shared.limits.clone();
        let max = limits.frame_bytes_max;
        // Handshake.
        let hs = tokio::select! {
            _ = shutdown.recv() => return End::Closed,
            r = timeout(Duration::from_millis(limits.handshake_timeout_ms), protocol::read_frame(rd, max)) => r,
        };
        let frame = match hs {
            Err(_) => {
                return End::Fatal(
                    0,
                    ErrorCode::Timeout,
                    format!(
                        "no HELLO within handshake_timeout_ms ({} ms)",
                        limits.handshake_timeout_ms
                    ),
                )
            }
            Ok(Err(e)) => return e.into(),
            Ok(Ok(None)) => return End::Closed,
            Ok(Ok(Some(f))) => f,
        };
        match Request::decode(&frame) {
            Ok(Request::Hello { version, client }) if version == protocol::VERSION => {
                debug!(peer = %self.peer, %client, "handshake");
                let (tx, rx) = oneshot::channel();
                if self.replies.send(rx).await.is_err() {
                    return End::Closed;
                }
                fill(
                    tx,
                    frame.request_id,
                    Reply::HelloOk {
                        version: protocol::VERSION,
                        server: format!("sluice {}", env!("CARGO_PKG_VERSION")),
                        frame_bytes_max: max,
                    },
                );
            }
            Ok(Request::Hello { version, .. }) => {
                return End::Fatal(
                    frame.request_id,
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "protocol version {version} is not supported (this server speaks {})",
                        protocol::VERSION
                    ),
                )
            }
            Ok(_) => {
                return End::Fatal(
                    frame.request_id,
                    ErrorCode::Malformed,
                    "the first frame must be HELLO".into(),
                )
            }
            Err(ProtocolError::Malformed(m)) if m.contains("magic") => {
                return End::Fatal(frame.request_id, ErrorCode::UnsupportedVersion, m)
            }
            Err(e) => return e.into(),
        }
        loop {
            self.reap();
            let idle = self.subs.is_empty() && self.consumers.is_empty();
            let first = tokio::select! {
                _ = shutdown.recv() => {
                    let (tx, rx) = oneshot::channel();
                    if self.replies.send(rx).await.is_ok() {
                        fill(tx, 0, Reply::error(ErrorCode::ShuttingDown, "server shutting down"));
                    }
                    return End::Closed;
                }
                r = rd.read_u8() => r,
                _ = sleep(Duration::from_millis(limits.idle_timeout_ms)), if idle => {
                    return End::Fatal(0, ErrorCode::Timeout, format!("idle for idle_timeout_ms ({} ms)", limits.idle_timeout_ms));
                }
            };
            let Ok(first) = first else {
                return End::Closed;
            };
            let frame = match timeout(
                Duration::from_millis(limits.frame_timeout_ms),
                protocol::read_frame_rest(rd, first, max),
            )
            .await
            {
                Err(_) => {
                    return End::Fatal(
                        0,
                        ErrorCode::Timeout,
                        format!(
                            "frame not completed within frame_timeout_ms ({} ms)",
                            limits.frame_timeout_ms
                        ),
                    )
                }
                Ok(Err(e)) => return e.into(),
                Ok(Ok(f)) => f,
            };
            let id = frame.request_id;
            let req = match Request::decode(&frame) {
                Ok(r) => r,
                Err(e) => {
                    return match End::from(e) {
                        End::Fatal(_, c, m) => End::Fatal(id, c, m),
                        other => other,
                    }
                }
            };
            self.can_sync_inline = self.spare_worker
                && rd.buffer().is_empty()
                && self.publishing.load(Ordering::Acquire) == 0;
            if let Err(end) = self.dispatch(id, req).await {
                return end;
            }
        }
    }

    async fn slot(&self) -> Result<SlotTx, End> {
        let (tx, rx) = oneshot::channel();
        self.replies.send(rx).await.map_err(|_| End::Closed)?;
        Ok(tx)
    }

    /// Runs `f` on the blocking pool and fills the slot with its result from there (no task
    /// in between to wake). A panic in `f` becomes an internal error reply.
    fn spawn_reply(
        &self,
        tx: SlotTx,
        id: u32,
        f: impl FnOnce() -> Result<Reply, Fail> + Send + 'static,
    ) {
        spawn_blocking(move || fill_catching(tx, id, || f().unwrap_or_else(Fail::reply)));
    }

    /// A new stream's end mark, and the flag its handle keeps.
    fn stream_end(&self) -> (StreamEnd, Arc<AtomicBool>) {
        let ended = Arc::new(AtomicBool::new(false));
        let end = StreamEnd {
            ended: ended.clone(),
            conn: self.ended.clone(),
        };
        (end, ended)
    }

    /// Forgets the subscriptions and consumers that ended by themselves (their topic or queue
    /// was deleted, a read failed, their setup was refused); a consumer's messages go back.
    fn reap(&mut self) {
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
                release_consumer(c);
            }
        }
    }

    fn streams_full(&self) -> bool {
        self.subs.len() + self.consumers.len()
            >= self.shared.limits.subscriptions_per_connection_max
    }

    /// Why a new subscription or consumer under request `id` is refused, if it is: the
    /// per-connection stream limit, or an id that already names an open stream.
    fn refuse_stream(&self, id: u32, what: &str) -> Option<Reply> {
        if self.streams_full() {
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

    async fn dispatch(&mut self, id: u32, req: Request) -> Result<(), End> {
        self.reap();
        let shared = self.shared.clone();
        match req {
            Request::Hello { .. } => {
                let tx = self.slot().await?;
                fill(
                    tx,
                    id,
                    Reply::error(ErrorCode::InvalidArgument, "already greeted"),
                );
            }
            Request::Ping => {
                let tx = self.slot().await?;
                fill(tx, id, Reply::Pong);
            }
            Request::Publish { target, batch } => {
                let tx = self.slot().await?;
                let log = match shared.resolve_target(&target) {
                    Ok(l) => l,
                    Err(f) => {
                        fill(tx, id, f.reply());
                        return Ok(());
                    }
                };
                let always = log.config().fsync == FsyncPolicy::Always;
                if always && self.can_sync_inline && batch.len() <= INLINE_SYNC_BATCH_BYTES_MAX {
                    if let Some(_held) = InlineSync::try_hold(&shared.inline_sync) {
                        fill_catching(tx, id, || publish(&log, batch, true, || {}));
                        return Ok(());
                    }
                }
                // One blocking call appends and then, under `always`, joins the group commit and
                // fills the reply itself. The connection reads on as soon as the append is in
                // place, so appends of one connection stay in order while their syncs overlap,
                // and the confirm leaves the thread that made it durable without another hop.
                let (appended_tx, appended) = oneshot::channel::<()>();
                let in_flight = InFlight::count(&self.publishing);
                spawn_blocking(move || {
                    fill_catching(tx, id, || {
                        let reply = publish(&log, batch, always, || {
                            let _ = appended_tx.send(());
                        });
                        drop(in_flight);
                        reply
                    })
                });
                if appended.await.is_err() {
                    return Err(End::Fatal(
                        id,
                        ErrorCode::Internal,
                        "the append task failed".into(),
                    ));
                }
            }
            Request::Subscribe {
                topic,
                name,
                start,
                credit,
            } => {
                let tx = self.slot().await?;
                if let Some(refused) = self.refuse_stream(id, "subscription") {
                    fill(tx, id, refused);
                    return Ok(());
                }
                let topic = match shared.store.topic(&topic) {
                    Ok(t) => t,
                    Err(e) => {
                        fill(tx, id, Fail::from(e).reply());
                        return Ok(());
                    }
                };
                let held = match &name {
                    Some(n) => match HeldName::try_hold(&shared, Arc::as_ptr(&topic) as usize, n) {
                        Some(h) => Some(h),
                        None => {
                            let msg = format!(
                                "subscriber {n:?} of topic {:?} is held by another open subscription",
                                topic.name()
                            );
                            fill(tx, id, Reply::error(ErrorCode::InUse, msg));
                            return Ok(());
                        }
                    },
                    None => None,
                };
                let credit = Arc::new(Credit::new(credit, shared.limits.credit_max));
                let (end, ended) = self.stream_end();
                let sub = SubscriptionTask {
                    shared: shared.clone(),
                    topic,
                    id,
                    credit: credit.clone(),
                    out: self.out.clone(),
                    budget: self.push_budget.clone(),
                    end,
                    held: held.clone(),
                };
                let task = tokio::spawn(sub.run(name, start, tx));
                self.subs.insert(
                    id,
                    SubHandle {
                        credit,
                        task: task.abort_handle(),
                        ended,
                        held,
                    },
                );
            }
            Request::Credit { id: target, credit } => {
                if let Some(s) = self.subs.get(&target) {
                    s.credit.grant(credit, shared.limits.credit_max);
                } else if let Some(c) = self.consumers.get(&target) {
                    let max = shared.limits.unacked_per_consumer_max;
                    let p = c.state.prefetch.load(Ordering::Relaxed);
                    c.state
                        .prefetch
                        .store(p.saturating_add(credit).min(max), Ordering::Relaxed);
                    c.state.wake.notify_one();
                }
            }
            Request::Cancel { id: target } => {
                let tx = self.slot().await?;
                if let Some(s) = self.subs.remove(&target) {
                    s.cancel();
                    fill(tx, id, Reply::Ok);
                } else if let Some(c) = self.consumers.remove(&target) {
                    release_consumer(c);
                    fill(tx, id, Reply::Ok);
                } else {
                    fill(
                        tx,
                        id,
                        Reply::error(
                            ErrorCode::UnknownId,
                            format!("no open subscription or consumer {target}"),
                        ),
                    );
                }
            }
            Request::Commit { topic, name, next } => {
                let tx = self.slot().await?;
                self.spawn_reply(tx, id, move || {
                    shared.store.topic(&topic)?.commit(&name, Offset(next))?;
                    Ok(Reply::Ok)
                });
            }
            Request::Consume { source, prefetch } => {
                let tx = self.slot().await?;
                if let Some(refused) = self.refuse_stream(id, "consumer") {
                    fill(tx, id, refused);
                    return Ok(());
                }
                let prefetch = prefetch.clamp(1, shared.limits.unacked_per_consumer_max);
                let state = Arc::new(ConsumerState {
                    cid: ConsumerId(shared.next_consumer.fetch_add(1, Ordering::Relaxed)),
                    queue: OnceLock::new(),
                    events: OnceLock::new(),
                    inflight: Mutex::default(),
                    prefetch: AtomicU32::new(prefetch),
                    wake: Notify::new(),
                    closed: AtomicBool::new(false),
                    gate: Mutex::new(()),
                    backlog: Mutex::default(),
                    budget: self.push_budget.clone(),
                });
                let (end, ended) = self.stream_end();
                let task = tokio::spawn(run_consumer(
                    shared.clone(),
                    source,
                    id,
                    state.clone(),
                    self.out.clone(),
                    tx,
                    end,
                ));
                self.consumers.insert(
                    id,
                    ConsumerHandle {
                        state,
                        task: task.abort_handle(),
                        ended,
                    },
                );
            }
            Request::Ack { id: target, .. } | Request::Nack { id: target, .. }
                if !self.consumers.contains_key(&target) =>
            {
                let tx = self.slot().await?;
                fill(
                    tx,
                    id,
                    Reply::error(
                        ErrorCode::UnknownId,
                        format!("no open consumer {target} on this connection"),
                    ),
                );
            }
            Request::Ack {
                id: target,
                offsets,
            } => {
                let tx = self.slot().await?;
                let state = self.consumers[&target].state.clone();
                let out = self.out.clone();
                self.spawn_reply(tx, id, move || {
                    let q = state.queue.get().cloned().ok_or_else(|| {
                        Fail(ErrorCode::UnknownId, "consumer is not open yet".into())
                    })?;
                    let offs: Vec<Offset> = offsets.iter().map(|o| Offset(*o)).collect();
                    let acked = q.ack_pending(state.cid, &offs)?;
                    let (acked, not_held) = (acked.pending, acked.not_held);
                    state.forget(&offsets);
                    // The window the acks opened is filled here and now, so the deliveries
                    // share the acks' sync and leave with their confirm: one blocking call and
                    // one sync per round trip of the consumer instead of two of each. Without
                    // push budget to spare (the client is slow to read), the consumer's own
                    // task fills it once there is.
                    let round = match state.budget.clone().try_acquire_many_owned(round_permits()) {
                        Ok(budget) => deliver_round(&state, &q, target, budget),
                        Err(_) => {
                            state.wake.notify_one();
                            Ok((Vec::new(), Pending::NONE))
                        }
                    };
                    let (frames, delivered) = match round {
                        Ok(r) => r,
                        Err(Fail(_, e)) => {
                            // The consumer's own task retries, and reports the error if it stays.
                            tracing::warn!(queue = q.name(), "delivering after an ack failed: {e}");
                            state.wake.notify_one();
                            (Vec::new(), Pending::NONE)
                        }
                    };
                    q.commit(acked.and(delivered))?;
                    state.push_from_ack(&out, frames);
                    state.acked(&q);
                    if !not_held.is_empty() {
                        return Err(StoreError::NotHeld { offsets: not_held }.into());
                    }
                    Ok(Reply::Ok)
                });
            }
            Request::Nack {
                id: target,
                delay_ms,
                offsets,
            } => {
                let tx = self.slot().await?;
                let state = self.consumers[&target].state.clone();
                self.spawn_reply(tx, id, move || {
                    let q = state.queue.get().cloned().ok_or_else(|| {
                        Fail(ErrorCode::UnknownId, "consumer is not open yet".into())
                    })?;
                    let offs: Vec<Offset> = offsets.iter().map(|o| Offset(*o)).collect();
                    q.nack(state.cid, &offs, delay_ms)?;
                    settle(&state, &offsets);
                    Ok(Reply::Ok)
                });
            }
            Request::CreateTopic { name, settings } => {
                let tx = self.slot().await?;
                self.spawn_reply(tx, id, move || {
                    let cfg = shared.log_config(&settings)?;
                    shared.store.create_topic(&name, Some(cfg))?;
                    info!(topic = %name, "topic created");
                    Ok(Reply::Ok)
                });
            }
            Request::DeleteTopic { name } => {
                let tx = self.slot().await?;
                self.spawn_reply(tx, id, move || {
                    shared.store.delete_topic(&name)?;
                    shared.forget(&format!("t/{name}"));
                    info!(topic = %name, "topic deleted");
                    Ok(Reply::Ok)
                });
            }
            Request::ListTopics => {
                let tx = self.slot().await?;
                self.spawn_reply(tx, id, move || Ok(Reply::Names(shared.store.list_topics())));
            }
            Request::DescribeTopic { name } => {
                let tx = self.slot().await?;
                self.spawn_reply(tx, id, move || {
                    let s = shared.store.topic(&name)?.stats();
                    Ok(Reply::TopicInfo(TopicInfo {
                        name,
                        start_offset: s.start_offset.0,
                        end_offset: s.end_offset.0,
                        size_bytes: s.size_bytes,
                        segments: s.segments as u32,
                        subscribers: s
                            .subscribers
                            .into_iter()
                            .map(|s| SubscriberStat {
                                name: s.name,
                                committed: s.committed.0,
                                lag: s.lag,
                            })
                            .collect(),
                    }))
                });
            }
            Request::CreateQueue { name, settings } => {
                let tx = self.slot().await?;
                self.spawn_reply(tx, id, move || {
                    let log = shared.log_config(&settings.log)?;
                    let mut cfg = QueueConfig {
                        log,
                        dead_letter: settings.dead_letter,
                        max_unacked_per_consumer: shared.limits.unacked_per_consumer_max,
                        ..QueueConfig::default()
                    };
                    if let Some(v) = settings.ack_timeout_ms {
                        cfg.ack_timeout_ms = v;
                    }
                    if let Some(v) = settings.max_deliveries {
                        cfg.max_deliveries = match u32::try_from(v) {
                            Ok(0) | Err(_) => {
                                let m =
                                    format!("max_deliveries must be 1 to {} (got {v})", u32::MAX);
                                return Err(Fail(ErrorCode::InvalidArgument, m));
                            }
                            Ok(v) => v,
                        };
                    }
                    shared.store.create_queue(&name, cfg)?;
                    info!(queue = %name, "queue created");
                    Ok(Reply::Ok)
                });
            }
            Request::DeleteQueue { name } => {
                let tx = self.slot().await?;
                self.spawn_reply(tx, id, move || {
                    shared.store.delete_queue(&name)?;
                    shared.forget(&format!("q/{name}"));
                    shared.queue_events(&format!("q/{name}")).notify_waiters();
                    info!(queue = %name, "queue deleted");
                    Ok(Reply::Ok)
                });
            }
            Request::ListQueues => {
                let tx = self.slot().await?;
                self.spawn_reply(tx, id, move || Ok(Reply::Names(shared.store.list_queues())));
            }
            Request::DescribeQueue { name } => {
                let tx = self.slot().await?;
                self.spawn_reply(tx, id, move || {
                    let q = shared.store.queue(&name)?;
                    let s = q.stats();
                    let c = q.config();
                    Ok(Reply::QueueInfo(QueueInfo {
                        dead_letter: c
                            .dead_letter
                            .clone()
                            .unwrap_or_else(|| format!("{name}.dlq")),
                        ack_timeout_ms: c.ack_timeout_ms,
                        max_deliveries: c.max_deliveries,
                        name,
                        start_offset: s.start_offset.0,
                        end_offset: s.end_offset.0,
                        ack_floor: s.ack_floor.0,
                        cursor: s.cursor.0,
                        depth: s.depth,
                        in_flight: s.in_flight,
                        dead_lettered: s.dead_lettered,
                        size_bytes: s.size_bytes,
                    }))
                });
            }
        }
        Ok(())
    }

    fn cancel_all(&mut self) {
        for (_, s) in self.subs.drain() {
            s.cancel();
        }
        for (_, c) in self.consumers.drain() {
            release_consumer(c);
        }
    }
}

/// Forgets settled offsets of a consumer and wakes it and the queue's other consumers.
fn settle(state: &ConsumerState, offsets: &[u64]) {
    state.forget(offsets);
    state.wake.notify_one();
    if let Some(ev) = state.events.get() {
        ev.notify_waiters();
    }
}

impl ConsumerState {
    /// Forgets settled offsets (their window slots open).
    fn forget(&self, offsets: &[u64]) {
        let mut f = self.inflight.lock().unwrap();
        for o in offsets {
            f.remove(o);
        }
    }

    /// Free slots of the prefetch window; held entries past their deadline no longer count.
    fn window(&self) -> usize {
        let held = {
            let mut f = self.inflight.lock().unwrap();
            let now = now_ms();
            f.retain(|_, deadline| *deadline > now);
            f.len()
        };
        (self.prefetch.load(Ordering::Relaxed) as usize).saturating_sub(held)
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
}

/// Permits of the push budget one delivery round takes (`CONSUMER_ROUND_BYTES`).
fn round_permits() -> u32 {
    CONSUMER_ROUND_BYTES.min(PUSH_BYTES_MAX) as u32
}

/// One delivery round for a consumer, on a blocking thread: up to its free window and about
/// `budget` bytes (permits of the connection's push budget, which the frames hold until
/// written), journaled but not synced, and encoded into `Messages` frames for stream `id`. The
/// frames must not be sent before [`Queue::commit`] of the returned [`Pending`]. The window is
/// computed under the consumer's gate, so rounds run by its own task and by its acks never hand
/// out more than the prefetch together, nor anything after the consumer was released.
fn deliver_round(
    state: &ConsumerState,
    q: &Queue,
    id: u32,
    budget: OwnedSemaphorePermit,
) -> Result<(Vec<OutFrame>, Pending), Fail> {
    let _gate = state.gate.lock().unwrap();
    if state.closed.load(Ordering::Acquire) {
        return Ok((Vec::new(), Pending::NONE));
    }
    let window = state.window();
    if window == 0 {
        return Ok((Vec::new(), Pending::NONE));
    }
    let (ds, pending) = q.deliver_pending_within(state.cid, window, budget.num_permits())?;
    if ds.is_empty() {
        return Ok((Vec::new(), pending));
    }
    let ack_timeout_ms = i64::try_from(q.config().ack_timeout_ms).unwrap_or(i64::MAX);
    {
        let deadline = now_ms().saturating_add(ack_timeout_ms);
        let mut f = state.inflight.lock().unwrap();
        f.extend(ds.iter().map(|d| (d.offset.0, deadline)));
    }
    let messages = ds.into_iter().map(|d| QueueMessage {
        offset: d.offset.0,
        attempt: d.attempt,
        record: d.record,
    });
    Ok((messages_frames(messages, id, budget), pending))
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

impl ConsumerState {
    /// Sends an ack's round without waiting: what the writer's queue has no room for goes to
    /// the backlog that the consumer's own task sends.
    fn push_from_ack(&self, out: &mpsc::Sender<OutFrame>, frames: Vec<OutFrame>) {
        if frames.is_empty() {
            return;
        }
        let mut backlog = self.backlog.lock().unwrap();
        let mut frames = frames.into_iter();
        if backlog.is_empty() {
            for f in frames.by_ref() {
                match out.try_send(f) {
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
            self.wake.notify_one();
        }
    }

    /// Sends the frames ack rounds left to this task; false once the connection is gone.
    async fn send_backlog(&self, out: &mpsc::Sender<OutFrame>) -> bool {
        loop {
            let frames = std::mem::take(&mut *self.backlog.lock().unwrap());
            if frames.is_empty() {
                return true;
            }
            for f in frames {
                if out.send(f).await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// Stops a consumer and returns what it held to its queue at once.
fn release_consumer(c: ConsumerHandle) {
    c.task.abort();
    let state = c.state;
    state.closed.store(true, Ordering::Release);
    state.backlog.lock().unwrap().clear();
    if let Some(q) = state.queue.get().cloned() {
        let ev = state.events.get().cloned();
        spawn_blocking(move || {
            let _gate = state.gate.lock().unwrap();
            q.release(state.cid);
            if let Some(ev) = ev {
                ev.notify_waiters();
            }
        });
    }
}

fn start_at(s: Start) -> StartAt {
    match s {
        Start::Default | Start::Latest => StartAt::Latest,
        Start::Earliest => StartAt::Earliest,
        Start::Offset(o) => StartAt::Offset(Offset(o)),
        Start::Timestamp(t) => StartAt::Timestamp(t),
    }
}

fn push_error(out: &mpsc::Sender<OutFrame>, id: u32, code: ErrorCode, msg: String) {
    let _ = out.try_send(Reply::error(code, msg).encode(id));
}

/// An open subscription: its task's state.
struct SubscriptionTask {
    shared: Arc<Shared>,
    topic: Arc<Topic>,
    id: u32,
    credit: Arc<Credit>,
    out: mpsc::Sender<OutFrame>,
    /// The connection's push budget (`PUSH_BYTES_MAX`).
    budget: Arc<Semaphore>,
    end: StreamEnd,
    /// The named subscriber it holds, if named.
    held: Option<Arc<HeldName>>,
}

impl Drop for SubscriptionTask {
    fn drop(&mut self) {
        if let Some(h) = &self.held {
            h.release();
        }
    }
}

impl SubscriptionTask {
    /// Ends the subscription with an error pushed to the client.
    fn fail(&self, code: ErrorCode, msg: String) {
        self.end.mark();
        push_error(&self.out, self.id, code, msg);
    }

    /// Resolves where the subscription starts and replies `SUBSCRIBED`; `None` when it could
    /// not open (the error is the reply).
    async fn open(&self, name: Option<String>, start: Start, slot: SlotTx) -> Option<Offset> {
        let t = self.topic.clone();
        let setup = blocking(move || {
            Ok(match (name, start) {
                (Some(n), Start::Default) => t.subscribe(&n, StartAt::Latest)?,
                (Some(n), s) => {
                    let at = t.resolve(start_at(s))?;
                    t.subscribe(&n, start_at(s))?;
                    t.commit(&n, at)?;
                    at
                }
                (None, s) => t.resolve(start_at(s))?,
            })
        })
        .await;
        let next = match setup {
            Ok(o) => o,
            Err(f) => {
                self.end.mark();
                fill(slot, self.id, f.reply());
                return None;
            }
        };
        let (wtx, wrx) = oneshot::channel();
        let frame = Reply::Subscribed { value: next.0 }.encode(self.id);
        if slot
            .send(Slot {
                frame,
                written: Some(wtx),
            })
            .is_err()
            || wrx.await.is_err()
        {
            return None;
        }
        Some(next)
    }

    /// Pushes the messages of `batches` from `next`, as many as `have` credits; false once the
    /// connection is gone.
    async fn push_batches(&self, batches: Vec<Batch>, next: &mut Offset, have: &mut u64) -> bool {
        for b in batches {
            if *have == 0 {
                break;
            }
            let f = next.0.max(b.header.base_offset.0);
            let end = b.header.next_offset().0;
            if f >= end {
                continue;
            }
            let to = end.min(f + *have);
            let share = b.bytes.len().clamp(1, PUSH_BYTES_MAX) as u32;
            let Ok(permit) = self.budget.clone().acquire_many_owned(share).await else {
                return false;
            };
            let batch = bytes::Bytes::from_owner(Budgeted {
                bytes: b.bytes,
                _permit: permit,
            });
            let frame = Reply::Deliver { from: f, to, batch }.encode(self.id);
            if self.out.send(frame).await.is_err() {
                return false;
            }
            *have -= to - f;
            self.credit.spend(to - f);
            *next = Offset(to);
        }
        true
    }

    async fn run(self, name: Option<String>, start: Start, slot: SlotTx) {
        let log = self.topic.log().clone();
        let key = format!("t/{}", self.topic.name());
        let mut rx = self
            .shared
            .watch_log(key, Arc::as_ptr(&self.topic) as usize, &log);
        let Some(mut next) = self.open(name, start, slot).await else {
            return;
        };
        loop {
            // Wait for credit, then take all there is.
            let Ok(p) = self.credit.sem.acquire().await else {
                return;
            };
            p.forget();
            let mut have = 1u64;
            let extra = self.credit.sem.available_permits() as u32;
            if extra > 0 {
                if let Ok(p) = self.credit.sem.try_acquire_many(extra) {
                    p.forget();
                    have += extra as u64;
                }
            }
            // Wait for data.
            loop {
                rx.borrow_and_update();
                if log.visible_end() > next {
                    break;
                }
                if log.is_closed() || rx.changed().await.is_err() {
                    let msg = format!("topic {:?} was deleted or closed", self.topic.name());
                    self.fail(ErrorCode::NotFound, msg);
                    return;
                }
            }
            let l = log.clone();
            let from = next;
            match spawn_blocking(move || l.read(from, READ_BYTES)).await {
                Ok(Ok(batches)) => {
                    if !self.push_batches(batches, &mut next, &mut have).await {
                        return;
                    }
                }
                Ok(Err(StoreError::OffsetOutOfRange { start, .. })) if next < start => {
                    // Retention removed what this subscription had not read yet.
                    next = start;
                }
                Ok(Err(e)) => {
                    self.fail(Fail::from(e).0, "read failed; subscription closed".into());
                    return;
                }
                Err(_) => return,
            }
            if have > 0 {
                self.credit.sem.add_permits(have as usize);
            }
        }
    }
}

/// What one pass of a consumer's loop did.
enum Pass {
    /// Delivered messages: look again at once.
    Delivered,
    /// Nothing to deliver: wait for an event.
    Idle,
    /// The connection is gone.
    Stop,
    /// The consumer ends with this error.
    Fail(Fail),
}

async fn run_consumer(
    shared: Arc<Shared>,
    source: Source,
    id: u32,
    state: Arc<ConsumerState>,
    out: mpsc::Sender<OutFrame>,
    slot: SlotTx,
    end: StreamEnd,
) {
    let Some((queue, mut rx, events)) =
        open_consumer(&shared, &source, id, &state, slot, &end).await
    else {
        return;
    };
    let fail = |code: ErrorCode, msg: String| {
        end.mark();
        push_error(&out, id, code, msg);
    };
    let deleted = || format!("{source:?} was deleted");
    loop {
        rx.borrow_and_update();
        let ev = events.notified();
        let own = state.wake.notified();
        tokio::pin!(ev, own);
        ev.as_mut().enable();
        match consumer_pass(&queue, &events, &state, id, &out).await {
            Pass::Delivered => continue,
            Pass::Idle => {}
            Pass::Stop => return,
            // Its queue (or the group's topic) was deleted under the pass.
            Pass::Fail(_) if queue.log().is_closed() => {
                fail(ErrorCode::NotFound, deleted());
                return;
            }
            Pass::Fail(f) => {
                fail(f.0, f.1);
                return;
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() {
                fail(ErrorCode::NotFound, deleted());
                return;
            },
            _ = &mut ev => {}
            _ = &mut own => {}
            _ = sleep(Duration::from_millis(consumer_wait_ms(&queue, &state))) => {}
        }
    }
}

/// Opens the queue or group of a consumer and replies `SUBSCRIBED`: its queue, the append
/// listener of its log and its queue's events. `None` when it could not open (the error is the
/// reply) or the connection is gone.
async fn open_consumer(
    shared: &Arc<Shared>,
    source: &Source,
    id: u32,
    state: &ConsumerState,
    slot: SlotTx,
    end: &StreamEnd,
) -> Option<(Arc<Queue>, watch::Receiver<u64>, Arc<Notify>)> {
    let s = shared.clone();
    let src = source.clone();
    let setup = blocking(move || {
        Ok(match src {
            Source::Queue(q) => {
                let queue = s.store.queue(&q)?;
                let ptr = Arc::as_ptr(&queue) as usize;
                (queue, format!("q/{q}"), ptr, format!("q/{q}"))
            }
            Source::Group { topic, group } => {
                let t = s.store.topic(&topic)?;
                let cfg = QueueConfig {
                    max_unacked_per_consumer: s.limits.unacked_per_consumer_max,
                    ..QueueConfig::default()
                };
                let queue = t.group(&group, cfg)?;
                let ptr = Arc::as_ptr(&t) as usize;
                (
                    queue,
                    format!("t/{topic}"),
                    ptr,
                    format!("g/{topic}/{group}"),
                )
            }
        })
    })
    .await;
    let (queue, log_key, ptr, ev_key) = match setup {
        Ok(x) => x,
        Err(f) => {
            end.mark();
            fill(slot, id, f.reply());
            return None;
        }
    };
    let rx = shared.watch_log(log_key, ptr, queue.log());
    let events = shared.queue_events(&ev_key);
    let _ = state.queue.set(queue.clone());
    let _ = state.events.set(events.clone());
    let (wtx, wrx) = oneshot::channel();
    let frame = Reply::Subscribed {
        value: state.prefetch.load(Ordering::Relaxed) as u64,
    }
    .encode(id);
    let sent = slot.send(Slot {
        frame,
        written: Some(wtx),
    });
    if sent.is_err() || wrx.await.is_err() {
        return None;
    }
    Some((queue, rx, events))
}

/// One pass of a consumer's task: the frames its acks left, expired deadlines, then a delivery
/// round into its free window (within the connection's push budget, waited for).
async fn consumer_pass(
    queue: &Arc<Queue>,
    events: &Notify,
    state: &Arc<ConsumerState>,
    id: u32,
    out: &mpsc::Sender<OutFrame>,
) -> Pass {
    if !state.send_backlog(out).await {
        return Pass::Stop;
    }
    if queue.next_deadline().is_some_and(|d| d <= now_ms()) {
        let q = queue.clone();
        match blocking(move || Ok(q.expire()?)).await {
            Ok(n) if n > 0 => events.notify_waiters(),
            Ok(_) => {}
            Err(f) => return Pass::Fail(f),
        }
    }
    // A cheap look before the blocking call; `deliver_round` decides under the gate.
    if state.window() == 0 {
        return Pass::Idle;
    }
    let Ok(budget) = state
        .budget
        .clone()
        .acquire_many_owned(round_permits())
        .await
    else {
        return Pass::Stop;
    };
    let (q, st) = (queue.clone(), state.clone());
    let delivered = blocking(move || {
        let (frames, pending) = deliver_round(&st, &q, id, budget)?;
        q.commit(pending)?;
        Ok(frames)
    });
    match delivered.await {
        Ok(frames) if frames.is_empty() => Pass::Idle,
        Ok(frames) => {
            for frame in frames {
                if out.send(frame).await.is_err() {
                    return Pass::Stop;
                }
            }
            Pass::Delivered
        }
        Err(f) => Pass::Fail(f),
    }
}

/// How long an idle consumer sleeps: until the queue's next deadline, and also until this
/// consumer's own held entries lapse (they are stamped after `deliver` returns, so they can end
/// a little after the queue's deadline, and waking only at that one would leave the window shut,
/// with no deadline left in the queue, until some other event).
fn consumer_wait_ms(queue: &Queue, state: &ConsumerState) -> u64 {
    let own_next = state.inflight.lock().unwrap().values().min().copied();
    [queue.next_deadline(), own_next]
        .into_iter()
        .flatten()
        .min()
        .map(|d| (d - now_ms()).clamp(1, 3_600_000) as u64)
        .unwrap_or(3_600_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::{Header, Record};

    #[test]
    fn messages_frames_are_split_by_real_size_and_hold_their_budget() {
        let msg = |i: u64, key: usize, headers: usize| QueueMessage {
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

    #[test]
    fn credit_is_capped_counting_what_the_task_holds() {
        let c = Credit::new(150, 100);
        assert_eq!(c.sem.available_permits(), 100);
        // The task takes everything while it waits for messages.
        c.sem.try_acquire_many(100).unwrap().forget();
        c.grant(60, 100);
        assert_eq!(c.sem.available_permits(), 0);
        c.spend(30);
        c.grant(60, 100);
        assert_eq!(c.sem.available_permits(), 30);
        assert_eq!(c.outstanding.load(Ordering::Acquire), 100);
    }
}
