//! The identity of a data directory: 16 random bytes made once, at the first call of
//! [`Store::identity`], and kept in `<root>/identity` (layout: `docs/format-state.md`,
//! "Identity file"). The Kafka frontend presents it as the cluster id, which clients expect to
//! stay the same across restarts.
//!
//! ```text
//! { magic "SLUICEID" [u8;8] | version u16 | reserved u16 (0) | id [u8;16] | crc u32 }
//! ```
//! Integers little-endian; `crc` is the CRC-32 of the 28 bytes before it. 32 bytes in all.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};
use crate::format::crc;
use crate::fs::{read_all, write_atomic};

use super::Store;

/// Name of the identity file in the data directory.
pub const IDENTITY_FILE: &str = "identity";
/// Magic of the identity file.
pub const IDENTITY_MAGIC: [u8; 8] = *b"SLUICEID";
/// Version of the identity file's layout.
pub const IDENTITY_VERSION: u16 = 1;
/// Length of the identity file.
pub const IDENTITY_FILE_LEN: usize = I_END;

const I_MAGIC: usize = 0;
const I_VERSION: usize = I_MAGIC + 8;
const I_RESERVED: usize = I_VERSION + 2;
const I_ID: usize = I_RESERVED + 2;
const I_CRC: usize = I_ID + 16;
const I_END: usize = I_CRC + 4;
const _: () = assert!(I_END == 32);

/// Encodes an identity file.
pub fn encode_identity(id: [u8; 16]) -> [u8; IDENTITY_FILE_LEN] {
    let mut b = [0u8; IDENTITY_FILE_LEN];
    b[I_MAGIC..I_VERSION].copy_from_slice(&IDENTITY_MAGIC);
    b[I_VERSION..I_RESERVED].copy_from_slice(&IDENTITY_VERSION.to_le_bytes());
    b[I_ID..I_CRC].copy_from_slice(&id);
    let c = crc(&b[..I_CRC]);
    b[I_CRC..I_END].copy_from_slice(&c.to_le_bytes());
    b
}

/// Decodes an identity file; the reason when it is not valid.
pub fn decode_identity(b: &[u8]) -> std::result::Result<[u8; 16], String> {
    if b.len() != IDENTITY_FILE_LEN {
        return Err(format!(
            "identity file is {} bytes, expected {IDENTITY_FILE_LEN}",
            b.len()
        ));
    }
    let stored = u32::from_le_bytes(b[I_CRC..I_END].try_into().expect("4 bytes"));
    if crc(&b[..I_CRC]) != stored {
        return Err("identity file checksum mismatch".into());
    }
    if b[I_MAGIC..I_VERSION] != IDENTITY_MAGIC {
        return Err("identity file has a bad magic".into());
    }
    let version = u16::from_le_bytes([b[I_VERSION], b[I_VERSION + 1]]);
    if version != IDENTITY_VERSION {
        return Err(format!("unsupported identity file version {version}"));
    }
    Ok(b[I_ID..I_CRC].try_into().expect("16 bytes"))
}

/// 16 random bytes: the process's random hash keys (seeded by the OS) over the time.
fn random_id() -> [u8; 16] {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut id = [0u8; 16];
    for (k, chunk) in id.chunks_mut(8).enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_usize(k);
        h.write_u32(std::process::id());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    id
}

impl Store {
    /// The data directory's identity: read from `<root>/identity`, or made and written
    /// durably (atomic write, directory fsync) when the file is missing. A damaged file is a
    /// `Corruption` error, never replaced silently. Blocking.
    pub fn identity(&self) -> Result<[u8; 16]> {
        let mut known = self.identity.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = *known {
            return Ok(id);
        }
        let fs = &*self.inner.fs;
        let path = self.inner.root.join(IDENTITY_FILE);
        let id = if fs.exists(&path) {
            let bytes = read_all(fs, &path).at(&path)?;
            decode_identity(&bytes).map_err(|why| Error::corruption(&path, 0, why))?
        } else {
            let id = random_id();
            write_atomic(fs, &path, &encode_identity(id)).at(&path)?;
            id
        };
        *known = Some(id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_and_every_bit_flip_is_refused() {
        let id = random_id();
        assert_ne!(id, random_id());
        let b = encode_identity(id);
        assert_eq!(decode_identity(&b), Ok(id));
        for bit in 0..b.len() * 8 {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_identity(&c).is_err(), "flip of bit {bit}");
        }
        assert!(decode_identity(&b[..31]).is_err());
    }

    #[test]
    fn identity_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path()).no_upkeep().open().unwrap();
        let id = store.identity().unwrap();
        assert_eq!(store.identity().unwrap(), id);
        store.close().unwrap();
        drop(store);
        let store = Store::builder(dir.path()).no_upkeep().open().unwrap();
        assert_eq!(store.identity().unwrap(), id);
        store.close().unwrap();
        drop(store);
        let path = dir.path().join(IDENTITY_FILE);
        let mut b = std::fs::read(&path).unwrap();
        b[12] ^= 1;
        std::fs::write(&path, b).unwrap();
        let store = Store::builder(dir.path()).no_upkeep().open().unwrap();
        assert!(matches!(store.identity(), Err(Error::Corruption { .. })));
        store.close().unwrap();
    }
}
