//! The receiving side: accepts peer connections and hands their requests to the node's Raft
//! groups.
//!
//! [`serve`] runs one task per accepted connection (at most [`PEER_CONNECTIONS_MAX`]). A
//! connection starts with the two sides' greetings (see [`greeting`](super::greeting)); one
//! from another cluster, or addressed to another node, closes it. A
//! connection's reader decodes requests and spawns one task per request, so a slow snapshot
//! chunk of one group does not hold up the heartbeats of the others; at most
//! [`INFLIGHT_PER_CONNECTION_MAX`] requests run at once, beyond which the reader stops reading
//! (TCP backpressure, nothing dropped). Replies go to the connection's single writer task,
//! which writes them in completion order. A frame or payload that fails its checks closes the
//! connection; the peer reconnects.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::frame::{self, Kind};
use super::greeting::{self, Greeting, Identity};
use super::message::{self, Reply, Request};
use super::tls::{self, PeerRead, PeerTls, PeerWrite};
use super::NetError;
use crate::types::NodeId;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// Most peer connections served at once; a connection beyond it is closed at once (the peer
/// retries with backoff). A node has one connection per peer, so this bounds the cluster size
/// as seen from one node, with room for reconnects that overlap old connections.
pub const PEER_CONNECTIONS_MAX: usize = 256;

/// Most requests of one connection handled at once; beyond it the connection's reader waits
/// for one to finish before reading the next frame.
pub const INFLIGHT_PER_CONNECTION_MAX: usize = 1024;

/// Pause after a failed `accept` (such as too many open files) before the next one.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The node's Raft groups, as the server sees them: answers one request.
///
/// The node implements it by looking up the request's group and calling
/// `raft.append_entries(rpc)`, `raft.vote(rpc)` or `raft.install_snapshot(rpc)` on its
/// `openraft::Raft`, answering [`Reply::UnknownGroup`] for a group it does not host.
pub trait RaftHandler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, req: Request) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>>;

    /// The cluster address (`HOST:PORT`) of node `id`, when known: with TLS, a caller
    /// greeting as `id` must present a certificate naming its `HOST`. `None` (a node not yet
    /// known, such as one joining): the CA's signature suffices.
    fn peer_addr(&self, _id: NodeId) -> Option<String> {
        None
    }

    /// Node `id` connected to this node: its greeting was taken (so it is up).
    fn greeted(&self, _id: NodeId) {}

    /// A request of node `id` arrived (so it is up, as of now).
    fn heard(&self, _id: NodeId) {}
}

/// Serves peer connections from `listener` until `shutdown` turns true (or its sender is
/// dropped); then stops accepting, closes every connection and returns. With `tls`, every
/// connection goes through a TLS handshake that authenticates the caller first
/// ([`tls`](super::tls)).
pub async fn serve(
    listener: TcpListener,
    me: Identity,
    tls: Option<Arc<PeerTls>>,
    handler: Arc<dyn RaftHandler>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(PEER_CONNECTIONS_MAX));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        if *shutdown.borrow_and_update() {
            break;
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cluster listener: accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%addr, limit = PEER_CONNECTIONS_MAX, "too many peer connections; closing");
            continue;
        };
        let handler = Arc::clone(&handler);
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let _permit = permit;
            tracing::debug!(%addr, "peer connected");
            match connection(stream, me, tls.as_deref(), handler, shutdown).await {
                Ok(()) => tracing::debug!(%addr, "peer connection closed"),
                Err(e) => tracing::warn!(%addr, error = %e, "closing peer connection"),
            }
        });
    }
    connections.shutdown().await;
}

/// Serves one connection until the peer closes it, it fails, or shutdown.
async fn connection(
    stream: TcpStream,
    me: Identity,
    tls: Option<&PeerTls>,
    handler: Arc<dyn RaftHandler>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), NetError> {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let (read, mut write, cert) = tls::accepted(stream, tls)
        .await
        .map_err(|e| NetError::Frame(e.into()))?;
    let mut read = BufReader::new(read);
    let peer = greet(&mut read, &mut write, me, cert.as_ref(), handler.as_ref()).await?;
    handler.greeted(peer);
    let (replies, queue) = mpsc::channel(INFLIGHT_PER_CONNECTION_MAX);
    let mut writer = tokio::spawn(write_replies(write, queue));
    let mut requests = JoinSet::new();
    let result = tokio::select! {
        r = read_requests(read, peer, handler, replies, &mut requests) => r,
        w = &mut writer => match w {
            Ok(r) => r,
            Err(e) => Err(NetError::Frame(std::io::Error::other(e).into())),
        },
        _ = shutdown.wait_for(|stop| *stop) => Ok(()),
    };
    requests.shutdown().await;
    writer.abort();
    result
}

/// Reads the caller's greeting and answers with this node's; fails (and the connection
/// closes) unless the caller is of this cluster and addressed this node, and, with TLS, its
/// certificate (`cert`) names the host of the node it greets as (before any answer). Answers
/// the caller's node id.
async fn greet(
    read: &mut BufReader<PeerRead>,
    write: &mut PeerWrite,
    me: Identity,
    cert: Option<&CertificateDer<'static>>,
    handler: &dyn RaftHandler,
) -> Result<NodeId, NetError> {
    // The caller's id is not known before its greeting: 0 names it in errors until then.
    let theirs = greeting::receive(read, 0).await?;
    if let Some((cert, addr)) = cert.zip(handler.peer_addr(theirs.from)) {
        tls::check_name(cert, &addr).map_err(|reason| NetError::PeerCertificate {
            peer: theirs.from,
            addr,
            reason,
        })?;
    }
    let ours = Greeting {
        cluster: me.cluster,
        from: me.node,
        to: theirs.from,
    };
    greeting::send(write, &ours).await?;
    theirs
        .check(me, None)
        .map_err(|source| NetError::Greeting {
            peer: theirs.from,
            source,
        })?;
    Ok(theirs.from)
}

/// Reads requests of node `peer` and spawns a task for each; returns when the peer closes
/// the connection or sends something that is not a request of its own.
async fn read_requests(
    mut read: BufReader<PeerRead>,
    peer: NodeId,
    handler: Arc<dyn RaftHandler>,
    replies: mpsc::Sender<Vec<u8>>,
    requests: &mut JoinSet<()>,
) -> Result<(), NetError> {
    let inflight = Arc::new(Semaphore::new(INFLIGHT_PER_CONNECTION_MAX));
    loop {
        while let Some(done) = requests.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "peer request task failed");
            }
        }
        let Some(frame) = frame::read_frame(&mut read).await? else {
            return Ok(());
        };
        if frame.kind != Kind::Request {
            return Err(NetError::UnexpectedFrame(frame.kind));
        }
        let request: Request = message::decode(&frame.payload)?;
        if !request.speaks_for(peer) {
            return Err(NetError::NotItsOwn {
                peer,
                request: request.name(),
            });
        }
        handler.heard(peer);
        // Waits while the connection has its most requests in flight: backpressure.
        let Ok(permit) = Arc::clone(&inflight).acquire_owned().await else {
            return Ok(()); // never closed
        };
        let handler = Arc::clone(&handler);
        let replies = replies.clone();
        let id = frame.request_id;
        requests.spawn(async move {
            let _permit = permit;
            let name = request.name();
            let reply = handler.handle(request).await;
            match reply_frame(id, &reply) {
                Ok(bytes) => {
                    // The writer is gone only when the connection is closing.
                    let _ = replies.send(bytes).await;
                }
                Err(e) => tracing::error!(request = name, error = %e, "cannot encode reply"),
            }
        });
    }
}

fn reply_frame(id: u64, reply: &Reply) -> Result<Vec<u8>, NetError> {
    let payload = message::encode(reply)?;
    Ok(frame::encode(Kind::Reply, id, &payload)?)
}

/// The connection's writer: writes encoded reply frames, flushing when none is waiting.
async fn write_replies(
    write: PeerWrite,
    mut queue: mpsc::Receiver<Vec<u8>>,
) -> Result<(), NetError> {
    let mut write = BufWriter::new(write);
    while let Some(bytes) = queue.recv().await {
        write
            .write_all(&bytes)
            .await
            .map_err(frame::FrameError::Io)?;
        while let Ok(more) = queue.try_recv() {
            write
                .write_all(&more)
                .await
                .map_err(frame::FrameError::Io)?;
        }
        write.flush().await.map_err(frame::FrameError::Io)?;
    }
    Ok(())
}
