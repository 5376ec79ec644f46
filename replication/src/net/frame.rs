//! The frame: how one message travels on a peer connection.
//!
//! Every message between two nodes, in both directions, is one frame: a fixed 24-byte header
//! followed by the payload (the postcard encoding of a [`Request`](super::Request) or a
//! [`Reply`](super::Reply)). All integers are little-endian.
//!
//! ```text
//!  0        4        5        6                 8
//!  +--------+--------+--------+-----------------+
//!  | magic  |version | kind   | reserved        |   magic = "SLRN" (0x4e524c53 read as u32 LE)
//!  | u32    | u8 = 2 | u8     | u16 = 0         |   kind  = 1 request, 2 reply, 3 greeting
//!  +--------+--------+--------+-----------------+
//!  8                                            16
//!  | request_id u64                             |   chosen by the caller, echoed by the reply
//!  +-----------------------+--------------------+
//!  16                      20                   24
//!  | len u32               | crc32 u32          |   len = payload bytes (<= FRAME_BYTES_MAX)
//!  +-----------------------+--------------------+
//!  24                                           24 + len
//!  | payload (postcard)                         |
//!  +--------------------------------------------+
//! ```
//!
//! `crc32` is CRC-32 (IEEE, as `crc32fast` computes it) of the payload, chained after the
//! header's first 20 bytes (magic to len): a flipped bit anywhere in the frame, including the
//! request id that routes a reply to its caller, is detected rather than delivered to the wrong
//! waiter.
//!
//! A frame that fails any check (magic, version, kind, reserved, length, checksum) is a
//! [`FrameError`]; the connection that carried it is closed, since after a bad header nothing
//! says where the next frame starts. Decoding never panics on bad bytes.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The first four bytes of every frame.
pub const MAGIC: u32 = u32::from_le_bytes(*b"SLRN");

/// The version of the frame layout this build speaks.
pub const VERSION: u8 = 2;

/// Whether `first`, a connection's first bytes, begin a frame.
pub(super) fn starts_with_magic(first: &[u8; 4]) -> bool {
    u32::from_le_bytes(*first) == MAGIC
}

/// Bytes of the fixed header before the payload.
pub const HEADER_BYTES: usize = 24;

/// Largest payload a frame may carry: 64 MiB.
///
/// A message batch is at most a few MiB, and one append-entries request carries several
/// batches (openraft's `max_payload_entries`), plus a snapshot chunk is bounded by
/// `snapshot_max_chunk_size`. 64 MiB leaves room for those while bounding what a corrupt or
/// hostile length field can make a node allocate.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Offset of the checksum in the header: the checksum covers the bytes before it.
const CRC_OFFSET: usize = 20;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A [`Request`](super::Request), from the node that sends Raft messages.
    Request = 1,
    /// A [`Reply`](super::Reply) to the request of the same id.
    Reply = 2,
    /// The first frame of each side of a connection (see [`greeting`](super::greeting)).
    Greeting = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Result<Kind, FrameError> {
        match b {
            1 => Ok(Kind::Request),
            2 => Ok(Kind::Reply),
            3 => Ok(Kind::Greeting),
            other => Err(FrameError::BadKind(other)),
        }
    }
}

/// Why bytes read from a peer are not a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The first four bytes are not "SLRN": not a sluice replication connection.
    #[error("bad frame magic {0:#010x} (expected \"SLRN\")")]
    BadMagic(u32),
    /// A frame layout version this build does not speak.
    #[error("unsupported frame version {0} (this build speaks {VERSION})")]
    BadVersion(u8),
    /// A kind that is not request, reply or greeting.
    #[error("bad frame kind {0}")]
    BadKind(u8),
    /// The reserved field is not zero.
    #[error("bad frame reserved field {0:#06x} (must be 0)")]
    BadReserved(u16),
    /// The payload would exceed [`FRAME_BYTES_MAX`].
    #[error("frame payload of {len} bytes exceeds the limit of {FRAME_BYTES_MAX} bytes")]
    TooLong {
        /// The payload length, as the header claims or as the sender tried to send.
        len: u64,
    },
    /// The checksum does not match the frame's bytes.
    #[error("frame checksum mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    Checksum {
        /// The checksum in the header.
        expected: u32,
        /// The checksum of the bytes received.
        actual: u32,
    },
    /// The bytes end inside a frame.
    #[error("truncated frame: {needed} bytes needed, {got} available")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes there were.
        got: usize,
    },
    /// The connection failed while reading or writing a frame.
    #[error("frame i/o: {0}")]
    Io(#[from] io::Error),
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Request or reply.
    pub kind: Kind,
    /// The id that pairs a reply with its request.
    pub request_id: u64,
    /// The postcard-encoded message.
    pub payload: Vec<u8>,
}

/// The checked header of a frame whose payload is still to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    kind: Kind,
    request_id: u64,
    len: usize,
    crc: u32,
}

fn le_u32(b: &[u8; HEADER_BYTES], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Header {
    /// Checks and decodes a header; the checksum is checked once the payload is there.
    fn decode(b: &[u8; HEADER_BYTES]) -> Result<Header, FrameError> {
        let magic = le_u32(b, 0);
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if b[4] != VERSION {
            return Err(FrameError::BadVersion(b[4]));
        }
        let kind = Kind::from_u8(b[5])?;
        let reserved = u16::from_le_bytes([b[6], b[7]]);
        if reserved != 0 {
            return Err(FrameError::BadReserved(reserved));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[8..16]);
        let len = le_u32(b, 16);
        if len as usize > FRAME_BYTES_MAX {
            return Err(FrameError::TooLong { len: len.into() });
        }
        Ok(Header {
            kind,
            request_id: u64::from_le_bytes(id),
            len: len as usize,
            crc: le_u32(b, CRC_OFFSET),
        })
    }
}

/// The checksum of a frame: its header up to the checksum field, then its payload.
fn checksum(head: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&head[..CRC_OFFSET]);
    h.update(payload);
    h.finalize()
}

fn check_crc(head: &[u8; HEADER_BYTES], header: &Header, payload: &[u8]) -> Result<(), FrameError> {
    let actual = checksum(head, payload);
    if actual != header.crc {
        return Err(FrameError::Checksum {
            expected: header.crc,
            actual,
        });
    }
    Ok(())
}

/// Encodes a frame: header and payload in one buffer, ready to write.
pub fn encode(kind: Kind, request_id: u64, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l as usize <= FRAME_BYTES_MAX)
        .ok_or(FrameError::TooLong {
            len: payload.len() as u64,
        })?;
    let mut buf = Vec::with_capacity(HEADER_BYTES + payload.len());
    buf.extend_from_slice(&MAGIC.to_le_bytes());
    buf.push(VERSION);
    buf.push(kind as u8);
    buf.extend_from_slice(&0u16.to_le_bytes());
    buf.extend_from_slice(&request_id.to_le_bytes());
    buf.extend_from_slice(&len.to_le_bytes());
    let crc = checksum(&buf, payload);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(payload);
    Ok(buf)
}

/// Decodes the frame at the start of `buf`; answers it and the bytes it took.
pub fn decode(buf: &[u8]) -> Result<(Frame, usize), FrameError> {
    let head: &[u8; HEADER_BYTES] = buf
        .get(..HEADER_BYTES)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated {
            needed: HEADER_BYTES,
            got: buf.len(),
        })?;
    let header = Header::decode(head)?;
    let end = HEADER_BYTES + header.len;
    let payload = buf.get(HEADER_BYTES..end).ok_or(FrameError::Truncated {
        needed: end,
        got: buf.len(),
    })?;
    check_crc(head, &header, payload)?;
    let frame = Frame {
        kind: header.kind,
        request_id: header.request_id,
        payload: payload.to_vec(),
    };
    Ok((frame, end))
}

/// Reads one frame; `None` when the peer closed the connection between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, FrameError> {
    let mut head = [0u8; HEADER_BYTES];
    let mut got = 0;
    while got < HEADER_BYTES {
        let n = r.read(&mut head[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated {
                needed: HEADER_BYTES,
                got,
            });
        }
        got += n;
    }
    let header = Header::decode(&head)?;
    let mut payload = vec![0u8; header.len];
    if let Err(e) = r.read_exact(&mut payload).await {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return Err(FrameError::Truncated {
                needed: HEADER_BYTES + header.len,
                got: HEADER_BYTES,
            });
        }
        return Err(e.into());
    }
    check_crc(&head, &header, &payload)?;
    Ok(Some(Frame {
        kind: header.kind,
        request_id: header.request_id,
        payload,
    }))
}
