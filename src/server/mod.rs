//! The broker server: binds, holds the data directory, serves the native protocol (`native/`)
//! over the broker core ([`crate::broker`]), applies retention, and shuts down gracefully.
//!
//! # Layout
//! - `mod.rs`: [`Server`] (bind, run, the shutdown broadcast) and [`ServerError`].
//! - `listener`: the accept loop under the connection semaphore.
//! - `native/`: the native protocol frontend (connection, dispatch, one file per request
//!   family).
//! - [`kafka`]: the Kafka wire protocol frontend; so far its consumer group coordinator
//!   ([`kafka::group`]).

pub mod kafka;
mod listener;
mod native;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_storage::{Error as StoreError, StdFs, Store, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::spawn_blocking;
use tokio::time::timeout;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::{Config, ConfigError};

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

/// The broker: bound and holding its data directory, not yet serving.
pub struct Server {
    listener: TcpListener,
    broker: Arc<Broker>,
    dir: PathBuf,
    retention_check: Duration,
}

impl Server {
    /// Validates the configuration, opens (recovering) the store, which locks the data
    /// directory, and binds the listen address.
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
            broker: Arc::new(Broker::new(Arc::new(store), config.limits, config.log)),
            dir,
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
            broker,
            dir,
            retention_check,
        } = self;
        let retention = tokio::spawn(broker.clone().run_retention(retention_check));
        let (notify_shutdown, _) = broadcast::channel::<()>(1);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        tokio::select! {
            _ = listener::accept(&listener, &broker, &notify_shutdown, &done_tx) => {}
            _ = shutdown => info!("shutdown requested: no longer accepting connections"),
        }
        drop(listener);
        retention.abort();
        drop(notify_shutdown);
        drop(done_tx);
        let grace = Duration::from_millis(broker.limits().shutdown_timeout_ms);
        if timeout(grace, done_rx.recv()).await.is_err() {
            warn!("connections still open after {grace:?}; closing the store anyway");
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
