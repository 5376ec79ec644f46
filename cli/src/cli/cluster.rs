//! `sluice cluster status`: asks every `--addr` node for its view of the cluster
//! (`CLUSTER_STATUS`) and prints the nodes and each replicated group, from its leader's report
//! when the leader is among the nodes that answered (only a leader knows its followers'
//! replication). `sluice cluster add-node` and `remove-node` change the cluster's nodes
//! through any `--addr` node, and `set-replicas` a topic's or queue's replication factor.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::json;
use sluice::client::{ConnectOptions, ADDR_CONNECT_TIMEOUT};
use sluice::protocol::{ClusterStatus, GroupState, Target};

use super::Out;

/// Longest one node may take to answer `CLUSTER_STATUS` once connected.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Cluster commands.
#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Show the nodes, and each replicated group's leader, term, last and applied Raft index
    /// and followers' lag (leader's last index minus the follower's matched index, in Raft
    /// entries: one per published batch), as the --addr nodes that answer report them.
    /// MEMBERS marks the preferred leader `*`, to which leadership moves back.
    Status,
    /// Add a node to the cluster. Start it first with `sluice serve --node-id ID --cluster
    /// ID@HOST:PORT --join --cluster-id <id from status>`; every group then gains a replica
    /// on it while it serves (watch `sluice cluster status` until no group lists learners).
    AddNode {
        /// The new node, as ID@HOST:PORT of its cluster listener.
        node: String,
    },
    /// Remove a node from the cluster; every group drops its replica there while it serves.
    /// Stop the node once `sluice cluster status` lists it in no group.
    RemoveNode {
        /// The node's id.
        id: u64,
    },
    /// Set the replication factor of every partition of a topic (or of a queue, with
    /// --queue): replicas are then added on the nodes holding fewest, or dropped from those
    /// holding most (never the preferred leader), while the cluster serves (watch `sluice
    /// cluster status`).
    SetReplicas {
        /// The topic, or the queue with --queue.
        name: String,
        /// Replicas from now on: 1 to the cluster's nodes.
        replicas: u32,
        /// NAME is a queue.
        #[arg(long)]
        queue: bool,
    },
}

/// What one `--addr` node answered.
struct Report {
    addr: String,
    status: ClusterStatus,
}

pub(super) async fn run(opts: ConnectOptions, out: &Out, cmd: ClusterCmd) -> Result<()> {
    match cmd {
        ClusterCmd::Status => {
            let reports = gather(&opts).await?;
            if !out.json {
                let id = reports[0].status.cluster_id;
                println!(
                    "cluster {}",
                    sluice::cluster::config::format_cluster_id(&id)
                );
            }
            print_nodes(out, &reports);
            print_groups(out, &reports);
            Ok(())
        }
        ClusterCmd::AddNode { node } => {
            let (id, addr) = node
                .split_once('@')
                .ok_or_else(|| anyhow::anyhow!("{node:?} is not ID@HOST:PORT"))?;
            let id: u64 = id
                .parse()
                .map_err(|_| anyhow::anyhow!("{id:?} is not a node id (a number)"))?;
            opts.connect().await?.cluster_add_node(id, addr).await?;
            out.line(
                || format!("node {id} added at {addr}; the groups now move onto it"),
                || json!({"added": id, "cluster_addr": addr}),
            );
            Ok(())
        }
        ClusterCmd::RemoveNode { id } => {
            opts.connect().await?.cluster_remove_node(id).await?;
            out.line(
                || format!("node {id} removed; the groups now drop it"),
                || json!({"removed": id}),
            );
            Ok(())
        }
        ClusterCmd::SetReplicas {
            name,
            replicas,
            queue,
        } => {
            let target = match queue {
                true => Target::Queue(name.clone()),
                false => Target::Topic(name.clone()),
            };
            opts.connect()
                .await?
                .cluster_set_replicas(target, replicas)
                .await?;
            out.line(
                || format!("{name}: {replicas} replicas; they now move"),
                || json!({"name": name, "queue": queue, "replicas": replicas}),
            );
            Ok(())
        }
    }
}

/// Asks each address on a connection of its own; the answers, or an error when none came.
async fn gather(opts: &ConnectOptions) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for addr in opts.addr_list() {
        let one = opts
            .clone()
            .addrs([addr.clone()])
            .connect_timeout(ADDR_CONNECT_TIMEOUT);
        let asked = async {
            let c = one.connect().await?;
            c.cluster_status().await
        };
        match tokio::time::timeout(STATUS_TIMEOUT + ADDR_CONNECT_TIMEOUT, asked).await {
            Ok(Ok(status)) => reports.push(Report {
                addr: addr.clone(),
                status,
            }),
            Ok(Err(e)) => failures.push(format!("{addr}: {e}")),
            Err(_) => failures.push(format!("{addr}: no answer within {STATUS_TIMEOUT:?}")),
        }
    }
    if reports.is_empty() {
        bail!("no node answered: {}", failures.join("; "));
    }
    for f in failures {
        eprintln!("warning: {f}");
    }
    Ok(reports)
}

fn print_nodes(out: &Out, reports: &[Report]) {
    let cluster_id = sluice::cluster::config::format_cluster_id(&reports[0].status.cluster_id);
    let mut nodes: BTreeMap<u64, String> = BTreeMap::new();
    for r in reports {
        for n in &r.status.nodes {
            nodes.insert(n.id, n.cluster_addr.clone());
        }
    }
    let leads = |id: u64| {
        let mut groups = BTreeSet::new();
        for r in reports.iter().filter(|r| r.status.node_id == id) {
            for g in r.status.groups.iter().filter(|g| g.leader == Some(id)) {
                groups.insert(g.group.clone());
            }
        }
        groups.len()
    };
    for (id, cluster_addr) in nodes {
        let addr = reports
            .iter()
            .find(|r| r.status.node_id == id)
            .map(|r| r.addr.clone());
        let led = addr.as_ref().map(|_| leads(id));
        // The nodes that have failed to connect to it for a while.
        let unreachable_from: Vec<u64> = reports
            .iter()
            .filter(|r| r.status.unreachable.contains(&id))
            .map(|r| r.status.node_id)
            .collect();
        out.line(
            || {
                let from = match unreachable_from.as_slice() {
                    [] => String::new(),
                    ids => format!("  unreachable from node(s) {ids:?}"),
                };
                format!(
                    "node {id}  cluster {cluster_addr}  client {}  {}{from}",
                    addr.as_deref().unwrap_or("-"),
                    match led {
                        Some(n) => format!("leads {n} group(s)"),
                        None => "not reached".into(),
                    }
                )
            },
            || {
                json!({"node": id, "cluster_addr": cluster_addr, "addr": addr,
                       "cluster_id": cluster_id,
                       "reached": addr.is_some(), "leads": led,
                       "unreachable_from": unreachable_from})
            },
        );
    }
}

/// For each group, the report to show: its leader's when the leader answered, else the one
/// of the highest term; with the node that made it.
fn best_reports(reports: &[Report]) -> BTreeMap<String, (u64, &GroupState)> {
    let mut best: BTreeMap<String, (u64, &GroupState)> = BTreeMap::new();
    for r in reports {
        let me = r.status.node_id;
        for g in &r.status.groups {
            let rank = |node: u64, g: &GroupState| (g.term, g.leader == Some(node));
            let better = best
                .get(&g.group)
                .map_or(true, |(n, b)| rank(me, g) > rank(*n, b));
            if better {
                best.insert(g.group.clone(), (me, g));
            }
        }
    }
    best
}

fn print_groups(out: &Out, reports: &[Report]) {
    let best = best_reports(reports);
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    if !out.json {
        println!(
            "{:<24} {:>6} {:>6} {:>10} {:>10}  {:<12} FOLLOWERS (node:lag)",
            "GROUP", "LEADER", "TERM", "LAST", "APPLIED", "MEMBERS"
        );
    }
    for (name, (by, g)) in &best {
        let from_leader = g.leader == Some(*by);
        let followers: Vec<serde_json::Value> = g
            .followers
            .iter()
            .map(|f| json!({"node": f.node, "matched": f.matched, "lag": g.lag(f)}))
            .collect();
        out.line(
            || {
                let lags = if from_leader {
                    let l: Vec<String> = g
                        .followers
                        .iter()
                        .map(|f| format!("{}:{}", f.node, g.lag(f)))
                        .collect();
                    l.join(" ")
                } else {
                    "? (leader not reached)".into()
                };
                format!(
                    "{name:<24} {:>6} {:>6} {:>10} {:>10}  {:<12} {lags}",
                    opt(g.leader),
                    g.term,
                    opt(g.last_index),
                    opt(g.applied_index),
                    members(g)
                )
            },
            || {
                json!({"group": name, "leader": g.leader, "term": g.term,
                       "last_index": g.last_index, "applied_index": g.applied_index,
                       "reported_by": by, "from_leader": from_leader,
                       "voters": g.voters, "learners": g.learners, "preferred": g.preferred,
                       "followers": followers})
            },
        );
    }
}

/// A group's members as `1*,2,3` (voters, `*` marking the preferred leader) and `+4` for each
/// learner.
fn members(g: &GroupState) -> String {
    let mark = |v: &u64| if g.preferred == Some(*v) { "*" } else { "" };
    let mut parts: Vec<String> = g.voters.iter().map(|v| format!("{v}{}", mark(v))).collect();
    parts.extend(g.learners.iter().map(|l| format!("+{l}")));
    parts.join(",")
}
