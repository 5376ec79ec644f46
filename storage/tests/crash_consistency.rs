//! A crash at every point of a workload (appends under `always`, reads, rolls, retention,
//! close and reopen) loses no confirmed record: for every n, the file system dies after its
//! nth call, keeps only what was synced (or a torn prefix of unsynced appends), and the reopened
//! log holds every confirmed record byte-identical at its offset, with dense offsets and no
//! record that was never written, and takes new appends.

mod common;

use std::collections::BTreeMap;

use common::*;
use sluice_storage::fs::sim::{CrashMode, SimFs};
use sluice_storage::{Log, LogConfig, Offset, Record, Result};

fn config() -> LogConfig {
    LogConfig {
        recovery_point_interval_bytes: 200,
        ..small_config(360)
    }
}

thread_local! {
    /// Also delete by size at every roll (the workload's config).
    static RETENTION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The config of the workload: `config()`, with size retention when the test asks for it.
fn workload_config() -> LogConfig {
    LogConfig {
        // Above one full segment: the newest sealed segment always survives a roll.
        retention_bytes: RETENTION.get().then_some(900),
        ..config()
    }
}

#[derive(Default)]
struct Outcome {
    /// Appends that returned Ok.
    confirmed: Vec<(Offset, Record)>,
    /// Every record an append tried to write, by the offset it would get.
    intended: BTreeMap<u64, Record>,
    /// The highest floor passed to `delete_before` (including a call that failed).
    max_floor: Offset,
}

fn append(log: &Log, out: &mut Outcome, i: &mut u64, n: u64) -> Result<()> {
    let base = log.end_offset();
    let batch: Vec<Record> = (*i..*i + n).map(record).collect();
    for (k, r) in batch.iter().enumerate() {
        out.intended.insert(base.0 + k as u64, r.clone());
    }
    *i += n;
    let info = log.append(&batch)?;
    assert_eq!(info.base_offset, base, "offsets are assigned densely");
    for (k, r) in batch.into_iter().enumerate() {
        out.confirmed.push((info.base_offset.add(k as u64), r));
    }
    Ok(())
}

/// Reads back confirmed records from the middle of the log while the workload runs.
fn check_read(log: &Log, out: &Outcome) -> Result<()> {
    let Some(&(from, _)) = out.confirmed.get(out.confirmed.len() / 2) else {
        return Ok(());
    };
    if from < log.start_offset() {
        return Ok(());
    }
    let got = log.read_records(from, 5, 256)?;
    assert!(!got.is_empty());
    for (o, r) in got {
        let want = out.confirmed.iter().find(|(c, _)| *c == o);
        assert_eq!(want.map(|w| &w.1), Some(&r), "read of {o} while running");
    }
    Ok(())
}

fn workload(fs: &SimFs, out: &mut Outcome) -> Result<()> {
    let mut i = 0;
    let (log, _) = open_sim(fs, workload_config())?;
    for k in 0..10 {
        append(&log, out, &mut i, 1 + k % 2)?;
        if k % 4 == 3 {
            check_read(&log, out)?;
        }
    }
    let floor = out.confirmed[out.confirmed.len() / 3].0;
    out.max_floor = out.max_floor.max(floor);
    log.delete_before(floor)?;
    check_read(&log, out)?;
    log.close()?;
    drop(log);

    let (log, _) = open_sim(fs, workload_config())?;
    for k in 0..6 {
        append(&log, out, &mut i, 1 + k % 3)?;
    }
    check_read(&log, out)?;
    // An unclean stop without a crash: the process ends, the files stay.
    drop(log);

    let (log, _) = open_sim(fs, workload_config())?;
    for _ in 0..3 {
        append(&log, out, &mut i, 2)?;
    }
    let floor = out.confirmed[out.confirmed.len() / 2].0;
    out.max_floor = out.max_floor.max(floor);
    log.delete_before(floor)?;
    append(&log, out, &mut i, 1)?;
    log.close()
}

fn check_after_crash(fs: &SimFs, out: &Outcome, what: &str) {
    let (log, _) =
        open_sim(fs, workload_config()).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let start = log.start_offset();
    if RETENTION.get() {
        // Size retention may have deleted any sealed segment but the newest.
        let last = out.confirmed.last().map(|c| c.0).unwrap_or_default();
        assert!(
            start <= last,
            "{what}: the last confirmed record {last} is gone (start {start})"
        );
    } else {
        assert!(
            start <= out.max_floor,
            "{what}: the log starts at {start}, past every requested deletion ({})",
            out.max_floor
        );
    }
    let all = read_all(&log);
    for (o, r) in &all {
        assert_eq!(
            out.intended.get(&o.0),
            Some(r),
            "{what}: record at {o} was never written there"
        );
    }
    for (o, r) in out.confirmed.iter().filter(|(o, _)| *o >= start) {
        let got = all.get((o.0 - start.0) as usize);
        assert_eq!(
            got.map(|g| &g.1),
            Some(r),
            "{what}: confirmed record {o} lost"
        );
    }
    let end = log.end_offset();
    assert_eq!(end, start.add(all.len() as u64), "{what}");
    let info = log
        .append(&[record(10_000)])
        .unwrap_or_else(|e| panic!("{what}: append after recovery failed: {e}"));
    assert_eq!(info.base_offset, end, "{what}");
    assert_eq!(
        log.read_records(end, 1, 1 << 10).unwrap()[0].1,
        record(10_000)
    );
    log.close().unwrap();
}

fn count_ops() -> u64 {
    let fs = SimFs::new();
    let mut out = Outcome::default();
    workload(&fs, &mut out).expect("the workload runs without faults");
    let n = fs.op_count();
    assert!(
        (100..5000).contains(&n),
        "workload size out of the intended range: {n} ops"
    );
    n
}

fn crash_everywhere(mode: impl Fn(u64) -> CrashMode) {
    let total = count_ops();
    for n in 0..=total {
        let fs = SimFs::new();
        fs.crash_after(n);
        let mut out = Outcome::default();
        let res = workload(&fs, &mut out);
        if n == total {
            assert!(res.is_ok(), "the workload fits in {total} ops");
        }
        fs.crash(mode(n));
        check_after_crash(&fs, &out, &format!("crash after op {n} of {total}"));
    }
}

#[test]
fn crash_after_any_op_loses_no_confirmed_append() {
    crash_everywhere(|_| CrashMode::DropUnsynced);
}

#[test]
fn crash_with_torn_tail_after_any_op_loses_no_confirmed_append() {
    crash_everywhere(|n| CrashMode::TornTail(n * 7919 + 1));
}

#[test]
fn crash_after_any_op_with_size_retention_loses_no_retained_append() {
    RETENTION.set(true);
    crash_everywhere(|n| {
        if n % 2 == 0 {
            CrashMode::DropUnsynced
        } else {
            CrashMode::TornTail(n)
        }
    });
}

#[test]
fn repeated_crashes_during_recovery_lose_nothing() {
    // Crash, then crash again at every point of the next open: recovery itself must be
    // restartable.
    let fs = SimFs::new();
    let mut out = Outcome::default();
    workload(&fs, &mut out).unwrap();
    let (log, _) = open_sim(&fs, config()).unwrap();
    let mut i = 20_000;
    for _ in 0..4 {
        append(&log, &mut out, &mut i, 1).unwrap();
    }
    drop(log);
    fs.crash(CrashMode::DropUnsynced);
    for n in 0..40 {
        fs.crash_after(n);
        let _ = open_sim(&fs, config());
        fs.crash(CrashMode::TornTail(n + 3));
        let (log, _) = open_sim(&fs, config()).unwrap();
        assert_contains(&log, &out.confirmed[out.confirmed.len() - 4..]);
        drop(log);
        fs.crash(CrashMode::DropUnsynced);
    }
}

#[test]
fn crash_during_concurrent_appends_loses_no_confirmed_append() {
    use std::sync::{Arc, Mutex};
    for n in (20..400).step_by(23) {
        let fs = SimFs::new();
        let (log, _) = open_sim(&fs, config()).unwrap();
        fs.crash_after(n);
        let confirmed = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..3u64)
            .map(|t| {
                let log = log.clone();
                let confirmed = confirmed.clone();
                std::thread::spawn(move || {
                    for i in 0..40 {
                        let r = record(t * 100 + i);
                        match log.append(std::slice::from_ref(&r)) {
                            Ok(info) => confirmed.lock().unwrap().push((info.base_offset, r)),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(log);
        fs.crash(CrashMode::TornTail(n));
        let (log, _) = open_sim(&fs, config()).unwrap();
        let mut confirmed = confirmed.lock().unwrap().clone();
        confirmed.sort_by_key(|c| c.0);
        assert_contains(&log, &confirmed);
        let end = log.end_offset();
        assert_eq!(log.append(&[record(1)]).unwrap().base_offset, end);
    }
}
