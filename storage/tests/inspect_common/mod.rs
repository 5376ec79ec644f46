//! Shared helpers of the inspection tests: build real data directories with `Log` on `StdFs`,
//! then damage them byte by byte.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_storage::inspect::{self, BatchReport, InspectOptions, Item};
use sluice_storage::{Header, Log, LogConfig, Offset, Record, StdFs};

/// Small segments and dense indexes, so a few dozen records span several segments.
pub fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 2048,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// Record `i` of every test log.
pub fn record(i: u64) -> Record {
    Record {
        timestamp_ms: Some(1_700_000_000_000 + i as i64),
        key: Some(format!("k{i}").into_bytes()),
        headers: vec![Header::new("h", "x")],
        value: format!("value-{i:04}-{}", "p".repeat(80)).into_bytes(),
    }
}

/// Writes `batches` batches of 3 records into a log at `dir` and closes it cleanly.
pub fn build_log(dir: &Path, batches: u64) -> Vec<Record> {
    let log = Log::open(Arc::new(StdFs), dir, config()).unwrap();
    let mut all = Vec::new();
    for b in 0..batches {
        let recs: Vec<Record> = (0..3).map(|j| record(b * 3 + j)).collect();
        log.append(&recs).unwrap();
        all.extend(recs);
    }
    log.close().unwrap();
    all
}

/// A data directory with a topic `orders` and a queue `jobs`.
pub struct DataDir {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub topic: PathBuf,
    pub queue: PathBuf,
    pub topic_records: Vec<Record>,
}

pub fn data_dir() -> DataDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let topic = root.join("topics").join("orders");
    let queue = root.join("queues").join("jobs");
    let topic_records = build_log(&topic, 40);
    build_log(&queue, 5);
    DataDir {
        tmp,
        root,
        topic,
        queue,
        topic_records,
    }
}

/// Segment files of a log directory, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// The batches of one segment file, as inspection lists them.
pub fn batches(file: &Path) -> Vec<BatchReport> {
    let r = inspect::inspect_path(&StdFs, file, &InspectOptions::default()).unwrap();
    r.items
        .into_iter()
        .filter_map(|i| match i {
            Item::Batch(b) => Some(b),
            _ => None,
        })
        .collect()
}

/// XORs one byte of a file.
pub fn flip(file: &Path, position: u64) {
    let mut b = std::fs::read(file).unwrap();
    b[position as usize] ^= 0x20;
    std::fs::write(file, b).unwrap();
}

/// Every record of a log, from its start to its end.
pub fn read_all(log: &Log) -> Vec<(Offset, Record)> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    while from < log.end_offset() {
        let got = log.read_records(from, 1000, 1 << 20).unwrap();
        assert!(!got.is_empty());
        from = got.last().unwrap().0.add(1);
        out.extend(got);
    }
    out
}
