//! Accepted HTTP connections under the server's connection limit: a connection past the limit is
//! closed at once (as the native listener refuses one), and each open one is counted.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::broker::Broker;
use crate::metrics::{ConnectionGauge, Metrics, Protocol};
use crate::server::tls::{ClientStream, Tls};

/// The listener axum accepts from: connections whose TLS handshake (when TLS is on) completed,
/// from the task [`Limited::new`] starts, so a slow handshake never holds up the others.
pub(super) struct Limited {
    ready: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for Limited {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Connections handshaking or handshaken and not yet taken by axum.
const READY_MAX: usize = 64;

impl Limited {
    pub(super) fn new(
        inner: TcpListener,
        broker: Arc<Broker>,
        permits: Arc<Semaphore>,
        tls: Option<Arc<Tls>>,
    ) -> io::Result<Self> {
        let local = inner.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_MAX);
        let accepting = tokio::spawn(accept_loop(inner, broker, permits, tls, tx));
        Ok(Limited {
            ready,
            local,
            accepting,
        })
    }
}

async fn accept_loop(
    inner: TcpListener,
    broker: Arc<Broker>,
    permits: Arc<Semaphore>,
    tls: Option<Arc<Tls>>,
    ready: mpsc::Sender<(Conn, SocketAddr)>,
) {
    loop {
        let (stream, peer) = crate::server::listener::next_connection(&inner, "http").await;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            broker.metrics().connection_refused(Protocol::Http);
            tracing::warn!(%peer, "http connection refused: connections_max reached");
            drop(stream);
            continue;
        };
        let (broker, tls, ready) = (broker.clone(), tls.clone(), ready.clone());
        tokio::spawn(async move {
            let proto = Protocol::Http;
            let tls = tls.as_deref();
            let client_stream = crate::server::listener::client_stream;
            let Some(stream) = client_stream(stream, peer, tls, &broker, proto).await else {
                return;
            };
            let metrics = broker.metrics().clone();
            let conn = Conn {
                stream,
                _open: metrics.connection(Protocol::Http),
                metrics,
                _permit: permit,
            };
            let _ = ready.send((conn, peer)).await;
        });
    }
}

/// An accepted connection holding its permit; counted open until dropped.
pub(super) struct Conn {
    stream: ClientStream,
    metrics: Arc<Metrics>,
    _open: ConnectionGauge,
    _permit: OwnedSemaphorePermit,
}

impl axum::serve::Listener for Limited {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task ended (it never does while the listener lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.metrics.received(Protocol::Http, n);
        r
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.metrics.sent(Protocol::Http, *n);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
