//! A replicated queue's acked segments, against three real `sluice serve` processes: while one
//! replica is stopped (SIGSTOP) no node drops a segment it lacks, however much is acked; once it
//! is back and caught up, every node reclaims the acked segments; and after every node is
//! killed and restarted, the queue is whole: nothing acked comes back, new messages flow.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    client_of, leader_of, next_delivery as next, started_cluster, wait_queue, Node, STEP,
};
use sluice::client::Client;
use sluice::protocol::{LogSettings, QueueSettings, Source, Target};
use sluice::storage::Record;

/// The smallest segment a client may ask for (the server's `segment_bytes_min`).
const SEGMENT_BYTES: u64 = 1 << 20;
/// 1 KiB messages, 6,000 of them: about six segments.
const MESSAGE_BYTES: usize = 1024;
const MESSAGES: usize = 6_000;
const PUBLISH_BATCH: usize = 100;

/// The queue's segment files on `node`.
fn segments(node: &Node) -> usize {
    let dir = node.dir.join("queues/jobs/log");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .count()
}

fn addrs(nodes: &[Node]) -> String {
    let all: Vec<&str> = nodes.iter().map(|n| n.native.as_str()).collect();
    all.join(",")
}

/// Waits (at most [`STEP`]) until every node holds at most `most` segments of the queue.
async fn wait_segments(nodes: &[Node], most: usize) {
    let deadline = Instant::now() + STEP;
    loop {
        let counts: Vec<usize> = nodes.iter().map(segments).collect();
        if counts.iter().all(|&c| c <= most) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "segments per node {counts:?}, expected at most {most}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Consumes `count` messages from the queue's leader, each first delivered now, acking them
/// in batches; their values.
async fn consume_and_ack(client: &Client, count: usize) -> Vec<Vec<u8>> {
    let mut consumer = client
        .consume(Source::Queue("jobs".into()), 1000)
        .await
        .unwrap();
    let acker = consumer.acker();
    let (mut values, mut batch) = (Vec::new(), Vec::new());
    while values.len() < count {
        let d = next(&mut consumer, "a message to ack").await;
        assert_eq!(d.attempt, 1, "offset {} delivered again", d.offset);
        values.push(d.record.value.clone());
        batch.push(d.offset());
        if batch.len() == 500 || values.len() == count {
            acker.ack_offsets(&batch).await.unwrap();
            batch.clear();
        }
    }
    values
}

async fn publish(client: &Client, from: usize, count: usize) {
    for start in (from..from + count).step_by(PUBLISH_BATCH) {
        let records: Vec<Record> = (start..(start + PUBLISH_BATCH).min(from + count))
            .map(|i| {
                let mut v = format!("job-{i}-").into_bytes();
                v.resize(MESSAGE_BYTES, b'.');
                Record::from_value(v)
            })
            .collect();
        client
            .publish_to(Target::Queue("jobs".into()), &records)
            .await
            .unwrap();
    }
}

fn index_of(value: &[u8]) -> usize {
    let s = String::from_utf8_lossy(value);
    s.split('-').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_segments_leave_every_node_once_every_replica_has_them() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = started_cluster(root.path(), 3);
    let client = client_of(&addrs(&nodes)).await;
    let settings = QueueSettings {
        log: LogSettings {
            segment_bytes_max: Some(SEGMENT_BYTES),
            ..Default::default()
        },
        ..Default::default()
    };
    client.create_queue("jobs", settings).await.unwrap();
    let lead = leader_of(&nodes, "q/jobs").await;

    // One follower stops before anything is published: it has none of the messages. (The
    // leader is called directly: a client given every node might pick the stopped one.)
    let stopped = (lead + 1) % 3;
    nodes[stopped].signal(libc::SIGSTOP);
    let direct = Client::connect(&nodes[lead].native).await.unwrap();
    publish(&direct, 0, MESSAGES).await;
    let values = consume_and_ack(&direct, MESSAGES).await;
    assert_eq!(values.len(), MESSAGES);
    let running: Vec<usize> = (0..3).filter(|&i| i != stopped).collect();
    for &i in &running {
        wait_queue(&nodes[i].native, "jobs", |q| {
            q.depth == 0 && q.in_flight == 0
        })
        .await;
    }
    let full = segments(&nodes[lead]);
    assert!(full >= 5, "{full} segments: the test needs several");
    // Every message is acked and committed, but the stopped replica lacks them all: however
    // long the others look, no segment goes.
    tokio::time::sleep(3 * sluice::cluster::compact::COMPACT_CHECK_INTERVAL).await;
    for &i in &running {
        assert_eq!(
            segments(&nodes[i]),
            full,
            "node {} dropped segments a stopped replica lacks",
            nodes[i].id
        );
    }

    // Back, it catches up; then every node reclaims the acked segments (the active one stays).
    nodes[stopped].signal(libc::SIGCONT);
    wait_queue(&nodes[stopped].native, "jobs", |q| q.depth == 0).await;
    wait_segments(&nodes, 2).await;

    // Every node killed and restarted: the queue is whole and goes on.
    for n in nodes.iter_mut() {
        n.kill9();
    }
    for n in nodes.iter_mut() {
        n.start(&spec);
    }
    let client = client_of(&addrs(&nodes)).await;
    publish(&client, MESSAGES, 200).await;
    // Only the new messages come, each once, first delivered now.
    let mut after: Vec<usize> = consume_and_ack(&client, 200)
        .await
        .iter()
        .map(|v| index_of(v))
        .collect();
    after.sort_unstable();
    assert_eq!(after, (MESSAGES..MESSAGES + 200).collect::<Vec<_>>());
    for n in &nodes {
        wait_queue(&n.native, "jobs", |q| q.depth == 0 && q.in_flight == 0).await;
    }
    wait_segments(&nodes, 2).await;
}
