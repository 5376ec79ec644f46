//! Directories the engine creates survive a power loss: every new directory's entry is fsynced
//! in the directory holding it, whatever the depth and for bare relative paths.

use std::path::Path;
use std::sync::Arc;

use sluice_storage::fs::sim::{CrashMode, SimFs};
use sluice_storage::{Log, LogConfig, Offset, Record, StartAt, Store, StoreConfig};

#[test]
fn a_store_at_a_bare_relative_path_opens_and_survives_a_crash() {
    let fs = SimFs::new();
    let store = Store::open(Arc::new(fs.clone()), "data", StoreConfig::default()).unwrap();
    let t = store.create_topic("orders", None).unwrap();
    t.publish(&[Record::from_value("one")]).unwrap();
    drop(t);
    drop(store);
    fs.crash(CrashMode::DropUnsynced);
    let store = Store::open(Arc::new(fs.clone()), "data", StoreConfig::default()).unwrap();
    let t = store.topic("orders").expect("the topic survives");
    let from = t.resolve(0, StartAt::Earliest).unwrap();
    let got = t.log().read_records(from, 10, 1 << 20).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.value, b"one");
}

#[test]
fn a_log_in_new_nested_directories_survives_a_crash() {
    let fs = SimFs::new();
    let dir = Path::new("/srv/a/b/c/log");
    let log = Log::open(Arc::new(fs.clone()), dir, LogConfig::default()).unwrap();
    log.append(&[Record::from_value("kept")]).unwrap();
    drop(log);
    fs.crash(CrashMode::DropUnsynced);
    let log = Log::open(Arc::new(fs.clone()), dir, LogConfig::default()).unwrap();
    let got = log.read_records(Offset(0), 10, 1 << 20).unwrap();
    assert_eq!(got.len(), 1, "the confirmed record survives");
}
