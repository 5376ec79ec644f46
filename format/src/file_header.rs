//! The 32-byte file header at the start of every `.log`, `.index` and `.timeindex` file
//! (layout: `docs/format.md`, "File header").

use crate::types::Offset;

use super::error::FileHeaderError;
use super::{crc, u16_at, u32_at, u64_at};

/// Length of every file header.
pub const FILE_HEADER_LEN: usize = 32;
/// Magic of a segment log file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SLUICELG";
/// Magic of an offset index file.
pub const INDEX_MAGIC: [u8; 8] = *b"SLUICEIX";
/// Magic of a time index file.
pub const TIME_INDEX_MAGIC: [u8; 8] = *b"SLUICETI";
/// Version of the segment, index and batch formats.
pub const FORMAT_VERSION: u16 = 1;

// Field positions of the file header.
const F_MAGIC: usize = 0;
const F_VERSION: usize = F_MAGIC + 8;
const F_ENTRY_SIZE: usize = F_VERSION + 2;
const F_RESERVED: usize = F_ENTRY_SIZE + 2;
const F_BASE_OFFSET: usize = F_RESERVED + 4;
const F_BODY_CRC: usize = F_BASE_OFFSET + 8;
const F_CRC: usize = F_BODY_CRC + 4;
const _: () = assert!(F_CRC + 4 == FILE_HEADER_LEN);

/// Encodes a file header.
// Format: { magic [u8;8] | version u16 | entry_size u16 | reserved u32 | base_offset u64 | body_crc u32 | crc u32 }
// body_crc: CRC-32 of an index file's entries (0 in a segment file); crc covers bytes 0..28.
pub fn encode_file_header(magic: [u8; 8], entry_size: u16, base: Offset) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[F_MAGIC..F_MAGIC + 8].copy_from_slice(&magic);
    h[F_VERSION..F_VERSION + 2].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[F_ENTRY_SIZE..F_ENTRY_SIZE + 2].copy_from_slice(&entry_size.to_le_bytes());
    h[F_BASE_OFFSET..F_BASE_OFFSET + 8].copy_from_slice(&base.0.to_le_bytes());
    let c = crc(&h[..F_CRC]);
    h[F_CRC..].copy_from_slice(&c.to_le_bytes());
    h
}

/// Stores the CRC-32 of an index file's body in its header and recomputes the header checksum.
pub fn set_file_header_body_crc(header: &mut [u8], body_crc: u32) {
    header[F_BODY_CRC..F_BODY_CRC + 4].copy_from_slice(&body_crc.to_le_bytes());
    let c = crc(&header[..F_CRC]);
    header[F_CRC..F_CRC + 4].copy_from_slice(&c.to_le_bytes());
}

/// The body CRC stored in a file header (check the header with [`decode_file_header`] first).
pub fn file_header_body_crc(header: &[u8]) -> u32 {
    u32_at(header, F_BODY_CRC)
}

/// Decodes and checks a file header; returns the base offset.
pub fn decode_file_header(
    bytes: &[u8],
    magic: [u8; 8],
    entry_size: u16,
) -> Result<Offset, FileHeaderError> {
    if bytes.len() < FILE_HEADER_LEN {
        return Err(FileHeaderError::Short { len: bytes.len() });
    }
    let h = &bytes[..FILE_HEADER_LEN];
    if crc(&h[..F_CRC]) != u32_at(h, F_CRC) {
        return Err(FileHeaderError::Checksum);
    }
    if h[F_MAGIC..F_MAGIC + 8] != magic {
        let mut found = [0u8; 8];
        found.copy_from_slice(&h[F_MAGIC..F_MAGIC + 8]);
        return Err(FileHeaderError::BadMagic {
            found,
            expected: magic,
        });
    }
    let version = u16_at(h, F_VERSION);
    if version != FORMAT_VERSION {
        return Err(FileHeaderError::UnsupportedVersion(version));
    }
    let found = u16_at(h, F_ENTRY_SIZE);
    if found != entry_size {
        return Err(FileHeaderError::EntrySize {
            found,
            expected: entry_size,
        });
    }
    Ok(Offset(u64_at(h, F_BASE_OFFSET)))
}
