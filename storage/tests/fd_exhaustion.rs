//! Running out of file descriptors is not a failed fsync. A directory fsync first opens the
//! directory; when that open fails with EMFILE nothing was written or synced, so the log must
//! refuse only the request that needed the descriptor and go on once descriptors are free,
//! instead of stopping (fail-stop) until a restart.

use std::path::Path;
use std::sync::Arc;

use sluice_storage::fs::sim::{CrashMode, Fault, FaultError, OpKind, SimFs};
use sluice_storage::{Error, Log, LogConfig, Offset, Record};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 300,
        ..LogConfig::default()
    }
}

fn fail_next(sim: &SimFs, kind: OpKind, error: FaultError) {
    sim.add_fault(Fault {
        kind,
        nth: sim.count(kind) + 1,
        forever: false,
        error,
    });
}

#[test]
fn no_descriptor_for_a_roll_refuses_that_append_and_the_log_goes_on() {
    let sim = SimFs::new();
    let log = Log::open(Arc::new(sim.clone()), Path::new("/d/log"), config()).unwrap();
    log.append(&[Record::from_value(vec![1u8; 200])]).unwrap();
    // The next append rolls; the directory fsync of the new segment cannot get a descriptor.
    fail_next(&sim, OpKind::SyncDir, FaultError::TooManyFiles);
    let err = log
        .append(&[Record::from_value(vec![2u8; 200])])
        .unwrap_err();
    assert!(err.is_fd_exhausted(), "{err}");
    assert!(!log.has_failed(), "EMFILE is not a failed fsync");
    // Descriptors are free again: the same log takes the append, and everything is durable.
    let info = log.append(&[Record::from_value(vec![3u8; 200])]).unwrap();
    assert_eq!(info.base_offset, Offset(1));
    assert_eq!(log.segments().len(), 2);
    drop(log);
    sim.crash(CrashMode::DropUnsynced);
    let log = Log::open(Arc::new(sim.clone()), Path::new("/d/log"), config()).unwrap();
    let got: Vec<Vec<u8>> = log
        .read_records(Offset(0), 10, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.value)
        .collect();
    assert_eq!(got, vec![vec![1u8; 200], vec![3u8; 200]]);
}

#[test]
fn a_real_directory_fsync_failure_still_stops_the_log() {
    let sim = SimFs::new();
    let log = Log::open(Arc::new(sim.clone()), Path::new("/d/log"), config()).unwrap();
    log.append(&[Record::from_value(vec![1u8; 200])]).unwrap();
    fail_next(&sim, OpKind::SyncDir, FaultError::Io);
    assert!(log.append(&[Record::from_value(vec![2u8; 200])]).is_err());
    assert!(log.has_failed());
    assert!(matches!(
        log.append(&[Record::from_value("x")]),
        Err(Error::FailStop { .. })
    ));
}

#[test]
fn no_descriptor_while_retention_deletes_segments_does_not_stop_the_log() {
    let sim = SimFs::new();
    let log = Log::open(Arc::new(sim.clone()), Path::new("/d/log"), config()).unwrap();
    for i in 0..3u8 {
        log.append(&[Record::from_value(vec![i; 200])]).unwrap();
    }
    assert_eq!(log.segments().len(), 3);
    fail_next(&sim, OpKind::SyncDir, FaultError::TooManyFiles);
    let err = log.delete_before(Offset(2)).unwrap_err();
    assert!(err.is_fd_exhausted(), "{err}");
    assert!(!log.has_failed());
    assert_eq!(log.start_offset(), Offset(2));
    log.append(&[Record::from_value("after")]).unwrap();
}
