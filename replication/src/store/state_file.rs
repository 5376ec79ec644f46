//! The small durable state files of a replicated log (`raft-vote`, `raft-applied`), one layout:
//!
//! ```text
//!  0        4         6          8           12        16
//!  +--------+---------+----------+-----------+---------+--------------------+
//!  | magic  | version | reserved | payload_  | payload | payload (postcard) |
//!  | [u8;4] |  u16=1  |  u16=0   | len u32   | crc u32 |                    |
//!  +--------+---------+----------+-----------+---------+--------------------+
//! ```
//!
//! Little-endian; the CRC-32 covers the payload. Each save rewrites the file atomically (a
//! temporary file, fsync, rename, directory fsync). A file that fails any check is an error,
//! never "no state": forgetting a vote would let a node vote twice in one term.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};
use sluice_storage::fs::{read_all, write_atomic, FileSystem};

use crate::error::{Error, Result};

const HEADER_LEN: usize = 16;
const VERSION: u16 = 1;
/// The most a state file may hold; a longer length field is damage.
pub const STATE_FILE_BYTES_MAX: u32 = 1 << 20;

/// Writes `value` to `path` atomically and durably.
pub fn save<T: Serialize>(
    fs: &dyn FileSystem,
    path: &Path,
    magic: [u8; 4],
    value: &T,
) -> Result<()> {
    let payload = postcard::to_allocvec(value).map_err(|e| Error::Corrupt {
        path: path.into(),
        reason: format!("cannot encode: {e}"),
    })?;
    assert!(
        payload.len() <= STATE_FILE_BYTES_MAX as usize,
        "state files stay small"
    );
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    write_atomic(fs, path, &out).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })
}

/// Reads the state saved at `path`; `None` when there is no file.
pub fn load<T: DeserializeOwned>(
    fs: &dyn FileSystem,
    path: &Path,
    magic: [u8; 4],
) -> Result<Option<T>> {
    if !fs.exists(path) {
        return Ok(None);
    }
    let bytes = read_all(fs, path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    decode(&bytes, magic)
        .map(Some)
        .map_err(|reason| Error::Corrupt {
            path: path.into(),
            reason,
        })
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], magic: [u8; 4]) -> Result<T, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    }
    if bytes[..4] != magic {
        return Err(format!("bad magic {:?}", &bytes[..4]));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(format!("unsupported version {version}"));
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if len > STATE_FILE_BYTES_MAX || bytes.len() != HEADER_LEN + len as usize {
        return Err(format!(
            "payload length {len} does not match the file's {} bytes",
            bytes.len()
        ));
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_LEN..];
    if crc32fast::hash(payload) != crc {
        return Err("payload checksum mismatch".into());
    }
    postcard::from_bytes(payload).map_err(|e| format!("cannot decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::fs::sim::SimFs;

    #[test]
    fn every_damaged_byte_and_truncation_is_refused() {
        let fs = SimFs::new();
        let path = Path::new("/state");
        let value = (7u64, Some(3u64), String::from("membership"));
        save(&fs, path, *b"SLVT", &value).unwrap();
        let good = fs.read_file(path).unwrap();
        assert_eq!(load(&fs, path, *b"SLVT").unwrap(), Some(value));
        assert!(load::<(u64, Option<u64>, String)>(&fs, path, *b"SLAP").is_err());
        for i in 0..good.len() {
            if (6..8).contains(&i) {
                continue; // reserved
            }
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            fs.write_file(path, &bad).unwrap();
            assert!(
                load::<(u64, Option<u64>, String)>(&fs, path, *b"SLVT").is_err(),
                "byte {i}"
            );
        }
        for n in 0..good.len() {
            fs.write_file(path, &good[..n]).unwrap();
            assert!(
                load::<(u64, Option<u64>, String)>(&fs, path, *b"SLVT").is_err(),
                "len {n}"
            );
        }
        assert_eq!(
            load::<u64>(&fs, Path::new("/absent"), *b"SLVT").unwrap(),
            None
        );
    }
}
