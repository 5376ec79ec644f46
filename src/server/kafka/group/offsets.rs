//! Where committed offsets live: the [`GroupOffsets`] trait, its typed errors, and
//! [`MemoryGroupOffsets`] for tests.
//!
//! A Kafka group's committed offset of a partition is the next offset the group will read
//! (Kafka's and sluice's meaning alike) with the client's metadata string. An implementation
//! must have made a commit durable before `commit` returns: the coordinator answers
//! OffsetCommit only after it. The implementation over the broker core stores a group's offsets
//! as the sluice named subscriber of the same name on each topic.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One partition's committed position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will read.
    pub next_offset: u64,
    /// The client's metadata string (empty when none was given).
    pub metadata: String,
}

/// One partition's commit in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitEntry {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset the group will read.
    pub next_offset: u64,
    /// The client's metadata string.
    pub metadata: String,
}

/// Why an offset could not be committed or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetStoreError {
    /// No such topic, or no such partition of it (Kafka: UNKNOWN_TOPIC_OR_PARTITION).
    #[error("unknown topic or partition {topic}-{partition}")]
    UnknownTopicOrPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The metadata is longer than the store keeps (Kafka: OFFSET_METADATA_TOO_LARGE).
    #[error("offset metadata of {bytes} bytes is over the limit of {bytes_max}")]
    MetadataTooLarge {
        /// The metadata's length.
        bytes: usize,
        /// The limit.
        bytes_max: usize,
    },
    /// The group's name cannot be stored (Kafka: INVALID_GROUP_ID).
    #[error("invalid group id {0:?}")]
    InvalidGroupId(String),
    /// The store refused the offset (sluice keeps no committed offset past a partition's end;
    /// Kafka: OFFSET_OUT_OF_RANGE).
    #[error("offset refused: {0}")]
    OffsetOutOfRange(String),
    /// The store failed (I/O, fail-stop); nothing is confirmed.
    #[error("offset store failed: {0}")]
    Storage(String),
}

/// Durable storage of committed offsets, keyed by group, topic and partition. Calls may block
/// on disk I/O: the coordinator makes them on the blocking pool.
pub trait GroupOffsets: Send + Sync + 'static {
    /// Whether the store can keep offsets of a group of this name (JoinGroup and OffsetCommit
    /// answer INVALID_GROUP_ID otherwise). Every non-empty name by default.
    fn valid_group_id(&self, group: &str) -> bool {
        !group.is_empty()
    }

    /// Commits one partition's offset; durable when it returns `Ok`.
    fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        next_offset: u64,
        metadata: &str,
    ) -> Result<(), OffsetStoreError>;

    /// Commits a batch (one OffsetCommit request), one result per entry in order; every `Ok` is
    /// durable when it returns. Implementations should share one sync among the entries.
    fn commit_many(
        &self,
        group: &str,
        entries: &[OffsetCommitEntry],
    ) -> Vec<Result<(), OffsetStoreError>> {
        entries
            .iter()
            .map(|e| self.commit(group, &e.topic, e.partition, e.next_offset, &e.metadata))
            .collect()
    }

    /// The committed offset of one partition, if any.
    fn fetch(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<CommittedOffset>, OffsetStoreError>;

    /// Every committed offset of a group, sorted by topic and partition.
    fn fetch_all(
        &self,
        group: &str,
    ) -> Result<Vec<(String, i32, CommittedOffset)>, OffsetStoreError>;

    /// The groups with at least one committed offset, sorted.
    fn groups(&self) -> Result<Vec<String>, OffsetStoreError>;

    /// Whether the group has at least one committed offset.
    fn has_group(&self, group: &str) -> Result<bool, OffsetStoreError> {
        Ok(!self.fetch_all(group)?.is_empty())
    }

    /// Deletes every committed offset of a group (durable when it returns `Ok`).
    fn delete_group(&self, group: &str) -> Result<(), OffsetStoreError>;
}

type GroupMap = BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>>;

/// Committed offsets in memory (tests; nothing survives the process). Accepts every topic
/// unless built with [`MemoryGroupOffsets::with_topics`].
#[derive(Debug, Default)]
pub struct MemoryGroupOffsets {
    groups: Mutex<GroupMap>,
    /// Known topics and their partition counts; `None` accepts all.
    topics: Option<BTreeMap<String, i32>>,
    /// Test hook: when set, every call fails with this storage error.
    failing: Mutex<Option<String>>,
}

impl MemoryGroupOffsets {
    /// An empty store accepting every topic and partition.
    pub fn new() -> MemoryGroupOffsets {
        MemoryGroupOffsets::default()
    }

    /// An empty store knowing only these topics, each with its partition count.
    pub fn with_topics(topics: &[(&str, i32)]) -> MemoryGroupOffsets {
        MemoryGroupOffsets {
            topics: Some(topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()),
            ..MemoryGroupOffsets::default()
        }
    }

    /// Makes every later call fail with [`OffsetStoreError::Storage`] (`None` heals it).
    pub fn set_failing(&self, reason: Option<&str>) {
        *lock(&self.failing) = reason.map(str::to_string);
    }

    fn check_failing(&self) -> Result<(), OffsetStoreError> {
        match &*lock(&self.failing) {
            Some(reason) => Err(OffsetStoreError::Storage(reason.clone())),
            None => Ok(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GroupOffsets for MemoryGroupOffsets {
    fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        next_offset: u64,
        metadata: &str,
    ) -> Result<(), OffsetStoreError> {
        self.check_failing()?;
        if let Some(topics) = &self.topics {
            let known = topics
                .get(topic)
                .is_some_and(|n| (0..*n).contains(&partition));
            if !known {
                return Err(OffsetStoreError::UnknownTopicOrPartition {
                    topic: topic.to_string(),
                    partition,
                });
            }
        }
        if metadata.len() > super::config::OFFSET_METADATA_BYTES_MAX_DEFAULT {
            return Err(OffsetStoreError::MetadataTooLarge {
                bytes: metadata.len(),
                bytes_max: super::config::OFFSET_METADATA_BYTES_MAX_DEFAULT,
            });
        }
        let committed = CommittedOffset {
            next_offset,
            metadata: metadata.to_string(),
        };
        lock(&self.groups)
            .entry(group.to_string())
            .or_default()
            .insert((topic.to_string(), partition), committed);
        Ok(())
    }

    fn fetch(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<CommittedOffset>, OffsetStoreError> {
        self.check_failing()?;
        let groups = lock(&self.groups);
        let key = (topic.to_string(), partition);
        Ok(groups.get(group).and_then(|g| g.get(&key)).cloned())
    }

    fn fetch_all(
        &self,
        group: &str,
    ) -> Result<Vec<(String, i32, CommittedOffset)>, OffsetStoreError> {
        self.check_failing()?;
        let groups = lock(&self.groups);
        let Some(offsets) = groups.get(group) else {
            return Ok(Vec::new());
        };
        Ok(offsets
            .iter()
            .map(|((t, p), c)| (t.clone(), *p, c.clone()))
            .collect())
    }

    fn groups(&self) -> Result<Vec<String>, OffsetStoreError> {
        self.check_failing()?;
        Ok(lock(&self.groups).keys().cloned().collect())
    }

    fn delete_group(&self, group: &str) -> Result<(), OffsetStoreError> {
        self.check_failing()?;
        lock(&self.groups).remove(group);
        Ok(())
    }
}
