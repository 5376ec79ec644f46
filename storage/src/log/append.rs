//! Appends: validation of a batch, its base offset, the write into the active segment, and the
//! roll to a new segment when the active one is full or old.

use super::producers::{ProducerBatch, ProducerTable, Verdict, PRODUCER_SCAN_BYTES_MAX};
use super::*;
use std::sync::MutexGuard;

/// What an idempotent append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The batch was written at these offsets.
    New(AppendInfo),
    /// The batch is a retry of one already written at these offsets; nothing was written.
    Duplicate(AppendInfo),
}

/// The idempotent producer of a stored batch, if a Kafka producer with idempotence wrote it.
fn producer_of(bytes: &[u8], h: &BatchHeader) -> Option<ProducerBatch> {
    let k = format::KafkaHeader::read(format::kafka_body(bytes, h)?).ok()?;
    (k.producer_id >= 0).then_some(ProducerBatch {
        id: k.producer_id,
        epoch: k.producer_epoch,
        base_sequence: k.base_sequence,
        record_count: h.record_count,
    })
}

impl Log {
    /// Appends records as one batch and returns their offsets. Under `always` it returns once the
    /// batch is durable.
    pub fn append(&self, records: &[Record]) -> Result<AppendInfo> {
        if records.is_empty() {
            return Err(Error::InvalidBatch(
                "a batch holds at least one record".into(),
            ));
        }
        self.append_encoded(format::encode_batch(records, now_ms()))
    }

    /// Appends a batch already in the on-disk layout (see [`format::BatchBuilder`]); its base
    /// offset is replaced. Under `always` it returns once the batch is durable.
    pub fn append_encoded(&self, batch: Vec<u8>) -> Result<AppendInfo> {
        let info = self.append_unsynced(batch)?;
        if self.shared.config.fsync == FsyncPolicy::Always {
            self.sync_to(info.next_offset())?;
        }
        Ok(info)
    }

    /// Appends records the broker copies from another log (dead letters): like [`Log::append`],
    /// but a record may carry up to [`format::STORED_RECORD_HEADERS_MAX`] headers, leaving room
    /// for the headers the broker adds to a published record.
    pub(crate) fn append_forwarded(&self, records: &[Record]) -> Result<AppendInfo> {
        if records.is_empty() {
            return Err(Error::InvalidBatch(
                "a batch holds at least one record".into(),
            ));
        }
        let batch = format::encode_batch(records, now_ms());
        let info = self.append_unsynced_within(batch, format::STORED_RECORD_HEADERS_MAX)?;
        if self.shared.config.fsync == FsyncPolicy::Always {
            self.sync_to(info.next_offset())?;
        }
        Ok(info)
    }

    /// Writes a batch without waiting for durability; pair with [`Log::sync_to`]. The batch is
    /// fully validated (both checksums, every record, at most [`format::RECORD_HEADERS_MAX`]
    /// headers a record) before anything is written.
    pub fn append_unsynced(&self, batch: Vec<u8>) -> Result<AppendInfo> {
        self.append_unsynced_within(batch, format::RECORD_HEADERS_MAX)
    }

    /// [`Log::append_unsynced`] for a batch of an idempotent producer (`p`, as its Kafka batch
    /// header says): a retry of one of the producer's last batches is not written again but
    /// answered with the offsets it was given ([`Appended::Duplicate`]; wait for those with
    /// [`Log::sync_to`] too), and a batch out of sequence or from a fenced epoch is refused with
    /// [`Error::Producer`].
    pub fn append_idempotent(&self, batch: Vec<u8>, p: ProducerBatch) -> Result<Appended> {
        self.ensure_producers()?;
        self.append_checked(batch, format::RECORD_HEADERS_MAX, Some(&p), false)
    }

    pub(super) fn append_unsynced_within(
        &self,
        batch: Vec<u8>,
        headers_max: usize,
    ) -> Result<AppendInfo> {
        match self.append_checked(batch, headers_max, None, false)? {
            Appended::New(info) | Appended::Duplicate(info) => Ok(info),
        }
    }

    /// Writes one entry of a replicated log without waiting for durability (pair with
    /// [`Log::sync_to`]): a message batch, or a control batch ([`format::ATTR_CONTROL`]), which
    /// every other append refuses. The batch carries its Raft stamp already
    /// ([`format::set_raft_stamp`]).
    pub fn append_replicated(&self, batch: Vec<u8>) -> Result<AppendInfo> {
        match self.append_checked(batch, format::RECORD_HEADERS_MAX, None, true)? {
            Appended::New(info) | Appended::Duplicate(info) => Ok(info),
        }
    }

    /// Validates and writes a batch; with `producer`, checks it against the producer table under
    /// the same lock as the write. A control batch is refused unless `control` allows it.
    fn append_checked(
        &self,
        mut batch: Vec<u8>,
        headers_max: usize,
        producer: Option<&ProducerBatch>,
        control: bool,
    ) -> Result<Appended> {
        let h =
            format::validate_batch_within(&batch, self.shared.config.batch_bytes_max, headers_max)
                .map_err(|e| Error::InvalidBatch(e.to_string()))?;
        if h.is_control() && !control {
            return Err(Error::InvalidBatch(
                "control batches are written by replicated logs only".into(),
            ));
        }
        self.check_writable()?;
        let cfg = &self.shared.config;
        let now = now_ms();
        let (mut st, _leader) = self.lock_rolled(batch.len() as u64, now)?;
        if st.closed {
            return Err(Error::Closed);
        }
        if let Some(p) = producer {
            let table = st.producers.get_or_insert_with(ProducerTable::default);
            if let Verdict::Duplicate { base, last } = table.check(p).map_err(Error::Producer)? {
                return Ok(Appended::Duplicate(AppendInfo {
                    base_offset: base,
                    last_offset: last,
                }));
            }
        }
        if st.active().pending_bytes() + batch.len() as u64 > DIRECT_PENDING_BYTES_MAX {
            return Err(Error::LimitReached(format!(
                "{} bytes wait to be written to {}; the disk is not keeping up or failing",
                st.active().pending_bytes(),
                self.shared.dir.display()
            )));
        }
        let base = st.next_offset();
        format::set_base_offset(&mut batch, base);
        let h = BatchHeader {
            base_offset: base,
            ..h
        };
        debug_assert!(decode_batch_header(&batch, u32::MAX).is_ok_and(|d| d.base_offset == base));
        let active = st.active_mut();
        if active.is_empty() {
            active.opened_ms = now;
        }
        active.written_ms_max = active.written_ms_max.max(now);
        // A failed write is cut back by the segment, so the log stays writable (a full disk
        // refuses this batch and accepts later ones once space is free).
        active.append(&batch, &h, cfg.index_interval_bytes)?;
        if let (Some(p), Some(table)) = (producer, st.producers.as_mut()) {
            table.record(p, base, h.last_offset());
        }
        let next = st.next_offset();
        self.shared.written_end.store(next.0, Ordering::Release);
        drop(st);
        if cfg.fsync != FsyncPolicy::Always {
            self.notify_visible();
        }
        Ok(Appended::New(AppendInfo {
            base_offset: base,
            last_offset: h.last_offset(),
        }))
    }

    /// Locks the state for an append of `batch_bytes`, rolling the active segment first when
    /// the batch would overflow it or it is too old. Returns the sync lock too when a roll
    /// needed it, to be held until the append is done.
    fn lock_rolled(
        &self,
        batch_bytes: u64,
        now: i64,
    ) -> Result<(MutexGuard<'_, State>, Option<MutexGuard<'_, ()>>)> {
        let cfg = &self.shared.config;
        let needs_roll = |st: &State| {
            let active = st.active();
            let too_big = active.size + batch_bytes > cfg.segment_bytes_max;
            let too_old = cfg
                .segment_ms_max
                .is_some_and(|ms| now.saturating_sub(active.opened_ms) >= ms_i64(ms));
            !active.is_empty() && (too_big || too_old)
        };
        let mut st = lock(&self.shared.state);
        let mut leader = None;
        if !st.closed && needs_roll(&st) {
            // A roll must not run while a group-commit leader writes the active segment
            // outside the state lock: take the sync lock first (lock order: sync, then state).
            drop(st);
            leader = Some(lock(&self.shared.sync_lock));
            st = lock(&self.shared.state);
            self.check_writable()?;
            if !st.closed && needs_roll(&st) {
                self.roll(&mut st, now)?;
            }
        }
        Ok((st, leader))
    }

    /// Builds the producer table from the end of the log, once per open, before the first
    /// idempotent append (see `producers`).
    fn ensure_producers(&self) -> Result<()> {
        if lock(&self.shared.state).producers.is_some() {
            return Ok(());
        }
        let table = self.scan_producers(false)?;
        let mut st = lock(&self.shared.state);
        if st.producers.is_none() {
            st.producers = Some(table);
        }
        Ok(())
    }

    /// The idempotent producers of the batches at the end of this replicated log, those not
    /// committed yet included: what a leader checks a producer's next batch against before it
    /// proposes it (the table of [`Log::append_idempotent`] is not kept for replicated logs).
    pub fn producer_table_to_end(&self) -> Result<ProducerTable> {
        self.scan_producers(true)
    }

    /// Reads the batches of the last [`PRODUCER_SCAN_BYTES_MAX`] bytes of the log (up to its
    /// visible end, or with `uncommitted` its readable end) and records every idempotent
    /// producer's.
    fn scan_producers(&self, uncommitted: bool) -> Result<ProducerTable> {
        let end = match uncommitted {
            true => self.readable_end(),
            false => self.visible_end(),
        };
        let from = {
            let st = lock(&self.shared.state);
            let mut bytes = 0;
            let mut from = st.next_offset();
            for s in st.segments.iter().rev() {
                from = s.base();
                bytes += s.size;
                if bytes >= PRODUCER_SCAN_BYTES_MAX {
                    break;
                }
            }
            from
        };
        let mut table = ProducerTable::default();
        let mut at = from;
        while at < end {
            let batches = match uncommitted {
                true => self.read_uncommitted(at, 1 << 20)?,
                false => self.read(at, 1 << 20)?,
            };
            let Some(last) = batches.last() else { break };
            at = last.header.next_offset();
            for b in &batches {
                if let Some(p) = producer_of(&b.bytes, &b.header) {
                    table.record(&p, b.header.base_offset, b.header.last_offset());
                }
            }
        }
        Ok(table)
    }

    /// Seals the active segment (synced, indexes written) and starts a new one. Runs under the
    /// state lock.
    pub(super) fn roll(&self, st: &mut State, now: TimestampMs) -> Result<()> {
        let fs = &*self.shared.fs;
        let dir = &self.shared.dir;
        let old = st.active_mut();
        old.finish_direct()?;
        if let Err(e) = old.file.file.sync_data() {
            let e = Error::io(&old.file.path, e);
            self.fail_stop(&e);
            return Err(e);
        }
        old.write_indexes(fs, dir)?;
        let base = old.next_offset;
        let mut seg = Segment::create(fs, dir, base, now).inspect_err(|e| {
            // A half-made segment file is removed so recovery does not meet it.
            let _ = Segment::remove_files(fs, dir, base);
            if matches!(e, Error::Io { .. }) && !e.is_disk_full() {
                tracing::warn!("creating segment {base} failed: {e}");
            }
        })?;
        let direct =
            self.shared.config.fsync == FsyncPolicy::Always && self.shared.config.direct_io;
        let made = match fs.sync_dir(dir) {
            Err(e) => Err(Error::io(dir, e)),
            Ok(()) if direct => seg.enable_direct(fs),
            Ok(()) => Ok(()),
        };
        if let Err(e) = made {
            // The old segment stays the active one and the next append rolls again. Only a
            // failed directory fsync stops the log; running out of file descriptors to make the
            // new segment with loses nothing.
            let _ = Segment::remove_files(fs, dir, base);
            if !e.is_fd_exhausted() && matches!(e, Error::Io { ref path, .. } if path == dir) {
                self.fail_stop(&e);
            }
            return Err(e);
        }
        st.segments.push(seg);
        // Everything before the new segment is durable now.
        self.advance_durable(base);
        // The roll is complete and durable: a recovery point that cannot be written (no room
        // for its temporary file) only makes the next recovery scan from the previous one, so
        // it must not fail the append that is waiting for this roll.
        if let Err(e) = self.write_recovery_point(st) {
            tracing::warn!(dir = %dir.display(), "could not write the recovery point after a roll: {e}");
        }
        self.enforce_retention_locked(st, now)?;
        Ok(())
    }
}
