//! Indexes are caches and restarts are cheap: deleted or damaged index files of sealed segments
//! are rebuilt from the log (reads stay correct, the log always opens); a clean restart scans
//! nothing; an unclean one scans only past the recovery point.

mod common;

use common::*;
use sluice_storage::fs::sim::SimFs;
use sluice_storage::{FileSystem, LogConfig, Offset, Record};

fn config() -> LogConfig {
    small_config(700)
}

fn build(fs: &SimFs, n: u64) -> Vec<(Offset, Record)> {
    let (log, _) = open_sim(fs, config()).unwrap();
    let mut recs = Vec::new();
    for i in 0..n {
        recs.push((log.append(&[record(i)]).unwrap().base_offset, record(i)));
    }
    assert!(log.segments().len() >= 4);
    log.close().unwrap();
    recs
}

/// A way to damage a file's bytes.
type Damage = Box<dyn Fn(&mut Vec<u8>)>;

fn index_files(fs: &SimFs) -> Vec<String> {
    fs.read_dir(&dir())
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".index") || n.ends_with(".timeindex"))
        .collect()
}

fn check_reads(fs: &SimFs, recs: &[(Offset, Record)], what: &str) {
    let (log, report) =
        open_sim(fs, config()).unwrap_or_else(|e| panic!("{what}: refused to start: {e}"));
    assert!(report.rebuilt_indexes >= 1, "{what}: {report:?}");
    assert_eq!(read_all(&log), recs, "{what}");
    // Reads from every offset and timestamp lookups go through the rebuilt indexes.
    for (o, r) in recs {
        assert_eq!(
            &log.read_records(*o, 1, 1).unwrap()[0].1,
            r,
            "{what}: read at {o}"
        );
        let ts = r.timestamp_ms.unwrap();
        assert_eq!(log.offset_for_timestamp(ts).unwrap(), Some(*o), "{what}");
    }
    log.close().unwrap();
    // Rebuilt indexes were written back: the next clean open trusts them.
    let (log, report) = open_sim(fs, config()).unwrap();
    assert!(
        report.clean && report.scanned_bytes == 0,
        "{what}: {report:?}"
    );
    assert_eq!(read_all(&log), recs, "{what}");
}

#[test]
fn deleted_index_files_are_rebuilt() {
    let probe = SimFs::new();
    build(&probe, 40);
    for name in index_files(&probe) {
        let fs = SimFs::new();
        let recs = build(&fs, 40);
        fs.remove_file(&path(&name)).unwrap();
        check_reads(&fs, &recs, &format!("{name} deleted"));
    }
    // All of them at once.
    let fs = SimFs::new();
    let recs = build(&fs, 40);
    for name in index_files(&fs) {
        fs.remove_file(&path(&name)).unwrap();
    }
    check_reads(&fs, &recs, "every index deleted");
}

#[test]
fn corrupt_index_files_are_rebuilt() {
    let probe = SimFs::new();
    build(&probe, 40);
    let mut rng = Rng(77);
    for name in index_files(&probe) {
        let len = probe.read_file(&path(&name)).unwrap().len();
        let mut damages: Vec<(String, Damage)> = vec![
            ("emptied".into(), Box::new(|b: &mut Vec<u8>| b.clear())),
            (
                "cut".into(),
                Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 3)),
            ),
            (
                "one entry lost".into(),
                Box::new(|b: &mut Vec<u8>| {
                    let n = if b.len() > 44 { b.len() - 8 } else { b.len() };
                    b.truncate(n)
                }),
            ),
        ];
        for _ in 0..6 {
            let at = 32 + rng.below((len.max(33) - 32) as u64) as usize;
            let v = rng.next() as u8 | 1;
            damages.push((
                format!("byte {at} changed"),
                Box::new(move |b: &mut Vec<u8>| {
                    if at < b.len() {
                        b[at] ^= v
                    }
                }),
            ));
        }
        for (how, damage) in damages {
            let fs = SimFs::new();
            let recs = build(&fs, 40);
            let mut bytes = fs.read_file(&path(&name)).unwrap();
            damage(&mut bytes);
            fs.write_file(&path(&name), &bytes).unwrap();
            let what = format!("{name} {how}");
            let (log, _) =
                open_sim(&fs, config()).unwrap_or_else(|e| panic!("{what}: refused to start: {e}"));
            assert_eq!(read_all(&log), recs, "{what}");
            for (o, r) in &recs {
                assert_eq!(
                    &log.read_records(*o, 1, 1).unwrap()[0].1,
                    r,
                    "{what}: at {o}"
                );
                let ts = r.timestamp_ms.unwrap();
                assert_eq!(log.offset_for_timestamp(ts).unwrap(), Some(*o), "{what}");
            }
        }
    }
}

#[test]
fn clean_restart_scans_nothing() {
    let fs = SimFs::new();
    let recs = build(&fs, 40);
    let (log, report) = open_sim(&fs, config()).unwrap();
    assert!(report.clean, "{report:?}");
    assert_eq!(report.scanned_bytes, 0);
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(report.rebuilt_indexes, 0);
    assert_eq!(read_all(&log), recs);
}

#[test]
fn unclean_restart_scans_only_past_the_recovery_point() {
    let fs = SimFs::new();
    let cfg = LogConfig {
        recovery_point_interval_bytes: 1 << 40,
        ..config()
    };
    let (log, _) = open_sim(&fs, cfg.clone()).unwrap();
    let mut recs = Vec::new();
    for i in 0..60 {
        recs.push((log.append(&[record(i)]).unwrap().base_offset, record(i)));
    }
    assert!(log.segments().len() >= 4);
    let total = log.size_bytes();
    let active = log.segments().last().unwrap().size_bytes;
    drop(log);
    let (log, report) = open_sim(&fs, cfg).unwrap();
    assert!(!report.clean);
    assert!(report.scanned_bytes > 0, "{report:?}");
    assert!(
        report.scanned_bytes < active && report.scanned_bytes < total,
        "scanned {} of {total} bytes (active segment {active}): {report:?}",
        report.scanned_bytes
    );
    assert_eq!(read_all(&log), recs);
}

#[test]
fn recovery_point_is_rewritten_once_per_interval_not_on_every_sync() {
    use sluice_storage::fs::sim::OpKind;
    let fs = SimFs::new();
    let interval = 2_000;
    let cfg = LogConfig {
        recovery_point_interval_bytes: interval,
        ..small_config(1 << 20)
    };
    let (log, _) = open_sim(&fs, cfg.clone()).unwrap();
    let renames = fs.count(OpKind::Rename);
    let syncs = fs.count(OpKind::Sync);
    let appends = 300;
    for i in 0..appends {
        log.append(&[record(i)]).unwrap();
    }
    let bytes = log.size_bytes();
    let rp_writes = fs.count(OpKind::Rename) - renames;
    assert!(
        rp_writes <= bytes / interval + 1,
        "{rp_writes} recovery point writes for {bytes} bytes synced (interval {interval})"
    );
    assert!(rp_writes >= bytes / interval - 1, "{rp_writes} writes");
    // One data sync per append, plus three per recovery point: the point itself and the two
    // indexes of the active segment written with it.
    assert_eq!(fs.count(OpKind::Sync) - syncs, appends + 3 * rp_writes);
    // The recovery point keeps the unclean restart short.
    drop(log);
    let (_, report) = open_sim(&fs, cfg).unwrap();
    assert!(report.scanned_bytes <= interval, "{report:?}");
}

#[test]
fn real_files_damaged_index_and_unclean_restart() {
    // The same guarantees on the real file system, where sealed indexes are memory-mapped.
    use sluice_storage::{Log, StdFs};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let cfg = LogConfig {
        recovery_point_interval_bytes: 1 << 40,
        ..config()
    };
    let log = Log::open(Arc::new(StdFs), &dir, cfg.clone()).unwrap();
    let mut recs = Vec::new();
    for i in 0..60 {
        recs.push((log.append(&[record(i)]).unwrap().base_offset, record(i)));
    }
    log.close().unwrap();
    let first_index = dir.join(seg_name(0, "index"));
    let mut bytes = std::fs::read(&first_index).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&first_index, &bytes).unwrap();
    let (log, report) = Log::open_with_report(Arc::new(StdFs), &dir, cfg.clone()).unwrap();
    assert_eq!(report.rebuilt_indexes, 1, "{report:?}");
    assert_eq!(read_all(&log), recs);
    for i in 60..70 {
        recs.push((log.append(&[record(i)]).unwrap().base_offset, record(i)));
    }
    let total = log.size_bytes();
    drop(log);
    let (log, report) = Log::open_with_report(Arc::new(StdFs), &dir, cfg).unwrap();
    assert!(!report.clean);
    assert!(
        report.scanned_bytes > 0 && report.scanned_bytes < total,
        "{report:?}"
    );
    assert_eq!(
        report.rebuilt_indexes, 0,
        "rebuilt indexes were written back: {report:?}"
    );
    assert_eq!(read_all(&log), recs);
    for (o, r) in &recs {
        assert_eq!(&log.read_records(*o, 1, 1).unwrap()[0].1, r);
    }
}

/// Segments are created only after the one before was sealed and synced, and retention removes
/// the oldest first, so no crash leaves a gap between segments: a missing middle segment is
/// damage from outside. The log refuses to open rather than cut there, which would delete the
/// confirmed segments after the gap; `sluice repair` sets them aside on an operator's word.
#[test]
fn a_missing_middle_segment_refuses_the_open_and_deletes_nothing() {
    for clean in [false, true] {
        let fs = SimFs::new();
        let (log, _) = open_sim(&fs, config()).unwrap();
        for i in 0..60 {
            log.append(&[record(i)]).unwrap();
        }
        let bases: Vec<Offset> = log.segments().iter().map(|s| s.base_offset).collect();
        assert!(bases.len() >= 4);
        if clean {
            log.close().unwrap();
        } else {
            drop(log);
        }
        let missing = format!("{:020}.log", bases[1].0);
        fs.remove_file(&dir().join(&missing)).unwrap();
        // Every segment file and its size (an index without its segment may be removed).
        let logs = || -> Vec<(String, usize)> {
            let mut v: Vec<(String, usize)> = fs
                .read_dir(&dir())
                .unwrap()
                .into_iter()
                .filter(|n| n.ends_with(".log"))
                .map(|n| (n.clone(), fs.read_file(&dir().join(&n)).unwrap().len()))
                .collect();
            v.sort();
            v
        };
        let before = logs();
        let e = open_sim(&fs, config()).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, sluice_storage::Error::Corruption { .. }) && msg.contains("missing"),
            "clean {clean}: {msg}"
        );
        assert_eq!(before, logs(), "clean {clean}: no segment removed or cut");
        assert!(
            msg.contains(&format!("offsets {}..{}", bases[1].0, bases[2].0)),
            "{msg}"
        );
    }
}
