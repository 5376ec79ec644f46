//! Reading messages without consuming them (the admin API's message browser), and purging a
//! queue. Blocking.

use serde::Serialize;
use sluice_storage::{Log, Offset, Record};

use super::{Broker, BrokerError, ErrorKind, Result};

/// Most messages one peek returns.
pub const PEEK_MESSAGES_MAX: usize = 1000;
/// Most bytes of messages one peek reads.
pub const PEEK_BYTES_MAX: usize = 4 << 20;

/// A message as the browser shows it: key, value and header values as UTF-8 text when they
/// are, as lowercase hex (`*_hex`) when not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Peeked {
    /// Its offset.
    pub offset: u64,
    /// Its timestamp (milliseconds since the epoch).
    pub timestamp_ms: i64,
    /// The key, when there is one.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Bytes,
    /// The headers, in order.
    pub headers: Vec<(String, Bytes)>,
}

/// Bytes shown as text when they are UTF-8, as hex when not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Bytes {
    /// Valid UTF-8.
    #[serde(rename = "text")]
    Text(String),
    /// Anything else, in lowercase hex.
    #[serde(rename = "hex")]
    Hex(String),
}

impl Bytes {
    fn of(b: &[u8]) -> Bytes {
        match std::str::from_utf8(b) {
            Ok(s) => Bytes::Text(s.to_string()),
            Err(_) => Bytes::Hex(b.iter().map(|x| format!("{x:02x}")).collect()),
        }
    }
}

fn peeked(offset: Offset, r: Record) -> Peeked {
    Peeked {
        offset: offset.0,
        timestamp_ms: r.timestamp_ms.unwrap_or_default(),
        key: r.key.as_deref().map(Bytes::of),
        value: Bytes::of(&r.value),
        headers: r
            .headers
            .iter()
            .map(|h| {
                (
                    String::from_utf8_lossy(&h.name).into_owned(),
                    Bytes::of(&h.value),
                )
            })
            .collect(),
    }
}

fn check_count(count: usize) -> Result<()> {
    if count == 0 || count > PEEK_MESSAGES_MAX {
        let m = format!("count must be 1 to {PEEK_MESSAGES_MAX} (got {count})");
        return Err(BrokerError::new(ErrorKind::InvalidArgument, m));
    }
    Ok(())
}

/// Up to `count` messages of `log` from `offset`, clamped to its start.
fn peek_log(log: &Log, offset: u64, count: usize) -> Result<Vec<Peeked>> {
    let from = Offset(offset.max(log.start_offset().0));
    let records = log.read_records(from, count, PEEK_BYTES_MAX)?;
    Ok(records.into_iter().map(|(o, r)| peeked(o, r)).collect())
}

impl Broker {
    /// Up to `count` messages of topic `topic`'s partition from `offset` (clamped to what the
    /// partition holds), read without moving any subscriber or cursor.
    pub fn peek_topic(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        count: usize,
    ) -> Result<Vec<Peeked>> {
        check_count(count)?;
        peek_log(
            &self.store.topic(topic)?.partition(partition)?,
            offset,
            count,
        )
    }

    /// Up to `count` messages of queue `queue` from `offset` (clamped to its log), read without
    /// delivering them: acked ones included.
    pub fn peek_queue(&self, queue: &str, offset: u64, count: usize) -> Result<Vec<Peeked>> {
        check_count(count)?;
        peek_log(self.store.queue(queue)?.log(), offset, count)
    }

    /// Settles every message of queue `queue` published so far, without delivering it (a
    /// purge): returns how many were waiting. Refused while a consumer holds messages. Durable
    /// on return.
    pub fn purge_queue(&self, queue: &str) -> Result<u64> {
        let q = self.store.queue(queue)?;
        let stats = q.stats();
        // Up to the visible end: a publish not yet durable is not confirmed, nor purged.
        q.reset_to(stats.end_offset)?;
        let before = stats.depth;
        tracing::info!(queue, purged = before, "queue purged");
        Ok(before)
    }
}

#[cfg(test)]
mod tests {
    use super::Bytes;

    #[test]
    fn bytes_are_text_when_utf8_and_hex_when_not() {
        assert_eq!(Bytes::of("héllo".as_bytes()), Bytes::Text("héllo".into()));
        assert_eq!(Bytes::of(&[0xff, 0x00, 0x1a]), Bytes::Hex("ff001a".into()));
        let json = serde_json::to_string(&Bytes::of(&[0xc3])).unwrap();
        assert_eq!(json, r#"{"hex":"c3"}"#);
    }
}
