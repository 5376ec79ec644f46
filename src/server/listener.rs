//! The native accept loop: each connection gets a task under the connection semaphore
//! (`connections_max`, shared with the Kafka listener); one more is refused with an error frame.

use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio::time::sleep;
use tracing::{warn, Instrument};

use super::native;
use crate::broker::Broker;
use crate::metrics::Protocol;
use crate::protocol::ErrorCode;
use crate::server::tls::{ClientStream, Tls};

/// Accepts connections forever. Each connection task holds a clone of `done` (so shutdown can
/// wait for them all) and listens to `shutdown`.
pub(super) async fn accept(
    listener: &TcpListener,
    broker: &Arc<Broker>,
    permits: &Arc<Semaphore>,
    shutdown: &broadcast::Sender<()>,
    done: &mpsc::Sender<()>,
    tls: Option<&Arc<Tls>>,
) {
    loop {
        let (sock, peer) = next_connection(listener, "native").await;
        let tls = tls.cloned();
        let permit = permits.clone().try_acquire_owned();
        let broker = broker.clone();
        let shutdown_rx = shutdown.subscribe();
        let done = done.clone();
        tokio::spawn(async move {
            let _done = done;
            match permit {
                Ok(_permit) => {
                    let span = super::connection_span("native", peer);
                    async move {
                        let proto = Protocol::Native;
                        let Some(s) =
                            client_stream(sock, peer, tls.as_deref(), &broker, proto).await
                        else {
                            return;
                        };
                        native::handle_connection(broker, s, peer, shutdown_rx).await
                    }
                    .instrument(span)
                    .await
                }
                Err(_) => {
                    let limit = broker.limits().connections_max;
                    broker
                        .metrics()
                        .connection_refused(crate::metrics::Protocol::Native);
                    warn!(%peer, limit, "connection refused: connections_max reached");
                    native::reject(sock, ErrorCode::LimitReached, "connections_max reached").await;
                }
            }
        });
    }
}

/// The accepted `sock` as a client stream, through the TLS handshake when `tls` is set (within
/// `handshake_timeout_ms`). A failed handshake (plain text to a TLS port, a certificate the
/// client CA did not sign, a timeout) is logged and counted, and the socket closed.
pub(crate) async fn client_stream(
    sock: TcpStream,
    peer: SocketAddr,
    tls: Option<&Tls>,
    broker: &Broker,
    protocol: Protocol,
) -> Option<ClientStream> {
    let handshake = Duration::from_millis(broker.limits().handshake_timeout_ms);
    match ClientStream::accept(sock, tls, handshake).await {
        Ok(s) => Some(s),
        Err(e) => {
            broker.metrics().tls_failed(protocol);
            warn!(%peer, "TLS handshake failed: {e}");
            None
        }
    }
}

/// The next connection `listener` accepts (`what` names the listener in logs). A failed accept
/// (out of file descriptors, a connection reset before it was taken) is logged and retried
/// after a pause, so a burst of failures never spins the loop.
pub(crate) async fn next_connection(listener: &TcpListener, what: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(x) => return x,
            Err(e) => {
                warn!("{what} accept failed: {e}");
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
