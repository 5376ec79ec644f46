//! Consumer groups over a replicated topic (the native `Source::Group`) against three real
//! `sluice serve` processes. A group's state on a partition (deliveries, acks, dead letters)
//! goes through the partition's replicated log: a node that does not lead the partition
//! refuses the group's consumers, naming the leader; after a SIGKILL of the leader, the new
//! leader never delivers an acked message again, redelivers the held ones (attempt 2) and
//! every other one; a message nacked to its bound is in the group's dead-letter queue, made
//! through the metadata; another group of the topic keeps its own state; and after every node
//! is killed and restarted, the group goes on where it was.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{client_of, leader_of, next_delivery as next, started_cluster, Node, STEP};
use sluice::client::{Client, Consumer};
use sluice::protocol::{LogSettings, Source};
use sluice::storage::Record;

const MESSAGES: usize = 300;
const GROUP_MAX_DELIVERIES: u32 = 5;

fn addrs(nodes: &[Node]) -> String {
    common::cluster::live_addrs(nodes)
}

fn group(g: &str) -> Source {
    Source::Group {
        topic: "events".into(),
        group: g.into(),
    }
}

/// Publishes `count` messages `<prefix><i>` in batches of ten; their offsets.
async fn publish(client: &Client, prefix: &str, count: usize) -> Vec<u64> {
    let mut offsets = Vec::new();
    for start in (0..count).step_by(10) {
        let batch: Vec<Record> = (start..(start + 10).min(count))
            .map(|i| Record::from_value(format!("{prefix}{i}").into_bytes()))
            .collect();
        let p = client.publish("events", &batch).await.unwrap();
        assert_eq!(p.last_offset - p.base_offset + 1, batch.len() as u64);
        offsets.extend(p.base_offset..=p.last_offset);
    }
    offsets
}

/// Nothing delivered to `c` for `quiet`.
async fn nothing_for(c: &mut Consumer, quiet: Duration, what: &str) {
    if let Ok(d) = tokio::time::timeout(quiet, c.next()).await {
        let d = d.map(|d| d.map(|d| (d.offset, d.attempt, d.record.value)));
        panic!("{what}: {d:?}");
    }
}

/// Three nodes started, with `topic` of `partitions` partitions, replication factor 3, made
/// through a client given every node.
async fn cluster_with_topic(
    root: &std::path::Path,
    topic: &str,
    partitions: u32,
) -> (Vec<Node>, String, Client) {
    let (nodes, spec) = started_cluster(root, 3);
    let client = client_of(&addrs(&nodes)).await;
    let settings = LogSettings {
        replicas: Some(3),
        ..Default::default()
    };
    client
        .create_topic_with_partitions(topic, settings, partitions)
        .await
        .unwrap();
    (nodes, spec, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_group_keeps_acks_and_deliveries_through_a_leader_kill_and_restarts() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec, client) = cluster_with_topic(root.path(), "events", 1).await;
    let offsets = publish(&client, "m-", MESSAGES).await;
    let first = offsets[0];

    // A node not leading the partition refuses the group's consumers, naming the leader.
    let lead = leader_of(&nodes, "t/events/0").await;
    let follower = Client::connect(&nodes[(lead + 1) % 3].native)
        .await
        .unwrap();
    let e = match follower.consume(group("g"), 10).await {
        Ok(mut c) => tokio::time::timeout(STEP, c.next())
            .await
            .unwrap()
            .unwrap()
            .err(),
        Err(e) => Some(e),
    };
    let e = e.expect("a follower refuses the group's consumers");
    assert!(e.to_string().contains("leader"), "{e}");

    // The first message nacked to its bound goes to the group's dead-letter queue.
    let on_leader = Client::connect(&nodes[lead].native).await.unwrap();
    let mut one = on_leader.consume(group("g"), 1).await.unwrap();
    for attempt in 1..=GROUP_MAX_DELIVERIES {
        let d = next(&mut one, "message 0").await;
        assert_eq!((d.offset, d.attempt), (first, attempt));
        d.nack(0).await.unwrap();
    }
    let held_by_one = next(&mut one, "message 1").await;
    assert_eq!((held_by_one.offset, held_by_one.attempt), (offsets[1], 1));

    // 150 more delivered, 100 of them acked (each ack confirmed), 50 held.
    let mut many = on_leader.consume(group("g"), 150).await.unwrap();
    let mut acked = BTreeSet::new();
    let mut held = BTreeSet::from([offsets[1]]);
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

    // The partition's leader dies, its consumers' connections with it; the client given
    // every node opens the group's consumer on whichever node leads now.
    nodes[lead].kill9();
    drop((one, many, held_by_one));
    let client = client_of(&addrs(&nodes)).await;
    let mut after = client.consume(group("g"), 500).await.unwrap();
    let left = MESSAGES - 1 - acked.len();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + STEP;
    while seen.len() < left {
        assert!(Instant::now() < deadline, "{} of {left}", seen.len());
        let d = next(&mut after, "deliveries of the new leader").await;
        assert!(!acked.contains(&d.offset), "acked {} again", d.offset);
        assert_ne!(d.offset, first, "the dead-lettered message delivered again");
        assert!(offsets.contains(&d.offset), "{} not published", d.offset);
        if held.contains(&d.offset) {
            assert_eq!(d.attempt, 2, "offset {}", d.offset);
        } else {
            assert!(matches!(d.attempt, 1 | 2), "{}: {}", d.offset, d.attempt);
        }
        assert!(seen.insert(d.offset), "offset {} delivered twice", d.offset);
        d.ack().await.unwrap();
    }

    // The dead letter, from the dead-letter queue made through the metadata.
    let mut dlq = client
        .consume(Source::Queue("events.g.dlq".into()), 10)
        .await
        .unwrap();
    let d = next(&mut dlq, "the dead letter").await;
    assert_eq!(d.record.value, b"m-0");
    let reason = d
        .record
        .headers
        .iter()
        .find(|h| h.name == b"x-dead-letter-reason")
        .map(|h| h.value.clone());
    assert_eq!(reason.as_deref(), Some(&b"max-deliveries"[..]));
    d.ack().await.unwrap();

    // Another group of the topic has its own state: every message, once.
    let mut other = client.consume(group("h"), 500).await.unwrap();
    let mut all = BTreeSet::new();
    while all.len() < MESSAGES {
        let d = next(&mut other, "group h").await;
        assert_eq!(d.attempt, 1);
        assert!(all.insert(d.offset), "group h: {} twice", d.offset);
        d.ack().await.unwrap();
    }
    drop((after, dlq, other));

    // The killed node comes back; then every node is killed and restarted: each applies the
    // partition's log again over its groups' journals, and the groups go on where they were.
    nodes[lead].start(&spec);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in nodes.iter_mut() {
        n.kill9();
    }
    for n in nodes.iter_mut() {
        n.start(&spec);
    }
    let client = client_of(&addrs(&nodes)).await;
    let mut g = client.consume(group("g"), 500).await.unwrap();
    nothing_for(&mut g, Duration::from_secs(2), "group g after the restarts").await;
    let later = publish(&client, "late-", 20).await;
    let mut got = BTreeSet::new();
    while got.len() < later.len() {
        let d = next(&mut g, "group g, later messages").await;
        assert!(later.contains(&d.offset), "{} delivered again", d.offset);
        assert!(got.insert(d.offset));
        d.ack().await.unwrap();
    }
    let mut h = client.consume(group("h"), 500).await.unwrap();
    let mut got = BTreeSet::new();
    while got.len() < later.len() {
        let d = next(&mut h, "group h, later messages").await;
        assert!(later.contains(&d.offset), "{} delivered again", d.offset);
        assert!(got.insert(d.offset));
        d.ack().await.unwrap();
    }
}

/// Publishes `per_partition` messages `<prefix><p>-<i>` to each of `partitions` partitions of
/// `topic`; their (partition, offset).
async fn publish_each(
    client: &Client,
    topic: &str,
    partitions: u32,
    prefix: &str,
    per_partition: usize,
) -> BTreeSet<(u32, u64)> {
    let mut ids = BTreeSet::new();
    for p in 0..partitions {
        let batch: Vec<Record> = (0..per_partition)
            .map(|i| Record::from_value(format!("{prefix}{p}-{i}").into_bytes()))
            .collect();
        let r = client.publish_to_partition(topic, p, &batch).await.unwrap();
        ids.extend((r.base_offset..=r.last_offset).map(|o| (p, o)));
    }
    ids
}

/// Takes deliveries of `c` until `want` are all in, acking each (one ack call per ten, through
/// the consumer's acker, which sends each partition's to the node that delivered it).
async fn take_all(c: &mut Consumer, want: &BTreeSet<(u32, u64)>, acked: &mut BTreeSet<(u32, u64)>) {
    let acker = c.acker();
    let mut held = Vec::new();
    let deadline = Instant::now() + STEP;
    while !want.is_subset(acked) {
        assert!(
            Instant::now() < deadline,
            "{} of {}",
            acked.len(),
            want.len()
        );
        let d = next(c, "a delivery of the spread consumer").await;
        assert!(want.contains(&d.id()), "{:?} not expected", d.id());
        assert!(
            !acked.contains(&d.id()),
            "{:?} delivered after its ack",
            d.id()
        );
        held.push(d.id());
        if held.len() == 10 || want.len() == acked.len() + held.len() {
            acker.ack(&held).await.unwrap();
            acked.extend(held.drain(..));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_consumer_given_every_node_takes_each_partition_from_its_leader() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec, client) = cluster_with_topic(root.path(), "spread", 3).await;
    let mut leads = BTreeSet::new();
    for p in 0..3 {
        leads.insert(leader_of(&nodes, &format!("t/spread/{p}")).await);
    }
    assert_eq!(leads.len(), 3, "each partition led by another node");
    let first = publish_each(&client, "spread", 3, "a-", 100).await;
    let source = Source::Group {
        topic: "spread".into(),
        group: "g".into(),
    };

    // One consumer given every node takes every partition, each from its leader.
    let mut c = client.consume(source.clone(), 100).await.unwrap();
    let mut acked = BTreeSet::new();
    take_all(&mut c, &first, &mut acked).await;

    // The leader of partition 0 dies: the node that leads it next serves it to the same
    // consumer; nothing acked comes back.
    let lead0 = leader_of(&nodes, "t/spread/0").await;
    nodes[lead0].kill9();
    let client = client_of(&addrs(&nodes)).await;
    let second = publish_each(&client, "spread", 3, "b-", 50).await;
    take_all(&mut c, &second, &mut acked).await;

    // It comes back and, once caught up, leads partition 0 again (leader balance): the
    // consumer opens a stream there by itself, and gets what is published then.
    nodes[lead0].start(&spec);
    let deadline = Instant::now() + Duration::from_secs(60);
    while leader_of(&nodes, "t/spread/0").await != lead0 {
        assert!(Instant::now() < deadline, "partition 0 not handed back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client = client_of(&addrs(&nodes)).await;
    let third = publish_each(&client, "spread", 3, "c-", 20).await;
    take_all(&mut c, &third, &mut acked).await;
    assert_eq!(acked.len(), 3 * (100 + 50 + 20));
    nothing_for(
        &mut c,
        Duration::from_secs(1),
        "after every message was acked",
    )
    .await;
}

/// The groups of topic `events` the node whose HTTP listener is `http` lists.
fn listed_groups(http: &str) -> Vec<String> {
    let (status, body) = common::http::json(http, "GET", "/api/topics/events/groups", None);
    assert_eq!(status, 200, "{body}");
    let groups = body["groups"].as_array().unwrap();
    groups
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until no node lists group `g` of topic `events`.
async fn gone_everywhere(nodes: &[Node], g: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        let lists: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| listed_groups(n.http.as_deref().unwrap()))
            .collect();
        if lists.iter().all(|l| !l.iter().any(|n| n == g)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {g} still listed: {lists:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_deleted_over_http_is_gone_from_every_replica_and_starts_over() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = common::cluster::started_cluster_with_http(root.path(), 3);
    let client = client_of(&addrs(&nodes)).await;
    let settings = LogSettings {
        replicas: Some(3),
        ..Default::default()
    };
    client
        .create_topic_with_partitions("events", settings, 2)
        .await
        .unwrap();
    let sent = publish_each(&client, "events", 2, "m-", 10).await;
    // Every record of partition 0 is acked; of partition 1, three are held: the delete is
    // refused before it changes any partition.
    let mut c = client.consume(group("gone"), 100).await.unwrap();
    let mut held = Vec::new();
    let mut acked_on_1 = 0;
    for _ in 0..sent.len() {
        let d = next(&mut c, "the group's first deliveries").await;
        if d.id().0 == 1 && acked_on_1 == 7 {
            held.push(d);
        } else {
            acked_on_1 += u32::from(d.id().0 == 1);
            d.ack().await.unwrap();
        }
    }
    let http = nodes[1].http.clone().unwrap();
    let path = "/api/topics/events/groups/gone";
    let (status, body) = common::http::json(&http, "DELETE", path, None);
    assert_eq!(
        status, 409,
        "deleted while a consumer holds messages: {body}"
    );

    // The refused delete left partition 0 alone: once the consumer is gone, the group gets
    // the three held records again, and nothing of partition 0.
    let again: BTreeSet<(u32, u64)> = held.iter().map(|d| d.id()).collect();
    drop(held);
    drop(c);
    let mut c = client.consume(group("gone"), 100).await.unwrap();
    let mut got = BTreeSet::new();
    while got.len() < again.len() {
        let d = next(&mut c, "the held records again").await;
        assert!(again.contains(&d.id()), "{:?} delivered again", d.id());
        assert!(d.attempt > 1, "{:?} as a first delivery", d.id());
        got.insert(d.id());
        d.ack().await.unwrap();
    }
    if let Ok(Some(more)) = tokio::time::timeout(Duration::from_secs(1), c.next()).await {
        let what = more.map(|d| (d.id(), d.attempt));
        panic!("a delivery after the held records: {what:?}");
    }
    drop(c);

    // With nothing held, the group's deletion goes through every partition's log.
    let deadline = Instant::now() + STEP;
    loop {
        let (status, body) = common::http::json(&http, "DELETE", path, None);
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gone_everywhere(&nodes, "gone").await;
    let (status, _) = common::http::json(&http, "DELETE", path, None);
    assert_eq!(status, 404, "a second delete");

    // Applied again from the partitions' logs after a restart of every node, it is still gone.
    for n in nodes.iter_mut() {
        n.kill9();
    }
    for n in nodes.iter_mut() {
        n.start(&spec);
    }
    for p in 0..2 {
        leader_of(&nodes, &format!("t/events/{p}")).await;
    }
    let client = client_of(&addrs(&nodes)).await;
    let later = publish_each(&client, "events", 2, "n-", 1).await;
    gone_everywhere(&nodes, "gone").await;

    // Used again, the group starts over: every message is a first delivery.
    let mut c = client.consume(group("gone"), 100).await.unwrap();
    let want: BTreeSet<(u32, u64)> = sent.union(&later).copied().collect();
    let mut got = BTreeSet::new();
    while got.len() < want.len() {
        let d = next(&mut c, "the group used again").await;
        assert_eq!(d.attempt, 1, "{:?} delivered before the delete", d.id());
        assert!(got.insert(d.id()), "{:?} twice", d.id());
        d.ack().await.unwrap();
    }
    assert_eq!(got, want);
}
