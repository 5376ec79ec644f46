//! The O_DIRECT append path under `fsync = always`: group-commit leaders write whole blocks,
//! padding is cut at close and recognised by recovery, a full disk loses nothing.

use std::path::Path;
use std::sync::Arc;

use sluice_storage::fs::sim::{CrashMode, Fault, FaultError, OpKind, SimFs};
use sluice_storage::{FsyncPolicy, Log, LogConfig, Offset, Record, StdFs};

fn cfg(segment_bytes_max: u64) -> LogConfig {
    LogConfig {
        segment_bytes_max,
        fsync: FsyncPolicy::Always,
        direct_io: true,
        ..LogConfig::default()
    }
}

fn value(offset_hint: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (offset_hint as usize * 31 + i) as u8)
        .collect()
}

fn check_all(log: &Log, confirmed: &[(Offset, Vec<u8>)]) {
    for (off, v) in confirmed {
        let got = log.read_records(*off, 1, 1 << 20).unwrap();
        assert_eq!(got.first().map(|r| r.0), Some(*off), "offset {off} missing");
        assert_eq!(&got[0].1.value, v, "offset {off} differs");
    }
}

#[test]
fn concurrent_direct_appends_survive_clean_and_unclean_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = Log::open(Arc::new(StdFs), &path, cfg(256 << 10)).unwrap();
    let mut handles = Vec::new();
    for t in 0..4u64 {
        let log = log.clone();
        handles.push(std::thread::spawn(move || {
            let mut mine = Vec::new();
            for i in 0..150u64 {
                let v = value(t * 1000 + i, 1 + ((t * 7 + i * 13) % 3000) as usize);
                let info = log.append(&[Record::from_value(v.clone())]).unwrap();
                assert!(
                    log.durable_end() > info.last_offset,
                    "confirmed before durable"
                );
                mine.push((info.base_offset, v));
            }
            mine
        }));
    }
    let mut confirmed: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    confirmed.sort();
    assert_eq!(confirmed.len(), 600);
    for (i, (off, _)) in confirmed.iter().enumerate() {
        assert_eq!(*off, Offset(i as u64), "offsets are dense");
    }
    assert!(log.segments().len() > 1, "the workload rolls segments");
    check_all(&log, &confirmed);
    log.close().unwrap();

    let (log, report) = Log::open_with_report(Arc::new(StdFs), &path, cfg(256 << 10)).unwrap();
    assert!(report.clean, "{report:?}");
    check_all(&log, &confirmed);
    // Unclean stop: drop without close; the file keeps block padding.
    for i in 0..20u64 {
        let v = value(9000 + i, 100);
        let info = log.append(&[Record::from_value(v.clone())]).unwrap();
        confirmed.push((info.base_offset, v));
    }
    drop(log);
    let (log, report) = Log::open_with_report(Arc::new(StdFs), &path, cfg(256 << 10)).unwrap();
    assert!(!report.clean);
    assert_eq!(
        report.truncated_bytes, 0,
        "padding is not corruption: {report:?}"
    );
    check_all(&log, &confirmed);
    assert_eq!(log.end_offset(), Offset(confirmed.len() as u64));
    let info = log.append(&[Record::from_value("after")]).unwrap();
    assert_eq!(info.base_offset, Offset(confirmed.len() as u64));
}

/// One run of a small workload on `fs`; returns the appends that were confirmed.
fn workload(fs: &SimFs, dir: &Path) -> Vec<(Offset, Vec<u8>)> {
    let mut confirmed = Vec::new();
    let Ok(log) = Log::open(Arc::new(fs.clone()), dir, cfg(2048)) else {
        return confirmed;
    };
    for i in 0..40u64 {
        let v = value(i, 10 + (i as usize * 37) % 500);
        match log.append(&[Record::from_value(v.clone()), Record::from_value(v.clone())]) {
            Ok(info) => {
                confirmed.push((info.base_offset, v.clone()));
                confirmed.push((info.last_offset, v));
            }
            Err(_) => return confirmed,
        }
    }
    let _ = log.close();
    confirmed
}

#[test]
fn crash_at_every_operation_keeps_confirmed_direct_appends() {
    let dir = Path::new("/data/log");
    let probe = SimFs::new();
    workload(&probe, dir);
    let ops = probe.op_count();
    assert!(ops > 100, "workload too small: {ops} ops");
    for n in 0..ops {
        for mode in [CrashMode::DropUnsynced, CrashMode::TornTail(n + 1)] {
            let fs = SimFs::new();
            fs.crash_after(n);
            let confirmed = workload(&fs, dir);
            fs.crash(mode);
            let log = Log::open(Arc::new(fs.clone()), dir, cfg(2048))
                .unwrap_or_else(|e| panic!("reopen after crash at op {n} ({mode:?}): {e}"));
            check_all(&log, &confirmed);
            let end = log.end_offset();
            let info = log.append(&[Record::from_value("next")]).unwrap();
            assert_eq!(info.base_offset, end);
        }
    }
}

#[test]
fn full_disk_refuses_then_recovers_without_loss() {
    let fs = SimFs::new();
    let dir = Path::new("/data/log");
    let log = Log::open(Arc::new(fs.clone()), dir, cfg(1 << 20)).unwrap();
    let mut confirmed = Vec::new();
    for i in 0..10u64 {
        let v = value(i, 300);
        let info = log.append(&[Record::from_value(v.clone())]).unwrap();
        confirmed.push((info.base_offset, v));
    }
    fs.add_fault(Fault {
        kind: OpKind::Write,
        nth: fs.count(OpKind::Write) + 1,
        forever: true,
        error: FaultError::NoSpace,
    });
    for i in 0..3u64 {
        let err = log
            .append(&[Record::from_value(value(100 + i, 300))])
            .unwrap_err();
        assert!(err.is_disk_full(), "{err}");
    }
    assert!(!log.has_failed(), "a full disk is not an fsync failure");
    check_all(&log, &confirmed);
    fs.clear_faults();
    let v = value(200, 300);
    let info = log.append(&[Record::from_value(v.clone())]).unwrap();
    confirmed.push((info.base_offset, v));
    check_all(&log, &confirmed);
    // The refused appends were never confirmed; they may be present (at least once), but the
    // offsets stay dense and every confirmed one is intact after a crash.
    fs.crash(CrashMode::DropUnsynced);
    let log = Log::open(Arc::new(fs.clone()), dir, cfg(1 << 20)).unwrap();
    check_all(&log, &confirmed);
    assert_eq!(log.end_offset(), info.next_offset());
}

#[test]
fn failed_fsync_stops_direct_appends() {
    let fs = SimFs::new();
    let dir = Path::new("/data/log");
    let log = Log::open(Arc::new(fs.clone()), dir, cfg(1 << 20)).unwrap();
    log.append(&[Record::from_value("a")]).unwrap();
    fs.add_fault(Fault {
        kind: OpKind::Sync,
        nth: fs.count(OpKind::Sync) + 1,
        forever: false,
        error: FaultError::Io,
    });
    assert!(log.append(&[Record::from_value("b")]).is_err());
    let err = log.append(&[Record::from_value("c")]).unwrap_err();
    assert!(
        matches!(err, sluice_storage::Error::FailStop { .. }),
        "{err}"
    );
    assert_eq!(
        log.visible_end(),
        Offset(1),
        "nothing unconfirmed becomes visible"
    );
}

#[test]
fn inspect_calls_direct_write_padding_a_warning_not_damage() {
    use sluice_storage::inspect;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = Log::open(Arc::new(StdFs), &path, cfg(1 << 20)).unwrap();
    for i in 0..5u64 {
        log.append(&[Record::from_value(value(i, 333))]).unwrap();
    }
    drop(log); // unclean: the file ends in zero padding up to the block boundary
    let seg = path.join("00000000000000000000.log");
    let len = std::fs::metadata(&seg).unwrap().len();
    assert_eq!(len % 4096, 0, "direct writes leave whole blocks");
    let v = inspect::verify(&StdFs, &path).unwrap();
    assert!(v.ok(), "padding is not an error: {:?}", v.problems);
    assert!(
        v.problems.iter().any(|p| p.what.contains("block padding")),
        "{:?}",
        v.problems
    );
}
