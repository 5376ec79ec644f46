//! Adding partitions to a topic of a cluster, with real `sluice serve` processes: three
//! nodes, a topic of two partitions with two replicas each (`--replicas 2`) grown to five.
//! Every node counts five partitions, each new one is on two nodes with a leader, and takes
//! publishes that both its replicas serve; a count not above the current one is refused by
//! name. Two nodes grow the topic at once: every node ends with the same count, and a change
//! made from a count that moved on is refused. A restarted node has the same partitions and
//! placements, and its new partitions take publishes again. Every node describes the topic
//! alike (a partition it holds no replica of with its leader's figures), in a describe and in
//! the web console's overview. And topics created one after
//! another while the metadata's leader is SIGKILLed and restarted: every creation confirmed
//! is on every node, each partition led and taking a publish, and every node lists the same
//! topics.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::{
    client_of, leader_of, live_addrs, started_cluster, started_cluster_with_http, statuses, Node,
    STEP,
};
use sluice::client::{Client, SubscribeOptions};
use sluice::protocol::{ErrorCode, LogSettings, Start};
use sluice::storage::Record;

const TOPIC: &str = "grow";

/// Each partition of [`TOPIC`]: the nodes listing a replica of it, as its leader reports it
/// (with the leader), once every partition below `count` has a leader.
async fn placed(nodes: &[Node], count: u32) -> BTreeMap<u32, (u64, BTreeSet<u64>)> {
    let deadline = Instant::now() + STEP;
    loop {
        let mut out = BTreeMap::new();
        for s in statuses(nodes).await {
            for g in &s.groups {
                let Some(p) = g.group.strip_prefix(&format!("t/{TOPIC}/")) else {
                    continue;
                };
                if g.leader == Some(s.node_id) && g.learners.is_empty() {
                    let voters = g.voters.iter().copied().collect();
                    out.insert(p.parse().unwrap(), (s.node_id, voters));
                }
            }
        }
        if out.len() == count as usize {
            return out;
        }
        assert!(Instant::now() < deadline, "partitions not all led: {out:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The messages of partition `p` a node serves, up to `value` (all of them if it never comes).
async fn read_to(node: &Node, p: u32, value: &str) -> Vec<String> {
    let c = Client::connect(&node.native).await.unwrap();
    let opts = SubscribeOptions::anonymous()
        .from(Start::Earliest)
        .partitions(vec![p])
        .credit(1024);
    let mut sub = c.subscribe(TOPIC, opts).await.unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + STEP;
    while !out.iter().any(|v| v == value) && Instant::now() < deadline {
        if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await
        {
            out.push(String::from_utf8(m.record.value.to_vec()).unwrap());
        }
    }
    out
}

/// Every node describes [`TOPIC`] alike, each partition with messages: a node holding no
/// replica of a partition gives its leader's figures (its own copy is empty).
async fn same_figures_everywhere(nodes: &[Node]) {
    let deadline = Instant::now() + STEP;
    loop {
        let mut all = Vec::new();
        for n in nodes {
            let c = Client::connect(&n.native).await.unwrap();
            let info = c.describe_topic(TOPIC).await.unwrap();
            let ends: Vec<(u64, u64)> = info
                .partitions
                .iter()
                .map(|p| (p.start_offset, p.end_offset))
                .collect();
            all.push(ends);
            // The web console's overview shows the same figures.
            if let Some(http) = &n.http {
                all.push(overview_figures(http));
            }
        }
        let same = all.windows(2).all(|w| w[0] == w[1]);
        if same && all[0].iter().all(|&(_, end)| end > 0) {
            return;
        }
        assert!(Instant::now() < deadline, "figures by node: {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`TOPIC`]'s partitions in the overview of the node whose HTTP listener is `http`.
fn overview_figures(http: &str) -> Vec<(u64, u64)> {
    let (status, body) = common::http::json(http, "GET", "/api/overview", None);
    assert_eq!(status, 200, "{body}");
    let topics = body["topics"].as_array().unwrap();
    let topic = topics.iter().find(|t| t["name"] == TOPIC).unwrap();
    let figure = |p: &serde_json::Value, k: &str| p[k].as_u64().unwrap();
    topic["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (figure(p, "start_offset"), figure(p, "end_offset")))
        .collect()
}

/// Every node's partition count of [`TOPIC`].
async fn counts(nodes: &[Node]) -> Vec<u32> {
    let mut out = Vec::new();
    for n in nodes {
        let c = Client::connect(&n.native).await.unwrap();
        out.push(c.topic_meta(TOPIC).await.unwrap().1);
    }
    out
}

/// Publishes `value` to partition `p` and checks that each of its replicas serves it.
async fn publish_and_read(
    client: &Client,
    nodes: &[Node],
    p: u32,
    hosts: &BTreeSet<u64>,
    value: &str,
) {
    let record = Record::from_value(value.as_bytes().to_vec());
    client
        .publish_to_partition(TOPIC, p, &[record])
        .await
        .unwrap_or_else(|e| panic!("partition {p}: {e}"));
    for h in hosts {
        let got = read_to(&nodes[*h as usize - 1], p, value).await;
        assert!(
            got.iter().any(|v| v == value),
            "node {h}, partition {p}: {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_of_a_cluster_grows_on_every_node() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = started_cluster_with_http(root.path(), 3);
    let all: Vec<&str> = nodes.iter().map(|n| n.native.as_str()).collect();
    let client = client_of(&all.join(",")).await;
    let two = LogSettings {
        replicas: Some(2),
        ..Default::default()
    };
    client
        .create_topic_with_partitions(TOPIC, two, 2)
        .await
        .unwrap();
    client.add_partitions(TOPIC, 5).await.unwrap();
    assert_eq!(counts(&nodes).await, vec![5, 5, 5]);
    let before = placed(&nodes, 5).await;
    for (p, (_, hosts)) in &before {
        assert_eq!(
            hosts.len(),
            2,
            "partition {p} on {hosts:?}: two replicas wanted"
        );
        publish_and_read(&client, &nodes, *p, hosts, &format!("first-{p}")).await;
    }
    same_figures_everywhere(&nodes).await;
    for bad in [5, 4] {
        let e = client.add_partitions(TOPIC, bad).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::InvalidArgument), "{e}");
        assert!(e.to_string().contains("above 5"), "{e}");
    }

    // Two nodes grow it at once, each from the count it sees.
    let (a, b) = (
        Client::connect(&nodes[0].native).await.unwrap(),
        Client::connect(&nodes[1].native).await.unwrap(),
    );
    let (ra, rb) = tokio::join!(a.add_partitions(TOPIC, 7), b.add_partitions(TOPIC, 8));
    let final_count = counts(&nodes).await;
    eprintln!("grown at once to 7: {ra:?}, to 8: {rb:?}; counts {final_count:?}");
    assert!(
        final_count.iter().all(|c| *c == final_count[0]),
        "{final_count:?}"
    );
    match (&ra, &rb) {
        (Ok(_), Ok(_)) => assert_eq!(final_count[0], 8),
        (Ok(_), Err(e)) => {
            assert_eq!(final_count[0], 7);
            assert!(e.to_string().contains("came first"), "{e}");
        }
        (Err(e), Ok(_)) => {
            assert_eq!(final_count[0], 8);
            assert!(e.to_string().contains("came first"), "{e}");
        }
        (Err(x), Err(y)) => panic!("neither grew the topic: {x}; {y}"),
    }
    let grown = final_count[0];
    let before = placed(&nodes, grown).await;

    // A restarted node has the same partitions, placed alike.
    nodes[2].kill9();
    nodes[2].start(&spec);
    assert_eq!(counts(&nodes).await, vec![grown; 3]);
    let after = placed(&nodes, grown).await;
    let hosts = |m: &BTreeMap<u32, (u64, BTreeSet<u64>)>| -> Vec<BTreeSet<u64>> {
        m.values().map(|(_, h)| h.clone()).collect()
    };
    assert_eq!(hosts(&after), hosts(&before));
    for (p, (_, hosts)) in after.iter().filter(|(p, _)| **p >= 2) {
        publish_and_read(&client, &nodes, *p, hosts, &format!("again-{p}")).await;
    }
}

/// Waits until each of `groups` has `want` voters, no learner, and is held by exactly its
/// voters (a dropped replica closed); each group's voters and preferred leader.
async fn wait_factor(
    nodes: &[Node],
    groups: &[String],
    want: usize,
) -> BTreeMap<String, (BTreeSet<u64>, Option<u64>)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = statuses(nodes).await;
        let mut out = BTreeMap::new();
        for g in groups {
            let hosts: BTreeSet<u64> = all
                .iter()
                .filter(|s| s.groups.iter().any(|x| &x.group == g))
                .map(|s| s.node_id)
                .collect();
            let led = all.iter().find_map(|s| {
                s.groups
                    .iter()
                    .find(|x| &x.group == g && x.leader == Some(s.node_id))
            });
            if let Some(l) = led {
                let voters: BTreeSet<u64> = l.voters.iter().copied().collect();
                if voters.len() == want && l.learners.is_empty() && voters == hosts {
                    out.insert(g.clone(), (voters, l.preferred));
                }
            }
        }
        if out.len() == groups.len() {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "not all of {groups:?} on {want} replicas: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replication_factor_changes_while_the_cluster_serves() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, _) = started_cluster(root.path(), 3);
    let all: Vec<&str> = nodes.iter().map(|n| n.native.as_str()).collect();
    let addrs = all.join(",");
    let client = client_of(&addrs).await;
    let one = LogSettings {
        replicas: Some(1),
        ..Default::default()
    };
    client
        .create_topic_with_partitions(TOPIC, one, 3)
        .await
        .unwrap();
    client
        .create_queue("jobs", sluice::protocol::QueueSettings::default())
        .await
        .unwrap();
    let parts: Vec<String> = (0..3).map(|p| format!("t/{TOPIC}/{p}")).collect();
    let first = wait_factor(&nodes, &parts, 1).await;
    for (p, (hosts, _)) in first.values().enumerate() {
        publish_and_read(&client, &nodes, p as u32, hosts, &format!("one-{p}")).await;
    }

    // Up to three: every node copies every partition, what was published before included.
    common::cli_ok(&addrs, &["cluster", "set-replicas", TOPIC, "3"], None);
    let three = wait_factor(&nodes, &parts, 3).await;
    for (p, (hosts, preferred)) in three.values().enumerate() {
        assert_eq!(preferred, &first[&parts[p]].0.first().copied(), "{p}");
        for h in hosts {
            let got = read_to(&nodes[*h as usize - 1], p as u32, &format!("one-{p}")).await;
            assert_eq!(got, vec![format!("one-{p}")], "node {h}, partition {p}");
        }
        publish_and_read(&client, &nodes, p as u32, hosts, &format!("three-{p}")).await;
    }

    // Down to two: each partition keeps its preferred leader and what it held.
    let two = sluice::protocol::Target::Topic(TOPIC.into());
    client.cluster_set_replicas(two, 2).await.unwrap();
    let two = wait_factor(&nodes, &parts, 2).await;
    for (p, (hosts, preferred)) in two.values().enumerate() {
        assert!(
            hosts.contains(&preferred.unwrap()),
            "{p}: {hosts:?} {preferred:?}"
        );
        publish_and_read(&client, &nodes, p as u32, hosts, &format!("two-{p}")).await;
        for h in hosts {
            let got = read_to(&nodes[*h as usize - 1], p as u32, &format!("two-{p}")).await;
            let want: Vec<String> = ["one", "three", "two"]
                .iter()
                .map(|s| format!("{s}-{p}"))
                .collect();
            assert_eq!(got, want, "node {h}, partition {p}");
        }
    }

    // A queue down to one replica still takes and hands out messages.
    let queue = sluice::protocol::Target::Queue("jobs".into());
    client.cluster_set_replicas(queue, 1).await.unwrap();
    wait_factor(&nodes, &["q/jobs".to_string()], 1).await;
    let sent = common::cluster::publish_to_queue(&client, "jobs", "job-", 5).await;
    let mut consumer = client
        .consume(sluice::protocol::Source::Queue("jobs".into()), 16)
        .await
        .unwrap();
    for _ in 0..sent.len() {
        let d = common::cluster::next_delivery(&mut consumer, "jobs").await;
        d.ack().await.unwrap();
    }

    // Refused by name: more replicas than nodes, an unknown topic.
    let e = client
        .cluster_set_replicas(sluice::protocol::Target::Topic(TOPIC.into()), 4)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument), "{e}");
    let e = client
        .cluster_set_replicas(sluice::protocol::Target::Topic("nope".into()), 2)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
}

/// Every node's topics, sorted, once each node answers.
async fn topic_lists(nodes: &[Node]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for n in nodes {
        let c = Client::connect(&n.native).await.unwrap();
        let mut l = c.list_topics().await.unwrap();
        l.sort();
        out.push(l);
    }
    out
}

/// The partition groups (`t/<topic>/<p>`) each node holds with a leader it names.
async fn led_groups(nodes: &[Node]) -> Vec<BTreeSet<String>> {
    statuses(nodes)
        .await
        .into_iter()
        .map(|s| {
            s.groups
                .into_iter()
                .filter(|g| g.leader.is_some())
                .map(|g| g.group)
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_created_through_a_metadata_leaders_kill_are_on_every_node() {
    const TOPICS: usize = 24;
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = started_cluster(root.path(), 3);
    let meta = leader_of(&nodes, "meta").await;
    let client = client_of(&live_addrs(&nodes)).await;
    let (mut confirmed, mut refused) = (Vec::new(), Vec::new());
    for i in 0..TOPICS {
        if i == TOPICS / 3 {
            nodes[meta].kill9();
        }
        if i == 2 * TOPICS / 3 {
            nodes[meta].start(&spec);
        }
        let name = format!("made-{i}");
        let made = client
            .create_topic_with_partitions(&name, LogSettings::default(), 2)
            .await;
        match made {
            Ok(()) => confirmed.push(name),
            // Made by a try whose answer was lost.
            Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => confirmed.push(name),
            Err(e) => {
                eprintln!("{name}: {e}");
                refused.push(name);
            }
        }
    }
    assert!(
        confirmed.len() >= TOPICS / 2,
        "{} of {TOPICS} confirmed; refused {refused:?}",
        confirmed.len()
    );
    // Every node, the restarted one too, ends with the same topics, every confirmed one
    // among them, each partition held with a leader on every node.
    let deadline = Instant::now() + 2 * STEP;
    loop {
        let lists = topic_lists(&nodes).await;
        let led = led_groups(&nodes).await;
        let same = lists.windows(2).all(|w| w[0] == w[1]);
        let all_made = confirmed.iter().all(|t| lists[0].contains(t));
        let all_led = led.len() == nodes.len()
            && lists[0]
                .iter()
                .all(|t| (0..2).all(|p| led.iter().all(|g| g.contains(&format!("t/{t}/{p}")))));
        if same && all_made && all_led {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "topics {lists:?} (confirmed {confirmed:?}), groups led {led:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in &confirmed {
        for p in 0..2 {
            let record = Record::from_value(format!("{t}/{p}").into_bytes());
            client
                .publish_to_partition(t, p, &[record])
                .await
                .unwrap_or_else(|e| panic!("{t} partition {p}: {e}"));
        }
    }
    eprintln!(
        "{} topics confirmed, {} refused, through the kill of node {}",
        confirmed.len(),
        refused.len(),
        nodes[meta].id
    );
}
