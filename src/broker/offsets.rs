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
    ///
    /// In cluster mode the commits go through the cluster metadata, to every node, and are
    /// confirmed once a majority has them: each is checked here (partition, metadata size) but
    /// not against the log's end, which a lagging node has not reached yet (as Kafka, which
    /// does not check it either).
    pub fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        commits: &[(u32, Offset, &[u8])],
    ) -> Result<Vec<Result<()>>> {
        let Some(cluster) = self.cluster() else {
            let checked = self.store.topic(topic)?.commit_offsets(group, commits)?;
            return Ok(checked.into_iter().map(|r| r.map_err(Into::into)).collect());
        };
        sluice_storage::store::validate_name(group)?;
        let t = self.store.topic(topic)?;
        let checked: Vec<Result<()>> = commits
            .iter()
            .map(|&(p, _, m)| t.check_commit_shape(p, m).map_err(Into::into))
            .collect();
        let valid: Vec<(u32, u64, Vec<u8>)> = commits
            .iter()
            .zip(&checked)
            .filter(|(_, c)| c.is_ok())
            .map(|(&(p, next, m), _)| (p, next.0, m.to_vec()))
            .collect();
        if !valid.is_empty() {
            cluster.propose_meta_blocking(crate::cluster::MetaCommand::CommitOffsets {
                group: group.to_string(),
                topic: topic.to_string(),
                commits: valid,
            })?;
        }
        Ok(checked)
    }

    /// Stores committed offsets of the cluster metadata on this node: checked as
    /// [`Broker::commit_offsets`] in cluster mode, so every node stores the same.
    pub fn apply_offsets(
        &self,
        group: &str,
        topic: &str,
        commits: &[(u32, u64, Vec<u8>)],
    ) -> Result<()> {
        let t = match self.store.topic(topic) {
            Ok(t) => t,
            // Deleted since: nothing to keep.
            Err(sluice_storage::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let commits: Vec<(u32, Offset, &[u8])> = commits
            .iter()
            .map(|(p, next, m)| (*p, Offset(*next), m.as_slice()))
            .collect();
        t.commit_offsets_unbounded(group, &commits)?;
        Ok(())
    }

    /// Every committed offset of `group`, sorted by topic and partition. Opens only the topics
    /// the group has offsets on.
    pub fn group_offsets(&self, group: &str) -> Vec<GroupCommit> {
        let mut out = Vec::new();
        for name in self.topics_with_subscriber(group) {
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
    /// subscribers alike), sorted. Opens no closed topic.
    pub fn offset_groups(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .store
            .list_topics()
            .iter()
            .filter_map(|t| self.store.topic_subscribers(t).ok())
            .flatten()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The topics on which `name` has committed offsets (read without opening closed topics).
    fn topics_with_subscriber(&self, name: &str) -> Vec<String> {
        self.store
            .list_topics()
            .into_iter()
            .filter(|t| {
                self.store
                    .topic_subscribers(t)
                    .is_ok_and(|subs| subs.binary_search_by(|s| s.as_str().cmp(name)).is_ok())
            })
            .collect()
    }

    /// Deletes `group`'s committed offsets on every topic (durable on return; in cluster mode,
    /// on every node through the cluster metadata). Opens only the topics the group has
    /// offsets on.
    pub fn delete_group_offsets(&self, group: &str) -> Result<()> {
        match self.cluster() {
            Some(c) => c.propose_meta_blocking(crate::cluster::MetaCommand::DeleteGroupOffsets {
                group: group.to_string(),
            }),
            None => self.delete_group_offsets_local(group),
        }
    }

    /// [`Broker::delete_group_offsets`] on this node only.
    pub fn delete_group_offsets_local(&self, group: &str) -> Result<()> {
        for name in self.topics_with_subscriber(group) {
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
