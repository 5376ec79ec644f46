//! Entries of several batches: written, found, read back, and a torn last one dropped.

use std::sync::Arc;

use bytes::Bytes;
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use sluice_storage::format::{encode_batch, set_raft_stamp, RaftStamp};
use sluice_storage::{FsRef, Log, LogConfig, Offset, Record, StdFs};

use super::entry::{self, Entry};
use super::Replica;
use crate::types::Command;

/// A batch of `records` one-byte-tagged records.
fn batch(tag: u8, records: usize) -> Vec<u8> {
    let rs: Vec<Record> = (0..records)
        .map(|i| Record::from_value(vec![tag, i as u8]))
        .collect();
    encode_batch(&rs, 1)
}

/// Entry `index` of batches holding `records[i]` records each.
fn entry_of(index: u64, records: &[usize]) -> Entry {
    let mut bytes = Vec::new();
    for (i, n) in records.iter().enumerate() {
        bytes.extend_from_slice(&batch(index as u8 * 16 + i as u8, *n));
    }
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(2, 0), index),
        payload: EntryPayload::Normal(Command::Batch(Bytes::from(bytes))),
    }
}

/// The record counts of the batches of an entry.
fn shape(e: &Entry) -> Vec<u32> {
    let EntryPayload::Normal(Command::Batch(b)) = &e.payload else {
        panic!("not a message entry: {e:?}");
    };
    entry::split_batches(b)
        .unwrap()
        .iter()
        .map(|x| {
            sluice_storage::format::decode_batch_header(x, u32::MAX)
                .unwrap()
                .record_count
        })
        .collect()
}

const SHAPES: [&[usize]; 5] = [&[1], &[3, 1, 2], &[2, 2], &[1], &[4, 1, 1, 1]];

fn open(dir: &std::path::Path) -> Arc<Replica> {
    let fs: FsRef = Arc::new(StdFs);
    Replica::open(fs, dir, LogConfig::default()).unwrap()
}

#[test]
fn entries_of_several_batches_read_back_whole_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Entry> = SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| entry_of(i as u64 + 1, s))
        .collect();
    {
        let r = open(dir.path());
        r.append_entries(&entries).unwrap();
        let back = r.entries(1, None, None).unwrap();
        assert_eq!(
            back.iter().map(shape).collect::<Vec<_>>(),
            [
                vec![1],
                vec![3, 1, 2],
                vec![2, 2],
                vec![1],
                vec![4, 1, 1, 1]
            ]
        );
    }
    // Reopened: nothing in memory, every entry is found by searching the log.
    let r = open(dir.path());
    let mut base = 0;
    for (i, s) in SHAPES.iter().enumerate() {
        let p = r.locator.find(i as u64 + 1).unwrap().unwrap();
        let records: usize = s.iter().sum();
        assert_eq!(
            (p.base, p.next),
            (Offset(base), Offset(base + records as u64))
        );
        base += records as u64;
    }
    assert_eq!(r.locator.find(6).unwrap(), None);
    assert_eq!(r.locator.last().unwrap().unwrap().index, 5);
    let middle = r.entries(2, Some(4), None).unwrap();
    assert_eq!(
        middle.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(shape(&middle[0]), [3, 1, 2]);
    // A budget of one byte still answers one whole entry.
    let one = r.entries(2, None, Some(1)).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(shape(&one[0]), [3, 1, 2]);
}

#[test]
fn a_torn_last_entry_is_dropped_when_the_log_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let r = open(dir.path());
        r.append_entries(&[entry_of(1, &[2, 1]), entry_of(2, &[1])])
            .unwrap();
        // Entry 3 of three batches, of which only the first two reached the log.
        for (i, more) in [(0u8, 2u16), (1, 1)] {
            let mut b = batch(0x30 + i, 2);
            let stamp = RaftStamp {
                term: 2,
                index: 3,
                more,
            };
            set_raft_stamp(&mut b, stamp).unwrap();
            let info = r.log.append_replicated(b).unwrap();
            r.log.sync_to(info.next_offset()).unwrap();
        }
        assert_eq!(r.log.end_offset(), Offset(8));
    }
    let r = open(dir.path());
    assert_eq!(r.log.end_offset(), Offset(4), "the torn entry is gone");
    let last = r.locator.last().unwrap().unwrap();
    assert_eq!((last.index, last.next), (2, Offset(4)));
    assert_eq!(r.entries(1, None, None).unwrap().len(), 2);
}

#[test]
fn a_batch_that_does_not_continue_its_entry_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        Arc::new(StdFs),
        dir.path().join("log"),
        LogConfig::default(),
    )
    .unwrap();
    // Entry 1 claims one more batch, but the next batch is entry 2.
    for (index, more) in [(1, 1), (2, 0)] {
        let mut b = batch(index as u8, 1);
        let stamp = RaftStamp {
            term: 1,
            index,
            more,
        };
        set_raft_stamp(&mut b, stamp).unwrap();
        let info = log.append_replicated(b).unwrap();
        log.sync_to(info.next_offset()).unwrap();
    }
    let r = Replica::attach(Arc::new(StdFs), dir.path(), log).unwrap();
    assert!(r.entries(1, None, None).is_err());
}

/// A small xorshift generator: the crash test's choices, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Entries of 1-4 batches appended on a simulated disk that loses power part way through the
/// next entry. A power loss tears a large write at a block boundary; here each batch of the
/// interrupted entry reaches the disk on its own (a sync after each), and the crash lands at a
/// random file system call among them, so any number of its batches may survive. Reopened, the
/// log holds every entry synced before, whole, and ends on an entry's last batch.
#[test]
fn a_crash_in_the_middle_of_an_entry_never_leaves_part_of_it() {
    use sluice_storage::fs::sim::{CrashMode, SimFs};
    use sluice_storage::FileSystem;
    let mut cut = 0;
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let fs = SimFs::new();
        let dir = std::path::Path::new("/g");
        let synced = {
            let r = Replica::open(Arc::new(fs.clone()), dir, LogConfig::default()).unwrap();
            for d in ["/", "/g"] {
                fs.sync_dir(std::path::Path::new(d)).unwrap();
            }
            let durable = 1 + rng.below(6);
            for index in 1..=durable {
                let shape: Vec<usize> = (0..1 + rng.below(4))
                    .map(|_| 1 + rng.below(3) as usize)
                    .collect();
                r.append_entries(&[entry_of(index, &shape)]).unwrap();
            }
            let parts = 2 + rng.below(3) as u16;
            fs.crash_after(rng.below(8 * u64::from(parts)));
            for i in 0..parts {
                let mut b = batch(i as u8, 2);
                let stamp = RaftStamp {
                    term: 2,
                    index: durable + 1,
                    more: parts - 1 - i,
                };
                set_raft_stamp(&mut b, stamp).unwrap();
                let Ok(info) = r.log.append_replicated(b) else {
                    break;
                };
                if r.log.sync_to(info.next_offset()).is_err() {
                    break;
                }
            }
            durable
        };
        fs.crash(CrashMode::DropUnsynced);
        let r = Replica::open(Arc::new(fs.clone()), dir, LogConfig::default())
            .unwrap_or_else(|e| panic!("seed {seed}: reopen: {e}"));
        let back = r.entries(1, None, None).unwrap();
        assert!(
            back.len() as u64 >= synced,
            "seed {seed}: {} entries after the crash, {synced} were synced",
            back.len()
        );
        if back.len() as u64 == synced {
            cut += 1;
        }
        for (i, e) in back.iter().enumerate() {
            assert_eq!(e.log_id.index, i as u64 + 1, "seed {seed}");
        }
        let last = r.locator.last().unwrap().unwrap();
        assert_eq!(last.index, back.len() as u64, "seed {seed}");
        assert_eq!(
            last.next,
            r.log.end_offset(),
            "seed {seed}: a partial entry remains"
        );
    }
    assert!(cut > 0, "no crash interrupted an entry");
}

#[test]
fn control_entries_read_back_as_what_they_were() {
    let id = LogId::new(CommittedLeaderId::new(3, 0), 9);
    let payloads = [
        EntryPayload::Blank,
        EntryPayload::Normal(Command::Control(Bytes::from_static(b"acks"))),
        EntryPayload::Normal(Command::Compact { upto: 7 }),
    ];
    for payload in payloads {
        let e = Entry {
            log_id: id,
            payload,
        };
        let batches = entry::to_batches(&e).unwrap();
        assert_eq!(batches.len(), 1);
        let header = sluice_storage::format::check_batch(&batches[0], u32::MAX).unwrap();
        assert!(header.is_control());
        let back = entry::from_batch(&sluice_storage::Batch {
            header,
            bytes: Bytes::from(batches[0].clone()),
        })
        .unwrap();
        assert_eq!(back.log_id, id);
        assert_eq!(format!("{:?}", back.payload), format!("{:?}", e.payload));
    }
}

/// The log ids and batch shapes of entries.
fn ids_and_shapes(entries: &[Entry]) -> Vec<(u64, Vec<u32>)> {
    entries.iter().map(|e| (e.log_id.index, shape(e))).collect()
}

#[tokio::test]
async fn the_last_entries_are_read_from_memory_and_forgotten_with_the_log() {
    use openraft::storage::{RaftLogReader, RaftLogStorage};
    let dir = tempfile::tempdir().unwrap();
    let r = open(dir.path());
    let entries: Vec<Entry> = SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| entry_of(i as u64 + 1, s))
        .collect();
    r.append_entries(&entries).unwrap();
    for (start, end) in [(1, 6), (2, 4), (5, 6)] {
        let kept = r.recent.get(start, end, None).unwrap();
        let disk = r.entries(start, Some(end), None).unwrap();
        assert_eq!(ids_and_shapes(&kept), ids_and_shapes(&disk));
    }
    assert!(
        r.recent.get(1, 7, None).is_none(),
        "entry 6 was never appended"
    );
    assert_eq!(r.recent.get(2, 6, Some(1)).unwrap().len(), 1, "a budget");

    let mut store = super::LogStore::open(r.clone()).unwrap();
    let id = |index| LogId::new(CommittedLeaderId::new(2, 0), index);
    store.truncate(id(4)).await.unwrap();
    assert!(
        r.recent.get(4, 5, None).is_none(),
        "truncated entries leave memory"
    );
    assert_eq!(r.recent.get(1, 4, None).unwrap().len(), 3);
    // Entry 4 again, another one: both memory and the reader give the new one.
    r.append_entries(&[entry_of(4, &[7])]).unwrap();
    assert_eq!(shape(&r.recent.get(4, 5, None).unwrap()[0]), [7]);
    let read = store.try_get_log_entries(1..5).await.unwrap();
    assert_eq!(
        ids_and_shapes(&read),
        [
            (1, vec![1]),
            (2, vec![3, 1, 2]),
            (3, vec![2, 2]),
            (4, vec![7])
        ]
    );

    store.purge(id(2)).await.unwrap();
    assert!(
        r.recent.get(2, 3, None).is_none(),
        "purged entries leave memory"
    );
    assert_eq!(r.recent.get(3, 5, None).unwrap().len(), 2);
    // A snapshot of a later entry than the log holds: the log starts over, and so does memory.
    assert!(r.continue_at(id(30), 1000).unwrap());
    assert!(
        r.recent.get(3, 5, None).is_none(),
        "a log started over keeps nothing"
    );
}

#[test]
fn a_replica_keeps_at_most_its_bound_of_last_entries() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(dir.path());
    let big = |index| Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
        payload: EntryPayload::Normal(Command::Control(Bytes::from(vec![0u8; 1 << 20]))),
    };
    let entries: Vec<Entry> = (1..=10).map(big).collect();
    r.recent.push(&entries);
    // Each entry is a little over 1 MiB: one fewer than the bound in MiB fit.
    let fit = (super::recent::RECENT_BYTES_MAX >> 20) as u64 - 1;
    assert!(
        r.recent.get(10 - fit, 11, None).is_none(),
        "the oldest went"
    );
    let kept = r.recent.get(11 - fit, 11, None).unwrap();
    assert_eq!(kept.len() as u64, fit);
    // An entry that does not continue the kept ones starts them over.
    r.recent.push(&[big(20)]);
    assert!(r.recent.get(10, 11, None).is_none());
    assert_eq!(r.recent.get(20, 21, None).unwrap().len(), 1);
}
