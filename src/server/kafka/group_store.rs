//! [`BrokerGroupOffsets`]: the group coordinator's durable store of committed offsets, over the
//! broker core. A Kafka group's committed offsets are the sluice named subscriber of the same
//! name on each topic, so `sluice topic describe` shows a Kafka group's position and lag, and
//! the offsets survive restarts and crashes under the topic's fsync policy.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_storage::Offset;

use super::group::{CommittedOffset, GroupOffsets, OffsetCommitEntry, OffsetStoreError};
use crate::broker::{Broker, BrokerError, ErrorKind};

/// Committed offsets of Kafka groups, kept by the broker core.
pub(crate) struct BrokerGroupOffsets {
    broker: Arc<Broker>,
}

impl BrokerGroupOffsets {
    pub(crate) fn new(broker: Arc<Broker>) -> BrokerGroupOffsets {
        BrokerGroupOffsets { broker }
    }
}

/// The store error of a broker failure on (`topic`, `partition`).
fn store_error(e: BrokerError, topic: &str, partition: i32) -> OffsetStoreError {
    match e.kind {
        ErrorKind::NotFound => OffsetStoreError::UnknownTopicOrPartition {
            topic: topic.to_string(),
            partition,
        },
        ErrorKind::InvalidArgument => OffsetStoreError::OffsetOutOfRange(e.message),
        _ => OffsetStoreError::Storage(e.message),
    }
}

/// A Kafka partition number as sluice's, or the error for a negative one.
fn partition_of(topic: &str, partition: i32) -> Result<u32, OffsetStoreError> {
    u32::try_from(partition).map_err(|_| OffsetStoreError::UnknownTopicOrPartition {
        topic: topic.to_string(),
        partition,
    })
}

fn committed(next: Offset, metadata: Vec<u8>) -> CommittedOffset {
    CommittedOffset {
        next_offset: next.0,
        metadata: String::from_utf8_lossy(&metadata).into_owned(),
    }
}

impl GroupOffsets for BrokerGroupOffsets {
    fn valid_group_id(&self, group: &str) -> bool {
        super::valid_topic_name(group)
    }

    fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        next_offset: u64,
        metadata: &str,
    ) -> Result<(), OffsetStoreError> {
        let entry = OffsetCommitEntry {
            topic: topic.to_string(),
            partition,
            next_offset,
            metadata: metadata.to_string(),
        };
        self.commit_many(group, &[entry]).pop().unwrap_or(Ok(()))
    }

    /// One sync per topic: a consumer commits all its partitions in one request.
    fn commit_many(
        &self,
        group: &str,
        entries: &[OffsetCommitEntry],
    ) -> Vec<Result<(), OffsetStoreError>> {
        let mut out: Vec<Result<(), OffsetStoreError>> = entries.iter().map(|_| Ok(())).collect();
        if !self.valid_group_id(group) {
            let bad = OffsetStoreError::InvalidGroupId(group.to_string());
            return out.iter().map(|_| Err(bad.clone())).collect();
        }
        // Entry indexes by topic, in request order.
        let mut by_topic: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            match partition_of(&e.topic, e.partition) {
                Ok(_) => by_topic.entry(e.topic.as_str()).or_default().push(i),
                Err(err) => out[i] = Err(err),
            }
        }
        for (topic, indexes) in by_topic {
            let commits: Vec<(u32, Offset, &[u8])> = indexes
                .iter()
                .map(|&i| {
                    let e = &entries[i];
                    (
                        e.partition as u32,
                        Offset(e.next_offset),
                        e.metadata.as_bytes(),
                    )
                })
                .collect();
            match self.broker.commit_offsets(group, topic, &commits) {
                Ok(results) => {
                    for (&i, r) in indexes.iter().zip(results) {
                        out[i] = r.map_err(|e| store_error(e, topic, entries[i].partition));
                    }
                }
                Err(e) => {
                    for &i in &indexes {
                        out[i] = Err(store_error(e.clone(), topic, entries[i].partition));
                    }
                }
            }
        }
        out
    }

    fn fetch(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<CommittedOffset>, OffsetStoreError> {
        if !self.valid_group_id(group) {
            return Ok(None);
        }
        let p = partition_of(topic, partition)?;
        let found = self
            .broker
            .fetch_offset(group, topic, p)
            .map_err(|e| store_error(e, topic, partition))?;
        Ok(found.map(|(next, metadata)| committed(next, metadata)))
    }

    fn fetch_all(
        &self,
        group: &str,
    ) -> Result<Vec<(String, i32, CommittedOffset)>, OffsetStoreError> {
        if !self.valid_group_id(group) {
            return Ok(Vec::new());
        }
        Ok(self
            .broker
            .group_offsets(group)
            .into_iter()
            .map(|(topic, p, next, metadata)| (topic, p as i32, committed(next, metadata)))
            .collect())
    }

    fn groups(&self) -> Result<Vec<String>, OffsetStoreError> {
        Ok(self.broker.offset_groups())
    }

    fn has_group(&self, group: &str) -> Result<bool, OffsetStoreError> {
        Ok(self.valid_group_id(group) && !self.broker.group_offsets(group).is_empty())
    }

    fn delete_group(&self, group: &str) -> Result<(), OffsetStoreError> {
        if !self.valid_group_id(group) {
            return Ok(());
        }
        self.broker
            .delete_group_offsets(group)
            .map_err(|e| OffsetStoreError::Storage(e.message))
    }
}
