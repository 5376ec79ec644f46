//! Helpers shared by the integration tests of the storage engine.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_storage::fs::sim::SimFs;
use sluice_storage::{FsyncPolicy, Log, LogConfig, Offset, Record, RecoveryReport};

/// The log directory used on simulated file systems (its parent does not exist beforehand).
pub const DIR: &str = "/data/log";

pub fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

/// A config with small segments so that tests roll often.
pub fn small_config(segment_bytes_max: u64) -> LogConfig {
    LogConfig {
        segment_bytes_max,
        index_interval_bytes: 64,
        fsync: FsyncPolicy::Always,
        ..LogConfig::default()
    }
}

/// A deterministic record: key, one header, a value whose length varies with `i`.
pub fn record(i: u64) -> Record {
    let len = (i * 37 % 90) as usize;
    Record {
        timestamp_ms: Some(1_000 + i as i64 * 10),
        key: if i % 3 == 0 {
            None
        } else {
            Some(format!("k{i}").into_bytes())
        },
        headers: if i % 2 == 0 {
            vec![sluice_storage::Header::new("h", format!("{i}"))]
        } else {
            vec![]
        },
        value: (0..len).map(|j| (i as usize * 31 + j) as u8).collect(),
    }
}

pub fn open_sim(fs: &SimFs, cfg: LogConfig) -> sluice_storage::Result<(Log, RecoveryReport)> {
    Log::open_with_report(Arc::new(fs.clone()), dir(), cfg)
}

/// Every visible record of the log, from its start offset.
pub fn read_all(log: &Log) -> Vec<(Offset, Record)> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    let end = log.visible_end();
    while from < end {
        let got = log
            .read_records(from, usize::MAX, 64 << 10)
            .expect("read of a visible offset");
        assert!(
            !got.is_empty(),
            "read at {from} below the end {end} returned nothing"
        );
        for (o, r) in got {
            assert_eq!(o, from, "offsets must be dense");
            from = o.add(1);
            out.push((o, r));
        }
    }
    out
}

/// Asserts that `expected` (offset, record) pairs are all in the log, byte-identical.
pub fn assert_contains(log: &Log, expected: &[(Offset, Record)]) {
    let all = read_all(log);
    let start = log.start_offset();
    for (o, r) in expected {
        assert!(
            *o >= start,
            "confirmed offset {o} is below the start {start}"
        );
        let i = (o.0 - start.0) as usize;
        assert!(
            i < all.len(),
            "confirmed offset {o} is missing (log ends at {})",
            start.0 + all.len() as u64
        );
        assert_eq!(&all[i].1, r, "record at {o} differs");
    }
}

/// Path of a file of the log's directory.
pub fn path(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

pub fn seg_name(base: u64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// A tiny deterministic generator (xorshift64*), so tests need no seeds from outside.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
