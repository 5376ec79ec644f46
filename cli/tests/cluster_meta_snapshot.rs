//! Snapshots of the cluster metadata, against three real `sluice serve` processes started
//! with `--meta-snapshot-entries 100`. While node 3 is down, 600 offset commits (each a
//! metadata entry of about 4 KiB) fill the metadata's log past its first segments; a topic is
//! created, another deleted, a queue created, and the offsets of a group (committed before)
//! deleted over HTTP. The metadata's leader compacts the log: every
//! live node saves its metadata image and drops the log's first segments. Node 3, restarted,
//! lacks entries that are gone: it installs the leader's snapshot, so it lists what the others
//! list, holds the same offsets (not the deleted group's), no longer holds the deleted topic,
//! and opens its replica of
//! the new topic, which catches up. Then every node is SIGKILLed and restarted: each restores
//! its metadata from its image and the log after it (placements, partition counts, offsets,
//! topics), the same as before, and a topic still grows through the metadata. Last, a fourth
//! node added to the cluster starts from a snapshot as well and holds the same metadata.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::{client_of, cluster_id, cluster_nodes, joining_node, live_addrs, Node, STEP};
use sluice::client::{Client, SubscribeOptions};
use sluice::protocol::{LogSettings, QueueSettings, Target};
use sluice::storage::Record;

const COMMITS: u64 = 600;
const METADATA_BYTES: usize = 4000;

/// The base offset of the first segment of node `n`'s metadata log.
fn meta_log_start(n: &Node) -> u64 {
    let dir = n.dir.join("cluster/meta/log");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".log")?.parse::<u64>().ok()
        })
        .min()
        .unwrap_or(0)
}

fn has_image(n: &Node) -> bool {
    n.dir.join("cluster/meta-image").is_file()
}

/// What node `n` holds of the metadata: topics (with partition counts), queues, and the
/// committed offsets of topic `t0`; `None` while it cannot tell (starting, or joining).
async fn metadata(n: &Node) -> Option<Metadata> {
    let c = Client::connect(&n.native).await.ok()?;
    let mut topics = BTreeMap::new();
    for t in c.list_topics().await.ok()? {
        let info = c.describe_topic(&t).await.ok()?;
        topics.insert(t, info.partitions.len());
    }
    let mut queues = c.list_queues().await.ok()?;
    queues.sort();
    let info = c.describe_topic("t0").await.ok()?;
    let mut offsets: Vec<(String, u64)> = info.partitions[0]
        .subscribers
        .iter()
        .map(|s| (s.name.clone(), s.committed))
        .collect();
    offsets.sort();
    Some((topics, queues, offsets))
}

type Metadata = (BTreeMap<String, usize>, Vec<String>, Vec<(String, u64)>);

/// Each group's preferred leader (its placement's first node), as node `n` knows it.
async fn preferred(n: &Node) -> BTreeMap<String, Option<u64>> {
    let c = Client::connect(&n.native).await.unwrap();
    let s = c.cluster_status().await.unwrap();
    s.groups
        .into_iter()
        .filter(|g| g.group != "meta")
        .map(|g| (g.group, g.preferred))
        .collect()
}

/// Waits (at most [`STEP`]) until `done` holds of what `what` reads.
async fn wait_for<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    what: &str,
    mut read: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + STEP;
    loop {
        let got = read().await;
        if done(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "{what}: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn start_all(nodes: &mut [Node], spec: &str) {
    for n in nodes.iter_mut() {
        n.start(spec);
    }
}

async fn publish(client: &Client, topic: &str, count: usize) {
    let records: Vec<Record> = (0..count)
        .map(|i| Record::from_value(format!("m{i}").into_bytes()))
        .collect();
    client
        .publish_to(Target::Topic(topic.into()), &records)
        .await
        .unwrap();
}

async fn wait_image_and_cut(n: &Node) {
    let dir: &Path = &n.dir;
    wait_for(
        &format!("node {} saves an image and cuts its metadata log", n.id),
        || async { (has_image(n), meta_log_start(n)) },
        |&(image, start)| image && start > 0,
    )
    .await;
    eprintln!(
        "node {} ({}): metadata log starts at {}",
        n.id,
        dir.display(),
        meta_log_start(n)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_log_is_cut_and_every_node_restores_its_metadata() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = cluster_nodes(root.path(), 3);
    for n in nodes.iter_mut() {
        n.args = vec!["--meta-snapshot-entries".into(), "100".into()];
    }
    let http = format!("127.0.0.1:{}", common::free_port());
    nodes[0].http = Some(http.clone());
    start_all(&mut nodes, &spec);
    let client = client_of(&live_addrs(&nodes)).await;
    let pair = LogSettings {
        replicas: Some(2),
        ..Default::default()
    };
    client
        .create_topic("t0", LogSettings::default())
        .await
        .unwrap();
    client
        .create_topic("gone", LogSettings::default())
        .await
        .unwrap();
    client.create_topic("pair", pair.clone()).await.unwrap();
    client
        .create_queue("jobs", QueueSettings::default())
        .await
        .unwrap();
    publish(&client, "t0", 1000).await;
    // A named subscriber, whose offsets are committed below.
    let opts = SubscribeOptions {
        name: Some("reader".into()),
        ..Default::default()
    };
    drop(client.subscribe("t0", opts).await.unwrap());
    // A group whose offsets node 3 holds, deleted while it is down.
    let opts = SubscribeOptions {
        name: Some("dropped".into()),
        ..Default::default()
    };
    drop(client.subscribe("t0", opts).await.unwrap());
    client.commit("t0", "dropped", 0, 7).await.unwrap();
    let n3 = &nodes[2];
    wait_for(
        "node 3's offsets of the group deleted later",
        || metadata(n3),
        |m| {
            m.as_ref()
                .is_some_and(|m| m.2.contains(&("dropped".into(), 7)))
        },
    )
    .await;

    // Node 3 misses what follows.
    nodes[2].kill9();
    let client = client_of(&live_addrs(&nodes)).await;
    // Before the commits, so that the snapshot node 3 installs holds the deletion.
    let (status, body) = common::http::json(&http, "DELETE", "/api/groups/dropped", None);
    assert_eq!(status, 200, "{body}");
    let metadata_bytes = vec![b'm'; METADATA_BYTES];
    for next in 1..=COMMITS {
        client
            .commit_with_metadata("t0", "reader", 0, next, &metadata_bytes)
            .await
            .unwrap();
    }
    client
        .create_topic("late", LogSettings::default())
        .await
        .unwrap();
    client.delete_topic("gone").await.unwrap();
    client
        .create_queue("later", QueueSettings::default())
        .await
        .unwrap();
    for n in &nodes[..2] {
        wait_image_and_cut(n).await;
    }
    assert!(!has_image(&nodes[2]), "node 3 was down");

    // Node 3 comes back behind what the leader cut: it installs the snapshot.
    nodes[2].start(&spec);
    let want = metadata(&nodes[0]).await;
    let w = want.as_ref().expect("node 1's metadata");
    assert_eq!(w.2, vec![("reader".to_string(), COMMITS)], "{want:?}");
    assert!(
        w.0.contains_key("late") && !w.0.contains_key("gone"),
        "{want:?}"
    );
    let n3 = &nodes[2];
    wait_for("node 3's metadata", || metadata(n3), |got| *got == want).await;
    wait_image_and_cut(n3).await;
    // Its replica of the new topic was opened: it takes part and catches up.
    let client = client_of(&live_addrs(&nodes)).await;
    publish(&client, "late", 10).await;
    let n3c = Client::connect(&n3.native).await.unwrap();
    wait_for(
        "node 3's replica of the new topic",
        || async { n3c.describe_topic("late").await.unwrap().partitions[0].end_offset },
        |&end| end >= 10,
    )
    .await;
    // Each node's groups (those it holds), each with its preferred leader.
    let mut placed = Vec::new();
    for n in &nodes {
        let p = preferred(n).await;
        assert!(p.values().all(Option::is_some), "node {}: {p:?}", n.id);
        placed.push(p);
    }
    assert!(placed[2].contains_key("t/late/0"), "{placed:?}");

    // Every node restarts from its image and the log after it.
    for n in nodes.iter_mut() {
        n.kill9();
    }
    start_all(&mut nodes, &spec);
    for (n, placed) in nodes.iter().zip(&placed) {
        wait_for(
            &format!("node {}'s metadata", n.id),
            || metadata(n),
            |got| *got == want,
        )
        .await;
        let p = wait_for(
            &format!("node {}'s groups", n.id),
            || preferred(n),
            |p| p.len() == placed.len(),
        )
        .await;
        assert_eq!(&p, placed, "node {}'s placements", n.id);
    }
    // Partition counts came back too: a topic grows through the metadata.
    let client = client_of(&live_addrs(&nodes)).await;
    client.add_partitions("pair", 2).await.unwrap();
    for n in &nodes {
        wait_for(
            &format!("node {} sees pair grown", n.id),
            || metadata(n),
            |got| got.as_ref().is_some_and(|m| m.0.get("pair") == Some(&2)),
        )
        .await;
    }
    publish(&client, "late", 1).await;

    // A node added after the cut starts from a snapshot too, and holds the same metadata.
    let want = metadata(&nodes[0]).await;
    assert!(want.is_some());
    let addrs = live_addrs(&nodes);
    let (fourth, fourth_spec) = joining_node(root.path(), 4, &cluster_id(&addrs));
    common::cli_ok(&addrs, &["cluster", "add-node", &fourth_spec], None);
    wait_for(
        "node 4's metadata",
        || metadata(&fourth),
        |got| *got == want,
    )
    .await;
    wait_image_and_cut(&fourth).await;
}
