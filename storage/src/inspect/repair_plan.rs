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

pub(super) fn plan_dir(fs: &dyn FileSystem, dir: &Path, stamp: u64) -> Result<DirRepairPlan> {
    let batch_max = u32::MAX;
    let mut bases: Vec<Offset> = fs
        .read_dir(dir)
        .at(dir)?
        .iter()
        .filter_map(|n| match parse_segment_name(n) {
            Some((b, LOG_EXT)) => Some(b),
            _ => None,
        })
        .collect();
    bases.sort();
    let mut actions = Vec::new();
    let mut state_actions = Vec::new();
    let mut rebuilds = Vec::new();
    let mut set_aside = Vec::new();
    let mut dropped_bytes = 0;
    let mut cut: Option<usize> = None; // index of the first segment not kept whole
    let mut expected: Option<Offset> = None;
    let mut scans: Vec<(Offset, Scanned)> = Vec::new();
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(dir, base, LOG_EXT);
        let f = fs.open(&path, OpenMode::Read).at(&path)?;
        let len = f.len().at(&path)?;
        let mut reason = None;
        if let Some(e) = expected.filter(|e| *e != base) {
            reason = Some(format!(
                "segment starts at offset {base} but the previous one ends at {e}"
            ));
        }
        let mut h = [0u8; FILE_HEADER_LEN];
        if reason.is_none() {
            if len < FILE_HEADER_LEN as u64 {
                reason = Some(format!("file of {len} bytes has no complete header"));
            } else {
                f.read_exact_at(&mut h, 0).at(&path)?;
                match decode_file_header(&h, SEGMENT_MAGIC, 0) {
                    Ok(b) if b == base => {}
                    Ok(b) => {
                        reason = Some(format!("header base offset {b} differs from the file name"))
                    }
                    Err(e) => reason = Some(format!("segment file header: {e}")),
                }
            }
        }
        if let Some(reason) = reason {
            cut = Some(i);
            set_aside.push((i, len, base, reason));
            break;
        }
        let end = scan_batches(
            &f,
            &path,
            FILE_HEADER_LEN as u64,
            len,
            base,
            batch_max,
            |_, _, _| {},
        )?;
        // The checks of the inspect walk, for the indexes and state files.
        let mut sink = |_: Item| {};
        let mut w = Walker {
            fs,
            opts: InspectOptions::default(),
            v: &mut sink,
            sum: Summary::default(),
            done: 0,
            total: 0,
        };
        let mut scanned = w.segment(&path, Some(base), Some(base))?;
        // Repair follows recovery exactly: the scan of `scan_batches` decides where to cut.
        scanned.valid_end = end.position;
        scanned.next_offset = end.next_offset;
        expected = Some(end.next_offset);
        if let Some((pos, stop)) = end.damage() {
            let reason = stop.to_string();
            let side = side_name(&path, stamp);
            dropped_bytes += len - pos;
            actions.push(RepairAction::Truncate {
                file: path.clone(),
                file_len: len,
                position: pos,
                dropped_bytes: len - pos,
                first_dropped_offset: end.next_offset,
                reason,
                side_file: side,
            });
            rebuilds.push((path.clone(), "the segment is cut".to_string()));
            scans.push((base, scanned));
            cut = Some(i + 1);
            break;
        }
        // Indexes: rebuild when missing or when any entry disagrees with the log.
        let mut bad = Vec::new();
        let mut w = Walker {
            fs,
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
            let ip = segment_path(dir, base, ext);
            if fs.exists(&ip) {
                w.index(&ip, kind, base, Some(&scanned), true)?;
            } else if scanned.batches > 0 {
                w.v.item(Item::Problem(Problem {
                    severity: Severity::Warning,
                    file: ip,
                    position: None,
                    what: format!("{ext} file is missing"),
                }));
            }
        }
        if let Some(first) = bad.first() {
            rebuilds.push((path.clone(), first.clone()));
        }
        scans.push((base, scanned));
    }
    if let Some(c) = cut {
        for (i, &base) in bases.iter().enumerate().skip(c) {
            if set_aside.iter().any(|s| s.0 == i) {
                continue;
            }
            let path = segment_path(dir, base, LOG_EXT);
            let len = file_len(fs, &path)?;
            set_aside.push((i, len, base, "follows an invalid batch".into()));
        }
    }
    let changed = !actions.is_empty() || !set_aside.is_empty();
    // State files: removed when the log changes, or when they are invalid or disagree.
    for name in [CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE] {
        let p = dir.join(name);
        if !fs.exists(&p) {
            continue;
        }
        let reason = if changed {
            Some("the log changes: the next open must rescan".to_string())
        } else {
            let bytes = crate::fs::read_all(fs, &p).at(&p)?;
            if name == RECOVERY_POINT_FILE {
                match RecoveryPoint::decode(&bytes) {
                    Err(e) => Some(format!("invalid: {e}")),
                    Ok(rp) => check_recovery_point(&rp, &scans),
                }
            } else {
                match CleanShutdown::decode(&bytes) {
                    Err(e) => Some(format!("invalid: {e}")),
                    Ok(cs) => check_clean_shutdown(&cs, &scans),
                }
            }
        };
        if let Some(reason) = reason {
            state_actions.push(RepairAction::RemoveStateFile { file: p, reason });
        }
    }
    let mut all = state_actions;
    all.append(&mut actions);
    // Later segments first, so a crash midway never leaves a gap recovery would close by
    // deleting what follows it.
    set_aside.sort_by_key(|s| std::cmp::Reverse(s.2));
    for (_, len, base, reason) in &set_aside {
        let mut renames = Vec::new();
        for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
            let p = segment_path(dir, *base, ext);
            if fs.exists(&p) {
                renames.push((p.clone(), side_name(&p, stamp)));
            }
        }
        let end = if *len >= FILE_HEADER_LEN as u64 {
            let path = segment_path(dir, *base, LOG_EXT);
            let f = fs.open(&path, OpenMode::Read).at(&path)?;
            scan_batches(
                &f,
                &path,
                FILE_HEADER_LEN as u64,
                *len,
                *base,
                batch_max,
                |_, _, _| {},
            )?
            .next_offset
        } else {
            *base
        };
        dropped_bytes += len;
        all.push(RepairAction::SetAside {
            file: segment_path(dir, *base, LOG_EXT),
            file_len: *len,
            base_offset: *base,
            end_offset: end,
            reason: reason.clone(),
            renames,
        });
    }
    let kept_count = bases.len() - set_aside.len();
    if kept_count == 0 {
        if let Some(&b) = bases.first() {
            all.push(RepairAction::CreateEmptySegment {
                file: segment_path(dir, b, LOG_EXT),
                base_offset: b,
            });
        }
    }
    for (file, reason) in rebuilds {
        all.push(RepairAction::RebuildIndexes { file, reason });
    }
    let start = bases.first().copied().unwrap_or_default();
    let end = scans.last().map(|s| s.1.next_offset).unwrap_or(start);
    let state_notes = if changed {
        clamp_notes(fs, dir, start, end)?
    } else {
        Vec::new()
    };
    Ok(DirRepairPlan {
        dir: dir.to_path_buf(),
        actions: all,
        kept: (start, end),
        dropped_bytes,
        state_notes,
    })
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
