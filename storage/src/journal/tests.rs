//! Unit tests of the journal.

use super::*;
use crate::error::Error;
use crate::format::crc;
use crate::fs::sim::{CrashMode, SimFs};
use crate::fs::FsRef;
use std::path::Path;
use std::sync::Arc;

const M: [u8; 8] = *b"SLUICETJ";

fn rec(kind: u8, p: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_record(&mut v, kind, p);
    v
}

#[test]
fn records_roundtrip_and_stop_at_damage() {
    let mut b = rec(1, b"abc");
    b.extend(rec(2, b""));
    b.extend(rec(3, b"xyz"));
    let (r, n) = decode_records(&b);
    assert_eq!(r.len(), 3);
    assert_eq!(n, b.len());
    // Flip a byte of the second record's length: decoding stops after the first.
    let mut d = b.clone();
    d[12] ^= 0x40;
    let (r, n) = decode_records(&d);
    assert_eq!(r, vec![(1, b"abc".to_vec())]);
    assert_eq!(n, 12);
    // A short tail is ignored.
    let (r, _) = decode_records(&b[..b.len() - 1]);
    assert_eq!(r.len(), 2);
    // Damage before valid records is told apart from a torn tail.
    assert!(valid_record_after(&d[12..]));
    assert!(!valid_record_after(&b[..b.len() - 1][12..]));
    assert!(!valid_record_after(&[0u8; 100]));
}

#[test]
fn journal_survives_crash_and_snapshots_switch_generation() {
    let sim = SimFs::new();
    let fs: FsRef = Arc::new(sim.clone());
    let dir = Path::new("/s");
    fs.create_dir_all(dir).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let (j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    assert!(l.snapshot.is_none() && l.records.is_empty());
    let p = j.append(&rec(1, b"one")).unwrap();
    j.sync_to(p).unwrap();
    j.append(&rec(1, b"lost")).unwrap();
    sim.crash(CrashMode::DropUnsynced);
    let (j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    assert_eq!(l.records, vec![(1, b"one".to_vec())]);
    j.append(&rec(1, b"two")).unwrap();
    j.snapshot(b"state").unwrap();
    let p = j.append(&rec(1, b"three")).unwrap();
    j.sync_to(p).unwrap();
    sim.crash(CrashMode::DropUnsynced);
    let (_j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    assert_eq!(l.snapshot.as_deref(), Some(&b"state"[..]));
    assert_eq!(l.generation, 1);
    assert_eq!(l.records, vec![(1, b"three".to_vec())]);
    let names = fs.read_dir(dir).unwrap();
    assert_eq!(names.iter().filter(|n| n.ends_with(".journal")).count(), 1);
}

/// A header that does not decode is recreated only when it never became durable; a future
/// version, a foreign magic or bit rot before records refuses the open and keeps the file.
#[test]
fn a_damaged_or_future_header_refuses_the_open_instead_of_dropping_records() {
    let sim = SimFs::new();
    let fs: FsRef = Arc::new(sim.clone());
    let dir = Path::new("/s");
    fs.create_dir_all(dir).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let (j, _) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    j.sync_to(j.append(&rec(1, b"ack 7")).unwrap()).unwrap();
    drop(j);
    let jp = journal_path(dir, "t", 0);
    let good = sim.read_file(&jp).unwrap();
    let future = {
        let mut h = good.clone();
        h[8..10].copy_from_slice(&(STATE_VERSION + 1).to_le_bytes());
        let c = crc(&h[..20]);
        h[20..24].copy_from_slice(&c.to_le_bytes());
        h
    };
    let foreign = {
        let mut h = good.clone();
        h[..8].copy_from_slice(b"SLUICEXX");
        let c = crc(&h[..20]);
        h[20..24].copy_from_slice(&c.to_le_bytes());
        h
    };
    let rotten = {
        let mut h = good.clone();
        h[13] ^= 0x10;
        h
    };
    for (what, bytes) in [("future", future), ("foreign", foreign), ("rotten", rotten)] {
        sim.write_file(&jp, &bytes).unwrap();
        let err = Journal::open(fs.clone(), dir, "t", M).err();
        assert!(
            matches!(err, Some(Error::Corruption { .. })),
            "{what}: {err:?}"
        );
        assert_eq!(sim.read_file(&jp).unwrap(), bytes, "{what}: file kept");
    }
    // A torn creation (bad header, only zeros after it) is recreated empty.
    let mut torn = vec![0u8; 4096];
    torn[..10].copy_from_slice(&good[..10]);
    sim.write_file(&jp, &torn).unwrap();
    let (_j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    assert!(l.records.is_empty());
    // And the intact file opens with its record.
    sim.write_file(&jp, &good).unwrap();
    let (_j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    assert_eq!(l.records, vec![(1, b"ack 7".to_vec())]);
}

/// No descriptor for a snapshot's new journal file: the snapshot is refused, the journal is
/// not stopped, and it goes on in its generation (EMFILE is not a failed sync).
#[test]
fn no_descriptor_for_a_snapshot_postpones_it_without_stopping_the_journal() {
    use crate::fs::sim::{Fault, FaultError, OpKind};
    let sim = SimFs::new();
    let fs: FsRef = Arc::new(sim.clone());
    let dir = Path::new("/s");
    fs.create_dir_all(dir).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let (j, _) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    j.sync_to(j.append(&rec(1, b"one")).unwrap()).unwrap();
    for kind in [OpKind::Create, OpKind::SyncDir] {
        sim.add_fault(Fault {
            kind,
            nth: sim.count(kind) + 1,
            forever: false,
            error: FaultError::TooManyFiles,
        });
        let err = j.snapshot(b"state").unwrap_err();
        assert!(err.is_fd_exhausted(), "{kind:?}: {err}");
        j.check().unwrap();
    }
    j.sync_to(j.append(&rec(1, b"two")).unwrap()).unwrap();
    sim.crash(CrashMode::DropUnsynced);
    let (j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    assert_eq!(l.generation, 0);
    assert_eq!(l.records, vec![(1, b"one".to_vec()), (1, b"two".to_vec())]);
    j.snapshot(b"state").unwrap();
}

#[test]
fn a_full_disk_while_making_room_fails_only_that_append() {
    use crate::fs::sim::{Fault, FaultError, OpKind};
    let sim = SimFs::new();
    let fs: FsRef = Arc::new(sim.clone());
    let dir = Path::new("/s");
    fs.create_dir_all(dir).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let (j, _) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    j.sync_to(j.append(&rec(1, b"one")).unwrap()).unwrap();
    // The next append needs more room than the first run of zeros left.
    let big = vec![7u8; PREALLOC_BYTES_MIN as usize];
    sim.add_fault(Fault {
        kind: OpKind::Write,
        nth: sim.count(OpKind::Write) + 1,
        forever: false,
        error: FaultError::NoSpace,
    });
    let e = j.append(&rec(2, &big)).unwrap_err();
    assert!(e.is_disk_full(), "{e}");
    // Nothing of the record was written: the journal goes on, the record after lands
    // right behind the first.
    j.check().unwrap();
    j.sync_to(j.append(&rec(1, b"two")).unwrap()).unwrap();
    drop(j);
    sim.crash(CrashMode::DropUnsynced);
    let (_j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    assert_eq!(l.records, vec![(1, b"one".to_vec()), (1, b"two".to_vec())]);
}

#[test]
fn zeros_ahead_of_the_records_are_room_not_a_torn_tail() {
    let sim = SimFs::new();
    let fs: FsRef = Arc::new(sim.clone());
    let dir = Path::new("/s");
    fs.create_dir_all(dir).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let jp = journal_path(dir, "t", 0);
    let (j, _) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    let one = rec(1, b"one");
    j.sync_to(j.append(&one).unwrap()).unwrap();
    let records_end = (JOURNAL_HEADER_LEN + one.len()) as u64;
    let file_len = sim.read_file(&jp).unwrap().len() as u64;
    assert_eq!(
        file_len,
        records_end + PREALLOC_BYTES_MIN,
        "room was written ahead"
    );
    // Reopened: no cut, and the next record goes right after the last one.
    drop(j);
    let l = load(&*fs, dir, "t", M).unwrap();
    assert_eq!(
        (l.valid_len, l.zeroed_len, l.torn_len()),
        (records_end, PREALLOC_BYTES_MIN, 0)
    );
    let (j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    assert_eq!(l.records.len(), 1);
    assert_eq!(
        sim.read_file(&jp).unwrap().len() as u64,
        file_len,
        "nothing was cut"
    );
    j.sync_to(j.append(&rec(1, b"two")).unwrap()).unwrap();
    // Past the room, the file grows by a run as long as itself (up to the largest run).
    let big = vec![7u8; PREALLOC_BYTES_MIN as usize];
    j.sync_to(j.append(&rec(2, &big)).unwrap()).unwrap();
    let grown = sim.read_file(&jp).unwrap().len() as u64;
    assert!(grown >= 2 * file_len, "{grown} after {file_len}");
    drop(j);
    let (j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    assert_eq!(
        l.records.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![1, 1, 2]
    );
    // Half a record over the zeros is a torn tail: cut at the open, zeros and all.
    let p = j.append(&rec(1, b"three")).unwrap();
    j.sync_to(p).unwrap();
    drop(j);
    let mut b = sim.read_file(&jp).unwrap();
    let l = load(&*fs, dir, "t", M).unwrap();
    let end = l.valid_len as usize;
    b[end..end + 6].copy_from_slice(&rec(1, b"four")[..6]);
    sim.write_file(&jp, &b).unwrap();
    let l = load(&*fs, dir, "t", M).unwrap();
    assert_eq!(
        (l.zeroed_len, l.torn_len()),
        (0, b.len() as u64 - end as u64)
    );
    let (_j, l) = Journal::open(fs.clone(), dir, "t", M).unwrap();
    assert_eq!(l.records.len(), 4);
    assert_eq!(
        sim.read_file(&jp).unwrap().len(),
        end,
        "the torn tail was cut"
    );
}
