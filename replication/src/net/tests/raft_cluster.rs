//! Real `openraft::Raft` groups over the transport: three nodes, two groups sharing each
//! node's connections, a leader elected and writes committed on every node, then a fourth
//! node catching up from a snapshot sent in install-snapshot chunks.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use openraft::{BasicNode, Config, Raft};

use super::mem_store::{MemLog, MemStateMachine};
use super::Server;
use crate::net::{NetworkFactory, Peers, RaftHandler, Reply, Request};
use crate::types::{Command, GroupId, NodeId, TypeConfig};

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

/// A node's Raft groups, as the server looks them up.
#[derive(Default)]
struct Registry {
    groups: RwLock<HashMap<GroupId, Raft<TypeConfig>>>,
    /// Requests received, by RPC name.
    received: Mutex<HashMap<&'static str, u64>>,
}

impl Registry {
    fn received(&self, name: &str) -> u64 {
        let received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        received.get(name).copied().unwrap_or(0)
    }
}

impl RaftHandler for Registry {
    fn handle(&self, req: Request) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>> {
        Box::pin(async move {
            {
                let mut received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
                *received.entry(req.name()).or_default() += 1;
            }
            let raft_of = |group: &GroupId| {
                let groups = self.groups.read().unwrap_or_else(PoisonError::into_inner);
                groups.get(group).cloned()
            };
            if let Request::Heartbeats { beats } = req {
                let mut replies = Vec::new();
                for (group, rpc) in beats {
                    replies.push(match raft_of(&group) {
                        Some(raft) => Reply::AppendEntries(raft.append_entries(rpc).await),
                        None => Reply::UnknownGroup(group),
                    });
                }
                return Reply::Heartbeats(replies);
            }
            let raft = raft_of(req.group());
            let Some(raft) = raft else {
                return Reply::UnknownGroup(req.group().clone());
            };
            match req {
                Request::AppendEntries { rpc, .. } => {
                    Reply::AppendEntries(raft.append_entries(rpc).await)
                }
                Request::Vote { rpc, .. } => Reply::Vote(raft.vote(rpc).await),
                Request::InstallSnapshot { rpc, .. } => {
                    Reply::InstallSnapshot(raft.install_snapshot(rpc).await)
                }
                Request::Hello { .. }
                | Request::Propose { .. }
                | Request::Members { .. }
                | Request::Leaders { .. }
                | Request::LeadNext { .. }
                | Request::Call { .. }
                | Request::Quiet { .. }
                | Request::Heartbeats { .. } => Reply::UnknownGroup(GroupId(String::new())),
            }
        })
    }
}

/// One node: its server, its connections to peers and its Raft groups.
struct Node {
    id: NodeId,
    server: Server,
    peers: Arc<Peers>,
    registry: Arc<Registry>,
    groups: HashMap<GroupId, (Raft<TypeConfig>, MemStateMachine)>,
}

impl Node {
    async fn start(id: NodeId) -> Node {
        let registry = Arc::new(Registry::default());
        let server = Server::start(id, Arc::clone(&registry) as Arc<dyn RaftHandler>).await;
        Node {
            id,
            server,
            peers: Arc::new(Peers::new(super::me(id), None)),
            registry,
            groups: HashMap::new(),
        }
    }

    fn basic(&self) -> BasicNode {
        BasicNode::new(self.server.addr.to_string())
    }

    async fn host(&mut self, group: &GroupId) {
        let config = Config {
            cluster_name: group.0.clone(),
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            // Purge the log right after a snapshot, so a new node needs the snapshot.
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            ..Default::default()
        };
        let config = Arc::new(config.validate().expect("config"));
        let network = NetworkFactory::new(Arc::clone(&self.peers), group.clone());
        let sm = MemStateMachine::default();
        let raft = Raft::new(self.id, config, network, MemLog::default(), sm.clone())
            .await
            .expect("raft");
        let mut groups = self
            .registry
            .groups
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        groups.insert(group.clone(), raft.clone());
        self.groups.insert(group.clone(), (raft, sm));
    }

    fn raft(&self, group: &GroupId) -> &Raft<TypeConfig> {
        &self.groups[group].0
    }

    fn commands(&self, group: &GroupId) -> Vec<Command> {
        self.groups[group].1.commands()
    }

    async fn stop(self) {
        for (raft, _) in self.groups.values() {
            raft.shutdown().await.expect("raft shutdown");
        }
        self.server.stop().await;
    }
}

fn batch(group: &GroupId, i: u64) -> Command {
    Command::Batch(Bytes::from(format!("{group}/{i}")))
}

/// Elects a leader of `group` and commits `count` writes; answers the leader and the last
/// write's log index.
async fn elect_and_write(
    nodes: &[Node],
    group: &GroupId,
    count: u64,
) -> (usize, openraft::LogId<NodeId>) {
    let metrics = nodes[0]
        .raft(group)
        .wait(WAIT)
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .expect("leader elected");
    let leader_id = metrics.current_leader.expect("leader");
    let leader = nodes
        .iter()
        .position(|n| n.id == leader_id)
        .expect("leader node");
    let mut last = None;
    for i in 0..count {
        let written = nodes[leader]
            .raft(group)
            .client_write(batch(group, i))
            .await
            .expect("client write");
        assert_eq!(written.data.base_offset, i);
        last = Some(written.log_id);
    }
    (leader, last.expect("writes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_commit_writes() {
    let groups = [GroupId("meta".into()), GroupId("t/orders/0".into())];
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(Node::start(id).await);
    }
    for node in &mut nodes {
        for group in &groups {
            node.host(group).await;
        }
    }
    let members: BTreeMap<NodeId, BasicNode> = nodes.iter().map(|n| (n.id, n.basic())).collect();
    for group in &groups {
        nodes[0]
            .raft(group)
            .initialize(members.clone())
            .await
            .expect("initialize");
    }

    let expected = |group: &GroupId, n: u64| (0..n).map(|i| batch(group, i)).collect::<Vec<_>>();
    let mut last = HashMap::new();
    for group in &groups {
        let (leader, last_log) = elect_and_write(&nodes, group, 20).await;
        for node in &nodes {
            node.raft(group)
                .wait(WAIT)
                .applied_index_at_least(Some(last_log.index), "replicated")
                .await
                .expect("applied on every node");
            assert_eq!(
                node.commands(group),
                expected(group, 20),
                "node {}",
                node.id
            );
        }
        last.insert(group.clone(), (leader, last_log));
    }

    // A fourth node joins one group after its log was purged: it needs the snapshot.
    let group = &groups[1];
    let (leader, last_log) = last[group];
    let leader_raft = nodes[leader].raft(group).clone();
    leader_raft
        .trigger()
        .snapshot()
        .await
        .expect("trigger snapshot");
    leader_raft
        .wait(WAIT)
        .snapshot(last_log, "snapshot built")
        .await
        .expect("snapshot");
    leader_raft
        .wait(WAIT)
        .purged(Some(last_log), "log purged")
        .await
        .expect("purged");

    let mut fourth = Node::start(4).await;
    fourth.host(group).await;
    leader_raft
        .add_learner(4, fourth.basic(), true)
        .await
        .expect("add learner");
    fourth
        .raft(group)
        .wait(WAIT)
        .applied_index_at_least(Some(last_log.index), "caught up")
        .await
        .expect("learner caught up");
    assert_eq!(fourth.commands(group), expected(group, 20));
    let snapshot = fourth.raft(group).metrics().borrow().snapshot;
    assert_eq!(snapshot, Some(last_log), "caught up from the snapshot");
    assert!(fourth.registry.received("install-snapshot") >= 1);
    for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i != leader) {
        assert!(
            node.registry.received("append-entries") >= 1,
            "follower {i}"
        );
    }
    let votes: u64 = nodes.iter().map(|n| n.registry.received("vote")).sum();
    assert!(votes >= 2, "an election over the network");

    fourth.stop().await;
    for node in nodes {
        node.stop().await;
    }
}
