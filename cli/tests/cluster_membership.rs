//! Replacing a dead machine while the cluster serves, with real `sluice serve` processes: of
//! three nodes one is killed for good and removed (`sluice cluster remove-node`), a fourth,
//! started empty with `--join`, is added (`sluice cluster add-node`) and every group moves onto
//! it, all while a publisher goes on; then one of the first nodes is killed, and the two left
//! (one of them the new node) still confirm, and the queue published to before the changes
//! hands out every message. Then a live node, the leader of the topic's partition, is removed
//! while it serves, and the node that joined restarts. At the end every node of the cluster
//! holds every confirmed message at its offset, and no group had two leaders in a term.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::Node;
use common::cluster::{
    client_of, leader_of, next_delivery, publish_to_queue, started_cluster, statuses,
};
use common::cluster_check::{check_running, create_topic, publish_one, Checker};
use sluice::protocol::{QueueSettings, Source};

/// Longest the groups may take to move onto a changed set of nodes.
const MOVE_WAIT: Duration = Duration::from_secs(120);

/// Messages put in the queue before the changes.
const QUEUED: usize = 40;

fn addrs(nodes: &[&Node]) -> String {
    let all: Vec<&str> = nodes.iter().map(|n| n.native.as_str()).collect();
    all.join(",")
}

/// Publishes while waiting until every live node in `want` reports `groups` groups, each with
/// `want` as its voters and no learner; fails after [`MOVE_WAIT`]. Answers how many publishes
/// were confirmed meanwhile.
async fn publish_until_moved(
    nodes: &[Node],
    want: &[u64],
    groups: usize,
    leader: &mut usize,
    check: &mut Checker,
) -> usize {
    let started = Instant::now();
    let before = check.confirmed.len();
    loop {
        publish_one(nodes, leader, check).await;
        check.leaders.observe(nodes).await;
        let all = statuses(nodes).await;
        let settled = want.iter().all(|id| {
            all.iter().find(|s| s.node_id == *id).is_some_and(|s| {
                s.groups.len() == groups
                    && s.groups
                        .iter()
                        .all(|g| g.voters == want && g.learners.is_empty())
            })
        });
        if settled {
            return check.confirmed.len() - before;
        }
        if started.elapsed() > MOVE_WAIT {
            let views: Vec<String> = all
                .iter()
                .flat_map(|s| {
                    s.groups.iter().map(move |g| {
                        format!(
                            "node {}: {} voters {:?} learners {:?} leader {:?}",
                            s.node_id, g.group, g.voters, g.learners, g.leader
                        )
                    })
                })
                .collect();
            panic!("groups not on {want:?}: {views:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three nodes with the topic `orders` and the queue `jobs`, and a client of all three.
async fn cluster_with_topic_and_queue(
    root: &std::path::Path,
) -> (Vec<Node>, String, String, sluice::client::Client) {
    let (nodes, spec) = started_cluster(root, 3);
    create_topic(&nodes).await;
    let first_addrs = addrs(&nodes.iter().collect::<Vec<_>>());
    let client = client_of(&first_addrs).await;
    client
        .create_queue("jobs", QueueSettings::default())
        .await
        .unwrap();
    (nodes, spec, first_addrs, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_replaced_while_the_cluster_serves() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec, first_addrs, client) = cluster_with_topic_and_queue(root.path()).await;
    let queued = publish_to_queue(&client, "jobs", "job-", QUEUED).await;
    let mut check = Checker::default();
    let mut leader = 0usize;
    for _ in 0..20 {
        publish_one(&nodes, &mut leader, &mut check).await;
    }
    // meta, the topic's partition, the queue and its dead-letter queue.
    let groups = statuses(&nodes).await[0].groups.len();
    assert_eq!(groups, 4);
    let shown = common::cli_ok(&first_addrs, &["--json", "cluster", "status"], None);
    let node_line: serde_json::Value = serde_json::from_str(&shown[0]).unwrap();
    let cluster_id = node_line["cluster_id"].as_str().unwrap().to_string();
    let text = common::cli_ok(&first_addrs, &["cluster", "status"], None);
    assert_eq!(text[0], format!("cluster {cluster_id}"));

    // Node 3's machine dies; it is removed, and every group goes on with nodes 1 and 2.
    nodes[2].kill9();
    let live = addrs(&[&nodes[0], &nodes[1]]);
    let out = common::cli_ok(&live, &["cluster", "remove-node", "3"], None);
    assert!(out[0].contains("node 3 removed"), "{out:?}");
    let during_remove = publish_until_moved(&nodes, &[1, 2], groups, &mut leader, &mut check).await;
    // Removing it again is refused by name.
    let again = common::cli(&live, &["cluster", "remove-node", "3"], None);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not a node of the cluster"));

    // Node 4 starts empty and joins; every group gains a replica on it while publishes go on.
    let (fourth, fourth_spec) = common::cluster::joining_node(root.path(), 4, &cluster_id);
    nodes.push(fourth);
    let out = common::cli_ok(&live, &["cluster", "add-node", &fourth_spec], None);
    assert!(out[0].contains("node 4 added"), "{out:?}");
    let during_add = publish_until_moved(&nodes, &[1, 2, 4], groups, &mut leader, &mut check).await;
    eprintln!(
        "confirmed while node 3 was removed: {during_remove}; while node 4 was added: {during_add}"
    );
    assert!(during_remove > 0 && during_add > 0);

    // Node 1 dies too: nodes 2 and 4 are a majority of the groups' members and go on.
    nodes[0].kill9();
    for _ in 0..20 {
        publish_one(&nodes, &mut leader, &mut check).await;
    }
    let survivors = addrs(&[&nodes[1], &nodes[3]]);
    let consumer_client = client_of(&survivors).await;
    let mut consumer = consumer_client
        .consume(Source::Queue("jobs".into()), 100)
        .await
        .unwrap();
    let mut got = BTreeSet::new();
    while got.len() < QUEUED {
        let d = next_delivery(&mut consumer, "the queued messages after the changes").await;
        got.insert(d.offset);
        d.ack().await.unwrap();
    }
    assert_eq!(got, queued.iter().copied().collect::<BTreeSet<_>>());

    // Node 1 comes back.
    nodes[0].start(&spec);
    for _ in 0..10 {
        publish_one(&nodes, &mut leader, &mut check).await;
    }

    // The topic partition's leader is removed while it serves: it hands the group over once
    // the change is committed, and the two others go on.
    let lead = leader_of(&nodes, "t/orders/0").await;
    let gone = nodes[lead].id;
    let rest: Vec<u64> = [1, 2, 4].into_iter().filter(|id| *id != gone).collect();
    let all_addrs = addrs(
        &nodes
            .iter()
            .filter(|n| n.child.is_some())
            .collect::<Vec<_>>(),
    );
    common::cli_ok(
        &all_addrs,
        &["cluster", "remove-node", &gone.to_string()],
        None,
    );
    let during_live_remove =
        publish_until_moved(&nodes, &rest, groups, &mut leader, &mut check).await;
    assert!(during_live_remove > 0);
    nodes[lead].kill9();

    // The node that joined restarts like any other.
    nodes[3].kill9();
    nodes[3].start(&fourth_spec);
    for _ in 0..10 {
        publish_one(&nodes, &mut leader, &mut check).await;
    }
    let want = check.confirmed.len();
    for s in statuses(&nodes).await {
        for g in &s.groups {
            eprintln!(
                "node {}: {} term {} leader {:?} last {:?} applied {:?} voters {:?} followers {:?}",
                s.node_id,
                g.group,
                g.term,
                g.leader,
                g.last_index,
                g.applied_index,
                g.voters,
                g.followers
            );
        }
    }
    let all = check_running(&nodes, &check).await;
    let terms = check.leaders.check();
    eprintln!(
        "{want} confirmed, {} stored on each of {} nodes; {terms} (group, term) pairs with one leader each",
        all[0].len(),
        all.len()
    );
}

/// A change of members interrupted: a node joins a cluster of two, and while its groups are
/// being moved onto it, it is paused (SIGSTOP) and the node driving the change (the
/// metadata's leader) is killed, then restarted. The change finishes once both are back, and
/// every confirmed message is on every node at its offset, with one leader per term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_change_finishes_after_its_driver_is_killed_and_the_new_node_paused() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec, first_addrs, _client) = cluster_with_topic_and_queue(root.path()).await;
    let mut check = Checker::default();
    let mut leader = 0usize;
    for _ in 0..20 {
        publish_one(&nodes, &mut leader, &mut check).await;
    }
    let groups = statuses(&nodes).await[0].groups.len();
    let cluster_id = common::cluster::cluster_id(&first_addrs);
    nodes[2].kill9();
    let live = addrs(&[&nodes[0], &nodes[1]]);
    common::cli_ok(&live, &["cluster", "remove-node", "3"], None);
    publish_until_moved(&nodes, &[1, 2], groups, &mut leader, &mut check).await;

    // Node 4 joins; once the change is under way, it stops, and the metadata's leader dies.
    let (fourth, fourth_spec) = common::cluster::joining_node(root.path(), 4, &cluster_id);
    nodes.push(fourth);
    common::cli_ok(&live, &["cluster", "add-node", &fourth_spec], None);
    let deadline = Instant::now() + MOVE_WAIT;
    while !statuses(&nodes).await.iter().any(|s| {
        s.groups
            .iter()
            .any(|g| g.learners.contains(&4) || g.voters.contains(&4))
    }) {
        assert!(Instant::now() < deadline, "node 4 never became a member");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nodes[3].signal(libc::SIGSTOP);
    let driver = leader_of(&nodes[..2], "meta").await;
    nodes[driver].kill9();
    // With one of the two old members down, the groups it holds cannot commit (nor the change).
    tokio::time::sleep(Duration::from_secs(1)).await;
    nodes[driver].start(&spec);
    nodes[3].signal(libc::SIGCONT);
    let after = publish_until_moved(&nodes, &[1, 2, 4], groups, &mut leader, &mut check).await;
    assert!(after > 0);
    for _ in 0..10 {
        publish_one(&nodes, &mut leader, &mut check).await;
    }
    let want = check.confirmed.len();
    check_running(&nodes, &check).await;
    let terms = check.leaders.check();
    eprintln!("{want} confirmed; {terms} (group, term) pairs with one leader each");
}
