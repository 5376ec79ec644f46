//! A replica moved onto a node after its group's log was cut, against real `sluice serve`
//! processes: three nodes hold a topic past its retention and a queue whose acked segments
//! went. A fourth node joins and the first is removed, so both groups move onto the new node,
//! which cannot copy the entries that are gone: it installs a snapshot (where the log goes on,
//! and the queue's ack state) and copies the rest. Its partition then starts where the
//! others' do and holds what they hold; its queue counts what they count. Then it serves:
//! with the two others killed in turn, it leads both groups, and the topic reads whole from
//! its start while the queue delivers every message not acked, and none that was, and a
//! consumer group of the topic (whose state on the partition came with the snapshot) goes on.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{
    client_of, cluster_id, joining_node, live_addrs, next_delivery, started_cluster, wait_queue,
    wait_voters, Node, STEP,
};
use sluice::client::{Client, SubscribeOptions};
use sluice::protocol::{LogSettings, QueueSettings, Source, Start, Target};
use sluice::storage::Record;

/// The smallest segment a client may ask for (the server's `segment_bytes_min`).
const SEGMENT_BYTES: u64 = 1 << 20;
/// The topic's retention by size: two segments' worth.
const RETENTION_BYTES: u64 = 2 * SEGMENT_BYTES;
/// 1 KiB messages, 6,000 of them: about six segments.
const MESSAGE_BYTES: usize = 1024;
const MESSAGES: usize = 6_000;
/// How many of the queue's messages are acked before the move.
const ACKED: usize = 5_000;
/// Published while one of the old replicas is down, so that the new node's log is ahead.
const LATER: usize = 20;
const PUBLISH_BATCH: usize = 100;
/// How many of the topic's messages its consumer group acks before the move.
const GROUP_ACKED: usize = 100;
/// Longest the replicas may take to move.
const MOVE_WAIT: Duration = Duration::from_secs(120);

fn message(prefix: &str, i: usize) -> Record {
    let mut v = format!("{prefix}-{i}-").into_bytes();
    v.resize(MESSAGE_BYTES, b'.');
    Record::from_value(v)
}

fn index_of(value: &[u8]) -> usize {
    let s = String::from_utf8_lossy(value);
    s.split('-').nth(1).unwrap().parse().unwrap()
}

async fn publish(client: &Client, target: Target, from: usize, count: usize) {
    for start in (from..from + count).step_by(PUBLISH_BATCH) {
        let records: Vec<Record> = (start..(start + PUBLISH_BATCH).min(from + count))
            .map(|i| message("m", i))
            .collect();
        client.publish_to(target.clone(), &records).await.unwrap();
    }
}

/// `(start offset, end offset)` of the topic's partition on `node`, as its own log has it.
async fn partition(node: &Node) -> (u64, u64) {
    let c = Client::connect(&node.native).await.unwrap();
    let info = c.describe_topic("logs").await.unwrap();
    (
        info.partitions[0].start_offset,
        info.partitions[0].end_offset,
    )
}

/// Waits (at most [`STEP`]) until the partition on every node of `nodes` satisfies `done`;
/// their `(start, end)`.
async fn wait_partitions(
    nodes: &[&Node],
    what: &str,
    done: impl Fn(&[(u64, u64)]) -> bool,
) -> Vec<(u64, u64)> {
    let deadline = Instant::now() + STEP;
    loop {
        let mut all = Vec::new();
        for n in nodes {
            all.push(partition(n).await);
        }
        if done(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "{what}: {all:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Consumes and acks `count` messages of the queue; their indexes.
async fn consume_and_ack(client: &Client, count: usize) -> Vec<usize> {
    consume_and_ack_from(client, Source::Queue("jobs".into()), count).await
}

/// Consumes and acks `count` messages of `source`; their indexes.
async fn consume_and_ack_from(client: &Client, source: Source, count: usize) -> Vec<usize> {
    let mut consumer = client.consume(source, 1000).await.unwrap();
    let acker = consumer.acker();
    let (mut got, mut batch) = (Vec::new(), Vec::new());
    while got.len() < count {
        let d = next_delivery(&mut consumer, "a message to ack").await;
        got.push(index_of(&d.record.value));
        batch.push(d.offset());
        if batch.len() == 500 || got.len() == count {
            acker.ack_offsets(&batch).await.unwrap();
            batch.clear();
        }
    }
    got
}

/// The messages of the topic from its start up to message `last`, through `client`: their
/// indexes.
async fn read_topic(client: &Client, last: usize) -> Vec<usize> {
    let opts = SubscribeOptions {
        start: Start::Earliest,
        ..Default::default()
    };
    let mut sub = client.subscribe("logs", opts).await.unwrap();
    let mut got = Vec::new();
    while got.last() != Some(&last) {
        match tokio::time::timeout(STEP, sub.next()).await {
            Ok(Some(Ok(m))) => got.push(index_of(&m.record.value)),
            other => panic!("reading the topic after {} messages: {other:?}", got.len()),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_moved_onto_a_node_after_the_log_was_cut_is_whole_and_serves() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = started_cluster(root.path(), 3);
    let client = client_of(&live_addrs(&nodes)).await;
    let log = LogSettings {
        segment_bytes_max: Some(SEGMENT_BYTES),
        ..Default::default()
    };
    let topic = LogSettings {
        retention_bytes: Some(RETENTION_BYTES),
        ..log.clone()
    };
    client.create_topic("logs", topic).await.unwrap();
    let queue = QueueSettings {
        log,
        ..Default::default()
    };
    client.create_queue("jobs", queue).await.unwrap();
    publish(&client, Target::Topic("logs".into()), 0, MESSAGES).await;
    publish(&client, Target::Queue("jobs".into()), 0, MESSAGES).await;
    let acked: BTreeSet<usize> = consume_and_ack(&client, ACKED).await.into_iter().collect();
    assert_eq!(acked.len(), ACKED);
    // A consumer group of the topic: its state on the partition goes with the snapshot.
    let group = || Source::Group {
        topic: "logs".into(),
        group: "g".into(),
    };
    let group_acked = consume_and_ack_from(&client, group(), GROUP_ACKED).await;

    // Every node cuts both logs.
    let three: Vec<&Node> = nodes.iter().collect();
    let cut = wait_partitions(&three, "retention on every node", |all| {
        all.iter().all(|p| p.0 > 0) && all.windows(2).all(|w| w[0] == w[1])
    })
    .await[0];
    // The queue's acked segments go too (the queue's log starts past its first segment).
    for n in &nodes {
        wait_queue(&n.native, "jobs", |q| {
            q.depth as usize == MESSAGES - ACKED && q.start_offset > 2 * SEGMENT_BYTES / 1024
        })
        .await;
    }
    eprintln!("partition cut to {cut:?}");

    // Node 4 joins and node 1 goes: both groups move onto node 4.
    let addrs = live_addrs(&nodes);
    let (fourth, fourth_spec) = joining_node(root.path(), 4, &cluster_id(&addrs));
    nodes.push(fourth);
    common::cli_ok(&addrs, &["cluster", "add-node", &fourth_spec], None);
    nodes[0].kill9();
    let survivors = live_addrs(&nodes);
    common::cli_ok(&survivors, &["cluster", "remove-node", "1"], None);
    for group in ["t/logs/0", "q/jobs"] {
        wait_voters(&nodes, group, &[2, 3, 4], MOVE_WAIT).await;
    }

    // Node 4's partition starts where the others' do and ends where they end; its queue
    // counts the same messages waiting (its ack state came with the snapshot).
    let live: Vec<&Node> = nodes[1..].iter().collect();
    let moved = wait_partitions(&live, "the partition on node 4", |all| {
        all.windows(2).all(|w| w[0] == w[1])
    })
    .await;
    assert!(moved[2].0 >= cut.0 && moved[2].0 > 0, "{moved:?}");
    let figures =
        |q: &sluice::protocol::QueueInfo| (q.start_offset, q.end_offset, q.ack_floor, q.depth);
    let deadline = Instant::now() + STEP;
    loop {
        let mut all = Vec::new();
        for n in &live {
            let c = Client::connect(&n.native).await.unwrap();
            all.push(figures(&c.describe_queue("jobs").await.unwrap()));
        }
        let same = all.windows(2).all(|w| w[0] == w[1]);
        if same && all[2].3 as usize == MESSAGES - ACKED && all[2].0 > 0 && all[2].2 > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue on nodes 2, 3, 4: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Node 2 dies; what is published then is on nodes 3 and 4 only. Then node 3 dies and
    // node 2 comes back: only node 4 has every entry, so it leads both groups.
    nodes[1].kill9();
    let client = client_of(&live_addrs(&nodes)).await;
    publish(&client, Target::Topic("logs".into()), MESSAGES, LATER).await;
    publish(&client, Target::Queue("jobs".into()), MESSAGES, LATER).await;
    drop(client);
    nodes[2].kill9();
    nodes[1].start(&spec);
    let client = client_of(&live_addrs(&nodes)).await;

    // The topic reads whole from node 4's start: every message from there on, in order.
    let got = read_topic(&client, MESSAGES + LATER - 1).await;
    let first = got[0];
    assert!(
        first > 0 && first < MESSAGES,
        "the topic starts at message {first}"
    );
    assert_eq!(
        got,
        (first..MESSAGES + LATER).collect::<Vec<_>>(),
        "the topic from node 4's start"
    );
    // The queue delivers every message not acked before the move, and the later ones, each
    // once; none that was acked.
    let rest: BTreeSet<usize> = consume_and_ack(&client, MESSAGES - ACKED + LATER)
        .await
        .into_iter()
        .collect();
    let want: BTreeSet<usize> = (0..MESSAGES + LATER)
        .filter(|i| !acked.contains(i))
        .collect();
    assert_eq!(rest, want);
    // The topic's group on node 4 delivers from where it was or from node 4's start, whichever
    // is later: each message once, none it acked.
    let from = first.max(group_acked.iter().max().unwrap() + 1);
    let rest = consume_and_ack_from(&client, group(), MESSAGES + LATER - from).await;
    assert_eq!(rest, (from..MESSAGES + LATER).collect::<Vec<_>>());
}
