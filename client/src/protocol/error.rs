//! Error codes of `ERROR` frames and decoding errors.

use std::fmt;

/// Error codes carried by `ERROR` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// A frame could not be decoded (fatal: the connection is closed).
    Malformed = 1,
    /// The handshake's magic or version is not supported (fatal).
    UnsupportedVersion = 2,
    /// A length prefix exceeded `frame_bytes_max` (fatal).
    FrameTooLarge = 3,
    /// The named topic, queue or subscriber does not exist.
    NotFound = 4,
    /// The topic or queue already exists.
    AlreadyExists = 5,
    /// An argument was rejected.
    InvalidArgument = 6,
    /// The published batch is not valid.
    InvalidBatch = 7,
    /// A limit was exceeded (fatal for connection limits).
    LimitReached = 8,
    /// A timeout expired: handshake, idle or mid-frame (fatal).
    Timeout = 9,
    /// The storage engine failed (I/O, corruption, fail-stop).
    Storage = 10,
    /// The server is shutting down.
    ShuttingDown = 11,
    /// A request id named no open subscription or consumer.
    UnknownId = 12,
    /// Anything else.
    Internal = 13,
    /// An ack or nack named messages the consumer does not hold; the others were applied.
    NotHeld = 14,
    /// The named subscriber is held by another open subscription.
    InUse = 15,
    /// A publish named a partition chosen with a stale partition count; nothing was appended.
    PartitionsChanged = 16,
    /// Authentication failed, or is required first (users exist).
    Unauthenticated = 17,
    /// Access control refused the request; nothing changed.
    Forbidden = 18,
    /// In a cluster: this node does not lead the partition or the metadata the request
    /// changes; the message names the leader when one is known. Nothing was done.
    NotLeader = 19,
}

impl ErrorCode {
    /// From the wire value (unknown values map to `Internal`).
    pub fn from_u16(v: u16) -> ErrorCode {
        use ErrorCode::*;
        match v {
            1 => Malformed,
            2 => UnsupportedVersion,
            3 => FrameTooLarge,
            4 => NotFound,
            5 => AlreadyExists,
            6 => InvalidArgument,
            7 => InvalidBatch,
            8 => LimitReached,
            9 => Timeout,
            10 => Storage,
            11 => ShuttingDown,
            12 => UnknownId,
            14 => NotHeld,
            15 => InUse,
            16 => PartitionsChanged,
            17 => Unauthenticated,
            18 => Forbidden,
            19 => NotLeader,
            _ => Internal,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame body is truncated or holds an impossible value.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The length prefix is above the limit (rejected before any allocation).
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// Unknown frame kind.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// A `HELLO` whose magic is not sluice's: not a sluice client (answered `UnsupportedVersion`).
    #[error("malformed frame: bad magic in HELLO {0:02x?}")]
    BadMagic([u8; 4]),
    /// The underlying stream failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) fn malformed(what: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed(what.into())
}
