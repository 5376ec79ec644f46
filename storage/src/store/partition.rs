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

/// The persistent id of a topic: 16 random bytes (a UUID, version 4), never all zero, made when
/// the topic is created (or first opened, for a topic older than ids). A topic deleted and
/// created again gets a new one.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TopicId(pub [u8; 16]);

impl TopicId {
    /// A new random id (UUID version 4, RFC 4122 variant), from the kernel's random source.
    pub fn random() -> Result<TopicId> {
        let mut b = [0u8; 16];
        let mut at = 0;
        while at < b.len() {
            // SAFETY: writes at most `b.len() - at` bytes into the rest of `b`.
            let n = unsafe { libc::getrandom(b[at..].as_mut_ptr().cast(), b.len() - at, 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // getrandom(2) reads no file; the path names what failed.
                return Err(Error::io("getrandom(2) for a topic id", e));
            }
            at += n as usize;
        }
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Ok(TopicId(b))
    }

    /// True for the all-zero id, which no topic has (Kafka's "no id").
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// Parses the hyphenated form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub fn parse(s: &str) -> Option<TopicId> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 || s.len() != 36 {
            return None;
        }
        let mut b = [0u8; 16];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(TopicId(b))
    }
}

impl std::fmt::Display for TopicId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

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
    fn ids_are_v4_and_print_as_uuids() {
        let a = TopicId::random().unwrap();
        let b = TopicId::random().unwrap();
        assert_ne!(a, b);
        assert!(!a.is_nil());
        let s = a.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(TopicId::parse(&s), Some(a));
        assert_eq!(TopicId::parse("nope"), None);
    }

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
