//! A topic's named subscribers' committed offsets, per partition with metadata: commits (one,
//! or several with one sync), reads, and removal. Kafka groups' offsets are kept here too.

use crate::error::{Error, Result};
use crate::types::Offset;

use super::settings::validate_name;
use super::Topic;

impl Topic {
    /// Moves a subscriber's committed offset on partition `p` (the next offset it will read) to
    /// `next`, with `metadata` (at most [`COMMIT_METADATA_BYTES_MAX`](crate::offsets::COMMIT_METADATA_BYTES_MAX) bytes, empty for none;
    /// it replaces what was stored); returns once durable under the topic's fsync policy. A
    /// commit never moves an offset backwards unless `next` is explicitly below (a seek). A
    /// `next` past the visible end is refused ([`Error::OffsetOutOfRange`]): nothing there was
    /// read. An unknown subscriber is `NotFound` (see [`Topic::commit_offset`]).
    pub fn commit(&self, subscriber: &str, p: u32, next: Offset, metadata: &[u8]) -> Result<()> {
        if !self.offsets.exists(subscriber) {
            return Err(Error::NotFound {
                kind: "subscriber",
                name: subscriber.into(),
            });
        }
        self.commit_offset(subscriber, p, next, metadata)
    }
    /// Like [`Topic::commit`], creating the subscriber when it does not exist (a Kafka
    /// group's offsets are made by its first commit).
    pub fn commit_offset(
        &self,
        subscriber: &str,
        p: u32,
        next: Offset,
        metadata: &[u8],
    ) -> Result<()> {
        validate_name(subscriber)?;
        self.check_commit(p, next, metadata)?;
        self.offsets.set(subscriber, p, next.0, metadata)?;
        self.reclaim(p);
        Ok(())
    }
    /// Like [`Topic::commit_offset`] for several partitions (`(partition, next, metadata)`),
    /// with one sync for all. The inner results say which commits were refused on their own
    /// (an unknown partition, an offset past the end, metadata too long) without stopping the
    /// others; the outer error is the store's failure to make the rest durable.
    pub fn commit_offsets(
        &self,
        subscriber: &str,
        commits: &[(u32, Offset, &[u8])],
    ) -> Result<Vec<Result<()>>> {
        self.commit_checked(subscriber, commits, true)
    }

    /// [`Topic::commit_offsets`] without the check against the partition's end: a replica
    /// storing what a cluster committed, which its log may not have reached yet.
    pub fn commit_offsets_unbounded(
        &self,
        subscriber: &str,
        commits: &[(u32, Offset, &[u8])],
    ) -> Result<Vec<Result<()>>> {
        self.commit_checked(subscriber, commits, false)
    }

    fn commit_checked(
        &self,
        subscriber: &str,
        commits: &[(u32, Offset, &[u8])],
        bounded: bool,
    ) -> Result<Vec<Result<()>>> {
        validate_name(subscriber)?;
        let checked: Vec<Result<()>> = commits
            .iter()
            .map(|&(p, next, metadata)| match bounded {
                true => self.check_commit(p, next, metadata),
                false => self.check_commit_shape(p, metadata),
            })
            .collect();
        let valid: Vec<(u32, u64, &[u8])> = commits
            .iter()
            .zip(&checked)
            .filter(|(_, c)| c.is_ok())
            .map(|(&(p, next, m), _)| (p, next.0, m))
            .collect();
        self.offsets.set_many(subscriber, &valid)?;
        for &(p, _, _) in &valid {
            self.reclaim(p);
        }
        Ok(checked)
    }
    /// Whether a commit on partition `p` with `metadata` can be stored, whatever its offset:
    /// the partition exists and the metadata is within its limit.
    pub fn check_commit_shape(&self, p: u32, metadata: &[u8]) -> Result<()> {
        let bytes_max = crate::offsets::COMMIT_METADATA_BYTES_MAX;
        if metadata.len() > bytes_max {
            return Err(Error::InvalidArgument(format!(
                "commit metadata of {} bytes, over the limit of {bytes_max}",
                metadata.len()
            )));
        }
        self.partition(p).map(|_| ())
    }

    /// Whether a commit of `next` on partition `p` with `metadata` can be stored.
    fn check_commit(&self, p: u32, next: Offset, metadata: &[u8]) -> Result<()> {
        self.check_commit_shape(p, metadata)?;
        let log = self.partition(p)?;
        let end = log.visible_end();
        if next > end {
            return Err(Error::OffsetOutOfRange {
                offset: next,
                start: log.start_offset(),
                end,
            });
        }
        Ok(())
    }
    /// Syncs the subscriber offsets journal whatever the fsync policy.
    pub fn flush_offsets(&self) -> Result<()> {
        self.offsets.flush()
    }
    /// A subscriber's committed offset on partition `p` and the metadata stored with it, if it
    /// has one there.
    pub fn committed(&self, subscriber: &str, p: u32) -> Option<(Offset, Vec<u8>)> {
        self.offsets
            .get(subscriber, p)
            .map(|c| (Offset(c.offset), c.metadata))
    }
    /// Names of the named subscribers, sorted.
    pub fn subscribers(&self) -> Vec<String> {
        self.offsets.all().into_iter().map(|(n, _)| n).collect()
    }
    /// Whether `name` is a named subscriber (has a committed offset on some partition).
    pub fn has_subscriber(&self, name: &str) -> bool {
        self.offsets.exists(name)
    }
    /// Removes a named subscriber (from every partition).
    pub fn delete_subscriber(&self, name: &str) -> Result<()> {
        if !self.offsets.remove(name)? {
            return Err(Error::NotFound {
                kind: "subscriber",
                name: name.into(),
            });
        }
        for p in 0..self.partition_count() {
            self.reclaim(p);
        }
        Ok(())
    }
}
