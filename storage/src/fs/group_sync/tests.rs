//! Rounds of [`GroupSync`] with files whose syncs are slow enough for others to join.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::super::{File, FileRef, Mapped, SyncAll};
use super::{GroupSync, SyncStats};

/// A file that counts its syncs and takes `delay` for each; fails them while `fail` is set.
#[derive(Debug, Default)]
struct SlowFile {
    syncs: AtomicU64,
    delay_ms: u64,
    fail: AtomicBool,
}

impl File for SlowFile {
    fn read_at(&self, _: &mut [u8], _: u64) -> std::io::Result<usize> {
        Ok(0)
    }
    fn write_all_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(0)
    }
    fn set_len(&self, _: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn sync_data(&self) -> std::io::Result<()> {
        std::thread::sleep(Duration::from_millis(self.delay_ms));
        self.syncs.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
    fn map(&self) -> std::io::Result<Mapped> {
        Ok(Mapped::Owned(Vec::new()))
    }
}

/// A whole-file-system sync that counts calls and fails while `fail` is set.
#[derive(Debug, Default)]
struct CountingAll {
    calls: Arc<AtomicU64>,
    fail: Arc<AtomicBool>,
}

impl SyncAll for CountingAll {
    fn sync_all(&self) -> std::io::Result<()> {
        std::thread::sleep(Duration::from_millis(5));
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

fn slow(delay_ms: u64) -> Arc<SlowFile> {
    Arc::new(SlowFile {
        delay_ms,
        ..Default::default()
    })
}

/// One thread per file, each syncing its file `times` times, all started together; which of
/// each thread's syncs failed.
fn run_together(group: &Arc<GroupSync>, files: &[Arc<SlowFile>], times: usize) -> Vec<Vec<bool>> {
    let barrier = Arc::new(Barrier::new(files.len()));
    let handles: Vec<_> = files
        .iter()
        .map(|f| {
            let (group, barrier) = (group.clone(), barrier.clone());
            let file: FileRef = f.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..times)
                    .map(|_| group.sync(&file).is_err())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Like [`run_together`], every sync succeeding.
fn sync_together(group: &Arc<GroupSync>, files: &[Arc<SlowFile>], times: usize) {
    let failed = run_together(group, files, times);
    assert!(failed.iter().flatten().all(|f| !f), "{failed:?}");
}

#[test]
fn a_lone_file_is_synced_on_its_own() {
    let all = CountingAll::default();
    let calls = all.calls.clone();
    let group = GroupSync::new(Some(Box::new(all)));
    let f = slow(0);
    let file: FileRef = f.clone();
    for _ in 0..3 {
        group.sync(&file).unwrap();
    }
    assert_eq!(f.syncs.load(Ordering::SeqCst), 3);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no sync of the file system"
    );
    let s = group.stats();
    assert_eq!((s.rounds, s.requests, s.file_system_syncs), (3, 3, 0));
    assert_eq!(s.round_files_buckets[0], 3, "three rounds of one request");
    assert_eq!(s.round_us_buckets.iter().sum::<u64>(), 3);
}

#[test]
fn files_syncing_together_share_syncs_of_the_file_system() {
    let all = CountingAll::default();
    let calls = all.calls.clone();
    let group = Arc::new(GroupSync::new(Some(Box::new(all))));
    let files: Vec<_> = (0..16).map(|_| slow(10)).collect();
    sync_together(&group, &files, 5);
    let s: SyncStats = group.stats();
    assert_eq!(s.requests, 80);
    let per_file: u64 = files.iter().map(|f| f.syncs.load(Ordering::SeqCst)).sum();
    assert_eq!(s.rounds, per_file + calls.load(Ordering::SeqCst));
    assert!(s.file_system_syncs > 0, "{s:?}");
    assert_eq!(s.round_files_buckets.iter().sum::<u64>(), s.rounds);
    assert!(s.round_files_buckets[1..].iter().sum::<u64>() > 0, "{s:?}");
    assert!(
        s.rounds < 40,
        "80 syncs of 16 files joined in fewer rounds: {s:?}"
    );
}

#[test]
fn without_a_file_system_sync_each_file_of_a_round_is_synced() {
    let group = Arc::new(GroupSync::new(None));
    let files: Vec<_> = (0..8).map(|_| slow(5)).collect();
    sync_together(&group, &files, 4);
    for f in &files {
        assert_eq!(
            f.syncs.load(Ordering::SeqCst),
            4,
            "each request synced its file"
        );
    }
    assert_eq!(group.stats().file_system_syncs, 0);
}

#[test]
fn a_failed_file_sync_fails_that_file_and_not_the_next_round() {
    let group = GroupSync::new(Some(Box::new(CountingAll::default())));
    let f = slow(0);
    let file: FileRef = f.clone();
    f.fail.store(true, Ordering::SeqCst);
    let e = group.sync(&file).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    f.fail.store(false, Ordering::SeqCst);
    group
        .sync(&file)
        .expect("the log that failed stops itself; the group goes on");
}

#[test]
fn a_failed_file_system_sync_fails_every_later_sync() {
    let all = CountingAll::default();
    let (calls, fail) = (all.calls.clone(), all.fail.clone());
    let group = Arc::new(GroupSync::new(Some(Box::new(all))));
    fail.store(true, Ordering::SeqCst);
    // Rounds of many files until one went through the file system and failed.
    let files: Vec<_> = (0..8).map(|_| slow(10)).collect();
    let results = run_together(&group, &files, 5);
    assert!(
        calls.load(Ordering::SeqCst) >= 1,
        "a round of many files ran"
    );
    fail.store(false, Ordering::SeqCst);
    // Once a sync failed, every later one of every file fails.
    for r in &results {
        if let Some(first) = r.iter().position(|e| *e) {
            assert!(r[first..].iter().all(|e| *e), "{results:?}");
        }
    }
    let after = calls.load(Ordering::SeqCst);
    let lone: FileRef = slow(0);
    let e = group.sync(&lone).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        after,
        "nothing synced after the failure"
    );
}
