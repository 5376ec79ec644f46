//! Producer ids for idempotent producers (Kafka's InitProducerId): unique for the life of the
//! data directory, across restarts and crashes, so a new producer never inherits the sequence
//! numbers of an old one.
//!
//! Ids are handed out from blocks of [`PRODUCER_ID_BLOCK`]. The end of the current block is
//! written durably (`<root>/producer-ids`, atomically) before the first id of the block is given
//! out, so after a crash the store starts past every id it may have handed out.
//!
//! ```text
//! producer-ids (28 bytes): { magic "SLUICEPI" | version u16 = 1 | reserved u16 | reserved u32 |
//!                            block_end u64 | crc u32 (CRC-32 of bytes 0..24) }
//! ```

use std::path::PathBuf;
use std::sync::Mutex;

use crate::error::{Error, IoContext, Result};
use crate::format::crc;
use crate::fs::{read_all, write_atomic, FsRef};

/// Ids handed out per durable write.
pub const PRODUCER_ID_BLOCK: u64 = 1000;
const MAGIC: &[u8; 8] = b"SLUICEPI";
const VERSION: u16 = 1;
const LEN: usize = 28;
/// The file's name in the data directory.
pub const PRODUCER_IDS_FILE: &str = "producer-ids";

/// The producer id allocator of a store.
#[derive(Debug)]
pub(crate) struct ProducerIds {
    fs: FsRef,
    path: PathBuf,
    /// The next id, and the end of the block durably reserved.
    state: Mutex<(u64, u64)>,
}

fn encode(block_end: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..8].copy_from_slice(MAGIC);
    b[8..10].copy_from_slice(&VERSION.to_le_bytes());
    b[16..24].copy_from_slice(&block_end.to_le_bytes());
    let c = crc(&b[..24]);
    b[24..28].copy_from_slice(&c.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> std::result::Result<u64, String> {
    if b.len() != LEN {
        return Err(format!("{} bytes, expected {LEN}", b.len()));
    }
    let stored = u32::from_le_bytes(b[24..28].try_into().expect("4 bytes"));
    if crc(&b[..24]) != stored {
        return Err("checksum mismatch".into());
    }
    if &b[..8] != MAGIC {
        return Err("bad magic".into());
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    if version != VERSION {
        return Err(format!("unsupported version {version}"));
    }
    Ok(u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")))
}

impl ProducerIds {
    /// Reads the allocator's file in `root` (none yet: ids start at 0).
    pub(crate) fn open(fs: FsRef, root: &std::path::Path) -> Result<ProducerIds> {
        let path = root.join(PRODUCER_IDS_FILE);
        let block_end = if fs.exists(&path) {
            let bytes = read_all(&*fs, &path).at(&path)?;
            decode(&bytes).map_err(|reason| Error::Corruption {
                segment: path.clone(),
                position: 0,
                reason,
            })?
        } else {
            0
        };
        Ok(ProducerIds {
            fs,
            path,
            state: Mutex::new((block_end, block_end)),
        })
    }

    /// A producer id never handed out before by this data directory.
    pub(crate) fn next(&self) -> Result<i64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (next, end) = *st;
        if next >= i64::MAX as u64 - PRODUCER_ID_BLOCK {
            return Err(Error::LimitReached("producer ids are exhausted".into()));
        }
        if next == end {
            let new_end = end + PRODUCER_ID_BLOCK;
            write_atomic(&*self.fs, &self.path, &encode(new_end)).at(&self.path)?;
            st.1 = new_end;
        }
        st.0 = next + 1;
        Ok(next as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::sim::{CrashMode, SimFs};
    use std::path::Path;
    use std::sync::Arc;

    #[test]
    fn ids_are_never_handed_out_twice_across_crashes() {
        let sim = SimFs::new();
        let fs: FsRef = Arc::new(sim.clone());
        let root = Path::new("/d");
        crate::fs::create_dir_durable(&*fs, root).unwrap();
        let mut seen = std::collections::HashSet::new();
        for round in 0..4 {
            let ids = ProducerIds::open(fs.clone(), root).unwrap();
            for _ in 0..(PRODUCER_ID_BLOCK + 7) {
                assert!(
                    seen.insert(ids.next().unwrap()),
                    "an id came back in round {round}"
                );
            }
            sim.crash(CrashMode::DropUnsynced);
        }
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let good = encode(5000);
        assert_eq!(decode(&good), Ok(5000));
        for bit in 0..LEN * 8 {
            let mut b = good;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&b).is_err(), "flip of bit {bit}");
        }
        assert!(decode(&good[..20]).is_err());
    }
}
