//! The Kafka listener's accept loop: each connection gets a task under the server's connection
//! semaphore (`connections_max`, shared with the native listener). One more is closed at once,
//! with the reason logged: the Kafka protocol has no message a broker sends unasked.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, Semaphore};
use tracing::{warn, Instrument};

use super::connection::handle_connection;
use super::KafkaContext;
use crate::server::listener::{client_stream, next_connection};

/// Accepts connections forever.
pub(super) async fn accept(
    listener: &TcpListener,
    context: &Arc<KafkaContext>,
    permits: &Arc<Semaphore>,
    shutdown: &broadcast::Sender<()>,
    done: &mpsc::Sender<()>,
) {
    loop {
        let (sock, peer) = next_connection(listener, "kafka").await;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let limit = context.broker.limits().connections_max;
            context
                .broker
                .metrics()
                .connection_refused(crate::metrics::Protocol::Kafka);
            warn!(%peer, limit, "kafka connection refused: connections_max reached");
            drop(sock);
            continue;
        };
        let context = context.clone();
        let shutdown_rx = shutdown.subscribe();
        let done = done.clone();
        tokio::spawn(async move {
            let _done = done;
            let _permit = permit;
            let span = crate::server::connection_span("kafka", peer);
            async move {
                let tls = context.tls.as_deref();
                let proto = crate::metrics::Protocol::Kafka;
                let Some(s) = client_stream(sock, peer, tls, &context.broker, proto).await else {
                    return;
                };
                handle_connection(context, s, peer, shutdown_rx).await;
            }
            .instrument(span)
            .await;
        });
    }
}
