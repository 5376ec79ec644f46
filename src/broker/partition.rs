//! A topic's partitions as frontends address them, and the facts about topics a frontend that
//! numbers partitions (the Kafka protocol) asks for: how many partitions, the log of one, a
//! watcher of its visible end, persistent topic ids, effective settings, and the data
//! directory's identity.
//!
//! Every function here that touches the disk says so (*blocking*).

use sluice_storage::{Log, LogConfig};
use tokio::sync::watch;

use super::types::LogSettings;
use super::{Broker, BrokerError, ErrorKind, Result};

pub use sluice_storage::TopicId;

impl Broker {
    /// How many partitions `topic` has (numbered from 0).
    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.store.topic(topic)?.partition_count())
    }

    /// The log of a partition and a receiver that changes whenever more of the topic becomes
    /// visible (any partition: a waiter checks its own), and closes when the topic is deleted.
    pub fn watch_partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<(Log, watch::Receiver<u64>)> {
        let t = self.store.topic(topic)?;
        let log = t.partition(partition)?;
        let rx = self.watch_topic(&t);
        Ok((log, rx))
    }

    /// The persistent id of a topic as 16 bytes (a UUID to the Kafka protocol), if it exists.
    pub fn topic_id_bytes(&self, topic: &str) -> Option<[u8; 16]> {
        self.topic_id(topic).ok().map(|id| id.0)
    }

    /// The topic whose persistent id is `id`, if any.
    pub fn topic_by_id(&self, id: [u8; 16]) -> Option<String> {
        self.topic_name(TopicId(id)).ok()
    }

    /// Whether topics have persistent ids: frontends serve the request versions that address
    /// topics by id only when they do. Every topic has one.
    pub fn has_topic_ids(&self) -> bool {
        true
    }

    /// Creates a topic of `n` partitions (1 to `PARTITIONS_MAX`; another count is
    /// `InvalidArgument`). `validate_only` checks everything a create would (name, settings,
    /// partitions, existence) and creates nothing. Blocking.
    pub fn create_partitioned_topic(
        &self,
        name: &str,
        n: u32,
        settings: &LogSettings,
        validate_only: bool,
    ) -> Result<()> {
        if !validate_only {
            return self.create_topic(name, settings, n);
        }
        sluice_storage::store::validate_name(name)?;
        sluice_storage::store::check_partitions(n)?;
        self.log_config(settings)?;
        if self.store.topic(name).is_ok() {
            let m = format!("topic {name:?} already exists");
            return Err(BrokerError::new(ErrorKind::AlreadyExists, m));
        }
        Ok(())
    }

    /// The settings a topic runs with (the server's defaults merged at its creation, and its
    /// retention as last changed).
    pub fn topic_config(&self, topic: &str) -> Result<LogConfig> {
        Ok(self.store.topic(topic)?.log_config())
    }

    /// The log settings of a topic created without its own.
    pub fn default_log_config(&self) -> &LogConfig {
        &self.default_log
    }

    /// The data directory's identity, made at its first use and kept (the Kafka frontend's
    /// cluster id). Blocking.
    pub fn identity(&self) -> Result<[u8; 16]> {
        Ok(self.store.identity()?)
    }
}
