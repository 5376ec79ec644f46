//! Small state files of a log directory: the recovery point and the clean-shutdown marker. Both
//! are written atomically (temporary file, fsync, rename, fsync of the directory) and checked
//! with a CRC when read; an invalid one is treated as absent, which only makes recovery scan more.
//!
//! ```text
//! recovery-point (56 B): { magic "SLUICERP" | version u16 | reserved u16 | reserved u32 |
//!                          segment_base u64 | position u64 | next_offset u64 | max_timestamp_ms i64 |
//!                          crc u32 | reserved u32 }
//! clean-shutdown (48 B): { magic "SLUICECS" | version u16 | reserved u16 | reserved u32 |
//!                          next_offset u64 | active_base u64 | active_size u64 | crc u32 | reserved u32 }
//! ```
//! `crc` covers every byte before it.

use std::path::Path;

use crate::format::crc;
use crate::fs::{self, FileSystem};
use crate::types::{Offset, TimestampMs};

/// File name of the recovery point.
pub const RECOVERY_POINT_FILE: &str = "recovery-point";
/// File name of the clean-shutdown marker.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

const RP_MAGIC: [u8; 8] = *b"SLUICERP";
const CS_MAGIC: [u8; 8] = *b"SLUICECS";
const VERSION: u16 = 1;

/// Everything below `next_offset` is durable and valid; recovery scans from `position` of the
/// segment whose base is `segment_base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryPoint {
    /// Base offset of the segment holding the recovery point.
    pub segment_base: Offset,
    /// Byte position in that segment of the first batch not covered.
    pub position: u64,
    /// The first offset not covered.
    pub next_offset: Offset,
    /// Largest timestamp of that segment before `position`.
    pub max_timestamp_ms: TimestampMs,
}

/// Written at a clean close: the log ends at `next_offset` in a last segment of `active_size`
/// bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanShutdown {
    /// One past the last offset.
    pub next_offset: Offset,
    /// Base of the last segment.
    pub active_base: Offset,
    /// Size of the last segment file in bytes.
    pub active_size: u64,
}

fn encode(magic: [u8; 8], fields: &[u64]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + fields.len() * 8 + 8);
    b.extend_from_slice(&magic);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&[0u8; 6]);
    for f in fields {
        b.extend_from_slice(&f.to_le_bytes());
    }
    let c = crc(&b);
    b.extend_from_slice(&c.to_le_bytes());
    b.extend_from_slice(&[0u8; 4]);
    b
}

fn decode(bytes: &[u8], magic: [u8; 8], n: usize) -> Result<Vec<u64>, String> {
    let len = 16 + n * 8 + 8;
    if bytes.len() != len {
        return Err(format!("{} bytes, expected {len}", bytes.len()));
    }
    let crc_at = 16 + n * 8;
    let stored = u32::from_le_bytes(bytes[crc_at..crc_at + 4].try_into().expect("4 bytes"));
    if crc(&bytes[..crc_at]) != stored {
        return Err("checksum mismatch".into());
    }
    // The checksum does not cover the trailing reserved word: check it is still zero, so that
    // no byte of the file can change unnoticed.
    if bytes[crc_at + 4..].iter().any(|&b| b != 0) {
        return Err("reserved bytes after the checksum are not zero".into());
    }
    if bytes[..8] != magic {
        return Err("bad magic".into());
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != VERSION {
        return Err(format!("unsupported version {version}"));
    }
    Ok((0..n)
        .map(|i| u64::from_le_bytes(bytes[16 + i * 8..24 + i * 8].try_into().expect("8 bytes")))
        .collect())
}

impl RecoveryPoint {
    /// Encodes the file.
    pub fn encode(&self) -> Vec<u8> {
        encode(
            RP_MAGIC,
            &[
                self.segment_base.0,
                self.position,
                self.next_offset.0,
                self.max_timestamp_ms as u64,
            ],
        )
    }
    /// Decodes and checks the file.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let f = decode(bytes, RP_MAGIC, 4)?;
        Ok(RecoveryPoint {
            segment_base: Offset(f[0]),
            position: f[1],
            next_offset: Offset(f[2]),
            max_timestamp_ms: f[3] as i64,
        })
    }
}

impl CleanShutdown {
    /// Encodes the file.
    pub fn encode(&self) -> Vec<u8> {
        encode(
            CS_MAGIC,
            &[self.next_offset.0, self.active_base.0, self.active_size],
        )
    }
    /// Decodes and checks the file.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let f = decode(bytes, CS_MAGIC, 3)?;
        Ok(CleanShutdown {
            next_offset: Offset(f[0]),
            active_base: Offset(f[1]),
            active_size: f[2],
        })
    }
}

/// Reads and decodes a checkpoint file: `Ok(None)` when absent, `Err` with the reason when
/// present but invalid.
pub fn read<T>(
    fs: &dyn FileSystem,
    path: &Path,
    decode: fn(&[u8]) -> Result<T, String>,
) -> std::io::Result<Option<Result<T, String>>> {
    if !fs.exists(path) {
        return Ok(None);
    }
    let bytes = fs::read_all(fs, path)?;
    Ok(Some(decode(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_detect_damage() {
        let rp = RecoveryPoint {
            segment_base: Offset(100),
            position: 4096,
            next_offset: Offset(150),
            max_timestamp_ms: -5,
        };
        let b = rp.encode();
        assert_eq!(b.len(), 56);
        assert_eq!(RecoveryPoint::decode(&b), Ok(rp));
        for i in 0..b.len() - 4 {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(RecoveryPoint::decode(&c).is_err(), "byte {i}");
        }
        let cs = CleanShutdown {
            next_offset: Offset(1),
            active_base: Offset(0),
            active_size: 99,
        };
        assert_eq!(cs.encode().len(), 48);
        assert_eq!(CleanShutdown::decode(&cs.encode()), Ok(cs));
        assert!(CleanShutdown::decode(&rp.encode()).is_err());
    }
}
