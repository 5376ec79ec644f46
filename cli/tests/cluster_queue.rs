//! Replicated queues against three real `sluice serve` processes: a queue created through any
//! node exists on every node with a replicated log of its own; publishes through any node;
//! consumers on a follower are refused (`NotLeader`), and the client given every node opens them
//! on the leader; on the leader, a message nacked up to its
//! delivery bound is dead-lettered into the dead-letter queue (whose log another node may lead);
//! after a SIGKILL of the queue's leader, the new leader never delivers an acked message again,
//! redelivers every message that was delivered and not acked (attempt 2) and every other one,
//! and the restarted node catches up to the same ack state. A queue held by one node is
//! described alike by every node (its leader's figures).

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use common::cluster::{
    client_of, leader_of, next_delivery as next, publish_to_queue, started_cluster, wait_queue,
    Node, STEP,
};
use sluice::client::{Client, Consumer};
use sluice::protocol::{LogSettings, QueueSettings, Source};

const MESSAGES: u64 = 300;

fn addrs(nodes: &[Node]) -> String {
    common::cluster::live_addrs(nodes)
}

/// The leader's consumer of `queue`, once its leader is known.
async fn consumer_on_leader(nodes: &[Node], queue: &str, prefetch: u32) -> (usize, Consumer) {
    let lead = leader_of(nodes, &format!("q/{queue}")).await;
    let c = Client::connect(&nodes[lead].native).await.unwrap();
    let consumer = c
        .consume(Source::Queue(queue.into()), prefetch)
        .await
        .unwrap();
    (lead, consumer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_queue_keeps_acks_and_deliveries_through_a_leader_kill() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = started_cluster(root.path(), 3);
    let client = client_of(&addrs(&nodes)).await;
    let settings = QueueSettings {
        max_deliveries: Some(2),
        ack_timeout_ms: Some(120_000),
        ..Default::default()
    };
    client.create_queue("jobs", settings).await.unwrap();
    // Offsets are not dense: the log's control entries (a leader's blank entry, the queue's
    // own state changes) take offsets too.
    let offsets = publish_to_queue(&client, "jobs", "job-", MESSAGES as usize).await;
    let (first, second) = (offsets[0], offsets[1]);

    // A follower refuses consumers: only the leader hands messages out.
    let lead = leader_of(&nodes, "q/jobs").await;
    let follower = Client::connect(&nodes[(lead + 1) % 3].native)
        .await
        .unwrap();
    match follower.consume(Source::Queue("jobs".into()), 10).await {
        Err(e) => assert!(e.to_string().contains("leader"), "{e}"),
        Ok(_) => panic!("a follower served a consumer of the queue"),
    }

    // Message 0 nacked up to its bound (2 deliveries) goes to the dead-letter queue.
    let (lead, mut one) = consumer_on_leader(&nodes, "jobs", 1).await;
    for attempt in 1..=2 {
        let d = next(&mut one, "message 0").await;
        assert_eq!((d.offset, d.attempt), (first, attempt));
        d.nack(0).await.unwrap();
    }
    let held_by_one = next(&mut one, "message 1").await;
    assert_eq!((held_by_one.offset, held_by_one.attempt), (second, 1));

    // 150 more delivered, 100 of them acked (each ack confirmed), 50 held.
    let mut many = Client::connect(&nodes[lead].native)
        .await
        .unwrap()
        .consume(Source::Queue("jobs".into()), 150)
        .await
        .unwrap();
    let mut acked = BTreeSet::new();
    let mut held = BTreeSet::from([second]);
    for k in 0..150 {
        let d = next(&mut many, "the first deliveries").await;
        assert_eq!(d.attempt, 1);
        if k < 100 {
            d.ack().await.unwrap();
            acked.insert(d.offset);
        } else {
            held.insert(d.offset);
        }
    }
    assert_eq!((acked.len(), held.len()), (100, 51));

    // The queue's leader dies; its consumers' connections with it.
    nodes[lead].kill9();
    drop((one, many, held_by_one));
    // The client given every node opens the consumer on whichever node leads now.
    let mut after = client
        .consume(Source::Queue("jobs".into()), 500)
        .await
        .unwrap();
    let new_lead = leader_of(&nodes, "q/jobs").await;
    assert_ne!(new_lead, lead);
    let left = MESSAGES as usize - 1 - acked.len();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + STEP;
    while seen.len() < left {
        assert!(
            Instant::now() < deadline,
            "{} of {left} delivered",
            seen.len()
        );
        let d = next(&mut after, "deliveries of the new leader").await;
        assert!(
            !acked.contains(&d.offset),
            "acked offset {} delivered again",
            d.offset
        );
        assert_ne!(d.offset, first, "the dead-lettered message delivered again");
        assert!(
            offsets.contains(&d.offset),
            "offset {} was not published",
            d.offset
        );
        // Held ones were delivered once; others perhaps too, into the consumer's prefetch
        // window after its acks opened it, unread by the test.
        if held.contains(&d.offset) {
            assert_eq!(d.attempt, 2, "offset {}", d.offset);
        } else {
            assert!(
                matches!(d.attempt, 1 | 2),
                "offset {}: attempt {}",
                d.offset,
                d.attempt
            );
        }
        assert!(seen.insert(d.offset), "offset {} delivered twice", d.offset);
        d.ack().await.unwrap();
    }
    let info = Client::connect(&nodes[new_lead].native)
        .await
        .unwrap()
        .describe_queue("jobs")
        .await
        .unwrap();
    assert_eq!((info.depth, info.in_flight), (0, 0), "{info:?}");
    assert!(info.ack_floor > offsets[offsets.len() - 1], "{info:?}");
    assert_eq!(info.dead_lettered, 1);

    // The dead letter, from the dead-letter queue's leader.
    let mut dlq = client
        .consume(Source::Queue("jobs.dlq".into()), 10)
        .await
        .unwrap();
    let d = next(&mut dlq, "the dead letter").await;
    assert_eq!(d.record.value, b"job-0");
    let header = |n: &str| {
        d.record
            .headers
            .iter()
            .find(|h| h.name == n.as_bytes())
            .map(|h| String::from_utf8_lossy(&h.value).to_string())
    };
    assert_eq!(
        header("x-dead-letter-reason").as_deref(),
        Some("max-deliveries")
    );
    assert_eq!(header("x-delivery-count").as_deref(), Some("2"));
    d.ack().await.unwrap();

    // The killed node comes back and is caught up to the same ack state.
    nodes[lead].start(&spec);
    wait_queue(&nodes[lead].native, "jobs", |i| {
        (i.ack_floor, i.depth, i.dead_lettered) == (info.ack_floor, 0, 1)
    })
    .await;

    // Every node killed and restarted: each applies the queue's log again over its journal
    // and ends where it was; the queue goes on.
    for n in nodes.iter_mut() {
        n.kill9();
    }
    for n in nodes.iter_mut() {
        n.start(&spec);
    }
    let client = client_of(&addrs(&nodes)).await;
    let mut more: BTreeSet<u64> = publish_to_queue(&client, "jobs", "more-", 10)
        .await
        .into_iter()
        .collect();
    let mut again = client
        .consume(Source::Queue("jobs".into()), 100)
        .await
        .unwrap();
    while !more.is_empty() {
        let d = next(&mut again, "deliveries after a restart of every node").await;
        assert!(
            more.remove(&d.offset),
            "offset {} delivered again",
            d.offset
        );
        assert_eq!(d.attempt, 1);
        d.ack().await.unwrap();
    }
    for n in &nodes {
        wait_queue(&n.native, "jobs", |i| {
            (i.depth, i.dead_lettered, i.in_flight) == (0, 1, 0)
        })
        .await;
    }
}

/// Dead letters redriven on a cluster (`POST /api/queues/<dlq>/redrive`): on the dead-letter
/// queue's leader, each message goes back to its queue through that queue's group, committed
/// before its dead letter is acked; another node refuses, naming the leader.
/// A POST of `path` to the HTTP listener at `addr`: its status and JSON body.
async fn post(addr: String, path: &'static str) -> (u16, serde_json::Value) {
    tokio::task::spawn_blocking(move || common::http::json(&addr, "POST", path, None))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_go_back_and_a_purge_empties_the_queue_on_a_cluster() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = common::cluster::started_cluster_with_http(root.path(), 3);
    let client = client_of(&addrs(&nodes)).await;
    let settings = QueueSettings {
        max_deliveries: Some(1),
        ..Default::default()
    };
    client.create_queue("jobs", settings).await.unwrap();
    publish_to_queue(&client, "jobs", "job-", 3).await;
    let (lead, mut c) = consumer_on_leader(&nodes, "jobs", 3).await;
    for k in 0..3 {
        next(&mut c, &format!("message {k}"))
            .await
            .nack(0)
            .await
            .unwrap();
    }
    // Past its one delivery, each nacked message is dead-lettered when the queue next
    // delivers: the consumer's wait does that.
    let waited = tokio::time::timeout(std::time::Duration::from_secs(1), c.next()).await;
    assert!(
        waited.is_err(),
        "a dead-lettered message was delivered again"
    );
    drop(c);
    wait_queue(&nodes[lead].native, "jobs.dlq", |i| i.depth == 3).await;

    let dlq_lead = leader_of(&nodes, "q/jobs.dlq").await;
    let other = (dlq_lead + 1) % 3;
    let path = "/api/queues/jobs.dlq/redrive";
    let http = |i: usize| nodes[i].http.clone().unwrap();
    let (status, body) = post(http(other), path).await;
    assert_ne!(
        status, 200,
        "a node not leading the dead-letter queue redrove: {body}"
    );
    assert!(body.to_string().contains("leader"), "{body}");
    let (status, body) = post(http(dlq_lead), path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["moved"], 3, "{body}");

    let (_, mut again) = consumer_on_leader(&nodes, "jobs", 3).await;
    let mut back = BTreeSet::new();
    for k in 0..3 {
        let d = next(&mut again, &format!("redriven {k}")).await;
        back.insert(String::from_utf8(d.record.value.to_vec()).unwrap());
        d.ack().await.unwrap();
    }
    let want: BTreeSet<String> = (0..3).map(|i| format!("job-{i}")).collect();
    assert_eq!(back, want);
    for n in &nodes {
        wait_queue(&n.native, "jobs.dlq", |i| i.depth == 0).await;
        wait_queue(&n.native, "jobs", |i| i.depth == 0 && i.in_flight == 0).await;
    }
    drop(again);

    // A purge is a cursor move through the queue's log: refused by a node not leading it,
    // done by its leader, and every replica then counts nothing waiting, across a restart.
    publish_to_queue(&client, "jobs", "purged-", 5).await;
    let lead = leader_of(&nodes, "q/jobs").await;
    let path = "/api/queues/jobs/purge";
    let (status, body) = post(http((lead + 1) % 3), path).await;
    assert_ne!(
        status, 200,
        "a node not leading the queue purged it: {body}"
    );
    assert!(body.to_string().contains("leader"), "{body}");
    let (status, body) = post(http(lead), path).await;
    assert_eq!((status, body["purged"].as_u64()), (200, Some(5)), "{body}");
    for n in &nodes {
        wait_queue(&n.native, "jobs", |i| i.depth == 0 && i.in_flight == 0).await;
    }
    nodes[lead].kill9();
    nodes[lead].start(&spec);
    wait_queue(&nodes[lead].native, "jobs", |i| i.depth == 0).await;
    let client = client_of(&addrs(&nodes)).await;
    publish_to_queue(&client, "jobs", "after-", 2).await;
    let mut after = client
        .consume(Source::Queue("jobs".into()), 10)
        .await
        .unwrap();
    for k in 0..2 {
        let d = next(&mut after, "a message published after the purge").await;
        assert_eq!(d.record.value, format!("after-{k}").as_bytes());
        d.ack().await.unwrap();
    }
    if let Ok(Some(Ok(d))) =
        tokio::time::timeout(std::time::Duration::from_secs(1), after.next()).await
    {
        panic!("a purged message was delivered: {:?}", d.record.value);
    }

    // A queue on one node only: every node describes it with its leader's figures (natively
    // and over HTTP), not with its own empty copy.
    let solo = QueueSettings {
        log: LogSettings {
            replicas: Some(1),
            ..Default::default()
        },
        ..Default::default()
    };
    client.create_queue("solo", solo).await.unwrap();
    publish_to_queue(&client, "solo", "solo-", 4).await;
    for n in &nodes {
        wait_queue(&n.native, "solo", |q| q.depth == 4).await;
        let addr = n.http.clone().unwrap();
        let (status, body) = tokio::task::spawn_blocking(move || {
            common::http::json(&addr, "GET", "/api/queues/solo", None)
        })
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["depth"].as_u64(), body["ready"].as_u64()),
            (Some(4), Some(4)),
            "node {}: {body}",
            n.id
        );
    }
}
