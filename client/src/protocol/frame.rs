//! Framing: `{ len u32 | kind u8 | request_id u32 | body }`, read under a length limit.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::codec::W;
use super::error::{malformed, ProtocolError};

/// Bytes of a frame after the length prefix and before the body (`kind` + `request_id`).
pub const FRAME_HEAD_LEN: usize = 5;
/// Default largest frame (the value of `len`) either side accepts.
pub const DEFAULT_FRAME_BYTES_MAX: u32 = 16 << 20;

/// A frame as read from the wire: kind, request id and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// The kind byte.
    pub kind: u8,
    /// The request id.
    pub request_id: u32,
    /// The body.
    pub body: Vec<u8>,
}

/// A frame ready to write: `head` (prefix, kind, id and body start) then an optional shared
/// `tail` (a stored batch, sent without copying).
#[derive(Clone, Debug)]
pub struct OutFrame {
    /// Length prefix, kind, request id and the body's first bytes.
    pub head: Vec<u8>,
    /// The rest of the body.
    pub tail: Option<Bytes>,
}

impl OutFrame {
    pub(crate) fn new(kind: u8, request_id: u32) -> Self {
        let mut head = Vec::with_capacity(64);
        head.extend_from_slice(&[0, 0, 0, 0, kind]);
        head.extend_from_slice(&request_id.to_le_bytes());
        OutFrame { head, tail: None }
    }

    pub(crate) fn finish(mut self) -> Self {
        let len = self.head.len() - 4 + self.tail.as_ref().map_or(0, |t| t.len());
        // Senders bound what they put in a frame (the server splits deliveries by size, and a
        // record is at most a batch, whose length is 32-bit): a wrapped length would corrupt the
        // stream, so it is a bug to stop at rather than to send.
        let len = u32::try_from(len).expect("a frame's length fits its 32-bit prefix");
        self.head[..4].copy_from_slice(&len.to_le_bytes());
        self
    }

    /// The value of the length prefix.
    pub fn len_field(&self) -> u32 {
        u32::from_le_bytes(self.head[..4].try_into().unwrap())
    }

    /// The whole frame as one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = self.head.clone();
        if let Some(t) = &self.tail {
            v.extend_from_slice(t);
        }
        v
    }

    pub(crate) fn w(&mut self) -> W<'_> {
        W(&mut self.head)
    }
}

/// Reads one frame. Returns `Ok(None)` on a clean end of stream before a frame starts. The
/// length prefix is checked against `max` before anything is allocated.
pub async fn read_frame<Rd: AsyncRead + Unpin>(
    rd: &mut Rd,
    max: u32,
) -> Result<Option<RawFrame>, ProtocolError> {
    let mut first = [0u8; 1];
    if rd.read(&mut first).await? == 0 {
        return Ok(None);
    }
    read_frame_rest(rd, first[0], max).await.map(Some)
}

/// Reads the rest of a frame whose first byte was `first`.
pub async fn read_frame_rest<Rd: AsyncRead + Unpin>(
    rd: &mut Rd,
    first: u8,
    max: u32,
) -> Result<RawFrame, ProtocolError> {
    let mut len = [first, 0, 0, 0];
    rd.read_exact(&mut len[1..]).await?;
    let len = u32::from_le_bytes(len);
    check_len(len, max)?;
    let mut head = [0u8; FRAME_HEAD_LEN];
    rd.read_exact(&mut head).await?;
    let mut body = vec![0u8; len as usize - FRAME_HEAD_LEN];
    rd.read_exact(&mut body).await?;
    Ok(RawFrame {
        kind: head[0],
        request_id: u32::from_le_bytes(head[1..5].try_into().unwrap()),
        body,
    })
}

/// Checks a length prefix.
pub fn check_len(len: u32, max: u32) -> Result<(), ProtocolError> {
    if len > max {
        return Err(ProtocolError::TooLarge { len, max });
    }
    if (len as usize) < FRAME_HEAD_LEN {
        return Err(malformed(format!(
            "length prefix {len} is below the {FRAME_HEAD_LEN}-byte frame head"
        )));
    }
    Ok(())
}

/// Splits an encoded frame into a [`RawFrame`] (for tests and in-memory use).
pub fn parse_frame(bytes: &[u8], max: u32) -> Result<RawFrame, ProtocolError> {
    if bytes.len() < 4 + FRAME_HEAD_LEN {
        return Err(malformed("short frame"));
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    check_len(len, max)?;
    if bytes.len() != 4 + len as usize {
        return Err(malformed("length prefix does not match the frame"));
    }
    Ok(RawFrame {
        kind: bytes[4],
        request_id: u32::from_le_bytes(bytes[5..9].try_into().unwrap()),
        body: bytes[9..].to_vec(),
    })
}
