//! A crash at any point of a repair loses nothing: on the simulated file system, the repair is
//! cut short after every possible call, the machine "loses power" (unsynced bytes and directory
//! entries are dropped), and the broker starts. Every original segment byte must still be in the
//! log or in a side file, and every record before the damage must read back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_storage::fs::sim::{CrashMode, SimFs};
use sluice_storage::inspect;
use sluice_storage::{FileSystem, Header, Log, LogConfig, Offset, Record};

const STAMP: u64 = 77;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 2048,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn record(i: u64) -> Record {
    Record {
        timestamp_ms: Some(1_700_000_000_000 + i as i64),
        key: Some(format!("k{i}").into_bytes()),
        headers: vec![Header::new("h", "x")],
        value: format!("value-{i:04}-{}", "p".repeat(80)).into_bytes(),
    }
}

struct Setup {
    fs: SimFs,
    dir: PathBuf,
    records: Vec<Record>,
    /// Original bytes of every segment file.
    originals: Vec<(PathBuf, Vec<u8>)>,
    /// Records before the damaged batch.
    keep: u64,
}

/// A topic over several segments, closed cleanly, with a payload byte of a batch in its second
/// segment flipped.
fn setup() -> Setup {
    let fs = SimFs::new();
    let dir = PathBuf::from("/data/topics/orders");
    let log = Log::open(Arc::new(fs.clone()), &dir, config()).unwrap();
    let mut records = Vec::new();
    for b in 0..30 {
        let rs: Vec<Record> = (0..3).map(|j| record(b * 3 + j)).collect();
        log.append(&rs).unwrap();
        records.extend(rs);
    }
    log.close().unwrap();
    // The store makes the directories above a log durable; do it here.
    for d in ["/", "/data", "/data/topics"] {
        fs.sync_dir(Path::new(d)).unwrap();
    }
    let mut segs: Vec<PathBuf> = fs
        .read_dir(&dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .map(|n| dir.join(n))
        .collect();
    segs.sort();
    assert!(segs.len() >= 4);
    let mut bytes = fs.read_file(&segs[1]).unwrap();
    // Find the third batch of the second segment through the inspection engine.
    let r = inspect::inspect_path(&fs, &segs[1], &inspect::InspectOptions::default()).unwrap();
    let b = r
        .items
        .iter()
        .filter_map(|i| match i {
            inspect::Item::Batch(b) => Some(b.clone()),
            _ => None,
        })
        .nth(2)
        .unwrap();
    bytes[(b.position + b.size_bytes as u64 - 2) as usize] ^= 0x10;
    fs.write_file(&segs[1], &bytes).unwrap();
    let originals = segs
        .iter()
        .map(|p| (p.clone(), fs.read_file(p).unwrap()))
        .collect();
    Setup {
        fs,
        dir,
        records,
        originals,
        keep: b.base_offset.0,
    }
}

fn side(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}.dropped-{STAMP}", p.display()))
}

/// Every original byte is in the segment file, in its side file, or in both.
fn assert_nothing_lost(s: &Setup, when: &str) {
    for (p, orig) in &s.originals {
        let cur = s.fs.read_file(p).unwrap_or_default();
        let kept = s.fs.read_file(&side(p)).unwrap_or_default();
        let whole_aside = kept == *orig;
        let covered =
            orig.starts_with(&cur) && orig.ends_with(&kept) && cur.len() + kept.len() >= orig.len();
        assert!(
            whole_aside || covered,
            "{when}: bytes of {} lost ({} in the log, {} aside, {} originally)",
            p.display(),
            cur.len(),
            kept.len(),
            orig.len()
        );
    }
}

/// The broker starts and every record before the damage reads back, batch by batch.
fn assert_intact_records_read(s: &Setup, when: &str) {
    let log = Log::open(Arc::new(s.fs.clone()), &s.dir, config())
        .unwrap_or_else(|e| panic!("{when}: open failed: {e}"));
    assert_eq!(log.start_offset(), Offset(0), "{when}");
    assert!(log.end_offset().0 >= s.keep, "{when}");
    let mut o = 0;
    while o < s.keep {
        let got = log
            .read_records(Offset(o), 3, 1)
            .unwrap_or_else(|e| panic!("{when}: read at {o}: {e}"));
        for (off, r) in got {
            assert_eq!(r, s.records[off.0 as usize], "{when}: record {off}");
            o = off.0 + 1;
        }
    }
    log.close().unwrap();
}

#[test]
fn a_crash_anywhere_in_a_repair_loses_nothing() {
    // How many file-system calls a whole repair makes.
    let s = setup();
    let plan = inspect::plan_repair(&s.fs, &s.dir, STAMP).unwrap();
    let before = s.fs.op_count();
    inspect::apply_repair(&s.fs, &plan).unwrap();
    let total = s.fs.op_count() - before;
    assert!(total > 10, "{total} calls");
    assert_nothing_lost(&s, "after a full repair");
    assert!(inspect::verify(&s.fs, &s.dir).unwrap().ok());
    assert_intact_records_read(&s, "after a full repair");
    let log = Log::open(Arc::new(s.fs.clone()), &s.dir, config()).unwrap();
    assert_eq!(log.end_offset(), Offset(s.keep));
    log.close().unwrap();

    for n in 0..total {
        let s = setup();
        let plan = inspect::plan_repair(&s.fs, &s.dir, STAMP).unwrap();
        s.fs.crash_after(n);
        assert!(
            inspect::apply_repair(&s.fs, &plan).is_err(),
            "crash after {n}"
        );
        s.fs.crash(CrashMode::DropUnsynced);
        let when = format!("crash after call {n} of {total}");
        assert_nothing_lost(&s, &when);
        assert_intact_records_read(&s, &when);
        // What the broker's own recovery cut is saved as well.
        assert_nothing_lost(&s, &format!("{when}, then a start"));
        // Planning again from here and repairing completes the job.
        let plan = inspect::plan_repair(&s.fs, &s.dir, STAMP + 1).unwrap();
        inspect::apply_repair(&s.fs, &plan).unwrap();
        let v = inspect::verify(&s.fs, &s.dir).unwrap();
        assert!(v.ok(), "{when}, then a second repair: {:?}", v.problems);
    }
}
