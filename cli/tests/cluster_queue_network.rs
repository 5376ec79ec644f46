//! A replicated queue's leader cut off from the other nodes (each node in its own network
//! namespace, `common::netns`), while its consumer, which the test still reaches, goes on:
//!
//! - the cut-off leader confirms no ack and hands out no new message, although the acks sent to
//!   it open its consumer's window (neither can be committed without a majority);
//! - the other two elect a leader of the queue, which delivers every message not acked, the
//!   ones the first consumer held among them, and confirms their acks;
//! - once the link is back the old leader follows, and the acks it held answer with an error,
//!   never as confirmed; every node ends with the queue empty.
//!
//! Needs root and iproute2 (`ip netns`); skipped without them, failed under `CI=true`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{
    client_of, leader_of, next_delivery as next, publish_to_queue, wait_queue, Node, STEP,
};
use common::netns::Hosts;
use sluice::client::Client;
use sluice::protocol::{QueueSettings, Source};

const NODES: u32 = 3;
const NATIVE_PORT: u16 = 7450;
const CLUSTER_PORT: u16 = 7460;
const MESSAGES: usize = 40;
/// How long the cut-off leader is given to (wrongly) confirm or deliver.
const CUT_WAIT: Duration = Duration::from_secs(3);

/// A client of the nodes `except` excluded, failing over between them.
async fn client_without(nodes: &[Node], except: usize) -> Client {
    let addrs: Vec<&str> = (0..nodes.len())
        .filter(|&i| i != except)
        .map(|i| nodes[i].native.as_str())
        .collect();
    client_of(&addrs.join(",")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_queue_leader_confirms_no_ack_and_delivers_nothing() {
    let Some(hosts) = Hosts::new(NODES) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let nodes = hosts.start_nodes(root.path(), NATIVE_PORT, CLUSTER_PORT);
    let client = client_without(&nodes, usize::MAX).await;
    let settings = QueueSettings {
        ack_timeout_ms: Some(600_000),
        ..Default::default()
    };
    client.create_queue("work", settings).await.unwrap();
    let published: BTreeSet<u64> = publish_to_queue(&client, "work", "w", MESSAGES)
        .await
        .into_iter()
        .collect();

    // The leader's consumer takes 10, acks 5 (confirmed), holds 5.
    let cut = leader_of(&nodes, "q/work").await;
    let on_cut = Client::connect(&nodes[cut].native).await.unwrap();
    let mut first = on_cut
        .consume(Source::Queue("work".into()), 10)
        .await
        .unwrap();
    let mut taken = Vec::new();
    for _ in 0..10 {
        taken.push(next(&mut first, "the first deliveries").await);
    }
    let mut acked = BTreeSet::new();
    for d in taken.drain(..5) {
        d.ack().await.unwrap();
        acked.insert(d.offset);
    }
    // The acks opened the window: what the leader delivered into it (committed) is held too.
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(1), first.next()).await {
        taken.push(d.unwrap());
    }
    let held: BTreeSet<u64> = taken.iter().map(|d| d.offset).collect();

    // Cut off: its acks are not confirmed, and the room they make is not filled.
    eprintln!("cutting off node {} (the queue's leader)", cut + 1);
    hosts.cut(cut as u32 + 1);
    let pending_acks = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        for d in taken {
            outcomes.push((d.offset, d.ack().await));
        }
        outcomes
    });
    tokio::time::sleep(CUT_WAIT).await;
    assert!(
        !pending_acks.is_finished(),
        "the cut-off leader confirmed acks"
    );
    if let Ok(Some(d)) = tokio::time::timeout(CUT_WAIT, first.next()).await {
        panic!(
            "the cut-off leader delivered {:?} without a majority",
            d.map(|d| d.offset)
        );
    }

    // The other two elect a leader, which delivers everything not acked.
    let majority = client_without(&nodes, cut).await;
    let mut second = majority
        .consume(Source::Queue("work".into()), 100)
        .await
        .unwrap();
    let started = Instant::now();
    let mut seen = BTreeSet::new();
    while seen.len() < MESSAGES - acked.len() {
        let d = next(&mut second, "the new leader's deliveries").await;
        assert!(
            published.contains(&d.offset),
            "offset {} was not published",
            d.offset
        );
        assert!(
            !acked.contains(&d.offset),
            "acked offset {} delivered again",
            d.offset
        );
        assert!(seen.insert(d.offset), "offset {} delivered twice", d.offset);
        if held.contains(&d.offset) {
            assert_eq!(d.attempt, 2, "offset {}", d.offset);
        }
        d.ack().await.unwrap();
    }
    eprintln!(
        "the new leader delivered every message in {:?}",
        started.elapsed()
    );

    // Back: the old leader follows; the acks it held fail, none confirmed.
    hosts.heal(cut as u32 + 1);
    let outcomes = tokio::time::timeout(STEP, pending_acks)
        .await
        .expect("the held acks answered once the link is back")
        .unwrap();
    for (offset, r) in outcomes {
        assert!(
            r.is_err(),
            "offset {offset}: an ack of the cut-off leader confirmed"
        );
    }
    for n in &nodes {
        wait_queue(&n.native, "work", |i| (i.depth, i.in_flight) == (0, 0)).await;
    }
}
