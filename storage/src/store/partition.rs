//! A topic's partitions and identity: [`TopicId`], the topic config ([`TopicConfig`]: log
//! settings, partition count, id), where each partition's log and each group partition's ack
//! state live, and [`PARTITIONS_MAX`].
//!
//! Layout in a topic directory (spec in `docs/format-state.md`):
//! ```text
//! log/                       partition 0 (the one log of a topic written before partitions)
//! log-<n>/                   partition n >= 1
//! groups/<g>/acks.*          group g's ack state over partition 0
//! groups/<g>/partition-<n>/  group g's ack state over partition n >= 1
//! ```
//! A partition directory is made complete (log directory created, made durable) before the
//! config that counts it is written, so a crash in the middle of adding partitions leaves only
//! directories past the config's count, which the next open removes.

use std::path::{Path, PathBuf};

use crate::config::LogConfig;
use crate::error::{Error, Result};

use super::settings::LOG_DIR;

/// Most partitions of one topic.
pub const PARTITIONS_MAX: u32 = 1024;

/// Kind (the `generation` field of a config file) of a topic config with partitions and an id
/// ([`TopicConfig`]). A config of kind [`super::KIND_TOPIC`] (a bare `LogConfig`, written before
/// partitions) reads as one partition without an id.
pub const KIND_TOPIC_V2: u64 = 3;

/// Prefix of the log directory of partition n >= 1 (`log-<n>`).
pub const PARTITION_LOG_PREFIX: &str = "log-";
/// Prefix of a group's ack-state directory of partition n >= 1 (`partition-<n>`).
pub const GROUP_PARTITION_PREFIX: &str = "partition-";

pub use crate::types::TopicId;

/// The config of a topic (kind [`KIND_TOPIC_V2`]): its log settings (every partition's), its
/// partition count and its id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfig {
    /// Log settings of every partition.
    pub log: LogConfig,
    /// Number of partitions (1 to [`PARTITIONS_MAX`]).
    pub partitions: u32,
    /// The topic's id.
    pub id: TopicId,
}

/// Checks a partition count for a create or an add.
pub fn check_partitions(n: u32) -> Result<()> {
    if n == 0 || n > PARTITIONS_MAX {
        return Err(Error::InvalidArgument(format!(
            "a topic has 1 to {PARTITIONS_MAX} partitions, not {n}"
        )));
    }
    Ok(())
}

/// The log directory of partition `p` of the topic in `dir`.
pub fn partition_log_dir(dir: &Path, p: u32) -> PathBuf {
    if p == 0 {
        dir.join(LOG_DIR)
    } else {
        dir.join(format!("{PARTITION_LOG_PREFIX}{p}"))
    }
}

/// The ack-state directory of partition `p` of the group in `dir`.
pub fn group_partition_dir(dir: &Path, p: u32) -> PathBuf {
    if p == 0 {
        dir.to_path_buf()
    } else {
        dir.join(format!("{GROUP_PARTITION_PREFIX}{p}"))
    }
}

/// The partition a directory entry of a topic (`log`, `log-<n>`) or of a group
/// (`partition-<n>`) names, with `prefix` the entry's prefix; `None` for anything else.
/// Numbers are written without leading zeros, so one partition has one name.
pub fn partition_of(name: &str, prefix: &str) -> Option<u32> {
    if prefix == PARTITION_LOG_PREFIX && name == LOG_DIR {
        return Some(0);
    }
    let n = name.strip_prefix(prefix)?;
    if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names() {
        let d = Path::new("/t");
        assert_eq!(partition_log_dir(d, 0), Path::new("/t/log"));
        assert_eq!(partition_log_dir(d, 7), Path::new("/t/log-7"));
        assert_eq!(group_partition_dir(d, 0), Path::new("/t"));
        assert_eq!(group_partition_dir(d, 2), Path::new("/t/partition-2"));
        assert_eq!(partition_of("log", PARTITION_LOG_PREFIX), Some(0));
        assert_eq!(partition_of("log-12", PARTITION_LOG_PREFIX), Some(12));
        for bad in ["log-0", "log-01", "log-", "log-x", "logs"] {
            assert_eq!(partition_of(bad, PARTITION_LOG_PREFIX), None, "{bad}");
        }
        assert_eq!(partition_of("partition-3", GROUP_PARTITION_PREFIX), Some(3));
        assert!(check_partitions(0).is_err());
        assert!(check_partitions(PARTITIONS_MAX + 1).is_err());
        assert!(check_partitions(6).is_ok());
    }
}
