//! Failing calls: the Nth write, sync, directory sync, create, rename or remove fails (once, or
//! forever from then on), for every N until the workload no longer reaches it. The caller gets a
//! typed I/O error; a failed fsync stops the log (every later write is refused with `FailStop`
//! and nothing more is confirmed); after a crash every confirmed record is recovered. A full
//! disk refuses the append with a disk-full error, damages nothing and heals on the same log.

mod common;

use common::*;
use sluice_storage::fs::sim::{CrashMode, Fault, FaultError, OpKind, SimFs};
use sluice_storage::{Error, Log, LogConfig, Offset, Record, Result};

fn config() -> LogConfig {
    LogConfig {
        recovery_point_interval_bytes: 200,
        ..small_config(360)
    }
}

#[derive(Default)]
struct Outcome {
    confirmed: Vec<(Offset, Record)>,
    max_floor: Offset,
    log: Option<Log>,
    next: u64,
}

impl Outcome {
    fn append(&mut self, n: u64) -> Result<()> {
        let log = self.log.as_ref().expect("open log");
        let batch: Vec<Record> = (self.next..self.next + n).map(record).collect();
        self.next += n;
        let info = log.append(&batch)?;
        for (k, r) in batch.into_iter().enumerate() {
            self.confirmed.push((info.base_offset.add(k as u64), r));
        }
        Ok(())
    }
    fn open(&mut self, fs: &SimFs) -> Result<()> {
        self.log = None;
        self.log = Some(open_sim(fs, config())?.0);
        Ok(())
    }
}

fn workload(fs: &SimFs, out: &mut Outcome) -> Result<()> {
    out.open(fs)?;
    for k in 0..8 {
        out.append(1 + k % 2)?;
    }
    let floor = out.confirmed[out.confirmed.len() / 3].0;
    out.max_floor = floor;
    out.log.as_ref().unwrap().delete_before(floor)?;
    out.log.as_ref().unwrap().close()?;
    out.open(fs)?;
    for k in 0..6 {
        out.append(1 + k % 3)?;
    }
    out.log.as_ref().unwrap().close()
}

fn check_recovered(fs: &SimFs, out: &Outcome, what: &str) {
    let (log, _) = open_sim(fs, config()).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    assert!(log.start_offset() <= out.max_floor, "{what}");
    let kept: Vec<_> = out
        .confirmed
        .iter()
        .filter(|(o, _)| *o >= log.start_offset())
        .cloned()
        .collect();
    assert_contains(&log, &kept);
    let end = log.end_offset();
    assert_eq!(log.append(&[record(1)]).unwrap().base_offset, end, "{what}");
}

fn run_fault(kind: OpKind, forever: bool) -> u64 {
    let mut n = 1;
    loop {
        let what = format!(
            "{kind:?} #{n} failing{}",
            if forever { " forever" } else { "" }
        );
        let fs = SimFs::new();
        fs.add_fault(Fault {
            kind,
            nth: n,
            forever,
            error: FaultError::Io,
        });
        let mut out = Outcome::default();
        let res = workload(&fs, &mut out);
        if fs.count(kind) < n {
            assert!(res.is_ok(), "{what}: failed without a fault: {res:?}");
            return n;
        }
        match &res {
            Ok(()) => {
                // The fault hit a call whose failure the engine may absorb (a cache file). The
                // data must still be intact.
            }
            Err(Error::Io { .. }) | Err(Error::FailStop { .. }) => {}
            Err(e) => panic!("{what}: not an I/O error: {e}"),
        }
        if let (Err(_), Some(log)) = (&res, &out.log) {
            if log.has_failed() {
                let durable = log.durable_end();
                for _ in 0..2 {
                    match log.append(&[record(1)]) {
                        Err(Error::FailStop { .. }) => {}
                        other => panic!("{what}: append after a failed fsync: {other:?}"),
                    }
                }
                // Data written but not durable is never confirmed again.
                if log.end_offset() > durable {
                    assert!(log.flush().is_err(), "{what}: flush after a failed fsync");
                }
                assert_eq!(
                    log.durable_end(),
                    durable,
                    "{what}: confirmed after fail-stop"
                );
            } else if kind == OpKind::Sync && !log.is_closed() {
                // A sync failed on an open log and the log did not stop: it must not be one of
                // the segment's data syncs, so appends keep confirming correctly.
                let before = out.confirmed.len();
                if out.append(1).is_ok() {
                    assert_eq!(out.confirmed.len(), before + 1);
                }
            } else if !forever && !log.is_closed() {
                // A one-off failure leaves the log usable.
                out.append(1)
                    .unwrap_or_else(|e| panic!("{what}: log unusable after a one-off fault: {e}"));
            }
        }
        drop(out.log.take());
        fs.crash(CrashMode::DropUnsynced);
        check_recovered(&fs, &out, &what);
        n += 1;
    }
}

#[test]
fn failing_the_nth_call_of_each_kind_loses_no_confirmed_record() {
    for kind in [
        OpKind::Write,
        OpKind::Sync,
        OpKind::SyncDir,
        OpKind::Create,
        OpKind::Rename,
        OpKind::Remove,
    ] {
        for forever in [false, true] {
            let n = run_fault(kind, forever);
            assert!(n > 1, "{kind:?}: the workload never calls it");
        }
    }
}

#[test]
fn failed_fsync_stops_the_log_and_confirms_nothing_more() {
    let fs = SimFs::new();
    let (log, _) = open_sim(&fs, config()).unwrap();
    let a = log.append(&[record(0)]).unwrap();
    fs.add_fault(Fault {
        kind: OpKind::Sync,
        nth: fs.count(OpKind::Sync) + 1,
        forever: false,
        error: FaultError::Io,
    });
    assert!(matches!(log.append(&[record(1)]), Err(Error::Io { .. })));
    assert!(log.has_failed());
    // The fault was one-off, yet the log must not trust a retried fsync.
    for i in 2..5 {
        assert!(matches!(
            log.append(&[record(i)]),
            Err(Error::FailStop { .. })
        ));
    }
    assert_eq!(log.visible_end(), a.next_offset());
    assert_eq!(read_all(&log), vec![(Offset(0), record(0))]);
    log.close().unwrap();
    fs.crash(CrashMode::DropUnsynced);
    let (log, report) = open_sim(&fs, config()).unwrap();
    assert!(!report.clean, "no clean marker after a failed fsync");
    assert_eq!(read_all(&log)[0], (Offset(0), record(0)));
}

fn assert_disk_full(r: Result<sluice_storage::AppendInfo>, what: &str) {
    match r {
        Err(e) => assert!(e.is_disk_full(), "{what}: not reported as disk full: {e:?}"),
        Ok(i) => panic!(
            "{what}: append succeeded on a full disk at {}",
            i.base_offset
        ),
    }
}

#[test]
fn full_disk_refuses_the_append_and_heals_on_the_same_log() {
    // Fill the disk at every write of a workload with rolls, once and forever; and run out of
    // room for new files (creates fail with ENOSPC too when inodes or blocks run out). Both
    // write paths: buffered writes cut a refused append back at once; direct writes keep its
    // bytes queued and write them once space returns (never confirmed, never visible before
    // durable, at most once and in order).
    let cases = [(OpKind::Write, 40u64), (OpKind::Create, 8)];
    for direct_io in [false, true] {
        for ((kind, skips), forever) in cases.into_iter().flat_map(|c| [(c, true), (c, false)]) {
            for skip in 0..skips {
                let what =
                    format!("ENOSPC at {kind:?} {skip} (forever: {forever}, direct: {direct_io})");
                full_disk_case(kind, skip, forever, direct_io, &what);
            }
        }
    }
}

fn full_disk_case(kind: OpKind, skip: u64, forever: bool, direct_io: bool, what: &str) {
    let cfg = LogConfig {
        direct_io,
        ..config()
    };
    let fs = SimFs::new();
    let (log, _) = open_sim(&fs, cfg.clone()).unwrap();
    let mut recs = Vec::new();
    for i in 0..4 {
        recs.push((log.append(&[record(i)]).unwrap().base_offset, record(i)));
    }
    let nth = fs.count(kind) + 1 + skip;
    fs.add_fault(Fault {
        kind,
        nth,
        forever,
        error: FaultError::NoSpace,
    });
    let mut refused = Vec::new();
    let mut i = 4;
    let failed_at = loop {
        if !forever && fs.count(kind) > nth + 1 {
            // A one-off failure of a cache or checkpoint write may be absorbed.
            break None;
        }
        assert!(i < 200, "{what}: the fault never hit");
        let end = log.end_offset();
        match log.append(&[record(i)]) {
            Ok(info) => {
                assert_eq!(info.base_offset, end);
                recs.push((info.base_offset, record(i)));
            }
            Err(e) => {
                assert!(e.is_disk_full(), "{what}: not reported as disk full: {e:?}");
                refused.push(record(i));
                break Some(end);
            }
        }
        i += 1;
    };
    assert!(
        !log.has_failed(),
        "{what}: a full disk is not a failed fsync"
    );
    if forever {
        assert_disk_full(log.append(&[record(999)]), what);
        refused.push(record(999));
    }
    // Nothing stored is damaged and nothing refused is visible.
    assert_eq!(read_all(&log), recs, "{what}");
    if let Some(end) = failed_at {
        if direct_io {
            assert!(log.end_offset() >= end, "{what}");
        } else {
            assert_eq!(
                log.end_offset(),
                end,
                "{what}: a refused append left bytes behind"
            );
        }
    }
    fs.clear_faults();
    let mut healed = Vec::new();
    for k in 0..12 {
        let end = log.end_offset();
        let info = log
            .append(&[record(300 + k)])
            .unwrap_or_else(|e| panic!("{what}: append after space was freed: {e}"));
        assert_eq!(info.base_offset, end, "{what}: offsets stay dense");
        healed.push((info.base_offset, record(300 + k)));
    }
    let all = read_all(&log);
    assert_eq!(&all[..recs.len()], &recs[..], "{what}");
    let middle = &all[recs.len()..all.len() - healed.len()];
    assert_eq!(&all[all.len() - healed.len()..], &healed[..], "{what}");
    if !direct_io {
        assert!(middle.is_empty(), "{what}: a refused append became visible");
    }
    // Refused records that were kept appear once each, in the order they were sent.
    let mut next = 0;
    for (_, r) in middle {
        let at = refused[next..]
            .iter()
            .position(|x| x == r)
            .unwrap_or_else(|| panic!("{what}: unexpected or repeated record {r:?}"));
        next += at + 1;
    }
    drop(log);
    fs.crash(CrashMode::DropUnsynced);
    let (log, _) = open_sim(&fs, cfg).unwrap();
    assert_eq!(read_all(&log), all, "{what}: after a crash");
}

#[test]
fn failed_explicit_flush_stops_a_log_that_does_not_sync_each_append() {
    for fsync in [
        sluice_storage::FsyncPolicy::Never,
        sluice_storage::FsyncPolicy::Interval(60_000),
    ] {
        let fs = SimFs::new();
        let cfg = LogConfig { fsync, ..config() };
        let (log, _) = open_sim(&fs, cfg.clone()).unwrap();
        log.append(&[record(0)]).unwrap();
        log.flush().unwrap();
        log.append(&[record(1)]).unwrap();
        fs.add_fault(Fault {
            kind: OpKind::Sync,
            nth: fs.count(OpKind::Sync) + 1,
            forever: false,
            error: FaultError::Io,
        });
        assert!(matches!(log.flush(), Err(Error::Io { .. })), "{fsync}");
        assert!(log.has_failed(), "{fsync}");
        assert_eq!(log.durable_end(), Offset(1), "{fsync}");
        assert!(
            matches!(log.append(&[record(2)]), Err(Error::FailStop { .. })),
            "{fsync}"
        );
        assert!(
            log.flush().is_err(),
            "{fsync}: a retried fsync must not confirm"
        );
        assert_eq!(log.durable_end(), Offset(1), "{fsync}");
        log.close().unwrap();
        fs.crash(CrashMode::DropUnsynced);
        let (log, _) = open_sim(&fs, cfg).unwrap();
        assert_eq!(read_all(&log)[0], (Offset(0), record(0)), "{fsync}");
    }
}

/// A removal that fails part way through leaves no gap: the segments still on disk stay at the
/// front of the log and go, oldest first, on the next call; the log reopens whole.
#[test]
fn a_failed_segment_removal_is_retried_in_order() {
    for nth in 1..=4 {
        let fs = SimFs::new();
        let (log, _) = open_sim(&fs, config()).unwrap();
        let mut last = Offset(0);
        while log.segments().len() < 5 {
            last = log.append(&[record(last.0)]).unwrap().last_offset;
        }
        let third = log.segments()[2].base_offset;
        fs.add_fault(Fault {
            kind: OpKind::Remove,
            nth: fs.count(OpKind::Remove) + nth,
            forever: false,
            error: FaultError::Io,
        });
        assert!(
            log.delete_before(third).is_err(),
            "removal #{nth} did not fail"
        );
        let start = log.start_offset();
        assert_eq!(start, log.segments()[0].base_offset, "#{nth}");
        // The next call finishes the job, in order.
        log.delete_before(third).unwrap();
        assert_eq!(log.start_offset(), third, "#{nth}");
        log.close().unwrap();
        let (log, _) = open_sim(&fs, config()).unwrap_or_else(|e| {
            panic!("removal #{nth} failing left a log that does not open: {e}")
        });
        assert_eq!(log.start_offset(), third);
        assert_eq!(log.visible_end(), last.add(1));
    }
}
