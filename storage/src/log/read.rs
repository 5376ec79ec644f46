//! Reads: whole batches from an offset through the scanner (`format::scan`), records, and the
//! lookup of an offset by timestamp.

use super::*;

impl Log {
    /// Reads whole batches from `from` up to about `max_bytes` (at least one batch when any is
    /// visible). The first batch may start before `from`: skip its records before `from` (see
    /// [`Batch::records`]). Every checksum is checked again on the way out.
    pub fn read(&self, from: Offset, max_bytes: usize) -> Result<Vec<Batch>> {
        self.read_to(from, self.visible_end(), max_bytes)
    }

    /// [`Log::read`] without control batches (a replicated log's blank, membership and control
    /// entries), which readers of messages skip: reads on past them while nothing else was
    /// found. Returns the batches and the offset just past the last batch read, control or
    /// not: where the next read starts when every batch read was a control batch.
    pub fn read_messages(&self, from: Offset, max_bytes: usize) -> Result<(Vec<Batch>, Offset)> {
        let mut at = from;
        loop {
            let mut batches = self.read(at, max_bytes)?;
            let Some(last) = batches.last() else {
                return Ok((batches, at));
            };
            let next = last.header.next_offset();
            batches.retain(|b| !b.header.is_control());
            if !batches.is_empty() || next <= at {
                return Ok((batches, next.max(at)));
            }
            at = next;
        }
    }

    /// [`Log::read`] past the commit point of a replicated log (up to the durable end under
    /// `always`): what Raft replication sends to followers before a majority has it.
    pub fn read_uncommitted(&self, from: Offset, max_bytes: usize) -> Result<Vec<Batch>> {
        self.read_to(from, self.readable_end(), max_bytes)
    }

    fn read_to(&self, from: Offset, visible: Offset, max_bytes: usize) -> Result<Vec<Batch>> {
        let plan = self.read_plan(from, visible)?;
        let rules = ScanRules {
            batch_bytes_max: self.shared.config.batch_bytes_max,
            records_crc: true,
        };
        let mut run = ReadRun {
            from,
            visible,
            max_bytes,
            rules,
            out: Vec::new(),
            total: 0,
            done: false,
        };
        for (seg, pos, size) in plan {
            run.segment(&seg, pos, size)?;
            if run.done || run.total >= max_bytes {
                break;
            }
        }
        Ok(run.out)
    }

    /// The segments a read from `from` goes through, each with the position to start at and
    /// the end of its written bytes; empty when `from` is the visible end.
    fn read_plan(
        &self,
        from: Offset,
        visible: Offset,
    ) -> Result<Vec<(Arc<SegmentFile>, u64, u64)>> {
        let st = lock(&self.shared.state);
        let start = st.start_offset();
        if from < start || from > visible {
            return Err(Error::OffsetOutOfRange {
                offset: from,
                start,
                end: visible,
            });
        }
        if from == visible {
            return Ok(Vec::new());
        }
        let i = st.segments.partition_point(|s| s.base() <= from) - 1;
        Ok(st.segments[i..]
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, s)| {
                let pos = if k == 0 {
                    s.position_for(from)
                } else {
                    FILE_HEADER_LEN as u64
                };
                (s.file.clone(), pos, s.written)
            })
            .collect())
    }

    /// Reads records from `from`, at most `max_records` of them and about `max_bytes`.
    pub fn read_records(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Offset, Record)>> {
        let mut out = Vec::new();
        for b in self.read_messages(from, max_bytes)?.0 {
            for r in b.records()?.iter() {
                if out.len() >= max_records {
                    return Ok(out);
                }
                let r = r.map_err(record_error)?;
                if r.offset >= from {
                    out.push((r.offset, r.to_record()));
                }
            }
        }
        Ok(out)
    }

    /// The first offset whose record timestamp is at or after `ts`; `None` when every visible
    /// record is older.
    pub fn offset_for_timestamp(&self, ts: TimestampMs) -> Result<Option<Offset>> {
        let mut from = {
            let st = lock(&self.shared.state);
            match st
                .segments
                .iter()
                .find(|s| !s.is_empty() && s.max_timestamp_ms >= ts)
            {
                Some(s) => s.offset_before_timestamp(ts),
                None => return Ok(None),
            }
        };
        loop {
            let start = self.start_offset();
            if from < start {
                from = start;
            }
            let batches = self.read(from, 1 << 20)?;
            if batches.is_empty() {
                return Ok(None);
            }
            for b in &batches {
                if b.header.max_timestamp_ms < ts {
                    continue;
                }
                for r in b.records()?.iter() {
                    let r = r.map_err(record_error)?;
                    if r.offset >= from && r.timestamp_ms >= ts {
                        return Ok(Some(r.offset));
                    }
                }
            }
            from = batches.last().expect("non-empty").header.next_offset();
        }
    }
}

/// The error of a read that meets damage below the log's end.
pub(super) fn read_damage(path: &Path, position: u64, stop: &ScanStop) -> Error {
    Error::corruption(path, position, stop.to_string())
}

/// One read in progress: what it wants and what it has gathered.
struct ReadRun {
    from: Offset,
    visible: Offset,
    max_bytes: usize,
    rules: ScanRules,
    out: Vec<Batch>,
    total: usize,
    /// Set once the read has what it can take (the visible end or `max_bytes` reached).
    done: bool,
}

impl ReadRun {
    /// Reads the batches of one segment from `pos` up to `size`, the end of its written bytes.
    fn segment(&mut self, seg: &SegmentFile, mut pos: u64, size: u64) -> Result<()> {
        while pos < size && self.total < self.max_bytes.max(1) && !self.done {
            let buf = self.chunk(seg, pos, size)?;
            pos += self.take_batches(seg, &buf, pos, size)? as u64;
        }
        Ok(())
    }

    /// Reads about what is still wanted at `pos`, and at least the first batch there whole.
    fn chunk(&self, seg: &SegmentFile, pos: u64, size: u64) -> Result<Bytes> {
        let wanted = (self.max_bytes - self.total.min(self.max_bytes)).max(BATCH_HEADER_LEN);
        let want = (size - pos).min(wanted as u64) as usize;
        let mut buf = BytesMut::zeroed(want.max(BATCH_HEADER_LEN).min((size - pos) as usize));
        seg.file.read_exact_at(&mut buf, pos).at(&seg.path)?;
        let headers_only = ScanRules {
            records_crc: false,
            ..self.rules
        };
        // The first batch may be larger than what was read: read it whole.
        match scan::step(&buf, pos, size, None, headers_only) {
            Step::Batch(b) if b.len() > buf.len() => {
                buf = BytesMut::zeroed(b.len());
                seg.file.read_exact_at(&mut buf, pos).at(&seg.path)?;
            }
            Step::Stop(stop) => return Err(read_damage(&seg.path, pos, &stop)),
            _ => {}
        }
        Ok(buf.freeze())
    }

    /// Takes the whole batches of `buf`, read at `pos`, each checked by the scanner; returns
    /// the bytes they span (a batch cut off at the end of `buf` is read by the next chunk).
    fn take_batches(
        &mut self,
        seg: &SegmentFile,
        buf: &Bytes,
        pos: u64,
        size: u64,
    ) -> Result<usize> {
        let mut at = 0usize;
        loop {
            let b = match scan::step(&buf[at..], pos + at as u64, size, None, self.rules) {
                Step::NeedBytes(_) | Step::Stop(ScanStop::End) => return Ok(at),
                // The log's own end is `size`: whatever stops a walk before it, block padding
                // included, is damage.
                Step::Stop(stop) => return Err(read_damage(&seg.path, pos + at as u64, &stop)),
                Step::Batch(b) => b,
            };
            let h = b.header;
            if h.base_offset >= self.visible {
                self.done = true;
                return Ok(at);
            }
            if let Some(flaw) = b.flaw() {
                return Err(read_damage(&seg.path, pos + at as u64, &flaw));
            }
            let len = b.len();
            let bytes = buf.slice(at..at + len);
            at += len;
            if h.last_offset() < self.from {
                continue;
            }
            self.total += len;
            self.out.push(Batch { header: h, bytes });
            if self.total >= self.max_bytes {
                self.done = true;
                return Ok(at);
            }
        }
    }
}
