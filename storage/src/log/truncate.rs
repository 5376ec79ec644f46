//! Truncating the tail: a follower of a replicated log drops the entries its new leader does not
//! have (Raft's log conflict), before it appends the leader's.
//!
//! Order of the steps, so a crash at any point leaves a log recovery accepts and never a gap:
//! the pending direct writes are written, later segments are removed newest first, the segment
//! holding the cut is shortened and synced, its indexes and the recovery point are rewritten,
//! and the directory is synced. A crash before the cut is complete brings back entries that
//! were never committed, which Raft truncates again; no append happens before the recovery
//! point is moved, so recovery never starts scanning past the cut in the middle of new data.

use super::*;

impl Log {
    /// Deletes every batch at or after `offset`, which must start a batch and may not be below
    /// the start of the log or the commit point ([`Log::set_commit_end`]). Returns how many
    /// offsets were dropped.
    pub fn truncate_from(&self, offset: Offset) -> Result<u64> {
        let _leader = lock(&self.shared.sync_lock);
        let mut st = lock(&self.shared.state);
        self.check_writable()?;
        if st.closed {
            return Err(Error::Closed);
        }
        let end = st.next_offset();
        if offset >= end {
            return Ok(0);
        }
        if offset < st.start_offset() {
            return Err(Error::InvalidArgument(format!(
                "cannot truncate {} at {offset}: the log starts at {}",
                self.shared.dir.display(),
                st.start_offset()
            )));
        }
        if self.commit_end().is_some_and(|c| offset < c) {
            return Err(Error::InvalidArgument(format!(
                "cannot truncate {} at {offset}: offsets below {} are committed",
                self.shared.dir.display(),
                self.commit_end().unwrap_or_default()
            )));
        }
        // Find the cut before changing anything: an offset inside a batch is refused with the log
        // as it was.
        st.active_mut().finish_direct()?;
        let found = locate(&st, offset, self.shared.config.batch_bytes_max);
        let (index, pos) = match found {
            Ok(at) => at,
            Err(e) => {
                self.resume_direct(&mut st)?;
                return Err(e);
            }
        };
        let result = self.cut_tail(&mut st, offset, index, pos);
        if let Err(e) = &result {
            // A half-done truncation leaves the files and the state apart: stop writing, as
            // after a failed fsync; reopening recovers a consistent log.
            self.fail_stop(e);
        }
        result.map(|()| end.0 - offset.0)
    }

    /// Cuts the log at `offset`, which starts at `pos` in segment `index`.
    fn cut_tail(&self, st: &mut State, offset: Offset, index: usize, pos: u64) -> Result<()> {
        let fs = &*self.shared.fs;
        let dir = &self.shared.dir;
        let mut removed = false;
        while st.segments.len() > index + 1 {
            let s = st.segments.pop().expect("more than one segment");
            Segment::remove_files(fs, dir, s.base())?;
            removed = true;
        }
        let seg = st.active_mut();
        seg.file.file.set_len(pos).at(&seg.file.path)?;
        seg.file.file.sync_data().at(&seg.file.path)?;
        seg.set_len_after_recovery(pos);
        seg.next_offset = offset;
        seg.truncate_indexes(pos, offset);
        seg.write_indexes(fs, dir)?;
        st.producers = None;
        self.shared.written_end.store(offset.0, Ordering::Release);
        self.shared
            .durable_end
            .fetch_min(offset.0, Ordering::AcqRel);
        self.write_recovery_point(st)?;
        if removed {
            fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        }
        self.resume_direct(st)?;
        tracing::info!(dir = %dir.display(), "truncated the log at {offset}");
        Ok(())
    }

    /// Direct writes again for the active segment when the configuration asks for them.
    fn resume_direct(&self, st: &mut State) -> Result<()> {
        let cfg = &self.shared.config;
        if cfg.fsync == FsyncPolicy::Always && cfg.direct_io {
            st.active_mut().enable_direct(&*self.shared.fs)?;
        }
        Ok(())
    }
}

/// The segment holding `offset` and the position of the batch starting there.
fn locate(st: &State, offset: Offset, batch_bytes_max: u32) -> Result<(usize, u64)> {
    let index = st
        .segments
        .iter()
        .rposition(|s| s.base() <= offset)
        .expect("offset is at or past the start of the log");
    let pos = batch_position(&st.segments[index], offset, batch_bytes_max)?;
    Ok((index, pos))
}

/// The file position of the batch starting at `offset` in `seg`, found from the offset index by
/// reading headers only; an error when `offset` falls inside a batch.
fn batch_position(seg: &Segment, offset: Offset, batch_bytes_max: u32) -> Result<u64> {
    if offset == seg.base() {
        return Ok(FILE_HEADER_LEN as u64);
    }
    let mut pos = seg.position_for(offset);
    let mut h = [0u8; BATCH_HEADER_LEN];
    while pos < seg.size {
        seg.file
            .file
            .read_exact_at(&mut h, pos)
            .at(&seg.file.path)?;
        let header = decode_batch_header(&h, batch_bytes_max)
            .map_err(|e| Error::corruption(&seg.file.path, pos, e.to_string()))?;
        if header.base_offset == offset {
            return Ok(pos);
        }
        if header.next_offset() > offset {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} is inside the batch {}..{} of {}",
                header.base_offset,
                header.next_offset(),
                seg.file.path.display()
            )));
        }
        pos += header.batch_len as u64;
    }
    Err(Error::InvalidArgument(format!(
        "no batch starts at {offset} in {}",
        seg.file.path.display()
    )))
}
