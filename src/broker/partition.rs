//! A topic's partitions as frontends address them, and the facts about topics a frontend that
//! numbers partitions (the Kafka protocol) asks for: how many partitions, the log of one, a
//! watcher of its visible end, persistent topic ids, effective settings, and the data
//! directory's identity.
//!
//! To such a frontend a *named log* is a topic, or else a queue of the same name: a queue is
//! a topic of one partition (its log) whose id is derived from the data directory's identity
//! and the queue's name ([`queue_topic_id`]). A topic shadows a queue of its name.
//!
//! Every function here that touches the disk says so (*blocking*).

use std::sync::Arc;

use sluice_storage::{Error as StoreError, Log, LogConfig, Queue, Topic};
use tokio::sync::watch;

use super::types::LogSettings;
use super::{Broker, BrokerError, ErrorKind, Result};

pub use sluice_storage::TopicId;

/// A topic, or a queue seen as a topic of one partition.
pub enum NamedLog {
    /// A topic.
    Topic(Arc<Topic>),
    /// A queue.
    Queue(Arc<Queue>),
}

/// The topic id a queue shows: a name-based UUID (version 8, RFC 9562) of the data
/// directory's identity and the queue's name, hashed with 128-bit FNV-1a. The same across
/// restarts; a queue deleted and created again keeps it.
pub fn queue_topic_id(identity: [u8; 16], queue: &str) -> TopicId {
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013B;
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in identity.iter().chain(b"queue\0").chain(queue.as_bytes()) {
        h ^= *b as u128;
        h = h.wrapping_mul(PRIME);
    }
    let mut b = h.to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    TopicId(b)
}

impl Broker {
    /// The topic `name`, or else the queue `name`; `NotFound` when neither exists.
    pub fn named_log(&self, name: &str) -> Result<NamedLog> {
        match self.store.topic(name) {
            Ok(t) => Ok(NamedLog::Topic(t)),
            Err(StoreError::NotFound { .. }) => Ok(NamedLog::Queue(self.store.queue(name)?)),
            Err(e) => Err(e.into()),
        }
    }

    /// Every topic, and every queue no topic shadows, sorted.
    pub fn list_named_logs(&self) -> Vec<String> {
        let mut names = self.store.list_topics();
        let topics: std::collections::HashSet<String> = names.iter().cloned().collect();
        names.extend(
            self.store
                .list_queues()
                .into_iter()
                .filter(|q| !topics.contains(q)),
        );
        names.sort();
        names
    }

    /// The topic id queue `name` shows (see [`queue_topic_id`]). Blocking (the identity is
    /// read once).
    pub fn queue_topic_id(&self, name: &str) -> Result<TopicId> {
        Ok(queue_topic_id(self.store.identity()?, name))
    }

    /// How many partitions `topic` has (numbered from 0): a queue has one.
    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(match self.named_log(topic)? {
            NamedLog::Topic(t) => t.partition_count(),
            NamedLog::Queue(_) => 1,
        })
    }

    /// The log of a partition and a receiver that changes whenever more of the topic becomes
    /// visible (any partition: a waiter checks its own), and closes when the topic is deleted.
    pub fn watch_partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<(Log, watch::Receiver<u64>)> {
        match self.named_log(topic)? {
            NamedLog::Topic(t) => {
                let log = t.partition(partition)?;
                let rx = self.watch_topic(&t);
                Ok((log, rx))
            }
            NamedLog::Queue(q) => {
                let log = queue_partition(&q, partition)?;
                let ptr = Arc::as_ptr(&q) as usize;
                let rx = self.watch_log(format!("q/{topic}"), ptr, &log);
                Ok((log, rx))
            }
        }
    }

    /// The persistent id of a topic (or the id a queue shows) as 16 bytes (a UUID to the Kafka
    /// protocol), if it exists.
    pub fn topic_id_bytes(&self, topic: &str) -> Option<[u8; 16]> {
        self.kafka_topic_meta(topic).ok().map(|(id, _)| id.0)
    }

    /// The topic whose persistent id is `id`, or the queue that shows it, if any.
    pub fn topic_by_id(&self, id: [u8; 16]) -> Option<String> {
        if let Ok(name) = self.topic_name(TopicId(id)) {
            return Some(name);
        }
        let identity = self.store.identity().ok()?;
        self.store
            .list_queues()
            .into_iter()
            .find(|q| queue_topic_id(identity, q).0 == id && self.store.topic(q).is_err())
    }

    /// A topic's (or a queue's) id and partition count.
    /// Opens neither: a listing of every topic must not open every log.
    pub fn kafka_topic_meta(&self, name: &str) -> Result<(TopicId, u32)> {
        match self.store.topic_meta(name) {
            Ok(m) => Ok(m),
            Err(StoreError::NotFound { .. }) if self.store.has_queue(name) => {
                Ok((self.queue_topic_id(name)?, 1))
            }
            Err(StoreError::NotFound { .. }) => Ok(match self.named_log(name)? {
                // Made between the two lookups.
                NamedLog::Topic(t) => (t.id(), t.partition_count()),
                NamedLog::Queue(_) => (self.queue_topic_id(name)?, 1),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether topics have persistent ids: frontends serve the request versions that address
    /// topics by id only when they do. Every topic has one.
    pub fn has_topic_ids(&self) -> bool {
        true
    }

    /// Creates a topic of `n` partitions (1 to `PARTITIONS_MAX`; another count is
    /// `InvalidArgument`). `validate_only` checks everything a create would (name, settings,
    /// partitions, existence) and creates nothing. `assigned`: each partition's replicas by
    /// hand (see [`Self::create_topic_assigned`]). Blocking.
    pub fn create_partitioned_topic(
        &self,
        name: &str,
        (n, assigned): (u32, Option<Vec<Vec<u64>>>),
        settings: &LogSettings,
        validate_only: bool,
    ) -> Result<()> {
        // A topic would shadow the queue of its name.
        if self.store.queue(name).is_ok() {
            let m = format!("a queue named {name:?} exists (it is seen as a topic)");
            return Err(BrokerError::new(ErrorKind::AlreadyExists, m));
        }
        if !validate_only {
            return self.create_topic_assigned(name, settings, n, assigned);
        }
        if let (Some(c), Some(a)) = (self.cluster(), assigned) {
            c.check_assignment(a, None)?;
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
        Ok(match self.named_log(topic)? {
            NamedLog::Topic(t) => t.log_config(),
            NamedLog::Queue(q) => q.log().config().clone(),
        })
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

/// A queue's only partition, 0; `NotFound` for any other.
pub(super) fn queue_partition(q: &Queue, partition: u32) -> Result<Log> {
    if partition != 0 {
        let m = format!("queue {:?} has one partition, not {partition}", q.name());
        return Err(BrokerError::new(ErrorKind::NotFound, m));
    }
    Ok(q.log().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_topic_ids_are_stable_uuids_distinct_by_name_and_directory() {
        let a = queue_topic_id([1; 16], "jobs");
        assert_eq!(a, queue_topic_id([1; 16], "jobs"));
        assert_ne!(a, queue_topic_id([1; 16], "jobs2"));
        assert_ne!(a, queue_topic_id([2; 16], "jobs"));
        assert_eq!(a.0[6] >> 4, 8, "version 8");
        assert_eq!(a.0[8] >> 6, 0b10, "RFC variant");
        assert!(!a.is_nil());
    }
}
