//! Three replicas of one replicated log in one process, their Raft messages handed over by
//! direct calls: the log store and state machine under openraft, without the TCP transport
//! (tested on its own and by the multi-process tests).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use sluice_replication::{
    Command, Consensus, Error, GroupId, GroupStorage, NodeId, ReplicatedLog, Timing, TypeConfig,
};
use sluice_storage::format::encode_batch;
use sluice_storage::{LogConfig, Offset, Record, StdFs};

#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<HashMap<NodeId, ReplicatedLog>>>,
}

impl Router {
    fn get(&self, id: NodeId) -> Result<ReplicatedLog, Unreachable> {
        self.nodes
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or_else(|| Unreachable::new(&std::io::Error::other(format!("node {id} is down"))))
    }
}

struct Conn {
    target: NodeId,
    router: Router,
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Conn;
    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Conn {
        Conn {
            target,
            router: self.clone(),
        }
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let n = self.router.get(self.target)?;
        n.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }
    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let n = self.router.get(self.target)?;
        n.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }
    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let n = self.router.get(self.target)?;
        n.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }
}

fn members() -> BTreeMap<NodeId, BasicNode> {
    (1..=3)
        .map(|i| (i, BasicNode::new(format!("node-{i}"))))
        .collect()
}

async fn open(router: &Router, id: NodeId, root: &Path) -> ReplicatedLog {
    open_with(router, id, root, LogConfig::default()).await
}

async fn open_with(router: &Router, id: NodeId, root: &Path, config: LogConfig) -> ReplicatedLog {
    let log = ReplicatedLog::open(
        id,
        GroupId("t/orders/0".into()),
        Arc::new(StdFs),
        &root.join(format!("node-{id}")),
        GroupStorage::own(config),
        router.clone(),
        Timing::default(),
    )
    .await
    .unwrap();
    router.nodes.lock().unwrap().insert(id, log.clone());
    log
}

fn batch(i: u64) -> Command {
    let records: Vec<Record> = (0..3)
        .map(|k| Record::from_value(format!("m{i}-{k}").into_bytes()))
        .collect();
    Command::Batch(encode_batch(&records, 1_000 + i as i64).into())
}

/// Three replicas under `root`, bootstrapped as one group.
async fn three(root: &Path) -> (Router, Vec<ReplicatedLog>) {
    let router = Router::default();
    for id in 1..=3 {
        open(&router, id, root).await;
    }
    let nodes: Vec<ReplicatedLog> = router.nodes.lock().unwrap().values().cloned().collect();
    for n in &nodes {
        n.bootstrap(members()).await.unwrap();
    }
    (router, nodes)
}

async fn leader_of(router: &Router) -> ReplicatedLog {
    for _ in 0..100 {
        let nodes: Vec<ReplicatedLog> = router.nodes.lock().unwrap().values().cloned().collect();
        if let Some(l) = nodes.into_iter().find(|n| n.status().is_leader) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader elected in 5 s");
}

/// The values every record from the log's start to the commit point holds, in order.
fn committed_values(log: &sluice_storage::Log) -> Vec<String> {
    values_from(log, log.start_offset())
}

/// The values every record from `from` to the commit point holds, in order.
fn values_from(log: &sluice_storage::Log, from: Offset) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = from;
    while at < log.visible_end() {
        let batches = log.read(at, 1 << 20).unwrap();
        for b in &batches {
            at = b.header.next_offset();
            if b.header.is_control() {
                continue;
            }
            for r in b.records().unwrap().iter() {
                out.push(String::from_utf8(r.unwrap().value.to_vec()).unwrap());
            }
        }
    }
    out
}

async fn wait_equal(router: &Router, want: usize) -> Vec<String> {
    for _ in 0..200 {
        let nodes: Vec<ReplicatedLog> = router.nodes.lock().unwrap().values().cloned().collect();
        let all: Vec<Vec<String>> = nodes.iter().map(|n| committed_values(n.log())).collect();
        if all.iter().all(|v| v.len() == want) {
            assert!(all.windows(2).all(|w| w[0] == w[1]), "replicas disagree");
            return all[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("replicas did not converge on {want} records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_commit_fail_over_and_catch_up() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let root = tempfile::tempdir().unwrap();
    let (router, nodes) = three(root.path()).await;
    eprintln!("bootstrapped");
    let leader = leader_of(&router).await;
    eprintln!("leader {:?}", leader.status());
    let mut confirmed = Vec::new();
    for i in 0..100 {
        let a = leader.propose(batch(i)).await.unwrap();
        assert_eq!(a.last_offset - a.base_offset, 2);
        confirmed.push(a);
        // Confirmed means committed: the leader's readers see it at once.
        assert!(leader.log().visible_end() > Offset(a.last_offset));
    }
    assert!(confirmed
        .windows(2)
        .all(|w| w[1].base_offset > w[0].last_offset));
    let values = wait_equal(&router, 300).await;
    assert_eq!(values[0], "m0-0");

    // A follower refuses and names the leader.
    let leader_id = leader.status().node;
    let follower = nodes
        .iter()
        .find(|n| n.status().node != leader_id)
        .cloned()
        .unwrap();
    match follower.propose(batch(999)).await {
        Err(Error::NotLeader { leader, .. }) => assert_eq!(leader, Some(leader_id)),
        other => panic!("a follower accepted a write: {other:?}"),
    }

    // The leader goes away; the other two elect one and go on.
    router.nodes.lock().unwrap().remove(&leader_id);
    leader.shutdown().await;
    drop(leader);
    let second = leader_of(&router).await;
    assert_ne!(second.status().node, leader_id);
    for i in 100..150 {
        second.propose(batch(i)).await.unwrap();
    }
    assert_eq!(committed_values(second.log()).len(), 450);

    // The old leader restarts from its directory and catches up.
    let back = open(&router, leader_id, root.path()).await;
    let values = wait_equal(&router, 450).await;
    assert_eq!(values.last().unwrap(), "m149-2");
    assert!(!back.status().is_leader || back.status().term > 1);
    let nodes: Vec<ReplicatedLog> = router.nodes.lock().unwrap().values().cloned().collect();
    for n in &nodes {
        n.shutdown().await;
    }
}

/// The value of the record at `offset` of `log`.
fn value_at(log: &sluice_storage::Log, offset: u64) -> String {
    let batches = log.read(Offset(offset), 1).unwrap();
    let b = &batches[0];
    let k = (offset - b.header.base_offset.0) as usize;
    let records = b.records().unwrap();
    let r = records.iter().nth(k).unwrap().unwrap();
    String::from_utf8(r.value.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_that_queue_share_entries_and_each_is_answered_its_own_offsets() {
    let root = tempfile::tempdir().unwrap();
    let (router, nodes) = three(root.path()).await;
    let leader = leader_of(&router).await;
    let before = leader.status().last_index.unwrap_or(0);
    const PUBLISHES: u64 = 400;
    const PRODUCED: u64 = 50;
    // Submitted all at once: they queue behind the entries in flight.
    let mut pending = Vec::new();
    for i in 0..PUBLISHES {
        pending.push(leader.submit(batch(i)).await.unwrap());
    }
    let mut answered = Vec::new();
    for p in pending {
        answered.push(p.await.unwrap());
    }
    for (i, a) in answered.iter().enumerate() {
        assert_eq!(a.last_offset - a.base_offset, 2, "publish {i}: {a:?}");
        assert_eq!(value_at(leader.log(), a.base_offset), format!("m{i}-0"));
        assert_eq!(value_at(leader.log(), a.last_offset), format!("m{i}-2"));
    }
    // In submission order, and never overlapping.
    assert!(answered
        .windows(2)
        .all(|w| w[1].base_offset > w[0].last_offset));
    let entries = leader.status().last_index.unwrap() - before;
    assert!(
        entries < PUBLISHES,
        "{PUBLISHES} publishes took {entries} entries: none was shared"
    );
    eprintln!("{PUBLISHES} publishes in {entries} entries");
    // Eight producers, each waiting for every confirm: entries in flight side by side.
    let mut producers = Vec::new();
    for p in 0..8u64 {
        let leader = leader.clone();
        producers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for k in 0..PRODUCED {
                let i = PUBLISHES + p * PRODUCED + k;
                let a = leader.submit(batch(i)).await.unwrap().await.unwrap();
                got.push((i, a));
            }
            got
        }));
    }
    for p in producers {
        for (i, a) in p.await.unwrap() {
            assert_eq!(value_at(leader.log(), a.base_offset), format!("m{i}-0"));
            assert_eq!(value_at(leader.log(), a.last_offset), format!("m{i}-2"));
        }
    }
    let total = PUBLISHES + 8 * PRODUCED;
    eprintln!(
        "{total} publishes in {} entries",
        leader.status().last_index.unwrap() - before
    );
    let values = wait_equal(&router, 3 * total as usize).await;
    let mut sorted = values.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), values.len(), "a record stored twice");
    // A replica reopened from its files reads the shared entries back whole.
    let follower = nodes
        .iter()
        .find(|n| !n.status().is_leader)
        .cloned()
        .unwrap();
    let id = follower.status().node;
    router.nodes.lock().unwrap().remove(&id);
    follower.shutdown().await;
    drop(follower);
    open(&router, id, root.path()).await;
    leader.propose(batch(total)).await.unwrap();
    wait_equal(&router, 3 * total as usize + 3).await;
    let nodes: Vec<ReplicatedLog> = router.nodes.lock().unwrap().values().cloned().collect();
    for n in &nodes {
        n.shutdown().await;
    }
}

/// Waits (at most 20 s) for `check` to hold.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_after_the_log_was_cut_installs_a_snapshot_and_continues_at_the_cut() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let small = LogConfig {
        segment_bytes_max: 4096,
        ..LogConfig::default()
    };
    let root = tempfile::tempdir().unwrap();
    let router = Router::default();
    for id in 1..=3 {
        open_with(&router, id, root.path(), small.clone()).await;
    }
    let nodes: Vec<ReplicatedLog> = router.nodes.lock().unwrap().values().cloned().collect();
    for n in &nodes {
        n.bootstrap(members()).await.unwrap();
    }
    let leader = leader_of(&router).await;
    for i in 0..200 {
        leader.propose(batch(i)).await.unwrap();
    }
    wait_equal(&router, 600).await;
    // Cut below the next-to-last segment, on every replica (they all have it).
    let segments = leader.log().segments();
    assert!(segments.len() > 4, "{} segments", segments.len());
    let cut = segments[segments.len() - 2].base_offset;
    let upto = leader.entry_ending_by(cut.0).unwrap().unwrap();
    leader.propose(Command::Compact { upto }).await.unwrap();
    eventually("every replica purges its log", || {
        nodes
            .iter()
            .all(|n| n.status().purged_index >= Some(upto) && n.log().start_offset() > Offset(0))
    })
    .await;
    let kept = committed_values(leader.log());
    assert!(kept.len() < 600 && kept.last().unwrap() == "m199-2");

    // A fourth node joins: the entries it lacks are gone, so it installs a snapshot.
    let fourth = open_with(&router, 4, root.path(), small.clone()).await;
    let mut wanted = members();
    wanted.insert(4, BasicNode::new("node-4"));
    let mut done = false;
    for _ in 0..400 {
        let l = leader_of(&router).await;
        match l.reconcile_members(&wanted) {
            Ok(sluice_replication::MembersProgress::Done) => {
                done = true;
                break;
            }
            Ok(_) | Err(Error::NotLeader { .. }) => {}
            Err(e) => panic!("membership change: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "the fourth node did not become a voter within 20 s");
    assert!(fourth.status().voters.contains(&4));
    let start = fourth.log().start_offset();
    assert!(
        start > Offset(0),
        "the fourth log starts at the cut, not at 0"
    );
    assert!(
        fourth.status().purged_index >= Some(upto),
        "{:?}",
        fourth.status()
    );
    for i in 200..220 {
        leader_of(&router).await.propose(batch(i)).await.unwrap();
    }
    eventually("the fourth node has every new entry", || {
        committed_values(fourth.log()).last().map(String::as_str) == Some("m219-2")
    })
    .await;
    // From where it starts, its log is the leader's, offset for offset: what was kept after
    // the cut and what came since.
    let leader = leader_of(&router).await;
    let theirs = values_from(fourth.log(), start);
    assert_eq!(theirs, values_from(leader.log(), start));
    assert!(theirs.len() > 60, "{} records", theirs.len());
    assert!(kept.ends_with(&theirs[..theirs.len() - 60]));

    // Reopened from its files, it serves the same log and keeps up.
    router.nodes.lock().unwrap().remove(&4);
    fourth.shutdown().await;
    drop(fourth);
    let fourth = open_with(&router, 4, root.path(), small).await;
    assert_eq!(fourth.log().start_offset(), start);
    leader.propose(batch(220)).await.unwrap();
    eventually("the reopened node catches up", || {
        committed_values(fourth.log()).last().map(String::as_str) == Some("m220-2")
    })
    .await;
    let nodes: Vec<ReplicatedLog> = router.nodes.lock().unwrap().values().cloned().collect();
    for n in &nodes {
        n.shutdown().await;
    }
}
