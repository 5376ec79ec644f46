//! Newtypes shared by every layer: message offsets, timestamps and records.
//!
//! A message `Offset` and a byte position in a file are never the same type: positions are plain
//! `u64` values named `position` or `*_pos`, offsets are always `Offset`.

use std::fmt;

/// The offset of a message in a log: dense, starting at 0, assigned at append.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Offset(pub u64);

impl Offset {
    /// The offset `n` messages after this one.
    #[allow(clippy::should_implement_trait)] // adds a count, not another offset
    pub fn add(self, n: u64) -> Offset {
        Offset(self.0 + n)
    }

    /// The raw value.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Milliseconds since the Unix epoch.
pub type TimestampMs = i64;

/// The current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> TimestampMs {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A record header: a name and a binary value.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Header {
    /// Header name (UTF-8 by convention, not checked).
    pub name: Vec<u8>,
    /// Header value.
    pub value: Vec<u8>,
}

impl Header {
    /// Builds a header from anything byte-like.
    pub fn new(name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A record to append: the log assigns its offset.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Record {
    /// Creation time; `None` means "now" at append.
    pub timestamp_ms: Option<TimestampMs>,
    /// Optional key.
    pub key: Option<Vec<u8>>,
    /// Optional headers.
    pub headers: Vec<Header>,
    /// The payload.
    pub value: Vec<u8>,
}

impl Record {
    /// A record with only a value.
    pub fn from_value(value: impl Into<Vec<u8>>) -> Self {
        Record {
            value: value.into(),
            ..Record::default()
        }
    }
}
