//! Group commit: concurrent appends under `always` get unique, dense offsets, all readable, and
//! share fsyncs (fewer syncs than appends).

mod common;

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sluice_storage::fs::sim::{OpKind, SimFs};
use sluice_storage::fs::{File, FileRef, FileSystem, Mapped, OpenMode};
use sluice_storage::{Log, Offset, Record};

/// SimFs whose data syncs take a little time, like a disk: writers arrive while one syncs.
#[derive(Debug)]
struct SlowSyncFs(SimFs);

#[derive(Debug)]
struct SlowSyncFile(FileRef);

impl File for SlowSyncFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.0.read_at(buf, position)
    }
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        self.0.write_all_at(buf, position)
    }
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        std::thread::sleep(Duration::from_millis(2));
        self.0.sync_data()
    }
    fn map(&self) -> io::Result<Mapped> {
        self.0.map()
    }
}

impl FileSystem for SlowSyncFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        Ok(Arc::new(SlowSyncFile(self.0.open(path, mode)?)))
    }
    fn open_direct(&self, path: &Path) -> io::Result<FileRef> {
        Ok(Arc::new(SlowSyncFile(self.0.open_direct(path)?)))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.0.read_dir(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.0.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.0.exists(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.0.is_dir(path)
    }
}

#[test]
fn concurrent_appends_share_fsyncs_and_get_dense_unique_offsets() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 40;
    let sim = SimFs::new();
    let log = Log::open(
        Arc::new(SlowSyncFs(sim.clone())),
        dir(),
        small_config(1 << 20),
    )
    .unwrap();
    let syncs_before = sim.count(OpKind::Sync);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| {
                        let r = record(t * 1000 + i);
                        let info = log.append(std::slice::from_ref(&r)).unwrap();
                        // Confirmed means durable and visible.
                        assert!(log.durable_end() > info.base_offset);
                        (info.base_offset, r)
                    })
                    .collect::<Vec<(Offset, Record)>>()
            })
        })
        .collect();
    let mut confirmed = BTreeMap::new();
    for h in handles {
        for (o, r) in h.join().unwrap() {
            assert!(confirmed.insert(o, r).is_none(), "offset {o} given twice");
        }
    }
    let appends = THREADS * PER_THREAD;
    assert_eq!(confirmed.len() as u64, appends);
    let all = read_all(&log);
    let expected: Vec<(Offset, Record)> = confirmed.into_iter().collect();
    assert_eq!(
        all, expected,
        "offsets dense from 0 and every record readable"
    );
    let syncs = sim.count(OpKind::Sync) - syncs_before;
    assert!(
        syncs < appends,
        "{syncs} syncs for {appends} concurrent appends: no sync was shared"
    );
    log.close().unwrap();
}

#[test]
fn failed_fsync_during_concurrent_appends_confirms_nothing_after_it() {
    use sluice_storage::fs::sim::{CrashMode, Fault, FaultError};
    use sluice_storage::Error;
    for nth in [3u64, 10, 25] {
        let sim = SimFs::new();
        let log = Log::open(
            Arc::new(SlowSyncFs(sim.clone())),
            dir(),
            small_config(1 << 20),
        )
        .unwrap();
        sim.add_fault(Fault {
            kind: OpKind::Sync,
            nth: sim.count(OpKind::Sync) + nth,
            forever: false,
            error: FaultError::Io,
        });
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut confirmed = Vec::new();
                    let mut failed = false;
                    // Append until the failure is seen (and a few times more): once an fsync
                    // failed, the log is fail-stop, so every thread meets it whatever the
                    // scheduling; the bound only stops a broken log from looping forever.
                    let mut after = 0;
                    for i in 0..5_000u64 {
                        let r = record(t * 10_000 + i);
                        match log.append(std::slice::from_ref(&r)) {
                            Ok(info) => {
                                assert!(!failed, "an append was confirmed after a failure");
                                confirmed.push((info.base_offset, r));
                            }
                            Err(Error::Io { .. }) | Err(Error::FailStop { .. }) => failed = true,
                            Err(e) => panic!("unexpected error {e}"),
                        }
                        if failed {
                            after += 1;
                            if after > 3 {
                                break;
                            }
                        }
                    }
                    assert!(failed, "thread {t} never saw the failure");
                    confirmed
                })
            })
            .collect();
        let mut confirmed: Vec<(Offset, Record)> = Vec::new();
        for h in handles {
            confirmed.extend(h.join().unwrap());
        }
        confirmed.sort_by_key(|c| c.0);
        assert!(log.has_failed());
        assert!(confirmed.iter().all(|(o, _)| *o < log.durable_end()));
        drop(log);
        sim.crash(CrashMode::DropUnsynced);
        let log = Log::open(Arc::new(sim.clone()), dir(), small_config(1 << 20)).unwrap();
        assert_contains(&log, &confirmed);
    }
}
