//! Applying a repair plan: side files first, then cuts, renames and index rebuilds.

use super::*;

/// What [`apply_repair`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairOutcome {
    /// Side files written or renamed to, holding every removed byte.
    pub side_files: Vec<PathBuf>,
    /// Bytes moved to side files.
    pub dropped_bytes: u64,
    /// Segments whose indexes were rewritten.
    pub rebuilt_indexes: usize,
    /// State files removed.
    pub removed_state_files: usize,
}

/// Carries out a plan made by [`plan_repair`]. Takes the data directory's lock for the duration
/// (fails when a broker holds it), checks that no file changed since the plan was made, and per
/// directory: removes stale state files, copies each cut tail to its side file (fsynced) before
/// cutting, renames later segments aside, rewrites indexes, and fsyncs files and the directory.
pub fn apply_repair(fs: &dyn FileSystem, plan: &RepairPlan) -> Result<RepairOutcome> {
    let _lock = lock_for_repair(&plan.path)?;
    // Nothing changed since the plan: every file has the size planned.
    for d in &plan.dirs {
        for a in &d.actions {
            if let RepairAction::Truncate {
                file, file_len: l, ..
            }
            | RepairAction::SetAside {
                file, file_len: l, ..
            } = a
            {
                let now = file_len(fs, file)?;
                if now != *l {
                    return Err(Error::InvalidArgument(format!(
                        "{} is {now} bytes, not {l} as planned: the directory changed; plan again",
                        file.display()
                    )));
                }
            }
        }
    }
    let mut out = RepairOutcome::default();
    for d in &plan.dirs {
        apply_dir(fs, d, &mut out)?;
    }
    Ok(out)
}

/// Applies the plan of one log directory, in the order that keeps a crash midway safe.
///
/// Long because its six numbered steps (side files, set-asides, state files, cuts, an empty
/// segment, indexes) are an order a crash midway must find safe, best read as one sequence.
pub(super) fn apply_dir(
    fs: &dyn FileSystem,
    d: &DirRepairPlan,
    out: &mut RepairOutcome,
) -> Result<()> {
    let dir = &d.dir;
    // 1. Copy every tail to be cut into its side file, durably, before anything changes.
    for a in &d.actions {
        if let RepairAction::Truncate {
            file,
            file_len: len,
            position,
            side_file,
            ..
        } = a
        {
            let src = fs.open(file, OpenMode::Read).at(file)?;
            let dst = fs.open(side_file, OpenMode::CreateNew).at(side_file)?;
            let mut at = *position;
            let mut buf = vec![0u8; 1 << 20];
            while at < *len {
                let n = ((*len - at) as usize).min(buf.len());
                src.read_exact_at(&mut buf[..n], at).at(file)?;
                dst.write_all_at(&buf[..n], at - position).at(side_file)?;
                at += n as u64;
            }
            dst.sync_data().at(side_file)?;
            out.side_files.push(side_file.clone());
            out.dropped_bytes += len - position;
        }
    }
    fs.sync_dir(dir).at(dir)?;
    // 2. Set later segments aside, last first. A crash after this leaves a shorter log whose
    //    stale state files recovery ignores, so the tail it would cut is saved already.
    for a in &d.actions {
        if let RepairAction::SetAside {
            renames, file_len, ..
        } = a
        {
            for (from, to) in renames.iter().rev() {
                if fs.exists(to) {
                    return Err(Error::InvalidArgument(format!(
                        "{} exists already; not overwriting it",
                        to.display()
                    )));
                }
                // Index files first, the log last: a crash leaves at worst an orphan index.
                fs.rename(from, to).at(from)?;
            }
            if let Some((_, to)) = renames.first() {
                out.side_files.push(to.clone());
            }
            out.dropped_bytes += file_len;
            fs.sync_dir(dir).at(dir)?;
        }
    }
    // 3. State files, once everything to be cut is saved: from here on the next open rescans,
    //    and whatever it cuts is in a side file already.
    for a in &d.actions {
        if let RepairAction::RemoveStateFile { file, .. } = a {
            fs.remove_file(file).at(file)?;
            out.removed_state_files += 1;
        }
    }
    fs.sync_dir(dir).at(dir)?;
    // 4. Cut.
    for a in &d.actions {
        if let RepairAction::Truncate { file, position, .. } = a {
            let f = fs.open(file, OpenMode::ReadWrite).at(file)?;
            f.set_len(*position).at(file)?;
            f.sync_data().at(file)?;
        }
    }
    // 5. An empty segment where everything was set aside.
    for a in &d.actions {
        if let RepairAction::CreateEmptySegment { base_offset, .. } = a {
            Segment::create(fs, dir, *base_offset, crate::types::now_ms())?;
        }
    }
    // 6. Indexes from the log, at the density of the topic's or queue's config when readable.
    let cfg = log_config_of(fs, dir).unwrap_or_default();
    for a in &d.actions {
        if let RepairAction::RebuildIndexes { file, .. } = a {
            rebuild_indexes(fs, dir, file, &cfg)?;
            out.rebuilt_indexes += 1;
        }
    }
    fs.sync_dir(dir).at(dir)?;
    Ok(())
}

/// The log settings saved in the `config` file of the topic or queue owning log directory `dir`.
pub(super) fn log_config_of(fs: &dyn FileSystem, dir: &Path) -> Option<LogConfig> {
    let (_, _, state_dir) = layout(dir);
    let path = state_dir.join(crate::store::CONFIG_FILE);
    if !fs.exists(&path) {
        return None;
    }
    match read_config_file(fs, &path, None, &mut Vec::new()).ok()?? {
        ConfigFile::Topic(t) => Some(t.log),
        ConfigFile::Queue(q) => Some(q.log),
    }
}

pub(super) fn rebuild_indexes(
    fs: &dyn FileSystem,
    dir: &Path,
    file: &Path,
    cfg: &LogConfig,
) -> Result<()> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((base, LOG_EXT)) = parse_segment_name(&name) else {
        return Err(Error::InvalidArgument(format!(
            "{} is not a segment file",
            file.display()
        )));
    };
    let (seg_file, len) =
        Segment::open_file(fs, dir, base)?.map_err(|reason| Error::corruption(file, 0, reason))?;
    let mut seg = Segment::from_parts(seg_file.clone(), len, base, crate::types::now_ms());
    let interval = cfg.index_interval_bytes;
    let end = scan_batches(
        &seg_file.file,
        &seg_file.path,
        FILE_HEADER_LEN as u64,
        len,
        base,
        u32::MAX,
        |pos, h, _| seg.index_batch(pos, h, interval),
    )?;
    if let Some((pos, stop)) = end.damage() {
        return Err(Error::corruption(file, pos, stop.to_string()));
    }
    seg.next_offset = end.next_offset;
    seg.size = end.position;
    seg.write_indexes(fs, dir)
}
