//! Segments and their batches as the walk sees them: the file header, every batch through the
//! scanner (`format::scan`), going on past flawed batches to report them all, and their
//! records.

use super::*;

/// A batch boundary found by a scan.
#[derive(Clone, Copy, Debug)]
pub(super) struct Boundary {
    pub(super) position: u64,
    pub(super) base: Offset,
    pub(super) next: Offset,
    /// Largest timestamp of the segment up to and including this batch.
    pub(super) max_ts_so_far: TimestampMs,
}

/// What a scan of one segment found.
#[derive(Clone, Debug)]
pub(super) struct Scanned {
    pub(super) len: u64,
    /// End of the last batch before the first invalid one.
    pub(super) valid_end: u64,
    /// One past the last offset before the first invalid batch.
    pub(super) next_offset: Offset,
    pub(super) boundaries: Vec<Boundary>,
    /// Where the walk stopped at a batch header it could not read: nothing after is known.
    pub(super) unread_from: Option<u64>,
    pub(super) batches: u64,
    pub(super) records: u64,
    pub(super) max_ts: Option<TimestampMs>,
}

impl Scanned {
    pub(super) fn boundary_at(&self, position: u64) -> Option<&Boundary> {
        self.boundaries
            .binary_search_by_key(&position, |b| b.position)
            .ok()
            .map(|i| &self.boundaries[i])
    }
    /// Counts a batch found at `pos`; `valid` when no batch up to it was flawed.
    pub(super) fn add(&mut self, pos: u64, h: &BatchHeader, valid: bool) {
        self.batches += 1;
        self.records += h.record_count as u64;
        let max_so_far = self
            .max_ts
            .map_or(h.max_timestamp_ms, |m| m.max(h.max_timestamp_ms));
        self.max_ts = Some(max_so_far);
        self.boundaries.push(Boundary {
            position: pos,
            base: h.base_offset,
            next: h.next_offset(),
            max_ts_so_far: max_so_far,
        });
        if valid {
            self.valid_end = pos + h.batch_len as u64;
            self.next_offset = h.next_offset();
        }
    }

    /// The batch containing `offset`.
    pub(super) fn batch_of(&self, offset: Offset) -> Option<&Boundary> {
        let i = self.boundaries.partition_point(|b| b.base <= offset);
        i.checked_sub(1)
            .map(|i| &self.boundaries[i])
            .filter(|b| offset < b.next)
    }
}

/// Buffered positional reads of one file.
pub(super) struct Reader {
    pub(super) file: FileRef,
    pub(super) buf: Vec<u8>,
    pub(super) at: u64,
}

impl Reader {
    pub(super) const CHUNK: u64 = 4 << 20;
    pub(super) fn new(file: FileRef) -> Self {
        Reader {
            file,
            buf: Vec::new(),
            at: 0,
        }
    }
    /// The bytes buffered from `pos` on, at least `need` of them (fewer only at the end of the
    /// file).
    pub(super) fn window(
        &mut self,
        pos: u64,
        need: usize,
        file_len: u64,
    ) -> std::io::Result<&[u8]> {
        let left = file_len.saturating_sub(pos);
        let need = (need as u64).min(left) as usize;
        let buffered_end = self.at + self.buf.len() as u64;
        let have = if (self.at..=buffered_end).contains(&pos) {
            buffered_end - pos
        } else {
            0
        };
        if have < need as u64 || (have == 0 && left > 0) {
            let want = Self::CHUNK
                .min(file_len.saturating_sub(pos))
                .max(need as u64) as usize;
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.at = pos;
        }
        let rel = (pos - self.at) as usize;
        Ok(&self.buf[rel..])
    }

    /// What the scanner finds at `pos` of a file of `file_len` bytes, reading what it asks for.
    pub(super) fn step(
        &mut self,
        pos: u64,
        file_len: u64,
        expected: Option<Offset>,
        rules: ScanRules,
    ) -> std::io::Result<Step> {
        let mut need = 0;
        loop {
            let w = self.window(pos, need, file_len)?;
            match scan::step(w, pos, file_len, expected, rules) {
                Step::NeedBytes(n) if n > need => need = n,
                other => return Ok(other),
            }
        }
    }

    /// `len` bytes at `pos`; the caller checked they lie inside the file.
    pub(super) fn get(&mut self, pos: u64, len: usize, file_len: u64) -> std::io::Result<&[u8]> {
        let end = pos + len as u64;
        if pos < self.at || end > self.at + self.buf.len() as u64 {
            let want = (len as u64).max(Self::CHUNK).min(file_len - pos) as usize;
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.at = pos;
        }
        let rel = (pos - self.at) as usize;
        Ok(&self.buf[rel..rel + len])
    }
}

impl Walker<'_> {
    /// A segment file: header, then every batch. `name_base` is the base offset its name gives;
    /// `expected` the offset its first batch must have.
    pub(super) fn segment(
        &mut self,
        path: &Path,
        name_base: Option<Offset>,
        expected: Option<Offset>,
    ) -> Result<Scanned> {
        self.sum.segments += 1;
        let f = self.fs.open(path, OpenMode::Read).at(path)?;
        let len = f.len().at(path)?;
        let mut header_valid = false;
        let mut base = None;
        if len < FILE_HEADER_LEN as u64 {
            self.error(
                path,
                0,
                format!(
                    "file of {len} bytes is shorter than the {FILE_HEADER_LEN}-byte segment header"
                ),
            );
        } else {
            let mut h = [0u8; FILE_HEADER_LEN];
            f.read_exact_at(&mut h, 0).at(path)?;
            match decode_file_header(&h, SEGMENT_MAGIC, 0) {
                Ok(b) if name_base.is_some_and(|n| n != b) => {
                    base = Some(b);
                    self.error(
                        path,
                        0,
                        format!(
                            "file header says base offset {b} but the file name says {}",
                            name_base.unwrap_or_default()
                        ),
                    );
                }
                Ok(b) => {
                    base = Some(b);
                    header_valid = true;
                }
                Err(e) => self.error(path, 0, format!("segment file header: {e}")),
            }
        }
        // The segment line heads its batch lines; in a directory summary the log directory
        // item lists the segments instead.
        if self.opts.batches {
            self.v.item(Item::Segment(SegmentReport {
                file: path.to_path_buf(),
                size_bytes: len,
                base_offset: base,
                header_valid,
                headerless: false,
            }));
        }
        let expected = expected.or(base);
        if !header_valid {
            self.done += len;
            self.v.progress(self.done, self.total);
            return Ok(Scanned {
                len,
                valid_end: 0,
                next_offset: expected.unwrap_or_default(),
                boundaries: vec![],
                unread_from: Some(0),
                batches: 0,
                records: 0,
                max_ts: None,
            });
        }
        self.batches(path, &f, len, FILE_HEADER_LEN as u64, expected, false)
    }

    /// Walks the batches of `file` from `start`. With `expected` unknown, the first batch sets it.
    /// Unlike recovery it goes on past a flawed batch (out of order, bad records checksum),
    /// whose length its valid header vouches for, to report every one.
    pub(super) fn batches(
        &mut self,
        path: &Path,
        file: &FileRef,
        len: u64,
        start: u64,
        mut expected: Option<Offset>,
        _headerless: bool,
    ) -> Result<Scanned> {
        let mut r = Reader::new(file.clone());
        let mut s = Scanned {
            len,
            valid_end: start,
            next_offset: expected.unwrap_or_default(),
            boundaries: Vec::new(),
            unread_from: None,
            batches: 0,
            records: 0,
            max_ts: None,
        };
        let mut first_bad: Option<u64> = None;
        let mut pos = start;
        let mut last_progress = self.done;
        let rules = ScanRules {
            batch_bytes_max: self.opts.batch_bytes_max,
            records_crc: true,
        };
        while pos < len {
            let b = match r.step(pos, len, expected, rules).at(path)? {
                Step::Batch(b) => b,
                Step::Stop(ScanStop::End) | Step::NeedBytes(_) => break,
                Step::Stop(stop) => {
                    self.stopped(path, &mut r, pos, len, &stop, &mut first_bad)?;
                    s.unread_from = Some(pos);
                    break;
                }
            };
            expected = Some(b.header.next_offset());
            self.batch(path, &mut r, pos, len, &b, &mut s, &mut first_bad)?;
            pos += b.header.batch_len as u64;
            if self.done + (pos - start) >= last_progress + (1 << 20) {
                last_progress = self.done + (pos - start);
                self.v.progress(last_progress, self.total);
            }
        }
        self.sum.bytes += len;
        self.done += len;
        self.v.progress(self.done, self.total);
        Ok(s)
    }

    /// Reports where and why the walk of a segment stopped before its end.
    fn stopped(
        &mut self,
        path: &Path,
        r: &mut Reader,
        pos: u64,
        len: u64,
        stop: &ScanStop,
        first_bad: &mut Option<u64>,
    ) -> Result<()> {
        let remaining = len - pos;
        if let ScanStop::ZeroTail { len: zeros } = stop {
            // Start-up recovery cuts it as a clean end, so it is no damage.
            self.problem(
                Severity::Warning,
                path,
                Some(pos),
                format!(
                    "{zeros} bytes of zeros after the last batch: block padding of direct writes left by an unclean stop; the next start cuts it"
                ),
            );
            return Ok(());
        }
        let hb = r
            .get(pos, BATCH_HEADER_LEN.min(remaining as usize), len)
            .at(path)?;
        let what = stop_reason(stop, hb, remaining);
        self.error(path, pos, what);
        first_bad.get_or_insert(pos);
        Ok(())
    }

    /// One batch the scanner found at `pos`: its line, its records, then its problems.
    #[allow(clippy::too_many_arguments)]
    fn batch(
        &mut self,
        path: &Path,
        r: &mut Reader,
        pos: u64,
        len: u64,
        b: &ScannedBatch,
        s: &mut Scanned,
        first_bad: &mut Option<u64>,
    ) -> Result<()> {
        let h = b.header;
        let blen = h.batch_len as u64;
        // Problems of this batch are reported after its line.
        let mut pending: Vec<(u64, String)> = Vec::new();
        if let Some(e) = b.offset_gap {
            pending.push((
                pos,
                format!(
                    "batch base offset {} where {e} was expected (offset order broken)",
                    h.base_offset
                ),
            ));
        }
        let bytes = r.get(pos, blen as usize, len).at(path)?;
        // A replicated log's batches carry their Raft log id; a single node's carry zeros.
        let raft = crate::format::raft_stamp(bytes, &h).filter(|st| st.index > 0);
        let computed = b.records_crc.unwrap_or(h.records_crc);
        let crc_ok = computed == h.records_crc;
        let (last_ts, rec_problem) = self.records(path, pos, bytes, &h)?;
        if !crc_ok {
            pending.push((
                pos,
                format!(
                    "records checksum mismatch in batch {}..={} (stored {:#010x}, computed {computed:#010x})",
                    h.base_offset,
                    h.last_offset(),
                    h.records_crc
                ),
            ));
        } else if let Some((at, what)) = rec_problem {
            // A valid checksum over malformed records: written that way, not damaged since.
            pending.push((at, what));
        }
        if !pending.is_empty() {
            first_bad.get_or_insert(pos);
        }
        s.add(pos, &h, first_bad.is_none());
        self.sum.batches += 1;
        self.sum.records += h.record_count as u64;
        if self.opts.batches {
            self.v.item(Item::Batch(BatchReport {
                file: path.to_path_buf(),
                position: pos,
                size_bytes: h.batch_len,
                base_offset: h.base_offset,
                last_offset: h.last_offset(),
                record_count: h.record_count,
                first_timestamp_ms: h.first_timestamp_ms,
                last_timestamp_ms: last_ts,
                max_timestamp_ms: h.max_timestamp_ms,
                attributes: h.attributes,
                header_crc: h.header_crc,
                records_crc: h.records_crc,
                records_crc_computed: computed,
                records_crc_valid: crc_ok,
                raft_term: raft.map(|st| st.term),
                raft_index: raft.map(|st| st.index),
            }));
        }
        if self.opts.records {
            // Re-parse to emit (records() only checked, to keep the batch line first).
            let bytes = r.get(pos, blen as usize, len).at(path)?;
            self.record_lines(path, bytes, &h);
        }
        for (at, what) in pending {
            self.error(path, at, what);
        }
        Ok(())
    }

    /// One line per record of a batch.
    fn record_lines(&mut self, path: &Path, bytes: &[u8], h: &BatchHeader) {
        let Ok(records) = BatchRecords::new(bytes, h) else {
            return;
        };
        let items: Vec<Item> = records
            .iter()
            .map_while(|x| x.ok())
            .map(|rv| {
                Item::Record(RecordReport {
                    file: path.to_path_buf(),
                    offset: rv.offset,
                    timestamp_ms: rv.timestamp_ms,
                    key: rv.key.map(Shown::of),
                    header_names: rv.headers.iter().map(|(n, _)| Shown::of(n)).collect(),
                    value_size: rv.value.len(),
                    value: self.opts.payloads.then(|| Shown::of(rv.value)),
                })
            })
            .collect();
        for i in items {
            self.v.item(i);
        }
    }

    /// Checks the records of a batch: structure and the max timestamp field. Returns the last
    /// record's timestamp and the first problem (position in the file, what).
    #[allow(clippy::type_complexity)]
    pub(super) fn records(
        &mut self,
        _path: &Path,
        pos: u64,
        bytes: &[u8],
        h: &BatchHeader,
    ) -> Result<(Option<TimestampMs>, Option<(u64, String)>)> {
        let problem = |e: BatchError| Some((pos, format!("batch {}: {e}", h.base_offset)));
        let records = match BatchRecords::new(bytes, h) {
            Ok(r) => r,
            Err(e) => return Ok((None, problem(e))),
        };
        let mut last = None;
        for r in records.iter() {
            match r {
                Ok(r) => last = Some(r.timestamp_ms),
                Err(e) => return Ok((None, problem(e.into()))),
            }
        }
        if let Err(e) = check_body(bytes, h, STORED_RECORD_HEADERS_MAX) {
            return Ok((last, problem(e)));
        }
        Ok((last, None))
    }
}

/// What inspect says of a walk stopped by `stop` at a position with `remaining` bytes left;
/// `head` holds the bytes there (up to a batch header's length).
pub(super) fn stop_reason(stop: &ScanStop, head: &[u8], remaining: u64) -> String {
    match stop {
        ScanStop::TornHeader { len, zeros } => format!(
            "{len} trailing bytes{}, too short for a batch header (torn write)",
            if *zeros { " of zeros" } else { "" }
        ),
        ScanStop::BadHeader(BatchError::HeaderCrc { stored, computed }) => format!(
            "batch header checksum mismatch (stored {stored:#010x}, computed {computed:#010x}){}; the {remaining} bytes from here are not examined",
            if head.iter().all(|b| *b == 0) { ", header is all zeros (torn write or preallocated space)" } else { "" }
        ),
        ScanStop::BadHeader(other) => format!(
            "invalid batch header: {other}; the {remaining} bytes from here are not examined"
        ),
        ScanStop::PastEnd { header, remaining } => format!(
            "batch of {} bytes (offsets {}..={}) runs past the end of the file: {remaining} bytes left (torn write)",
            header.batch_len,
            header.base_offset,
            header.last_offset()
        ),
        other => other.to_string(),
    }
}
