//! A topic and a queue deleted and created again under the same name on a cluster of three
//! real `sluice serve` processes: the new ones start empty, take publishes, and keep them
//! through a SIGKILL and restart of every node (the metadata applied again over a store that
//! holds the new ones).

mod common;

use std::time::{Duration, Instant};

use common::cluster::{client_of, live_addrs, started_cluster, STEP};
use sluice::client::{Client, SubscribeOptions};
use sluice::protocol::{LogSettings, QueueSettings, Start, Target};
use sluice::storage::Record;

async fn publish(client: &Client, target: Target, prefix: &str, count: usize) {
    let records: Vec<Record> = (0..count)
        .map(|i| Record::from_value(format!("{prefix}-{i}").into_bytes()))
        .collect();
    client.publish_to(target, &records).await.unwrap();
}

/// Every message of topic `name` from its start, read through `client` until `count` came.
async fn read_topic(client: &Client, name: &str, count: usize) -> Vec<String> {
    let opts = SubscribeOptions {
        start: Start::Earliest,
        ..Default::default()
    };
    let mut sub = client.subscribe(name, opts).await.unwrap();
    let mut got = Vec::new();
    while got.len() < count {
        match tokio::time::timeout(STEP, sub.next()).await {
            Ok(Some(Ok(m))) => got.push(String::from_utf8_lossy(&m.record.value).into_owned()),
            other => panic!("reading {name} after {got:?}: {other:?}"),
        }
    }
    got
}

/// Creates topic `again` and queue `jobs`.
async fn create_both(client: &Client) {
    let topic = client.create_topic("again", LogSettings::default());
    topic.await.unwrap();
    let queue = client.create_queue("jobs", QueueSettings::default());
    queue.await.unwrap();
}

async fn queue_depth(client: &Client, name: &str) -> Option<u64> {
    client.describe_queue(name).await.ok().map(|q| q.depth)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_and_a_queue_created_again_after_a_delete_start_empty_and_keep_what_they_take() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = started_cluster(root.path(), 3);
    let client = client_of(&live_addrs(&nodes)).await;
    let topic = || Target::Topic("again".into());
    let queue = || Target::Queue("jobs".into());
    create_both(&client).await;
    publish(&client, topic(), "old", 10).await;
    publish(&client, queue(), "old", 10).await;
    client.delete_topic("again").await.unwrap();
    client.delete_queue("jobs").await.unwrap();
    create_both(&client).await;
    publish(&client, topic(), "new", 5).await;
    publish(&client, queue(), "new", 5).await;
    let want: Vec<String> = (0..5).map(|i| format!("new-{i}")).collect();
    assert_eq!(read_topic(&client, "again", 5).await, want);
    assert_eq!(queue_depth(&client, "jobs").await, Some(5));

    for n in nodes.iter_mut() {
        n.kill9();
    }
    for n in nodes.iter_mut() {
        n.start(&spec);
    }
    let client = client_of(&live_addrs(&nodes)).await;
    publish(&client, topic(), "later", 1).await;
    let mut want = want;
    want.push("later-0".into());
    assert_eq!(read_topic(&client, "again", 6).await, want);
    let deadline = Instant::now() + STEP;
    while queue_depth(&client, "jobs").await != Some(5) {
        assert!(
            Instant::now() < deadline,
            "the queue's depth after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every node holds the same partition (its log also holds entries that are not
    // records: a new leader's first one).
    let deadline = Instant::now() + STEP;
    loop {
        let mut spans = Vec::new();
        for n in &nodes {
            let c = Client::connect(&n.native).await.unwrap();
            let t = c.describe_topic("again").await.unwrap();
            spans.push((t.partitions[0].start_offset, t.partitions[0].end_offset));
        }
        if spans.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes' partitions: {spans:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
