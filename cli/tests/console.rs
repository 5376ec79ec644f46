//! The web console (`GET /`, docs/console.md) of a running `sluice serve`.
//!
//! Without a browser: the page and each of its files are served with their Content-Type,
//! `Cache-Control: no-cache` and the page's Content-Security-Policy, an unknown file is 404, and
//! every request is counted as `request="console"` in `GET /metrics`.
//!
//! In headless Chromium (Debian's `chromium`, `--dump-dom` after a virtual-time budget that lets
//! the page poll a few times): after known work through the Rust client (25 messages on the two
//! partitions of `orders`, a named subscriber committed at 10 of partition 0's 15, a consumer
//! group on `orders` that acked 2 and holds 1, 40 jobs of which a connected consumer acked 15
//! and holds 5), the rendered DOM shows those figures in the topics, queues, connections and
//! groups views (with the broker's version and the clients' names), the message browser shows
//! the partition's keys, values and headers (a non-UTF-8 value as hex), and the segment map has
//! a bar per segment in offset order, the last one active and the first the one retention
//! reclaims next. Outside CI a missing Chromium skips that test; under `CI=true` it fails
//! (`common::kafka::missing`). The browser and DOM helpers are in `common/browser.rs`.
//!
//! `SLUICE_CONSOLE_SCREENSHOTS=<dir>` also writes screenshots of the views there, with traffic
//! running so the charts move (tests/console/screenshots.sh writes docs/console-*.png).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::browser::{chromium, dump, element, field, num, row_with, text};
use common::http::get;
use common::*;
use sluice::client::{
    Client, Consumer, Delivery, Header, LogSettings, QueueSettings, Record, Source, Start,
    SubscribeOptions, Subscription,
};

/// Segments of 600 bytes (below the default `segment_bytes_min`): two batches of three orders
/// each, so partition 0 of `orders` has three.
const CONFIG: &str = "[limits]\nsegment_bytes_min = 256\n";

#[test]
fn console_files_are_served_uncached_and_counted() {
    let (_tmp, dir) = data_dir();
    let server = start(&dir, None);
    let h = &server.http;
    let (status, head, page) = get(h, "/");
    let head = head.to_ascii_lowercase();
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    assert!(page.contains("<title>sluice console</title>"));
    let mut files = vec!["/console/console.css".to_string()];
    for f in [
        "console", "api", "dom", "chart", "views", "clients", "browse", "segments",
    ] {
        files.push(format!("/console/{f}.js"));
    }
    for f in &files {
        let (status, head, body) = get(h, f);
        let head = head.to_ascii_lowercase();
        assert_eq!(status, 200, "{f}: {head}");
        let want = if f.ends_with(".css") {
            "content-type: text/css; charset=utf-8"
        } else {
            "content-type: text/javascript; charset=utf-8"
        };
        assert!(head.contains(want), "{f}: {head}");
        assert!(head.contains("cache-control: no-cache"), "{f}: {head}");
        assert!(!body.is_empty(), "{f}");
        // Only this origin: no file names a scheme to fetch from.
        for far in ["http://", "https://", "//cdn"] {
            let outside = body.lines().any(|l| {
                l.contains(far) && !l.contains("www.w3.org/2000/svg") && !l.trim().starts_with("//")
            });
            assert!(!outside, "{f} refers to {far}");
        }
    }
    assert!(page.contains("/console/console.js") && page.contains("/console/console.css"));
    assert_eq!(get(h, "/console/nope.js").0, 404);
    let (_, _, metrics) = get(h, "/metrics");
    let line = r#"sluice_requests_total{protocol="http",request="console"} "#;
    let n: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .unwrap_or_else(|| panic!("no {line} in\n{metrics}"))
        .parse()
        .unwrap();
    assert_eq!(
        n as usize,
        files.len() + 2,
        "the page, its files and one 404"
    );
}

/// What the work below leaves connected: the queue consumer holding 5 jobs, the group consumer
/// holding an order, and the subscriber.
struct Held {
    _worker: Client,
    _consumer: Consumer,
    _group: Consumer,
    _jobs: Vec<Delivery>,
    _reader: Client,
    _sub: Subscription,
}

fn order(i: usize) -> Record {
    let mut r = Record::from_value(format!("order-{i}"));
    r.key = Some(format!("customer-{}", i % 4).into_bytes());
    r.headers = vec![Header::new("source", "console-test")];
    r
}

/// Creates `orders` (2 partitions of 600-byte segments, one day's retention) and `jobs`;
/// publishes 15 + 10 orders (the last of partition 1 not UTF-8) and 40 jobs; commits `billing`
/// at 10 on partition 0; a client named `console-test-worker` acks 15 jobs and holds 5, and in
/// the consumer group `fulfilment` of `orders` acks 2 orders and holds 1.
async fn work(addr: &str) -> Held {
    let admin = Client::connect(addr).await.unwrap();
    let settings = LogSettings {
        segment_bytes_max: Some(600),
        retention_ms: Some(86_400_000),
        ..LogSettings::default()
    };
    admin
        .create_topic_with_partitions("orders", settings, 2)
        .await
        .unwrap();
    admin
        .create_queue("jobs", QueueSettings::default())
        .await
        .unwrap();
    for batch in 0..5 {
        let recs: Vec<_> = (batch * 3..batch * 3 + 3).map(order).collect();
        admin
            .publish_to_partition("orders", 0, &recs)
            .await
            .unwrap();
    }
    let mut p1: Vec<_> = (15..24).map(order).collect();
    p1.push(Record::from_value(vec![0xffu8, 0x00, 0x10]));
    admin.publish_to_partition("orders", 1, &p1).await.unwrap();
    for batch in 0..4 {
        let jobs: Vec<_> = (0..10)
            .map(|i| Record::from_value(format!("job-{}", batch * 10 + i)))
            .collect();
        admin.publish("jobs", &jobs).await.unwrap();
    }
    let reader = Client::builder(addr)
        .client_name("billing-reader")
        .connect()
        .await
        .unwrap();
    let mut opts = SubscribeOptions::named("billing").from(Start::Earliest);
    opts.partitions = vec![0];
    let mut sub = reader.subscribe("orders", opts).await.unwrap();
    for _ in 0..10 {
        next_within(sub.next()).await.unwrap();
    }
    sub.commit(0, 10).await.unwrap();
    let worker = Client::builder(addr)
        .client_name("console-test-worker")
        .connect()
        .await
        .unwrap();
    // A prefetch of 5: three rounds of 5 taken and acked, then 5 taken and held in flight.
    let mut consumer = worker
        .consume(Source::Queue("jobs".into()), 5)
        .await
        .unwrap();
    for _ in 0..3 {
        for _ in 0..5 {
            next_within(consumer.next())
                .await
                .unwrap()
                .ack()
                .await
                .unwrap();
        }
    }
    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.push(next_within(consumer.next()).await.unwrap());
    }
    // A consumer group over `orders`, a prefetch of 1: two taken and acked, one taken and held.
    let src = Source::Group {
        topic: "orders".into(),
        group: "fulfilment".into(),
    };
    let mut group = worker.consume(src, 1).await.unwrap();
    for _ in 0..2 {
        next_within(group.next())
            .await
            .unwrap()
            .ack()
            .await
            .unwrap();
    }
    jobs.push(next_within(group.next()).await.unwrap());
    Held {
        _worker: worker,
        _consumer: consumer,
        _group: group,
        _jobs: jobs,
        _reader: reader,
        _sub: sub,
    }
}

async fn next_within<T>(f: impl std::future::Future<Output = Option<T>>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("a message within 30 s")
        .expect("the stream is open")
}

#[test]
fn console_shows_the_brokers_figures_in_chromium() {
    let Some(chromium) = chromium() else {
        return;
    };
    let (_tmp, dir) = data_dir();
    let server = start(&dir, Some(CONFIG));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let held = rt.block_on(work(&server.addr));
    let page = dump(&chromium, &server.http, "topics=orders");
    let segments = topics(&page);
    queues(&page);
    browser(&chromium, &server.http);
    connections_and_groups(&page);
    segment_map(&chromium, &server.http, segments);
    if let Some(out) = std::env::var_os("SLUICE_CONSOLE_SCREENSHOTS") {
        screenshots(&chromium, &server, &rt, Path::new(&out));
    }
    rt.block_on(async move { drop(held) });
}

/// The topics table and the detail of `orders`; returns partition 0's segment count.
fn topics(page: &str) -> u64 {
    let version = text(element(page, r#"id="broker-version""#));
    assert_eq!(version, concat!("v", env!("CARGO_PKG_VERSION")));
    let table = element(page, r#"id="topics-table""#);
    let row = element(table, r#"data-topic="orders""#);
    assert_eq!(num(row, "partitions"), 2);
    assert_eq!(num(row, "end_offset"), 25);
    assert_eq!(num(row, "messages"), 25);
    let chip = element(row, r#"data-subscriber="billing""#);
    // 5 behind on partition 0; on partition 1, where it read nothing, committed 0: 10 behind.
    assert!(chip.contains(r#"data-value="15""#), "billing's lag: {chip}");
    let parts = element(page, r#"id="partitions-table""#);
    let p0 = element(parts, r#"data-partition="0""#);
    assert_eq!((num(p0, "start_offset"), num(p0, "end_offset")), (0, 15));
    let p1 = element(parts, r#"data-partition="1""#);
    assert_eq!(num(p1, "end_offset"), 10);
    let segments = num(p0, "segments");
    assert!(
        segments >= 2,
        "600-byte segments: partition 0 has {segments}"
    );
    assert_eq!(num(row, "segments"), segments + num(p1, "segments"));
    let subs = element(page, r#"id="subscribers-table""#);
    let billing = element(subs, r#"data-subscriber="billing""#);
    assert_eq!(num(billing, "partition"), 0);
    assert_eq!((num(billing, "committed"), num(billing, "lag")), (10, 5));
    let groups = element(page, r#"id="topic-groups-table""#);
    let (mut depth, mut in_flight) = (0, 0);
    for (p, end) in [(0, 15), (1, 10)] {
        let row = element(
            groups,
            &format!("data-group=\"fulfilment\" data-partition=\"{p}\""),
        );
        assert_eq!(num(row, "end_offset"), end);
        depth += num(row, "depth");
        in_flight += num(row, "in_flight");
    }
    assert_eq!((depth, in_flight), (23, 1), "25 orders, 2 acked, 1 held");
    segments
}

/// The `jobs` row: 40 published, 15 acked, 5 in flight, 20 ready.
fn queues(page: &str) {
    let table = element(page, r#"id="queues-table""#);
    let jobs = element(table, r#"data-queue="jobs""#);
    assert_eq!(num(jobs, "end_offset"), 40);
    assert_eq!(num(jobs, "acked"), 15);
    assert_eq!(num(jobs, "in_flight"), 5);
    assert_eq!(num(jobs, "depth"), 25);
    assert_eq!(num(jobs, "ready"), 20);
    assert_eq!(num(jobs, "dead_lettered"), 0);
    assert!(jobs.contains("<svg class=\"spark depth\""), "{jobs}");
}

/// The two named clients with what they consume, and `billing` among the groups.
fn connections_and_groups(page: &str) {
    let conns = element(page, r#"id="connections-table""#);
    let worker = row_with(conns, "console-test-worker");
    assert_eq!(field(worker, "protocol"), "native");
    assert!(
        worker.contains(r#"data-kind="queue" data-name="jobs""#),
        "{worker}"
    );
    assert!(
        worker.contains(r#"data-kind="group" data-name="fulfilment""#),
        "{worker}"
    );
    assert!(num(worker, "requests") >= 17, "17 acks at least");
    let reader = row_with(conns, "billing-reader");
    assert!(
        reader.contains(r#"data-kind="topic" data-name="orders""#),
        "{reader}"
    );
    let groups = element(page, r#"id="groups-table""#);
    let billing = element(groups, r#"data-group="billing""#);
    assert_eq!(num(billing, "lag"), 15);
    assert!(text(billing).contains("orders"), "{billing}");
}

/// Partition 0's messages with keys and headers; partition 1's last value, not UTF-8, as hex.
fn browser(chromium: &Path, http: &str) {
    let page = dump(chromium, http, "browse=topic:orders:0&offset=0&count=15");
    let status = element(&page, r#"id="browse-status""#);
    assert!(status.contains(r#"data-count="15""#), "{status}");
    let table = element(&page, r#"id="messages-table""#);
    for i in 0..15 {
        let row = element(table, &format!("data-offset=\"{i}\""));
        assert_eq!(field(row, "value"), format!("order-{i}"));
        assert_eq!(field(row, "key"), format!("customer-{}", i % 4));
        assert_eq!(field(row, "headers"), "source console-test");
        let ts = element(row, r#"data-field="timestamp_ms""#);
        assert!(
            ts.contains(r#"data-value="1"#) && text(ts).starts_with("20"),
            "{ts}"
        );
    }
    assert!(!table.contains("data-offset=\"15\""));
    let page = dump(chromium, http, "browse=topic:orders:1&offset=9&count=1");
    let row = element(&page, r#"data-offset="9""#);
    let value = element(row, r#"data-field="value""#);
    assert!(value.contains(r#"data-format="hex""#), "{value}");
    assert_eq!(text(value), "hexff0010");
}

/// Partition 0's segment map: a bar per segment from offset 0, the last one active, the first
/// the one retention reclaims next.
fn segment_map(chromium: &Path, http: &str, segments: u64) {
    let page = dump(chromium, http, "segments=topic:orders:0");
    let summary = element(&page, r#"id="segments-summary""#);
    assert!(
        summary.contains(&format!("data-segments=\"{segments}\"")),
        "{summary}"
    );
    let map = element(&page, r#"id="segment-map""#);
    let bars: Vec<&str> = map
        .match_indices("<div class=\"seg ")
        .map(|(i, _)| element(&map[i..], "class=\"seg "))
        .collect();
    assert_eq!(bars.len() as u64, segments, "{map}");
    assert!(bars[0].contains(r#"data-segment="0""#), "{}", bars[0]);
    assert!(text(bars[0]).starts_with("0–"), "{}", bars[0]);
    let active: Vec<_> = bars
        .iter()
        .filter(|b| b.contains(r#"data-active="true""#))
        .collect();
    assert_eq!(active.len(), 1, "{map}");
    assert!(bars[bars.len() - 1].contains(r#"data-active="true""#));
    // A day's retention: each sealed segment goes at a known time, the oldest first; the active
    // one never.
    for bar in &bars[..bars.len() - 1] {
        assert!(bar.contains(r#"data-reclaim="retention_ms""#), "{bar}");
    }
    assert!(!bars[bars.len() - 1].contains("data-reclaim"));
    assert!(
        bars[0].starts_with("<div class=\"seg sealed reclaim next\""),
        "{}",
        bars[0]
    );
    assert!(text(bars[0]).contains("reclaimed next"), "{}", bars[0]);
    let table = element(&page, r#"id="segments-table""#);
    let mut next = 0;
    for bar in &bars {
        let base = bar
            .split("data-segment=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let row = element(table, &format!("data-segment=\"{base}\""));
        assert_eq!(num(row, "base_offset"), next, "segments follow each other");
        next = num(row, "next_offset");
    }
    assert_eq!(next, 15);
}

/// Screenshots of each view, in real time with traffic running so the rates and trends move
/// (tests/console/shot.mjs drives Chromium through the DevTools protocol).
fn screenshots(chromium: &Path, server: &ServerProc, rt: &tokio::runtime::Runtime, out: &Path) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = rt.spawn(traffic(server.addr.clone(), stop.clone()));
    std::fs::create_dir_all(out).unwrap();
    let h = &server.http;
    let mut args = vec![
        "--experimental-websocket".to_string(),
        common::kafka::repo_root()
            .join("tests/console/shot.mjs")
            .display()
            .to_string(),
        chromium.display().to_string(),
        "24".to_string(),
    ];
    for (name, hash) in [
        ("overview", "overview"),
        ("topics", "topics=orders"),
        ("queues", "queues=jobs"),
        ("connections", "clients"),
        ("groups", "groups=billing"),
        ("messages", "browse=topic:orders:0&offset=0&count=20"),
        ("segments", "segments=topic:orders:0"),
    ] {
        let file = out.join(format!("console-{name}.png"));
        args.push(format!("http://{h}/#{hash}={}", file.display()));
    }
    let status = Command::new("node")
        .args(&args)
        .status()
        .expect("run node tests/console/shot.mjs");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.block_on(traffic).unwrap();
    assert!(status.success(), "shot.mjs failed");
}

/// Steady work for the screenshots: about 20 orders (to partition 1) and 30 jobs a second published, jobs
/// acked at about 20 a second by a second consumer, until `stop`.
async fn traffic(addr: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let c = Client::builder(&addr)
        .client_name("load-generator")
        .connect()
        .await
        .unwrap();
    let w = Client::builder(&addr)
        .client_name("report-worker")
        .connect()
        .await
        .unwrap();
    let mut consumer = w.consume(Source::Queue("jobs".into()), 50).await.unwrap();
    let acker = tokio::spawn(async move {
        while let Some(Ok(job)) = consumer.next().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if job.ack().await.is_err() {
                break;
            }
        }
    });
    let mut i = 1000;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // Partition 1 only: partition 0 keeps its three segments for the segment map.
        let recs: Vec<_> = (i..i + 2).map(order).collect();
        c.publish_to_partition("orders", 1, &recs).await.unwrap();
        let job = Record::from_value(format!("job-{i}"));
        c.publish("jobs", &[job.clone(), job.clone(), job])
            .await
            .unwrap();
        i += 2;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    acker.abort();
}
