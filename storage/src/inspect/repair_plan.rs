//! Repair planning: what an offline repair would change, file by file, decided by the same
//! scanner as recovery, without changing anything.

use super::*;

/// One change a repair makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RepairAction {
    /// Remove a state file so the next open rescans (it is stale or invalid).
    RemoveStateFile {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// Copy the bytes from `position` to a side file, then cut the segment there.
    Truncate {
        /// The segment.
        file: PathBuf,
        /// Its size when planned.
        file_len: u64,
        /// Where it is cut: the first invalid batch.
        position: u64,
        /// Bytes removed (kept in the side file).
        dropped_bytes: u64,
        /// The first offset that is no longer in the log.
        first_dropped_offset: Offset,
        /// Why the batch at `position` is invalid.
        reason: String,
        /// Where the removed bytes go.
        side_file: PathBuf,
    },
    /// Rename a whole segment (and its indexes) aside: it follows an invalid batch, or its header
    /// is invalid.
    SetAside {
        /// The segment.
        file: PathBuf,
        /// Its size when planned.
        file_len: u64,
        /// Its base offset.
        base_offset: Offset,
        /// One past its last valid offset (as far as a scan reads it).
        end_offset: Offset,
        /// Why.
        reason: String,
        /// `(from, to)` renames: the `.log` and whichever index files exist.
        renames: Vec<(PathBuf, PathBuf)>,
    },
    /// Create an empty segment at `base_offset`, when every segment was set aside, so offsets
    /// continue where they were.
    CreateEmptySegment {
        /// The new file.
        file: PathBuf,
        /// Its base offset.
        base_offset: Offset,
    },
    /// Rewrite the `.index` and `.timeindex` of a segment from its batches.
    RebuildIndexes {
        /// The segment.
        file: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What repair would do in one log directory.
#[derive(Clone, Debug, Serialize)]
pub struct DirRepairPlan {
    /// The log directory.
    pub dir: PathBuf,
    /// The partition of the topic it holds (0 for a queue or a bare log).
    pub partition: u32,
    /// Changes, in the order they are applied.
    pub actions: Vec<RepairAction>,
    /// Offsets kept: `start..end`.
    pub kept: (Offset, Offset),
    /// Bytes kept in side files.
    pub dropped_bytes: u64,
    /// What the broker's next open does to the topic's or queue's state because of the cut
    /// (subscriber offsets, ack floors and cursors past the kept end are clamped to it). Repair
    /// never changes `config`, snapshots or journals.
    pub state_notes: Vec<String>,
}

/// What [`apply_repair`] will do, planned by [`plan_repair`] without changing anything.
#[derive(Clone, Debug, Serialize)]
pub struct RepairPlan {
    /// The path the repair was asked for.
    pub path: PathBuf,
    /// Unix time in seconds used in side-file names.
    pub stamp: u64,
    /// One entry per log directory that needs a change.
    pub dirs: Vec<DirRepairPlan>,
    /// Log directories that need nothing.
    pub clean_dirs: Vec<PathBuf>,
}

impl RepairPlan {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }
}

pub(super) fn side_name(path: &Path, stamp: u64) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{DROPPED_INFIX}{stamp}"));
    path.with_file_name(name)
}

/// Plans a repair of every log directory under `path` (a data directory, a log directory, or a
/// file in one). Reads only. `stamp` is the Unix time in seconds used to name side files.
pub fn plan_repair(fs: &dyn FileSystem, path: &Path, stamp: u64) -> Result<RepairPlan> {
    let root = if fs.is_dir(path) {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let mut dirs = Vec::new();
    log_dirs(fs, &root, 0, &mut dirs)?;
    let mut plan = RepairPlan {
        path: path.to_path_buf(),
        stamp,
        dirs: vec![],
        clean_dirs: vec![],
    };
    for d in dirs {
        let p = plan_dir(fs, &d, stamp)?;
        if p.actions.is_empty() {
            plan.clean_dirs.push(d);
        } else {
            plan.dirs.push(p);
        }
    }
    Ok(plan)
}

/// The plan of one log directory: segments in order, cut where recovery would cut, then what
/// follows set aside, the state files that no longer match removed, and indexes rebuilt.
pub(super) fn plan_dir(fs: &dyn FileSystem, dir: &Path, stamp: u64) -> Result<DirRepairPlan> {
    let bases = crate::segment::segment_bases(&fs.read_dir(dir).at(dir)?);
    let mut p = Planner {
        fs,
        dir,
        stamp,
        bases,
        truncations: Vec::new(),
        rebuilds: Vec::new(),
        set_aside: Vec::new(),
        dropped_bytes: 0,
        scans: Vec::new(),
    };
    if let Some(cut) = p.segments()? {
        p.set_aside_from(cut)?;
    }
    let changed = !p.truncations.is_empty() || !p.set_aside.is_empty();
    let mut all = p.state_file_actions(changed)?;
    all.append(&mut p.truncations);
    all.extend(p.set_aside_actions()?);
    if p.bases.len() == p.set_aside.len() {
        if let Some(&b) = p.bases.first() {
            all.push(RepairAction::CreateEmptySegment {
                file: segment_path(dir, b, LOG_EXT),
                base_offset: b,
            });
        }
    }
    for (file, reason) in p.rebuilds {
        all.push(RepairAction::RebuildIndexes { file, reason });
    }
    let start = p.bases.first().copied().unwrap_or_default();
    let end = p.scans.last().map(|s| s.1.next_offset).unwrap_or(start);
    let state_notes = if changed {
        clamp_notes(fs, dir, start, end)?
    } else {
        Vec::new()
    };
    Ok(DirRepairPlan {
        dir: dir.to_path_buf(),
        partition: dir_partition(dir),
        actions: all,
        kept: (start, end),
        dropped_bytes: p.dropped_bytes,
        state_notes,
    })
}

/// Repair follows recovery: where a segment's batches stop being valid is what
/// `segment::scan_batches` (the scanner recovery uses) says, with no limit on batch length.
const BATCH_MAX: u32 = u32::MAX;

/// The plan of one log directory in the making.
struct Planner<'a> {
    fs: &'a dyn FileSystem,
    dir: &'a Path,
    stamp: u64,
    bases: Vec<Offset>,
    truncations: Vec<RepairAction>,
    /// Segment files whose indexes are rebuilt, and why.
    rebuilds: Vec<(PathBuf, String)>,
    /// Segments set aside: (index in `bases`, file length, base offset, why).
    set_aside: Vec<(usize, u64, Offset, String)>,
    dropped_bytes: u64,
    scans: Vec<(Offset, Scanned)>,
}

impl Planner<'_> {
    /// Walks the segments in order; returns the index of the first segment not kept whole,
    /// when one is not.
    fn segments(&mut self) -> Result<Option<usize>> {
        let mut expected: Option<Offset> = None;
        for i in 0..self.bases.len() {
            let base = self.bases[i];
            let path = segment_path(self.dir, base, LOG_EXT);
            let f = self.fs.open(&path, OpenMode::Read).at(&path)?;
            let len = f.len().at(&path)?;
            let gap = expected.filter(|e| *e != base).map(|e| {
                format!("segment starts at offset {base} but the previous one ends at {e}")
            });
            let fault = match gap {
                Some(g) => Some(g),
                None => header_fault(&f, &path, len, base)?,
            };
            if let Some(reason) = fault {
                self.set_aside.push((i, len, base, reason));
                return Ok(Some(i));
            }
            let end = scan_batches(
                &f,
                &path,
                FILE_HEADER_LEN as u64,
                len,
                base,
                BATCH_MAX,
                |_, _, _| {},
            )?;
            expected = Some(end.next_offset);
            // The checks of the inspect walk, for the indexes and state files; where the valid
            // batches end is the scanner's strict answer, as in recovery.
            let mut scanned = quiet_segment(self.fs, &path, base)?;
            scanned.valid_end = end.position;
            scanned.next_offset = end.next_offset;
            if let Some((pos, stop)) = end.damage() {
                self.dropped_bytes += len - pos;
                self.truncations.push(RepairAction::Truncate {
                    file: path.clone(),
                    file_len: len,
                    position: pos,
                    dropped_bytes: len - pos,
                    first_dropped_offset: end.next_offset,
                    reason: stop.to_string(),
                    side_file: side_name(&path, self.stamp),
                });
                self.rebuilds
                    .push((path.clone(), "the segment is cut".to_string()));
                self.scans.push((base, scanned));
                return Ok(Some(i + 1));
            }
            if let Some(first) = self.index_fault(base, &scanned)? {
                self.rebuilds.push((path.clone(), first));
            }
            self.scans.push((base, scanned));
        }
        Ok(None)
    }

    /// The first problem of a segment's indexes: missing, or an entry that disagrees with the
    /// log. Either makes repair rebuild them.
    fn index_fault(&self, base: Offset, scanned: &Scanned) -> Result<Option<String>> {
        let mut bad = Vec::new();
        let mut w = Walker {
            fs: self.fs,
            opts: InspectOptions::default(),
            v: &mut |i: Item| {
                if let Item::Problem(p) = i {
                    bad.push(p.what.replace(INDEX_HINT, ""))
                }
            },
            sum: Summary::default(),
            done: 0,
            total: 0,
        };
        for (ext, kind) in [
            (INDEX_EXT, IndexKind::Offset),
            (TIME_INDEX_EXT, IndexKind::Time),
        ] {
            let ip = segment_path(self.dir, base, ext);
            if self.fs.exists(&ip) {
                w.index(&ip, kind, base, Some(scanned), true)?;
            } else if scanned.batches > 0 {
                w.v.item(Item::Problem(Problem {
                    severity: Severity::Warning,
                    file: ip,
                    position: None,
                    what: format!("{ext} file is missing"),
                }));
            }
        }
        Ok(bad.into_iter().next())
    }

    /// Sets aside every segment from index `cut` on that is not set aside yet.
    fn set_aside_from(&mut self, cut: usize) -> Result<()> {
        for (i, &base) in self.bases.iter().enumerate().skip(cut) {
            if self.set_aside.iter().any(|s| s.0 == i) {
                continue;
            }
            let path = segment_path(self.dir, base, LOG_EXT);
            let len = file_len(self.fs, &path)?;
            self.set_aside
                .push((i, len, base, "follows an invalid batch".into()));
        }
        Ok(())
    }

    /// State files: removed when the log changes, or when they are invalid or disagree.
    fn state_file_actions(&self, changed: bool) -> Result<Vec<RepairAction>> {
        let mut out = Vec::new();
        for name in [CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE] {
            let p = self.dir.join(name);
            if !self.fs.exists(&p) {
                continue;
            }
            let reason = if changed {
                Some("the log changes: the next open must rescan".to_string())
            } else {
                let bytes = crate::fs::read_all(self.fs, &p).at(&p)?;
                if name == RECOVERY_POINT_FILE {
                    match RecoveryPoint::decode(&bytes) {
                        Err(e) => Some(format!("invalid: {e}")),
                        Ok(rp) => check_recovery_point(&rp, &self.scans),
                    }
                } else {
                    match CleanShutdown::decode(&bytes) {
                        Err(e) => Some(format!("invalid: {e}")),
                        Ok(cs) => check_clean_shutdown(&cs, &self.scans),
                    }
                }
            };
            if let Some(reason) = reason {
                out.push(RepairAction::RemoveStateFile { file: p, reason });
            }
        }
        Ok(out)
    }

    /// The set-aside segments as actions, later segments first, so a crash midway never leaves
    /// a gap recovery would close by deleting what follows it.
    fn set_aside_actions(&mut self) -> Result<Vec<RepairAction>> {
        let (fs, dir, stamp) = (self.fs, self.dir, self.stamp);
        self.set_aside.sort_by_key(|s| std::cmp::Reverse(s.2));
        let mut out = Vec::new();
        for (_, len, base, reason) in &self.set_aside {
            let mut renames = Vec::new();
            for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
                let p = segment_path(dir, *base, ext);
                if fs.exists(&p) {
                    renames.push((p.clone(), side_name(&p, stamp)));
                }
            }
            let file = segment_path(dir, *base, LOG_EXT);
            let end = if *len >= FILE_HEADER_LEN as u64 {
                let f = fs.open(&file, OpenMode::Read).at(&file)?;
                let scan = |_: u64, _: &BatchHeader, _: &[u8]| {};
                scan_batches(
                    &f,
                    &file,
                    FILE_HEADER_LEN as u64,
                    *len,
                    *base,
                    BATCH_MAX,
                    scan,
                )?
                .next_offset
            } else {
                *base
            };
            self.dropped_bytes += len;
            out.push(RepairAction::SetAside {
                file,
                file_len: *len,
                base_offset: *base,
                end_offset: end,
                reason: reason.clone(),
                renames,
            });
        }
        Ok(out)
    }
}

/// Why a segment file's header is not one recovery accepts for the segment `base`, if it is not.
fn header_fault(f: &FileRef, path: &Path, len: u64, base: Offset) -> Result<Option<String>> {
    if len < FILE_HEADER_LEN as u64 {
        return Ok(Some(format!("file of {len} bytes has no complete header")));
    }
    let mut h = [0u8; FILE_HEADER_LEN];
    f.read_exact_at(&mut h, 0).at(path)?;
    Ok(match decode_file_header(&h, SEGMENT_MAGIC, 0) {
        Ok(b) if b == base => None,
        Ok(b) => Some(format!("header base offset {b} differs from the file name")),
        Err(e) => Some(format!("segment file header: {e}")),
    })
}

/// The inspect walk of one segment, with nothing reported.
fn quiet_segment(fs: &dyn FileSystem, path: &Path, base: Offset) -> Result<Scanned> {
    let mut sink = |_: Item| {};
    let mut w = Walker {
        fs,
        opts: InspectOptions::default(),
        v: &mut sink,
        sum: Summary::default(),
        done: 0,
        total: 0,
    };
    w.segment(path, Some(base), Some(base))
}

/// What the next open clamps in the state of the log directory `dir` once its log ends at
/// `end`.
pub(super) fn clamp_notes(
    fs: &dyn FileSystem,
    dir: &Path,
    start: Offset,
    end: Offset,
) -> Result<Vec<String>> {
    let (kind, name, state_dir) = layout(dir);
    let mut report = LogDirReport {
        dir: dir.to_path_buf(),
        kind: kind.into(),
        partition: dir_partition(dir),
        name,
        segments: vec![],
        start_offset: Some(start),
        end_offset: Some(end),
        size_bytes: 0,
        retention: None,
        subscribers: None,
        queue: None,
        groups: vec![],
        state_dir,
        unknown_files: vec![],
    };
    read_log_state(fs, &mut report, &mut Vec::new())?;
    let mut notes = Vec::new();
    for s in report.subscribers.iter().flatten() {
        if s.committed > end {
            notes.push(format!(
                "subscriber {} at offset {} is past the kept end: the next open clamps it to {end}",
                s.name, s.committed
            ));
        }
    }
    let queues = report
        .queue
        .iter()
        .map(|q| (format!("{} {}", report.kind, report.name), q))
        .chain(
            report
                .groups
                .iter()
                .filter_map(|g| g.state.as_ref().map(|q| (format!("group {}", g.name), q))),
        );
    for (who, q) in queues {
        if q.cursor > end {
            let lost = q.in_flight.iter().filter(|f| f.offset >= end).count();
            notes.push(format!(
                "{who}: ack floor {} and cursor {} go down to at most {end} at the next open; {lost} in-flight message(s) at or above {end} are forgotten, every ack below {end} is kept",
                q.ack_floor, q.cursor
            ));
        }
    }
    Ok(notes)
}
