//! The broker server: binds, holds the data directory, serves the native protocol (`native/`)
//! and the Kafka protocol (`kafka/`) over the broker core ([`crate::broker`]), applies
//! retention, and shuts down gracefully.
//!
//! # Layout
//! - `mod.rs`: [`Server`] (bind, run, the shutdown broadcast) and [`ServerError`].
//! - `listener`: the native accept loop under the connection semaphore.
//! - `native/`: the native protocol frontend (connection, dispatch, one file per request
//!   family).
//! - `http/`: the HTTP listener (`GET /metrics`, the admin API, the console) on axum.
//! - `tls`: TLS of every listener (rustls; reloaded on SIGHUP) and the accepted stream type.
//! - `kafka/`: the Kafka protocol frontend (listener, connection, codec, dispatch, one file per
//!   request family; `docs/kafka.md`), with its consumer group coordinator (`kafka::group`).

pub mod http;
pub mod kafka;
pub(crate) mod listener;
mod native;
pub mod rlimit;
pub mod tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::spawn_blocking;
use sluice_storage::{Error as StoreError, OpenSettings, StdFs, Store, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio::time::timeout;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::{Config, ConfigError};
use crate::security;

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
    /// The TLS files could not be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The security file could not be read.
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
    /// The cluster node could not start.
    #[error("cluster: {0}")]
    Cluster(String),
    /// A blocking store task panicked.
    #[error("store task failed: {0}")]
    Task(String),
}

/// The broker: bound and holding its data directory, not yet serving.
pub struct Server {
    listener: TcpListener,
    kafka: Option<kafka::KafkaListener>,
    http: Option<http::HttpListener>,
    broker: Arc<Broker>,
    dir: PathBuf,
    retention_check: Duration,
    tls: Option<Arc<tls::Tls>>,
    /// In cluster mode: the node, and what stops its cluster listener.
    cluster: Option<(
        Arc<crate::cluster::Cluster>,
        tokio::sync::watch::Sender<bool>,
    )>,
}

impl Server {
    /// Validates the configuration, opens (recovering) the store, which locks the data
    /// directory, and binds the listen address.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        config.validate()?;
        let tls = config.tls_files()?.map(tls::Tls::load).transpose()?;
        let dir = config.data_dir.clone();
        let anonymous_remote = config.allow_anonymous || config.tls_client_ca.is_some();
        let security = security::Security::open(Arc::new(StdFs), &dir, anonymous_remote)?;
        config.check_exposure(security.enabled())?;
        if security.enabled() {
            info!(
                users = security.users().len(),
                "users exist: every client authenticates"
            );
        }
        for (key, addr) in config.exposed_listeners() {
            if config.allow_anonymous && config.tls_client_ca.is_none() && !security.enabled() {
                warn!(
                    listener = key,
                    %addr,
                    "ANONYMOUS ACCESS: --allow-anonymous serves clients that do not \
                     authenticate on an address beyond this host; anyone who reaches it can \
                     read, write and delete every topic and queue"
                );
            }
        }
        rlimit::raise_open_file_limit();
        let store_config = StoreConfig {
            default_log: config.log.clone(),
            open: OpenSettings {
                files_max: config.open_files_max,
                idle_close_ms: config.idle_close_ms,
                recover_in_background: true,
            },
            sync_per_file: config.sync_per_file,
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
        let broker = Arc::new(
            Broker::new(Arc::new(store), config.limits.clone(), config.log.clone())
                .with_security(Arc::new(security)),
        );
        let kafka = bind_kafka(&config, &broker, tls.clone()).await?;
        let cluster = match &config.cluster {
            Some(c) => {
                let info = node_info(&config, &listener, kafka.as_ref())?;
                let (stop, rx) = tokio::sync::watch::channel(false);
                let node = crate::cluster::Cluster::start(c.clone(), &broker, &dir, info, rx)
                    .await
                    .map_err(ServerError::Cluster)?;
                Some((node, stop))
            }
            None => None,
        };
        let http = match config.http_listen_addr()? {
            Some(addr) => Some(
                http::HttpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })?,
            ),
            None => None,
        };
        Ok(Server {
            listener,
            kafka,
            http,
            broker,
            dir,
            retention_check,
            tls,
            cluster,
        })
    }

    /// The bound address (with the real port when the configuration asked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound address of the Kafka listener; `None` when it is off.
    pub fn kafka_local_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.kafka.as_ref().map(|k| k.local_addr())
    }

    /// The bound address of the HTTP listener; `None` when it is off.
    pub fn http_local_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.http.as_ref().map(|h| h.local_addr())
    }

    /// Serves until `shutdown` completes, then stops accepting, lets connections finish their
    /// in-flight requests (up to `shutdown_timeout_ms`), closes the store (sync and clean-shutdown
    /// markers) and releases the lock.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server {
            listener,
            kafka,
            http,
            broker,
            dir,
            retention_check,
            tls,
            cluster,
        } = self;
        let retention = tokio::spawn(broker.clone().run_retention(retention_check));
        let reload = tls.clone().map(|t| {
            info!("TLS on every listener; SIGHUP reloads the certificate and key");
            tokio::spawn(t.reload_on_sighup())
        });
        let (notify_shutdown, _) = broadcast::channel::<()>(1);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        // One connection limit for both protocols.
        let permits = Arc::new(Semaphore::new(broker.limits().connections_max));
        let kafka = kafka.map(|k| {
            tokio::spawn(k.serve(permits.clone(), notify_shutdown.clone(), done_tx.clone()))
        });
        let http = http.map(|h| {
            let (b, p, s) = (broker.clone(), permits.clone(), notify_shutdown.clone());
            tokio::spawn(h.serve(b, p, s, tls.clone()))
        });
        tokio::select! {
            _ = listener::accept(&listener, &broker, &permits, &notify_shutdown, &done_tx, tls.as_ref()) => {}
            _ = shutdown => info!("shutdown requested: no longer accepting connections"),
        }
        drop(listener);
        if let Some(k) = kafka {
            k.abort();
            let _ = k.await;
        }
        if let Some(h) = http {
            h.abort();
            let _ = h.await;
        }
        retention.abort();
        if let Some(r) = reload {
            r.abort();
        }
        drop(notify_shutdown);
        drop(done_tx);
        let grace = Duration::from_millis(broker.limits().shutdown_timeout_ms);
        if timeout(grace, done_rx.recv()).await.is_err() {
            warn!("connections still open after {grace:?}; closing the store anyway");
        }
        if let Some((node, stop)) = cluster {
            let _ = stop.send(true);
            node.shutdown().await;
        }
        let store = broker.store().clone();
        spawn_blocking(move || store.close())
            .await
            .map_err(|e| ServerError::Task(e.to_string()))?
            .map_err(|source| ServerError::Store { dir, source })?;
        info!("store closed cleanly");
        Ok(())
    }
}

/// The client addresses a cluster node tells its peers: the advertised ones, else the bound
/// ones (an address bound to every interface is told as such, with a warning: set
/// `--advertised`).
fn node_info(
    config: &Config,
    listener: &TcpListener,
    kafka: Option<&kafka::KafkaListener>,
) -> Result<sluice_replication::NodeInfo, ServerError> {
    let native = match config.advertised_host_port()? {
        Some((h, p)) => format_host_port(&h, p),
        None => {
            let bound = listener.local_addr().map_err(|source| ServerError::Bind {
                addr: config
                    .listen_addr()
                    .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into()),
                source,
            })?;
            if bound.ip().is_unspecified() {
                warn!(%bound, "the native listener is bound to every address: set \
                    --advertised to the address clients reach this node at");
            }
            bound.to_string()
        }
    };
    let kafka = kafka.map(|k| format_host_port(&k.context.host, k.context.port as u16));
    Ok(sluice_replication::NodeInfo {
        native: Some(native),
        kafka,
    })
}

/// `host:port`, with an IPv6 host in brackets.
fn format_host_port(host: &str, port: u16) -> String {
    match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    }
}

/// Binds the Kafka listener unless it is off, and learns how this broker presents itself: the
/// advertised address (the bound one unless configured) and the cluster id (the data
/// directory's identity).
async fn bind_kafka(
    config: &Config,
    broker: &Arc<Broker>,
    tls: Option<Arc<tls::Tls>>,
) -> Result<Option<kafka::KafkaListener>, ServerError> {
    let Some(addr) = config.kafka_listen_addr()? else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let (host, port) = match config.kafka_advertised_host_port()? {
        Some(hp) => hp,
        None => {
            if bound.ip().is_unspecified() {
                warn!(%bound, "the Kafka listener is bound to every address and advertises \
                    it as such: set --kafka-advertised to an address clients can reach");
            }
            (bound.ip().to_string(), bound.port())
        }
    };
    // A cluster's nodes are one Kafka cluster; a single server is the cluster of its data
    // directory.
    let id = match &config.cluster {
        Some(c) => c.cluster_uuid(),
        None => {
            let store = broker.store().clone();
            spawn_blocking(move || store.identity())
                .await
                .map_err(|e| ServerError::Task(e.to_string()))?
                .map_err(|source| ServerError::Store {
                    dir: config.data_dir.clone(),
                    source,
                })?
        }
    };
    let offsets = Arc::new(kafka::BrokerGroupOffsets::new(broker.clone()));
    let groups = kafka::group::GroupCoordinator::new(
        config.kafka_groups.clone(),
        offsets,
        Arc::new(kafka::group::SystemClock::new()),
    )
    .map_err(|e| ServerError::Config(crate::config::ConfigError::Invalid(e.to_string())))?;
    // The timer task ends when the last connection and the listener let go of the coordinator.
    groups.spawn_timer_task();
    let shares = kafka::share::ShareGroups::new(broker.clone(), config.kafka_share.clone());
    shares.spawn_reaper();
    let context = Arc::new(kafka::KafkaContext {
        broker: broker.clone(),
        host,
        port: port as i32,
        cluster_id: kafka::cluster_id(id),
        auto_create_topics: config.kafka_auto_create_topics,
        default_partitions: config.kafka_default_partitions,
        tls,
        groups,
        shares,
    });
    Ok(Some(kafka::KafkaListener { listener, context }))
}

/// The span of one client connection: every line logged while serving it (its blocking work
/// and request tasks included) carries `conn` with the protocol, the peer and the connection's
/// id in the registry (`GET /api/connections`), recorded once registered.
pub(crate) fn connection_span(protocol: &'static str, peer: std::net::SocketAddr) -> tracing::Span {
    tracing::info_span!("conn", protocol, %peer, id = tracing::field::Empty)
}
