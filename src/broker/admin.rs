//! Topics and queues: create (with the limits checks), add partitions, delete, list, describe,
//! ids; committed offsets of named subscribers per partition, with metadata; list offsets. Every function here is blocking.

use sluice_storage::{LogConfig, Offset, QueueConfig, TopicId};
use tracing::info;

use super::types::{
    LogSettings, OffsetSpec, PartitionInfo, QueueInfo, QueueSettings, SubscriberStat, TopicInfo,
};
use super::{Broker, BrokerError, ErrorKind, Result};

impl Broker {
    /// The log configuration of a new topic or queue: the server's defaults overridden by
    /// `s`, checked against `limits.segment_bytes_min` and the engine's own ranges.
    pub fn log_config(&self, s: &LogSettings) -> Result<LogConfig> {
        let mut c = self.default_log.clone();
        if let Some(v) = s.segment_bytes_max {
            let min = self.limits.segment_bytes_min;
            if v < min {
                return Err(BrokerError::new(
                    ErrorKind::InvalidArgument,
                    format!("segment_bytes_max must be at least {min} (limits.segment_bytes_min), got {v}"),
                ));
            }
            c.segment_bytes_max = v;
        }
        if s.retention_bytes.is_some() {
            c.retention_bytes = s.retention_bytes;
        }
        if let Some(v) = s.retention_ms {
            c.retention_ms = Some(v);
        }
        c.validate()
            .map_err(|m| BrokerError::new(ErrorKind::InvalidArgument, m))?;
        Ok(c)
    }

    /// Creates a topic of `partitions` partitions (1 to `PARTITIONS_MAX`). In cluster mode,
    /// through the cluster metadata, on every node (blocking until this node has it).
    pub fn create_topic(&self, name: &str, settings: &LogSettings, partitions: u32) -> Result<()> {
        self.create_topic_assigned(name, settings, partitions, None)
    }

    /// [`Self::create_topic`], each partition's replicas on the nodes `assigned` (one list per
    /// partition, the preferred leader first) rather than placed by the cluster; ignored on a
    /// single node, which holds every partition.
    pub fn create_topic_assigned(
        &self,
        name: &str,
        settings: &LogSettings,
        partitions: u32,
        assigned: Option<Vec<Vec<u64>>>,
    ) -> Result<()> {
        let Some(c) = self.cluster() else {
            return self.create_topic_local(name, settings, partitions, None);
        };
        self.log_config(settings)?;
        if !(1..=sluice_storage::PARTITIONS_MAX).contains(&partitions) {
            return Err(BrokerError::new(
                ErrorKind::InvalidArgument,
                format!("partitions must be 1 to {}", sluice_storage::PARTITIONS_MAX),
            ));
        }
        if self.store.topic(name).is_ok() {
            return Err(BrokerError::new(
                ErrorKind::AlreadyExists,
                format!("topic {name:?} already exists"),
            ));
        }
        let id = sluice_storage::TopicId::random().map_err(|e| {
            BrokerError::new(
                ErrorKind::Internal,
                format!("getrandom(2) for a topic id: {e}"),
            )
        })?;
        let replicas = match assigned {
            None => c.place(
                partitions as usize,
                c.replication_factor(settings.replicas)?,
            ),
            Some(a) if a.len() == partitions as usize => c.check_assignment(a, None)?,
            Some(a) => {
                let m = format!("{} partitions assigned of {partitions}", a.len());
                return Err(BrokerError::new(ErrorKind::InvalidArgument, m));
            }
        };
        let cmd = crate::cluster::MetaCommand::CreateTopicPlaced {
            name: name.to_string(),
            id: id.0,
            segment_bytes_max: settings.segment_bytes_max,
            retention_ms: settings.retention_ms,
            retention_bytes: settings.retention_bytes,
            replicas,
        };
        c.create_topic_blocking(cmd, name, partitions)
    }

    /// Creates a topic on this node only (a single-node broker, or a node applying the cluster
    /// metadata).
    pub fn create_topic_local(
        &self,
        name: &str,
        settings: &LogSettings,
        partitions: u32,
        id: Option<sluice_storage::TopicId>,
    ) -> Result<()> {
        let cfg = self.log_config(settings)?;
        let t = match id {
            Some(id) => self
                .store
                .create_topic_with_id(name, Some(cfg), partitions, id)?,
            None => self
                .store
                .create_topic_with_partitions(name, Some(cfg), partitions)?,
        };
        info!(topic = %name, partitions, id = %t.id(), "topic created");
        Ok(())
    }

    /// Grows topic `name` to `count` partitions (never fewer: `InvalidArgument` unless above
    /// the current count); returns the new count. Open subscriptions keep the partitions they
    /// opened with; consumers of a group see new partitions when they next consume. In
    /// cluster mode, through the cluster metadata, on every node, the new partitions placed
    /// as at creation.
    pub fn add_partitions(&self, name: &str, count: u32) -> Result<u32> {
        self.add_partitions_assigned(name, count, None)
    }

    /// [`Self::add_partitions`], each new partition's replicas on the nodes `assigned` (one
    /// list per new partition, as many nodes as the topic's replication factor) rather than
    /// placed by the cluster; ignored on a single node.
    pub fn add_partitions_assigned(
        &self,
        name: &str,
        count: u32,
        assigned: Option<Vec<Vec<u64>>>,
    ) -> Result<u32> {
        let Some(c) = self.cluster() else {
            return Ok(self.store.add_partitions(name, count)?);
        };
        let t = self.store.topic(name)?;
        let from = t.partition_count();
        if count <= from || count > sluice_storage::PARTITIONS_MAX {
            return Err(BrokerError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "topic {name:?} has {from} partitions: partitions are only added, so the \
                     new count must be above {from} and at most {}, not {count}",
                    sluice_storage::PARTITIONS_MAX
                ),
            ));
        }
        c.add_partitions_blocking(name, t.id().0, (from, count), assigned)
    }

    /// Deletes a topic; its subscriptions end. In cluster mode, through the cluster metadata,
    /// on every node.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        match self.cluster() {
            Some(c) => {
                let id = self.store.topic(name)?.id().0;
                c.propose_meta_blocking(crate::cluster::MetaCommand::DeleteTopicWithId {
                    name: name.to_string(),
                    id,
                })
            }
            None => self.delete_topic_local(name),
        }
    }

    /// Deletes a topic on this node only.
    pub fn delete_topic_local(&self, name: &str) -> Result<()> {
        self.store.delete_topic(name)?;
        self.forget(&format!("t/{name}"));
        info!(topic = %name, "topic deleted");
        Ok(())
    }

    /// Changes a topic's retention (`None`: no limit of that kind), kept in its config file;
    /// `validate_only` checks and changes nothing. In cluster mode, through the cluster
    /// metadata, on every node.
    pub fn set_topic_retention(
        &self,
        name: &str,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
        validate_only: bool,
    ) -> Result<()> {
        let t = self.store.topic(name)?;
        if let Some(ms) = retention_ms {
            sluice_storage::config::check_duration_ms("retention_ms", ms)
                .map_err(|m| BrokerError::new(ErrorKind::InvalidArgument, m))?;
        }
        if validate_only {
            return Ok(());
        }
        drop(t);
        match self.cluster() {
            Some(c) => c.propose_meta_blocking(crate::cluster::MetaCommand::SetTopicRetention {
                name: name.to_string(),
                retention_ms,
                retention_bytes,
            }),
            None => self.set_topic_retention_local(name, retention_ms, retention_bytes),
        }
    }

    /// Changes a topic's retention on this node only (a single-node broker, or a node
    /// applying the cluster metadata, where each partition's leader enforces it).
    pub fn set_topic_retention_local(
        &self,
        name: &str,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
    ) -> Result<()> {
        let r = sluice_storage::Retention {
            retention_ms,
            retention_bytes,
        };
        self.store.topic(name)?.set_retention(r)?;
        info!(topic = %name, ?retention_ms, ?retention_bytes, "topic retention changed");
        Ok(())
    }

    /// The names of the topics.
    pub fn list_topics(&self) -> Vec<String> {
        self.store.list_topics()
    }

    /// A topic's id and partition count (a closed topic answers from its config, unopened).
    pub fn topic_meta(&self, name: &str) -> Result<(TopicId, u32)> {
        Ok(self.store.topic_meta(name)?)
    }

    /// The id of topic `name`.
    pub fn topic_id(&self, name: &str) -> Result<TopicId> {
        Ok(self.store.topic(name)?.id())
    }

    /// The name of the topic whose id is `id` (`NotFound` if none).
    pub fn topic_name(&self, id: TopicId) -> Result<String> {
        Ok(self.store.topic_by_id(id)?.name().to_string())
    }

    /// Figures of a topic, per partition.
    pub fn describe_topic(&self, name: String) -> Result<TopicInfo> {
        let s = self.store.topic(&name)?.stats();
        Ok(TopicInfo {
            name,
            id: s.id.to_string(),
            partitions: s
                .partitions
                .into_iter()
                .map(|p| PartitionInfo {
                    partition: p.partition,
                    start_offset: p.start_offset.0,
                    end_offset: p.end_offset.0,
                    size_bytes: p.size_bytes,
                    segments: p.segments as u32,
                    subscribers: p
                        .subscribers
                        .into_iter()
                        .map(|s| SubscriberStat {
                            name: s.name,
                            committed: s.committed.0,
                            lag: s.lag,
                        })
                        .collect(),
                })
                .collect(),
        })
    }

    /// The offset of `spec` in partition `partition` of `topic`: the log start, the visible
    /// end, or the first message at or after a time (`None` when every message is older).
    pub fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<Option<Offset>> {
        let log = self.partition_log(topic, partition)?;
        Ok(match spec {
            OffsetSpec::Earliest => Some(log.start_offset()),
            OffsetSpec::Latest => Some(log.visible_end()),
            OffsetSpec::Timestamp(ts) => log.offset_for_timestamp(ts)?,
        })
    }

    /// Creates a queue (`max_deliveries` must be 1 to `u32::MAX`).
    pub fn create_queue(&self, name: &str, settings: QueueSettings) -> Result<()> {
        let log = self.log_config(&settings.log)?;
        let mut cfg = QueueConfig {
            log,
            dead_letter: settings.dead_letter,
            max_unacked_per_consumer: self.limits.unacked_per_consumer_max,
            ..QueueConfig::default()
        };
        if let Some(v) = settings.ack_timeout_ms {
            cfg.ack_timeout_ms = v;
        }
        if let Some(v) = settings.max_deliveries {
            cfg.max_deliveries = match u32::try_from(v) {
                Ok(0) | Err(_) => {
                    let m = format!("max_deliveries must be 1 to {} (got {v})", u32::MAX);
                    return Err(BrokerError::new(ErrorKind::InvalidArgument, m));
                }
                Ok(v) => v,
            };
        }
        if let Some(c) = self.cluster() {
            // Checked here as on one node, so a bad name or setting is refused, not applied
            // (and skipped) by every node.
            sluice_storage::store::validate_name(name)?;
            cfg.validate()?;
            if self.store.has_queue(name) {
                return Err(sluice_storage::Error::AlreadyExists {
                    kind: "queue",
                    name: name.into(),
                }
                .into());
            }
            let factor = c.replication_factor(settings.log.replicas)?;
            let cmd = crate::cluster::MetaCommand::CreateQueuePlaced {
                name: name.to_string(),
                config: cfg,
                replicas: c.place(1, factor).remove(0),
            };
            return c.create_queue_blocking(cmd, name);
        }
        self.store.create_queue(name, cfg)?;
        info!(queue = %name, "queue created");
        Ok(())
    }

    /// Deletes a queue; its consumers end. In cluster mode, through the cluster metadata, on
    /// every node.
    pub fn delete_queue(&self, name: &str) -> Result<()> {
        match self.cluster() {
            Some(c) => {
                self.store.queue(name)?;
                c.propose_meta_blocking(crate::cluster::MetaCommand::DeleteQueue {
                    name: name.to_string(),
                })
            }
            None => self.delete_queue_local(name),
        }
    }

    /// Deletes a queue on this node only (a single node, or a node applying the cluster
    /// metadata).
    pub fn delete_queue_local(&self, name: &str) -> Result<()> {
        self.store.delete_queue(name)?;
        self.forget(&format!("q/{name}"));
        self.queue_events(&format!("q/{name}")).notify_waiters();
        info!(queue = %name, "queue deleted");
        Ok(())
    }

    /// The names of the queues.
    pub fn list_queues(&self) -> Vec<String> {
        self.store.list_queues()
    }

    /// Figures of a queue.
    pub fn describe_queue(&self, name: String) -> Result<QueueInfo> {
        let q = self.store.queue(&name)?;
        let s = q.stats();
        let c = q.config();
        Ok(QueueInfo {
            dead_letter: c
                .dead_letter
                .clone()
                .unwrap_or_else(|| format!("{name}.dlq")),
            ack_timeout_ms: c.ack_timeout_ms,
            max_deliveries: c.max_deliveries,
            name,
            start_offset: s.start_offset.0,
            end_offset: s.end_offset.0,
            ack_floor: s.ack_floor.0,
            cursor: s.cursor.0,
            depth: s.depth,
            in_flight: s.in_flight,
            dead_lettered: s.dead_lettered,
            size_bytes: s.size_bytes,
        })
    }

    /// Stores the next offset the named subscriber `name` of `topic` reads on `partition`,
    /// with `metadata` (at most `COMMIT_METADATA_BYTES_MAX` bytes). `NotFound` for an unknown
    /// subscriber.
    pub fn commit(
        &self,
        topic: &str,
        name: &str,
        partition: u32,
        next: Offset,
        metadata: &[u8],
    ) -> Result<()> {
        let t = self.store.topic(topic)?;
        if self.cluster().is_none() {
            t.commit(name, partition, next, metadata)?;
            return Ok(());
        }
        // In a cluster: through the metadata, to every node (`commit_offsets`).
        if !t.has_subscriber(name) {
            return Err(sluice_storage::Error::NotFound {
                kind: "subscriber",
                name: name.into(),
            }
            .into());
        }
        self.commit_offsets(name, topic, &[(partition, next, metadata)])?
            .pop()
            .unwrap_or(Ok(()))
    }
}
