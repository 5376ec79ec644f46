//! A Fetch response frame whose record batches are not copied: the response is encoded around
//! them (top-level fields, topics and each partition's fields by `kafka_protocol`'s encoders,
//! the array and length prefixes here) and each partition's records follow as the pieces
//! [`stored_to_kafka_pieces`](sluice_storage::format::stored_to_kafka_pieces) made: slices of
//! the buffers the log read them into. The bytes are exactly what `kafka_protocol` would encode
//! for the same response with the records in it (tested for every served version).
//!
//! ```text
//! partition (v4-11) = { fields up to records | records nullable bytes (i32 length) }
//! partition (v12+)  = { fields up to records | records compact nullable bytes (varint length+1)
//!                     | tagged fields }
//! ```
//! Only a partition without tagged fields can be spliced this way (sluice sets none); another
//! falls back to the plain encoder.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchResponse};
use kafka_protocol::protocol::Encodable;

use super::codec::encode_response;
use super::connection::Frame;

/// One partition's records: the pieces and their total length (`None`: no records).
pub(super) type Pieces = Option<(Vec<Bytes>, usize)>;

/// Builds the frame of `resp` (whose partitions' `records` are `None`; the default is an empty
/// `Some`) at `version`, with
/// `records[t][p]` as the records of `resp.responses[t].partitions[p]`.
pub(super) fn fetch_frame(
    resp: &FetchResponse,
    records: Vec<Vec<Pieces>>,
    version: i16,
    correlation_id: i32,
) -> Result<Frame, String> {
    let err = |e: String| format!("Fetch v{version} response: {e}");
    let spliceable = resp.unknown_tagged_fields.is_empty()
        && resp.node_endpoints.is_empty()
        && resp.responses.iter().all(|t| {
            t.unknown_tagged_fields.is_empty() && t.partitions.iter().all(|p| p.records.is_none())
        });
    if !spliceable {
        return whole(resp, records, version, correlation_id);
    }
    let flexible = version >= 12;
    let mut out = FrameBuilder::default();
    out.head.put_i32(0); // the size, filled in at the end
    out.head.put_i32(correlation_id);
    if flexible {
        out.head.put_u8(0); // response header v1: no tagged fields
    }
    out.head.put_i32(resp.throttle_time_ms);
    if version >= 7 {
        out.head.put_i16(resp.error_code);
        out.head.put_i32(resp.session_id);
    }
    array_len(&mut out.head, resp.responses.len(), flexible);
    for (t, topic_records) in resp.responses.iter().zip(records) {
        let name = t.topic.0.as_bytes();
        if version <= 11 {
            out.head.put_i16(name.len() as i16);
            out.head.put_slice(name);
        } else if version == 12 {
            varint(&mut out.head, name.len() as u32 + 1);
            out.head.put_slice(name);
        } else {
            out.head.put_slice(t.topic_id.as_bytes());
        }
        array_len(&mut out.head, t.partitions.len(), flexible);
        for (p, pieces) in t.partitions.iter().zip(topic_records) {
            partition(&mut out, p, pieces, version).map_err(err)?;
        }
        if flexible {
            out.head.put_u8(0); // the topic's tagged fields
        }
    }
    if flexible {
        out.head.put_u8(0); // the response's tagged fields
    }
    Ok(out.finish())
}

/// The frame built in pieces: `head` gathers small fields until a records piece follows.
#[derive(Default)]
struct FrameBuilder {
    done: Vec<Bytes>,
    head: BytesMut,
    len: usize,
}

impl FrameBuilder {
    fn push(&mut self, piece: Bytes) {
        if !self.head.is_empty() {
            let head = self.head.split().freeze();
            self.len += head.len();
            self.done.push(head);
        }
        self.len += piece.len();
        self.done.push(piece);
    }

    fn finish(mut self) -> Frame {
        let head = self.head.split().freeze();
        self.len += head.len();
        if !head.is_empty() {
            self.done.push(head);
        }
        let size = (self.len - 4) as i32;
        // The first piece is the head that starts with the size.
        let first = &mut self.done[0];
        let mut patched = BytesMut::from(&first[..]);
        patched[..4].copy_from_slice(&size.to_be_bytes());
        *first = patched.freeze();
        self.done
    }
}

fn array_len(b: &mut BytesMut, n: usize, flexible: bool) {
    if flexible {
        varint(b, n as u32 + 1);
    } else {
        b.put_i32(n as i32);
    }
}

/// An unsigned varint (LEB128), as flexible versions write lengths.
fn varint(b: &mut BytesMut, mut n: u32) {
    while n >= 0x80 {
        b.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    b.put_u8(n as u8);
}

/// One partition: its fields encoded with null records, the null marker (and the empty tagged
/// fields after it) replaced by the length and the pieces.
fn partition(
    out: &mut FrameBuilder,
    p: &PartitionData,
    pieces: Pieces,
    version: i16,
) -> Result<(), String> {
    let flexible = version >= 12;
    let mut fields = BytesMut::new();
    p.encode(&mut fields, version).map_err(|e| e.to_string())?;
    // Null records, then (flexible) an empty tagged-fields count.
    let tail: &[u8] = if flexible { &[0, 0] } else { &[0xff; 4] };
    if p.records.is_some() || !fields.ends_with(tail) {
        return Err("a partition with records or tagged fields set cannot be spliced".into());
    }
    fields.truncate(fields.len() - tail.len());
    out.head.extend_from_slice(&fields);
    match pieces {
        None if flexible => out.head.put_u8(0),
        None => out.head.put_i32(-1),
        Some((list, len)) => {
            if flexible {
                varint(&mut out.head, len as u32 + 1);
            } else {
                out.head.put_i32(len as i32);
            }
            for piece in list {
                out.push(piece);
            }
        }
    }
    if flexible {
        out.head.put_u8(0);
    }
    Ok(())
}

/// The plain path: the records joined into each partition and the response encoded whole.
fn whole(
    resp: &FetchResponse,
    records: Vec<Vec<Pieces>>,
    version: i16,
    correlation_id: i32,
) -> Result<Frame, String> {
    let mut resp = resp.clone();
    for (t, topic_records) in resp.responses.iter_mut().zip(records) {
        for (p, pieces) in t.partitions.iter_mut().zip(topic_records) {
            p.records = pieces.map(|(list, _)| Bytes::from(list.concat()));
        }
    }
    encode_response(ApiKey::Fetch, version, correlation_id, &resp).map(|f| vec![f])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn response(version: i16) -> (FetchResponse, Vec<Vec<Pieces>>) {
        let mut resp = FetchResponse::default();
        if version >= 7 {
            resp.session_id = 0;
            resp.error_code = 0;
        }
        resp.throttle_time_ms = 3;
        let mut records = Vec::new();
        for t in 0..2u8 {
            let mut topic = FetchableTopicResponse::default();
            if version <= 12 {
                topic.topic = TopicName(StrBytes::from_string(format!("topic-{t}")));
            }
            if version >= 13 {
                topic.topic_id = uuid::Uuid::from_bytes([t + 1; 16]);
            }
            let mut rec = Vec::new();
            for p in 0..3 {
                let mut d = PartitionData::default();
                d.records = None;
                d.partition_index = p;
                d.high_watermark = 100 + p as i64;
                d.last_stable_offset = 100;
                d.log_start_offset = 1;
                if p == 2 {
                    d.error_code = 1;
                    rec.push(None);
                } else {
                    let a = Bytes::from(vec![t; 300]);
                    let b = Bytes::from(vec![p as u8; 70_000]);
                    rec.push(Some((vec![a.clone(), b.clone()], a.len() + b.len())));
                }
                topic.partitions.push(d);
            }
            resp.responses.push(topic);
            records.push(rec);
        }
        (resp, records)
    }

    #[test]
    fn the_spliced_frame_is_what_the_encoder_makes_at_every_version() {
        for version in 4..=18 {
            let (resp, records) = response(version);
            let spliced = fetch_frame(&resp, records.clone(), version, 77).unwrap();
            assert!(
                spliced.len() > 4,
                "v{version}: records are pieces of their own"
            );
            let plain = whole(&resp, records, version, 77).unwrap();
            assert_eq!(spliced.concat(), plain.concat(), "v{version}");
        }
    }

    #[test]
    fn a_response_with_tagged_fields_is_encoded_whole() {
        let (mut resp, records) = response(12);
        resp.unknown_tagged_fields
            .insert(5, Bytes::from_static(b"x"));
        let frame = fetch_frame(&resp, records.clone(), 12, 1).unwrap();
        assert_eq!(frame.len(), 1);
        assert_eq!(
            frame.concat(),
            whole(&resp, records, 12, 1).unwrap().concat()
        );
    }
}
