//! Messages as delivered: queue messages of `MESSAGES` frames and topic messages decoded from
//! `DELIVER` frames.

use sluice_format::Record;
use sluice_format::{self as format, BatchRecords};

use super::error::{malformed, ProtocolError};
use super::frame::FRAME_HEAD_LEN;

/// A message pushed to a queue consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueMessage {
    /// The partition of the group's topic it is from (0 for a queue); with the offset, the
    /// handle for ack and nack.
    pub partition: u32,
    /// Offset in the queue's (or topic partition's) log; the handle for ack and nack.
    pub offset: u64,
    /// 1 for a first delivery.
    pub attempt: u32,
    /// The message.
    pub record: Record,
}

impl QueueMessage {
    /// Bytes of this message in a `MESSAGES` frame: fixed fields, key, every header and value.
    pub fn encoded_len(&self) -> usize {
        let r = &self.record;
        let key = r.key.as_ref().map_or(0, |k| 4 + k.len());
        let headers: usize = r
            .headers
            .iter()
            .map(|h| 8 + h.name.len() + h.value.len())
            .sum();
        MESSAGE_MIN_LEN + key + headers + r.value.len()
    }
}

/// Bytes of a `MESSAGES` frame holding no message: length prefix, kind, request id and count.
pub const MESSAGES_FRAME_OVERHEAD: usize = 4 + FRAME_HEAD_LEN + 4;

/// Most headers a message of a `MESSAGES` frame can carry (its count is 16 bits). Publishes are
/// capped well below ([`format::RECORD_HEADERS_MAX`]) and no stored record holds more
/// ([`format::STORED_RECORD_HEADERS_MAX`]).
pub const MESSAGE_HEADERS_MAX: usize = u16::MAX as usize;
const _: () = assert!(format::STORED_RECORD_HEADERS_MAX <= MESSAGE_HEADERS_MAX);

/// Bytes of the smallest `message` of a `MESSAGES` frame: partition, offset, attempt,
/// timestamp, an absent key, no headers and an empty value.
pub(crate) const MESSAGE_MIN_LEN: usize = 4 + 8 + 4 + 8 + 1 + 2 + 4;

/// A topic message decoded from a `Deliver` frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// The message (timestamp always set).
    pub record: Record,
}

/// Checks a delivered batch (length and both checksums) and returns its records in
/// `from..to`; a malformed record is an error of the same walk that decodes them, so every byte
/// is read once.
pub fn decode_delivery(
    partition: u32,
    from: u64,
    to: u64,
    batch: &[u8],
) -> Result<Vec<Message>, ProtocolError> {
    let h = format::decode_batch_header(batch, u32::MAX).map_err(|e| malformed(e.to_string()))?;
    if h.batch_len as usize != batch.len() {
        return Err(malformed(format!(
            "delivered batch says {} bytes but {} arrived",
            h.batch_len,
            batch.len()
        )));
    }
    if !format::check_records_crc(batch, &h) {
        return Err(malformed(
            "delivered batch: records checksum mismatch".to_string(),
        ));
    }
    // Grown record by record: the counts come off the wire.
    let mut out = Vec::new();
    let records = BatchRecords::new(batch, &h).map_err(|e| malformed(e.to_string()))?;
    for r in records.iter() {
        let r = r.map_err(malformed)?;
        if r.offset.0 >= from && r.offset.0 < to {
            out.push(Message {
                partition,
                offset: r.offset.0,
                record: r.to_record(),
            });
        }
    }
    Ok(out)
}
