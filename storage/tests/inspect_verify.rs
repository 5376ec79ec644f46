//! `verify` and `inspect_path` on real directories: a clean one verifies, and each kind of damage
//! is found and named with its file and byte position.

mod inspect_common;

use std::path::Path;

use inspect_common::*;
use sluice_storage::checkpoint::RECOVERY_POINT_FILE;
use sluice_storage::format::BATCH_HEADER_LEN;
use sluice_storage::inspect::{self, InspectOptions, Item, Problem, Severity};
use sluice_storage::{Offset, StdFs};

fn errors(path: &Path) -> Vec<Problem> {
    let v = inspect::verify(&StdFs, path).unwrap();
    assert_eq!(
        v.ok(),
        v.problems.iter().all(|p| p.severity != Severity::Error)
    );
    v.problems
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .collect()
}

#[test]
fn clean_directory_verifies_with_counts() {
    let d = data_dir();
    let v = inspect::verify(&StdFs, &d.root).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    let s = &v.summary;
    assert_eq!(s.log_dirs, 2);
    assert_eq!(s.records, 135);
    assert_eq!(s.batches, 45);
    assert!(s.segments > 3, "small segments: {}", s.segments);
    assert!(s.indexes >= 2 * s.segments - 2);
    assert!(!s.locked);
}

#[test]
fn directory_report_lists_segments_with_offset_ranges() {
    let d = data_dir();
    let r = inspect::inspect_path(&StdFs, &d.root, &InspectOptions::default()).unwrap();
    let dirs: Vec<_> = r
        .items
        .iter()
        .filter_map(|i| match i {
            Item::LogDir(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(dirs.len(), 2);
    let topic = dirs.iter().find(|x| x.kind == "topic").unwrap();
    assert_eq!(topic.name, "orders");
    assert_eq!(topic.start_offset, Some(Offset(0)));
    assert_eq!(topic.end_offset, Some(Offset(120)));
    for w in topic.segments.windows(2) {
        assert_eq!(w[0].end_offset, w[1].base_offset);
    }
    assert!(topic.segments.iter().all(|s| s.valid_bytes == s.size_bytes));
    let queue = dirs.iter().find(|x| x.kind == "queue").unwrap();
    assert_eq!(queue.end_offset, Some(Offset(15)));
    // Directory mode lists no batches unless asked.
    assert!(!r.items.iter().any(|i| matches!(i, Item::Batch(_))));
}

#[test]
fn segment_file_lists_batches_and_records() {
    let d = data_dir();
    let seg = &segments(&d.topic)[0];
    let opts = InspectOptions {
        payloads: true,
        ..InspectOptions::default()
    };
    let r = inspect::inspect_path(&StdFs, seg, &opts).unwrap();
    let batches: Vec<_> = r
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Batch(b) => Some(b),
            _ => None,
        })
        .collect();
    assert!(!batches.is_empty());
    assert_eq!(batches[0].position, 32);
    assert_eq!(batches[0].base_offset, Offset(0));
    assert_eq!(batches[0].last_offset, Offset(2));
    assert_eq!(batches[0].first_timestamp_ms, 1_700_000_000_000);
    assert_eq!(batches[0].last_timestamp_ms, Some(1_700_000_000_002));
    assert!(batches.iter().all(|b| b.records_crc_valid));
    let recs: Vec<_> = r
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Record(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(recs.len(), batches.len() * 3);
    assert_eq!(recs[1].offset, Offset(1));
    assert_eq!(recs[1].key, Some(inspect::Shown::Utf8("k1".into())));
    assert_eq!(recs[1].value_size, record(1).value.len());
    assert_eq!(
        recs[1].value,
        Some(inspect::Shown::Utf8(
            String::from_utf8(record(1).value).unwrap()
        ))
    );
    assert_eq!(r.summary.errors, 0);
}

#[test]
fn index_file_entries_point_at_batch_boundaries() {
    let d = data_dir();
    let idx = segments(&d.topic)[0].with_extension("index");
    let r = inspect::inspect_path(&StdFs, &idx, &InspectOptions::default()).unwrap();
    let entries: Vec<_> = r
        .items
        .iter()
        .filter_map(|i| match i {
            Item::IndexEntry(e) => Some(e),
            _ => None,
        })
        .collect();
    assert!(entries.len() > 1, "dense index expected");
    assert!(entries.iter().all(|e| e.valid));
    assert_eq!(entries[0].log_position, Some(32));
    assert_eq!(r.summary.errors, 0);
}

#[test]
fn flipped_byte_in_batch_header_is_named() {
    let d = data_dir();
    let seg = segments(&d.topic)[1].clone();
    let b = &batches(&seg)[1];
    flip(&seg, b.position + 20); // inside the base offset field
    let errs = errors(&d.root);
    assert_eq!(errs[0].file, seg, "{errs:?}");
    assert_eq!(errs[0].position, Some(b.position));
    assert!(
        errs[0].what.contains("header checksum mismatch"),
        "{}",
        errs[0].what
    );
    // Nothing after it in the segment can be read, so the next segment does not follow on.
    assert!(
        errs[1..]
            .iter()
            .all(|p| p.what.contains("previous one ends")
                || p.file == seg.with_extension("index")
                || p.file == seg.with_extension("timeindex")),
        "{errs:?}"
    );
}

#[test]
fn flipped_byte_in_payload_is_named() {
    let d = data_dir();
    let seg = segments(&d.topic)[0].clone();
    let b = &batches(&seg)[2];
    flip(&seg, b.position + b.size_bytes as u64 - 3);
    let errs = errors(&d.topic);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].file, seg);
    assert_eq!(errs[0].position, Some(b.position));
    assert!(
        errs[0].what.contains("records checksum mismatch"),
        "{}",
        errs[0].what
    );
    // The batch itself is still listed, marked invalid, and the ones after it too.
    let after = batches(&seg);
    assert!(!after[2].records_crc_valid);
    assert!(after[3..].iter().all(|b| b.records_crc_valid));
}

#[test]
fn truncated_tail_is_named() {
    let d = data_dir();
    let seg = segments(&d.topic).last().unwrap().clone();
    let b = batches(&seg).last().unwrap().clone();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 10).unwrap();
    let errs = errors(&d.topic);
    let torn = errs.iter().find(|p| p.file == seg).expect("segment named");
    assert_eq!(torn.position, Some(b.position));
    assert!(
        torn.what.contains("runs past the end of the file"),
        "{}",
        torn.what
    );
    // The clean-shutdown marker no longer matches the files.
    assert!(errs
        .iter()
        .any(|p| p.file.ends_with("clean-shutdown") && p.what.contains("changed")));
}

#[test]
fn short_tail_is_named() {
    let d = data_dir();
    let seg = segments(&d.queue).last().unwrap().clone();
    let len = std::fs::metadata(&seg).unwrap().len();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0u8; 17]);
    std::fs::write(&seg, bytes).unwrap();
    let errs = errors(&seg);
    assert_eq!(errs[0].position, Some(len));
    assert!(
        errs[0].what.contains("17 trailing bytes of zeros"),
        "{}",
        errs[0].what
    );
}

#[test]
fn stale_index_entry_is_named() {
    let d = data_dir();
    let seg = segments(&d.topic)[0].clone();
    let idx = seg.with_extension("index");
    let mut bytes = std::fs::read(&idx).unwrap();
    // Second entry: move its position one byte on, off the batch boundary.
    let at = 32 + 8 + 4;
    let pos = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    bytes[at..at + 4].copy_from_slice(&(pos + 1).to_le_bytes());
    std::fs::write(&idx, bytes).unwrap();
    let errs = errors(&d.topic);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].file, idx);
    assert_eq!(errs[0].position, Some(40));
    assert!(
        errs[0].what.contains("not a batch boundary"),
        "{}",
        errs[0].what
    );
}

#[test]
fn index_past_a_cut_log_is_stale() {
    let d = data_dir();
    let seg = segments(&d.topic)[0].clone();
    let bs = batches(&seg);
    // Cut the log after its first batch: later index entries point past its end.
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(bs[1].position).unwrap();
    let errs = errors(&d.topic);
    let idx = seg.with_extension("index");
    assert!(
        errs.iter()
            .any(|p| p.file == idx && p.what.contains("past the end")),
        "{errs:?}"
    );
    // And the next segment no longer follows on.
    assert!(errs
        .iter()
        .any(|p| p.file == segments(&d.topic)[1] && p.what.contains("previous one ends")));
}

#[test]
fn garbage_index_header_is_named() {
    let d = data_dir();
    let idx = segments(&d.topic)[1].with_extension("timeindex");
    std::fs::write(&idx, b"this is not an index file at all, not at all").unwrap();
    let errs = errors(&d.topic);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].file, idx);
    assert_eq!(errs[0].position, Some(0));
}

#[test]
fn garbage_recovery_point_is_named() {
    let d = data_dir();
    let rp = d.topic.join(RECOVERY_POINT_FILE);
    std::fs::write(&rp, [0x5au8; 56]).unwrap();
    let errs = errors(&d.root);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].file, rp);
    assert_eq!(errs[0].position, Some(0));
    assert!(
        errs[0].what.contains("checksum mismatch"),
        "{}",
        errs[0].what
    );
    // Given alone, the same file fails the same way.
    assert_eq!(errors(&rp).len(), 1);
}

#[test]
fn unknown_and_temporary_files_are_reported_not_failed() {
    let d = data_dir();
    std::fs::write(d.queue.join("acks.state"), b"opaque").unwrap();
    std::fs::write(d.queue.join("recovery-point.tmp"), b"x").unwrap();
    let v = inspect::verify(&StdFs, &d.root).unwrap();
    assert!(v.ok());
    assert!(v
        .problems
        .iter()
        .any(|p| p.severity == Severity::Warning && p.file.ends_with("recovery-point.tmp")));
    let r = inspect::inspect_path(&StdFs, &d.queue, &InspectOptions::default()).unwrap();
    let dir = r
        .items
        .iter()
        .find_map(|i| match i {
            Item::LogDir(d) => Some(d),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        dir.unknown_files,
        vec![inspect::UnknownFile {
            name: "acks.state".into(),
            size_bytes: 6
        }]
    );
}

#[test]
fn a_held_lock_is_noted_and_blocks_repair() {
    let d = data_dir();
    let lock_path = d.root.join(inspect::LOCK_FILE);
    std::fs::write(&lock_path, b"").unwrap();
    assert!(matches!(
        inspect::lock_status(&d.topic),
        inspect::LockStatus::Free(_)
    ));
    let held = std::fs::File::open(&lock_path).unwrap();
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a descriptor this test owns.
        let rc = unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0);
    }
    assert!(matches!(
        inspect::lock_status(&segments(&d.topic)[0]),
        inspect::LockStatus::Held(_)
    ));
    let r = inspect::inspect_path(&StdFs, &d.root, &InspectOptions::default()).unwrap();
    assert!(r.summary.locked);
    assert!(matches!(&r.items[0], Item::Note { message } if message.contains("running broker")));
    assert!(inspect::lock_for_repair(&d.root).is_err());
    let plan = inspect::plan_repair(&StdFs, &d.root, 1).unwrap();
    assert!(inspect::apply_repair(&StdFs, &plan).is_err());
    drop(held);
    assert!(inspect::lock_for_repair(&d.root).is_ok());
}

#[test]
fn payload_flip_is_invisible_to_no_other_byte() {
    // Sanity of the damage helper: a flip inside a header's CRC-covered bytes is a header
    // problem, a flip past the header is a records problem.
    let d = data_dir();
    let seg = segments(&d.queue)[0].clone();
    let b = batches(&seg)[0].clone();
    flip(&seg, b.position + BATCH_HEADER_LEN as u64 + 1);
    let errs = errors(&seg);
    assert!(errs[0].what.contains("records checksum"));
}

/// A file system that fails the test on any call that could change something.
#[derive(Debug)]
struct ReadOnlyFs;

impl sluice_storage::FileSystem for ReadOnlyFs {
    fn open(
        &self,
        path: &Path,
        mode: sluice_storage::fs::OpenMode,
    ) -> std::io::Result<sluice_storage::fs::FileRef> {
        assert_eq!(
            mode,
            sluice_storage::fs::OpenMode::Read,
            "{} opened for writing",
            path.display()
        );
        StdFs.open(path, mode)
    }
    fn open_direct(&self, path: &Path) -> std::io::Result<sluice_storage::fs::FileRef> {
        panic!("open_direct({})", path.display())
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        panic!("create_dir_all({})", path.display())
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<String>> {
        StdFs.read_dir(path)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        panic!("remove_file({})", path.display())
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        panic!("remove_dir_all({})", path.display())
    }
    fn rename(&self, from: &Path, _to: &Path) -> std::io::Result<()> {
        panic!("rename({})", from.display())
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        panic!("sync_dir({})", path.display())
    }
    fn exists(&self, path: &Path) -> bool {
        StdFs.exists(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        StdFs.is_dir(path)
    }
}

#[test]
fn inspection_and_planning_only_read() {
    let d = data_dir();
    let seg = segments(&d.topic)[1].clone();
    let b = batches(&seg)[1].clone();
    flip(&seg, b.position + 60);
    std::fs::write(d.queue.join(RECOVERY_POINT_FILE), b"junk").unwrap();
    std::fs::write(d.queue.join("recovery-point.tmp"), b"x").unwrap();
    let opts = InspectOptions {
        payloads: true,
        index_entries: true,
        ..InspectOptions::default()
    };
    let r = inspect::inspect_path(&ReadOnlyFs, &d.root, &opts).unwrap();
    assert!(r.summary.errors >= 2);
    for f in std::fs::read_dir(&d.topic).unwrap() {
        let p = f.unwrap().path();
        inspect::inspect_path(&ReadOnlyFs, &p, &opts).unwrap();
    }
    let plan = inspect::plan_repair(&ReadOnlyFs, &d.root, 3).unwrap();
    assert_eq!(plan.dirs.len(), 2);
}
