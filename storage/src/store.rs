//! A data directory of named topics and queues, with durable subscriber offsets, a shared
//! cursor with ack state per queue, redelivery and dead letters.
//!
//! Directory layout (see `docs/format.md`):
//! ```text
//! <root>/topics/<name>/        a topic's log segments and its subscriber offsets
//! <root>/queues/<name>/        a queue's log segments and its ack state
//! ```
//!
//! This module is the public face of the messaging layer; the server and in-process users call
//! only what is here.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::LogConfig;
use crate::error::Result;
use crate::fs::FsRef;
use crate::log::{AppendInfo, Log};
use crate::types::{Offset, Record, TimestampMs};

/// Where a new subscriber or an anonymous reader starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The log start offset.
    Earliest,
    /// The visible end: only messages published from now on.
    Latest,
    /// A given offset (clamped to the log's range).
    Offset(Offset),
    /// The first message at or after a time.
    Timestamp(TimestampMs),
}

/// Settings of the store.
#[derive(Clone, Debug, Default)]
pub struct StoreConfig {
    /// Log settings for topics and queues created without their own.
    pub default_log: LogConfig,
}

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

/// Identifies one consumer of a queue (for example one connection's consume call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerId(pub u64);

/// A message handed to one consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Its offset in the queue's log.
    pub offset: Offset,
    /// 1 for the first delivery, 2 for the first redelivery, ...
    pub attempt: u32,
    /// The message.
    pub record: Record,
}

/// A named subscriber of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberInfo {
    /// Its name.
    pub name: String,
    /// The next offset it will read (everything below was committed).
    pub committed: Offset,
    /// Visible end minus committed.
    pub lag: u64,
}

/// Figures of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicStats {
    /// First offset held.
    pub start_offset: Offset,
    /// One past the last visible offset.
    pub end_offset: Offset,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Number of segments.
    pub segments: usize,
    /// Named subscribers and their lag.
    pub subscribers: Vec<SubscriberInfo>,
}

/// Figures of a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStats {
    /// First offset held.
    pub start_offset: Offset,
    /// One past the last visible offset.
    pub end_offset: Offset,
    /// Every offset below it is acknowledged.
    pub ack_floor: Offset,
    /// Next never-delivered offset.
    pub cursor: Offset,
    /// Acknowledged offsets above the floor.
    pub acked_above_floor: u64,
    /// Messages not yet acknowledged (delivered or not).
    pub depth: u64,
    /// Delivered and not yet acked.
    pub in_flight: u64,
    /// Messages moved to the dead-letter queue since creation.
    pub dead_lettered: u64,
    /// Bytes on disk.
    pub size_bytes: u64,
}

/// A data directory of topics and queues.
#[derive(Debug)]
pub struct Store {
    _private: (),
}

/// A topic: a log and its named subscribers.
#[derive(Debug)]
pub struct Topic {
    _private: (),
}

/// A queue: a log, a shared cursor and ack state. Also a consumer group on a topic.
#[derive(Debug)]
pub struct Queue {
    _private: (),
}

impl Store {
    /// Opens (creating if needed) the data directory at `root` and recovers every topic and queue.
    pub fn open(_fs: FsRef, _root: impl Into<PathBuf>, _config: StoreConfig) -> Result<Store> {
        todo!("issue 3")
    }
    /// Creates a topic; `AlreadyExists` if it does.
    pub fn create_topic(&self, _name: &str, _config: Option<LogConfig>) -> Result<Arc<Topic>> {
        todo!("issue 3")
    }
    /// Creates a queue and its dead-letter queue; `AlreadyExists` if it does.
    pub fn create_queue(&self, _name: &str, _config: QueueConfig) -> Result<Arc<Queue>> {
        todo!("issue 3")
    }
    /// A topic by name; `NotFound` if absent.
    pub fn topic(&self, _name: &str) -> Result<Arc<Topic>> {
        todo!("issue 3")
    }
    /// A queue by name; `NotFound` if absent.
    pub fn queue(&self, _name: &str) -> Result<Arc<Queue>> {
        todo!("issue 3")
    }
    /// Names of all topics, sorted.
    pub fn list_topics(&self) -> Vec<String> {
        todo!("issue 3")
    }
    /// Names of all queues, sorted.
    pub fn list_queues(&self) -> Vec<String> {
        todo!("issue 3")
    }
    /// Deletes a topic and its files.
    pub fn delete_topic(&self, _name: &str) -> Result<()> {
        todo!("issue 3")
    }
    /// Deletes a queue and its files (not its dead-letter queue).
    pub fn delete_queue(&self, _name: &str) -> Result<()> {
        todo!("issue 3")
    }
    /// Syncs and closes everything, writing clean-shutdown markers.
    pub fn close(&self) -> Result<()> {
        todo!("issue 3")
    }
}

impl Topic {
    /// Its name.
    pub fn name(&self) -> &str {
        todo!("issue 3")
    }
    /// Its log.
    pub fn log(&self) -> &Log {
        todo!("issue 3")
    }
    /// Appends records (durable per the fsync policy on return).
    pub fn publish(&self, _records: &[Record]) -> Result<AppendInfo> {
        todo!("issue 3")
    }
    /// Resolves a start position to an offset in the log's current range.
    pub fn resolve(&self, _start: StartAt) -> Result<Offset> {
        todo!("issue 3")
    }
    /// Registers a named subscriber if new (at `start`) and returns where it resumes: its
    /// committed offset, clamped to the log's range.
    pub fn subscribe(&self, _name: &str, _start: StartAt) -> Result<Offset> {
        todo!("issue 3")
    }
    /// Moves a subscriber's committed offset (the next offset it will read) to `next`; returns
    /// once durable under the topic's fsync policy. A commit never moves an offset backwards
    /// unless `next` is explicitly below (a seek); it is clamped to the log end.
    pub fn commit(&self, _subscriber: &str, _next: Offset) -> Result<()> {
        todo!("issue 3")
    }
    /// A subscriber's committed offset, if it exists.
    pub fn committed(&self, _subscriber: &str) -> Option<Offset> {
        todo!("issue 3")
    }
    /// Removes a named subscriber.
    pub fn delete_subscriber(&self, _name: &str) -> Result<()> {
        todo!("issue 3")
    }
    /// A consumer group: a shared cursor with acks over this topic's log.
    pub fn group(&self, _name: &str, _config: QueueConfig) -> Result<Arc<Queue>> {
        todo!("issue 3")
    }
    /// Figures.
    pub fn stats(&self) -> TopicStats {
        todo!("issue 3")
    }
}

impl Queue {
    /// Its name.
    pub fn name(&self) -> &str {
        todo!("issue 3")
    }
    /// Its log.
    pub fn log(&self) -> &Log {
        todo!("issue 3")
    }
    /// Its settings.
    pub fn config(&self) -> &QueueConfig {
        todo!("issue 3")
    }
    /// Appends records (durable per the fsync policy on return).
    pub fn publish(&self, _records: &[Record]) -> Result<AppendInfo> {
        todo!("issue 3")
    }
    /// Hands up to `max` messages to `consumer`: expired and nacked ones first, then new ones,
    /// within the unacked bounds. Never blocks; empty when nothing is available.
    pub fn deliver(&self, _consumer: ConsumerId, _max: usize) -> Result<Vec<Delivery>> {
        todo!("issue 3")
    }
    /// Acknowledges messages; returns once the acks are durable. Unknown or already acked
    /// offsets are ignored.
    pub fn ack(&self, _consumer: ConsumerId, _offsets: &[Offset]) -> Result<()> {
        todo!("issue 3")
    }
    /// Returns messages to the queue, redelivered after `delay_ms`.
    pub fn nack(&self, _consumer: ConsumerId, _offsets: &[Offset], _delay_ms: u64) -> Result<()> {
        todo!("issue 3")
    }
    /// A consumer went away: everything it held goes back to the queue at once.
    pub fn release(&self, _consumer: ConsumerId) {
        todo!("issue 3")
    }
    /// Returns messages whose ack deadline passed; dead-letters those past `max_deliveries`.
    /// Returns how many were returned or dead-lettered.
    pub fn expire(&self) -> Result<usize> {
        todo!("issue 3")
    }
    /// The earliest ack deadline or nack delay pending, to schedule the next `expire`.
    pub fn next_deadline(&self) -> Option<TimestampMs> {
        todo!("issue 3")
    }
    /// Figures.
    pub fn stats(&self) -> QueueStats {
        todo!("issue 3")
    }
}
