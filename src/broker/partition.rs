//! A topic's partitions as frontends address them, and the facts about topics a frontend that
//! numbers partitions (the Kafka protocol) asks for: how many partitions, the log of one, a
//! watcher of its visible end, persistent topic ids, effective settings, and the data
//! directory's identity.
//!
//! Until topics gain partitions every topic is one partition, number 0: these few functions are
//! the seam where partitions (and persistent topic ids) plug in, so a frontend never assumes it.
//! Every function here that touches the disk says so (*blocking*).

use std::sync::Arc;

use sluice_storage::{Log, LogConfig};
use tokio::sync::watch;

use super::types::LogSettings;
use super::{Broker, BrokerError, ErrorKind, Result};

/// A topic's persistent id (16 bytes, a UUID to the Kafka protocol).
pub type TopicId = [u8; 16];

impl Broker {
    /// How many partitions `topic` has (numbered from 0).
    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        self.store.topic(topic)?;
        Ok(1)
    }

    /// The log of partition `partition` of `topic`; `NotFound` for a missing topic or partition.
    pub fn partition_log(&self, topic: &str, partition: u32) -> Result<Log> {
        let t = self.store.topic(topic)?;
        if partition != 0 {
            return Err(no_partition(topic, partition));
        }
        Ok(t.log().clone())
    }

    /// The log of a partition and a receiver of its visible end, which changes whenever more
    /// of it becomes visible (and closes when the topic is deleted).
    pub fn watch_partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<(Log, watch::Receiver<u64>)> {
        let t = self.store.topic(topic)?;
        if partition != 0 {
            return Err(no_partition(topic, partition));
        }
        let log = t.log().clone();
        let rx = self.watch_log(format!("t/{topic}"), Arc::as_ptr(&t) as usize, &log);
        Ok((log, rx))
    }

    /// The persistent id of a topic, if topics have them. They do not yet: `None` until topic
    /// ids are stored with the topic (a frontend then presents no id rather than an id that
    /// could change).
    pub fn topic_id(&self, _topic: &str) -> Option<TopicId> {
        None
    }

    /// The topic whose persistent id is `id`, if any (none while topics have no ids).
    pub fn topic_by_id(&self, _id: TopicId) -> Option<String> {
        None
    }

    /// Whether topics have persistent ids ([`Broker::topic_id`]); frontends serve the request
    /// versions that address topics by id only when they do.
    pub fn has_topic_ids(&self) -> bool {
        false
    }

    /// Creates a topic of `partitions` partitions (`None`: the default, 1). Only 1 is possible
    /// until topics gain partitions: another count is `InvalidArgument`. `validate_only` checks
    /// everything a create would (name, settings, existence) and creates nothing. Blocking.
    pub fn create_partitioned_topic(
        &self,
        name: &str,
        partitions: Option<u32>,
        settings: &LogSettings,
        validate_only: bool,
    ) -> Result<()> {
        if let Some(n) = partitions {
            if n != 1 {
                let m = format!("a topic has exactly 1 partition in this version, not {n}");
                return Err(BrokerError::new(ErrorKind::InvalidArgument, m));
            }
        }
        if !validate_only {
            return self.create_topic(name, settings);
        }
        sluice_storage::store::validate_name(name)?;
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
        Ok(self.store.topic(topic)?.config())
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

fn no_partition(topic: &str, partition: u32) -> BrokerError {
    BrokerError::new(
        ErrorKind::NotFound,
        format!("topic {topic:?} has no partition {partition}"),
    )
}
