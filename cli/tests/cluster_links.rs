//! Delayed and one-way links between three real `sluice serve` processes, through a proxy in
//! front of each node's cluster listener (`common::link_proxy`, which needs neither root nor
//! `netem`):
//!
//! - every link of the leader delayed (5 ms each way): it goes on confirming, each confirm a
//!   delayed round trip later;
//! - the leader's outgoing links blocked (it hears the others; they do not hear it): it
//!   confirms nothing, the others elect a leader and go on, and the old one follows once it
//!   hears them;
//! - a follower's incoming links blocked (it hears nothing; its elections reach the others):
//!   the leader and the other follower go on confirming, and the follower catches up once
//!   healed.
//!
//! - every link lossy (some chunks get a byte flipped, some connections are cut): the nodes
//!   refuse the damaged frames, reconnect, and go on confirming.
//!
//! At the end the checker verifies every node (`common::cluster_check`): nothing confirmed lost,
//! offsets unique and growing, the same messages at the same offsets everywhere, and never two
//! leaders of one group in one term.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::cluster::Node;
use common::cluster_check::*;
use common::link_proxy::{self, Links, Rule};

const NODES: u64 = 3;
const IDS: [u64; 3] = [1, 2, 3];
/// The delay of a delayed link, each way. openraft 0.9 gives an AppendEntries the heartbeat
/// interval (50 ms) to be answered, round trip and follower's fsync included, and retries it
/// from scratch otherwise: a link slower than that commits nothing (docs/replication.md,
/// "What each failure costs").
const DELAY: Duration = Duration::from_millis(5);
/// How long a publish to a leader that cannot be heard is given to (wrongly) confirm.
const UNHEARD_PUBLISH_WAIT: Duration = Duration::from_secs(3);

/// Three nodes whose peers reach each other through `links`' proxies, each `sluice serve` also
/// given `args`.
async fn start(root: &std::path::Path, links: &Arc<Links>, args: &[&str]) -> Vec<Node> {
    let mut spec = Vec::new();
    let mut nodes = Vec::new();
    for id in 1..=NODES {
        // Bound at once on a port the system picks: a port found free and bound later may be
        // taken meanwhile by the other test of this file, running beside it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap().to_string();
        let real = format!("127.0.0.1:{}", common::free_port());
        link_proxy::spawn(listener, real.clone(), id, links.clone());
        spec.push(format!("{id}@{proxy}"));
        nodes.push(Node {
            id,
            dir: root.join(format!("node-{id}")),
            native: format!("127.0.0.1:{}", common::free_port()),
            child: None,
            netns: None,
            kafka: None,
            http: None,
            args: ["--cluster-listen", &real]
                .iter()
                .chain(args)
                .map(|a| a.to_string())
                .collect(),
        });
    }
    let spec = spec.join(",");
    for n in nodes.iter_mut() {
        n.start(&spec);
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_and_one_way_links_lose_nothing_confirmed() {
    let root = tempfile::tempdir().unwrap();
    let links = Arc::new(Links::default());
    let nodes = start(root.path(), &links, &[]).await;
    create_topic(&nodes).await;
    let mut check = Checker::default();
    let mut leader = 0;
    publish_many(&nodes, &mut leader, &mut check, 30).await;

    // Every link of the leader delayed, both ways.
    let delayed = nodes[leader].id;
    eprintln!("delaying every link of node {delayed} by {DELAY:?}");
    let rule = Rule {
        delay: DELAY,
        ..Rule::default()
    };
    links.set_around(delayed, &IDS, rule);
    let mut took = Vec::new();
    for _ in 0..20 {
        took.push(publish_one(&nodes, &mut leader, &mut check).await);
    }
    took.sort();
    eprintln!(
        "confirms with the leader's links delayed: min {:?}, median {:?}, max {:?}",
        took[0],
        took[took.len() / 2],
        took[took.len() - 1]
    );
    links.heal_all();
    publish_many(&nodes, &mut leader, &mut check, 10).await;

    // The leader's outgoing links blocked: nobody hears it, it hears everybody.
    let unheard = leader;
    let unheard_id = nodes[unheard].id;
    eprintln!("blocking what node {unheard_id} (the leader) sends");
    let blocked = Rule {
        delay: Duration::ZERO,
        blocked: true,
        ..Rule::default()
    };
    for to in IDS.into_iter().filter(|i| *i != unheard_id) {
        links.set(unheard_id, to, blocked);
    }
    nothing_confirmed_by(&nodes[unheard], &mut check, 2, UNHEARD_PUBLISH_WAIT).await;
    leader = (unheard + 1) % nodes.len();
    publish_many(&nodes, &mut leader, &mut check, 20).await;
    assert_ne!(leader, unheard, "a node nobody heard confirmed");
    links.heal_all();
    publish_many(&nodes, &mut leader, &mut check, 10).await;

    // A follower's incoming links blocked: it hears nobody, everybody hears it.
    let deaf = (leader + 1) % nodes.len();
    let deaf_id = nodes[deaf].id;
    eprintln!("blocking what node {deaf_id} (a follower) receives");
    for from in IDS.into_iter().filter(|i| *i != deaf_id) {
        links.set(from, deaf_id, blocked);
    }
    publish_many(&nodes, &mut leader, &mut check, 30).await;
    assert_ne!(leader, deaf, "a node that heard nobody confirmed");
    links.heal_all();
    publish_many(&nodes, &mut leader, &mut check, 10).await;

    verify_nodes(&nodes, &check).await;
}

/// Links slower than the default heartbeat allows (openraft 0.9 gives an append one heartbeat
/// interval to be answered): with `--raft-heartbeat-ms` above the round trip, a leader whose
/// every link is delayed goes on confirming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_longer_heartbeat_carries_slow_links() {
    const SLOW: Duration = Duration::from_millis(60);
    let root = tempfile::tempdir().unwrap();
    let links = Arc::new(Links::default());
    let nodes = start(root.path(), &links, &["--raft-heartbeat-ms", "250"]).await;
    create_topic(&nodes).await;
    let mut check = Checker::default();
    let mut leader = 0;
    publish_many(&nodes, &mut leader, &mut check, 10).await;
    let slowed = nodes[leader].id;
    eprintln!("delaying every link of node {slowed} by {SLOW:?} each way");
    let rule = Rule {
        delay: SLOW,
        ..Rule::default()
    };
    links.set_around(slowed, &IDS, rule);
    let mut took = Vec::new();
    for _ in 0..20 {
        took.push(publish_one(&nodes, &mut leader, &mut check).await);
    }
    took.sort();
    eprintln!(
        "confirms over {SLOW:?} links: min {:?}, median {:?}, max {:?}",
        took[0],
        took[took.len() / 2],
        took[took.len() - 1]
    );
    links.heal_all();
    verify_nodes(&nodes, &check).await;
}

/// Every link lossy, both ways: about one chunk in [`DAMAGE_ONE_IN`] has a byte flipped (the
/// receiving node's frame checksum refuses it and closes the connection) and as many
/// connections are cut. The nodes reconnect and keep confirming; nothing confirmed is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_links_damage_frames_and_cut_connections_and_lose_nothing_confirmed() {
    const DAMAGE_ONE_IN: u32 = 40;
    let root = tempfile::tempdir().unwrap();
    let links = Arc::new(Links::default());
    let nodes = start(root.path(), &links, &[]).await;
    create_topic(&nodes).await;
    let mut check = Checker::default();
    let mut leader = 0;
    publish_many(&nodes, &mut leader, &mut check, 10).await;
    let lossy = Rule {
        damage_one_in: DAMAGE_ONE_IN,
        ..Rule::default()
    };
    for id in IDS {
        links.set_around(id, &IDS, lossy);
    }
    publish_many(&nodes, &mut leader, &mut check, 150).await;
    let (flipped, cut) = links.damage();
    eprintln!("{flipped} chunks damaged, {cut} connections cut while 150 were published");
    assert!(flipped > 0 && cut > 0, "the links were not lossy");
    links.heal_all();
    publish_many(&nodes, &mut leader, &mut check, 10).await;
    verify_nodes(&nodes, &check).await;
}
