//! # sluice-storage
//!
//! The embeddable storage engine of sluice: segmented append-only logs with crash recovery,
//! group-committed durability, sparse indexes and retention. No networking lives here; the
//! server in the root crate and in-process users call the same API.
//!
//! # Layout
//! The embedding API is [`Store`] (with [`StoreBuilder`], [`Topic`] and its [`Subscriber`],
//! [`Queue`] and its [`Consumer`]) and [`Log`], with the modules [`config`], [`error`],
//! [`format`], [`fs`], [`inspect`] and [`store`]. The engine's insides are private; the few that
//! tests and offline tools reach into ([`checkpoint`], [`journal`], [`ackstate`], [`offsets`])
//! are hidden from the documentation and are not part of the API.
//!
//! - [`format`] and the types `Offset`, timestamps, `Record`, `Header` and `TopicId` come from
//!   the `sluice-format` crate (shared with the client, which needs no engine).
//! - [`error`]: typed errors (`Io` apart from `Corruption`, `FailStop` after a failed fsync).
//! - [`fs`]: the one trait all file I/O goes through; [`fs::StdFs`] for the real disk,
//!   `fs::sim::SimFs` (feature `sim`) for crash and fault tests, and [`fs::GroupSyncFs`], which
//!   a store wraps around either so syncs of many files share one `syncfs`.
//! - `aligned`: 4096-aligned buffers for O_DIRECT appends.
//! - [`format`] (the `sluice-format` crate): byte layouts of file headers, batches and records
//!   (spec: `docs/format.md`), their typed errors, and [`format::scan`], the one batch scanner
//!   every reader walks with.
//! - `index`: sparse offset and time indexes, caches of the log.
//! - `segment`: one segment file: append, scan, index bookkeeping.
//! - [`checkpoint`]: the recovery point and clean-shutdown marker files.
//! - [`inspect`]: offline inspection, verification and repair of data directories and files
//!   (the engine of `sluice inspect` and `sluice repair`).
//! - [`config`]: per-log settings (`LogConfig`, `FsyncPolicy`, `RecoveryPolicy`).
//! - [`journal`]: (a folder: `format`, `load`, `writer`) the append-only, checksummed state journal with group commit and snapshots
//!   (spec: `docs/format-state.md`).
//! - [`ackstate`]: a queue's ack floor, ack bitmap, cursor and delivery counts, their journal
//!   records and snapshot, and the offline `inspect_queue_state`.
//! - [`offsets`]: durable committed offsets of a topic's named subscribers.
//! - [`store`]: a data directory of topics (partitions, named subscribers, consumer groups) and
//!   queues (shared cursor, acks, redelivery, dead letters).
//! - `log`: a log of segments: append, group commit, read, time lookup, retention, recovery at
//!   open (one file each).
//!
//! ```
//! use sluice_storage::{Log, LogConfig, Record, StdFs, Offset};
//! use std::sync::Arc;
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(Arc::new(StdFs), dir.path().join("orders"), LogConfig::default()).unwrap();
//! let info = log.append(&[Record::from_value("hello"), Record::from_value("world")]).unwrap();
//! assert_eq!(info.base_offset, Offset(0));
//! let records = log.read_records(Offset(0), 10, 1 << 20).unwrap();
//! assert_eq!(records[1].1.value, b"world");
//! log.close().unwrap();
//! ```

#![warn(missing_docs)]

// The embedding API: the modules and re-exports an application uses.
pub mod config;
pub mod error;
/// The byte layouts (the `sluice-format` crate).
pub use sluice_format as format;
pub mod fs;
pub mod inspect;
pub mod store;

// The engine's insides, private to the crate.
mod aligned;
mod index;
mod log;
mod segment;
use sluice_format::types;

// Engine internals that the crate's own tests, fuzz targets and the offline tools reach into:
// not part of the embedding API, hidden from its documentation.
#[doc(hidden)]
pub mod ackstate;
#[doc(hidden)]
pub mod checkpoint;
#[doc(hidden)]
pub mod journal;
#[doc(hidden)]
pub mod offsets;

pub use ackstate::{inspect_queue_state, QueueStateReport};
pub use config::{FsyncPolicy, LogConfig, RecoveryPolicy};
pub use error::{Error, Result};
pub use fs::{FileSystem, FsRef, StdFs};
pub use log::producers::{ProducerBatch, ProducerError, ProducerTable, Verdict};
pub use log::{
    record_error, AppendInfo, Appended, Batch, Elsewhere, Log, RecoveryReport, Retention,
    SegmentInfo,
};
pub use offsets::inspect_offsets;
pub use offsets::COMMIT_METADATA_BYTES_MAX;
pub use store::{
    open_file_limit, Acked, Clock, ClockRef, Consumer, ConsumerId, Delivery, Group, GroupConsumer,
    ManualClock, OpenSettings, OpenStats, PartitionStats, Pending, Queue, QueueConfig,
    QueueReplicator, QueueStats, StartAt, Store, StoreBuilder, StoreConfig, Subscriber,
    SubscriberInfo, SystemClock, Topic, TopicConfig, TopicId, TopicStats, CLEAN_FILE,
    PARTITIONS_MAX,
};
pub use types::{now_ms, Header, Offset, Record, TimestampMs};
