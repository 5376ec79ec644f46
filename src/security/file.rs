//! The security file, `<data dir>/security.dat`: users (password hashes and SCRAM keys, never
//! passwords) and access rules. Replaced whole on each change, atomically and durably
//! (temporary file, fsync, rename, fsync of the directory).
//!
//! ```text
//! { magic "SLSC" | version u16 = 1 | reserved u16 = 0 | payload_len u32 | crc32 u32 | payload }
//! ```
//!
//! All integers little-endian; `crc32` (IEEE) covers the payload, which is the postcard
//! encoding of [`State`] (enum variants by index: append, never reorder). A file that fails a
//! check stops the broker with the reason: falling back to "no users" would open every topic
//! to anonymous clients.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_storage::fs::{read_all, write_atomic};
use sluice_storage::FileSystem;

use super::acl::Rule;
use super::users::User;
use super::SecurityError;

/// The file's name in the data directory.
pub const SECURITY_FILE: &str = "security.dat";
const MAGIC: &[u8; 4] = b"SLSC";
const VERSION: u16 = 1;
const HEAD_LEN: usize = 16;
/// Largest security file read (a million users with their keys fit).
pub const SECURITY_FILE_BYTES_MAX: usize = 512 << 20;

/// Everything the file holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Access rules, in the order they were added.
    pub rules: Vec<Rule>,
    /// A random secret of this data directory: salts of the stand-in credentials of unknown
    /// users (so SCRAM answers do not tell which users exist).
    pub secret: Vec<u8>,
}

/// The path of the security file of `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(SECURITY_FILE)
}

/// Encodes `state` with its header.
pub fn encode(state: &State) -> Vec<u8> {
    let payload = postcard::to_stdvec(state).expect("the security state always encodes");
    let mut out = Vec::with_capacity(HEAD_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decodes a whole file, checking magic, version, length and checksum.
pub fn decode(bytes: &[u8]) -> Result<State, String> {
    if bytes.len() < HEAD_LEN {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    }
    if &bytes[..4] != MAGIC {
        return Err("not a sluice security file (bad magic)".into());
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let version = u16_at(4);
    if version != VERSION {
        return Err(format!(
            "version {version}; this broker reads version {VERSION}"
        ));
    }
    if u16_at(6) != 0 {
        return Err("reserved header bytes are not zero".into());
    }
    let len = u32_at(8) as usize;
    let payload = &bytes[HEAD_LEN..];
    if payload.len() != len {
        return Err(format!(
            "payload of {} bytes, header says {len}",
            payload.len()
        ));
    }
    if crc32fast::hash(payload) != u32_at(12) {
        return Err("checksum mismatch".into());
    }
    postcard::from_bytes(payload).map_err(|e| format!("undecodable payload: {e}"))
}

/// Reads the file of `data_dir`; a missing file is the empty state (with a new secret).
pub fn load(fs: &dyn FileSystem, data_dir: &Path) -> Result<State, SecurityError> {
    let p = path(data_dir);
    if !fs.exists(&p) {
        return Ok(State {
            secret: super::random_bytes(32),
            ..State::default()
        });
    }
    let bytes = read_all(fs, &p).map_err(|e| SecurityError::Io(p.clone(), e))?;
    if bytes.len() > SECURITY_FILE_BYTES_MAX {
        return Err(SecurityError::Corrupt(p, "larger than the limit".into()));
    }
    decode(&bytes).map_err(|why| SecurityError::Corrupt(p, why))
}

/// Replaces the file of `data_dir` with `state`, durably.
pub fn save(fs: &dyn FileSystem, data_dir: &Path, state: &State) -> Result<(), SecurityError> {
    let p = path(data_dir);
    write_atomic(fs, &p, &encode(state)).map_err(|e| SecurityError::Io(p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_every_damage_is_refused() {
        let mut s = State {
            secret: vec![7; 32],
            ..State::default()
        };
        s.users.insert(
            "alice".into(),
            User::new("alice", "pw", Default::default(), 0),
        );
        let bytes = encode(&s);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.users["alice"].name, "alice");
        assert_eq!(back.secret, s.secret);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flipped byte {i} accepted");
        }
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated to {n} accepted");
        }
    }
}
