//! Benchmarks of the log on the real disk: append throughput (record size × batch size × fsync
//! policy), sequential read throughput, and recovery time after an unclean stop.
//!
//! Files go under `$SLUICE_BENCH_DIR` (default: `target/bench-data` of the workspace), never
//! `/tmp`, which is often a tmpfs where fsync costs nothing. The recovery benchmark builds a log
//! of `$SLUICE_BENCH_RECOVERY_BYTES` bytes (default 1 GiB; use less for a quick run).
//!
//! `cargo bench -p sluice-storage --bench log -- --quick` for a fast pass.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use sluice_storage::format::BatchBuilder;
use sluice_storage::{FsyncPolicy, Log, LogConfig, Offset, StdFs};

fn bench_root() -> PathBuf {
    let root = std::env::var_os("SLUICE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data"));
    std::fs::create_dir_all(&root).expect("bench directory");
    root
}

fn encoded_batch(record_bytes: usize, count: usize) -> Vec<u8> {
    let mut b = BatchBuilder::with_capacity(count * (record_bytes + 8) + 64);
    let value = vec![0x5au8; record_bytes];
    for _ in 0..count {
        b.push(1_700_000_000_000, None, &[], &value);
    }
    b.finish()
}

fn config(fsync: FsyncPolicy, direct_io: bool) -> LogConfig {
    LogConfig {
        fsync,
        direct_io,
        segment_bytes_max: 256 << 20,
        ..LogConfig::default()
    }
}

/// The write paths measured: page cache only, and fdatasync before every confirm through
/// direct (O_DIRECT) writes or through the page cache.
const MODES: [(&str, FsyncPolicy, bool); 3] = [
    ("never", FsyncPolicy::Never, false),
    ("always-direct", FsyncPolicy::Always, true),
    ("always-buffered", FsyncPolicy::Always, false),
];

fn append_throughput(c: &mut Criterion) {
    let root = bench_root();
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for (mode, fsync, direct_io) in MODES {
        for record_bytes in [100usize, 1024] {
            for batch in [1usize, 64, 1024] {
                let dir = tempfile::tempdir_in(&root).unwrap();
                let log = Log::open(
                    Arc::new(StdFs),
                    dir.path().join("log"),
                    config(fsync, direct_io),
                )
                .unwrap();
                let bytes = encoded_batch(record_bytes, batch);
                g.throughput(Throughput::Bytes((record_bytes * batch) as u64));
                g.bench_function(format!("{mode}/{record_bytes}B/batch{batch}"), |b| {
                    b.iter_batched(
                        || bytes.clone(),
                        |batch| log.append_encoded(batch).unwrap(),
                        BatchSize::SmallInput,
                    )
                });
                log.close().unwrap();
            }
        }
    }
    g.finish();
}

/// Group commit: several writers append batches of 1024 records at once; each append returns
/// only when durable, and writers that arrive during a sync share the next one.
fn append_concurrent(c: &mut Criterion) {
    let root = bench_root();
    let mut g = c.benchmark_group("append-concurrent");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    const BATCH: usize = 1024;
    const APPENDS_PER_WRITER: usize = 64;
    for (mode, fsync, direct_io) in MODES {
        for record_bytes in [100usize, 1024] {
            for writers in [1usize, 4, 8] {
                let dir = tempfile::tempdir_in(&root).unwrap();
                let log = Log::open(
                    Arc::new(StdFs),
                    dir.path().join("log"),
                    config(fsync, direct_io),
                )
                .unwrap();
                let bytes = encoded_batch(record_bytes, BATCH);
                g.throughput(Throughput::Elements(
                    (BATCH * writers * APPENDS_PER_WRITER) as u64,
                ));
                g.bench_function(
                    format!("{mode}/{record_bytes}B/batch{BATCH}/writers{writers}"),
                    |b| {
                        b.iter_custom(|iters| {
                            let mut total = Duration::ZERO;
                            for _ in 0..iters {
                                let start = std::time::Instant::now();
                                std::thread::scope(|s| {
                                    for _ in 0..writers {
                                        s.spawn(|| {
                                            for _ in 0..APPENDS_PER_WRITER {
                                                log.append_encoded(bytes.clone()).unwrap();
                                            }
                                        });
                                    }
                                });
                                total += start.elapsed();
                            }
                            total
                        })
                    },
                );
                log.close().unwrap();
            }
        }
    }
    g.finish();
}

fn read_throughput(c: &mut Criterion) {
    let root = bench_root();
    let dir = tempfile::tempdir_in(&root).unwrap();
    let log = Log::open(
        Arc::new(StdFs),
        dir.path().join("log"),
        config(FsyncPolicy::Never, false),
    )
    .unwrap();
    let batch = encoded_batch(1024, 64);
    let total_bytes: u64 = 64 << 20;
    while log.size_bytes() < total_bytes {
        log.append_encoded(batch.clone()).unwrap();
    }
    log.flush().unwrap();
    let end = log.end_offset();
    let mut g = c.benchmark_group("read");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(log.size_bytes()));
    g.bench_function("sequential/1KiB-records/1MiB-reads", |b| {
        b.iter(|| {
            let mut from = Offset(0);
            while from < end {
                let got = log.read(from, 1 << 20).unwrap();
                from = got.last().unwrap().header.next_offset();
            }
        })
    });
    g.finish();
    log.close().unwrap();
}

fn recovery_time(c: &mut Criterion) {
    let bytes: u64 = std::env::var("SLUICE_BENCH_RECOVERY_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let root = bench_root();
    let dir = tempfile::tempdir_in(&root).unwrap();
    let path = dir.path().join("log");
    // A recovery point interval above the log size: the unclean restart scans everything
    // written since the last roll, as after a crash at the worst moment.
    let cfg = LogConfig {
        recovery_point_interval_bytes: u64::MAX / 2,
        ..config(FsyncPolicy::Never, false)
    };
    {
        let log = Log::open(Arc::new(StdFs), &path, cfg.clone()).unwrap();
        let batch = encoded_batch(1024, 256);
        while log.size_bytes() < bytes {
            log.append_encoded(batch.clone()).unwrap();
        }
        log.flush().unwrap();
        // Unclean stop: dropped without close, so no clean-shutdown marker.
    }
    let rp_path = path.join("recovery-point");
    let rp = std::fs::read(&rp_path).ok();
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(bytes));
    // With the recovery point the stop left (scans the active segment), and without one (scans
    // every segment).
    for (name, keep_rp) in [("from-recovery-point", true), ("full-scan", false)] {
        g.bench_function(format!("unclean-open/{}MiB/{name}", bytes >> 20), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Put the files back as the unclean stop left them.
                    match (&rp, keep_rp) {
                        (Some(rp), true) => std::fs::write(&rp_path, rp).unwrap(),
                        _ => {
                            let _ = std::fs::remove_file(&rp_path);
                        }
                    }
                    let t = Instant::now();
                    let (log, report) =
                        Log::open_with_report(Arc::new(StdFs), &path, cfg.clone()).unwrap();
                    total += t.elapsed();
                    assert!(!report.clean);
                    drop(log);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    append_throughput,
    append_concurrent,
    read_throughput,
    recovery_time
);
criterion_main!(benches);
