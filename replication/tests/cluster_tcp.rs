//! Three cluster nodes in one process, each with its own cluster listener on loopback, talking
//! through the real transport: two groups share each node's connections; the leader of one
//! stops (listener closed, groups shut down) and the others elect a new one; it comes back
//! from its directory on the same port and catches up. Quiet groups are in
//! `cluster_quiet.rs`; multi-process tests with kill -9 run the `sluice` binary (cli/tests).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sluice_replication::{ClusterNode, Consensus, GroupId, GroupStorage, NodeId, NodeInfo};
use sluice_storage::{LogConfig, Offset};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_share_the_transport_fail_over_and_catch_up() {
    let root = tempfile::tempdir().unwrap();
    let groups = [GroupId("meta".into()), GroupId("t/orders/0".into())];
    let (mut running, addrs) = three_nodes(root.path(), &groups).await;
    let all: Vec<&Running> = running.values().collect();
    for g in &groups {
        let l = leader(&all, g).await;
        for i in 0..50 {
            l.propose(batch(i)).await.unwrap();
        }
        wait_records(&all, g, 50).await;
    }

    // A control command proposed through a follower is forwarded to the leader and applied.
    let meta = leader(&all, &groups[0]).await;
    let follower = all
        .iter()
        .find(|r| r.node.id() != meta.status().node)
        .unwrap();
    let applied = follower
        .node
        .propose_control(&groups[0], bytes::Bytes::from_static(b"through a follower"))
        .await
        .expect("forwarded to the leader");
    assert!(meta.log().visible_end() > Offset(applied.base_offset));

    // Stop the leader of the partition: its listener closes and its groups stop.
    let group = &groups[1];
    let old = leader(&all, group).await.status().node;
    stop_node(&mut running, old).await;
    let stopped = Instant::now();
    let rest: Vec<&Running> = running.values().collect();
    let new = leader(&rest, group).await;
    new.propose(batch(50)).await.unwrap();
    let failover = stopped.elapsed();
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    for i in 51..80 {
        new.propose(batch(i)).await.unwrap();
    }

    // It comes back on the same port, from its directory, and catches up on both groups.
    let l = TcpListener::bind(&addrs[&old]).await.unwrap();
    let back = start(old, root.path(), &addrs, l).await;
    for g in &groups {
        back.node
            .open_group(g.clone(), GroupStorage::own(LogConfig::default()), None)
            .await
            .unwrap();
    }
    running.insert(old, back);
    let all: Vec<&Running> = running.values().collect();
    wait_records(&all, group, 80).await;
    wait_records(&all, &groups[0], 50).await;
    eprintln!("failover (leader stopped to first commit on the new leader): {failover:?}");
    for r in running.values() {
        r.node.shutdown().await;
    }
}

/// Waits until `node` knows `want` as node `id`'s client addresses.
async fn wait_info(node: &ClusterNode, id: NodeId, want: &NodeInfo) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.info(id).as_ref() != Some(want) {
        assert!(
            Instant::now() < deadline,
            "node {} knows {:?} of node {id}, not {want:?}",
            node.id(),
            node.info(id)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn info(id: NodeId, kafka_port: u16) -> NodeInfo {
    NodeInfo {
        native: Some(format!("client-{id}:7450")),
        kafka: Some(format!("client-{id}:{kafka_port}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_learn_each_others_client_addresses_and_their_changes() {
    let root = tempfile::tempdir().unwrap();
    let (listeners, addrs) = listeners().await;
    let mut running = BTreeMap::new();
    for (id, l) in listeners {
        let r = start(id, root.path(), &addrs, l).await;
        r.node.set_info(info(id, 9092));
        let (n, stop) = (r.node.clone(), r.stop.subscribe());
        tokio::spawn(async move { n.introduce(stop).await });
        running.insert(id, r);
    }
    for r in running.values() {
        for id in 1..=3 {
            wait_info(&r.node, id, &info(id, 9092)).await;
        }
    }

    // Node 3 restarts with another Kafka port: the others learn it from its hellos.
    let gone = running.remove(&3).unwrap();
    gone.stop.send(true).unwrap();
    gone.node.shutdown().await;
    drop(gone);
    // The stopped listener's task lets go of its port shortly after.
    let deadline = Instant::now() + Duration::from_secs(10);
    let l = loop {
        match TcpListener::bind(&addrs[&3]).await {
            Ok(l) => break l,
            Err(e) if Instant::now() < deadline => {
                eprintln!("rebinding: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot bind node 3's port again: {e}"),
        }
    };
    let back = start(3, root.path(), &addrs, l).await;
    back.node.set_info(info(3, 9999));
    let (n, stop) = (back.node.clone(), back.stop.subscribe());
    tokio::spawn(async move { n.introduce(stop).await });
    running.insert(3, back);
    for r in running.values() {
        wait_info(&r.node, 3, &info(3, 9999)).await;
        wait_info(&r.node, 1, &info(1, 9092)).await;
    }
    for r in running.values() {
        let _ = r.stop.send(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_groups_of_a_node_share_heartbeats_and_keep_their_leaders() {
    const GROUPS: usize = 60;
    let root = tempfile::tempdir().unwrap();
    let groups = group_ids("t/beats", GROUPS);
    let (running, _) = three_nodes(root.path(), &groups).await;
    let all: Vec<&Running> = running.values().collect();
    for g in &groups {
        leader(&all, g).await.propose(batch(1)).await.unwrap();
    }
    let terms = |all: &[&Running]| terms_of(all, &groups);
    let before_terms = terms(&all);
    // A group that replicated in the last second beats on its own (its replication waits
    // for each answer): measured from when they are all idle.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before: Vec<_> = all
        .iter()
        .map(|r| r.node.peers().heartbeat_counts())
        .collect();
    // Idle: nothing but heartbeats for two seconds, 20 per second per group and follower.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut beats = 0;
    let mut messages = 0;
    for (r, b) in all.iter().zip(&before) {
        let now = r.node.peers().heartbeat_counts();
        beats += now.beats - b.beats;
        messages += now.messages - b.messages;
    }
    eprintln!("{beats} heartbeats in {messages} messages");
    // Each group's leader beats to its two followers every 50 ms.
    let expected = (GROUPS * 2 * 40) as u64;
    assert!(
        beats >= expected / 2,
        "{beats} heartbeats, expected about {expected}"
    );
    assert!(
        messages * 10 <= beats,
        "{beats} heartbeats took {messages} messages: hardly shared"
    );
    assert_eq!(
        terms(&all),
        before_terms,
        "a group lost its leader while idle"
    );
    // And the groups still replicate.
    for g in &groups {
        leader(&all, g).await.propose(batch(2)).await.unwrap();
    }
    a_message_of_too_many_heartbeats_is_refused(&all, &groups[0]).await;
    for r in running.values() {
        r.node.shutdown().await;
    }
}

/// A stale heartbeat (term 0) of `group`: its handling answers with the higher vote.
fn stale_beat(
    group: &GroupId,
) -> (
    GroupId,
    openraft::raft::AppendEntriesRequest<sluice_replication::TypeConfig>,
) {
    let rpc = openraft::raft::AppendEntriesRequest {
        vote: openraft::Vote::new_committed(0, 1),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    (group.clone(), rpc)
}

/// Node 1 asks node 2 to handle heartbeats directly: a message of at most
/// `HEARTBEATS_PER_MESSAGE_MAX` is handled beat by beat; one more is answered, unhandled.
async fn a_message_of_too_many_heartbeats_is_refused(all: &[&Running], group: &GroupId) {
    use sluice_replication::net::{Reply, Request, HEARTBEATS_PER_MESSAGE_MAX};
    let peers = all[0].node.peers();
    let call = |n: usize| {
        let beats = vec![stale_beat(group); n];
        peers.call(2, Request::Heartbeats { beats }, Duration::from_secs(5))
    };
    let Ok(Reply::Heartbeats(handled)) = call(HEARTBEATS_PER_MESSAGE_MAX).await else {
        panic!("no answer to a full message of heartbeats");
    };
    assert_eq!(handled.len(), HEARTBEATS_PER_MESSAGE_MAX);
    assert!(
        handled.iter().all(|r| matches!(r, Reply::AppendEntries(_))),
        "each beat of a full message is handled"
    );
    let Ok(Reply::Heartbeats(refused)) = call(HEARTBEATS_PER_MESSAGE_MAX + 1).await else {
        panic!("no answer to an oversized message of heartbeats");
    };
    assert_eq!(refused.len(), HEARTBEATS_PER_MESSAGE_MAX + 1);
    assert!(
        refused
            .iter()
            .all(|r| matches!(r, Reply::UnknownGroup(g) if g == group)),
        "an oversized message is refused whole"
    );
}

/// Proposes batches to whichever node leads `group` until `stop`, retrying refusals (a group
/// being handed over takes none); answers how many were confirmed.
async fn publish_until(
    nodes: Vec<Arc<ClusterNode>>,
    group: GroupId,
    stop: watch::Receiver<bool>,
) -> usize {
    let mut confirmed = 0;
    let mut refused = 0;
    let mut i = 0;
    while !*stop.borrow() {
        i += 1;
        let leader = nodes
            .iter()
            .filter_map(|n| n.group(&group))
            .find(|g| g.status().is_leader);
        match leader {
            Some(g) => match g.propose(batch(i)).await {
                Ok(_) => confirmed += 1,
                Err(_) => refused += 1,
            },
            None => refused += 1,
        }
        if refused > 0 && refused % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    confirmed
}

/// Every replica of `group` holds the same records, at least `confirmed` of them.
async fn wait_agreed(nodes: &[&Running], group: &GroupId, confirmed: usize) {
    let agreed = |c: &[usize]| c.iter().all(|&n| n == c[0]) && c[0] >= confirmed;
    wait_counts(nodes, group, agreed, confirmed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_voter_asked_while_publishes_go_on() {
    let root = tempfile::tempdir().unwrap();
    let groups: Vec<GroupId> = (0..3).map(|p| GroupId(format!("t/moves/{p}"))).collect();
    let (running, _) = three_nodes(root.path(), &groups).await;
    let all: Vec<&Running> = running.values().collect();
    let nodes: Vec<Arc<ClusterNode>> = all.iter().map(|r| r.node.clone()).collect();
    let (stop, stopped) = watch::channel(false);
    let mut publishers = Vec::new();
    for g in &groups {
        leader(&all, g).await.propose(batch(0)).await.unwrap();
        let task = publish_until(nodes.clone(), g.clone(), stopped.clone());
        publishers.push(tokio::spawn(task));
    }
    for round in 0..2 {
        // Publishes confirmed before each round and between them.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut moves = tokio::task::JoinSet::new();
        for g in &groups {
            let from = leader(&all, g).await.status();
            let to = from.node % 3 + 1;
            let node = running[&from.node].node.clone();
            let g = g.clone();
            moves.spawn(async move {
                let started = Instant::now();
                let led = node.transfer_leader(&g, to).await;
                (g, from, to, led, started.elapsed())
            });
        }
        while let Some(done) = moves.join_next().await {
            let (g, from, to, led, took) = done.unwrap();
            eprintln!("round {round}: {g} from {} to {to} in {took:?}", from.node);
            assert_eq!(led.unwrap(), Some(to), "{g} was not handed to {to}");
            let now = leader(&all, &g).await.status();
            assert_eq!(now.node, to);
            assert!(
                now.term > from.term,
                "{g}: term {} then {}",
                from.term,
                now.term
            );
        }
    }
    // Only a leader hands over, and only to another voter.
    let g = &groups[0];
    let led_by = leader(&all, g).await.status().node;
    let follower = running[&(led_by % 3 + 1)].node.clone();
    assert!(follower.transfer_leader(g, led_by).await.is_err());
    assert!(running[&led_by].node.transfer_leader(g, 9).await.is_err());
    stop.send(true).unwrap();
    for (g, p) in groups.iter().zip(publishers) {
        let confirmed = p.await.unwrap();
        assert!(confirmed > 0, "nothing confirmed on {g}");
        wait_agreed(&all, g, confirmed + 1).await;
        eprintln!("{g}: {confirmed} confirmed");
    }
    for r in running.values() {
        r.node.shutdown().await;
    }
}

/// Answers a call with its node's id and the caller's before the payload; refuses "no" and
/// answers "big" with more than a call may carry.
struct Echo(NodeId);

impl sluice_replication::CallHandler for Echo {
    fn call(
        &self,
        from: NodeId,
        payload: Vec<u8>,
    ) -> sluice_replication::BoxFuture<'_, Result<Vec<u8>, String>> {
        Box::pin(async move {
            match payload.as_slice() {
                b"no" => Err("refused: no".to_string()),
                b"big" => Ok(vec![0; sluice_replication::CALL_PAYLOAD_BYTES_MAX + 1]),
                p => Ok([format!("{}<-{from}:", self.0).as_bytes(), p].concat()),
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_call_each_others_handlers_and_refusals_are_named() {
    use sluice_replication::{CallError, CallHandler, CALL_PAYLOAD_BYTES_MAX};
    let root = tempfile::tempdir().unwrap();
    let (running, _) = three_nodes(root.path(), &[]).await;
    let handlers: Vec<Arc<dyn CallHandler>> = vec![Arc::new(Echo(1)), Arc::new(Echo(2))];
    for (id, h) in [1, 2].into_iter().zip(&handlers) {
        assert!(running[&id].node.serve_calls(Arc::downgrade(h)));
        assert!(
            !running[&id].node.serve_calls(Arc::downgrade(h)),
            "set once"
        );
    }
    let one = &running[&1].node;
    let t = Duration::from_secs(5);
    let call = |to: NodeId, p: &[u8]| one.call(to, p.to_vec(), t);
    assert_eq!(call(2, b"hi").await.unwrap(), b"2<-1:hi");
    assert_eq!(call(1, b"me").await.unwrap(), b"1<-1:me");
    assert_eq!(
        running[&2].node.call(1, b"x".to_vec(), t).await.unwrap(),
        b"1<-2:x"
    );
    let refused = |r: Result<Vec<u8>, CallError>, want: &str| match r {
        Err(CallError::Refused { why, .. }) => assert!(why.contains(want), "{why}"),
        other => panic!("expected a refusal naming {want:?}, got {other:?}"),
    };
    refused(call(2, b"no").await, "refused: no");
    refused(call(3, b"hi").await, "node 3 serves no calls");
    refused(call(2, b"big").await, "answer");
    refused(call(1, b"big").await, "answer");
    let huge = vec![7; CALL_PAYLOAD_BYTES_MAX + 1];
    refused(one.call(2, huge, t).await, "payload");
    match call(9, b"hi").await {
        Err(CallError::Unreachable { node: 9, .. }) => {}
        other => panic!("expected node 9 unreachable, got {other:?}"),
    }
    // A handler dropped: the node serves no calls any more.
    drop(handlers);
    refused(call(2, b"hi").await, "node 2 serves no calls");
    for r in running.values() {
        let _ = r.stop.send(true);
    }
}
