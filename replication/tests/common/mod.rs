//! Helpers of the replication tests that run cluster nodes in one process over loopback.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_replication::{
    ClusterId, ClusterNode, Command, Consensus, GroupId, GroupStorage, Identity, Node, NodeId,
    ReplicatedLog, Timing,
};
use sluice_storage::format::encode_batch;
use sluice_storage::{LogConfig, Offset, Record, StdFs};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub struct Running {
    pub node: Arc<ClusterNode>,
    pub stop: watch::Sender<bool>,
}

pub async fn start(
    id: NodeId,
    root: &Path,
    addrs: &BTreeMap<NodeId, String>,
    listener: TcpListener,
) -> Running {
    start_with(id, root, addrs, listener, Timing::default()).await
}

pub async fn start_with(
    id: NodeId,
    root: &Path,
    addrs: &BTreeMap<NodeId, String>,
    listener: TcpListener,
    timing: Timing,
) -> Running {
    let me = Identity {
        cluster: ClusterId(*b"cluster-tcp-test"),
        node: id,
    };
    let node = ClusterNode::new(
        me,
        Arc::new(StdFs),
        &root.join(format!("node-{id}")),
        timing,
    );
    for (peer, addr) in addrs {
        node.set_peer(*peer, addr.clone());
    }
    let (stop, rx) = watch::channel(false);
    let n = node.clone();
    tokio::spawn(async move { n.serve(listener, rx).await });
    Running { node, stop }
}

pub fn members(addrs: &BTreeMap<NodeId, String>) -> BTreeMap<NodeId, Node> {
    addrs
        .iter()
        .map(|(id, a)| (*id, Node::new(a.clone())))
        .collect()
}

pub fn batch(i: u64) -> Command {
    let records = vec![Record::from_value(format!("m{i}").into_bytes())];
    Command::Batch(encode_batch(&records, 1_000 + i as i64).into())
}

pub async fn leader(nodes: &[&Running], group: &GroupId) -> ReplicatedLog {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for r in nodes {
            if let Some(g) = r.node.group(group) {
                if g.status().is_leader {
                    return g;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no leader of {group}");
}

pub fn records(g: &ReplicatedLog) -> usize {
    let log = g.log();
    let mut n = 0;
    let mut at = Offset(0);
    while at < log.visible_end() {
        for b in log.read(at, 1 << 20).unwrap() {
            at = b.header.next_offset();
            if !b.header.is_control() {
                n += b.header.record_count as usize;
            }
        }
    }
    n
}

pub async fn wait_records(nodes: &[&Running], group: &GroupId, want: usize) {
    wait_counts(
        nodes,
        group,
        |counts| counts.iter().all(|&c| c == want),
        want,
    )
    .await
}

/// Waits until the record counts of `group`'s replicas satisfy `ok` (`want`: for the message).
pub async fn wait_counts(
    nodes: &[&Running],
    group: &GroupId,
    ok: impl Fn(&[usize]) -> bool,
    want: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counts: Vec<usize> = nodes
            .iter()
            .map(|r| records(&r.node.group(group).unwrap()))
            .collect();
        if ok(&counts) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas hold {counts:?} records of {group}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three loopback listeners and their addresses by node id.
pub async fn listeners() -> (BTreeMap<NodeId, TcpListener>, BTreeMap<NodeId, String>) {
    let mut listeners = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=3 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.insert(id, l.local_addr().unwrap().to_string());
        listeners.insert(id, l);
    }
    (listeners, addrs)
}

/// Three nodes started under `root`, each opening `groups` with all three as members.
pub async fn three_nodes(
    root: &Path,
    groups: &[GroupId],
) -> (BTreeMap<NodeId, Running>, BTreeMap<NodeId, String>) {
    three_nodes_with(root, groups, Timing::default()).await
}

pub async fn three_nodes_with(
    root: &Path,
    groups: &[GroupId],
    timing: Timing,
) -> (BTreeMap<NodeId, Running>, BTreeMap<NodeId, String>) {
    let (listeners, addrs) = listeners().await;
    let mut running = BTreeMap::new();
    for (id, l) in listeners {
        running.insert(id, start_with(id, root, &addrs, l, timing).await);
    }
    for r in running.values() {
        for g in groups {
            r.node
                .open_group(
                    g.clone(),
                    GroupStorage::own(LogConfig::default()),
                    Some(members(&addrs)),
                )
                .await
                .unwrap();
        }
    }
    (running, addrs)
}

/// Stops node `id`: its listener closes and its groups stop.
pub async fn stop_node(running: &mut BTreeMap<NodeId, Running>, id: NodeId) {
    let gone = running.remove(&id).unwrap();
    gone.stop.send(true).unwrap();
    gone.node.shutdown().await;
}

/// `n` groups named `prefix/0` to `prefix/<n-1>`.
pub fn group_ids(prefix: &str, n: usize) -> Vec<GroupId> {
    (0..n).map(|p| GroupId(format!("{prefix}/{p}"))).collect()
}

/// Each group's term as the first node sees it.
pub fn terms_of(all: &[&Running], groups: &[GroupId]) -> Vec<u64> {
    groups
        .iter()
        .map(|g| all[0].node.group(g).unwrap().status().term)
        .collect()
}

/// Waits until every node has `want` of its groups quiet.
pub async fn wait_quiet(all: &[&Running], want: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let quiet: Vec<usize> = all.iter().map(|r| r.node.quiet_groups()).collect();
        if quiet.iter().all(|&q| q == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "quiet groups per node {quiet:?}, want {want} each"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
