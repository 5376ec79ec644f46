//! What a replicated log needs of a log: control batches only through `append_replicated`, a
//! commit point readers never pass, and truncation of the tail at a batch boundary that
//! survives a restart and a crash at any step.

use std::sync::Arc;
use std::time::Duration;

use sluice_storage::format::{self, encode_batch, RaftStamp};
use sluice_storage::fs::sim::{CrashMode, SimFs};
use sluice_storage::{FsyncPolicy, Log, LogConfig, Offset, Record, StdFs};

fn cfg(direct_io: bool) -> LogConfig {
    LogConfig {
        segment_bytes_max: 4096,
        fsync: FsyncPolicy::Always,
        direct_io,
        ..LogConfig::default()
    }
}

/// A stamped batch of `n` records whose values name `tag`.
fn batch(tag: u64, n: usize, index: u64) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record::from_value(format!("{tag}-{i}-{}", "x".repeat(200)).into_bytes()))
        .collect();
    let mut b = encode_batch(&records, 1_000 + tag as i64);
    format::set_raft_stamp(
        &mut b,
        RaftStamp {
            term: 1,
            index,
            more: 0,
        },
    )
    .unwrap();
    b
}

/// Appends batches of 1..=3 records; returns the base offset of each.
fn fill(log: &Log, count: u64) -> Vec<Offset> {
    (0..count)
        .map(|k| {
            let info = log
                .append_replicated(batch(k, 1 + (k % 3) as usize, k + 1))
                .unwrap();
            log.sync_to(info.next_offset()).unwrap();
            info.base_offset
        })
        .collect()
}

fn values(log: &Log, from: Offset) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let recs = log.read_records(at, 1000, 1 << 20).unwrap();
        let Some(last) = recs.last() else { break };
        at = last.0.add(1);
        out.extend(
            recs.iter()
                .map(|(_, r)| String::from_utf8_lossy(&r.value)[..4].to_string()),
        );
    }
    out
}

#[test]
fn a_control_batch_is_refused_from_clients_and_kept_for_replicated_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(Arc::new(StdFs), dir.path(), cfg(false)).unwrap();
    let control = format::encode_control_batch(b"blank", 1);
    let err = log.append_encoded(control.clone()).unwrap_err();
    assert!(err.to_string().contains("control"), "{err}");
    assert_eq!(log.end_offset(), Offset(0));
    let info = log.append_replicated(control).unwrap();
    log.sync_to(info.next_offset()).unwrap();
    let got = log.read(Offset(0), 1 << 20).unwrap();
    assert!(got[0].header.is_control());
    // Readers of messages skip it, and learn where to go on from.
    let data = log.append_replicated(batch(1, 2, 2)).unwrap();
    log.sync_to(data.next_offset()).unwrap();
    let (msgs, next) = log.read_messages(Offset(0), 1 << 20).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].header.base_offset, Offset(1));
    assert_eq!(next, Offset(3));
    assert_eq!(log.read_records(Offset(0), 10, 1 << 20).unwrap().len(), 2);
    let only_control = log
        .append_replicated(format::encode_control_batch(b"m", 2))
        .unwrap();
    log.sync_to(only_control.next_offset()).unwrap();
    let (msgs, next) = log.read_messages(Offset(3), 1 << 20).unwrap();
    assert!(msgs.is_empty());
    assert_eq!(next, Offset(4));
    // Recovery scans it like any batch.
    drop(log);
    let log = Log::open(Arc::new(StdFs), dir.path(), cfg(false)).unwrap();
    assert_eq!(log.end_offset(), Offset(4));
    let got = log.read(Offset(0), 1 << 20).unwrap();
    assert_eq!(
        format::control_payload(&got[0].bytes, &got[0].header).unwrap(),
        &b"blank"[..]
    );
}

#[test]
fn readers_never_pass_the_commit_point() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(Arc::new(StdFs), dir.path(), cfg(false)).unwrap();
    log.set_commit_end(Offset(0));
    let bases = fill(&log, 6);
    assert_eq!(log.visible_end(), Offset(0));
    assert!(log.read(Offset(0), 1 << 20).unwrap().is_empty());
    assert_eq!(
        log.wait_visible(Offset(0), Duration::from_millis(20)),
        Offset(0)
    );
    log.set_commit_end(bases[3]);
    assert_eq!(log.visible_end(), bases[3]);
    let read: u64 = log
        .read(Offset(0), 1 << 20)
        .unwrap()
        .iter()
        .map(|b| b.header.record_count as u64)
        .sum();
    assert_eq!(read, bases[3].0);
    let err = log.truncate_from(bases[2]).unwrap_err();
    assert!(err.to_string().contains("committed"), "{err}");
}

#[test]
fn truncation_drops_the_tail_across_segments_and_survives_reopen() {
    for direct in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(Arc::new(StdFs), dir.path(), cfg(direct)).unwrap();
        let bases = fill(&log, 40);
        let segments = log.segments().len();
        assert!(segments > 3, "the workload rolls segments");
        let cut = bases[13];
        let err = log.truncate_from(cut.add(1)).unwrap_err();
        assert!(err.to_string().contains("inside"), "{err}");
        let end = log.end_offset();
        assert_eq!(log.truncate_from(cut).unwrap(), end.0 - cut.0);
        assert_eq!(log.end_offset(), cut);
        assert!(log.segments().len() < segments);
        let info = log.append_replicated(batch(99, 1, 14)).unwrap();
        assert_eq!(
            info.base_offset, cut,
            "the next append takes the cut's offset"
        );
        log.sync_to(info.next_offset()).unwrap();
        let want: Vec<String> = values(&log, Offset(0));
        assert_eq!(want.last().unwrap(), "99-0");
        drop(log);
        // An unclean reopen, then a clean one, find exactly the same log.
        let log = Log::open(Arc::new(StdFs), dir.path(), cfg(direct)).unwrap();
        assert_eq!(values(&log, Offset(0)), want);
        log.close().unwrap();
        let log = Log::open(Arc::new(StdFs), dir.path(), cfg(direct)).unwrap();
        assert_eq!(values(&log, Offset(0)), want);
        // Truncating at a segment's base and at the very start both work.
        let base = log.segments()[1].base_offset;
        log.truncate_from(base).unwrap();
        assert_eq!(log.end_offset(), base);
        log.truncate_from(Offset(0)).unwrap();
        assert_eq!(log.end_offset(), Offset(0));
        assert!(values(&log, Offset(0)).is_empty());
        fill(&log, 2);
        assert_eq!(values(&log, Offset(0)).len(), 3);
    }
}

#[test]
fn a_crash_at_any_step_of_a_truncation_keeps_the_prefix_and_ends_at_the_cut_or_the_old_end() {
    let probe = SimFs::new();
    let log = Log::open(Arc::new(probe.clone()), "/log", cfg(false)).unwrap();
    let bases = fill(&log, 30);
    let (cut, old_end) = (bases[11], log.end_offset());
    let before = probe.op_count();
    log.truncate_from(cut).unwrap();
    let steps = probe.op_count() - before;
    drop(log);
    for n in 0..=steps + 1 {
        let fs = SimFs::new();
        let log = Log::open(Arc::new(fs.clone()), "/log", cfg(false)).unwrap();
        let bases = fill(&log, 30);
        let full = values(&log, Offset(0));
        fs.crash_after(fs.op_count() + n);
        let _ = log.truncate_from(bases[11]);
        drop(log);
        fs.crash(CrashMode::TornTail(n * 31 + 7));
        let log = Log::open(Arc::new(fs.clone()), "/log", cfg(false)).unwrap();
        let end = log.end_offset();
        assert!(
            end == cut || end == old_end,
            "crash after step {n}: end {end}"
        );
        let got = values(&log, Offset(0));
        assert_eq!(got[..], full[..got.len()], "crash after step {n}");
        // The log takes appends at its end again.
        let info = log.append_replicated(batch(77, 1, 99)).unwrap();
        assert_eq!(info.base_offset, end);
    }
}

#[test]
fn a_log_restarted_at_an_offset_is_empty_there_takes_appends_there_and_survives_reopen() {
    for direct in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(Arc::new(StdFs), dir.path(), cfg(direct)).unwrap();
        log.set_commit_end(Offset(0));
        fill(&log, 30);
        let old_end = log.end_offset();
        assert!(log.segments().len() > 3, "the workload rolls segments");
        // Past the end, and then below it: a snapshot's offset may be either.
        for at in [Offset(old_end.0 + 500), Offset(7)] {
            log.restart_at(at).unwrap();
            assert_eq!((log.start_offset(), log.end_offset()), (at, at));
            assert_eq!(log.commit_end(), Some(at), "the commit point moves with it");
            assert_eq!(log.segments().len(), 1);
            assert!(values(&log, at).is_empty());
        }
        let at = Offset(7);
        let info = log.append_replicated(batch(5, 2, 40)).unwrap();
        assert_eq!(
            info.base_offset, at,
            "the next append is stored at the offset"
        );
        log.sync_to(info.next_offset()).unwrap();
        log.set_commit_end(info.next_offset());
        assert_eq!(values(&log, at).len(), 2);
        drop(log);
        for clean in [false, true] {
            let log = Log::open(Arc::new(StdFs), dir.path(), cfg(direct)).unwrap();
            assert_eq!(log.start_offset(), at);
            assert_eq!(log.end_offset(), info.next_offset());
            assert_eq!(values(&log, at).len(), 2);
            if clean {
                log.close().unwrap();
            }
        }
    }
}

#[test]
fn a_crash_at_any_step_of_a_restart_leaves_a_prefix_of_the_old_log_or_the_new_empty_one() {
    let probe = SimFs::new();
    let log = Log::open(Arc::new(probe.clone()), "/log", cfg(false)).unwrap();
    fill(&log, 30);
    let at = Offset(log.end_offset().0 + 100);
    let before = probe.op_count();
    log.restart_at(at).unwrap();
    let steps = probe.op_count() - before;
    drop(log);
    for n in 0..=steps + 1 {
        let fs = SimFs::new();
        let log = Log::open(Arc::new(fs.clone()), "/log", cfg(false)).unwrap();
        fill(&log, 30);
        let full = values(&log, Offset(0));
        fs.crash_after(fs.op_count() + n);
        let _ = log.restart_at(at);
        drop(log);
        fs.crash(CrashMode::TornTail(n * 31 + 7));
        let log = Log::open(Arc::new(fs.clone()), "/log", cfg(false)).unwrap();
        let (start, end) = (log.start_offset(), log.end_offset());
        if start == at {
            assert_eq!(end, at, "crash after step {n}: the new log is empty");
        } else {
            // What is left starts where the old log did (segments go newest first) and holds
            // a prefix of it.
            assert_eq!(start, Offset(0), "crash after step {n}");
            let got = values(&log, Offset(0));
            assert_eq!(got[..], full[..got.len()], "crash after step {n}");
        }
        let info = log.append_replicated(batch(77, 1, 99)).unwrap();
        assert_eq!(info.base_offset, end, "crash after step {n}");
    }
}

#[test]
fn inspect_names_each_batch_raft_entry() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(Arc::new(StdFs), dir.path(), cfg(false)).unwrap();
    fill(&log, 5);
    let opts = sluice_storage::inspect::InspectOptions {
        batches: true,
        ..Default::default()
    };
    let report = sluice_storage::inspect::inspect_path(&StdFs, dir.path(), &opts).unwrap();
    let stamps: Vec<(Option<u64>, Option<u64>)> = report
        .items
        .iter()
        .filter_map(|i| match i {
            sluice_storage::inspect::Item::Batch(b) => Some((b.raft_term, b.raft_index)),
            _ => None,
        })
        .collect();
    let want: Vec<(Option<u64>, Option<u64>)> = (1..=5).map(|i| (Some(1), Some(i))).collect();
    assert_eq!(stamps, want);
}
