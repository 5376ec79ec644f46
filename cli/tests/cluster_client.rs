//! The client side of a cluster, against three real `sluice serve` processes: `--addr` (and the
//! Rust client) given every node publishes whichever node leads, goes on publishing through a
//! SIGKILL of the leader (each request refused with `NotLeader` or cut by the kill is retried
//! on the next node), and every confirmed message is then readable at its confirmed offset;
//! `sluice cluster status` shows one leader per group, and is refused by a single server.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::{cluster_nodes, leader_of, Node};
use common::{cli, json_lines};
use sluice::client::{Client, SubscribeOptions};
use sluice::protocol::Start;
use sluice::storage::Record;

const NODES: u64 = 3;
/// How long the clients of these tests retry on the next node (generous: a loaded machine).
const RETRY_MS: &str = "30000";

fn start_cluster(root: &std::path::Path) -> Vec<Node> {
    let (mut nodes, spec) = cluster_nodes(root, NODES);
    for n in nodes.iter_mut() {
        n.start(&spec);
    }
    nodes
}

/// The client addresses of `nodes`, comma-separated, from the `first`th on.
fn addr_list(nodes: &[Node], first: usize) -> String {
    (0..nodes.len())
        .map(|k| nodes[(first + k) % nodes.len()].native.clone())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs the CLI against `addrs`; its stdout lines, or a panic with its stderr.
fn cli_ok(addrs: &str, args: &[&str], stdin: Option<&str>) -> Vec<String> {
    let mut all = vec!["--retry-ms", RETRY_MS];
    all.extend_from_slice(args);
    common::cli_ok(addrs, &all, stdin)
}

/// Every (offset, value) of partition 0 of `topic` on `node`, once it holds every offset of
/// `want` (or after 30 s).
async fn read_until(node: &Node, topic: &str, want: &BTreeMap<u64, String>) -> Vec<(u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = read_once(node, topic).await;
        let offsets: BTreeSet<u64> = got.iter().map(|(o, _)| *o).collect();
        if want.keys().all(|o| offsets.contains(o)) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn read_once(node: &Node, topic: &str) -> Vec<(u64, String)> {
    let Ok(c) = Client::connect(&node.native).await else {
        return Vec::new();
    };
    let opts = SubscribeOptions::anonymous()
        .from(Start::Earliest)
        .credit(4096);
    let Ok(mut sub) = c.subscribe(topic, opts).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        let v = String::from_utf8(m.record.value.to_vec()).unwrap();
        out.push((m.offset, v));
    }
    out
}

/// Every confirmed value is stored at its confirmed offset, and nothing stored was never sent.
fn check_confirmed(stored: &[(u64, String)], confirmed: &BTreeMap<u64, String>, prefix: &str) {
    let at: BTreeMap<u64, &String> = stored.iter().map(|(o, v)| (*o, v)).collect();
    for (o, v) in confirmed {
        assert_eq!(at.get(o), Some(&v), "confirmed {v} at {o} is not there");
    }
    for (o, v) in stored {
        assert!(v.starts_with(prefix), "{v} at {o} was never sent");
    }
    let distinct: BTreeSet<&String> = stored.iter().map(|(_, v)| v).collect();
    eprintln!(
        "{} confirmed, {} stored, {} duplicate(s) from retries",
        confirmed.len(),
        stored.len(),
        stored.len() - distinct.len()
    );
}

/// The offsets `sluice --json publish` printed, with the values published, in order.
fn offsets_of(lines: &[String], values: &[String]) -> BTreeMap<u64, String> {
    let j = json_lines(lines);
    assert_eq!(j.len(), values.len(), "one offset per message: {lines:?}");
    j.iter()
        .zip(values)
        .map(|(l, v)| (l["offset"].as_u64().unwrap(), v.clone()))
        .collect()
}

/// `sluice cluster status --json`: one line per node, then one per group, each group with a
/// leader that reported it itself, and per-follower lag.
fn check_status_json(lines: &[String], reached: usize, groups: &[&str]) {
    let j = json_lines(lines);
    let nodes: Vec<_> = j.iter().filter(|l| l.get("node").is_some()).collect();
    assert_eq!(nodes.len(), NODES as usize, "{lines:?}");
    let up = nodes.iter().filter(|n| n["reached"] == true).count();
    assert_eq!(up, reached, "{lines:?}");
    let lines_of: BTreeMap<&str, &serde_json::Value> = j
        .iter()
        .filter_map(|l| Some((l.get("group")?.as_str()?, l)))
        .collect();
    for g in groups {
        let l = lines_of
            .get(g)
            .unwrap_or_else(|| panic!("no {g} in {lines:?}"));
        let leader = l["leader"].as_u64().expect("a leader");
        assert_eq!(l["reported_by"].as_u64(), Some(leader), "{l}");
        assert_eq!(l["from_leader"], true, "{l}");
        let followers = l["followers"].as_array().unwrap();
        assert_eq!(followers.len(), NODES as usize - 1, "{l}");
        for f in followers {
            assert_ne!(f["node"].as_u64(), Some(leader), "{l}");
            let lag = f["lag"].as_u64().expect("a lag");
            let last = l["last_index"].as_u64().unwrap_or(0);
            assert!(lag <= last, "{l}");
        }
        let (last, applied) = (l["last_index"].as_u64(), l["applied_index"].as_u64());
        assert!(applied <= last, "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_given_every_node_publishes_through_whichever_leads_and_through_a_kill() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path());
    let all = addr_list(&nodes, 0);
    // Whichever node leads the metadata, the creation is retried until it does.
    cli_ok(&all, &["topic", "create", "orders"], None);
    let leader = leader_of(&nodes, "t/orders/0").await;
    leader_of(&nodes, "meta").await;
    let status = cli_ok(&all, &["--json", "cluster", "status"], None);
    check_status_json(&status, NODES as usize, &["meta", "t/orders/0"]);
    let text = cli_ok(&all, &["cluster", "status"], None);
    assert!(text.iter().any(|l| l.starts_with("t/orders/0")), "{text:?}");
    eprintln!("{}", text.join("\n"));

    // A follower refuses a publish, naming the leader's client address.
    let follower = Client::connect(&nodes[(leader + 1) % nodes.len()].native)
        .await
        .unwrap();
    let e = follower
        .publish("orders", &[Record::from_value(b"refused".to_vec())])
        .await
        .expect_err("a follower confirmed a publish");
    assert_eq!(
        e.code(),
        Some(sluice::protocol::ErrorCode::NotLeader),
        "{e}"
    );
    assert!(
        e.to_string().contains(&format!(
            "node {} (client address {})",
            nodes[leader].id, nodes[leader].native
        )),
        "{e}"
    );

    // The list starting at each node in turn: two of three start at a follower (NotLeader).
    let mut confirmed = BTreeMap::new();
    for first in 0..nodes.len() {
        let values: Vec<String> = (0..3).map(|k| format!("o-{first}-{k}")).collect();
        let args: Vec<&str> = ["--json", "publish", "orders"]
            .into_iter()
            .chain(values.iter().map(String::as_str))
            .collect();
        let lines = cli_ok(&addr_list(&nodes, first), &args, None);
        confirmed.extend(offsets_of(&lines, &values));
    }

    // The leader dies; the list starts at it (refused), then the followers (NotLeader until
    // one is elected).
    nodes[leader].kill9();
    let values: Vec<String> = (0..200).map(|k| format!("o-after-{k}")).collect();
    let stdin = values.join("\n") + "\n";
    let lines = cli_ok(
        &addr_list(&nodes, leader),
        &["--json", "publish", "orders"],
        Some(&stdin),
    );
    let after = offsets_of(&lines, &values);
    assert!(
        after.keys().min() > confirmed.keys().max(),
        "offsets go on after the failover"
    );
    confirmed.extend(after);
    let new_leader = leader_of(&nodes, "t/orders/0").await;
    assert_ne!(new_leader, leader);

    let reader = &nodes[(leader + 1) % nodes.len()];
    let stored = read_until(reader, "orders", &confirmed).await;
    check_confirmed(&stored, &confirmed, "o-");

    // The dead node is reported unreached; every group still has one leader.
    let status = cli_ok(&all, &["--json", "cluster", "status"], None);
    eprintln!("{}", status.join("\n"));
    check_status_json(&status, NODES as usize - 1, &["t/orders/0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_given_every_node_goes_on_publishing_when_the_leader_is_killed() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path());
    let client = Client::builder(addr_list(&nodes, 0))
        .retry_deadline(Duration::from_millis(RETRY_MS.parse().unwrap()))
        .connect()
        .await
        .unwrap();
    client
        .create_topic("events", Default::default())
        .await
        .unwrap();
    let leader = leader_of(&nodes, "t/events/0").await;
    let mut confirmed = BTreeMap::new();
    let publish = |n: usize| {
        let v = format!("e-{n}");
        let client = client.clone();
        async move {
            let p = client
                .publish("events", &[Record::from_value(v.clone().into_bytes())])
                .await
                .unwrap_or_else(|e| panic!("publishing {v}: {e}"));
            (p.base_offset, v)
        }
    };
    for n in 0..50 {
        let (o, v) = publish(n).await;
        confirmed.insert(o, v);
    }
    // Killed just after publishes were started on the client's connection (to the leader, or
    // to a node the client moved to): some may be in flight.
    let pipelined: Vec<_> = (50..70).map(|n| tokio::spawn(publish(n))).collect();
    nodes[leader].kill9();
    for p in pipelined {
        let (o, v) = p.await.unwrap();
        assert!(
            confirmed.insert(o, v).is_none(),
            "an offset confirmed twice"
        );
    }
    for n in 70..150 {
        let (o, v) = publish(n).await;
        assert!(
            confirmed.insert(o, v).is_none(),
            "an offset confirmed twice"
        );
    }
    assert_ne!(leader_of(&nodes, "t/events/0").await, leader);
    let reader = &nodes[(leader + 1) % nodes.len()];
    let stored = read_until(reader, "events", &confirmed).await;
    check_confirmed(&stored, &confirmed, "e-");
}

#[test]
fn cluster_status_is_refused_by_a_server_that_is_no_cluster_node() {
    let (_tmp, dir) = common::data_dir();
    let server = common::start(&dir, None);
    let o = cli(&server.addr, &["cluster", "status"], None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a node of a cluster"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_topics_partition_leaders_start_spread_over_the_nodes() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_cluster(root.path());
    let all = addr_list(&nodes, 0);
    cli_ok(
        &all,
        &["topic", "create", "spread", "--partitions", "3"],
        None,
    );
    let meta = leader_of(&nodes, "meta").await;
    let mut leaders = Vec::new();
    for p in 0..NODES as usize {
        leaders.push(leader_of(&nodes, &format!("t/spread/{p}")).await);
    }
    eprintln!("meta led by node {}, partitions by {leaders:?}", meta + 1);
    // Each partition is first led by its placement's first node, the node leading fewest
    // partitions when it was placed: one partition per node.
    let distinct: std::collections::BTreeSet<usize> = leaders.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        NODES as usize,
        "partition leaders (indexes) {leaders:?}"
    );
}
