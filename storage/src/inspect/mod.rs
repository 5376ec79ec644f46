//! Offline inspection, verification and repair of a data directory, a log directory or a single
//! file, for operators whose broker is stopped (or running: inspection only reads).
//!
//! Everything here reads through [`FileSystem`] with [`OpenMode::Read`] and never maps a file, so
//! a file truncated under the tool by a running broker cannot fault it. Three entry points:
//! - [`walk`] streams [`Item`]s (one per batch, record, index entry, state file, problem) to a
//!   [`Visitor`] and returns a [`Summary`]; [`inspect_path`] collects them, [`verify`] keeps only
//!   the problems.
//! - [`plan_repair`] says what an offline repair would change, file by file, without changing
//!   anything; [`apply_repair`] carries the plan out. Repair does what recovery does at open (cut
//!   the log at the first invalid batch, drop what follows, rebuild indexes) but keeps every
//!   removed byte in a side file `<segment>.log.dropped-<unix time>`.
//! - [`lock_status`] tells whether a broker holds the data directory's `LOCK` file.
//!
//! With each log directory the walk reads the state of its topic or queue ([`read_log_state`]):
//! retention from `config`, subscribers with their committed offsets and lag, a queue's or
//! consumer group's ack floor, cursor, in-flight messages and dead-lettered count. Repair never
//! changes those files.
//!
//! What each check means is documented in `docs/operations.md`, "Inspecting and repairing a data
//! directory".
//!
//! Files: `report` (the report types), `lock` (the broker's `LOCK`), `walker` (the walk
//! of a path and of a log directory), `segments` (segments and batches), `indexes`, `checkpoints`
//! (recovery point, clean-shutdown marker), `state` and `journal_state` (a topic's or queue's
//! state files), `repair_plan` and `repair_apply`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::checkpoint::{CleanShutdown, RecoveryPoint, CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE};
use crate::config::LogConfig;
use crate::error::{Error, IoContext, Result};
use crate::format::scan::{self, ScanRules, ScanStop, ScannedBatch, Step};
use crate::format::{
    check_body, decode_file_header, BatchError, BatchHeader, BatchRecords, BATCH_HEADER_LEN,
    FILE_HEADER_LEN, SEGMENT_MAGIC, STORED_RECORD_HEADERS_MAX,
};
use crate::fs::{FileRef, FileSystem, OpenMode};
use crate::index::{IndexEntry, OffsetEntry, TimeEntry};
use crate::segment::{
    parse_segment_name, scan_batches, segment_path, Segment, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT,
};
use crate::types::{Offset, TimestampMs};

mod checkpoints;
mod indexes;
mod journal_state;
mod lock;
mod repair_apply;
mod repair_plan;
mod report;
mod segments;
mod state;
mod walker;

pub use lock::*;
pub use repair_apply::*;
pub use repair_plan::*;
pub use report::*;
pub use state::*;
use {checkpoints::*, journal_state::*, segments::*, walker::*};

/// Name of the lock file a running broker holds (exclusive `flock`) in its data directory.
pub const LOCK_FILE: &str = "LOCK";
const INDEX_HINT: &str = " (stale or damaged index; repair rebuilds it)";
/// Infix of the side files repair keeps removed bytes in: `<segment>.log.dropped-<unix time>`.
pub const DROPPED_INFIX: &str = ".dropped-";

/// Walks `path` (a data directory, a log directory or one file), reporting to `v` as it goes.
pub fn walk(
    fs: &dyn FileSystem,
    path: &Path,
    opts: &InspectOptions,
    v: &mut dyn Visitor,
) -> Result<Summary> {
    let started = Instant::now();
    let mut opts = opts.clone();
    opts.records |= opts.payloads;
    opts.batches |= opts.records;
    let mut w = Walker {
        fs,
        opts,
        v,
        sum: Summary::default(),
        done: 0,
        total: 0,
    };
    if let LockStatus::Held(lock) = lock_status(path) {
        w.sum.locked = true;
        w.v.item(Item::Note {
            message: format!(
                "{} is held by a running broker: reading only; the tail of an active segment may be mid-write",
                lock.display()
            ),
        });
    }
    match classify(fs, path)? {
        Target::File => {
            w.total = file_len(fs, path)?;
            w.file(path)?;
        }
        _ => {
            let mut dirs = Vec::new();
            log_dirs(fs, path, 0, &mut dirs)?;
            for d in &dirs {
                for n in fs.read_dir(d).at(d)? {
                    if matches!(parse_segment_name(&n), Some((_, LOG_EXT))) {
                        w.total += file_len(fs, &d.join(n))?;
                    }
                }
            }
            if dirs.is_empty() {
                w.v.item(Item::Note {
                    message: format!("no log directory found under {}", path.display()),
                });
            }
            for d in &dirs {
                w.log_dir(d)?;
            }
        }
    }
    w.sum.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(w.sum)
}

/// Walks `path` and collects everything found.
pub fn inspect_path(fs: &dyn FileSystem, path: &Path, opts: &InspectOptions) -> Result<Report> {
    let mut items = Vec::new();
    let summary = walk(fs, path, opts, &mut |i| items.push(i))?;
    Ok(Report { items, summary })
}

/// Checks every checksum, offset order, index and state file under `path`; keeps the problems.
pub fn verify(fs: &dyn FileSystem, path: &Path) -> Result<Verification> {
    let mut problems = Vec::new();
    let opts = InspectOptions::default();
    let summary = walk(fs, path, &opts, &mut |i| {
        if let Item::Problem(p) = i {
            problems.push(p)
        }
    })?;
    Ok(Verification { problems, summary })
}
