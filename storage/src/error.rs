//! Typed errors of the storage engine.
//!
//! `Io` is an operating-system failure with the path it happened on; `Corruption` is a file whose
//! bytes break the format, with the file, the byte position and what is wrong. The two are kept
//! apart so callers can decide: retry or report an `Io`, stop and repair on a `Corruption`.

use std::io;
use std::path::PathBuf;

use crate::types::Offset;

/// Result alias of the storage engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the storage engine returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A file's bytes do not follow the format.
    #[error("corruption in {segment} at byte {position}: {reason}")]
    Corruption {
        /// The damaged file.
        segment: PathBuf,
        /// Byte position in that file where the damage starts.
        position: u64,
        /// What is wrong, in words.
        reason: String,
    },
    /// A previous fsync failed: the log accepts no more writes until it is reopened, because the
    /// kernel may have dropped the dirty pages whose write failed (fail-stop).
    #[error("{path} refuses writes after a failed fsync ({cause}); restart to run recovery")]
    FailStop {
        /// The log directory.
        path: PathBuf,
        /// The error of the failed sync.
        cause: String,
    },
    /// A read asked for an offset the log does not hold.
    #[error("offset {offset} is out of range: the log holds offsets {start}..{end}")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: Offset,
        /// The first offset the log holds.
        start: Offset,
        /// One past the last offset the log holds.
        end: Offset,
    },
    /// An idempotent producer's batch is out of sequence or from a fenced epoch; nothing was
    /// written.
    #[error(transparent)]
    Producer(#[from] crate::log::producers::ProducerError),
    /// A batch or record broke a limit or the record layout.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// A caller passed a value the engine cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A named topic, queue or subscriber does not exist.
    #[error("{kind} {name:?} does not exist")]
    NotFound {
        /// What kind of thing was looked up.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A named topic or queue already exists.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// What kind of thing.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// An ack or nack named messages the consumer does not hold (never delivered to it, already
    /// settled, or taken back by the queue after their deadline or for dead-lettering). Those
    /// were left alone; the others in the same call were applied.
    #[error("{} offset(s) not held by this consumer, left unacknowledged: {}", offsets.len(), short_list(offsets))]
    NotHeld {
        /// The offsets refused.
        offsets: Vec<Offset>,
    },
    /// A bounded resource is full; the caller should wait or slow down.
    #[error("limit reached: {0}")]
    LimitReached(String),
    /// Another process (or another open store in this one) holds the data directory's lock.
    #[error("data directory {dir} is already in use by another sluice process (lock file {lock} is held)")]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The log or store was closed.
    #[error("closed")]
    Closed,
    /// In a cluster: this node does not lead the replicated log of what was asked for (a
    /// replicated queue), or lost its leadership before the change was committed. Nothing
    /// was confirmed; the caller retries on the leader.
    #[error("not the leader: {0}")]
    NotLeader(String),
}

impl Error {
    /// Wraps an `io::Error` with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds a `Corruption` error.
    pub fn corruption(
        segment: impl Into<PathBuf>,
        position: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            segment: segment.into(),
            position,
            reason: reason.into(),
        }
    }

    /// True when the process or the system ran out of file descriptors (EMFILE or ENFILE). Only
    /// an `open` fails so, never an fsync: such an error must not be taken for a failed sync.
    pub fn is_fd_exhausted(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::EMFILE) | Some(libc::ENFILE)
            ),
            _ => false,
        }
    }

    /// True when the error came from a full disk (ENOSPC or EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT)
            ),
            _ => false,
        }
    }
}

/// Adds a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// The first few offsets of a list, for an error message of bounded length.
fn short_list(offsets: &[Offset]) -> String {
    const SHOWN: usize = 10;
    let mut s: Vec<String> = offsets
        .iter()
        .take(SHOWN)
        .map(|o| o.0.to_string())
        .collect();
    if offsets.len() > SHOWN {
        s.push(format!("... ({} more)", offsets.len() - SHOWN));
    }
    s.join(", ")
}
