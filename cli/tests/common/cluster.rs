//! A cluster of real `sluice serve` processes on loopback, each with its own data directory,
//! native port and cluster port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::BIN;

pub use super::free_port;

/// One node: its addresses, directory and process.
pub struct Node {
    pub id: u64,
    pub dir: PathBuf,
    pub native: String,
    pub child: Option<Child>,
    /// The network namespace it runs in (`common::netns`), if not the test's own.
    pub netns: Option<String>,
    /// Its Kafka listener's address; `None`: off.
    pub kafka: Option<String>,
    /// Its HTTP listener's address; `None`: off.
    pub http: Option<String>,
    /// More arguments of its `sluice serve` (`--join`, `--cluster-id`).
    pub args: Vec<String>,
}

impl Node {
    pub fn start(&mut self, cluster: &str) {
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .args(["serve", "--listen", &self.native, "--kafka-listen"])
            .arg(self.kafka.as_deref().unwrap_or("off"))
            .arg("--http-listen")
            .arg(self.http.as_deref().unwrap_or("off"))
            .args(["--node-id", &self.id.to_string()])
            .args(["--cluster", cluster, "--data-dir"])
            .arg(&self.dir)
            .args(&self.args)
            // In a namespace its client address is not a loopback one, but only the test
            // reaches it.
            .args(self.netns.as_ref().map(|_| "--allow-anonymous"))
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_CLUSTER_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sluice serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("node {} did not start", self.id));
        self.child = Some(child);
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.take().unwrap().wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `count` nodes under `root` (not started) and the `--cluster` list naming them.
pub fn cluster_nodes(root: &Path, count: u64) -> (Vec<Node>, String) {
    let ports: Vec<(u16, u16)> = (0..count).map(|_| (free_port(), free_port())).collect();
    let spec = (1..=count)
        .map(|id| format!("{id}@127.0.0.1:{}", ports[id as usize - 1].1))
        .collect::<Vec<_>>()
        .join(",");
    let nodes = (1..=count)
        .map(|id| Node {
            id,
            dir: root.join(format!("node-{id}")),
            native: format!("127.0.0.1:{}", ports[id as usize - 1].0),
            child: None,
            netns: None,
            kafka: None,
            http: None,
            args: Vec::new(),
        })
        .collect();
    (nodes, spec)
}

/// [`cluster_nodes`], each started.
pub fn started_cluster(root: &Path, count: u64) -> (Vec<Node>, String) {
    let (mut nodes, spec) = cluster_nodes(root, count);
    for n in nodes.iter_mut() {
        n.start(&spec);
    }
    (nodes, spec)
}

/// [`cluster_nodes`], each with an HTTP listener, started.
pub fn started_cluster_with_http(root: &Path, count: u64) -> (Vec<Node>, String) {
    let (mut nodes, spec) = cluster_nodes(root, count);
    for n in nodes.iter_mut() {
        n.http = Some(format!("127.0.0.1:{}", free_port()));
        n.start(&spec);
    }
    (nodes, spec)
}

/// Longest a cluster of these tests may take to elect a leader of a group.
pub const ELECTION_WAIT: Duration = Duration::from_secs(30);

/// Each live node's own view of the cluster.
pub async fn statuses(nodes: &[Node]) -> Vec<sluice::protocol::ClusterStatus> {
    let mut out = Vec::new();
    for n in nodes.iter().filter(|n| n.child.is_some()) {
        if let Ok(c) = sluice::client::Client::connect(&n.native).await {
            if let Ok(s) = c.cluster_status().await {
                out.push(s);
            }
        }
    }
    out
}

/// Waits until every live node holds `group` and one of them leads it; returns its index.
pub async fn leader_of(nodes: &[Node], group: &str) -> usize {
    let deadline = std::time::Instant::now() + ELECTION_WAIT;
    loop {
        let all = statuses(nodes).await;
        let lead: Vec<u64> = all
            .iter()
            .filter(|s| {
                s.groups
                    .iter()
                    .any(|g| g.group == group && g.leader == Some(s.node_id))
            })
            .map(|s| s.node_id)
            .collect();
        if let [id] = lead[..] {
            return nodes.iter().position(|n| n.id == id).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{group}: leaders {lead:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long a step of a cluster test may take on a loaded machine.
pub const STEP: Duration = Duration::from_secs(30);

/// A client of `addrs` (comma-separated) failing over between them for up to [`STEP`].
pub async fn client_of(addrs: &str) -> sluice::client::Client {
    sluice::client::Client::builder(addrs)
        .retry_deadline(STEP)
        .connect()
        .await
        .unwrap()
}

/// Publishes `count` messages `<prefix><i>` to queue `queue`, one at a time; their offsets.
pub async fn publish_to_queue(
    client: &sluice::client::Client,
    queue: &str,
    prefix: &str,
    count: usize,
) -> Vec<u64> {
    let mut offsets = Vec::new();
    for i in 0..count {
        let r = [sluice::storage::Record::from_value(
            format!("{prefix}{i}").into_bytes(),
        )];
        let p = client
            .publish_to(sluice::protocol::Target::Queue(queue.into()), &r)
            .await
            .unwrap();
        offsets.push(p.base_offset);
    }
    offsets
}

/// The consumer's next delivery, within [`STEP`]; a panic naming `what` otherwise.
pub async fn next_delivery(
    c: &mut sluice::client::Consumer,
    what: &str,
) -> sluice::client::Delivery {
    match tokio::time::timeout(STEP, c.next()).await {
        Ok(Some(Ok(d))) => d,
        other => panic!("{what}: {:?}", other.map(|o| o.map(|r| r.err()))),
    }
}

/// Waits (at most [`STEP`]) until queue `queue` on the node at `addr` satisfies `done`.
pub async fn wait_queue(
    addr: &str,
    queue: &str,
    done: impl Fn(&sluice::protocol::QueueInfo) -> bool,
) {
    let c = sluice::client::Client::connect(addr).await.unwrap();
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let i = c.describe_queue(queue).await.unwrap();
        if done(&i) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{addr}: {i:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The addresses of the live nodes, comma-separated, for a client failing over between them.
pub fn live_addrs(nodes: &[Node]) -> String {
    let live: Vec<&str> = nodes
        .iter()
        .filter(|n| n.child.is_some())
        .map(|n| n.native.as_str())
        .collect();
    live.join(",")
}

/// An empty node `id` under `root` that waits to be added to cluster `cluster_id`, started;
/// and its `--cluster` spec (`ID@HOST:PORT`), for `sluice cluster add-node`.
pub fn joining_node(root: &Path, id: u64, cluster_id: &str) -> (Node, String) {
    let mut node = Node {
        id,
        dir: root.join(format!("node-{id}")),
        native: format!("127.0.0.1:{}", free_port()),
        child: None,
        netns: None,
        kafka: None,
        http: None,
        args: vec!["--join".into(), "--cluster-id".into(), cluster_id.into()],
    };
    let spec = format!("{id}@127.0.0.1:{}", free_port());
    node.start(&spec);
    (node, spec)
}

/// The cluster id, as `sluice cluster status` on `addrs` tells it.
pub fn cluster_id(addrs: &str) -> String {
    let status = super::cli_ok(addrs, &["--json", "cluster", "status"], None);
    let first: serde_json::Value = serde_json::from_str(&status[0]).unwrap();
    first["cluster_id"].as_str().unwrap().to_string()
}

/// Waits (at most `wait`) until the leader of `group` reports exactly `voters` as its voters
/// and no learner.
pub async fn wait_voters(nodes: &[Node], group: &str, voters: &[u64], wait: Duration) {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let all = statuses(nodes).await;
        let lead = all.iter().find_map(|s| {
            s.groups
                .iter()
                .find(|g| g.group == group && g.leader == Some(s.node_id))
        });
        if lead.is_some_and(|g| g.voters == voters && g.learners.is_empty()) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{group}: {lead:?}, waiting for voters {voters:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
