//! Unit tests of the simulated file system.

use super::*;

#[test]
fn crash_drops_unsynced_bytes_and_entries() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/d")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let f = fs.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
    f.write_all_at(b"hello", 0).unwrap();
    f.sync_data().unwrap();
    f.write_all_at(b" world", 5).unwrap();
    // The entry of "a" is not durable yet: a crash loses the file.
    fs.crash(CrashMode::DropUnsynced);
    assert!(!fs.exists(Path::new("/d/a")));
    assert!(f.len().is_err(), "old handles die with the crash");

    let f = fs.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
    f.write_all_at(b"hello", 0).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    f.write_all_at(b" world", 5).unwrap();
    fs.crash(CrashMode::DropUnsynced);
    assert_eq!(fs.read_file(Path::new("/d/a")).unwrap(), b"hello");
}

#[test]
fn faults_fail_the_nth_call_once_or_forever() {
    let fs = SimFs::new();
    let f = fs.open(Path::new("/a"), OpenMode::CreateNew).unwrap();
    fs.add_fault(Fault {
        kind: OpKind::Sync,
        nth: 2,
        forever: false,
        error: FaultError::Io,
    });
    assert!(f.sync_data().is_ok());
    assert!(f.sync_data().is_err());
    assert!(f.sync_data().is_ok());
    fs.add_fault(Fault {
        kind: OpKind::Write,
        nth: 1,
        forever: true,
        error: FaultError::NoSpace,
    });
    let e = f.write_all_at(b"x", 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    assert!(f.write_all_at(b"x", 0).is_err());
    fs.clear_faults();
    assert!(f.write_all_at(b"x", 0).is_ok());
}

#[test]
fn crash_after_stops_every_later_call() {
    let fs = SimFs::new();
    let f = fs.open(Path::new("/a"), OpenMode::CreateNew).unwrap();
    fs.crash_after(1);
    assert!(f.write_all_at(b"x", 0).is_ok());
    assert!(f.write_all_at(b"y", 1).is_err());
    assert!(fs.has_crashed());
}

#[test]
fn torn_tail_keeps_a_prefix_of_unsynced_appends() {
    for seed in 1..50 {
        let fs = SimFs::new();
        let f = fs.open(Path::new("/a"), OpenMode::CreateNew).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b"defgh", 3).unwrap();
        fs.crash(CrashMode::TornTail(seed));
        let got = fs.read_file(Path::new("/a")).unwrap();
        assert!(got.len() >= 3 && b"abcdefgh".starts_with(&got));
    }
}

fn file(fs: &SimFs, path: &str, bytes: &[u8]) {
    let f = fs.open(Path::new(path), OpenMode::CreateNew).unwrap();
    f.write_all_at(bytes, 0).unwrap();
    f.sync_data().unwrap();
}

#[test]
fn a_renamed_directory_keeps_its_tree_and_the_rename_is_durable_once_synced() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/p/a/sub")).unwrap();
    file(&fs, "/p/a/sub/x", b"x");
    for d in ["/", "/p", "/p/a", "/p/a/sub"] {
        fs.sync_dir(Path::new(d)).unwrap();
    }
    fs.rename(Path::new("/p/a"), Path::new("/p/b")).unwrap();
    assert_eq!(fs.read_file(Path::new("/p/b/sub/x")).unwrap(), b"x");
    assert!(!fs.exists(Path::new("/p/a")));
    // Not synced: a crash undoes the rename.
    fs.crash(CrashMode::DropUnsynced);
    assert_eq!(fs.read_file(Path::new("/p/a/sub/x")).unwrap(), b"x");
    fs.rename(Path::new("/p/a"), Path::new("/p/b")).unwrap();
    fs.sync_dir(Path::new("/p")).unwrap();
    fs.crash(CrashMode::DropUnsynced);
    assert!(!fs.exists(Path::new("/p/a")));
    assert_eq!(fs.read_file(Path::new("/p/b/sub/x")).unwrap(), b"x");
}

#[test]
fn remove_dir_all_is_one_removal_per_entry_and_a_crash_keeps_a_partial_tree() {
    let build = || {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d/sub")).unwrap();
        for i in 0..8 {
            file(&fs, &format!("/d/sub/{i}"), b"x");
        }
        file(&fs, "/d/config", b"c");
        for d in ["/", "/d", "/d/sub"] {
            fs.sync_dir(Path::new(d)).unwrap();
        }
        fs
    };
    let fs = build();
    let before = fs.count(OpKind::Remove);
    fs.remove_dir_all(Path::new("/d")).unwrap();
    // 8 files, sub, config and d itself.
    assert_eq!(fs.count(OpKind::Remove) - before, 11);
    assert!(!fs.exists(Path::new("/d")));
    fs.crash(CrashMode::DropUnsynced);
    assert!(
        !fs.exists(Path::new("/d")),
        "each removal is durable at once"
    );
    // Crashing after every prefix of the removals: some leave holes in the middle.
    let mut holes = false;
    for k in 1..11 {
        let fs = build();
        fs.crash_after(k);
        assert!(fs.remove_dir_all(Path::new("/d")).is_err());
        fs.crash(CrashMode::DropUnsynced);
        let left: Vec<String> = fs.read_dir(Path::new("/d/sub")).unwrap_or_default();
        let nums: Vec<u32> = left.iter().map(|n| n.parse().unwrap()).collect();
        if let (Some(lo), Some(hi)) = (nums.first(), nums.last()) {
            holes |= (hi - lo + 1) as usize != nums.len() || *hi != 7;
        }
    }
    assert!(holes, "the hash order removes entries out of name order");
}
