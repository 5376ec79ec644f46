//! Group commit: [`Log::sync_to`] makes offsets durable with one sync for every writer that
//! arrived meanwhile, advances the durable end and moves the recovery point.

use super::*;

impl Log {
    /// Makes every offset below `target` durable (group commit): returns at once when it already
    /// is, otherwise syncs once for every writer that arrived meanwhile.
    pub fn sync_to(&self, target: Offset) -> Result<()> {
        if self.durable_end() >= target {
            return Ok(());
        }
        let _leader = lock(&self.shared.sync_lock);
        if self.durable_end() >= target {
            return Ok(());
        }
        self.check_writable()?;
        let (file, path, end, base, size, job) = {
            let mut st = lock(&self.shared.state);
            let a = st.active_mut();
            let job = a.take_flush();
            (
                a.file.file.clone(),
                a.file.path.clone(),
                a.next_offset,
                a.base(),
                a.size,
                job,
            )
        };
        if let Some(mut job) = job {
            // One direct write for every append that arrived since the last group commit.
            let written = job.write();
            let mut st = lock(&self.shared.state);
            let a = st.active_mut();
            debug_assert_eq!(
                a.base(),
                base,
                "no roll while the leader holds the sync lock"
            );
            if let Err(e) = written {
                a.restore(job);
                return Err(e);
            }
            a.flushed(job);
        }
        if let Err(e) = file.sync_data() {
            let e = Error::io(path, e);
            self.fail_stop(&e);
            return Err(e);
        }
        self.advance_durable(end);
        if end < target {
            return Err(Error::InvalidArgument(format!(
                "cannot make offset {target} durable: the log ends at {end}"
            )));
        }
        let mut st = lock(&self.shared.state);
        // Count only the bytes synced past the last recovery point: adding the whole segment
        // size on every sync rewrote the recovery point (two more fsyncs) on every append once
        // the active segment outgrew the interval.
        let since = if st.rp_at.0 == base {
            size.saturating_sub(st.rp_at.1)
        } else {
            size
        };
        if since >= self.shared.config.recovery_point_interval_bytes
            && st.active().next_offset == end
        {
            // The indexes of the active segment go out with the recovery point: without them
            // recovery cannot start at the recovery point and rescans the whole segment.
            let fs = &*self.shared.fs;
            if let Err(e) = st.active_mut().write_indexes(fs, &self.shared.dir) {
                tracing::warn!(dir = %self.shared.dir.display(), "could not write the active indexes: {e}");
            }
            // The data is durable at this point: the append succeeded. The recovery point only
            // bounds the next recovery's scan, so failing to move it (a full disk) must not turn
            // a committed append into an error the caller would retry into a duplicate.
            if let Err(e) = self.write_recovery_point(&mut st) {
                tracing::warn!(dir = %self.shared.dir.display(), "could not write the recovery point: {e}");
            }
        }
        Ok(())
    }

    /// Syncs everything written so far, whatever the policy.
    pub fn flush(&self) -> Result<()> {
        self.sync_to(self.end_offset())
    }

    pub(super) fn advance_durable(&self, end: Offset) {
        let prev = self.shared.durable_end.fetch_max(end.0, Ordering::AcqRel);
        if end.0 > prev && self.shared.config.fsync == FsyncPolicy::Always {
            self.notify_visible();
        }
    }

    pub(super) fn write_recovery_point(&self, st: &mut State) -> Result<()> {
        let active = st.active();
        let rp = RecoveryPoint {
            segment_base: active.base(),
            position: active.size,
            next_offset: active.next_offset,
            max_timestamp_ms: active.max_timestamp_ms,
        };
        let path = self.shared.dir.join(RECOVERY_POINT_FILE);
        write_atomic(&*self.shared.fs, &path, &rp.encode()).at(&path)?;
        st.rp_at = (rp.segment_base, rp.position);
        Ok(())
    }
}
