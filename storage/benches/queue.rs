//! Queue benchmarks: durable acks per second (in order and out of order, with group commit on
//! the real file system), memory per in-flight message and per acked-above-floor message, and
//! recovery time of a queue with one million messages and a sparse ack bitmap.
//!
//! Run: `cargo bench -p sluice-storage --bench queue`. Set `SLUICE_BENCH_MESSAGES` to change the
//! recovery queue size (default 1,000,000). The figures are printed as plain lines; a criterion
//! group measures the latency of one durable ack call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use rand::seq::SliceRandom;
use sluice_storage::{
    ConsumerId, FsRef, FsyncPolicy, LogConfig, Offset, Queue, QueueConfig, Record, StdFs, Store,
    StoreConfig,
};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn qconfig(fsync: FsyncPolicy) -> QueueConfig {
    QueueConfig {
        log: LogConfig {
            fsync,
            ..LogConfig::default()
        },
        max_unacked: 0,
        max_unacked_per_consumer: 0,
        max_deliveries: 0,
        ..QueueConfig::default()
    }
}

fn fill(q: &Queue, n: usize) {
    let batch: Vec<Record> = (0..1000)
        .map(|i| Record::from_value(format!("message-{i:08}")))
        .collect();
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        q.publish(&batch[..k]).unwrap();
        left -= k;
    }
}

fn deliver_all(q: &Queue, n: usize) {
    let mut got = 0;
    while got < n {
        let d = q.deliver(ConsumerId(0), 10_000).unwrap();
        assert!(!d.is_empty());
        got += d.len();
    }
}

/// Acks/s with `threads` threads acking `batch` offsets per call, under `always`.
fn durable_acks(n: usize, threads: usize, batch: usize, shuffle: bool) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let fs: FsRef = Arc::new(StdFs);
    let s = Store::open(fs, dir.path(), StoreConfig::default()).unwrap();
    let q = s
        .create_queue("bench", qconfig(FsyncPolicy::Always))
        .unwrap();
    fill(&q, n);
    deliver_all(&q, n);
    let mut offs: Vec<Offset> = (0..n as u64).map(Offset).collect();
    if shuffle {
        offs.shuffle(&mut rand::thread_rng());
    }
    let chunks: Vec<Vec<Offset>> = offs.chunks(batch).map(<[Offset]>::to_vec).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(c) = chunks.get(i) else { return };
                q.ack(ConsumerId(0), c).unwrap();
            });
        }
    });
    let el = start.elapsed();
    assert_eq!(q.stats().ack_floor, Offset(n as u64));
    let calls = chunks.len() as u64;
    s.close().unwrap();
    (n as f64 / el.as_secs_f64(), calls)
}

/// Bytes of queue state per in-flight message; per message still in flight after every other
/// one was acked (the floor pinned at 0, so the bitmap spans the whole window); and the total
/// left once everything is acked.
fn memory(n: usize) -> (f64, f64, isize) {
    let dir = tempfile::tempdir().unwrap();
    let fs: FsRef = Arc::new(StdFs);
    let s = Store::open(fs, dir.path(), StoreConfig::default()).unwrap();
    let q = s.create_queue("mem", qconfig(FsyncPolicy::Never)).unwrap();
    fill(&q, n);
    let before = live();
    deliver_all(&q, n);
    let inflight = (live() - before) as f64 / n as f64;
    // Ack every other message, leaving the first unacked: the floor stays at 0.
    let every_other: Vec<Offset> = (1..n as u64).step_by(2).map(Offset).collect();
    q.ack(ConsumerId(0), &every_other).unwrap();
    let left = n - every_other.len();
    // (minus the list of offsets itself, which the caller owns)
    let half = (live() - before - (every_other.capacity() * 8) as isize) as f64 / left as f64;
    let rest: Vec<Offset> = (0..n as u64).step_by(2).map(Offset).collect();
    q.ack(ConsumerId(0), &rest).unwrap();
    assert_eq!(q.stats().ack_floor, Offset(n as u64));
    drop((rest, every_other));
    let residual = live() - before;
    s.close().unwrap();
    (inflight, half, residual)
}

/// Recovery of a queue with `n` messages, all delivered once, a random half acked. Returns the
/// unclean reopen of the whole store (the log's own tail scan included), the load and replay of
/// the ack state alone, the clean reopen, and the depth.
fn recovery(n: usize) -> (Duration, Duration, Duration, u64) {
    let dir = tempfile::tempdir().unwrap();
    let fs: FsRef = Arc::new(StdFs);
    {
        let s = Store::open(fs.clone(), dir.path(), StoreConfig::default()).unwrap();
        let q = s
            .create_queue("big", qconfig(FsyncPolicy::Interval(1000)))
            .unwrap();
        fill(&q, n);
        deliver_all(&q, n);
        let mut offs: Vec<Offset> = (0..n as u64).map(Offset).collect();
        offs.shuffle(&mut rand::thread_rng());
        for c in offs[..n / 2].chunks(1000) {
            q.ack(ConsumerId(0), c).unwrap();
        }
        q.log().flush().unwrap();
        q.flush().unwrap();
        // No close: the next open replays the journal after the last snapshot.
    }
    let t = Instant::now();
    let rep = sluice_storage::inspect_queue_state(&StdFs, &dir.path().join("queues/big")).unwrap();
    let state_only = t.elapsed();
    assert_eq!(rep.acked_above_floor + rep.floor, (n / 2) as u64);
    let t = Instant::now();
    let s = Store::open(fs.clone(), dir.path(), StoreConfig::default()).unwrap();
    let unclean = t.elapsed();
    let depth = s.queue("big").unwrap().stats().depth;
    s.close().unwrap();
    drop(s);
    let t = Instant::now();
    let s = Store::open(fs, dir.path(), StoreConfig::default()).unwrap();
    let clean = t.elapsed();
    drop(s);
    (unclean, state_only, clean, depth)
}

fn main() {
    let n = 200_000;
    for (shuffle, name) in [(false, "in order"), (true, "random order")] {
        for (threads, batch) in [(8, 100), (8, 1000)] {
            let (rate, calls) = durable_acks(n, threads, batch, shuffle);
            println!(
                "durable acks ({name}, {threads} threads, {batch} per call, fsync always): \
                 {rate:.0} acks/s over {calls} calls"
            );
        }
    }
    let (inflight, half, residual) = memory(100_000);
    println!("queue state per in-flight message (100000 in flight): {inflight:.0} bytes");
    println!(
        "after acking every other one (floor pinned at 0): {half:.0} bytes per message still in flight"
    );
    println!("left once all 100000 are acked: {residual} bytes");
    let big: usize = std::env::var("SLUICE_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (unclean, state_only, clean, depth) = recovery(big);
    println!(
        "recovery of a queue with {big} messages, half acked at random ({depth} unacked): \
         unclean store open {unclean:?} (ack-state load and journal replay alone {state_only:?}), \
         clean store open {clean:?}"
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    let dir = tempfile::tempdir().unwrap();
    let fs: FsRef = Arc::new(StdFs);
    let s = Store::open(fs, dir.path(), StoreConfig::default()).unwrap();
    let q = s.create_queue("lat", qconfig(FsyncPolicy::Always)).unwrap();
    c.bench_function("durable ack of one message (one fdatasync)", |b| {
        b.iter_batched(
            || {
                fill(&q, 1);
                q.deliver(ConsumerId(0), 1).unwrap()[0].offset
            },
            |o| q.ack(ConsumerId(0), &[o]).unwrap(),
            BatchSize::SmallInput,
        )
    });
    s.close().unwrap();
    c.final_summary();
}
