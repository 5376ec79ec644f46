//! Offline repair: the plan names what is dropped and changes nothing; applying it keeps every
//! removed byte in a side file, and the log then opens and reads every intact record.

mod inspect_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use inspect_common::*;
use sluice_storage::checkpoint::{CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE};
use sluice_storage::inspect::{self, RepairAction};
use sluice_storage::{Log, Offset, Record, StdFs};

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            m.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    m
}

/// Opens the log as the broker would and checks it holds exactly `expected` from offset 0.
fn reopen_and_check(dir: &Path, expected: &[Record]) -> Log {
    let log = Log::open(Arc::new(StdFs), dir, config()).unwrap();
    assert_eq!(log.start_offset(), Offset(0));
    assert_eq!(log.end_offset(), Offset(expected.len() as u64));
    let got = read_all(&log);
    assert_eq!(got.len(), expected.len());
    for (i, (o, r)) in got.iter().enumerate() {
        assert_eq!(*o, Offset(i as u64));
        assert_eq!(r, &expected[i], "record {i}");
    }
    log
}

#[test]
fn payload_flip_in_a_middle_segment_is_cut_and_kept_aside() {
    let d = data_dir();
    let segs = segments(&d.topic);
    assert!(segs.len() >= 4);
    let seg = segs[1].clone();
    let bs = batches(&seg);
    let bad = bs[2].clone();
    flip(&seg, bad.position + bad.size_bytes as u64 - 1);
    let before = snapshot(&d.topic);

    let plan = inspect::plan_repair(&StdFs, &d.root, 1_800_000_000).unwrap();
    // Planning changes nothing.
    assert_eq!(snapshot(&d.topic), before);
    assert_eq!(plan.dirs.len(), 1, "only the topic needs repair");
    assert_eq!(plan.clean_dirs, vec![d.queue.clone()]);
    let dp = &plan.dirs[0];
    assert_eq!(dp.kept, (Offset(0), bad.base_offset));
    let cut = dp
        .actions
        .iter()
        .find_map(|a| match a {
            RepairAction::Truncate {
                file,
                position,
                first_dropped_offset,
                side_file,
                reason,
                ..
            } => Some((file, *position, *first_dropped_offset, side_file, reason)),
            _ => None,
        })
        .expect("a cut");
    assert_eq!(cut.0, &seg);
    assert_eq!(cut.1, bad.position);
    assert_eq!(cut.2, bad.base_offset);
    assert!(cut.4.contains("records checksum"), "{}", cut.4);
    let side = cut.3.clone();
    let aside: Vec<_> = dp
        .actions
        .iter()
        .filter_map(|a| match a {
            RepairAction::SetAside { file, .. } => Some(file.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(aside.len(), segs.len() - 2);
    assert!(dp.actions.iter().any(|a| matches!(a,
        RepairAction::RemoveStateFile { file, .. } if file.ends_with(CLEAN_SHUTDOWN_FILE))));

    let out = inspect::apply_repair(&StdFs, &plan).unwrap();
    assert_eq!(out.side_files.len(), segs.len() - 1);
    // Nothing is destroyed: the cut tail and every later segment are kept byte for byte.
    let orig = &before[&seg];
    assert_eq!(
        std::fs::read(&side).unwrap(),
        orig[bad.position as usize..].to_vec()
    );
    for s in &segs[2..] {
        let kept = PathBuf::from(format!("{}.dropped-1800000000", s.display()));
        assert_eq!(std::fs::read(&kept).unwrap(), before[s]);
        assert!(!s.exists());
    }
    assert!(!d.topic.join(CLEAN_SHUTDOWN_FILE).exists());
    assert!(!d.topic.join(RECOVERY_POINT_FILE).exists());
    // The repaired directory verifies, and the side files are readable by inspect.
    let v = inspect::verify(&StdFs, &d.root).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    let tail = batches(&side);
    assert_eq!(tail[0].base_offset, bad.base_offset);
    assert!(!tail[0].records_crc_valid);
    assert!(tail[1..].iter().all(|b| b.records_crc_valid));

    // The broker opens it and reads every record before the damage.
    let keep = bad.base_offset.0 as usize;
    let log = reopen_and_check(&d.topic, &d.topic_records[..keep]);
    // And it accepts new appends after them.
    let info = log.append(&[record(999)]).unwrap();
    assert_eq!(info.base_offset, Offset(keep as u64));
    log.close().unwrap();
    assert!(inspect::verify(&StdFs, &d.root).unwrap().ok());
}

#[test]
fn truncated_tail_repair_keeps_every_complete_batch() {
    let d = data_dir();
    let seg = segments(&d.topic).last().unwrap().clone();
    let last = batches(&seg).last().unwrap().clone();
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let plan = inspect::plan_repair(&StdFs, &d.topic, 42).unwrap();
    assert_eq!(plan.dirs[0].dropped_bytes, len - 7 - last.position);
    inspect::apply_repair(&StdFs, &plan).unwrap();
    assert!(inspect::verify(&StdFs, &d.topic).unwrap().ok());
    let keep = last.base_offset.0 as usize;
    reopen_and_check(&d.topic, &d.topic_records[..keep])
        .close()
        .unwrap();
}

#[test]
fn header_flip_in_the_first_segment_file_header_sets_everything_aside() {
    let d = data_dir();
    let segs = segments(&d.queue);
    flip(&segs[0], 3); // the segment file's magic
    let plan = inspect::plan_repair(&StdFs, &d.queue, 7).unwrap();
    let acts = &plan.dirs[0].actions;
    assert!(acts
        .iter()
        .any(|a| matches!(a, RepairAction::CreateEmptySegment { base_offset, .. } if *base_offset == Offset(0))));
    inspect::apply_repair(&StdFs, &plan).unwrap();
    assert!(inspect::verify(&StdFs, &d.queue).unwrap().ok());
    reopen_and_check(&d.queue, &[]).close().unwrap();
}

#[test]
fn stale_index_is_rebuilt_and_nothing_dropped() {
    let d = data_dir();
    let seg = segments(&d.topic)[2].clone();
    let idx = seg.with_extension("index");
    let mut bytes = std::fs::read(&idx).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x01; // the last entry's position, high byte
    std::fs::write(&idx, &bytes).unwrap();
    assert!(!inspect::verify(&StdFs, &d.topic).unwrap().ok());
    let plan = inspect::plan_repair(&StdFs, &d.topic, 9).unwrap();
    let acts = &plan.dirs[0].actions;
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert!(matches!(&acts[0], RepairAction::RebuildIndexes { file, .. } if *file == seg));
    assert_eq!(plan.dirs[0].dropped_bytes, 0);
    let out = inspect::apply_repair(&StdFs, &plan).unwrap();
    assert_eq!(out.rebuilt_indexes, 1);
    assert!(out.side_files.is_empty());
    let v = inspect::verify(&StdFs, &d.topic).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    // The clean-shutdown marker still matches: the next open is clean and reads everything.
    let (log, report) = Log::open_with_report(Arc::new(StdFs), &d.topic, config()).unwrap();
    assert!(report.clean);
    assert_eq!(read_all(&log).len(), d.topic_records.len());
    log.close().unwrap();
}

#[test]
fn garbage_recovery_point_is_removed_only() {
    let d = data_dir();
    let rp = d.topic.join(RECOVERY_POINT_FILE);
    std::fs::write(&rp, b"garbage").unwrap();
    let plan = inspect::plan_repair(&StdFs, &d.root, 5).unwrap();
    assert_eq!(plan.dirs.len(), 1);
    assert!(matches!(&plan.dirs[0].actions[..],
        [RepairAction::RemoveStateFile { file, .. }] if *file == rp));
    inspect::apply_repair(&StdFs, &plan).unwrap();
    assert!(inspect::verify(&StdFs, &d.root).unwrap().ok());
    reopen_and_check(&d.topic, &d.topic_records)
        .close()
        .unwrap();
}

#[test]
fn a_clean_directory_needs_nothing() {
    let d = data_dir();
    let plan = inspect::plan_repair(&StdFs, &d.root, 5).unwrap();
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.clean_dirs.len(), 2);
}

#[test]
fn a_directory_changed_after_planning_is_refused() {
    let d = data_dir();
    let seg = segments(&d.topic).last().unwrap().clone();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    let plan = inspect::plan_repair(&StdFs, &d.topic, 5).unwrap();
    f.set_len(len - 5).unwrap();
    let before = snapshot(&d.topic);
    assert!(inspect::apply_repair(&StdFs, &plan).is_err());
    assert_eq!(snapshot(&d.topic), before);
}

#[test]
fn a_missing_middle_segment_refuses_the_open_and_repair_sets_the_rest_aside() {
    let d = data_dir();
    let segs = segments(&d.topic);
    assert!(segs.len() >= 4);
    let gone_from = batches(&segs[1])[0].base_offset;
    std::fs::remove_file(&segs[1]).unwrap();
    let e = Log::open(Arc::new(StdFs), &d.topic, config()).unwrap_err();
    assert!(e.to_string().contains("in no segment file"), "{e}");
    // The open removed nothing.
    assert!(segs[2..].iter().all(|s| s.exists()));
    let plan = inspect::plan_repair(&StdFs, &d.topic, 9).unwrap();
    assert_eq!(plan.dirs[0].kept, (Offset(0), gone_from));
    inspect::apply_repair(&StdFs, &plan).unwrap();
    assert!(inspect::verify(&StdFs, &d.topic).unwrap().ok());
    reopen_and_check(&d.topic, &d.topic_records[..gone_from.0 as usize])
        .close()
        .unwrap();
}
