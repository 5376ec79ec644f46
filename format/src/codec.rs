//! Decompression of the records section of a compressed batch, bounded: the codecs of Kafka's
//! record batch v2 (gzip, snappy with or without the xerial framing Java clients write, lz4
//! frames, zstd frames). sluice never compresses on its own; it stores batches as their producer
//! compressed them and decompresses only to validate them and to hand single records to queue
//! consumers and native clients.
//!
//! Every decoder stops at [`DECOMPRESSED_BYTES_MAX`] (or the caller's smaller bound), so a small
//! hostile batch cannot make the broker allocate without bound (a "zip bomb").

use std::io::Read;

use super::error::BatchError;

/// Most bytes the records of one compressed batch may decompress to.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// A compression codec, by its number in the attribute bits of a batch (Kafka's numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// 0: not compressed.
    None,
    /// 1: gzip.
    Gzip,
    /// 2: snappy.
    Snappy,
    /// 3: lz4 (frame format).
    Lz4,
    /// 4: zstd.
    Zstd,
}

impl Codec {
    /// The codec numbered `n`; `None` for numbers no codec has (5-7).
    pub fn from_bits(n: u8) -> Option<Codec> {
        Some(match n {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }

    /// Its number.
    pub fn bits(self) -> u8 {
        self as u8
    }

    /// Its name, as Kafka spells it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// Decompresses `input` compressed with `codec` into at most `max` bytes.
pub fn decompress(codec: Codec, input: &[u8], max: usize) -> Result<Vec<u8>, BatchError> {
    let fail = |reason: String| BatchError::Decompress {
        codec: codec.name(),
        reason,
    };
    match codec {
        Codec::None => Ok(input.to_vec()),
        Codec::Gzip => read_bounded(flate2::read::GzDecoder::new(input), max, codec),
        Codec::Snappy => snappy(input, max).map_err(fail),
        Codec::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(input), max, codec),
        Codec::Zstd => {
            let d =
                ruzstd::decoding::StreamingDecoder::new(input).map_err(|e| fail(e.to_string()))?;
            read_bounded(d, max, codec)
        }
    }
}

/// Reads a decoder to its end, failing past `max` bytes.
fn read_bounded(r: impl Read, max: usize, codec: Codec) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let mut limited = r.take(max as u64 + 1);
    limited
        .read_to_end(&mut out)
        .map_err(|e| BatchError::Decompress {
            codec: codec.name(),
            reason: e.to_string(),
        })?;
    if out.len() > max {
        return Err(BatchError::DecompressedTooLarge { max });
    }
    Ok(out)
}

/// The xerial framing of snappy that Kafka's Java client writes: a 16-byte header, then blocks
/// of `{ len u32 big-endian | raw snappy block }`. Without the header, the input is one raw
/// snappy block (what librdkafka writes).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

fn snappy(input: &[u8], max: usize) -> Result<Vec<u8>, String> {
    if input.len() < XERIAL_HEADER_LEN || &input[..8] != XERIAL_MAGIC {
        let mut out = Vec::new();
        snappy_block(input, max, &mut out)?;
        return Ok(out);
    }
    let mut out = Vec::new();
    let mut pos = XERIAL_HEADER_LEN;
    while pos < input.len() {
        let len_bytes = input
            .get(pos..pos + 4)
            .ok_or("snappy block length cut short")?;
        let len = u32::from_be_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        pos += 4;
        let block = input
            .get(pos..pos.saturating_add(len))
            .ok_or("snappy block runs past the records")?;
        pos += len;
        snappy_block(block, max, &mut out)?;
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, whose whole length must stay within `max`. The
/// block's stated length is checked before anything is allocated for it.
fn snappy_block(block: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let n = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
    if out.len().saturating_add(n) > max {
        return Err(format!("more than {max} bytes once decompressed"));
    }
    let start = out.len();
    out.resize(start + n, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| e.to_string())?;
    out.truncate(start + written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> Vec<u8> {
        (0..20_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn lz4(b: &[u8]) -> Vec<u8> {
        let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn zstd(b: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(b, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn xerial(b: &[u8]) -> Vec<u8> {
        let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for chunk in b.chunks(32 * 1024) {
            let c = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            out.extend_from_slice(&(c.len() as u32).to_be_bytes());
            out.extend_from_slice(&c);
        }
        out
    }

    #[test]
    fn every_codec_round_trips() {
        let s = sample();
        let raw_snappy = snap::raw::Encoder::new().compress_vec(&s).unwrap();
        for (codec, packed) in [
            (Codec::Gzip, gzip(&s)),
            (Codec::Snappy, raw_snappy),
            (Codec::Snappy, xerial(&s)),
            (Codec::Lz4, lz4(&s)),
            (Codec::Zstd, zstd(&s)),
        ] {
            assert_eq!(decompress(codec, &packed, 1 << 20).unwrap(), s, "{codec:?}");
        }
    }

    #[test]
    fn output_is_bounded() {
        let zeros = vec![0u8; 4 << 20];
        for (codec, packed) in [
            (Codec::Gzip, gzip(&zeros)),
            (Codec::Snappy, xerial(&zeros)),
            (Codec::Lz4, lz4(&zeros)),
            (Codec::Zstd, zstd(&zeros)),
        ] {
            assert!(
                packed.len() < zeros.len() / 10,
                "{codec:?} compresses zeros"
            );
            let e = decompress(codec, &packed, 1 << 20).unwrap_err();
            assert!(
                matches!(
                    e,
                    BatchError::DecompressedTooLarge { .. } | BatchError::Decompress { .. }
                ),
                "{codec:?}: {e}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for len in [0usize, 1, 7, 16, 17, 100, 1000] {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect();
            for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
                let _ = decompress(codec, &junk, 1 << 20);
                let mut framed = XERIAL_MAGIC.to_vec();
                framed.extend_from_slice(&[0; 8]);
                framed.extend_from_slice(&junk);
                let _ = decompress(Codec::Snappy, &framed, 1 << 20);
            }
        }
    }
}
