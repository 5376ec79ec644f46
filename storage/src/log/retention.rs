//! Retention: deleting whole sealed segments by size or age, or below an offset.

use super::*;

impl Log {
    /// Deletes whole sealed segments beyond the retention limits; returns how many.
    pub fn enforce_retention(&self) -> Result<usize> {
        let mut st = lock(&self.shared.state);
        self.enforce_retention_locked(&mut st, now_ms())
    }

    pub(super) fn enforce_retention_locked(
        &self,
        st: &mut State,
        now: TimestampMs,
    ) -> Result<usize> {
        if self.is_replicated() {
            // Its group decides, once every replica has what goes (`Log::retention_cut`).
            return Ok(0);
        }
        let n = self.retention_count(st, now);
        self.remove_front(st, n)
    }

    /// How many whole sealed segments at the front are beyond the retention limits.
    fn retention_count(&self, st: &State, now: TimestampMs) -> usize {
        let cfg = self.retention();
        let mut total: u64 = st.segments.iter().map(|s| s.size).sum();
        let mut n = 0;
        while n + 1 < st.segments.len() {
            let s = &st.segments[n];
            let by_bytes = cfg.retention_bytes.is_some_and(|max| total > max);
            let by_age = cfg
                .retention_ms
                .is_some_and(|ms| s.retention_time_ms() < now.saturating_sub(ms_i64(ms)));
            if !(by_bytes || by_age) {
                break;
            }
            total -= s.size;
            n += 1;
        }
        n
    }

    /// Where retention would start the log now: the first offset of the first segment it
    /// would keep; `None` when it would delete nothing. A replicated log's retention deletes
    /// nothing by itself: its group's leader asks for this, and has every replica drop the
    /// segments below it once all of them have them.
    pub fn retention_cut(&self) -> Option<Offset> {
        let st = lock(&self.shared.state);
        let n = self.retention_count(&st, now_ms());
        (n > 0).then(|| st.segments[n].base())
    }

    /// Deletes sealed segments whose every offset is below `offset` (the active segment is
    /// never deleted); returns how many. Queues call this with their ack floor.
    pub fn delete_before(&self, offset: Offset) -> Result<usize> {
        let mut st = lock(&self.shared.state);
        let n = st.segments[..st.segments.len() - 1]
            .iter()
            .take_while(|s| s.next_offset <= offset)
            .count();
        self.remove_front(&mut st, n)
    }

    pub(super) fn remove_front(&self, st: &mut State, n: usize) -> Result<usize> {
        if n == 0 {
            return Ok(0);
        }
        let fs = &*self.shared.fs;
        let mut removed = st.segments.drain(..n).collect::<Vec<Segment>>().into_iter();
        while let Some(s) = removed.next() {
            tracing::info!(segment = %s.file.path.display(), "retention deletes segment {}..{}", s.base(), s.next_offset);
            if let Err(e) = Segment::remove_files(fs, &self.shared.dir, s.base()) {
                // Segments go oldest first, so the log never has a gap: what is still on disk
                // (this segment unless its `.log` is gone, and every later one) goes back to the
                // front of the log and is removed, in order, by the next call.
                let gone = !fs.exists(&segment_path(&self.shared.dir, s.base(), LOG_EXT));
                let back: Vec<Segment> = (!gone).then_some(s).into_iter().chain(removed).collect();
                st.segments.splice(0..0, back);
                return Err(e);
            }
        }
        if let Err(e) = self.shared.fs.sync_dir(&self.shared.dir) {
            let e = Error::io(&self.shared.dir, e);
            // Without a descriptor for the directory nothing was synced and nothing lost: the
            // removals become durable with the next directory sync (or are redone after a crash).
            if !e.is_fd_exhausted() {
                self.fail_stop(&e);
            }
            return Err(e);
        }
        Ok(n)
    }
}
