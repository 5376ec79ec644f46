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

/// The persistent id of a topic: 16 random bytes (a UUID, version 4), never all zero, made when
/// the topic is created (or first opened, for a topic older than ids). A topic deleted and
/// created again gets a new one.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TopicId(pub [u8; 16]);

impl TopicId {
    /// A new random id (UUID version 4, RFC 4122 variant), from the kernel's random source.
    pub fn random() -> std::io::Result<TopicId> {
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
                return Err(e);
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
}
