//! Committed offsets by group: a Kafka consumer group's offsets are the named subscriber of
//! the same name on each topic, per partition, with the client's metadata. Every function
//! here is blocking.

use sluice_storage::Offset;

use super::{Broker, Result};

/// One committed position of a group: topic, partition, next offset, metadata.
pub type GroupCommit = (String, u32, Offset, Vec<u8>);

impl Broker {
    /// The committed offset of `group` on (`topic`, `partition`) and its metadata, if any
    /// (Kafka's OffsetFetch).
    pub fn fetch_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(Offset, Vec<u8>)>> {
        Ok(self.store.topic(topic)?.committed(group, partition))
    }

    /// Stores several committed offsets of `group` on `topic` (`(partition, next, metadata)`)
    /// with one sync. The inner results say which were refused on their own (unknown
    /// partition, offset past the end, metadata too long); the outer error is a storage
    /// failure, and then none of them is confirmed.
    pub fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        commits: &[(u32, Offset, &[u8])],
    ) -> Result<Vec<Result<()>>> {
        let checked = self.store.topic(topic)?.commit_offsets(group, commits)?;
        Ok(checked.into_iter().map(|r| r.map_err(Into::into)).collect())
    }

    /// Every committed offset of `group`, sorted by topic and partition.
    pub fn group_offsets(&self, group: &str) -> Vec<GroupCommit> {
        let mut out = Vec::new();
        for name in self.store.list_topics() {
            let Ok(topic) = self.store.topic(&name) else {
                continue; // deleted meanwhile
            };
            for p in 0..topic.partition_count() {
                if let Some((next, metadata)) = topic.committed(group, p) {
                    out.push((name.clone(), p, next, metadata));
                }
            }
        }
        out
    }

    /// The names that hold a committed offset on some topic (Kafka groups and named
    /// subscribers alike), sorted.
    pub fn offset_groups(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .store
            .list_topics()
            .iter()
            .filter_map(|t| self.store.topic(t).ok())
            .flat_map(|t| t.subscribers())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Deletes `group`'s committed offsets on every topic (durable on return).
    pub fn delete_group_offsets(&self, group: &str) -> Result<()> {
        for name in self.store.list_topics() {
            let Ok(topic) = self.store.topic(&name) else {
                continue;
            };
            if topic.has_subscriber(group) {
                match topic.delete_subscriber(group) {
                    Ok(()) | Err(sluice_storage::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}
