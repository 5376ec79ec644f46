//! Quiet groups ([`sluice_replication`]'s `quiet` module) on three nodes in one process over
//! loopback: idle groups stop beating, wake for a write, fail over when their leader's node
//! stops, and keep their leaders when a follower's node restarts.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_replication::{Consensus, GroupId, GroupStorage, NodeId, Timing};
use sluice_storage::LogConfig;
use tokio::net::TcpListener;

fn quick_quiet() -> Timing {
    Timing {
        quiet_after: Some(Duration::from_millis(500)),
        ..Timing::default()
    }
}

/// Each group's leader as node `r` sees it.
fn leaders_seen(r: &Running, groups: &[GroupId]) -> Vec<Option<NodeId>> {
    groups
        .iter()
        .map(|g| r.node.group(g).unwrap().status().leader)
        .collect()
}

/// Three nodes with `groups`, quiet after 500 ms, each group written once and quiet on every
/// node.
async fn quiet_nodes(
    root: &std::path::Path,
    groups: &[GroupId],
) -> (
    std::collections::BTreeMap<NodeId, Running>,
    std::collections::BTreeMap<NodeId, String>,
) {
    let (running, addrs) = three_nodes_with(root, groups, quick_quiet()).await;
    let all: Vec<&Running> = running.values().collect();
    for g in groups {
        leader(&all, g).await.propose(batch(1)).await.unwrap();
    }
    wait_quiet(&all, groups.len()).await;
    (running, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_groups_go_quiet_wake_for_writes_and_fail_over_when_their_leader_stops() {
    const GROUPS: usize = 30;
    let root = tempfile::tempdir().unwrap();
    let groups = group_ids("t/quiet", GROUPS);
    let (mut running, _) = quiet_nodes(root.path(), &groups).await;
    let all: Vec<&Running> = running.values().collect();

    // Quiet: no heartbeat at all, and nobody stands for election.
    let terms = |all: &[&Running]| terms_of(all, &groups);
    let before_terms = terms(&all);
    let beats = |all: &[&Running]| -> u64 {
        all.iter()
            .map(|r| r.node.peers().heartbeat_counts().beats)
            .sum()
    };
    let before = beats(&all);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(beats(&all) - before, 0, "quiet groups sent heartbeats");
    assert_eq!(terms(&all), before_terms, "an election in a quiet group");

    // A write wakes its group on every replica, and it goes quiet again after.
    let g = &groups[0];
    leader(&all, g).await.propose(batch(2)).await.unwrap();
    wait_records(&all, g, 2).await;
    wait_quiet(&all, GROUPS).await;

    // The node leading the most groups stops: each of its quiet groups elects a leader on the
    // others and takes writes.
    let led_by = |id: NodeId| {
        groups
            .iter()
            .filter(|g| running[&id].node.group(g).unwrap().status().is_leader)
            .count()
    };
    let old = *running.keys().max_by_key(|id| led_by(**id)).unwrap();
    let orphans: Vec<GroupId> = groups
        .iter()
        .filter(|g| running[&old].node.group(g).unwrap().status().is_leader)
        .cloned()
        .collect();
    assert!(!orphans.is_empty());
    stop_node(&mut running, old).await;
    let stopped = Instant::now();
    let rest: Vec<&Running> = running.values().collect();
    let mut slowest = Duration::ZERO;
    for g in &orphans {
        leader(&rest, g).await.propose(batch(3)).await.unwrap();
        slowest = slowest.max(stopped.elapsed());
    }
    eprintln!(
        "{} quiet groups led by the stopped node: all leading again and writing in {slowest:?}",
        orphans.len()
    );
    assert!(
        slowest < Duration::from_secs(5),
        "failover took {slowest:?}"
    );
    for r in running.values() {
        r.node.shutdown().await;
    }
}

/// A replica that restarts knows nothing of the quiet and would stand for election when no
/// heartbeat comes: its node's new connection wakes the groups led quietly elsewhere in which
/// it votes, their nodes reconnect to it at once (not after their backoff), and their
/// heartbeats reach it before its election timeout. No leader changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_does_not_take_the_leadership_of_quiet_groups() {
    const GROUPS: usize = 24;
    let root = tempfile::tempdir().unwrap();
    let groups = group_ids("t/restart", GROUPS);
    let (mut running, addrs) = quiet_nodes(root.path(), &groups).await;

    // The node leading the fewest groups restarts; the groups led elsewhere are watched.
    let led_by = |id: NodeId| {
        groups
            .iter()
            .filter(|g| running[&id].node.group(g).unwrap().status().is_leader)
            .count()
    };
    let back_id = *running.keys().min_by_key(|id| led_by(**id)).unwrap();
    let watched: Vec<GroupId> = groups
        .iter()
        .filter(|g| !running[&back_id].node.group(g).unwrap().status().is_leader)
        .cloned()
        .collect();
    let witness = *running.keys().find(|id| **id != back_id).unwrap();
    let before = (
        leaders_seen(&running[&witness], &watched),
        terms_of(&[&running[&witness]], &watched),
    );
    assert!(!watched.is_empty());
    // Down long enough for its peers' reconnection backoff to grow past its election timeout.
    stop_node(&mut running, back_id).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Back from its directory, introducing itself as `sluice serve` does at its start.
    let l = TcpListener::bind(&addrs[&back_id]).await.unwrap();
    let back = start_with(back_id, root.path(), &addrs, l, quick_quiet()).await;
    let (n, stop) = (back.node.clone(), back.stop.subscribe());
    tokio::spawn(async move { n.introduce(stop).await });
    for g in &groups {
        back.node
            .open_group(g.clone(), GroupStorage::own(LogConfig::default()), None)
            .await
            .unwrap();
    }
    running.insert(back_id, back);

    // Several of its election timeouts (300-600 ms) later, the watched groups have their
    // leaders and terms of before, and the restarted node follows those leaders.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = (
        leaders_seen(&running[&witness], &watched),
        terms_of(&[&running[&witness]], &watched),
    );
    assert_eq!(
        after, before,
        "a restarted follower changed leaders or terms"
    );
    assert_eq!(leaders_seen(&running[&back_id], &watched), before.0);
    let all: Vec<&Running> = running.values().collect();
    wait_quiet(&all, GROUPS).await;
    for r in running.values() {
        r.node.shutdown().await;
    }
}

/// A quiet follower that hears nothing from its leader's node for longer than its election
/// timeout asks that node before it stands: a node that answers keeps its groups, with no
/// election (a quiet group has no lease, so a follower standing would win and depose it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_follower_probes_a_silent_leader_node_and_keeps_it_when_it_answers() {
    const GROUPS: usize = 24;
    let root = tempfile::tempdir().unwrap();
    let groups = group_ids("t/probe", GROUPS);
    let (running, _) = quiet_nodes(root.path(), &groups).await;
    let all: Vec<&Running> = running.values().collect();
    let before = (leaders_seen(all[0], &groups), terms_of(&all, &groups));

    // Every node stops saying it is up, for five election windows.
    for r in &all {
        r.node.mute_up_messages(true);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = (leaders_seen(all[0], &groups), terms_of(&all, &groups));
    assert_eq!(after, before, "a leader that answered was deposed");
    assert_eq!(
        all.iter().map(|r| r.node.quiet_groups()).sum::<usize>(),
        3 * GROUPS
    );
    for r in &all {
        r.node.mute_up_messages(false);
        r.node.shutdown().await;
    }
}
