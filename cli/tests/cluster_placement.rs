//! Replication factors below the cluster's size, with real `sluice serve` processes: four
//! nodes, a topic of four partitions with three replicas each (`--replicas 3`). Each
//! partition is on three nodes only, the leaders spread one per node; a node without a
//! replica of a partition refuses to serve it (`NotLeader`, naming the leader), and a client
//! given every node goes on to one that serves it. A queue of three replicas likewise: its
//! consumers are served by its leader wherever they connect first. Then the queue's leader
//! dies and is removed: its replicas move to the node left without them, which copies them
//! from the survivors; every confirmed message is still on each partition's three replicas,
//! and the queue delivers every message not acked before. A restarted node serves the same
//! partitions as before.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::{
    client_of, cluster_id, joining_node, live_addrs as addrs, next_delivery, publish_to_queue,
    started_cluster, statuses, Node, STEP,
};
use sluice::client::{Client, SubscribeOptions};
use sluice::protocol::{ErrorCode, Source, Start};
use sluice::storage::Record;

const TOPIC: &str = "spread";
const PARTITIONS: u32 = 4;
const PER_PARTITION: usize = 25;
const QUEUE: &str = "jobs";
const QUEUED: usize = 30;

/// Longest the replicas may take to move.
const MOVE_WAIT: Duration = Duration::from_secs(120);

/// A partition as its leader reports it.
#[derive(Debug, Clone)]
struct Placed {
    /// The nodes listing a replica of it.
    hosts: BTreeSet<u64>,
    leader: u64,
    voters: BTreeSet<u64>,
}

fn group(p: u32) -> String {
    match p {
        PARTITIONS => format!("q/{QUEUE}"),
        p => format!("t/{TOPIC}/{p}"),
    }
}

/// Waits until every partition, and the queue (as "partition" [`PARTITIONS`]), has `factor`
/// replicas, all on `live` nodes, each a voter with no learner left, and a leader among
/// them; fails after [`MOVE_WAIT`].
async fn wait_placed(nodes: &[Node], factor: usize, live: &[u64]) -> BTreeMap<u32, Placed> {
    let started = Instant::now();
    loop {
        let all = statuses(nodes).await;
        let mut placed = BTreeMap::new();
        for p in 0..=PARTITIONS {
            let hosts: BTreeSet<u64> = all
                .iter()
                .filter(|s| s.groups.iter().any(|g| g.group == group(p)))
                .map(|s| s.node_id)
                .collect();
            let lead = all.iter().find_map(|s| {
                s.groups
                    .iter()
                    .find(|g| g.group == group(p) && g.leader == Some(s.node_id))
            });
            if let Some(g) = lead.filter(|g| g.learners.is_empty()) {
                placed.insert(
                    p,
                    Placed {
                        hosts,
                        leader: g.leader.unwrap(),
                        voters: g.voters.iter().copied().collect(),
                    },
                );
            }
        }
        let done = placed.len() == PARTITIONS as usize + 1
            && placed.values().all(|x| {
                x.hosts == x.voters
                    && x.voters.len() == factor
                    && x.voters.iter().all(|v| live.contains(v))
            });
        if done {
            return placed;
        }
        assert!(
            started.elapsed() < MOVE_WAIT,
            "partitions not placed on {factor} of {live:?}: {placed:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every value of partition `p`, read from `addr` alone, or the error code of its refusal.
async fn read_partition(addr: &str, p: u32, want: usize) -> Result<Vec<String>, String> {
    let c = Client::connect(addr).await.map_err(|e| e.to_string())?;
    read_with(&c, p, want).await
}

async fn read_with(c: &Client, p: u32, want: usize) -> Result<Vec<String>, String> {
    let opts = SubscribeOptions::anonymous()
        .from(Start::Earliest)
        .partitions(vec![p])
        .credit(1024);
    let mut sub = c.subscribe(TOPIC, opts).await.map_err(|e| {
        assert_eq!(e.code(), Some(ErrorCode::NotLeader), "{e}");
        e.to_string()
    })?;
    let mut out = Vec::new();
    let deadline = Instant::now() + STEP;
    while out.len() < want && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
            Ok(Some(Ok(m))) => out.push(String::from_utf8(m.record.value.to_vec()).unwrap()),
            Ok(other) => panic!("partition {p}: {other:?}"),
            Err(_) => {}
        }
    }
    Ok(out)
}

/// Publishes `count` values to each partition through `client`; each partition's values.
async fn publish(client: &Client, from: usize, count: usize) -> BTreeMap<u32, Vec<String>> {
    let mut sent = BTreeMap::new();
    for p in 0..PARTITIONS {
        let values: Vec<String> = (from..from + count).map(|i| format!("p{p}-{i}")).collect();
        for v in &values {
            client
                .publish_to_partition(TOPIC, p, &[Record::from_value(v.clone().into_bytes())])
                .await
                .unwrap_or_else(|e| panic!("publish {v}: {e}"));
        }
        sent.insert(p, values);
    }
    sent
}

/// Each partition's replicas hold exactly `sent`, and every other live node refuses it,
/// naming its leader.
async fn check_reads(
    nodes: &[Node],
    placed: &BTreeMap<u32, Placed>,
    sent: &BTreeMap<u32, Vec<String>>,
) {
    for (p, x) in placed.range(..PARTITIONS) {
        let want = &sent[p];
        for n in nodes.iter().filter(|n| n.child.is_some()) {
            let got = read_partition(&n.native, *p, want.len()).await;
            if x.hosts.contains(&n.id) {
                assert_eq!(got.as_ref(), Ok(want), "node {} partition {p}", n.id);
            } else {
                // Named once the leader has told this node (within 200 ms of a new leader).
                let mut refused = got.expect_err("a node without a replica serves nothing");
                let deadline = Instant::now() + Duration::from_secs(10);
                while !refused.contains(&format!("node {}", x.leader)) && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    refused = read_partition(&n.native, *p, want.len())
                        .await
                        .expect_err("a node without a replica serves nothing");
                }
                assert!(
                    refused.contains(&format!("node {}", x.leader)),
                    "node {} partition {p}: {refused}",
                    n.id
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_live_on_their_replicas_and_move_off_a_removed_node() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = started_cluster(root.path(), 4);
    let all = addrs(&nodes);

    let too_many = common::cli(&all, &["topic", "create", "wide", "--replicas", "5"], None);
    assert!(!too_many.status.success());
    let why = String::from_utf8_lossy(&too_many.stderr);
    assert!(why.contains("replicas must be 1 to 4"), "{why}");
    common::cli_ok(
        &all,
        &[
            "topic",
            "create",
            TOPIC,
            "--partitions",
            "4",
            "--replicas",
            "3",
        ],
        None,
    );
    common::cli_ok(
        &all,
        &[
            "queue",
            "create",
            QUEUE,
            "--replicas",
            "3",
            "--ack-timeout-ms",
            "2000",
        ],
        None,
    );
    let placed = wait_placed(&nodes, 3, &[1, 2, 3, 4]).await;
    eprintln!("placed: {placed:#?}");
    let leaders: BTreeSet<u64> = placed.range(..PARTITIONS).map(|(_, x)| x.leader).collect();
    assert_eq!(
        leaders.len(),
        4,
        "one partition led by each node: {placed:?}"
    );
    for n in &nodes {
        let held = placed
            .range(..PARTITIONS)
            .filter(|(_, x)| x.hosts.contains(&n.id))
            .count();
        assert_eq!(held, 3, "node {} holds {held} replicas: {placed:?}", n.id);
    }

    let client = client_of(&all).await;
    let mut sent = publish(&client, 0, PER_PARTITION).await;
    check_reads(&nodes, &placed, &sent).await;
    // A client given every node reads each partition wherever it connected first.
    for p in 0..PARTITIONS {
        let got = read_with(&client, p, PER_PARTITION).await.unwrap();
        assert_eq!(got, sent[&p], "partition {p} through the node list");
    }

    // The queue: published to and consumed from through any node, refused by the node
    // without a replica.
    let queued: BTreeSet<u64> = publish_to_queue(&client, QUEUE, "job-", QUEUED)
        .await
        .into_iter()
        .collect();
    let q = &placed[&PARTITIONS];
    let outside = nodes.iter().find(|n| !q.hosts.contains(&n.id)).unwrap();
    let lone = Client::connect(&outside.native).await.unwrap();
    let refused = lone
        .consume(Source::Queue(QUEUE.into()), 1)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), Some(ErrorCode::NotLeader), "{refused}");
    assert!(
        refused.to_string().contains(&format!("node {}", q.leader)),
        "{refused}"
    );
    let mut acked = BTreeSet::new();
    let mut consumer = client
        .consume(Source::Queue(QUEUE.into()), 1)
        .await
        .unwrap();
    while acked.len() < QUEUED / 2 {
        let d = next_delivery(&mut consumer, "the queue before the move").await;
        assert!(
            acked.insert(d.offset),
            "offset {} delivered again after its ack",
            d.offset
        );
        d.ack().await.unwrap();
    }
    drop(consumer);

    // The queue's leader dies for good and is removed: its replicas move.
    let gone = q.leader;
    let at = nodes.iter().position(|n| n.id == gone).unwrap();
    nodes[at].kill9();
    let live: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|id| *id != gone).collect();
    let survivors = addrs(&nodes);
    let out = common::cli_ok(
        &survivors,
        &["cluster", "remove-node", &gone.to_string()],
        None,
    );
    assert!(out[0].contains(&format!("node {gone} removed")), "{out:?}");
    let client = client_of(&survivors).await;
    let more = publish(&client, PER_PARTITION, PER_PARTITION).await;
    for (p, v) in more {
        sent.get_mut(&p).unwrap().extend(v);
    }
    let moved = wait_placed(&nodes, 3, &live).await;
    eprintln!("after removing node {gone}: {moved:#?}");
    check_reads(&nodes, &moved, &sent).await;
    let mut consumer = client
        .consume(Source::Queue(QUEUE.into()), 1)
        .await
        .unwrap();
    while acked.len() < QUEUED {
        let d = next_delivery(&mut consumer, "the queue after the move").await;
        assert!(
            acked.insert(d.offset),
            "offset {} delivered again after its ack",
            d.offset
        );
        d.ack().await.unwrap();
    }
    assert_eq!(
        acked, queued,
        "every queued message acked once the queue moved"
    );
    drop(consumer);

    // A fifth node joins: partitions move onto it until the nodes hold about as many
    // replicas each, while publishes go on.
    let (fifth, fifth_spec) = joining_node(root.path(), 5, &cluster_id(&survivors));
    nodes.push(fifth);
    common::cli_ok(&survivors, &["cluster", "add-node", &fifth_spec], None);
    let more = publish(&client, 2 * PER_PARTITION, PER_PARTITION).await;
    for (p, v) in more {
        sent.get_mut(&p).unwrap().extend(v);
    }
    let mut live = live;
    live.push(5);
    let balanced = wait_balanced(&nodes, &live).await;
    eprintln!("after adding node 5: {balanced:#?}");
    let on_fifth = balanced
        .range(..PARTITIONS)
        .filter(|(_, x)| x.hosts.contains(&5))
        .count();
    assert!(
        on_fifth >= 2,
        "node 5 took {on_fifth} partitions: {balanced:?}"
    );
    check_reads(&nodes, &balanced, &sent).await;

    // A node restarts and serves the same partitions.
    let again = live[0];
    let at = nodes.iter().position(|n| n.id == again).unwrap();
    nodes[at].kill9();
    nodes[at].start(&spec);
    let after = wait_placed(&nodes, 3, &live).await;
    for (p, x) in &after {
        assert_eq!(
            x.voters, balanced[p].voters,
            "partition {p} after node {again} restarted"
        );
    }
    check_reads(&nodes, &after, &sent).await;
}

/// [`wait_placed`] on `live`, until the nodes hold replicas (of every group but `meta`) at
/// most one apart.
async fn wait_balanced(nodes: &[Node], live: &[u64]) -> BTreeMap<u32, Placed> {
    let started = Instant::now();
    loop {
        let placed = wait_placed(nodes, 3, live).await;
        let holds: Vec<usize> = statuses(nodes)
            .await
            .iter()
            .map(|s| s.groups.iter().filter(|g| g.group != "meta").count())
            .collect();
        let (most, fewest) = (holds.iter().max(), holds.iter().min());
        if holds.len() == live.len() && most.zip(fewest).is_some_and(|(m, f)| m - f <= 1) {
            return placed;
        }
        assert!(
            started.elapsed() < MOVE_WAIT,
            "replicas held per node {holds:?}: {placed:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A topic created while a node is down, once the others have noticed (`sluice cluster
/// status` shows it unreachable from both), is placed on the nodes that are up: with one
/// replica per partition, every partition has a leader and takes a publish at once (placed
/// on the node that is down, a partition would have no leader until it is back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_while_a_node_is_down_is_placed_on_the_others() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, _spec) = started_cluster(root.path(), 3);
    let client = client_of(&addrs(&nodes)).await;
    client
        .create_topic("warmup", Default::default())
        .await
        .unwrap();
    nodes[2].kill9();
    let live = addrs(&nodes);
    // The nodes learn that node 3 is down at their next connection to it (a heartbeat, or
    // the hello each node sends every peer every 10 s); `sluice cluster status` says so.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = common::cli_ok(&live, &["--json", "cluster", "status"], None);
        let seen = common::json_lines(&lines)
            .iter()
            .find(|v| v["node"] == 3 && v.get("unreachable_from").is_some())
            .map(|v| v["unreachable_from"].clone());
        if seen == Some(serde_json::json!([1, 2])) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 unreachable from {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    common::cli_ok(
        &live,
        &[
            "topic",
            "create",
            "fresh",
            "--partitions",
            "6",
            "--replicas",
            "1",
        ],
        None,
    );
    let deadline = Instant::now() + STEP;
    let led = loop {
        let led: BTreeMap<u32, u64> = statuses(&nodes)
            .await
            .iter()
            .flat_map(|s| s.groups.iter().map(move |g| (s.node_id, g)))
            .filter(|(id, g)| g.leader == Some(*id))
            .filter_map(|(id, g)| Some((g.group.strip_prefix("t/fresh/")?.parse().ok()?, id)))
            .collect();
        if led.len() == 6 {
            break led;
        }
        assert!(
            Instant::now() < deadline,
            "partitions led {led:?}, the rest placed on node 3"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(led.values().all(|n| *n != 3), "{led:?}");
    let client = client_of(&live).await;
    for p in 0..6 {
        let r = Record::from_value(format!("to {p}").into_bytes());
        client.publish_to_partition("fresh", p, &[r]).await.unwrap();
    }
}
