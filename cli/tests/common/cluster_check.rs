//! The checker of the cluster tests: publishes that find the leader by trying nodes, every
//! confirm recorded with the node that gave it, the leaders every node names sampled along the
//! way (at most one per group and term), and what every node must hold at the end (nothing
//! confirmed lost, offsets unique and growing, the committed prefix the same on every node,
//! nothing stored twice or never sent, and every confirm given by the one leader of the term
//! its entry was appended in: [`check_terms`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sluice::client::{Client, SubscribeOptions};
use sluice::protocol::{ErrorCode, LogSettings, Start};
use sluice::storage::Record;

use super::cluster::Node;

/// The topic the checker publishes to.
pub const TOPIC: &str = "orders";

/// What was confirmed, every value ever sent, and the leaders seen.
#[derive(Default)]
pub struct Checker {
    pub confirmed: BTreeMap<u64, String>,
    /// The node that confirmed each offset ([`check_terms`]).
    pub confirmed_by: BTreeMap<u64, u64>,
    pub sent: BTreeSet<String>,
    pub next: u64,
    pub leaders: Leaders,
}

/// Publishes between two samples of the nodes' leaders ([`Leaders::observe`]).
const PUBLISHES_PER_SAMPLE: usize = 5;

/// Longest wait for one node's status (a paused node never answers).
const STATUS_WAIT: Duration = Duration::from_millis(300);

/// For each group and term, every node any node named as its leader, sampled while the test
/// runs. Raft elects at most one leader per term, and a node names a leader only once that
/// leader's vote is committed: two leaders for one term would mean two nodes confirming in
/// the same term.
#[derive(Default)]
pub struct Leaders(BTreeMap<(String, u64), BTreeSet<u64>>);

impl Leaders {
    /// Records the leaders every running node names now (a paused one is skipped).
    pub async fn observe(&mut self, nodes: &[Node]) {
        for n in nodes.iter().filter(|n| n.child.is_some()) {
            let status = tokio::time::timeout(STATUS_WAIT, async {
                Client::connect(&n.native)
                    .await
                    .ok()?
                    .cluster_status()
                    .await
                    .ok()
            })
            .await;
            let Ok(Some(status)) = status else { continue };
            for g in status.groups {
                if let Some(l) = g.leader {
                    self.0.entry((g.group, g.term)).or_default().insert(l);
                }
            }
        }
    }

    /// Panics naming a group and term that had two leaders; answers how many (group, term)
    /// pairs were seen with a leader.
    pub fn check(&self) -> usize {
        for ((group, term), leaders) in &self.0 {
            assert_eq!(
                leaders.len(),
                1,
                "group {group}, term {term}: leaders {leaders:?}"
            );
        }
        assert!(!self.0.is_empty(), "no leader ever seen");
        self.0.len()
    }
}

/// Publishes one new value, trying nodes from `*leader` on until one confirms (a follower
/// answers NotLeader; a paused or dead node times out). Returns the time it took.
pub async fn publish_one(nodes: &[Node], leader: &mut usize, check: &mut Checker) -> Duration {
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
                check.confirmed_by.insert(p.base_offset, node.id);
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

pub async fn publish_many(nodes: &[Node], leader: &mut usize, check: &mut Checker, n: usize) {
    eprintln!(
        "{:?} publishing {n} from node {}",
        std::time::SystemTime::now(),
        *leader + 1
    );
    for i in 0..n {
        if i % PUBLISHES_PER_SAMPLE == 0 {
            check.leaders.observe(nodes).await;
        }
        publish_one(nodes, leader, check).await;
    }
}

/// Every message a node holds, in order, once it holds `at_least` of them.
pub async fn read_all(node: &Node, at_least: usize) -> Vec<(u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = read_once(node).await;
        if got.len() >= at_least || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn read_once(node: &Node) -> Vec<(u64, String)> {
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

pub async fn create_topic(nodes: &[Node]) {
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

/// Reads every node's copy (each at least as long as what was confirmed), checks them
/// ([`check_nodes`]) and the leaders seen (one per group and term), and prints the figures;
/// (messages stored on each node, (group, term) pairs seen).
pub async fn verify_nodes(nodes: &[Node], check: &Checker) -> (usize, usize) {
    let want = check.confirmed.len();
    let mut all = Vec::new();
    for n in nodes {
        all.push(read_all(n, want).await);
    }
    check_nodes(&all, check);
    check_terms(&nodes.iter().collect::<Vec<_>>(), check);
    let terms = check.leaders.check();
    eprintln!(
        "{want} confirmed, {} sent, {} stored on each node; {terms} (group, term) pairs with one \
         leader each",
        check.sent.len(),
        all[0].len()
    );
    (all[0].len(), terms)
}

/// Reads the copy of every running node (each once it holds as many messages as were
/// confirmed), checks them ([`check_nodes`]) and the terms of their confirms
/// ([`check_terms`]); answers the copies.
pub async fn check_running(nodes: &[Node], check: &Checker) -> Vec<Vec<(u64, String)>> {
    let running: Vec<&Node> = nodes.iter().filter(|n| n.child.is_some()).collect();
    let mut all = Vec::new();
    for n in &running {
        all.push(read_all(n, check.confirmed.len()).await);
    }
    check_nodes(&all, check);
    check_terms(&running, check);
    all
}

pub fn check_nodes(all: &[Vec<(u64, String)>], check: &Checker) {
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

/// Sends `tries` new values straight to `node` (a leader cut off or unheard), each given
/// `wait` to be (wrongly) confirmed, and panics if one is.
pub async fn nothing_confirmed_by(node: &Node, check: &mut Checker, tries: usize, wait: Duration) {
    for _ in 0..tries {
        let value = format!("v{}", check.next);
        check.next += 1;
        check.sent.insert(value.clone());
        let outcome = tokio::time::timeout(wait, async {
            let c = Client::connect(&node.native).await?;
            c.publish(TOPIC, &[Record::from_value(value.clone().into_bytes())])
                .await
        })
        .await;
        if let Ok(Ok(p)) = outcome {
            panic!(
                "node {} confirmed {value} at {} while no majority heard it",
                node.id, p.base_offset
            );
        }
    }
}

/// The batches of the topic (one partition, whose log is its Raft log) stored on `node`, as
/// `sluice inspect --json --batches` reads them from its directory (a running node's too):
/// (first offset, last offset, Raft term of the entry).
fn stored_terms(node: &Node) -> Vec<(u64, u64, u64)> {
    let dir = node.dir.join("topics").join(TOPIC);
    let out = std::process::Command::new(super::BIN)
        .args(["--json", "inspect", "--batches"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sluice inspect {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut batches = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] != "batch" {
            continue;
        }
        let field = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {line}"));
        // A batch the broker wrote outside Raft (the topic's own first control batch) has
        // no term: it holds no publish.
        if let Some(term) = v["raft_term"].as_u64() {
            batches.push((field("base_offset"), field("last_offset"), term));
        }
    }
    batches
}

/// Checks that no two nodes confirmed in one term, exactly rather than by samples: every
/// batch of a replicated log carries the term of the leader that appended its entry, and a
/// leader confirms only entries of its own term, so the confirms of one term must all come
/// from one node. Reads the stored logs of `nodes` (each must hold every confirmed offset, in
/// a batch of the same term on each). Answers how many terms confirmed something.
pub fn check_terms(nodes: &[&Node], check: &Checker) -> usize {
    assert!(!nodes.is_empty() && !check.confirmed.is_empty());
    let mut term_of: BTreeMap<u64, u64> = BTreeMap::new();
    for node in nodes {
        let batches = stored_terms(node);
        let mut found = 0;
        for (first, last, term) in batches {
            for o in check.confirmed.range(first..=last).map(|(o, _)| *o) {
                let before = term_of.insert(o, term);
                assert!(
                    before.is_none() || before == Some(term),
                    "node {}: confirmed offset {o} in a batch of term {term}, another node's of term {before:?}",
                    node.id
                );
                found += 1;
            }
        }
        assert_eq!(
            found,
            check.confirmed.len(),
            "node {}: confirmed offsets missing from its stored log",
            node.id
        );
    }
    let mut by_term: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (o, term) in &term_of {
        by_term
            .entry(*term)
            .or_default()
            .insert(check.confirmed_by[o]);
    }
    for (term, confirmers) in &by_term {
        assert_eq!(
            confirmers.len(),
            1,
            "term {term}: publishes confirmed by nodes {confirmers:?}"
        );
    }
    eprintln!(
        "{} confirms in {} terms, each term's by one node (the terms stored on {} nodes)",
        check.confirmed.len(),
        by_term.len(),
        nodes.len()
    );
    by_term.len()
}
