//! Failures of broker operations: a kind (what a frontend turns into its own error code) and a
//! human-readable message.

use std::fmt;

use sluice_storage::Error as StoreError;

/// What kind of failure; each kind is one error code of the native protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named topic, queue or subscriber does not exist.
    NotFound,
    /// The topic or queue already exists.
    AlreadyExists,
    /// An argument was rejected.
    InvalidArgument,
    /// The published batch is not valid.
    InvalidBatch,
    /// A limit was exceeded.
    LimitReached,
    /// The storage engine failed (I/O, corruption, fail-stop).
    Storage,
    /// An id named no open subscription or consumer (or one not open yet).
    UnknownId,
    /// An ack or nack named messages the consumer does not hold; the others were applied.
    NotHeld,
    /// The named subscriber is held by another open subscription.
    InUse,
    /// A publish to a chosen partition was made with a stale partition count (the message
    /// says the current one); nothing was appended.
    PartitionsChanged,
    /// In cluster mode: this node does not lead the partition (or the metadata); the message
    /// names the leader when one is known. Nothing was done: retry on the leader.
    NotLeader,
    /// Anything else (a task that panicked).
    Internal,
}

/// A failed broker operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerError {
    /// What kind.
    pub kind: ErrorKind,
    /// Why, for people.
    pub message: String,
}

impl BrokerError {
    /// A failure of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> BrokerError {
        BrokerError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for BrokerError {}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            StoreError::InvalidBatch(_) => ErrorKind::InvalidBatch,
            StoreError::InvalidArgument(_) | StoreError::OffsetOutOfRange { .. } => {
                ErrorKind::InvalidArgument
            }
            StoreError::LimitReached(_) => ErrorKind::LimitReached,
            StoreError::NotHeld { .. } => ErrorKind::NotHeld,
            StoreError::NotLeader(_) => ErrorKind::NotLeader,
            _ => ErrorKind::Storage,
        };
        BrokerError::new(kind, e.to_string())
    }
}

/// Result of a broker operation.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
