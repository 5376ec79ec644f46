//! Errors of replicated logs.

use std::path::PathBuf;

use crate::types::NodeId;

/// An error of a replicated log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage engine failed (the message log).
    #[error(transparent)]
    Storage(#[from] sluice_storage::Error),
    /// A file of the replicated log could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file of the replicated log is damaged; the group refuses to start rather than forget
    /// a vote it gave.
    #[error("{path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A stored batch has no Raft stamp, or one out of order: the log was not written by a
    /// replicated log, or is damaged.
    #[error("{0}")]
    BadEntry(String),
    /// This node is not the group's leader; `leader` is, when known.
    #[error("not the leader of {group}; the leader is {leader:?}")]
    NotLeader {
        /// The group.
        group: String,
        /// The leader, when one is known.
        leader: Option<NodeId>,
        /// Its cluster address.
        leader_addr: Option<String>,
    },
    /// The consensus engine stopped or refused the request.
    #[error("consensus: {0}")]
    Consensus(String),
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
