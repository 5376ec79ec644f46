//! Leader balance with real `sluice serve` processes: three nodes, a topic of six partitions
//! and a queue, each group led by its preferred leader (the first node of its placement). The
//! node that should lead most groups is killed (kill -9): the others take its groups over.
//! When it comes back, its groups are handed back to it (`--leader-balance-ms`) while a
//! publisher goes on; the leaders then stay put, every node holds every confirmed message,
//! and no group had two leaders in a term.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{client_of, cluster_nodes, statuses, Node};
use common::cluster_check::{
    check_nodes, check_terms, create_topic, publish_many, read_all, Checker,
};
use sluice::protocol::{LogSettings, QueueSettings};

/// Longest the leaders may take to go back to their preferred nodes.
const BALANCE_WAIT: Duration = Duration::from_secs(60);

/// Each placed group's (leader, preferred leader), as the leaders report them.
async fn leadership(nodes: &[Node]) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for s in statuses(nodes).await {
        for g in &s.groups {
            if let (Some(preferred), Some(leader)) = (g.preferred, g.leader) {
                if leader == s.node_id {
                    out.insert(g.group.clone(), (leader, preferred));
                }
            }
        }
    }
    out
}

/// Waits until `groups` groups are each led by their preferred node, publishing meanwhile.
async fn wait_balanced(
    nodes: &[Node],
    groups: usize,
    leader: &mut usize,
    check: &mut Checker,
) -> Duration {
    let started = Instant::now();
    loop {
        let now = leadership(nodes).await;
        if now.len() == groups && now.values().all(|(l, p)| l == p) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < BALANCE_WAIT,
            "leaders not back on their preferred nodes: {now:?}"
        );
        publish_many(nodes, leader, check, 5).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_go_back_to_their_preferred_nodes_after_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = cluster_nodes(root.path(), 3);
    for n in nodes.iter_mut() {
        n.args = vec!["--leader-balance-ms".into(), "500".into()];
        n.http = Some(format!("127.0.0.1:{}", common::free_port()));
        n.start(&spec);
    }
    create_topic(&nodes).await;
    let all: Vec<&str> = nodes.iter().map(|n| n.native.as_str()).collect();
    let client = client_of(&all.join(",")).await;
    client
        .create_topic_with_partitions("wide", LogSettings::default(), 6)
        .await
        .unwrap();
    client
        .create_queue("jobs", QueueSettings::default())
        .await
        .unwrap();
    // The topic of the checker, six partitions, the queue and its dead-letter queue.
    let groups = 1 + 6 + 2;
    let mut check = Checker::default();
    let mut leader = 0usize;
    wait_balanced(&nodes, groups, &mut leader, &mut check).await;
    let before = leadership(&nodes).await;
    let mut led = [0usize; 3];
    for (_, p) in before.values() {
        led[*p as usize - 1] += 1;
    }
    let victim = (0..3).max_by_key(|i| led[*i]).unwrap();
    eprintln!(
        "preferred leaders per node: {led:?}; killing node {}",
        victim + 1
    );

    nodes[victim].kill9();
    let others: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let deadline = Instant::now() + BALANCE_WAIT;
    loop {
        publish_many(&nodes, &mut leader, &mut check, 5).await;
        let now = leadership(&nodes).await;
        let moved = now
            .values()
            .filter(|(l, _)| *l != victim as u64 + 1)
            .count();
        if now.len() == groups && moved == groups {
            break;
        }
        assert!(Instant::now() < deadline, "groups not taken over: {now:?}");
    }
    assert!(
        others.iter().all(|i| nodes[*i].child.is_some()),
        "the others run"
    );

    nodes[victim].start(&spec);
    let took = wait_balanced(&nodes, groups, &mut leader, &mut check).await;
    eprintln!(
        "node {} leads its {} groups again {took:?} after its restart",
        victim + 1,
        led[victim]
    );
    // And they stay there.
    publish_many(&nodes, &mut leader, &mut check, 40).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(leadership(&nodes).await, before, "the leaders moved again");
    // The nodes' metrics count the hand-overs, and no group left led elsewhere.
    let mut handed = 0.0;
    for n in &nodes {
        let addr = n.http.clone().unwrap();
        let (status, _, text) =
            tokio::task::spawn_blocking(move || common::http::get(&addr, "/metrics"))
                .await
                .unwrap();
        assert_eq!(status, 200, "{text}");
        let s = common::http::samples(&text);
        handed += common::http::value(&s, "sluice_cluster_leader_handovers_total");
        let elsewhere = common::http::value(&s, "sluice_cluster_groups_led_not_preferred");
        assert_eq!(elsewhere, 0.0, "node {}", n.id);
    }
    assert!(handed >= led[victim] as f64, "{handed} hand-overs counted");

    let want = check.confirmed.len();
    let mut copies = Vec::new();
    for n in &nodes {
        copies.push(read_all(n, want).await);
    }
    check_nodes(&copies, &check);
    check_terms(&nodes.iter().collect::<Vec<_>>(), &check);
    let terms = check.leaders.check();
    eprintln!("{want} confirmed; {terms} (group, term) pairs with one leader each");
}
