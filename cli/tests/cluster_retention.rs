//! A replicated topic's retention, against three real `sluice serve` processes: while one
//! replica is stopped (SIGSTOP) no node drops a segment it lacks, however far past its limit
//! the partition grows; once it is back and caught up, every node deletes the same segments
//! and starts the partition at the same offset, holding the same messages from there; after
//! every node is killed and restarted the partition is whole from that start.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{client_of, leader_of, started_cluster, Node, STEP};
use sluice::client::{Client, SubscribeOptions};
use sluice::protocol::{LogSettings, Start};
use sluice::storage::Record;

/// The smallest segment a client may ask for (the server's `segment_bytes_min`).
const SEGMENT_BYTES: u64 = 1 << 20;
/// Retention by size: two segments' worth.
const RETENTION_BYTES: u64 = 2 * SEGMENT_BYTES;
/// 1 KiB messages, 6,000 of them: about six segments.
const MESSAGE_BYTES: usize = 1024;
const MESSAGES: usize = 6_000;
const PUBLISH_BATCH: usize = 100;

fn addrs(nodes: &[Node]) -> String {
    let all: Vec<&str> = nodes.iter().map(|n| n.native.as_str()).collect();
    all.join(",")
}

async fn publish(client: &Client, from: usize, count: usize) {
    for start in (from..from + count).step_by(PUBLISH_BATCH) {
        let records: Vec<Record> = (start..(start + PUBLISH_BATCH).min(from + count))
            .map(|i| {
                let mut v = format!("m-{i}-").into_bytes();
                v.resize(MESSAGE_BYTES, b'.');
                Record::from_value(v)
            })
            .collect();
        client.publish("logs", &records).await.unwrap();
    }
}

/// `(start offset, end offset, segments)` of the partition on `node`.
async fn partition(node: &Node) -> (u64, u64, u32) {
    let c = Client::connect(&node.native).await.unwrap();
    let info = c.describe_topic("logs").await.unwrap();
    let p = &info.partitions[0];
    (p.start_offset, p.end_offset, p.segments)
}

/// Waits (at most [`STEP`]) until `done` holds of the partition on every node.
async fn wait_all(nodes: &[Node], what: &str, done: impl Fn((u64, u64, u32)) -> bool) {
    let deadline = Instant::now() + STEP;
    loop {
        let mut all = Vec::new();
        for n in nodes {
            all.push(partition(n).await);
        }
        if all.iter().all(|p| done(*p)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: (start, end, segments) {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The message indexes `node` holds, from the partition's start.
async fn read(node: &Node) -> Vec<usize> {
    let c = Client::connect(&node.native).await.unwrap();
    let opts = SubscribeOptions::anonymous()
        .from(Start::Earliest)
        .credit(4096);
    let mut sub = c.subscribe("logs", opts).await.unwrap();
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        let s = String::from_utf8_lossy(&m.record.value).to_string();
        out.push(s.split('-').nth(1).unwrap().parse().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_only_what_every_replica_has() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = started_cluster(root.path(), 3);
    let client = client_of(&addrs(&nodes)).await;
    let settings = LogSettings {
        segment_bytes_max: Some(SEGMENT_BYTES),
        retention_bytes: Some(RETENTION_BYTES),
        ..Default::default()
    };
    client.create_topic("logs", settings).await.unwrap();
    let lead = leader_of(&nodes, "t/logs/0").await;

    // One follower stops before anything is published: it has none of the messages.
    let stopped = (lead + 1) % 3;
    nodes[stopped].signal(libc::SIGSTOP);
    let direct = Client::connect(&nodes[lead].native).await.unwrap();
    publish(&direct, 0, MESSAGES).await;
    let running: Vec<usize> = (0..3).filter(|&i| i != stopped).collect();
    let (_, _, full) = partition(&nodes[lead]).await;
    assert!(full >= 5, "{full} segments: the test needs several");
    tokio::time::sleep(3 * sluice::cluster::compact::COMPACT_CHECK_INTERVAL).await;
    for &i in &running {
        let (start, _, segments) = partition(&nodes[i]).await;
        assert_eq!(
            (start, segments),
            (0, full),
            "node {} dropped segments a stopped replica lacks",
            nodes[i].id
        );
    }

    // Back, it catches up; then every node deletes the same segments.
    nodes[stopped].signal(libc::SIGCONT);
    wait_all(
        &nodes,
        "retention after the catch-up",
        |(start, _, segments)| start > 0 && segments <= 3,
    )
    .await;
    let starts: Vec<u64> = {
        let mut v = Vec::new();
        for n in &nodes {
            v.push(partition(n).await.0);
        }
        v
    };
    assert!(starts.iter().all(|s| *s == starts[0]), "starts {starts:?}");
    let held = read(&nodes[0]).await;
    assert!(
        !held.is_empty() && held.len() < MESSAGES,
        "{} held",
        held.len()
    );
    // The newest messages, in order, up to the last one published.
    let first = held[0];
    assert_eq!(held, (first..MESSAGES).collect::<Vec<_>>());
    for n in &nodes[1..] {
        assert_eq!(read(n).await, held, "node {} holds other messages", n.id);
    }

    // Every node killed and restarted: the partition starts where it did and goes on.
    for n in nodes.iter_mut() {
        n.kill9();
    }
    for n in nodes.iter_mut() {
        n.start(&spec);
    }
    let client = client_of(&addrs(&nodes)).await;
    publish(&client, MESSAGES, 200).await;
    for n in &nodes {
        let got = read(n).await;
        assert_eq!(got.first(), held.first(), "node {}", n.id);
        assert_eq!(got.last(), Some(&(MESSAGES + 199)), "node {}", n.id);
    }
}
