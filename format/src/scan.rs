//! The batch scanner: the one set of rules for what the bytes at a position of a segment hold
//! (a valid batch, a flawed one, or the end of what can be read) and why a walk stops there.
//! Recovery, reads, index checks, `sluice inspect` and `sluice repair` all walk batches with
//! [`step`]; one in-memory batch (a publish, a delivery) is checked with [`check_batch`].
//!
//! [`step`] does no I/O: it looks at a window of bytes starting at a file position and either
//! answers or asks for more bytes ([`Step::NeedBytes`]), so a caller can read a file in chunks,
//! read only headers, or hand it a buffer it already holds, without a copy.
//!
//! The padding rule lives here ([`ScanStop::ZeroTail`]): zeros from the stopping point to a
//! block-aligned end of the file, fewer than two blocks of them, are the block padding of direct
//! (O_DIRECT) writes left by an unclean stop. They are a clean end, not damage. Any other stop
//! before the end of the file is damage. See `docs/format.md`, "What makes a batch invalid".

use crate::types::Offset;

use super::batch::{decode_batch_header, records_crc_of, BatchHeader, BATCH_HEADER_LEN};
use super::error::BatchError;

/// The block size of direct writes (the storage engine's direct-I/O alignment is this), whose
/// padding [`ScanStop::ZeroTail`] recognises: 4096 covers 512-byte and 4 KiB sector devices.
pub const PADDING_BLOCK: u64 = 4096;
/// A run of zeros at the end of a file is padding only when it is shorter than this.
pub const ZERO_TAIL_MAX: u64 = 2 * PADDING_BLOCK;

/// Why a walk of batches stops at a position. `End` and `ZeroTail` are clean ends
/// ([`ScanStop::is_clean`]); every other reason is damage at that position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanStop {
    /// Nothing is left: the end of the file.
    #[error("end of the file")]
    End,
    /// Zeros to a block-aligned end of the file, fewer than [`ZERO_TAIL_MAX`]: the block padding
    /// of direct writes left by an unclean stop. A clean end.
    #[error("{len} bytes of zeros after the last batch: block padding of direct writes")]
    ZeroTail {
        /// Bytes of zeros.
        len: u64,
    },
    /// Fewer bytes left than a batch header, and not padding: a torn write.
    #[error("{len} trailing bytes, too short for a batch header")]
    TornHeader {
        /// Bytes left.
        len: u64,
        /// True when they are all zeros.
        zeros: bool,
    },
    /// The header does not decode (checksum or a field); nothing after it can be trusted.
    #[error("{0}")]
    BadHeader(BatchError),
    /// The header is valid but the batch is longer than what is left of the file.
    #[error("batch of {} bytes runs past the end of the file ({remaining} bytes left)", header.batch_len)]
    PastEnd {
        /// The batch's header.
        header: BatchHeader,
        /// Bytes left from the batch's position.
        remaining: u64,
    },
    /// The batch does not follow the one before it.
    #[error("batch base offset {found} where {expected} was expected")]
    OffsetGap {
        /// The offset the batch should start at.
        expected: Offset,
        /// The offset it starts at.
        found: Offset,
    },
    /// The records checksum does not match.
    #[error("records checksum mismatch")]
    RecordsCrc {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the records' bytes.
        computed: u32,
    },
}

impl ScanStop {
    /// True for the end of the file and for block padding: nothing is damaged.
    pub fn is_clean(&self) -> bool {
        matches!(self, ScanStop::End | ScanStop::ZeroTail { .. })
    }
}

/// What a walk checks besides the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanRules {
    /// Upper bound of `batch_len`.
    pub batch_bytes_max: u32,
    /// Check the records checksum (reads the whole batch); without it only headers are read.
    pub records_crc: bool,
}

/// A batch whose header decoded and whose bytes lie within the file. Its length can be trusted
/// (the header checksum covers it), so a walk may go on past it even when it is flawed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedBatch {
    /// The decoded header.
    pub header: BatchHeader,
    /// The offset expected here, when it differs from the batch's base offset.
    pub offset_gap: Option<Offset>,
    /// The checksum of the records as computed, when [`ScanRules::records_crc`] asked for it.
    pub records_crc: Option<u32>,
}

impl ScannedBatch {
    /// The first thing wrong with the batch, in the order of the rules: offset order, then the
    /// records checksum. `None` for a valid batch.
    pub fn flaw(&self) -> Option<ScanStop> {
        if let Some(expected) = self.offset_gap {
            return Some(ScanStop::OffsetGap {
                expected,
                found: self.header.base_offset,
            });
        }
        match self.records_crc {
            Some(computed) if computed != self.header.records_crc => Some(ScanStop::RecordsCrc {
                stored: self.header.records_crc,
                computed,
            }),
            _ => None,
        }
    }

    /// The batch's length in bytes.
    pub fn len(&self) -> usize {
        self.header.batch_len as usize
    }

    /// Never true: a batch holds at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The answer of [`step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The window is too short to decide: call again with a window of at least this many bytes
    /// (never more than what is left of the file).
    NeedBytes(usize),
    /// A batch starts here; advance by its length.
    Batch(ScannedBatch),
    /// No batch starts here.
    Stop(ScanStop),
}

/// Classifies the bytes at `position` of a file that ends at `file_end`. `window` holds the
/// file's bytes from `position` on (any prefix of them); `expected` is the offset the batch
/// must start at, when known.
pub fn step(
    window: &[u8],
    position: u64,
    file_end: u64,
    expected: Option<Offset>,
    rules: ScanRules,
) -> Step {
    let remaining = file_end.saturating_sub(position);
    if remaining == 0 {
        return Step::Stop(ScanStop::End);
    }
    if remaining < BATCH_HEADER_LEN as u64 {
        return match window.get(..remaining as usize) {
            None => Step::NeedBytes(remaining as usize),
            Some(rest) => {
                let zeros = all_zeros(rest);
                if zeros && may_be_padding(remaining, file_end) {
                    Step::Stop(ScanStop::ZeroTail { len: remaining })
                } else {
                    Step::Stop(ScanStop::TornHeader {
                        len: remaining,
                        zeros,
                    })
                }
            }
        };
    }
    if window.len() < BATCH_HEADER_LEN {
        return Step::NeedBytes(BATCH_HEADER_LEN);
    }
    let header = match decode_batch_header(window, rules.batch_bytes_max) {
        Ok(h) => h,
        Err(e) => return bad_header(window, remaining, file_end, e),
    };
    let len = header.batch_len as u64;
    if len > remaining {
        return Step::Stop(ScanStop::PastEnd { header, remaining });
    }
    let records_crc = if rules.records_crc {
        match records_crc_of(window, &header) {
            Some(c) => Some(c),
            None => return Step::NeedBytes(len as usize),
        }
    } else {
        None
    };
    Step::Batch(ScannedBatch {
        header,
        offset_gap: expected.filter(|e| *e != header.base_offset),
        records_crc,
    })
}

/// A header that does not decode: padding when zeros run to an aligned end, damage otherwise.
fn bad_header(window: &[u8], remaining: u64, file_end: u64, e: BatchError) -> Step {
    if may_be_padding(remaining, file_end) {
        match window.get(..remaining as usize) {
            None => return Step::NeedBytes(remaining as usize),
            Some(rest) if all_zeros(rest) => {
                return Step::Stop(ScanStop::ZeroTail { len: remaining })
            }
            Some(_) => {}
        }
    }
    Step::Stop(ScanStop::BadHeader(e))
}

/// The padding rule: a run of `len` bytes ending at `file_end` can be direct-write padding.
fn may_be_padding(len: u64, file_end: u64) -> bool {
    len < ZERO_TAIL_MAX && file_end % PADDING_BLOCK == 0
}

fn all_zeros(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Checks one whole batch held in memory (a publish, a delivery): its header, that it is exactly
/// `batch.len()` bytes long, and its records checksum. Records are not parsed (see
/// [`super::validate_batch`] for that).
pub fn check_batch(batch: &[u8], batch_bytes_max: u32) -> Result<BatchHeader, BatchError> {
    let h = decode_batch_header(batch, batch_bytes_max)?;
    if h.batch_len as usize != batch.len() {
        return Err(BatchError::LengthMismatch {
            stated: h.batch_len,
            given: batch.len(),
        });
    }
    let computed = records_crc_of(batch, &h).expect("the length was checked");
    if computed != h.records_crc {
        return Err(BatchError::RecordsCrc {
            stored: h.records_crc,
            computed,
        });
    }
    Ok(h)
}

/// How a walk over batches ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanEnd {
    /// Position after the last valid batch: where the walk stopped.
    pub position: u64,
    /// One past the last valid offset.
    pub next_offset: Offset,
    /// Largest timestamp seen (`i64::MIN` when no batch was).
    pub max_timestamp_ms: crate::types::TimestampMs,
    /// Why it stopped at `position`.
    pub stop: ScanStop,
}

impl ScanEnd {
    /// Where and why the walk stopped at damage; `None` at a clean end (the end of the file or
    /// block padding).
    pub fn damage(&self) -> Option<(u64, &ScanStop)> {
        (!self.stop.is_clean()).then_some((self.position, &self.stop))
    }
}

/// Walks the batches of `bytes`, the bytes of a file from `position` to its end, with every
/// check: strict, it stops at the first batch that is not valid. Calls `each(position, header,
/// bytes)` for every valid batch.
pub fn scan_slice(
    bytes: &[u8],
    position: u64,
    expected: Offset,
    batch_bytes_max: u32,
    mut each: impl FnMut(u64, &BatchHeader, &[u8]),
) -> ScanEnd {
    let file_end = position + bytes.len() as u64;
    let rules = ScanRules {
        batch_bytes_max,
        records_crc: true,
    };
    let mut end = ScanEnd {
        position,
        next_offset: expected,
        max_timestamp_ms: i64::MIN,
        stop: ScanStop::End,
    };
    loop {
        let at = (end.position - position) as usize;
        match step(
            &bytes[at..],
            end.position,
            file_end,
            Some(end.next_offset),
            rules,
        ) {
            Step::NeedBytes(_) => unreachable!("the whole file is in the window"),
            Step::Stop(stop) => return ScanEnd { stop, ..end },
            Step::Batch(b) => {
                if let Some(stop) = b.flaw() {
                    return ScanEnd { stop, ..end };
                }
                each(end.position, &b.header, &bytes[at..at + b.len()]);
                end.advance(&b.header);
            }
        }
    }
}

impl ScanEnd {
    /// Moves past a valid batch.
    pub fn advance(&mut self, h: &BatchHeader) {
        self.position += h.batch_len as u64;
        self.next_offset = h.next_offset();
        self.max_timestamp_ms = self.max_timestamp_ms.max(h.max_timestamp_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Record;
    use crate::{encode_batch, set_base_offset};

    const RULES: ScanRules = ScanRules {
        batch_bytes_max: u32::MAX,
        records_crc: true,
    };

    fn batch(base: u64) -> Vec<u8> {
        let mut b = encode_batch(&[Record::from_value(vec![b'v'; 100])], 7);
        set_base_offset(&mut b, Offset(base));
        b
    }

    /// Two batches from file position `at`, then `tail`, the file ending right after.
    fn file(at: u64, tail: &[u8]) -> (Vec<u8>, u64) {
        let mut bytes = batch(0);
        bytes.extend(batch(1));
        let valid = at + bytes.len() as u64;
        bytes.extend_from_slice(tail);
        (bytes, valid)
    }

    fn stop_of(at: u64, tail: &[u8]) -> ScanEnd {
        let (bytes, _) = file(at, tail);
        scan_slice(&bytes, at, Offset(0), u32::MAX, |_, _, _| {})
    }

    #[test]
    fn zeros_to_a_block_boundary_are_padding() {
        let (bytes, valid) = file(32, &[]);
        let pad = (PADDING_BLOCK - valid % PADDING_BLOCK) as usize;
        let end = stop_of(32, &vec![0; pad]);
        assert_eq!(end.stop, ScanStop::ZeroTail { len: pad as u64 });
        assert_eq!(end.position, valid);
        assert_eq!(end.next_offset, Offset(2));
        assert!(end.damage().is_none());
        assert_eq!(bytes.len() as u64 + 32, valid);
    }

    #[test]
    fn zeros_off_a_block_boundary_or_too_many_are_damage() {
        let end = stop_of(32, &[0; 17]);
        assert_eq!(
            end.stop,
            ScanStop::TornHeader {
                len: 17,
                zeros: true
            }
        );
        let (_, valid) = file(32, &[]);
        let to_block = (PADDING_BLOCK - valid % PADDING_BLOCK) as usize;
        let long = to_block + 2 * PADDING_BLOCK as usize;
        assert!(matches!(
            stop_of(32, &vec![0; long]).stop,
            ScanStop::BadHeader(BatchError::HeaderCrc { .. })
        ));
        let mut garbage = vec![0; to_block];
        *garbage.last_mut().unwrap() = 1;
        assert!(stop_of(32, &garbage).damage().is_some());
    }

    #[test]
    fn every_stop_names_its_reason() {
        let b = batch(2);
        let end = stop_of(32, &b[..b.len() - 1]);
        assert!(
            matches!(end.stop, ScanStop::PastEnd { remaining, .. } if remaining == b.len() as u64 - 1)
        );
        assert_eq!(
            stop_of(32, &batch(5)).stop,
            ScanStop::OffsetGap {
                expected: Offset(2),
                found: Offset(5)
            }
        );
        let mut bad = batch(2);
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            stop_of(32, &bad).stop,
            ScanStop::RecordsCrc { .. }
        ));
        assert_eq!(stop_of(32, &[]).stop, ScanStop::End);
    }

    #[test]
    fn a_short_window_asks_for_more() {
        let b = batch(0);
        let end = 32 + b.len() as u64;
        assert_eq!(
            step(&b[..10], 32, end, None, RULES),
            Step::NeedBytes(BATCH_HEADER_LEN)
        );
        assert_eq!(
            step(&b[..60], 32, end, None, RULES),
            Step::NeedBytes(b.len())
        );
        let headers_only = ScanRules {
            records_crc: false,
            ..RULES
        };
        assert!(matches!(
            step(&b[..60], 32, end, None, headers_only),
            Step::Batch(_)
        ));
    }

    #[test]
    fn one_batch_in_memory_is_checked_whole() {
        let b = batch(3);
        assert_eq!(check_batch(&b, u32::MAX).unwrap().base_offset, Offset(3));
        assert!(matches!(
            check_batch(&b[..b.len() - 1], u32::MAX),
            Err(BatchError::LengthMismatch { .. })
        ));
        let mut bad = b.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            check_batch(&bad, u32::MAX),
            Err(BatchError::RecordsCrc { .. })
        ));
    }
}
