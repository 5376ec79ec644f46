//! Settings that act over time: rolling a segment by age, retention by age, and the `interval`
//! fsync policy's background sync.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_storage::fs::sim::{CrashMode, OpKind, SimFs};
use sluice_storage::{FsyncPolicy, Log, LogConfig, Offset, Record};

#[test]
fn a_segment_older_than_segment_ms_max_is_sealed_at_the_next_append() {
    let fs = SimFs::new();
    let cfg = LogConfig {
        segment_ms_max: Some(40),
        ..LogConfig::default()
    };
    let log = Log::open(Arc::new(fs.clone()), Path::new("/d/log"), cfg).unwrap();
    log.append(&[Record::from_value("a")]).unwrap();
    log.append(&[Record::from_value("b")]).unwrap();
    assert_eq!(
        log.segments().len(),
        1,
        "young segment keeps taking appends"
    );
    std::thread::sleep(Duration::from_millis(60));
    log.append(&[Record::from_value("c")]).unwrap();
    let segs = log.segments();
    assert_eq!(segs.len(), 2, "the old segment was sealed: {segs:?}");
    assert_eq!(segs[1].base_offset, Offset(2));
    let got: Vec<_> = log
        .read_records(Offset(0), 10, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.value)
        .collect();
    assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}

#[test]
fn retention_by_age_deletes_sealed_segments_with_only_old_records() {
    let fs = SimFs::new();
    let cfg = LogConfig {
        segment_bytes_max: 200,
        retention_ms: Some(60_000),
        ..LogConfig::default()
    };
    let log = Log::open(Arc::new(fs.clone()), Path::new("/d/log"), cfg).unwrap();
    let old = sluice_storage::now_ms() - 3_600_000;
    for i in 0..6 {
        let r = Record {
            timestamp_ms: Some(old + i),
            ..Record::from_value(vec![1u8; 100])
        };
        log.append(&[r]).unwrap();
    }
    // New records: everything before them is older than the retention.
    for _ in 0..2 {
        log.append(&[Record::from_value(vec![2u8; 100])]).unwrap();
    }
    log.enforce_retention().unwrap();
    // One batch per segment at this size: the six old segments go, the two new ones stay.
    let segs = log.segments();
    assert_eq!(segs.len(), 2, "{segs:?}");
    assert_eq!(log.start_offset(), Offset(6), "{segs:?}");
    assert_eq!(log.end_offset(), Offset(8));
    let left = log.read_records(log.start_offset(), 10, 1 << 20).unwrap();
    let offsets: Vec<_> = left.iter().map(|(o, _)| o.0).collect();
    assert_eq!(offsets, vec![6, 7]);
    assert!(left.iter().all(|(_, r)| r.value == vec![2u8; 100]));
}

#[test]
fn interval_policy_syncs_in_the_background_within_its_interval() {
    let fs = SimFs::new();
    let cfg = LogConfig {
        fsync: FsyncPolicy::Interval(20),
        ..LogConfig::default()
    };
    let dir = Path::new("/d/log");
    let log = Log::open(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
    let syncs_before = fs.count(OpKind::Sync);
    let info = log.append(&[Record::from_value("x")]).unwrap();
    assert_eq!(log.visible_end(), Offset(1), "interval: visible at once");
    let deadline = Instant::now() + Duration::from_secs(5);
    while log.durable_end() < info.next_offset() {
        assert!(Instant::now() < deadline, "the background sync never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(fs.count(OpKind::Sync) > syncs_before);
    // What the background sync made durable survives a power loss.
    drop(log);
    fs.crash(CrashMode::DropUnsynced);
    let log = Log::open(Arc::new(fs.clone()), dir, cfg).unwrap();
    let got = log.read_records(Offset(0), 10, 1 << 20).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.value, b"x");
}

/// A producer whose clock runs ten years ahead must not pin retention: age is judged by the
/// broker's clock at the append, never later than that.
#[test]
fn a_future_dated_record_does_not_stop_retention_by_age() {
    let fs = SimFs::new();
    let cfg = LogConfig {
        segment_bytes_max: 200,
        retention_ms: Some(100),
        ..LogConfig::default()
    };
    let log = Log::open(Arc::new(fs.clone()), Path::new("/d/log"), cfg).unwrap();
    let ten_years_ms = 10 * 365 * 24 * 3_600_000;
    let future = Record {
        timestamp_ms: Some(sluice_storage::now_ms() + ten_years_ms),
        ..Record::from_value(vec![1u8; 100])
    };
    log.append(&[future]).unwrap();
    for _ in 0..5 {
        log.append(&[Record::from_value(vec![2u8; 100])]).unwrap();
    }
    assert_eq!(log.segments().len(), 6);
    // The record keeps its own timestamp for lookups by time.
    let in_five_years = sluice_storage::now_ms() + ten_years_ms / 2;
    assert_eq!(
        log.offset_for_timestamp(in_five_years).unwrap(),
        Some(Offset(0))
    );
    std::thread::sleep(Duration::from_millis(250));
    log.append(&[Record::from_value(vec![3u8; 100])]).unwrap();
    log.enforce_retention().unwrap();
    let segs = log.segments();
    assert_eq!(
        segs.len(),
        1,
        "only the segment written now stays: {segs:?}"
    );
    assert_eq!(log.start_offset(), Offset(6));
}

/// Durations are added to signed millisecond clocks: a setting past the signed range used to
/// wrap negative (`retention_ms = u64::MAX` deleted confirmed data at once).
#[test]
fn durations_past_the_signed_range_are_refused_where_a_log_is_opened() {
    let fs = SimFs::new();
    for bad in [
        LogConfig {
            retention_ms: Some(u64::MAX),
            ..LogConfig::default()
        },
        LogConfig {
            segment_ms_max: Some(1 << 63),
            ..LogConfig::default()
        },
        LogConfig {
            fsync: FsyncPolicy::Interval(u64::MAX),
            ..LogConfig::default()
        },
    ] {
        let err = Log::open(Arc::new(fs.clone()), Path::new("/d/bad"), bad).unwrap_err();
        assert!(
            matches!(err, sluice_storage::Error::InvalidArgument(_)),
            "{err}"
        );
    }
    let cfg = LogConfig {
        retention_ms: Some(sluice_storage::config::DURATION_MS_MAX),
        ..LogConfig::default()
    };
    let log = Log::open(Arc::new(fs.clone()), Path::new("/d/ok"), cfg).unwrap();
    for i in 0..10 {
        log.append(&[Record::from_value(format!("m{i}"))]).unwrap();
    }
    log.enforce_retention().unwrap();
    assert_eq!(log.start_offset(), Offset(0));
    assert_eq!(log.end_offset(), Offset(10));
}

#[test]
fn a_topics_retention_changed_at_run_time_applies_and_survives_a_reopen() {
    use sluice_storage::{Retention, Store};
    let dir = tempfile::tempdir().unwrap();
    let small = LogConfig {
        segment_bytes_max: 200,
        ..LogConfig::default()
    };
    let store = Store::builder(dir.path()).no_upkeep().open().unwrap();
    let t = store.create_topic("t", Some(small)).unwrap();
    for _ in 0..10 {
        t.publish(&[Record::from_value(vec![7u8; 100])]).unwrap();
    }
    assert_eq!(t.log().enforce_retention().unwrap(), 0, "no retention yet");
    let r = Retention {
        retention_ms: None,
        retention_bytes: Some(400),
    };
    t.set_retention(r).unwrap();
    assert_eq!(t.log_config().retention_bytes, Some(400));
    assert!(
        t.log().enforce_retention().unwrap() > 0,
        "the new limit applies"
    );
    assert!(t.log().size_bytes() <= 400 + 200);
    let bad = Retention {
        retention_ms: Some(u64::MAX),
        retention_bytes: None,
    };
    assert!(
        t.set_retention(bad).is_err(),
        "out-of-range durations are refused"
    );
    assert_eq!(
        t.log_config().retention_bytes,
        Some(400),
        "a refused change changes nothing"
    );
    drop(t);
    store.close().unwrap();
    drop(store);
    let store = Store::builder(dir.path()).no_upkeep().open().unwrap();
    assert_eq!(
        store.topic("t").unwrap().log_config().retention_bytes,
        Some(400)
    );
    store.close().unwrap();
}

/// A replicated log's retention is its group's: the log deletes nothing by itself, on a roll
/// or when asked, and tells where retention would start it instead.
#[test]
fn a_replicated_log_only_tells_where_retention_would_cut() {
    let fs = SimFs::new();
    let cfg = LogConfig {
        segment_bytes_max: 200,
        retention_bytes: Some(300),
        ..LogConfig::default()
    };
    let log = Log::open(Arc::new(fs.clone()), Path::new("/d/log"), cfg).unwrap();
    log.set_commit_end(Offset(0));
    assert!(log.is_replicated());
    for _ in 0..6 {
        log.append(&[Record::from_value(vec![1u8; 100])]).unwrap();
    }
    let segments = log.segments();
    assert!(segments.len() >= 4, "{} segments", segments.len());
    assert_eq!(log.enforce_retention().unwrap(), 0);
    assert_eq!(log.segments().len(), segments.len());
    assert_eq!(log.start_offset(), Offset(0));
    // What a single log would keep: the newest segments within 300 bytes.
    let cut = log.retention_cut().expect("beyond the limit");
    let kept: u64 = segments
        .iter()
        .filter(|s| s.base_offset >= cut)
        .map(|s| s.size_bytes)
        .sum();
    assert!(kept <= 300 || segments.last().unwrap().base_offset == cut);
    assert!(segments.iter().any(|s| s.base_offset == cut));
    assert!(cut > Offset(0));
}
