//! Direct writes of the active segment: appends gather in an aligned buffer from the last
//! block boundary on, and the group-commit leader takes them as a [`FlushJob`] written through
//! an O_DIRECT handle; buffered writes are the fallback where O_DIRECT is refused.

use std::path::PathBuf;

use crate::aligned::{round_down, AlignedBuf};
use crate::error::{IoContext, Result};
use crate::fs::{FileRef, FileSystem};

use super::Segment;

impl Segment {
    /// Switches appends to direct writes through a second, O_DIRECT handle. Falls back to
    /// buffered writes (and says so) when the file system refuses O_DIRECT.
    pub fn enable_direct(&mut self, fs: &dyn FileSystem) -> Result<()> {
        if self.direct.is_some() {
            return Ok(());
        }
        let file = match fs.open_direct(&self.file.path) {
            Ok(f) => f,
            Err(e) => {
                tracing::info!(segment = %self.file.path.display(), "O_DIRECT unavailable, using buffered writes: {e}");
                return Ok(());
            }
        };
        // Seed the buffer with the partial last block, which every direct write rewrites.
        let buf_pos = round_down(self.size);
        let mut buf = AlignedBuf::with_capacity(DIRECT_BUF_BYTES);
        let mut partial = vec![0u8; (self.size - buf_pos) as usize];
        self.file
            .file
            .read_exact_at(&mut partial, buf_pos)
            .at(&self.file.path)?;
        buf.extend_from_slice(&partial);
        self.direct = Some(DirectTail {
            file,
            buf,
            buf_pos,
            spare: None,
        });
        Ok(())
    }

    /// Sets the segment's size after recovery decided where its valid bytes end.
    pub fn set_len_after_recovery(&mut self, len: u64) {
        assert!(
            self.direct.is_none(),
            "recovery runs before direct writes start"
        );
        self.size = len;
        self.written = len;
    }

    /// True when appends go through direct writes.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Bytes appended but not yet handed to a flush job (direct mode).
    pub fn pending_bytes(&self) -> u64 {
        self.size - self.written
    }

    /// Takes the bytes appended since the last flush as a job for the group-commit leader, who
    /// writes it outside the state lock. `None` when nothing is pending or not in direct mode.
    pub fn take_flush(&mut self) -> Option<FlushJob> {
        let size = self.size;
        let d = self.direct.as_mut()?;
        if d.buf_pos + d.buf.len() as u64 <= self.written {
            return None;
        }
        debug_assert_eq!(d.buf_pos + d.buf.len() as u64, size);
        // The next job starts at the block holding the end and rewrites that partial block.
        let next_pos = round_down(size);
        let mut next = d
            .spare
            .take()
            .unwrap_or_else(|| AlignedBuf::with_capacity(DIRECT_BUF_BYTES));
        next.clear();
        next.extend_from_slice(&d.buf.as_slice()[(next_pos - d.buf_pos) as usize..]);
        let data = std::mem::replace(&mut d.buf, next);
        let position = std::mem::replace(&mut d.buf_pos, next_pos);
        Some(FlushJob {
            file: d.file.clone(),
            path: self.file.path.clone(),
            position,
            data,
            end: size,
        })
    }

    /// Records that a job's bytes are in the file; its buffer is kept for the next job.
    pub fn flushed(&mut self, job: FlushJob) {
        self.written = self.written.max(job.end);
        if let Some(d) = self.direct.as_mut() {
            // Keep one spare; a buffer grown by a burst is dropped once it is over 4x the base.
            if job.data.capacity() <= 4 * DIRECT_BUF_BYTES.max(d.buf.capacity()) {
                d.spare = Some(job.data);
            }
        }
    }

    /// Puts a failed job's bytes back in front of what was appended since, so a later flush
    /// writes them (a full disk loses nothing).
    pub fn restore(&mut self, job: FlushJob) {
        let Some(d) = self.direct.as_mut() else {
            return;
        };
        let overlap = (job.end - d.buf_pos) as usize;
        let mut merged = AlignedBuf::with_capacity(job.data.len() + d.buf.len());
        merged.extend_from_slice(job.data.as_slice());
        merged.extend_from_slice(&d.buf.as_slice()[overlap..]);
        d.buf = merged;
        d.buf_pos = job.position;
    }

    /// Writes whatever is pending now (under the caller's lock) and leaves direct mode, cutting
    /// the block padding off the file. The caller syncs.
    pub fn finish_direct(&mut self) -> Result<()> {
        if let Some(mut job) = self.take_flush() {
            if let Err(e) = job.write() {
                self.restore(job);
                return Err(e);
            }
            self.flushed(job);
        }
        if self.direct.is_some() {
            // Leave direct mode only once the padding is cut: if the cut fails, the next seal
            // attempt cuts again instead of sealing a segment with zeros after its last batch.
            self.file.file.set_len(self.size).at(&self.file.path)?;
            self.direct = None;
        }
        Ok(())
    }
}

/// Direct-write state of the active segment: the bytes from the last block boundary on.
#[derive(Debug)]
pub(super) struct DirectTail {
    file: FileRef,
    pub(super) buf: AlignedBuf,
    /// File position of `buf[0]`, a multiple of the block size.
    buf_pos: u64,
    /// The buffer of the last written job, reused by the next one.
    spare: Option<AlignedBuf>,
}

/// Initial size of a direct tail buffer; it grows with the bytes pending between syncs.
const DIRECT_BUF_BYTES: usize = 64 << 10;

/// Bytes to write with one direct write, taken by the group-commit leader.
#[derive(Debug)]
pub struct FlushJob {
    file: FileRef,
    path: PathBuf,
    /// Aligned file position of the first byte.
    position: u64,
    data: AlignedBuf,
    /// Segment size once written.
    pub end: u64,
}

impl FlushJob {
    /// Writes the bytes, zero-padded to whole blocks (the padding is overwritten by the next
    /// write, cut at seal and close, and recognised by recovery).
    pub fn write(&mut self) -> Result<()> {
        self.file
            .write_all_at(self.data.padded(), self.position)
            .at(&self.path)
    }
}
