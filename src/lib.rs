//! # sluice
//!
//! A durable, log-structured message broker: topics (pub-sub with durable named subscribers and
//! replay) and queues (competing consumers, acks, redelivery, dead letters) on one storage
//! engine, [`sluice_storage`].
//!
//! # Layout
//! - [`broker`]: the broker core, no wire format: topics, queues, groups, subscriptions,
//!   consumers, credit, durability waits, retention; typed results ([`broker::BrokerError`]).
//! - [`protocol`]: the native wire protocol's frames, hand-encoded (specification:
//!   `docs/protocol.md`); from the `sluice-client` crate, which the server shares.
//! - [`server`]: the server: listener under a connection limit, graceful shutdown, the
//!   data-directory lock, `server/native/`, the native protocol's frontend over the core
//!   (connection, dispatch, one module per request family), and `server/kafka/`, the Kafka wire
//!   protocol's frontend over the same core (`docs/kafka.md`).
//! - [`client`]: the async Rust client (connect options, publish, subscribe as a `Stream`,
//!   consume with acks, admin); re-exports the argument types its calls take. It is the
//!   `sluice-client` crate: a program that only talks to a server depends on that crate and
//!   compiles no engine, no server and no CLI.
//! - [`cluster`]: cluster mode: this server as a node of a cluster, each topic partition a
//!   replicated log on the `sluice-replication` crate (`docs/replication.md`).
//! - [`config`]: the server's TOML configuration and its named limits.
//! - [`security`]: users, authentication, access rules and quotas, shared by every protocol
//!   (`docs/security.md`).
//! - [`metrics`]: the broker's counters (atomics on the hot paths) and the Prometheus text of
//!   `GET /metrics`, served by `server/http/`.
//! - `fuzz` (hidden): the entry points of the fuzz targets in `fuzz/`, replayed over the stored
//!   corpus by `tests/fuzz_corpus.rs`.
//! - The `sluice` binary (`serve`, the client commands, `inspect`, `repair`, `bench`) is its own
//!   package, `sluice-cli` (`cli/`), so this library pulls no CLI dependency.
//!
//! # Embedded use
//!
//! The engine works in-process with no server: open a [`sluice_storage::Store`] and call it
//! directly (see `examples/embedded.rs`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use sluice_storage::{Record, StartAt, StdFs, Store, StoreConfig};
//!
//! let store = Store::open(Arc::new(StdFs), "./my-data", StoreConfig::default())?;
//! // Three partitions, each its own log; ordering is per partition.
//! let orders = store.create_topic_with_partitions("orders", None, 3)?;
//! let info = orders.publish_to(1, &[Record::from_value("order 1")])?;
//! let from = orders.subscribe("billing", StartAt::Earliest)?; // one offset per partition
//! let records = orders.read(1, from[1], 100, 1 << 20)?;
//! orders.commit("billing", 1, info.next_offset(), b"")?;
//! store.close()?;
//! # let _ = records;
//! # Ok::<(), sluice_storage::Error>(())
//! ```

#![warn(missing_docs)]

pub mod broker;
pub mod cluster;
pub mod config;
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz;
pub mod metrics;
pub mod security;
pub mod server;

/// The async Rust client (the `sluice-client` crate).
pub use sluice_client as client;
/// The native wire protocol's frames (`sluice_client::protocol`).
pub use sluice_client::protocol;

pub use sluice_storage as storage;

/// The replicated logs and the transport between nodes (the `sluice-replication` crate).
pub use sluice_replication as replication;
