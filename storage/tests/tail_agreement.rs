//! Recovery, `inspect --verify` and `repair` classify the tail of a segment the same way: the
//! three walk batches with the one scanner (`format::scan`), so where recovery cuts, inspect
//! reports the first error, and repair plans its truncation, for every kind of tail.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_storage::format::{self, BATCH_HEADER_LEN};
use sluice_storage::inspect::{self, RepairAction, Severity};
use sluice_storage::{Log, LogConfig, Offset, Record, StdFs};

fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// A log of one segment with `n` batches, closed cleanly and then stripped of its checkpoints
/// (so recovery scans the whole segment, as after a crash). Returns the segment and its length.
fn build(dir: &Path, n: u64) -> (PathBuf, u64) {
    let log = Log::open(Arc::new(StdFs), dir, config()).unwrap();
    for i in 0..n {
        log.append(&[Record::from_value(format!("value {i}"))])
            .unwrap();
    }
    log.close().unwrap();
    for f in ["clean-shutdown", "recovery-point"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let seg = dir.join("00000000000000000000.log");
    let len = std::fs::metadata(&seg).unwrap().len();
    (seg, len)
}

/// A valid batch of one record at `offset`.
fn batch_at(offset: u64) -> Vec<u8> {
    let mut b = format::encode_batch(&[Record::from_value("tail record")], 1_700_000_000_000);
    format::set_base_offset(&mut b, Offset(offset));
    b
}

/// How one tool classified the tail: where the valid bytes end, and whether that is damage.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    valid_end: u64,
    damage: bool,
}

fn recovery(dir: &Path, seg: &Path) -> Verdict {
    let copy = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, copy.path().join(p.file_name().unwrap())).unwrap();
    }
    let (log, report) = Log::open_with_report(Arc::new(StdFs), copy.path(), config()).unwrap();
    let len = std::fs::metadata(copy.path().join(seg.file_name().unwrap()))
        .unwrap()
        .len();
    log.close().unwrap();
    Verdict {
        valid_end: len,
        damage: report.truncated_bytes > 0,
    }
}

fn inspect_verdict(dir: &Path, seg: &Path, file_len: u64) -> Verdict {
    let v = inspect::verify(&StdFs, dir).unwrap();
    let first = v
        .problems
        .iter()
        .find(|p| p.file == seg && p.severity == Severity::Error);
    match first {
        Some(p) => Verdict {
            valid_end: p.position.unwrap(),
            damage: true,
        },
        None => {
            // A clean end: the valid bytes end where a warning (padding) starts, or at the end.
            let warn = v.problems.iter().find(|p| p.file == seg);
            Verdict {
                valid_end: warn.and_then(|p| p.position).unwrap_or(file_len),
                damage: false,
            }
        }
    }
}

fn repair_verdict(dir: &Path, file_len: u64, padding_end: Option<u64>) -> Verdict {
    let plan = inspect::plan_repair(&StdFs, dir, 1).unwrap();
    let cut = plan
        .dirs
        .iter()
        .flat_map(|d| &d.actions)
        .find_map(|a| match a {
            RepairAction::Truncate { position, .. } => Some(*position),
            _ => None,
        });
    match cut {
        Some(position) => Verdict {
            valid_end: position,
            damage: true,
        },
        // Repair leaves a clean end alone: padding is cut by the next open, like recovery does.
        None => Verdict {
            valid_end: padding_end.unwrap_or(file_len),
            damage: false,
        },
    }
}

/// Appends `tail` to a fresh segment and checks that the three tools agree with `expected`.
fn check(name: &str, tail: impl Fn(u64) -> Vec<u8>, expected_damage: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (seg, end) = build(&dir, 5);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&tail(end));
    std::fs::write(&seg, &bytes).unwrap();
    let file_len = bytes.len() as u64;
    let expected = Verdict {
        valid_end: end,
        damage: expected_damage,
    };
    let padding_end = (!expected_damage).then_some(end);
    assert_eq!(recovery(&dir, &seg), expected, "{name}: recovery");
    assert_eq!(
        inspect_verdict(&dir, &seg, file_len),
        expected,
        "{name}: inspect"
    );
    assert_eq!(
        repair_verdict(&dir, file_len, padding_end),
        expected,
        "{name}: repair"
    );
}

/// Zeros from `end` up to the next block boundary (at least one byte of them).
fn zeros_to_block(end: u64) -> Vec<u8> {
    let to = (end / 4096 + 1) * 4096;
    vec![0u8; (to - end) as usize]
}

#[test]
fn recovery_inspect_and_repair_agree_on_every_kind_of_segment_tail() {
    // (a) Block padding of direct writes: zeros to a block boundary, a clean end everywhere.
    check("zero padding to a block boundary", zeros_to_block, false);
    // (a') A short run of zeros that does not end at a block boundary: not padding, a torn write.
    check("short zeros off a block boundary", |_| vec![0u8; 17], true);
    // (b) Zeros, then garbage up to a block boundary: damage.
    check(
        "zeros then garbage",
        |end| {
            let mut t = zeros_to_block(end);
            let n = t.len();
            for b in &mut t[n.saturating_sub(100)..] {
                *b = 0xAB;
            }
            t
        },
        true,
    );
    // (c) The first half of a batch: a torn write.
    check(
        "torn half batch",
        |_| {
            let b = batch_at(5);
            b[..b.len() / 2].to_vec()
        },
        true,
    );
    // (c') Only part of a batch header.
    check(
        "torn header",
        |_| batch_at(5)[..BATCH_HEADER_LEN / 2].to_vec(),
        true,
    );
    // (d) A whole batch whose records checksum does not match.
    check(
        "bad records checksum",
        |_| {
            let mut b = batch_at(5);
            let last = b.len() - 1;
            b[last] ^= 0x40;
            b
        },
        true,
    );
    // A batch out of offset order.
    check("offset gap", |_| batch_at(9), true);
}
