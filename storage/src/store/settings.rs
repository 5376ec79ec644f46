//! A queue's settings, the rules for names, the config file of a topic, queue or group
//! directory, and the names of dead-letter queues.

use std::path::Path;

use crate::config::LogConfig;
use crate::error::{Error, IoContext, Result};
use crate::fs::FileSystem;
use crate::journal;

use super::partition::{TopicConfig, TopicId, KIND_TOPIC_V2, PARTITIONS_MAX};

/// Settings of a queue (or of a consumer group on a topic).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// The queue's log settings.
    pub log: LogConfig,
    /// A delivered message not acked within this time goes back to the queue.
    pub ack_timeout_ms: u64,
    /// After this many deliveries without an ack a message is dead-lettered.
    pub max_deliveries: u32,
    /// Name of the dead-letter queue (`<queue>.dlq` when `None`).
    pub dead_letter: Option<String>,
    /// Most delivered-but-unacked messages in the whole queue; at the bound delivery pauses.
    pub max_unacked: u32,
    /// Most delivered-but-unacked messages per consumer (prefetch).
    pub max_unacked_per_consumer: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            log: LogConfig::default(),
            ack_timeout_ms: 30_000,
            max_deliveries: 5,
            dead_letter: None,
            max_unacked: 100_000,
            max_unacked_per_consumer: 1_000,
        }
    }
}

impl QueueConfig {
    /// Checks every setting's range (the log's too); the dead-letter name's rules are checked
    /// where the queue is created, since a default name depends on the queue's own.
    pub fn validate(&self) -> Result<()> {
        self.log.validate().map_err(Error::InvalidArgument)?;
        crate::config::check_duration_ms("ack_timeout_ms", self.ack_timeout_ms)
            .map_err(Error::InvalidArgument)?;
        if let Some(d) = &self.dead_letter {
            validate_name(d)?;
        }
        Ok(())
    }
}

/// Name of the config file of a topic, queue or group directory.
pub const CONFIG_FILE: &str = "config";
/// Magic of a config file.
pub const CONFIG_MAGIC: [u8; 8] = *b"SLUICECF";
/// Kind (the `generation` field of a config file) of a topic config written before partitions
/// (a bare `LogConfig`); read, never written (see `KIND_TOPIC_V2`).
pub const KIND_TOPIC: u64 = 1;
/// Kind of a queue or group config (`QueueConfig`).
pub const KIND_QUEUE: u64 = 2;
/// Subdirectory of a topic or queue directory holding its log segments.
pub const LOG_DIR: &str = "log";
/// Subdirectory of a topic directory holding its consumer groups.
pub const GROUPS_DIR: &str = "groups";

/// Longest topic, queue, group or subscriber name.
pub const NAME_MAX: usize = 200;

/// Checks a topic, queue, group or subscriber name: 1 to 200 characters of `[A-Za-z0-9._-]`,
/// not `.` or `..`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid name {name:?}: use 1 to {NAME_MAX} characters of [A-Za-z0-9._-], not . or .."
        )))
    }
}

pub(in crate::store) fn write_config<T: serde::Serialize>(
    fs: &dyn FileSystem,
    dir: &Path,
    kind: u64,
    c: &T,
) -> Result<()> {
    let body = postcard::to_stdvec(c).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let path = dir.join(CONFIG_FILE);
    crate::fs::write_atomic(
        fs,
        &path,
        &journal::encode_snapshot(CONFIG_MAGIC, kind, &body),
    )
    .at(&path)
}

/// Reads a topic (`LogConfig`) or queue (`QueueConfig`) config file; `None` when absent.
pub(in crate::store) fn read_config<T: serde::de::DeserializeOwned>(
    fs: &dyn FileSystem,
    dir: &Path,
    kind: u64,
) -> Result<Option<T>> {
    let path = dir.join(CONFIG_FILE);
    if !fs.exists(&path) {
        return Ok(None);
    }
    let bytes = crate::fs::read_all(fs, &path).at(&path)?;
    let (k, body) = journal::decode_snapshot(&bytes, CONFIG_MAGIC)
        .map_err(|e| Error::corruption(&path, 0, e))?;
    if k != kind {
        return Err(Error::corruption(
            &path,
            0,
            format!("config kind {k}, expected {kind}"),
        ));
    }
    postcard::from_bytes(body)
        .map(Some)
        .map_err(|e| Error::corruption(&path, 0, format!("config body: {e}")))
}

/// Reads the saved config of a queue or group directory without opening it.
pub fn inspect_queue_config(fs: &dyn FileSystem, dir: &Path) -> Result<Option<QueueConfig>> {
    read_config(fs, dir, KIND_QUEUE)
}

/// Reads the saved config of a topic directory without opening it: a config written before
/// partitions ([`KIND_TOPIC`], a bare `LogConfig`) reads as one partition with the nil id.
pub fn inspect_topic_config(fs: &dyn FileSystem, dir: &Path) -> Result<Option<TopicConfig>> {
    read_topic_config(fs, dir)
}

/// Reads a topic's config, either kind; see [`inspect_topic_config`].
pub(in crate::store) fn read_topic_config(
    fs: &dyn FileSystem,
    dir: &Path,
) -> Result<Option<TopicConfig>> {
    let path = dir.join(CONFIG_FILE);
    if !fs.exists(&path) {
        return Ok(None);
    }
    let bytes = crate::fs::read_all(fs, &path).at(&path)?;
    let (k, body) = journal::decode_snapshot(&bytes, CONFIG_MAGIC)
        .map_err(|e| Error::corruption(&path, 0, e))?;
    let bad = |e: postcard::Error| Error::corruption(&path, 0, format!("config body: {e}"));
    let c = match k {
        KIND_TOPIC => TopicConfig {
            log: postcard::from_bytes(body).map_err(bad)?,
            partitions: 1,
            id: TopicId([0; 16]),
        },
        KIND_TOPIC_V2 => postcard::from_bytes::<TopicConfig>(body).map_err(bad)?,
        k => {
            return Err(Error::corruption(
                &path,
                0,
                format!("config kind {k}, expected {KIND_TOPIC} or {KIND_TOPIC_V2}"),
            ))
        }
    };
    if c.partitions == 0 || c.partitions > PARTITIONS_MAX {
        let what = format!("config counts {} partitions", c.partitions);
        return Err(Error::corruption(&path, 0, what));
    }
    Ok(Some(c))
}

/// Checks that the dead-letter queue name a queue or group would derive fits in a name.
pub(in crate::store) fn check_derived_dlq(owner: &str, dlq: &str) -> Result<()> {
    validate_name(dlq).map_err(|_| {
        Error::InvalidArgument(format!(
            "the default dead-letter queue name of {owner} would be {} characters, over the \
             limit of {NAME_MAX}: name a dead_letter queue or use a shorter name",
            dlq.len()
        ))
    })
}

/// The dead-letter queue a queue or group with `config` uses, if any: `default` unless named.
pub(in crate::store) fn planned_dlq(
    owner: &str,
    config: &QueueConfig,
    default: String,
) -> Result<Option<String>> {
    if let Some(d) = &config.dead_letter {
        validate_name(d)?;
    }
    if config.max_deliveries == 0 {
        return Ok(None);
    }
    match &config.dead_letter {
        Some(d) => Ok(Some(d.clone())),
        None => {
            check_derived_dlq(owner, &default)?;
            Ok(Some(default))
        }
    }
}

/// The settings of a dead-letter queue made for a queue with `c`: same log settings, no
/// further dead-lettering (`max_deliveries` 0 means unlimited).
pub(in crate::store) fn dlq_config(c: &QueueConfig) -> QueueConfig {
    QueueConfig {
        max_deliveries: 0,
        dead_letter: None,
        ..c.clone()
    }
}
