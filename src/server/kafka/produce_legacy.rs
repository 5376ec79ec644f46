//! Produce versions 0 to 2 (message formats v0 and v1), which this broker advertises (a
//! minimum Produce version above 0 makes older librdkafka turn compression off, KAFKA-18659)
//! but refuses: every partition gets UNSUPPORTED_VERSION. `kafka_protocol` has no schema for
//! these versions (Kafka 4 dropped them), so the few fields needed are read and written here.
//!
//! ```text
//! request  v0-v2 = { acks i16 | timeout_ms i32 | [ name string | [ index i32 | records bytes ] ] }
//! response v0    = { [ name string | [ index i32 | error_code i16 | base_offset i64 ] ] }
//! response v1    = v0 + { throttle_time_ms i32 }
//! response v2    = v1 with { log_append_time_ms i64 } after each base_offset
//! ```
//! Arrays are an i32 count then the elements; strings an i16 length then UTF-8; bytes an i32
//! length (-1: null) then the bytes. Big-endian.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;

/// The parts of a Produce v0-v2 request its refusal needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyProduce {
    /// The request's version (0, 1 or 2).
    pub version: i16,
    /// `acks`: 0 means no response at all.
    pub acks: i16,
    /// Each topic's name and partition numbers.
    pub topics: Vec<(String, Vec<i32>)>,
}

fn need(buf: &Bytes, n: usize) -> Result<(), String> {
    if buf.remaining() < n {
        return Err(format!("needs {n} bytes, {} left", buf.remaining()));
    }
    Ok(())
}

/// An array count, refused when negative or larger than the bytes left (each element takes
/// at least `element_bytes_min`).
fn count(buf: &mut Bytes, element_bytes_min: usize) -> Result<usize, String> {
    need(buf, 4)?;
    let n = buf.get_i32();
    let n = usize::try_from(n).map_err(|_| format!("negative array count {n}"))?;
    if n.saturating_mul(element_bytes_min) > buf.remaining() {
        return Err(format!("array count {n} does not fit the bytes left"));
    }
    Ok(n)
}

impl LegacyProduce {
    /// Reads the body of a Produce v0-v2 request (after its header).
    pub fn decode(buf: &mut Bytes, version: i16) -> Result<LegacyProduce, String> {
        need(buf, 6)?;
        let acks = buf.get_i16();
        let _timeout_ms = buf.get_i32();
        let topic_count = count(buf, 2 + 4)?;
        let mut topics = Vec::with_capacity(topic_count);
        for _ in 0..topic_count {
            need(buf, 2)?;
            let len = buf.get_i16();
            let len = usize::try_from(len).map_err(|_| format!("topic name length {len}"))?;
            need(buf, len)?;
            let name = String::from_utf8(buf.split_to(len).to_vec())
                .map_err(|_| "topic name is not UTF-8".to_string())?;
            let partition_count = count(buf, 4 + 4)?;
            let mut partitions = Vec::with_capacity(partition_count);
            for _ in 0..partition_count {
                need(buf, 8)?;
                partitions.push(buf.get_i32());
                let len = buf.get_i32();
                if len >= 0 {
                    need(buf, len as usize)?;
                    buf.advance(len as usize);
                } else if len != -1 {
                    return Err(format!("records length {len}"));
                }
            }
            topics.push((name, partitions));
        }
        Ok(LegacyProduce {
            version,
            acks,
            topics,
        })
    }

    /// The response body refusing every partition with UNSUPPORTED_VERSION.
    pub fn refusal(&self) -> Bytes {
        let code = ResponseError::UnsupportedVersion.code();
        let mut out = BytesMut::new();
        out.put_i32(self.topics.len() as i32);
        for (name, partitions) in &self.topics {
            out.put_i16(name.len() as i16);
            out.put_slice(name.as_bytes());
            out.put_i32(partitions.len() as i32);
            for p in partitions {
                out.put_i32(*p);
                out.put_i16(code);
                out.put_i64(-1); // base_offset
                if self.version >= 2 {
                    out.put_i64(-1); // log_append_time_ms
                }
            }
        }
        if self.version >= 1 {
            out.put_i32(0); // throttle_time_ms
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses_every_partition() {
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i32(1000);
        b.put_i32(1);
        b.put_i16(3);
        b.put_slice(b"abc");
        b.put_i32(2);
        b.put_i32(0);
        b.put_i32(2);
        b.put_slice(&[9, 9]);
        b.put_i32(1);
        b.put_i32(-1);
        let p = LegacyProduce::decode(&mut b.freeze(), 2).unwrap();
        assert_eq!(p.topics, vec![("abc".to_string(), vec![0, 1])]);
        let r = p.refusal();
        // count, name, partition count, 2 x (index, code, base offset, append time), throttle
        assert_eq!(r.len(), 4 + 2 + 3 + 4 + 2 * (4 + 2 + 8 + 8) + 4);
        assert_eq!(&r[13..17], &0i32.to_be_bytes());
        assert_eq!(&r[17..19], &35i16.to_be_bytes());
    }

    #[test]
    fn lying_counts_and_lengths_are_refused() {
        for body in [
            &[0u8, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff][..],
            &[0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff][..],
            &[0, 1, 0, 0][..],
        ] {
            let mut b = Bytes::copy_from_slice(body);
            assert!(LegacyProduce::decode(&mut b, 0).is_err());
        }
    }
}
