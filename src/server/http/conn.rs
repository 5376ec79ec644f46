//! Accepted HTTP connections under the server's connection limit: a connection past the limit is
//! closed at once (as the native listener refuses one), and each open one is counted.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::broker::Broker;
use crate::metrics::{ConnectionGauge, Metrics, Protocol};

/// The listener axum accepts from.
pub(super) struct Limited {
    inner: TcpListener,
    broker: Arc<Broker>,
    permits: Arc<Semaphore>,
}

impl Limited {
    pub(super) fn new(inner: TcpListener, broker: Arc<Broker>, permits: Arc<Semaphore>) -> Self {
        Limited {
            inner,
            broker,
            permits,
        }
    }
}

/// An accepted connection holding its permit; counted open until dropped.
pub(super) struct Conn {
    stream: TcpStream,
    metrics: Arc<Metrics>,
    _open: ConnectionGauge,
    _permit: OwnedSemaphorePermit,
}

impl axum::serve::Listener for Limited {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            let (stream, peer) = match self.inner.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and the like: wait a moment instead of spinning.
                    tracing::warn!("http accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                self.broker.metrics().connection_refused(Protocol::Http);
                tracing::warn!(%peer, "http connection refused: connections_max reached");
                drop(stream);
                continue;
            };
            let metrics = self.broker.metrics().clone();
            let conn = Conn {
                stream,
                _open: metrics.connection(Protocol::Http),
                metrics,
                _permit: permit,
            };
            return (conn, peer);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
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
