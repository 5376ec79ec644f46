//! A cluster of three real `sluice serve` processes on loopback, each with its own data
//! directory, native port and cluster port, under a fault driver: the partition leader is
//! killed with SIGKILL and restarted, a follower and then the leader are paused with SIGSTOP.
//! Publishers find the leader by trying nodes (a follower answers `NotLeader`).
//!
//! A checker records every confirmed publish (offset and value) and verifies, on every node at
//! the end:
//! - nothing confirmed is lost: each confirmed value is at its confirmed offset;
//! - no two confirms name the same offset (two leaders never confirmed in one place);
//! - every node holds the same messages at the same offsets (the committed prefix agrees);
//! - no message is stored twice and none is one no publisher sent.
//!
//! `SLUICE_CLUSTER_ROUNDS` repeats the fault cycle (default 1; `SLUICE_SOAK=1` makes it 20).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::{cluster_nodes, Node};
use sluice::client::{Client, SubscribeOptions};
use sluice::protocol::{ErrorCode, LogSettings, Start};
use sluice::storage::Record;

const TOPIC: &str = "orders";
const NODES: u64 = 3;

/// What was confirmed, and every value ever sent.
#[derive(Default)]
struct Checker {
    confirmed: BTreeMap<u64, String>,
    sent: BTreeSet<String>,
    next: u64,
}

/// Publishes one new value, trying nodes from `*leader` on until one confirms (a follower
/// answers NotLeader; a paused or dead node times out). Returns the time it took.
async fn publish_one(nodes: &[Node], leader: &mut usize, check: &mut Checker) -> Duration {
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no node confirmed for 30 s"
        );
        let node = &nodes[*leader];
        let value = format!("v{}", check.next);
        check.next += 1;
        check.sent.insert(value.clone());
        let outcome = tokio::time::timeout(Duration::from_secs(2), async {
            let c = Client::connect(&node.native).await?;
            c.publish(TOPIC, &[Record::from_value(value.clone().into_bytes())])
                .await
        })
        .await;
        match outcome {
            Ok(Ok(p)) => {
                let before = check.confirmed.insert(p.base_offset, value.clone());
                assert!(
                    before.is_none(),
                    "offset {} confirmed twice: {before:?} and {value}",
                    p.base_offset
                );
                return started.elapsed();
            }
            Ok(Err(e)) if e.code() == Some(ErrorCode::NotLeader) => {}
            // Refused (a killed node), cut, or timed out (a paused node): the value's fate is
            // unknown; it is never sent again.
            Ok(Err(_)) | Err(_) => {}
        }
        *leader = (*leader + 1) % nodes.len();
        if *leader == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn publish_many(nodes: &[Node], leader: &mut usize, check: &mut Checker, n: usize) {
    eprintln!(
        "{:?} publishing {n} from node {}",
        std::time::SystemTime::now(),
        *leader + 1
    );
    for _ in 0..n {
        publish_one(nodes, leader, check).await;
    }
}

/// Every message a node holds, in order, once it holds `at_least` of them.
async fn read_all(node: &Node, at_least: usize) -> Vec<(u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = read_once(node).await;
        if got.len() >= at_least || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn read_once(node: &Node) -> Vec<(u64, String)> {
    let Ok(c) = Client::connect(&node.native).await else {
        return Vec::new();
    };
    let opts = SubscribeOptions::anonymous()
        .from(Start::Earliest)
        .credit(4096);
    let Ok(mut sub) = c.subscribe(TOPIC, opts).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        out.push((
            m.offset,
            String::from_utf8(m.record.value.to_vec()).unwrap(),
        ));
    }
    out
}

async fn create_topic(nodes: &[Node]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for k in 0.. {
        let node = &nodes[k % nodes.len()];
        if let Ok(c) = Client::connect(&node.native).await {
            match c.create_topic(TOPIC, LogSettings::default()).await {
                Ok(()) => return,
                Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => return,
                Err(_) => {}
            }
        }
        assert!(Instant::now() < deadline, "the topic could not be created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn check_nodes(all: &[Vec<(u64, String)>], check: &Checker) {
    for (i, msgs) in all.iter().enumerate() {
        let at: BTreeMap<u64, &String> = msgs.iter().map(|(o, v)| (*o, v)).collect();
        assert_eq!(
            at.len(),
            msgs.len(),
            "node {}: an offset appears twice",
            i + 1
        );
        assert!(
            msgs.windows(2).all(|w| w[0].0 < w[1].0),
            "node {}: offsets go back",
            i + 1
        );
        let values: BTreeSet<&String> = msgs.iter().map(|(_, v)| v).collect();
        assert_eq!(
            values.len(),
            msgs.len(),
            "node {}: a message is stored twice",
            i + 1
        );
        for v in &values {
            assert!(
                check.sent.contains(*v),
                "node {}: {v} was never sent",
                i + 1
            );
        }
        for (o, v) in &check.confirmed {
            assert_eq!(
                at.get(o),
                Some(&v),
                "node {}: confirmed {v} at {o} is lost",
                i + 1
            );
        }
        assert_eq!(msgs, &all[0], "node {} disagrees with node 1", i + 1);
    }
}

fn rounds() -> usize {
    if std::env::var("SLUICE_SOAK").is_ok_and(|v| v == "1") {
        return 20;
    }
    std::env::var("SLUICE_CLUSTER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_loses_nothing_confirmed_through_kills_and_pauses() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = cluster_nodes(root.path(), NODES);
    for n in nodes.iter_mut() {
        n.start(&spec);
    }
    create_topic(&nodes).await;
    let mut check = Checker::default();
    let mut leader = 0usize;
    publish_many(&nodes, &mut leader, &mut check, 50).await;
    let mut failovers = Vec::new();
    for round in 0..rounds() {
        // The leader dies: the other two elect one and go on.
        let killed = leader;
        eprintln!(
            "{:?} killing node {}",
            std::time::SystemTime::now(),
            killed + 1
        );
        nodes[killed].kill9();
        failovers.push(publish_one(&nodes, &mut leader, &mut check).await);
        assert_ne!(leader, killed);
        publish_many(&nodes, &mut leader, &mut check, 30).await;
        nodes[killed].start(&spec);

        // A follower pauses: two of three still confirm.
        let follower = (leader + 1) % nodes.len();
        eprintln!(
            "{:?} pausing follower {}",
            std::time::SystemTime::now(),
            follower + 1
        );
        nodes[follower].signal(libc::SIGSTOP);
        publish_many(&nodes, &mut leader, &mut check, 30).await;
        nodes[follower].signal(libc::SIGCONT);

        // The leader pauses past the election timeout: a new one is elected; the old one,
        // resumed, must not confirm anything the new one does not have.
        let paused = leader;
        eprintln!(
            "{:?} pausing leader {}",
            std::time::SystemTime::now(),
            paused + 1
        );
        nodes[paused].signal(libc::SIGSTOP);
        publish_many(&nodes, &mut leader, &mut check, 30).await;
        nodes[paused].signal(libc::SIGCONT);
        publish_many(&nodes, &mut leader, &mut check, 10).await;
        eprintln!("round {round}: {} confirmed", check.confirmed.len());
    }
    let want = check.confirmed.len();
    let mut all = Vec::new();
    for n in &nodes {
        all.push(read_all(n, want).await);
    }
    check_nodes(&all, &check);
    eprintln!(
        "{} confirmed, {} sent, {} stored on each node; failover (leader killed to the next \
         confirm) {:?}",
        want,
        check.sent.len(),
        all[0].len(),
        failovers
    );
}
