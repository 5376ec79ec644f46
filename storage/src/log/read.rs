//! Reads: whole batches from an offset through the scanner (`format::scan`), records, and the
//! lookup of an offset by timestamp.

use super::*;

impl Log {
    /// Reads whole batches from `from` up to about `max_bytes` (at least one batch when any is
    /// visible). The first batch may start before `from`; use [`Batch::records_from`]. Every
    /// checksum is checked again on the way out.
    pub fn read(&self, from: Offset, max_bytes: usize) -> Result<Vec<Batch>> {
        let visible = self.visible_end();
        let plan: Vec<(Arc<SegmentFile>, u64, u64)> = {
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
            st.segments[i..]
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
                .collect()
        };
        let batch_max = self.shared.config.batch_bytes_max as usize;
        let rules = ScanRules {
            batch_bytes_max: batch_max as u32,
            records_crc: true,
        };
        let headers_only = ScanRules {
            records_crc: false,
            ..rules
        };
        let mut out = Vec::new();
        let mut total = 0usize;
        for (seg, mut pos, size) in plan {
            while pos < size && total < max_bytes.max(1) {
                let want = (size - pos)
                    .min((max_bytes - total.min(max_bytes)).max(BATCH_HEADER_LEN) as u64)
                    as usize;
                let mut buf =
                    BytesMut::zeroed(want.max(BATCH_HEADER_LEN).min((size - pos) as usize));
                seg.file.read_exact_at(&mut buf, pos).at(&seg.path)?;
                // The first batch may be larger than what was read: read it whole.
                match scan::step(&buf, pos, size, None, headers_only) {
                    Step::Batch(b) if b.len() > buf.len() => {
                        buf = BytesMut::zeroed(b.len());
                        seg.file.read_exact_at(&mut buf, pos).at(&seg.path)?;
                    }
                    Step::Stop(stop) => return Err(read_damage(&seg.path, pos, &stop)),
                    _ => {}
                }
                let buf = buf.freeze();
                let mut at = 0usize;
                loop {
                    let b = match scan::step(&buf[at..], pos + at as u64, size, None, rules) {
                        // The rest of the batch is read by the next round.
                        Step::NeedBytes(_) | Step::Stop(ScanStop::End) => break,
                        // The log's own end is `size`: whatever stops a walk before it, block
                        // padding included, is damage.
                        Step::Stop(stop) => {
                            return Err(read_damage(&seg.path, pos + at as u64, &stop))
                        }
                        Step::Batch(b) => b,
                    };
                    let h = b.header;
                    if h.base_offset >= visible {
                        return Ok(out);
                    }
                    if let Some(flaw) = b.flaw() {
                        return Err(read_damage(&seg.path, pos + at as u64, &flaw));
                    }
                    let len = b.len();
                    let bytes = buf.slice(at..at + len);
                    at += len;
                    if h.last_offset() < from {
                        continue;
                    }
                    total += len;
                    out.push(Batch { header: h, bytes });
                    if total >= max_bytes {
                        return Ok(out);
                    }
                }
                pos += at as u64;
            }
            if total >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Reads records from `from`, at most `max_records` of them and about `max_bytes`.
    pub fn read_records(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Offset, Record)>> {
        let mut out = Vec::new();
        for b in self.read(from, max_bytes)? {
            for r in b.records_from(from) {
                if out.len() >= max_records {
                    return Ok(out);
                }
                let r = r?;
                out.push((r.offset, r.to_record()));
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
                for r in b.records_from(from) {
                    let r = r?;
                    if r.timestamp_ms >= ts {
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
