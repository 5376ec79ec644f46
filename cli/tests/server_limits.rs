//! Misbehaving clients, limits, the data-directory lock and graceful shutdown, against the real
//! `sluice` binary. Raw sockets speak the protocol by hand (docs/protocol.md). Abuse covered:
//! garbage, an oversized length prefix, a client stalled mid-frame, no handshake, a connection
//! flood beyond the limit, a consumer that never acks and a subscriber that never reads (server
//! memory stays bounded and well-behaved clients keep their latency).
//!
//! Longer than most files on purpose: each file under `tests/` is a binary of its own that links
//! the whole broker, so the scenarios of one subject share one binary (and one set of helpers)
//! rather than adding links to a CI run on two cores.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{data_dir, start, wait_bounded, BIN};
use sluice::client::{Client, SubscribeOptions};
use sluice::protocol::{
    self, kind, ErrorCode, LogSettings, QueueSettings, RawFrame, Reply, Request, Source, Start,
};
use sluice::storage::Record;

const LIMITS: &str = "[limits]\nframe_timeout_ms = 300\nhandshake_timeout_ms = 300\nidle_timeout_ms = 2000\nconnections_max = 8\n";

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one frame; `None` at end of stream.
fn read_frame(s: &mut TcpStream) -> Option<RawFrame> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("read failed: {e}"),
    }
    let len = u32::from_le_bytes(len) as usize;
    let mut rest = vec![0u8; len];
    s.read_exact(&mut rest).unwrap();
    Some(RawFrame {
        kind: rest[0],
        request_id: u32::from_le_bytes(rest[1..5].try_into().unwrap()),
        body: rest[5..].to_vec(),
    })
}

fn hello(s: &mut TcpStream) {
    let f = Request::Hello {
        version: protocol::VERSION,
        client: "raw".into(),
    }
    .encode(1);
    s.write_all(&f.to_vec()).unwrap();
    let r = read_frame(s).expect("HELLO_OK");
    assert_eq!(r.kind, kind::HELLO_OK);
}

/// Expects an ERROR frame with `code`, then the end of the stream.
fn expect_error_then_close(s: &mut TcpStream, code: ErrorCode) {
    let f = read_frame(s).expect("an ERROR frame before the close");
    match Reply::decode(f).unwrap() {
        Reply::Error { code: c, .. } => assert_eq!(c, code),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(read_frame(s).is_none(), "the connection must be closed");
}

fn publish_one(addr: &str, topic: &str, value: &str) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = sluice::client::Client::connect(addr).await.unwrap();
        let _ = c.create_topic(topic, Default::default()).await;
        c.publish(topic, &[sluice::storage::Record::from_value(value)])
            .await
            .unwrap()
            .base_offset
    })
}

#[test]
fn garbage_oversized_and_stalled_clients_are_cut_off_and_others_unaffected() {
    let (_t, dir) = data_dir();
    let server = start(&dir, Some(LIMITS));
    assert_eq!(publish_one(&server.addr, "t", "before"), 0);

    // A well-behaved connection kept open across the abuse.
    let mut good = connect(&server.addr);
    hello(&mut good);

    // Unknown frame kind after the handshake.
    let mut s = connect(&server.addr);
    hello(&mut s);
    s.write_all(&[5, 0, 0, 0, 0x7f, 9, 0, 0, 0]).unwrap();
    expect_error_then_close(&mut s, ErrorCode::Malformed);

    // Truncated body of a known kind.
    let mut s = connect(&server.addr);
    hello(&mut s);
    s.write_all(&[7, 0, 0, 0, kind::DESCRIBE_TOPIC, 2, 0, 0, 0, 0xff, 0xff])
        .unwrap();
    expect_error_then_close(&mut s, ErrorCode::Malformed);

    // Plain garbage instead of a handshake (its "length" is huge).
    let mut s = connect(&server.addr);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    expect_error_then_close(&mut s, ErrorCode::FrameTooLarge);

    // Oversized length prefix after the handshake: rejected before the body is sent.
    let mut s = connect(&server.addr);
    hello(&mut s);
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    expect_error_then_close(&mut s, ErrorCode::FrameTooLarge);

    // Stalled mid-frame.
    let mut s = connect(&server.addr);
    hello(&mut s);
    let t0 = Instant::now();
    s.write_all(&[20, 0, 0]).unwrap();
    expect_error_then_close(&mut s, ErrorCode::Timeout);
    assert!(t0.elapsed() < Duration::from_secs(5));

    // No handshake at all.
    let mut s = connect(&server.addr);
    expect_error_then_close(&mut s, ErrorCode::Timeout);

    // Wrong protocol version.
    let mut s = connect(&server.addr);
    let f = Request::Hello {
        version: 99,
        client: "old".into(),
    }
    .encode(1);
    s.write_all(&f.to_vec()).unwrap();
    expect_error_then_close(&mut s, ErrorCode::UnsupportedVersion);

    // Not a sluice client: a HELLO whose magic is foreign.
    let mut s = connect(&server.addr);
    let mut f = Request::Hello {
        version: 1,
        client: "other".into(),
    }
    .encode(1)
    .to_vec();
    f[9..13].copy_from_slice(b"XXXX");
    s.write_all(&f).unwrap();
    expect_error_then_close(&mut s, ErrorCode::UnsupportedVersion);

    // The good connection still works, and nothing stored was lost.
    good.write_all(&Request::Ping.encode(2).to_vec()).unwrap();
    let f = read_frame(&mut good).unwrap();
    assert_eq!((f.kind, f.request_id), (kind::PONG, 2));
    assert_eq!(publish_one(&server.addr, "t", "after"), 1);

    // And after idling past idle_timeout_ms it is closed with a Timeout.
    std::thread::sleep(Duration::from_millis(2300));
    expect_error_then_close(&mut good, ErrorCode::Timeout);
}

#[test]
fn connections_over_the_limit_are_refused_with_an_error() {
    let (_t, dir) = data_dir();
    let server = start(&dir, Some("[limits]\nconnections_max = 2\n"));
    let mut a = connect(&server.addr);
    hello(&mut a);
    let mut b = connect(&server.addr);
    hello(&mut b);
    let mut c = connect(&server.addr);
    expect_error_then_close(&mut c, ErrorCode::LimitReached);
    // A flood of connections beyond the limit: each is refused, the admitted ones keep working.
    let flood: Vec<TcpStream> = (0..200).map(|_| connect(&server.addr)).collect();
    for mut s in flood {
        expect_error_then_close(&mut s, ErrorCode::LimitReached);
    }
    a.write_all(&Request::Ping.encode(9).to_vec()).unwrap();
    let f = read_frame(&mut a).unwrap();
    assert_eq!((f.kind, f.request_id), (kind::PONG, 9));
    drop(a);
    std::thread::sleep(Duration::from_millis(200));
    let mut d = connect(&server.addr);
    hello(&mut d);
}

#[test]
fn a_second_server_on_the_same_directory_fails_at_once() {
    let (_t, dir) = data_dir();
    let _server = start(&dir, None);
    let mut second = std::process::Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--kafka-listen",
            "off",
            "--data-dir",
        ])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut second, Duration::from_secs(20)).expect("second serve hung");
    assert!(!status.success());
    let mut err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("already in use"), "stderr: {err}");
}

#[test]
fn sigterm_shuts_down_cleanly_and_data_survives() {
    let (_t, dir) = data_dir();
    let mut server = start(&dir, None);
    assert_eq!(publish_one(&server.addr, "t", "one"), 0);
    let status = server.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "exit status {status:?}");
    let server = start(&dir, None);
    assert_eq!(publish_one(&server.addr, "t", "two"), 1);
    let mut s = server;
    let status = s.signal_and_wait(libc::SIGINT);
    assert!(status.success(), "exit status {status:?}");
}

// Sizes of the stalled-readers test below.
const VALUE: usize = 4096;
const PER_BATCH: usize = 64; // 256 KiB batches
const WARM_BATCHES: u64 = 32; // 8 MiB before the first measure
const BULK_BATCHES: u64 = 192; // 48 MiB measured
const QUEUE_MSGS: u64 = 5_000;
const STALLED_PREFETCH: u32 = 1_000;

/// A consumer that never acks and a subscriber that never reads its socket (with the most credit)
/// stall while 48 MiB are published: the server's memory grows by far less than that, a
/// well-behaved subscriber and consumer get everything they are owed, and small publishes on
/// another connection keep a normal round trip.
#[test]
fn stalled_consumer_and_subscriber_keep_memory_bounded_and_others_served() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = server.addr.clone();
    rt.block_on(create_big_probe_and_work(&addr));
    let (stalled_sub, stalled_consumer) = stalled_subscriber_and_consumer(&addr);
    let run = rt.block_on(publish_bulk_past_stalled_readers(&server, &addr));
    check_stalled_run(&run);
    drop(stalled_sub);
    drop(stalled_consumer);
}

/// What the stalled-readers test saw while the bulk was published.
struct StalledRun {
    growth_kib: u64,
    before_kib: u64,
    /// Round trips of the small publishes.
    probes: Vec<Duration>,
    /// Messages the well-behaved subscriber read.
    good_sub: u64,
    /// Messages the well-behaved consumer acked.
    good_consumer: u64,
    q: protocol::QueueInfo,
}

/// Topics `big` and `probe`, and queue `work` whose deliveries are never given back.
async fn create_big_probe_and_work(addr: &str) {
    let c = Client::connect(addr).await.unwrap();
    c.create_topic("big", LogSettings::default()).await.unwrap();
    c.create_topic("probe", LogSettings::default())
        .await
        .unwrap();
    let settings = QueueSettings {
        ack_timeout_ms: Some(600_000),
        ..QueueSettings::default()
    };
    c.create_queue("work", settings).await.unwrap();
}

/// A subscriber to `big` with the most credit and a consumer of `work`. Neither of these
/// sockets is ever read again.
fn stalled_subscriber_and_consumer(addr: &str) -> (TcpStream, TcpStream) {
    let mut stalled_sub = connect(addr);
    hello(&mut stalled_sub);
    let sub = Request::Subscribe {
        topic: "big".into(),
        name: Some("stalled".into()),
        partitions: vec![],
        start: Start::Earliest,
        credit: 100_000,
    };
    stalled_sub.write_all(&sub.encode(2).to_vec()).unwrap();
    let mut stalled_consumer = connect(addr);
    hello(&mut stalled_consumer);
    let consume = Request::Consume {
        source: Source::Queue("work".into()),
        prefetch: STALLED_PREFETCH,
    };
    stalled_consumer
        .write_all(&consume.encode(2).to_vec())
        .unwrap();
    (stalled_sub, stalled_consumer)
}

fn big_batch(b: u64) -> Vec<Record> {
    (0..PER_BATCH)
        .map(|i| Record::from_value(vec![(b as usize + i) as u8; VALUE]))
        .collect()
}

/// Publishes the warm-up batches and fills the queue, measures the server, then publishes
/// the bulk while the probe, a good subscriber and a good consumer run, and measures again.
async fn publish_bulk_past_stalled_readers(server: &common::ServerProc, addr: &str) -> StalledRun {
    let c = Client::connect(addr).await.unwrap();
    for b in 0..WARM_BATCHES {
        c.publish("big", &big_batch(b)).await.unwrap();
    }
    // The queue fills before the stalled consumer's window: it takes what it can hold.
    for k in 0..QUEUE_MSGS / 100 {
        let recs: Vec<Record> = (0..100)
            .map(|i| Record::from_value(format!("job {k}-{i} {}", "x".repeat(150))))
            .collect();
        c.publish("work", &recs).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kib();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = spawn_probe(addr.to_string(), stop.clone());
    let good_sub = spawn_good_subscriber(addr.to_string());
    let good_consumer = spawn_good_consumer(addr.to_string());
    for b in WARM_BATCHES..WARM_BATCHES + BULK_BATCHES {
        c.publish("big", &big_batch(b)).await.unwrap();
    }
    let good_sub = tokio::time::timeout(Duration::from_secs(120), good_sub)
        .await
        .expect("the good subscriber kept up")
        .unwrap();
    let good_consumer = good_consumer.await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let probes = probe.await.unwrap();
    let after = server.rss_kib();
    let q = c.describe_queue("work").await.unwrap();
    StalledRun {
        growth_kib: after.saturating_sub(before),
        before_kib: before,
        probes,
        good_sub,
        good_consumer,
        q,
    }
}

/// Round trips of small publishes on their own connection while the bulk runs, until `stop`.
fn spawn_probe(
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let c = Client::connect(&addr).await.unwrap();
        let mut rtts = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let t0 = Instant::now();
            c.publish("probe", &[Record::from_value("ping")])
                .await
                .unwrap();
            rtts.push(t0.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rtts
    })
}

/// A well-behaved subscriber reads all of it.
fn spawn_good_subscriber(addr: String) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let c = Client::connect(&addr).await.unwrap();
        let opts = SubscribeOptions::named("good").from(Start::Earliest);
        let mut sub = c.subscribe("big", opts).await.unwrap();
        let last = (WARM_BATCHES + BULK_BATCHES) * PER_BATCH as u64 - 1;
        let mut n = 0u64;
        while let Some(m) = sub.next().await {
            let m = m.unwrap();
            assert_eq!(m.offset, n);
            assert_eq!(m.record.value.len(), VALUE);
            n += 1;
            if m.offset == last {
                break;
            }
        }
        n
    })
}

/// A well-behaved consumer acks everything the stalled one does not hold.
fn spawn_good_consumer(addr: String) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let c = Client::connect(&addr).await.unwrap();
        let mut cons = c.consume(Source::Queue("work".into()), 100).await.unwrap();
        let acker = cons.acker();
        let mut got = std::collections::BTreeSet::new();
        let mut to_ack = Vec::new();
        while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(3), cons.next()).await {
            let d = d.unwrap();
            assert!(got.insert(d.offset), "{} delivered twice", d.offset);
            to_ack.push(d.id());
            if cons.buffered() == 0 {
                acker.ack(&to_ack).await.unwrap();
                to_ack.clear();
            }
        }
        acker.ack(&to_ack).await.unwrap();
        got.len() as u64
    })
}

/// Everyone owed messages got them, memory stayed bounded and the probes kept their latency.
fn check_stalled_run(run: &StalledRun) {
    let StalledRun {
        growth_kib,
        before_kib,
        probes,
        good_sub,
        good_consumer,
        q,
    } = run;
    let mut sorted = probes.clone();
    sorted.sort();
    let p50 = sorted[sorted.len() / 2];
    let p99 = sorted[sorted.len() * 99 / 100];
    eprintln!(
        "stalled readers: server RSS {before_kib} KiB, +{growth_kib} KiB after 48 MiB published; \
         {} probe publishes p50 {p50:?} p99 {p99:?}; queue {q:?}",
        probes.len()
    );
    assert_eq!(
        *good_sub,
        (WARM_BATCHES + BULK_BATCHES) * PER_BATCH as u64,
        "the good subscriber got everything"
    );
    assert!(q.in_flight <= STALLED_PREFETCH as u64, "{q:?}");
    assert_eq!(
        good_consumer + q.in_flight,
        QUEUE_MSGS,
        "the good consumer got every message the stalled one does not hold: {q:?}"
    );
    assert_eq!(q.depth, q.in_flight, "nothing is left undelivered: {q:?}");
    assert!(
        *growth_kib < 32 * 1024,
        "server memory grew by {growth_kib} KiB while stalled readers held 48 MiB of deliveries"
    );
    assert!(
        probes.len() >= 20,
        "too few probe publishes: {}",
        probes.len()
    );
    assert!(
        p99 < Duration::from_millis(250),
        "publish round trips suffered: p50 {p50:?}, p99 {p99:?}"
    );
}

/// Writes one request frame.
fn send(s: &mut TcpStream, id: u32, req: &Request) {
    s.write_all(&req.encode(id).to_vec()).unwrap();
}

/// Reads frames until the reply to request `id` (pushes of other ids are skipped).
fn reply_to(s: &mut TcpStream, id: u32) -> Reply {
    loop {
        let f = read_frame(s).expect("a reply before the close");
        if f.request_id == id && f.kind != kind::MESSAGES && f.kind != kind::DELIVER {
            return Reply::decode(f).unwrap();
        }
    }
}

fn error_code(r: Reply) -> ErrorCode {
    match r {
        Reply::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A batch of one record `{ ts_delta 0 | no key | header_count | headers | empty value }`,
/// written by hand so that a huge header count costs the test nothing to build.
fn one_record_batch(header_count: u64, headers: &[u8]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut body = vec![0u8, 0u8];
    varint(&mut body, header_count);
    body.extend_from_slice(headers);
    body.push(0);
    let mut records = Vec::new();
    varint(&mut records, body.len() as u64);
    records.extend_from_slice(&body);
    let ts: i64 = 1_700_000_000_000;
    let mut b = vec![0u8; 4];
    b.extend_from_slice(b"SLB1");
    b.extend_from_slice(&[1, 0, 0, 0]);
    b.extend_from_slice(&((48 + records.len()) as u32).to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&ts.to_le_bytes());
    b.extend_from_slice(&ts.to_le_bytes());
    b.extend_from_slice(&sluice::storage::format::crc(&records).to_le_bytes());
    let hc = sluice::storage::format::crc(&b[4..48]);
    b[..4].copy_from_slice(&hc.to_le_bytes());
    b.extend_from_slice(&records);
    b
}

/// Peak resident memory of a process in KiB (`VmHWM` of `/proc/<pid>/status`).
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}

/// A queue delivery counts a message's headers in 16 bits: a record with more than 65,535
/// headers was confirmed, then delivered with its headers cut. Publishes are now capped at
/// `RECORD_HEADERS_MAX` headers a record, and a record at the cap arrives whole.
#[test]
fn records_with_more_headers_than_the_cap_are_refused_and_the_cap_is_delivered_whole() {
    use sluice::protocol::Target;
    use sluice::storage::format::RECORD_HEADERS_MAX;
    use sluice::storage::Header;
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    runtime().block_on(async {
        let c = Client::connect(&server.addr).await.unwrap();
        c.create_queue("q", QueueSettings::default()).await.unwrap();
        let q = || Target::Queue("q".into());
        // More than a delivery can carry, and one more than the cap: refused, nothing appended.
        for n in [70_000u64, RECORD_HEADERS_MAX as u64 + 1] {
            let batch = one_record_batch(n, &vec![0u8; 2 * n as usize]);
            let e = c
                .publish_encoded(q(), sluice::protocol::Route::Any, batch)
                .await
                .expect_err("over the cap");
            assert_eq!(e.code(), Some(ErrorCode::InvalidBatch), "{n} headers: {e}");
        }
        assert_eq!(c.describe_queue("q").await.unwrap().end_offset, 0);
        // At the cap: accepted and delivered with every header.
        let headers: Vec<Header> = (0..RECORD_HEADERS_MAX)
            .map(|i| Header::new(format!("h{i}"), format!("v{i}")))
            .collect();
        let rec = Record {
            headers: headers.clone(),
            ..Record::from_value("x")
        };
        c.publish_to(q(), &[rec]).await.unwrap();
        let mut cons = c.consume(Source::Queue("q".into()), 1).await.unwrap();
        let d = cons.next().await.unwrap().unwrap();
        assert_eq!(d.record.headers, headers);
    });
}

/// Validating a publish used to allocate a vector sized from each record's claimed header count
/// (16 bytes or more per 2-byte empty header): one 7 MB publish grew the broker by over 100 MiB.
/// Such a record is now refused without allocating per header, and a valid publish of as many
/// headers as allowed costs a small multiple of its size (the frame, the batch taken from it and
/// the write path's buffers: about 34 MiB of peak for both publishes here).
#[test]
fn a_publish_of_many_empty_headers_costs_about_its_size_in_memory() {
    use sluice::protocol::Target;
    use sluice::storage::format::{BatchBuilder, RECORD_HEADERS_MAX};
    use sluice::storage::Header;
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    runtime().block_on(async {
        let c = Client::connect(&server.addr).await.unwrap();
        c.create_topic("t", LogSettings::default()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = server.rss_kib();
        // 3.5 million empty headers in one 7 MB record.
        let n = 3_500_000u64;
        let batch = one_record_batch(n, &vec![0u8; 2 * n as usize]);
        let e = c
            .publish_encoded(
                Target::Topic("t".into()),
                sluice::protocol::Route::Any,
                batch,
            )
            .await
            .expect_err("a record of millions of headers");
        assert_eq!(e.code(), Some(ErrorCode::InvalidBatch));
        // Records at the cap filling a 7 MB batch.
        let empty = vec![Header::default(); RECORD_HEADERS_MAX];
        let mut b = BatchBuilder::new();
        while b.size_bytes() < 7_000_000 {
            b.push(1, None, &empty, b"");
        }
        c.publish_encoded(
            Target::Topic("t".into()),
            sluice::protocol::Route::Any,
            b.finish(),
        )
        .await
        .unwrap();
        let peak = peak_rss_kib(server.pid());
        let growth = peak.saturating_sub(before);
        eprintln!("RSS {before} KiB before, peak {peak} KiB after two 7 MB publishes");
        assert!(
            growth < 64 * 1024,
            "two 7 MB publishes grew the broker's peak memory by {growth} KiB"
        );
    });
}

/// An ack's delivery round used to wait on the blocking pool for room in the connection's
/// writer queue: a consumer that acks but never reads parked one thread per ack (hundreds), and
/// once the pool was full other clients' requests got no answer.
#[test]
fn a_consumer_that_acks_but_never_reads_parks_no_thread_and_others_are_answered() {
    const VALUE: usize = 64 << 10;
    const MSGS: u64 = 1_000;
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&server.addr).await.unwrap();
        let settings = QueueSettings {
            ack_timeout_ms: Some(600_000),
            ..QueueSettings::default()
        };
        c.create_queue("q", settings).await.unwrap();
        for b in 0..MSGS / 50 {
            let recs: Vec<Record> = (0..50)
                .map(|i| Record::from_value(vec![(b + i) as u8; VALUE]))
                .collect();
            c.publish("q", &recs).await.unwrap();
        }
    });
    let threads_before = common::threads(server.pid());
    let mut s = connect(&server.addr);
    hello(&mut s);
    let consume = Request::Consume {
        source: Source::Queue("q".into()),
        prefetch: 10,
    };
    send(&mut s, 2, &consume);
    // Never read again: ack what is delivered, one offset a request, in order, paced so that
    // only acks that wait for the client (not a burst of syncs) could hold threads.
    for o in 0..MSGS {
        let ack = Request::Ack {
            id: 2,
            offsets: vec![(0, o)],
        };
        send(&mut s, 3 + o as u32, &ack);
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_secs(2));
    let answered = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            let c = Client::connect(&server.addr).await.unwrap();
            c.publish("q", &[Record::from_value("probe")])
                .await
                .unwrap();
            c.list_queues().await.unwrap()
        })
        .await
    });
    let threads_after = common::threads(server.pid());
    eprintln!("server threads: {threads_before} before, {threads_after} after the acks");
    assert_eq!(
        answered.expect("another client's publish and list were answered"),
        vec!["q".to_string()]
    );
    assert!(
        threads_after <= threads_before + 128,
        "the acks of a client that does not read took threads: {threads_before} -> {threads_after}"
    );
    drop(s);
}

/// `MESSAGES` frames used to be split counting values only: messages with large keys and
/// headers and tiny values went out in one frame of many MiB (the reference client refuses
/// frames over 256 MiB). Every byte now counts: no frame exceeds 1 MiB unless it carries a
/// single larger message, and every message arrives whole.
#[test]
fn queue_deliveries_are_split_by_their_real_size() {
    use sluice::storage::Header;
    const MSGS: usize = 200;
    const FRAME_MAX: usize = 1 << 20;
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    let record = |i: usize| Record {
        key: Some(vec![i as u8; 16 << 10]),
        headers: (0..16)
            .map(|h| Header::new(format!("h{h}"), vec![h as u8; 4 << 10]))
            .collect(),
        ..Record::from_value(format!("v{i}"))
    };
    runtime().block_on(async {
        let c = Client::connect(&server.addr).await.unwrap();
        c.create_queue("q", QueueSettings::default()).await.unwrap();
        for b in 0..MSGS / 40 {
            let recs: Vec<Record> = (b * 40..(b + 1) * 40).map(record).collect();
            c.publish("q", &recs).await.unwrap();
        }
    });
    let mut s = connect(&server.addr);
    hello(&mut s);
    let consume = Request::Consume {
        source: Source::Queue("q".into()),
        prefetch: MSGS as u32,
    };
    send(&mut s, 2, &consume);
    let mut got = 0;
    let mut frames = 0;
    while got < MSGS {
        let f = read_frame(&mut s).expect("messages");
        if f.kind != kind::MESSAGES {
            continue;
        }
        let size = 4 + protocol::FRAME_HEAD_LEN + f.body.len();
        let Reply::Messages(ms) = Reply::decode(f).unwrap() else {
            unreachable!()
        };
        assert!(
            size <= FRAME_MAX || ms.len() == 1,
            "a MESSAGES frame of {size} bytes carries {} messages",
            ms.len()
        );
        for m in &ms {
            let mut want = record(m.offset as usize);
            want.timestamp_ms = m.record.timestamp_ms;
            assert_eq!(m.record, want, "message {} arrived altered", m.offset);
        }
        got += ms.len();
        frames += 1;
    }
    assert!(
        frames >= 10,
        "{MSGS} messages of 80 KiB came in {frames} frames"
    );
}

/// Credit granted while the subscription's task held the credit it had (waiting for messages)
/// was not counted: outstanding credit reached twice `credit_max`.
#[test]
fn credit_granted_in_several_steps_is_capped_at_credit_max() {
    let (_t, dir) = data_dir();
    let server = start(&dir, Some("[limits]\ncredit_max = 100\n"));
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&server.addr).await.unwrap();
        c.create_topic("t", LogSettings::default()).await.unwrap();
    });
    let mut s = connect(&server.addr);
    hello(&mut s);
    let sub = Request::Subscribe {
        topic: "t".into(),
        name: None,
        partitions: vec![],
        start: Start::Earliest,
        credit: 100,
    };
    send(&mut s, 2, &sub);
    assert!(matches!(
        reply_to(&mut s, 2),
        Reply::Positions(ref ps) if ps[..] == [(0, 0)]
    ));
    std::thread::sleep(Duration::from_millis(200));
    // Already at the cap: these grants add nothing.
    for _ in 0..3 {
        send(&mut s, 0, &Request::Credit { id: 2, credit: 60 });
    }
    std::thread::sleep(Duration::from_millis(200));
    rt.block_on(async {
        let c = Client::connect(&server.addr).await.unwrap();
        let recs: Vec<Record> = (0..1000)
            .map(|i| Record::from_value(format!("m{i}")))
            .collect();
        c.publish("t", &recs).await.unwrap();
    });
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut delivered = 0;
    loop {
        let mut len = [0u8; 4];
        match s.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("read failed: {e}"),
        }
        let mut rest = vec![0u8; u32::from_le_bytes(len) as usize];
        s.read_exact(&mut rest).unwrap();
        assert_eq!(rest[0], kind::DELIVER);
        // { kind u8 | request_id u32 | partition u32 | from u64 | to u64 | batch }
        let from = u64::from_le_bytes(rest[9..17].try_into().unwrap());
        let to = u64::from_le_bytes(rest[17..25].try_into().unwrap());
        delivered += to - from;
    }
    assert_eq!(delivered, 100, "credit_max is 100");
}

/// A setting out of its range is an `InvalidArgument` reply, not a `Malformed` close (nor, for
/// durations the store adds to timestamps, a value that wraps).
#[test]
fn out_of_range_settings_are_refused_and_the_connection_stays_open() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    let mut s = connect(&server.addr);
    hello(&mut s);
    let queue = |name: &str, ack: Option<u64>, max: Option<u64>| Request::CreateQueue {
        name: name.into(),
        settings: QueueSettings {
            ack_timeout_ms: ack,
            max_deliveries: max,
            ..QueueSettings::default()
        },
    };
    send(&mut s, 2, &queue("a", None, Some(u32::MAX as u64 + 1)));
    assert_eq!(error_code(reply_to(&mut s, 2)), ErrorCode::InvalidArgument);
    send(&mut s, 3, &queue("b", Some(u64::MAX), None));
    assert_eq!(error_code(reply_to(&mut s, 3)), ErrorCode::InvalidArgument);
    let topic = Request::CreateTopic {
        name: "c".into(),
        settings: LogSettings {
            retention_ms: Some(u64::MAX),
            ..LogSettings::default()
        },
        partitions: None,
    };
    send(&mut s, 4, &topic);
    assert_eq!(error_code(reply_to(&mut s, 4)), ErrorCode::InvalidArgument);
    send(&mut s, 5, &queue("d", Some(1000), Some(u32::MAX as u64)));
    assert!(matches!(reply_to(&mut s, 5), Reply::Ok));
    send(&mut s, 6, &Request::ListQueues);
    assert_eq!(reply_to(&mut s, 6), Reply::Names(vec!["d".into()]));
}

/// A subscription or consumer whose topic or queue is deleted gets `NotFound` and is closed:
/// later requests naming it answer `UnknownId` (it used to stay open, answering `OK`).
#[test]
fn a_stream_ended_by_a_deletion_is_forgotten() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&server.addr).await.unwrap();
        c.create_topic("t", LogSettings::default()).await.unwrap();
        c.create_queue("q", QueueSettings::default()).await.unwrap();
    });
    let mut s = connect(&server.addr);
    hello(&mut s);
    let sub = Request::Subscribe {
        topic: "t".into(),
        name: Some("n".into()),
        partitions: vec![],
        start: Start::Default,
        credit: 10,
    };
    send(&mut s, 2, &sub);
    assert!(matches!(reply_to(&mut s, 2), Reply::Positions(_)));
    let consume = Request::Consume {
        source: Source::Queue("q".into()),
        prefetch: 10,
    };
    send(&mut s, 3, &consume);
    assert!(matches!(reply_to(&mut s, 3), Reply::Subscribed { .. }));
    rt.block_on(async {
        let c = Client::connect(&server.addr).await.unwrap();
        c.delete_topic("t").await.unwrap();
        c.delete_queue("q").await.unwrap();
    });
    assert_eq!(error_code(reply_to(&mut s, 2)), ErrorCode::NotFound);
    assert_eq!(error_code(reply_to(&mut s, 3)), ErrorCode::NotFound);
    send(&mut s, 4, &Request::Cancel { id: 2 });
    assert_eq!(error_code(reply_to(&mut s, 4)), ErrorCode::UnknownId);
    let ack = Request::Ack {
        id: 3,
        offsets: vec![(0, 0)],
    };
    send(&mut s, 5, &ack);
    assert_eq!(error_code(reply_to(&mut s, 5)), ErrorCode::UnknownId);
    send(&mut s, 6, &Request::Cancel { id: 3 });
    assert_eq!(error_code(reply_to(&mut s, 6)), ErrorCode::UnknownId);
}
