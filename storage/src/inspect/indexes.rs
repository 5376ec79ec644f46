//! Index files as the walk sees them: header, entries, and each entry checked against the scan
//! of its segment.

use super::*;

impl Walker<'_> {
    /// An index file, checked against the scan of its segment. Returns the number of entries.
    pub(super) fn index(
        &mut self,
        path: &Path,
        kind: IndexKind,
        base: Offset,
        scanned: Option<&Scanned>,
        _in_dir: bool,
    ) -> Result<u64> {
        self.sum.indexes += 1;
        let bytes = crate::fs::read_all(self.fs, path).at(path)?;
        let (magic, size) = match kind {
            IndexKind::Offset => (OffsetEntry::MAGIC, OffsetEntry::SIZE),
            IndexKind::Time => (TimeEntry::MAGIC, TimeEntry::SIZE),
        };
        let len = bytes.len() as u64;
        let mut problems: Vec<(u64, String)> = Vec::new();
        let entries = match decode_file_header(&bytes, magic, size as u16) {
            Err(e) => {
                problems.push((0, format!("index file header: {e}")));
                Vec::new()
            }
            Ok(b) if b != base => {
                problems.push((
                    0,
                    format!("index header says base offset {b} but the segment's is {base}"),
                ));
                Vec::new()
            }
            Ok(_) => {
                let body = &bytes[FILE_HEADER_LEN..];
                if body.len() % size != 0 {
                    problems.push((
                        len - (body.len() % size) as u64,
                        format!(
                            "index body of {} bytes is not a multiple of the {size}-byte entry",
                            body.len()
                        ),
                    ));
                }
                let mut check = EntryCheck {
                    path,
                    base,
                    scanned,
                    prev_off: None,
                    prev_time: None,
                };
                body.chunks_exact(size)
                    .enumerate()
                    .map(|(i, chunk)| {
                        let (report, what) = check.entry(kind, i, chunk);
                        if let Some(w) = what {
                            problems.push((report.entry_position, w));
                        }
                        report
                    })
                    .collect()
            }
        };
        self.index_report(path, kind, len, entries, problems)
    }

    /// Reports an index file, its entries when asked, and its first problems.
    fn index_report(
        &mut self,
        path: &Path,
        kind: IndexKind,
        len: u64,
        entries: Vec<IndexEntryReport>,
        problems: Vec<(u64, String)>,
    ) -> Result<u64> {
        let n = entries.len() as u64;
        if self.opts.batches || self.opts.index_entries {
            self.v.item(Item::Index(IndexReport {
                file: path.to_path_buf(),
                kind,
                size_bytes: len,
                entries: n,
                valid: problems.is_empty(),
            }));
        }
        if self.opts.index_entries {
            for e in entries {
                self.v.item(Item::IndexEntry(e));
            }
        }
        let total = problems.len();
        for (at, what) in problems.into_iter().take(10) {
            self.error(path, at, format!("{what}{INDEX_HINT}"));
        }
        if total > 10 {
            self.problem(
                Severity::Error,
                path,
                None,
                format!("{} more bad entries not listed", total - 10),
            );
        }
        Ok(n)
    }
}

/// The check of an index file's entries, one after the other.
struct EntryCheck<'a> {
    path: &'a Path,
    base: Offset,
    scanned: Option<&'a Scanned>,
    prev_off: Option<OffsetEntry>,
    prev_time: Option<TimeEntry>,
}

impl EntryCheck<'_> {
    /// Entry `i` (bytes `chunk`): its report line and what is wrong with it.
    fn entry(
        &mut self,
        kind: IndexKind,
        i: usize,
        chunk: &[u8],
    ) -> (IndexEntryReport, Option<String>) {
        let at = (FILE_HEADER_LEN + i * chunk.len()) as u64;
        let (offset, log_position, timestamp_ms, what) = match kind {
            IndexKind::Offset => {
                let e = OffsetEntry::decode(chunk);
                let offset = self.base.add(e.relative_offset as u64);
                let what = if self.prev_off.is_some_and(|p| !p.precedes(&e)) {
                    Some(format!("entry {i} ({offset} at {}) does not follow the one before: entries must strictly increase", e.position))
                } else {
                    self.scanned
                        .and_then(|s| check_offset_entry(s, offset, e.position as u64))
                };
                self.prev_off = Some(e);
                (offset, Some(e.position), None, what)
            }
            IndexKind::Time => {
                let e = TimeEntry::decode(chunk);
                let offset = self.base.add(e.relative_offset as u64);
                let what = if self.prev_time.is_some_and(|p| !p.precedes(&e)) {
                    Some(format!("entry {i} (timestamp {} for offset {offset}) does not follow the one before: timestamps must strictly increase", e.timestamp_ms))
                } else {
                    self.scanned
                        .and_then(|s| check_time_entry(s, offset, e.timestamp_ms))
                };
                self.prev_time = Some(e);
                (offset, None, Some(e.timestamp_ms), what)
            }
        };
        let report = IndexEntryReport {
            file: self.path.to_path_buf(),
            entry_position: at,
            offset,
            log_position,
            timestamp_ms,
            valid: what.is_none(),
        };
        (report, what)
    }
}

pub(super) fn check_offset_entry(s: &Scanned, offset: Offset, position: u64) -> Option<String> {
    if s.unread_from
        .is_some_and(|u| position >= u && position < s.len)
    {
        return None; // beyond an unreadable batch header: cannot be checked
    }
    match s.boundary_at(position) {
        None if position >= s.len => Some(format!(
            "entry for offset {offset} points at byte {position}, past the end of the {}-byte log",
            s.len
        )),
        None => Some(format!(
            "entry for offset {offset} points at byte {position}, which is not a batch boundary"
        )),
        Some(b) if b.base != offset => Some(format!(
            "entry for offset {offset} points at byte {position}, where the batch starts at offset {}",
            b.base
        )),
        Some(_) => None,
    }
}

pub(super) fn check_time_entry(s: &Scanned, offset: Offset, ts: TimestampMs) -> Option<String> {
    let seen_end = s.boundaries.last().map_or(s.next_offset, |b| b.next);
    if s.unread_from.is_some() && offset >= seen_end {
        return None; // beyond an unreadable batch header: cannot be checked
    }
    match s.batch_of(offset) {
        None => Some(format!(
            "time entry ({ts}, offset {offset}) names an offset outside the segment's valid batches"
        )),
        Some(b) if b.max_ts_so_far > ts => Some(format!(
            "time entry ({ts}, offset {offset}) is below the largest timestamp {} up to that batch",
            b.max_ts_so_far
        )),
        Some(_) => None,
    }
}
