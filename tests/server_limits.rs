//! Misbehaving clients, limits, the data-directory lock and graceful shutdown, against the real
//! `sluice` binary. Raw sockets speak the protocol by hand (docs/protocol.md). Abuse covered:
//! garbage, an oversized length prefix, a client stalled mid-frame, no handshake, a connection
//! flood beyond the limit, a consumer that never acks and a subscriber that never reads (server
//! memory stays bounded and well-behaved clients keep their latency).

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
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
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

/// A consumer that never acks and a subscriber that never reads its socket (with the most credit)
/// stall while 48 MiB are published: the server's memory grows by far less than that, a
/// well-behaved subscriber and consumer get everything they are owed, and small publishes on
/// another connection keep a normal round trip.
#[test]
fn stalled_consumer_and_subscriber_keep_memory_bounded_and_others_served() {
    const VALUE: usize = 4096;
    const PER_BATCH: usize = 64; // 256 KiB batches
    const WARM_BATCHES: u64 = 32; // 8 MiB before the first measure
    const BULK_BATCHES: u64 = 192; // 48 MiB measured
    const QUEUE_MSGS: u64 = 5_000;
    const STALLED_PREFETCH: u32 = 1_000;
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = server.addr.clone();
    rt.block_on(async {
        let c = Client::connect(&addr).await.unwrap();
        c.create_topic("big", LogSettings::default()).await.unwrap();
        c.create_topic("probe", LogSettings::default())
            .await
            .unwrap();
        let settings = QueueSettings {
            ack_timeout_ms: Some(600_000),
            ..QueueSettings::default()
        };
        c.create_queue("work", settings).await.unwrap();
    });
    // Neither of these sockets is ever read again.
    let mut stalled_sub = connect(&addr);
    hello(&mut stalled_sub);
    let sub = Request::Subscribe {
        topic: "big".into(),
        name: Some("stalled".into()),
        start: Start::Earliest,
        credit: 100_000,
    };
    stalled_sub.write_all(&sub.encode(2).to_vec()).unwrap();
    let mut stalled_consumer = connect(&addr);
    hello(&mut stalled_consumer);
    let consume = Request::Consume {
        source: Source::Queue("work".into()),
        prefetch: STALLED_PREFETCH,
    };
    stalled_consumer
        .write_all(&consume.encode(2).to_vec())
        .unwrap();

    let big_batch = |b: u64| -> Vec<Record> {
        (0..PER_BATCH)
            .map(|i| Record::from_value(vec![(b as usize + i) as u8; VALUE]))
            .collect()
    };
    let (growth_kib, before_kib, probes, good_sub, good_consumer, q) = rt.block_on(async {
        let c = Client::connect(&addr).await.unwrap();
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

        // Round trips of small publishes on their own connection while the bulk runs.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = {
            let (addr, stop) = (addr.clone(), stop.clone());
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
        };
        // A well-behaved subscriber reads all of it.
        let good_sub = {
            let addr = addr.clone();
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
        };
        // A well-behaved consumer acks everything the stalled one does not hold.
        let good_consumer = {
            let addr = addr.clone();
            tokio::spawn(async move {
                let c = Client::connect(&addr).await.unwrap();
                let mut cons = c.consume(Source::Queue("work".into()), 100).await.unwrap();
                let acker = cons.acker();
                let mut got = std::collections::BTreeSet::new();
                let mut to_ack = Vec::new();
                while let Ok(Some(d)) =
                    tokio::time::timeout(Duration::from_secs(3), cons.next()).await
                {
                    let d = d.unwrap();
                    assert!(got.insert(d.offset), "{} delivered twice", d.offset);
                    to_ack.push(d.offset);
                    if cons.buffered() == 0 {
                        acker.ack(&to_ack).await.unwrap();
                        to_ack.clear();
                    }
                }
                acker.ack(&to_ack).await.unwrap();
                got.len() as u64
            })
        };
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
        (
            after.saturating_sub(before),
            before,
            probes,
            good_sub,
            good_consumer,
            q,
        )
    });
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
        good_sub,
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
        growth_kib < 32 * 1024,
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
    drop(stalled_sub);
    drop(stalled_consumer);
}
