//! [`StoreBuilder`]: how an embedding program opens a store: the data directory, its default
//! log settings, the file system and clock, and the background upkeep that runs by itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{FsyncPolicy, LogConfig};
use crate::error::Result;
use crate::fs::{FsRef, StdFs};

use super::clock::{ClockRef, SystemClock};
use super::upkeep::UpkeepSettings;
use super::{Store, StoreConfig};

/// Default period of the upkeep thread's deadline check: an unacked message is returned at
/// most this long after its ack deadline.
pub const UPKEEP_EVERY_DEFAULT: Duration = Duration::from_millis(100);
/// Default period of the upkeep thread's retention pass (retention also runs at every roll).
pub const RETENTION_EVERY_DEFAULT: Duration = Duration::from_secs(60);

/// Opens a [`Store`] with settings; see [`Store::builder`].
///
/// ```
/// use sluice_storage::{FsyncPolicy, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::builder(dir.path()).fsync(FsyncPolicy::Always).open().unwrap();
/// store.close().unwrap();
/// ```
#[derive(Debug)]
pub struct StoreBuilder {
    root: PathBuf,
    fs: FsRef,
    config: StoreConfig,
    clock: ClockRef,
    upkeep: Option<UpkeepSettings>,
}

impl StoreBuilder {
    pub(super) fn new(root: PathBuf) -> Self {
        StoreBuilder {
            root,
            fs: Arc::new(StdFs),
            config: StoreConfig::default(),
            clock: Arc::new(SystemClock),
            upkeep: Some(UpkeepSettings {
                every: UPKEEP_EVERY_DEFAULT,
                retention_every: RETENTION_EVERY_DEFAULT,
            }),
        }
    }

    /// The file system (the real disk by default; a simulated one in tests).
    pub fn fs(mut self, fs: FsRef) -> Self {
        self.fs = fs;
        self
    }

    /// Log settings of topics and queues created without their own.
    pub fn default_log(mut self, log: LogConfig) -> Self {
        self.config.default_log = log;
        self
    }

    /// The fsync policy of topics and queues created without their own log settings.
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.config.default_log.fsync = policy;
        self
    }

    /// The clock of ack deadlines and nack delays (the wall clock by default).
    pub fn clock(mut self, clock: ClockRef) -> Self {
        self.clock = clock;
        self
    }

    /// How often the upkeep thread returns messages whose ack deadline or nack delay passed
    /// (default [`UPKEEP_EVERY_DEFAULT`]) and how often it applies retention (default
    /// [`RETENTION_EVERY_DEFAULT`]).
    pub fn upkeep(mut self, every: Duration, retention_every: Duration) -> Self {
        self.upkeep = Some(UpkeepSettings {
            every,
            retention_every,
        });
        self
    }

    /// No upkeep thread: the program calls [`crate::Queue::expire`] and
    /// [`crate::Log::enforce_retention`] itself (as the server does).
    pub fn no_upkeep(mut self) -> Self {
        self.upkeep = None;
        self
    }

    /// Opens (creating if needed) the data directory and recovers what it holds; then starts the
    /// upkeep thread, which stops when the store is closed or dropped.
    pub fn open(self) -> Result<Store> {
        let store = Store::open_with_clock(self.fs, self.root, self.config, self.clock)?;
        if let Some(s) = self.upkeep {
            *super::lock(&store.upkeep) = Some(super::upkeep::start(&store.inner, s)?);
        }
        Ok(store)
    }
}
