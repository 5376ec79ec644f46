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
//! - no message is stored twice and none is one no publisher sent;
//! - no group had two leaders in one term, as every node named them along the way.
//!
//! `SLUICE_CLUSTER_ROUNDS` repeats the fault cycle (default 1; `SLUICE_SOAK=1` makes it 100: 300 faults).

mod common;

use common::cluster::cluster_nodes;
use common::cluster_check::*;

const NODES: u64 = 3;

fn rounds() -> usize {
    if std::env::var("SLUICE_SOAK").is_ok_and(|v| v == "1") {
        return 100;
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
    check_terms(&nodes.iter().collect::<Vec<_>>(), &check);
    let terms = check.leaders.check();
    eprintln!(
        "{} confirmed, {} sent, {} stored on each node; {terms} (group, term) pairs seen with \
         one leader each; failover (leader killed to the next confirm) {:?}",
        want,
        check.sent.len(),
        all[0].len(),
        failovers
    );
}
