//! Starting over: a replica of a replicated log that installs a snapshot (its group's log was
//! cut below what it has) drops everything it holds and continues empty at the offset the
//! snapshot names, where the leader's next entry is stored.
//!
//! Order of the steps, so a crash at any point leaves a log recovery accepts and never a gap:
//! segments are removed newest first (a crash leaves a shorter log of what was there), then the
//! new empty segment is created and the directory synced, then the recovery point rewritten. A
//! crash before the end leaves the replica's applied state as it was, so its group sends the
//! snapshot again.

use super::*;

impl Log {
    /// Drops every segment and continues empty at `offset`: afterwards the log starts and ends
    /// there, and the next append is stored at `offset`. The commit point, when the log has one,
    /// is moved to `offset` too. Returns how many offsets were dropped.
    pub fn restart_at(&self, offset: Offset) -> Result<u64> {
        let _leader = lock(&self.shared.sync_lock);
        let mut st = lock(&self.shared.state);
        self.check_writable()?;
        if st.closed {
            return Err(Error::Closed);
        }
        let dropped = st.next_offset().0 - st.start_offset().0;
        st.active_mut().finish_direct()?;
        let result = self.start_over(&mut st, offset);
        if let Err(e) = &result {
            // Files and state apart: stop writing; reopening recovers what is on disk.
            self.fail_stop(e);
        }
        result.map(|()| dropped)
    }

    fn start_over(&self, st: &mut State, offset: Offset) -> Result<()> {
        let fs = &*self.shared.fs;
        let dir = &self.shared.dir;
        while let Some(s) = st.segments.pop() {
            Segment::remove_files(fs, dir, s.base())?;
        }
        let mut seg = Segment::create(fs, dir, offset, now_ms())?;
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        let cfg = &self.shared.config;
        if cfg.fsync == FsyncPolicy::Always && cfg.direct_io {
            seg.enable_direct(fs)?;
        }
        st.segments.push(seg);
        st.producers = None;
        self.shared.written_end.store(offset.0, Ordering::Release);
        self.shared.durable_end.store(offset.0, Ordering::Release);
        if self.is_replicated() {
            self.shared.commit_end.store(offset.0, Ordering::Release);
        }
        self.write_recovery_point(st)?;
        self.notify_visible();
        tracing::info!(dir = %dir.display(), "the log starts over, empty, at {offset}");
        Ok(())
    }
}
