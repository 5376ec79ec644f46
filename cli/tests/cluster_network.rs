//! Network faults between the nodes of a three-node cluster: each node runs in its own network
//! namespace, joined to the others by a bridge (`common::netns`), and the test cuts and slows
//! those links while it still reaches every node over a link of its own.
//!
//! - The partition leader is cut off: it must confirm nothing while cut (publishes sent to it
//!   time out or fail), the other two elect a leader and go on, and once the link is back the
//!   old leader follows and drops its unconfirmed tail.
//! - A follower's link is slowed to a crawl: the leader and the other follower keep confirming.
//! - A follower is cut off and rejoins: it catches up.
//! - Topics are created while a metadata follower is cut off (one created through it is
//!   refused and made nowhere), then while the metadata's leader is: once each link is back,
//!   every node lists every topic, holds its replicas and knows their leaders, and each topic
//!   takes a publish.
//!
//! - A run of faults drawn at random (seeded; `SLUICE_SOAK_SEED` repeats one): a node killed
//!   with SIGKILL and restarted, paused with SIGSTOP, cut off, its link slowed, or killed and
//!   restarted while cut off; the leader half of the time. 8 faults by default,
//!   `SLUICE_SOAK=1` makes it 300, `SLUICE_MIXED_FAULTS=N` N.
//!
//! At the end the checker verifies every node (`common::cluster_check`): nothing confirmed lost,
//! offsets unique and growing, the same messages at the same offsets on every node.
//! Needs root and iproute2 (`ip netns`); skipped without them, failed under `CI=true`.

mod common;

use std::time::{Duration, Instant};

use common::cluster_check::*;
use common::netns::Hosts;

const NODES: u32 = 3;
const NATIVE_PORT: u16 = 7450;
const CLUSTER_PORT: u16 = 7460;
/// How long a publish to a cut-off leader is given to (wrongly) confirm.
const CUT_PUBLISH_WAIT: Duration = Duration::from_secs(3);
/// The speed of a slowed link.
const SLOW_KBIT: u32 = 64;

/// Held by each test: they run one after another (six nodes at once on a small machine
/// would move the timings the faults are judged by).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How many faults the mixed run draws: `SLUICE_MIXED_FAULTS`, else 300 with
/// `SLUICE_SOAK=1`, else 8.
fn mixed_faults() -> usize {
    if let Some(n) = std::env::var("SLUICE_MIXED_FAULTS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    if std::env::var("SLUICE_SOAK").is_ok_and(|v| v == "1") {
        300
    } else {
        8
    }
}

/// One fault of the mixed run, on one node.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    Pause,
    Cut,
    Slow,
    KillWhileCut,
}

const FAULTS: [Fault; 5] = [
    Fault::Kill,
    Fault::Pause,
    Fault::Cut,
    Fault::Slow,
    Fault::KillWhileCut,
];

/// Index (in `nodes`) of a node other than `a` and `b`.
fn other(a: usize, b: usize) -> usize {
    (0..NODES as usize).find(|i| *i != a && *i != b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_slowed_links_lose_nothing_confirmed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(hosts) = Hosts::new(NODES) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let nodes = hosts.start_nodes(root.path(), NATIVE_PORT, CLUSTER_PORT);
    create_topic(&nodes).await;
    let mut check = Checker::default();
    let mut leader = 0;
    publish_many(&nodes, &mut leader, &mut check, 30).await;

    // The leader is cut off: it confirms nothing; the other two elect a leader and go on.
    let cut = leader;
    eprintln!("cutting off node {} (the leader)", cut + 1);
    hosts.cut(cut as u32 + 1);
    let started = Instant::now();
    leader = (cut + 1) % nodes.len();
    publish_one(&nodes, &mut leader, &mut check).await;
    eprintln!(
        "first confirm on node {} {:?} after the cut",
        leader + 1,
        started.elapsed()
    );
    assert_ne!(leader, cut, "the cut-off node confirmed");
    // The old leader has no way to learn it was replaced: it must still confirm nothing.
    nothing_confirmed_by(&nodes[cut], &mut check, 2, CUT_PUBLISH_WAIT).await;
    publish_many(&nodes, &mut leader, &mut check, 30).await;
    // Back: it follows the new leader and drops what it never had confirmed.
    hosts.heal(cut as u32 + 1);
    publish_many(&nodes, &mut leader, &mut check, 30).await;

    // A follower behind a crawling link: the leader and the other follower confirm.
    let slow = other(leader, leader);
    eprintln!("slowing node {} to {SLOW_KBIT} kbit/s", slow + 1);
    hosts.slow(slow as u32 + 1, SLOW_KBIT);
    let before = leader;
    publish_many(&nodes, &mut leader, &mut check, 50).await;
    assert_eq!(
        leader, before,
        "the leader changed behind a slow follower's link"
    );
    hosts.heal(slow as u32 + 1);

    // A follower cut off, then back: it catches up.
    let away = other(leader, slow);
    eprintln!("cutting off node {} (a follower)", away + 1);
    hosts.cut(away as u32 + 1);
    publish_many(&nodes, &mut leader, &mut check, 30).await;
    hosts.heal(away as u32 + 1);
    publish_many(&nodes, &mut leader, &mut check, 10).await;

    let mut all = Vec::new();
    for n in &nodes {
        all.push(read_all(n, check.confirmed.len()).await);
    }
    eprintln!(
        "{} confirmed, {} sent, {} stored on each node",
        check.confirmed.len(),
        check.sent.len(),
        all[0].len()
    );
    check_nodes(&all, &check);
    check_terms(&nodes.iter().collect::<Vec<_>>(), &check);
    let terms = check.leaders.check();
    eprintln!("{terms} (group, term) pairs seen, one leader each");
}

/// Topics `names` created through `via` (a node given with every live node after it, so the
/// client follows the metadata's leader); each creation confirmed.
async fn create_topics(nodes: &[common::cluster::Node], via: &[usize], names: &[String]) {
    let addrs: Vec<&str> = via.iter().map(|&i| nodes[i].native.as_str()).collect();
    let client = common::cluster::client_of(&addrs.join(",")).await;
    for name in names {
        let settings = sluice::protocol::LogSettings {
            replicas: Some(3),
            ..Default::default()
        };
        client
            .create_topic_with_partitions(name, settings, 2)
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    }
}

/// Waits until node `n` lists every topic of `names` and none of `absent`, each of two
/// partitions whose replica it holds and whose leader it knows.
async fn wait_topics_on(n: &common::cluster::Node, names: &[String], absent: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = async {
            let c = sluice::client::Client::connect(&n.native).await.ok()?;
            let listed = c.list_topics().await.ok()?;
            if absent.iter().any(|a| listed.iter().any(|l| l == a)) {
                return Some(false);
            }
            let status = c.cluster_status().await.ok()?;
            let ok = names.iter().all(|t| {
                listed.contains(t)
                    && (0..2).all(|p| {
                        let g = format!("t/{t}/{p}");
                        status
                            .groups
                            .iter()
                            .any(|s| s.group == g && s.leader.is_some())
                    })
            });
            Some(ok)
        };
        if ready.await == Some(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {} never held every topic created while it was cut off",
            n.id
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_created_while_a_node_is_cut_off_reach_it_once_its_link_is_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(hosts) = Hosts::new(NODES) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let nodes = hosts.start_nodes(root.path(), NATIVE_PORT, CLUSTER_PORT);
    create_topic(&nodes).await;
    let meta = common::cluster::leader_of(&nodes, "meta").await;

    // A node that does not lead the metadata is cut off: creations through the others are
    // confirmed; one through it is refused and made nowhere.
    let follower = other(meta, meta);
    eprintln!("cutting off node {} (a metadata follower)", follower + 1);
    hosts.cut(follower as u32 + 1);
    let first: Vec<String> = (0..6).map(|i| format!("while-cut-{i}")).collect();
    let rest: Vec<usize> = (0..nodes.len()).filter(|&i| i != follower).collect();
    create_topics(&nodes, &rest, &first).await;
    let lone = sluice::client::Client::connect(&nodes[follower].native)
        .await
        .unwrap();
    let refused = lone
        .create_topic("through-the-cut-node", Default::default())
        .await;
    assert!(
        refused.is_err(),
        "a creation through the cut-off node: {refused:?}"
    );
    hosts.heal(follower as u32 + 1);
    for n in &nodes {
        wait_topics_on(n, &first, &["through-the-cut-node"]).await;
    }

    // The metadata's leader is cut off: the other two elect one and creations go on.
    let meta = common::cluster::leader_of(&nodes, "meta").await;
    eprintln!("cutting off node {} (the metadata's leader)", meta + 1);
    hosts.cut(meta as u32 + 1);
    let second: Vec<String> = (0..4).map(|i| format!("leader-cut-{i}")).collect();
    let rest: Vec<usize> = (0..nodes.len()).filter(|&i| i != meta).collect();
    create_topics(&nodes, &rest, &second).await;
    hosts.heal(meta as u32 + 1);
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    for n in &nodes {
        wait_topics_on(n, &all, &["through-the-cut-node"]).await;
    }
    // Each takes a publish through its leader.
    let addrs: Vec<&str> = nodes.iter().map(|n| n.native.as_str()).collect();
    let client = common::cluster::client_of(&addrs.join(",")).await;
    for t in &all {
        let record = sluice::storage::Record::from_value(t.clone().into_bytes());
        client.publish(t, &[record]).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_process_and_network_faults_lose_nothing_confirmed() {
    use rand::{Rng, SeedableRng};
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(hosts) = Hosts::new(NODES) else {
        return;
    };
    let seed = std::env::var("SLUICE_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("mixed faults, seed {seed} (SLUICE_SOAK_SEED={seed} repeats this run)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let root = tempfile::tempdir().unwrap();
    let mut nodes = hosts.start_nodes(root.path(), NATIVE_PORT, CLUSTER_PORT);
    let spec = hosts.spec(CLUSTER_PORT);
    create_topic(&nodes).await;
    let mut check = Checker::default();
    let mut leader = 0;
    publish_many(&nodes, &mut leader, &mut check, 20).await;
    let mut drawn = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..mixed_faults() {
        let fault = FAULTS[rng.gen_range(0..FAULTS.len())];
        let at = if rng.gen_bool(0.5) {
            leader
        } else {
            other(leader, leader)
        };
        let id = at as u32 + 1;
        eprintln!(
            "fault {round}: {fault:?} on node {id} (leader: node {})",
            leader + 1
        );
        *drawn.entry(format!("{fault:?}")).or_default() += 1;
        match fault {
            Fault::Kill => {
                nodes[at].kill9();
                publish_many(&nodes, &mut leader, &mut check, 15).await;
                nodes[at].start(&spec);
            }
            Fault::Pause => {
                nodes[at].signal(libc::SIGSTOP);
                publish_many(&nodes, &mut leader, &mut check, 15).await;
                nodes[at].signal(libc::SIGCONT);
            }
            Fault::Cut => {
                hosts.cut(id);
                publish_many(&nodes, &mut leader, &mut check, 15).await;
                hosts.heal(id);
            }
            Fault::Slow => {
                hosts.slow(id, SLOW_KBIT);
                publish_many(&nodes, &mut leader, &mut check, 15).await;
                hosts.heal(id);
            }
            Fault::KillWhileCut => {
                hosts.cut(id);
                publish_many(&nodes, &mut leader, &mut check, 10).await;
                nodes[at].kill9();
                nodes[at].start(&spec);
                publish_many(&nodes, &mut leader, &mut check, 5).await;
                hosts.heal(id);
            }
        }
        publish_many(&nodes, &mut leader, &mut check, 10).await;
    }
    let mut all = Vec::new();
    for n in &nodes {
        all.push(read_all(n, check.confirmed.len()).await);
    }
    check_nodes(&all, &check);
    check_terms(&nodes.iter().collect::<Vec<_>>(), &check);
    let terms = check.leaders.check();
    eprintln!(
        "seed {seed}: faults {drawn:?}; {} confirmed, {} sent, {} stored on each node; \
         {terms} (group, term) pairs seen, one leader each",
        check.confirmed.len(),
        check.sent.len(),
        all[0].len()
    );
}
