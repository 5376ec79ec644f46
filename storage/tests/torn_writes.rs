//! Torn and damaged files: a cut anywhere in the last batch, a flipped bit in any file the log
//! keeps, and garbage appended to the active segment and its index. Recovery must keep exactly
//! the valid prefix, report what it did, never panic, and keep accepting appends.

mod common;

use common::*;
use sluice_storage::fs::sim::SimFs;
use sluice_storage::{Error, FileSystem, Offset, Record, RecoveryPolicy};

/// Records with their offsets, and the byte range of each batch.
type Written = (Vec<(Offset, Record)>, Vec<(u64, u64)>);

/// Appends `batches` batches of 1..=3 records; returns the records and the byte range of each
/// batch in the (single) segment.
fn write_batches(fs: &SimFs, batches: u64) -> Written {
    let (log, _) = open_sim(fs, small_config(1 << 20)).unwrap();
    let mut recs = Vec::new();
    let mut ranges = Vec::new();
    let mut i = 0;
    for b in 0..batches {
        let before = log.size_bytes();
        let batch: Vec<Record> = (0..1 + b % 3).map(|k| record(i + k)).collect();
        let info = log.append(&batch).unwrap();
        for (k, r) in batch.into_iter().enumerate() {
            recs.push((info.base_offset.add(k as u64), r));
        }
        i += 1 + b % 3;
        ranges.push((before, log.size_bytes()));
    }
    // An unclean stop: no close.
    drop(log);
    (recs, ranges)
}

fn count_before(recs: &[(Offset, Record)], batch: usize) -> usize {
    let n: u64 = (0..batch as u64).map(|b| 1 + b % 3).sum();
    assert!(n as usize <= recs.len());
    n as usize
}

#[test]
fn cut_at_every_byte_of_the_last_batch_keeps_exactly_the_earlier_batches() {
    let seg = path(&seg_name(0, "log"));
    let probe = SimFs::new();
    let (_, ranges) = write_batches(&probe, 4);
    let (start, end) = *ranges.last().unwrap();
    for cut in start..end {
        let fs = SimFs::new();
        let (recs, _) = write_batches(&fs, 4);
        let bytes = fs.read_file(&seg).unwrap();
        // The log's bytes end at `end`; under direct writes an unclean stop leaves zero padding
        // up to the block boundary after them.
        assert!(bytes.len() as u64 >= end, "the last batch is on disk");
        assert!(
            bytes[end as usize..].iter().all(|&b| b == 0),
            "only padding follows"
        );
        fs.write_file(&seg, &bytes[..cut as usize]).unwrap();
        let (log, report) = open_sim(&fs, small_config(1 << 20)).unwrap();
        let keep = count_before(&recs, 3);
        assert_eq!(
            report.truncated_bytes,
            cut - start,
            "cut at {cut}: truncation not reported"
        );
        assert!(!report.clean);
        let all = read_all(&log);
        assert_eq!(all, recs[..keep], "cut at {cut}: wrong records survive");
        assert_eq!(log.end_offset(), Offset(keep as u64));
        let info = log.append(&[record(999)]).unwrap();
        assert_eq!(info.base_offset, Offset(keep as u64), "cut at {cut}");
        assert_eq!(read_all(&log).last().unwrap().1, record(999));
        log.close().unwrap();
        // The repaired log reopens cleanly.
        let (log, report) = open_sim(&fs, small_config(1 << 20)).unwrap();
        assert!(report.clean, "cut at {cut}: {report:?}");
        assert_eq!(log.end_offset(), Offset(keep as u64 + 1));
    }
}

#[test]
fn flipped_bit_in_a_batch_cuts_the_log_at_that_batch() {
    let seg = path(&seg_name(0, "log"));
    let fs = SimFs::new();
    let (recs, ranges) = write_batches(&fs, 3);
    let pristine = fs.read_file(&seg).unwrap();
    // The middle batch (2 records) and the last one (3 records).
    for batch in [1usize, 2] {
        let (start, end) = ranges[batch];
        for bit in start * 8..end * 8 {
            let mut bytes = pristine.clone();
            bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
            let fs = SimFs::new();
            write_batches(&fs, 3);
            fs.write_file(&seg, &bytes).unwrap();
            let (log, report) = open_sim(&fs, small_config(1 << 20)).unwrap();
            let keep = count_before(&recs, batch);
            assert_eq!(
                report.truncated_bytes,
                pristine.len() as u64 - start,
                "bit {bit}"
            );
            assert_eq!(read_all(&log), recs[..keep], "bit {bit}");
            let info = log.append(&[record(7)]).unwrap();
            assert_eq!(info.base_offset, Offset(keep as u64), "bit {bit}");

            // The same damage under the refuse policy is a typed error naming the position.
            let fs = SimFs::new();
            write_batches(&fs, 3);
            fs.write_file(&seg, &bytes).unwrap();
            let cfg = sluice_storage::LogConfig {
                recovery: RecoveryPolicy::Refuse,
                ..small_config(1 << 20)
            };
            match open_sim(&fs, cfg) {
                Err(Error::Corruption { position, .. }) => assert_eq!(position, start),
                other => panic!("bit {bit}: refuse policy opened: {:?}", other.map(|x| x.1)),
            }
        }
    }
}

/// A log of several sealed segments, closed cleanly; returns its records.
fn closed_multi_segment_log(fs: &SimFs) -> Vec<(Offset, Record)> {
    let (log, _) = open_sim(fs, small_config(400)).unwrap();
    let mut recs = Vec::new();
    for i in 0..20 {
        let info = log.append(&[record(i)]).unwrap();
        recs.push((info.base_offset, record(i)));
    }
    assert!(log.segments().len() >= 3);
    log.close().unwrap();
    recs
}

/// Opens a damaged log: either a typed corruption error or a log whose contents are a prefix of
/// `recs` that accepts an append at its end. Returns the records kept, or None on refusal.
fn open_damaged(fs: &SimFs, recs: &[(Offset, Record)], what: &str) -> Option<usize> {
    match open_sim(fs, small_config(400)) {
        Err(Error::Corruption { .. }) => None,
        Err(e) => panic!("{what}: untyped failure {e}"),
        Ok((log, _)) => {
            let all = read_all(&log);
            let start = log.start_offset().0 as usize;
            assert_eq!(all[..], recs[start..start + all.len()], "{what}");
            let end = log.end_offset();
            let mut appended = Vec::new();
            for k in 0..12 {
                let info = log.append(&[record(500 + k)]).unwrap();
                assert_eq!(info.base_offset, end.add(k), "{what}");
                appended.push((info.base_offset, record(500 + k)));
            }
            // An unclean stop: the next recovery must not be misled by what the damaged open
            // left behind (recovery point, indexes).
            drop(log);
            let (log, _) = open_sim(fs, small_config(400))
                .unwrap_or_else(|e| panic!("{what}: second open failed: {e}"));
            assert_contains(&log, &appended);
            assert_eq!(log.end_offset(), end.add(12), "{what}");
            log.close().unwrap();
            Some(all.len())
        }
    }
}

#[test]
fn flipped_bit_in_a_segment_file_header_is_detected() {
    let fs = SimFs::new();
    let recs = closed_multi_segment_log(&fs);
    let names = fs.read_dir(&dir()).unwrap();
    let logs: Vec<String> = names.into_iter().filter(|n| n.ends_with(".log")).collect();
    for name in [&logs[0], &logs[1], logs.last().unwrap()] {
        for bit in 0..32 * 8 {
            let fs = SimFs::new();
            closed_multi_segment_log(&fs);
            let p = path(name);
            let mut bytes = fs.read_file(&p).unwrap();
            bytes[bit / 8] ^= 1 << (bit % 8);
            fs.write_file(&p, &bytes).unwrap();
            let kept = open_damaged(&fs, &recs, &format!("{name} bit {bit}"));
            if name == logs.last().unwrap() {
                // The tail segment may be dropped, but every sealed segment stays.
                let sealed = logs.len() - 1;
                assert!(kept.is_some(), "{name} bit {bit}: refused to open");
                assert!(kept.unwrap() >= sealed, "{name} bit {bit}");
            }
        }
    }
}

#[test]
fn flipped_bit_in_an_index_header_rebuilds_the_index() {
    let fs = SimFs::new();
    let recs = closed_multi_segment_log(&fs);
    let names: Vec<String> = fs
        .read_dir(&dir())
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with("index"))
        .collect();
    assert!(names.len() >= 4);
    for name in &names {
        for bit in 0..32 * 8 {
            let fs = SimFs::new();
            closed_multi_segment_log(&fs);
            let p = path(name);
            let mut bytes = fs.read_file(&p).unwrap();
            bytes[bit / 8] ^= 1 << (bit % 8);
            fs.write_file(&p, &bytes).unwrap();
            let (log, report) = open_sim(&fs, small_config(400))
                .unwrap_or_else(|e| panic!("{name} bit {bit}: refused to open: {e}"));
            assert!(report.rebuilt_indexes >= 1, "{name} bit {bit}: {report:?}");
            assert_eq!(read_all(&log), recs, "{name} bit {bit}");
            assert_eq!(log.append(&[record(1)]).unwrap().base_offset, Offset(20));
        }
    }
}

#[test]
fn flipped_bit_in_recovery_point_or_clean_marker_is_ignored() {
    let fs = SimFs::new();
    let recs = closed_multi_segment_log(&fs);
    // A damaged recovery point matters after an unclean stop (no marker); a damaged marker
    // after a clean one.
    for (name, unclean) in [("recovery-point", true), ("clean-shutdown", false)] {
        let len = fs.read_file(&path(name)).unwrap().len();
        for bit in 0..len * 8 {
            let fs = SimFs::new();
            closed_multi_segment_log(&fs);
            if unclean {
                fs.remove_file(&path("clean-shutdown")).unwrap();
            }
            let p = path(name);
            let mut bytes = fs.read_file(&p).unwrap();
            bytes[bit / 8] ^= 1 << (bit % 8);
            fs.write_file(&p, &bytes).unwrap();
            let (log, report) = open_sim(&fs, small_config(400))
                .unwrap_or_else(|e| panic!("{name} bit {bit}: refused to open: {e}"));
            assert!(!report.clean, "{name} bit {bit}: damaged marker trusted");
            assert_eq!(read_all(&log), recs, "{name} bit {bit}");
            assert_eq!(log.append(&[record(1)]).unwrap().base_offset, Offset(20));
        }
    }
}

#[test]
fn random_garbage_after_the_active_segment_and_its_index_loses_no_record() {
    let fs = SimFs::new();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut recs: Vec<(Offset, Record)> = Vec::new();
    let mut i = 0;
    for round in 0..100 {
        let (log, _) = open_sim(&fs, small_config(2048))
            .unwrap_or_else(|e| panic!("round {round}: refused to open: {e}"));
        assert_contains(&log, &recs);
        assert_eq!(read_all(&log).len(), recs.len(), "round {round}");
        for _ in 0..1 + rng.below(4) {
            let n = 1 + rng.below(3);
            let batch: Vec<Record> = (i..i + n).map(record).collect();
            let info = log.append(&batch).unwrap();
            assert_eq!(info.base_offset, Offset(recs.len() as u64), "round {round}");
            for (k, r) in batch.into_iter().enumerate() {
                recs.push((info.base_offset.add(k as u64), r));
            }
            i += n;
        }
        let active = log.segments().last().unwrap().base_offset.0;
        if round % 2 == 0 {
            log.close().unwrap();
        } else {
            drop(log);
        }
        for ext in ["log", "index"] {
            let p = path(&seg_name(active, ext));
            if let Ok(mut bytes) = fs.read_file(&p) {
                let n = 1 + rng.below(1024) as usize;
                bytes.extend(rng.bytes(n));
                fs.write_file(&p, &bytes).unwrap();
            }
        }
    }
    let (log, _) = open_sim(&fs, small_config(2048)).unwrap();
    assert_eq!(read_all(&log), recs);
    assert!(log.segments().len() > 1, "the test should cover rolls");
}

#[test]
fn damage_found_while_rebuilding_indexes_after_a_clean_close_cuts_the_log() {
    // A clean close, then a damaged batch in the last segment and a lost index: the open must
    // rebuild the index by a scan, and what that scan finds may not be ignored.
    let seg = path(&seg_name(0, "log"));
    let fs = SimFs::new();
    let (recs, ranges) = write_batches(&fs, 4);
    let (log, _) = open_sim(&fs, small_config(1 << 20)).unwrap();
    log.close().unwrap();
    let mut bytes = fs.read_file(&seg).unwrap();
    let (start, _) = ranges[2];
    bytes[start as usize + 60] ^= 0x10;
    fs.write_file(&seg, &bytes).unwrap();
    fs.remove_file(&path(&seg_name(0, "index"))).unwrap();
    let keep = count_before(&recs, 2);
    match open_sim(&fs, small_config(1 << 20)) {
        Err(Error::Corruption { position, .. }) => assert_eq!(position, start),
        Err(e) => panic!("untyped failure {e}"),
        Ok((log, report)) => {
            assert!(!report.clean, "{report:?}");
            assert_eq!(report.truncated_bytes, bytes.len() as u64 - start);
            assert_eq!(read_all(&log), recs[..keep]);
            let mut appended = Vec::new();
            for k in 0..5 {
                let info = log.append(&[record(50 + k)]).unwrap();
                assert_eq!(info.base_offset, Offset(keep as u64 + k));
                appended.push((info.base_offset, record(50 + k)));
            }
            assert_contains(&log, &appended);
            drop(log);
            let (log, _) = open_sim(&fs, small_config(1 << 20)).unwrap();
            assert_contains(&log, &recs[..keep]);
            assert_contains(&log, &appended);
        }
    }
}
