//! Directories of topics, queues and groups: durable creation, tombstones and atomic deletes.
//!
//! A delete renames the directory to a tombstone (`<name>~deleted~<n>`, never a valid name)
//! beside it and fsyncs the parent: from there the delete is durable. Only then is the tombstone
//! removed; tombstones a crash left are removed at open.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{IoContext, Result};
use crate::fs::FileSystem;

use super::catalog::{Reservation, Taken};

/// Creates `dir` (and missing ancestors) and makes its entry durable in its parent.
pub(in crate::store) fn make_dir(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    crate::fs::create_dir_durable(fs, dir).at(dir)
}

/// Marks the name of a tombstone: a directory a delete renamed away before removing it. `~` is
/// never in a topic, queue or group name, so no tombstone is taken for one.
pub const TOMBSTONE_MARK: &str = "~deleted~";

/// True when `name` (an entry of `topics/`, `queues/` or a `groups/` directory) is a tombstone.
pub fn is_tombstone(name: &str) -> bool {
    name.contains(TOMBSTONE_MARK)
}

pub(in crate::store) static TOMBSTONE_SEQ: AtomicU64 = AtomicU64::new(0);

/// Deletes `dir` atomically on disk: renames it to a fresh tombstone beside it and makes the
/// rename durable. Returns the tombstone, for [`remove_tombstone`].
pub(in crate::store) fn bury(fs: &dyn FileSystem, dir: &Path) -> Result<PathBuf> {
    let parent = crate::fs::parent_dir(dir);
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let tomb = loop {
        let n = TOMBSTONE_SEQ.fetch_add(1, Ordering::Relaxed);
        let t = parent.join(format!("{name}{TOMBSTONE_MARK}{n}"));
        if !fs.exists(&t) {
            break t;
        }
    };
    fs.rename(dir, &tomb).at(dir)?;
    fs.sync_dir(parent).at(parent)?;
    Ok(tomb)
}

/// Removes a tombstone; what a failure or a crash leaves is removed at the next open.
pub(in crate::store) fn remove_tombstone(fs: &dyn FileSystem, tomb: &Path) {
    if let Err(e) = fs.remove_dir_all(tomb) {
        tracing::warn!(dir = %tomb.display(), "removing a deleted directory failed ({e}); it is removed at the next open");
    }
}

/// Removes `dir`, which holds no config: an unfinished creation. Safe to stop anywhere: what is
/// left still has no config and is removed at the next open.
pub(in crate::store) fn remove_unfinished(fs: &dyn FileSystem, dir: &Path) {
    tracing::warn!(dir = %dir.display(), "removing a directory whose creation did not finish");
    if let Err(e) = fs.remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), "removing it failed ({e}); tried again at the next open");
    }
}

/// Removes the tombstones left in `parent` by deletes that did not finish.
pub(in crate::store) fn clear_tombstones(fs: &dyn FileSystem, parent: &Path) -> Result<()> {
    for name in fs.read_dir(parent).at(parent)? {
        if is_tombstone(&name) {
            remove_tombstone(fs, &parent.join(name));
        }
    }
    Ok(())
}

/// Makes a fresh directory for a create that reserved its name: a leftover of a create that
/// failed earlier is buried first.
pub(in crate::store) fn fresh_dir(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    if fs.exists(dir) {
        let tomb = bury(fs, dir)?;
        remove_tombstone(fs, &tomb);
    }
    make_dir(fs, dir)
}

/// Takes away the directory of a create that failed (best effort: without a config it is an
/// unfinished creation, removed at the next open anyway).
pub(in crate::store) fn discard_dir(fs: &dyn FileSystem, dir: &Path) {
    if let Ok(tomb) = bury(fs, dir) {
        remove_tombstone(fs, &tomb);
    }
}

/// Deletes the directory of a name a delete marked busy: buried durably (the delete is
/// confirmed from here), `shut` stops what was open, the name is freed, the tombstone removed.
pub(in crate::store) fn delete_dir<T>(
    fs: &dyn FileSystem,
    dir: &Path,
    slot: Reservation<'_, T>,
    prev: Taken<T>,
    shut: impl FnOnce(&T),
) -> Result<()> {
    let tomb = match bury(fs, dir) {
        Ok(t) => t,
        Err(e) if fs.exists(dir) => {
            // Not renamed: nothing changed.
            slot.restore(prev);
            return Err(e);
        }
        Err(e) => {
            // Renamed, but the rename is not known durable: deleted unless a crash undoes it.
            if let Taken::Open(x) = &prev {
                shut(x);
            }
            return Err(e);
        }
    };
    if let Taken::Open(x) = &prev {
        shut(x);
    }
    drop(slot);
    remove_tombstone(fs, &tomb);
    Ok(())
}
