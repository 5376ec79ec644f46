//! The walk of a path: what it is, the log directories under it, the walker's state and its
//! visit of a log directory (segments in order, their indexes, state and other files).

use super::*;

/// What a path is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// A directory holding segment or state files.
    LogDir,
    /// Any other directory: its subdirectories are searched for log directories.
    Tree,
    /// A segment, index or state file.
    File,
}

pub(super) fn classify(fs: &dyn FileSystem, path: &Path) -> Result<Target> {
    if !fs.is_dir(path) {
        if !fs.exists(path) {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
        return Ok(Target::File);
    }
    let names = fs.read_dir(path).at(path)?;
    let is_log = names.iter().any(|n| {
        parse_segment_name(n).is_some() || n == RECOVERY_POINT_FILE || n == CLEAN_SHUTDOWN_FILE
    });
    Ok(if is_log { Target::LogDir } else { Target::Tree })
}

/// The log directories under `path` (itself when it is one), depth first, sorted; at most four
/// levels deep (`<root>/topics/<name>/log`).
pub(super) fn log_dirs(
    fs: &dyn FileSystem,
    path: &Path,
    depth: u32,
    out: &mut Vec<PathBuf>,
) -> Result<()> {
    match classify(fs, path)? {
        Target::LogDir => out.push(path.to_path_buf()),
        Target::File => {}
        Target::Tree if depth < 4 => {
            for n in fs.read_dir(path).at(path)? {
                let p = path.join(&n);
                // A tombstone is a deleted directory being removed, not a log to inspect.
                if fs.is_dir(&p) && !crate::store::is_tombstone(&n) {
                    log_dirs(fs, &p, depth + 1, out)?;
                }
            }
        }
        Target::Tree => {}
    }
    Ok(())
}

pub(super) fn file_len(fs: &dyn FileSystem, path: &Path) -> Result<u64> {
    fs.open(path, OpenMode::Read).and_then(|f| f.len()).at(path)
}

pub(super) struct Walker<'a> {
    pub(super) fs: &'a dyn FileSystem,
    pub(super) opts: InspectOptions,
    pub(super) v: &'a mut dyn Visitor,
    pub(super) sum: Summary,
    pub(super) done: u64,
    pub(super) total: u64,
}

impl Walker<'_> {
    pub(super) fn problem(
        &mut self,
        severity: Severity,
        file: &Path,
        position: Option<u64>,
        what: String,
    ) {
        match severity {
            Severity::Error => self.sum.errors += 1,
            Severity::Warning => self.sum.warnings += 1,
        }
        self.v.item(Item::Problem(Problem {
            severity,
            file: file.to_path_buf(),
            position,
            what,
        }));
    }

    pub(super) fn error(&mut self, file: &Path, position: u64, what: String) {
        self.problem(Severity::Error, file, Some(position), what)
    }

    /// A single file given on the command line.
    pub(super) fn file(&mut self, path: &Path) -> Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = path.parent().unwrap_or(Path::new("."));
        match parse_segment_name(&name) {
            Some((base, LOG_EXT)) => {
                self.opts.batches = true;
                self.segment(path, Some(base), Some(base))?;
            }
            Some((base, ext)) => {
                self.opts.index_entries = true;
                let log = segment_path(dir, base, LOG_EXT);
                let scanned = if self.fs.exists(&log) {
                    Some(self.quiet_scan(&log, base)?)
                } else {
                    self.problem(
                        Severity::Warning,
                        path,
                        None,
                        format!(
                            "no {} beside it: entries are not checked against the log",
                            log.display()
                        ),
                    );
                    None
                };
                let kind = if ext == INDEX_EXT {
                    IndexKind::Offset
                } else {
                    IndexKind::Time
                };
                self.index(path, kind, base, scanned.as_ref(), false)?;
            }
            None if name == RECOVERY_POINT_FILE || name == CLEAN_SHUTDOWN_FILE => {
                let segs = self.quiet_dir_scan(dir)?;
                self.state_file(path, &name, &segs)?;
            }
            None if name.contains(DROPPED_INFIX) => {
                self.opts.batches = true;
                self.side_file(path)?;
            }
            None if is_known_state_file(&name) && !self.fs.is_dir(path) => {
                self.topic_state_file(path, dir)?
            }
            None => self.other_file(path, &name)?,
        }
        Ok(())
    }

    /// A `config`, snapshot or journal file of a topic, queue or group given alone: decoded and
    /// checked against the end of the log it belongs to.
    pub(super) fn topic_state_file(&mut self, path: &Path, dir: &Path) -> Result<()> {
        use crate::store::{GROUPS_DIR, LOG_DIR};
        // `<t>/groups/<g>/<file>` belongs to topic `<t>`; `<t-or-q>/<file>` to itself.
        let in_group = dir
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == GROUPS_DIR))
            .and_then(|p| p.parent());
        let owner = in_group.unwrap_or(dir);
        let log = if self.fs.is_dir(&owner.join(LOG_DIR)) {
            owner.join(LOG_DIR)
        } else {
            owner.to_path_buf()
        };
        let segs = self.quiet_dir_scan(&log)?;
        let (kind, name, state_dir) = layout(&log);
        let partition = dir_partition(&log);
        let mut report = LogDirReport {
            dir: log,
            kind: kind.into(),
            partition,
            name,
            segments: vec![],
            start_offset: segs.iter().map(|s| s.0).min(),
            end_offset: segs.iter().max_by_key(|s| s.0).map(|s| s.1.next_offset),
            size_bytes: 0,
            retention: None,
            subscribers: None,
            queue: None,
            groups: vec![],
            state_dir,
            unknown_files: vec![],
        };
        let mut items = Vec::new();
        read_log_state(self.fs, &mut report, &mut items)?;
        for i in items {
            match i {
                Item::Problem(p) if p.file == path => {
                    self.problem(p.severity, &p.file, p.position, p.what)
                }
                Item::State(s) if s.file == path => {
                    self.sum.state_files += 1;
                    self.v.item(Item::State(s));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A repair side file: a whole segment set aside (with its header) or a cut tail (without).
    pub(super) fn side_file(&mut self, path: &Path) -> Result<()> {
        let f = self.fs.open(path, OpenMode::Read).at(path)?;
        let len = f.len().at(path)?;
        let mut magic = [0u8; 8];
        let with_header = len >= FILE_HEADER_LEN as u64
            && f.read_exact_at(&mut magic, 0).is_ok()
            && magic == SEGMENT_MAGIC;
        if with_header {
            self.segment(path, None, None)?;
        } else {
            self.sum.segments += 1;
            self.v.item(Item::Segment(SegmentReport {
                file: path.to_path_buf(),
                size_bytes: len,
                base_offset: None,
                header_valid: false,
                headerless: true,
            }));
            self.batches(path, &f, len, 0, None, true)?;
        }
        Ok(())
    }

    pub(super) fn other_file(&mut self, path: &Path, name: &str) -> Result<()> {
        let (kind, problem): (&str, Option<(Severity, &str)>) = if name == LOCK_FILE {
            ("lock", None)
        } else if name.ends_with(".tmp") {
            (
                "temporary",
                Some((
                    Severity::Warning,
                    "leftover temporary file of an interrupted write (removed at the next open)",
                )),
            )
        } else if name.contains(DROPPED_INFIX) {
            ("repair-side-file", None)
        } else if name == crate::store::IDENTITY_FILE {
            ("identity", None)
        } else if name == crate::store::PRODUCER_IDS_FILE {
            ("producer-ids", None)
        } else {
            ("unknown", None)
        };
        let is_dir = self.fs.is_dir(path);
        let size = if is_dir { 0 } else { file_len(self.fs, path)? };
        self.sum.state_files += 1;
        self.v.item(Item::State(StateFileReport {
            file: path.to_path_buf(),
            kind: if is_dir { "directory" } else { kind }.into(),
            size_bytes: size,
            fields: vec![],
            valid: None,
        }));
        if let Some((sev, what)) = problem {
            self.problem(sev, path, None, what.into());
        }
        Ok(())
    }

    /// Scans a segment without reporting anything (to check an index or state file given alone).
    pub(super) fn quiet_scan(&mut self, log: &Path, base: Offset) -> Result<Scanned> {
        let mut sink = |_: Item| {};
        let mut w = Walker {
            fs: self.fs,
            opts: InspectOptions {
                batch_bytes_max: self.opts.batch_bytes_max,
                ..InspectOptions::default()
            },
            v: &mut sink,
            sum: Summary::default(),
            done: 0,
            total: 0,
        };
        w.segment(log, Some(base), Some(base))
    }

    pub(super) fn quiet_dir_scan(&mut self, dir: &Path) -> Result<Vec<(Offset, Scanned)>> {
        let mut out = Vec::new();
        for n in self.fs.read_dir(dir).at(dir)? {
            if let Some((base, LOG_EXT)) = parse_segment_name(&n) {
                out.push((base, self.quiet_scan(&dir.join(n), base)?));
            }
        }
        Ok(out)
    }

    /// One log directory: segments in order, their indexes, state files, other files.
    pub(super) fn log_dir(&mut self, dir: &Path) -> Result<()> {
        self.sum.log_dirs += 1;
        let names = self.fs.read_dir(dir).at(dir)?;
        let bases = crate::segment::segment_bases(&names);
        let (segs, ranges) = self.log_segments(dir, &bases)?;
        let (kind, name, state_dir) = layout(dir);
        let unknown = self.log_dir_files(dir, &names, &bases, &segs, &state_dir)?;
        let mut report = LogDirReport {
            dir: dir.to_path_buf(),
            kind: kind.into(),
            partition: dir_partition(dir),
            name,
            start_offset: ranges.first().map(|r| r.base_offset),
            end_offset: ranges.last().map(|r| r.end_offset),
            size_bytes: ranges.iter().map(|r| r.size_bytes).sum(),
            segments: ranges,
            retention: None,
            subscribers: None,
            queue: None,
            groups: Vec::new(),
            state_dir,
            unknown_files: unknown,
        };
        let mut items = Vec::new();
        read_log_state(self.fs, &mut report, &mut items)?;
        for i in items {
            match i {
                Item::Problem(p) => self.problem(p.severity, &p.file, p.position, p.what),
                Item::State(s) => {
                    self.sum.state_files += 1;
                    self.v.item(Item::State(s));
                }
                other => self.v.item(other),
            }
        }
        self.v.item(Item::LogDir(report));
        Ok(())
    }

    /// The segments of a log directory in order, each with its indexes, checked to follow on.
    #[allow(clippy::type_complexity)]
    fn log_segments(
        &mut self,
        dir: &Path,
        bases: &[Offset],
    ) -> Result<(Vec<(Offset, Scanned)>, Vec<SegmentRange>)> {
        let mut segs: Vec<(Offset, Scanned)> = Vec::new();
        let mut ranges = Vec::new();
        let mut expected: Option<Offset> = None;
        for &base in bases {
            let path = segment_path(dir, base, LOG_EXT);
            if let Some(e) = expected.filter(|e| *e != base) {
                self.error(
                    &path,
                    0,
                    format!("segment starts at offset {base} but the previous one ends at {e}"),
                );
            }
            let s = self.segment(&path, Some(base), Some(base))?;
            ranges.push(self.segment_range(dir, &path, base, &s)?);
            // Continuity is checked against the last batch with a valid header, so one damaged
            // batch is reported once, not again at every later segment.
            expected = Some(s.boundaries.last().map_or(s.next_offset, |b| b.next));
            segs.push((base, s));
        }
        Ok((segs, ranges))
    }

    /// A segment's line in its directory's report, with its indexes checked against its scan.
    fn segment_range(
        &mut self,
        dir: &Path,
        path: &Path,
        base: Offset,
        s: &Scanned,
    ) -> Result<SegmentRange> {
        let mut range = SegmentRange {
            file: path.to_path_buf(),
            base_offset: base,
            end_offset: s.next_offset,
            size_bytes: s.len,
            valid_bytes: s.valid_end,
            batches: s.batches,
            records: s.records,
            max_timestamp_ms: s.max_ts,
            index_entries: None,
            time_index_entries: None,
        };
        for (ext, kind) in [
            (INDEX_EXT, IndexKind::Offset),
            (TIME_INDEX_EXT, IndexKind::Time),
        ] {
            let ip = segment_path(dir, base, ext);
            if self.fs.exists(&ip) {
                let n = self.index(&ip, kind, base, Some(s), true)?;
                match kind {
                    IndexKind::Offset => range.index_entries = Some(n),
                    IndexKind::Time => range.time_index_entries = Some(n),
                }
            } else if s.batches > 0 {
                self.problem(
                    Severity::Warning,
                    &ip,
                    None,
                    "missing (an unclean stop leaves the active segment without one); rebuilt from the log at the next open".into(),
                );
            }
        }
        Ok(range)
    }

    /// The files of a log directory other than segments: orphan indexes, the recovery point and
    /// clean-shutdown marker, and others. Returns the unknown ones.
    fn log_dir_files(
        &mut self,
        dir: &Path,
        names: &[String],
        bases: &[Offset],
        segs: &[(Offset, Scanned)],
        state_dir: &Path,
    ) -> Result<Vec<UnknownFile>> {
        let mut unknown = Vec::new();
        for n in names {
            let p = dir.join(n);
            match parse_segment_name(n) {
                Some((_, LOG_EXT)) => {}
                Some((base, _)) => {
                    if bases.binary_search(&base).is_err() {
                        self.orphan_index(&p)?;
                    }
                }
                None if n == RECOVERY_POINT_FILE || n == CLEAN_SHUTDOWN_FILE => {
                    self.state_file(&p, n, segs)?;
                }
                // Read by `read_log_state` when the log directory is also the state directory.
                None if state_dir == dir && is_known_state_file(n) => {}
                None => {
                    let size = if self.fs.is_dir(&p) {
                        0
                    } else {
                        file_len(self.fs, &p)?
                    };
                    if !n.contains(DROPPED_INFIX) && !n.ends_with(".tmp") {
                        unknown.push(UnknownFile {
                            name: n.clone(),
                            size_bytes: size,
                        });
                    }
                    self.other_file(&p, n)?;
                }
            }
        }
        Ok(unknown)
    }

    /// An index file whose segment file is missing.
    fn orphan_index(&mut self, p: &Path) -> Result<()> {
        self.sum.state_files += 1;
        self.v.item(Item::State(StateFileReport {
            file: p.to_path_buf(),
            kind: "orphan-index".into(),
            size_bytes: file_len(self.fs, p)?,
            fields: vec![],
            valid: None,
        }));
        self.problem(
            Severity::Warning,
            p,
            None,
            "index without a segment file (removed at the next open)".into(),
        );
        Ok(())
    }
}
