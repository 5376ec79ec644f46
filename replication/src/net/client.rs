//! The calling side: one TCP connection per peer, shared by every Raft group of the node.
//!
//! [`Peers`] knows each peer's address and connects lazily on the first call. Calls on one
//! connection are multiplexed: each gets a request id, and a reader task routes each reply to
//! the waiting call by id, whatever order the peer answers in. A single writer task per
//! connection writes the requests. When a connection breaks, every call waiting on it fails
//! with [`NetError::ConnectionClosed`] and the next call reconnects; a failed connection
//! attempt (or a peer whose greeting shows it is not the node meant, see
//! [`greeting`](super::greeting)) makes calls fail fast with [`NetError::Backoff`] until the next attempt is due
//! (backoff doubling from [`RECONNECT_BACKOFF_MIN`] to [`RECONNECT_BACKOFF_MAX`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::frame::{self, FrameError, Kind};
use super::greeting::{self, Greeting, Identity};
use super::message::{self, Reply, Request};
use super::tls::{self, PeerRead, PeerTls, PeerWrite};
use super::NetError;
use crate::types::NodeId;

/// Longest wait for a TCP connection to a peer (a call's own timeout may cut it shorter).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Wait after a first failed connection attempt before the next one.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Longest wait between connection attempts to a peer that stays down.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long a peer's connection attempts must have failed, with no connection from it
/// meanwhile, before it counts as unreachable ([`Peers::unreachable`]): long enough for the
/// nodes of a cluster starting together to reach one another.
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(3);

/// Requests queued for a connection's writer before callers wait.
const OUTGOING_QUEUE_MAX: usize = 1024;

/// What a waiting call receives.
type Waiter = oneshot::Sender<Result<Reply, NetError>>;

/// The node's connections to its peers (one per node, shared by all its Raft groups).
pub struct Peers {
    me: Identity,
    tls: Option<Arc<PeerTls>>,
    peers: RwLock<HashMap<NodeId, Arc<Peer>>>,
    beats: super::heartbeats::Heartbeats,
}

impl Peers {
    /// No peers known yet; `me` is the node these connections start from. With `tls`, every
    /// connection is made through TLS ([`tls`](super::tls)).
    pub fn new(me: Identity, tls: Option<Arc<PeerTls>>) -> Peers {
        Peers {
            me,
            tls,
            peers: RwLock::new(HashMap::new()),
            beats: Default::default(),
        }
    }

    pub(super) fn beats(&self) -> &super::heartbeats::Heartbeats {
        &self.beats
    }

    /// The id of the node these connections start from.
    pub fn self_id(&self) -> NodeId {
        self.me.node
    }

    /// Sets a peer's address (`host:port` of its cluster listener). A new address replaces
    /// the peer's connection: calls already on the old one finish there, the next call
    /// connects to the new address.
    pub fn set_addr(&self, id: NodeId, addr: String) {
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        if peers.get(&id).is_some_and(|p| p.addr == addr) {
            return;
        }
        tracing::debug!(peer = id, %addr, "peer address set");
        let tls = self.tls.clone();
        peers.insert(id, Arc::new(Peer::new(self.me, id, addr, tls)));
    }

    /// The address known for a peer.
    pub fn addr(&self, id: NodeId) -> Option<String> {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        peers.get(&id).map(|p| p.addr.clone())
    }

    /// Every peer whose address is known.
    pub fn ids(&self) -> Vec<NodeId> {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        peers.keys().copied().collect()
    }

    /// The peers whose connection attempts have failed for at least [`UNREACHABLE_AFTER`],
    /// with no connection from them meanwhile (down, or cut off from this node), as far as
    /// this node can tell: a peer is tried at least at every hello, so one that stops is in
    /// the list within about [`crate::node::HELLO_REFRESH`] and [`UNREACHABLE_AFTER`], and
    /// one that comes back leaves it at its next connection, either way
    /// ([`Peers::heard_from`]).
    pub fn unreachable(&self) -> Vec<NodeId> {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        let mut down: Vec<NodeId> = peers
            .values()
            .filter(|p| p.unreachable())
            .map(|p| p.id)
            .collect();
        down.sort_unstable();
        down
    }

    /// Records that peer `id` connected to this node (its greeting was taken): it is up, and
    /// leaves [`Peers::unreachable`] even while this node's own next attempt to reach it is
    /// not due yet (at a start, nodes try their peers before those listen); that attempt is
    /// due at once (a peer that restarted hears from this node without waiting out a backoff).
    pub fn heard_from(&self, id: NodeId) {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = peers.get(&id) {
            p.connected_from();
        }
    }

    /// Forgets a peer and closes its connection once calls in flight on it are done.
    pub fn remove(&self, id: NodeId) {
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        peers.remove(&id);
    }

    /// Sends `req` to node `target` and waits for its reply, at most `timeout` (connecting
    /// included).
    pub async fn call(
        &self,
        target: NodeId,
        req: Request,
        timeout: Duration,
    ) -> Result<Reply, NetError> {
        let peer = {
            let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
            peers.get(&target).cloned()
        };
        let peer = peer.ok_or(NetError::UnknownPeer(target))?;
        let exchange = async {
            let conn = peer.connection().await?;
            conn.request(&req).await
        };
        let reply = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| NetError::Timeout {
                peer: target,
                after: timeout,
            })??;
        match (&req, &reply) {
            (_, Reply::UnknownGroup(_))
            | (Request::AppendEntries { .. }, Reply::AppendEntries(_))
            | (Request::Vote { .. }, Reply::Vote(_))
            | (Request::InstallSnapshot { .. }, Reply::InstallSnapshot(_))
            | (Request::Propose { .. }, Reply::Proposed(_))
            | (Request::Hello { .. }, Reply::Hello { .. })
            | (Request::Members { .. }, Reply::Members(_))
            | (Request::Leaders { .. }, Reply::Leaders)
            | (Request::Heartbeats { .. }, Reply::Heartbeats(_))
            | (Request::LeadNext { .. }, Reply::LeadNext(_))
            | (Request::Call { .. }, Reply::Called(_))
            | (Request::Quiet { .. }, Reply::Quiet(_)) => Ok(reply),
            _ => Err(NetError::MismatchedReply {
                request: req.name(),
                reply: reply.name(),
            }),
        }
    }
}

/// One peer: its address and its connection, if up.
struct Peer {
    me: Identity,
    id: NodeId,
    addr: String,
    tls: Option<Arc<PeerTls>>,
    slot: tokio::sync::Mutex<Slot>,
    /// Since when connection attempts have failed, with no connection either way since
    /// ([`Peers::unreachable`]).
    failing_since: Mutex<Option<Instant>>,
}

/// A peer's connection and the state of reconnecting to it.
#[derive(Default)]
struct Slot {
    conn: Option<Arc<Connection>>,
    /// Connection attempts failed in a row.
    failures: u32,
    /// When the next attempt is due after a failure.
    retry_at: Option<Instant>,
}

impl Peer {
    fn new(me: Identity, id: NodeId, addr: String, tls: Option<Arc<PeerTls>>) -> Peer {
        Peer {
            me,
            id,
            addr,
            tls,
            slot: tokio::sync::Mutex::new(Slot::default()),
            failing_since: Mutex::new(None),
        }
    }

    fn failing_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.failing_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection to or from the peer was made.
    fn reached(&self) {
        *self.failing_since() = None;
    }

    /// The peer connected to this node: it is up, so the next call connects at once rather
    /// than waiting out the backoff of attempts that failed while it was down (unless an
    /// attempt is under way, which then most likely succeeds).
    fn connected_from(&self) {
        self.reached();
        if let Ok(mut slot) = self.slot.try_lock() {
            slot.retry_at = None;
        }
    }

    /// Whether attempts have failed for [`UNREACHABLE_AFTER`] with no connection since.
    fn unreachable(&self) -> bool {
        self.failing_since()
            .is_some_and(|since| since.elapsed() >= UNREACHABLE_AFTER)
    }

    /// The live connection, connecting if there is none and no backoff is running. Callers
    /// wait for one another here, so a peer has one connection at a time.
    async fn connection(&self) -> Result<Arc<Connection>, NetError> {
        let mut slot = self.slot.lock().await;
        if let Some(conn) = slot.conn.as_ref().filter(|c| !c.shared.is_closed()) {
            return Ok(Arc::clone(conn));
        }
        slot.conn = None;
        let now = Instant::now();
        if let Some(at) = slot.retry_at.filter(|at| *at > now) {
            return Err(NetError::Backoff {
                peer: self.id,
                retry_in: at - now,
            });
        }
        match self.connect().await {
            Ok(conn) => {
                tracing::debug!(peer = self.id, addr = %self.addr, "connected to peer");
                slot.failures = 0;
                slot.retry_at = None;
                self.reached();
                slot.conn = Some(Arc::clone(&conn));
                Ok(conn)
            }
            Err(e) => {
                slot.failures = slot.failures.saturating_add(1);
                self.failing_since().get_or_insert_with(Instant::now);
                let wait = backoff(slot.failures);
                slot.retry_at = Some(Instant::now() + wait);
                if slot.failures == 1 {
                    tracing::warn!(peer = self.id, error = %e, "peer unreachable");
                } else {
                    tracing::debug!(peer = self.id, error = %e, ?wait, "peer still unreachable");
                }
                Err(e)
            }
        }
    }

    async fn connect(&self) -> Result<Arc<Connection>, NetError> {
        let failed = |source| NetError::Connect {
            peer: self.id,
            addr: self.addr.clone(),
            source,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| failed(std::io::ErrorKind::TimedOut.into()))?
            .map_err(failed)?;
        stream.set_nodelay(true).map_err(failed)?;
        let (read, mut write) = tls::connected(stream, &self.addr, self.tls.as_deref())
            .await
            .map_err(failed)?;
        let mut read = BufReader::new(read);
        let ours = Greeting {
            cluster: self.me.cluster,
            from: self.me.node,
            to: self.id,
        };
        greeting::send(&mut write, &ours).await?;
        let theirs = greeting::receive(&mut read, self.id).await?;
        theirs
            .check(self.me, Some(self.id))
            .map_err(|source| NetError::Greeting {
                peer: self.id,
                source,
            })?;
        Ok(Arc::new(Connection::start(self.id, read, write)))
    }
}

/// The wait before attempt `failures + 1`: doubling from the minimum, capped.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RECONNECT_BACKOFF_MIN
        .saturating_mul(1 << doublings)
        .min(RECONNECT_BACKOFF_MAX)
}

/// One TCP connection to a peer, with its reader and writer tasks (stopped when it is
/// dropped).
struct Connection {
    shared: Arc<Shared>,
    outgoing: mpsc::Sender<Vec<u8>>,
    next_id: AtomicU64,
    tasks: [AbortHandle; 2],
}

/// What the connection's tasks and its callers share: the calls waiting for replies.
struct Shared {
    peer: NodeId,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, Waiter>,
    closed: bool,
}

impl Connection {
    fn start(peer: NodeId, read: BufReader<PeerRead>, write: PeerWrite) -> Connection {
        let shared = Arc::new(Shared {
            peer,
            pending: Mutex::new(Pending::default()),
        });
        let (outgoing, queue) = mpsc::channel(OUTGOING_QUEUE_MAX);
        let reader = tokio::spawn(read_replies(read, Arc::clone(&shared)));
        let writer = tokio::spawn(write_requests(write, queue, Arc::clone(&shared)));
        Connection {
            shared,
            outgoing,
            next_id: AtomicU64::new(1),
            tasks: [reader.abort_handle(), writer.abort_handle()],
        }
    }

    /// Sends one request and waits for its reply.
    async fn request(&self, req: &Request) -> Result<Reply, NetError> {
        let closed = NetError::ConnectionClosed(self.shared.peer);
        let payload = message::encode(req)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = frame::encode(Kind::Request, id, &payload)?;
        let (tx, rx) = oneshot::channel();
        self.shared.register(id, tx)?;
        // Forgets the waiter if this call is dropped (timeout) before its reply arrives.
        let _waiting = WaiterGuard {
            shared: &self.shared,
            id,
        };
        self.outgoing.send(bytes).await.map_err(|_| closed)?;
        rx.await
            .unwrap_or(Err(NetError::ConnectionClosed(self.shared.peer)))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.close();
    }
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_closed(&self) -> bool {
        self.pending().closed
    }

    fn register(&self, id: u64, waiter: Waiter) -> Result<(), NetError> {
        let mut pending = self.pending();
        if pending.closed {
            return Err(NetError::ConnectionClosed(self.peer));
        }
        pending.waiters.insert(id, waiter);
        Ok(())
    }

    /// Marks the connection closed and fails every call waiting on it.
    fn close(&self) {
        let waiters = {
            let mut pending = self.pending();
            pending.closed = true;
            std::mem::take(&mut pending.waiters)
        };
        for (_, waiter) in waiters {
            let _ = waiter.send(Err(NetError::ConnectionClosed(self.peer)));
        }
    }

    fn deliver(&self, id: u64, reply: Reply) {
        let waiter = self.pending().waiters.remove(&id);
        match waiter {
            // The caller may have just given up: nothing to do then.
            Some(waiter) => {
                let _ = waiter.send(Ok(reply));
            }
            None => tracing::debug!(peer = self.peer, id, "reply for a call no longer waiting"),
        }
    }
}

/// Removes a call's waiter when the call ends, answered or not.
struct WaiterGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending().waiters.remove(&self.id);
    }
}

/// The connection's reader: routes each reply to its call; on any failure closes the
/// connection.
async fn read_replies(mut read: BufReader<PeerRead>, shared: Arc<Shared>) {
    let result = loop {
        let frame = match frame::read_frame(&mut read).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(e) => break Err(NetError::from(e)),
        };
        if frame.kind != Kind::Reply {
            break Err(NetError::UnexpectedFrame(frame.kind));
        }
        match message::decode::<Reply>(&frame.payload) {
            Ok(reply) => shared.deliver(frame.request_id, reply),
            Err(e) => break Err(e),
        }
    };
    match result {
        Ok(()) => tracing::debug!(peer = shared.peer, "peer closed the connection"),
        Err(e) => tracing::warn!(peer = shared.peer, error = %e, "closing peer connection"),
    }
    shared.close();
}

/// The connection's writer: writes request frames, flushing when none is waiting.
async fn write_requests(write: PeerWrite, mut queue: mpsc::Receiver<Vec<u8>>, shared: Arc<Shared>) {
    let mut write = BufWriter::new(write);
    while let Some(bytes) = queue.recv().await {
        if let Err(e) = write_batch(&mut write, bytes, &mut queue).await {
            tracing::warn!(peer = shared.peer, error = %e, "cannot write to peer");
            break;
        }
    }
    shared.close();
}

async fn write_batch(
    write: &mut BufWriter<PeerWrite>,
    first: Vec<u8>,
    queue: &mut mpsc::Receiver<Vec<u8>>,
) -> Result<(), FrameError> {
    write.write_all(&first).await?;
    while let Ok(more) = queue.try_recv() {
        write.write_all(&more).await?;
    }
    write.flush().await?;
    Ok(())
}
