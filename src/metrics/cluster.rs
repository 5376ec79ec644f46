//! The cluster's figures of a scrape, on a node of a cluster (docs/replication.md): the node,
//! the nodes whose client addresses it knows, its replicated groups (how many, how many it
//! leads, how many have no leader), the metadata's leader and term, and how far behind each
//! follower is on the groups this node leads. Aggregated over groups: a node may hold many
//! thousands of partitions, and one series per group would swamp a Prometheus server;
//! `sluice cluster status` shows each group.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use sluice_replication::GroupStatus;

use super::collect::{family, single};
use crate::cluster::{Cluster, META_GROUP};

/// A snapshot of the cluster's figures.
#[derive(Debug, Default)]
pub(super) struct ClusterScrape {
    node: u64,
    nodes: usize,
    nodes_known: usize,
    groups: Vec<GroupStatus>,
    /// Groups this node leads whose preferred leader is another node.
    led_not_preferred: usize,
    /// Leadership hand-overs this node started: (done, failed).
    handovers: (u64, u64),
}

impl ClusterScrape {
    /// The figures of `cluster` now.
    pub(super) fn of(cluster: &Cluster) -> ClusterScrape {
        let nodes = cluster.nodes();
        ClusterScrape {
            node: cluster.node_id(),
            nodes: nodes.len(),
            nodes_known: nodes
                .keys()
                .filter(|&&id| cluster.node_info(id).is_some())
                .count(),
            groups: cluster.status(),
            led_not_preferred: cluster.led_not_preferred(),
            handovers: cluster.handovers(),
        }
    }

    /// The highest lag of each follower, in entries, over the groups this node leads.
    fn follower_lag(&self) -> Vec<(u64, u64)> {
        let mut lag = std::collections::BTreeMap::new();
        for g in self.groups.iter().filter(|g| g.is_leader) {
            let last = g.last_index.unwrap_or(0);
            for (&f, &matched) in g.followers.iter().filter(|(&f, _)| f != self.node) {
                let behind = last.saturating_sub(matched.unwrap_or(0));
                let e = lag.entry(f).or_insert(0);
                *e = behind.max(*e);
            }
        }
        lag.into_iter().collect()
    }
}

impl Collector for ClusterScrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::Gauge;
        let e = &mut e;
        let count = |f: &dyn Fn(&GroupStatus) -> bool| self.groups.iter().filter(|g| f(g)).count();
        single(
            e,
            "cluster_node_id",
            "This node's id.",
            Gauge,
            self.node as f64,
        )?;
        single(
            e,
            "cluster_nodes",
            "Nodes of the cluster (--cluster).",
            Gauge,
            self.nodes as f64,
        )?;
        single(
            e,
            "cluster_nodes_known",
            "Nodes whose client addresses this node has learnt (itself included).",
            Gauge,
            self.nodes_known as f64,
        )?;
        single(
            e,
            "cluster_groups",
            "Replicated groups open on this node (the metadata and every partition).",
            Gauge,
            self.groups.len() as f64,
        )?;
        single(
            e,
            "cluster_groups_led",
            "Replicated groups this node leads.",
            Gauge,
            count(&|g| g.is_leader) as f64,
        )?;
        single(
            e,
            "cluster_groups_without_leader",
            "Replicated groups with no leader this node knows of (an election under way).",
            Gauge,
            count(&|g| g.leader.is_none()) as f64,
        )?;
        single(
            e,
            "cluster_groups_led_not_preferred",
            "Groups this node leads whose preferred leader is another node (handed back once \
             that node has caught up: leader balance).",
            Gauge,
            self.led_not_preferred as f64,
        )?;
        single(
            e,
            "cluster_leader_handovers",
            "Groups this node handed to their preferred leader (leader balance).",
            MetricType::Counter,
            self.handovers.0 as f64,
        )?;
        single(
            e,
            "cluster_leader_handovers_failed",
            "Hand-overs to a preferred leader that did not take (the group stayed here).",
            MetricType::Counter,
            self.handovers.1 as f64,
        )?;
        let meta = self.groups.iter().find(|g| g.group.0 == META_GROUP);
        single(
            e,
            "cluster_meta_leader",
            "The metadata's leader (the controller and group coordinator); 0 when none is known.",
            Gauge,
            meta.and_then(|m| m.leader).unwrap_or(0) as f64,
        )?;
        single(
            e,
            "cluster_meta_term",
            "The metadata's current term (elections so far).",
            Gauge,
            meta.map_or(0, |m| m.term) as f64,
        )?;
        single(
            e,
            "cluster_unapplied_entries_max",
            "The most entries of one group in this node's log and not yet applied.",
            Gauge,
            self.groups
                .iter()
                .map(|g| {
                    let last = g.last_index.unwrap_or(0);
                    last.saturating_sub(g.applied_index.unwrap_or(0))
                })
                .max()
                .unwrap_or(0) as f64,
        )?;
        family(
            e,
            "cluster_follower_lag_entries",
            "On the groups this node leads: the most entries a follower is behind.",
            Gauge,
            self.follower_lag()
                .into_iter()
                .map(|(f, lag)| ([("follower", f.to_string())], lag as f64)),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sluice_replication::GroupId;

    use super::*;

    fn group(name: &str, leader: Option<u64>, last: u64, followers: &[(u64, u64)]) -> GroupStatus {
        GroupStatus {
            group: GroupId(name.into()),
            node: 1,
            term: 4,
            leader,
            is_leader: leader == Some(1),
            last_index: Some(last),
            applied_index: Some(last - 1),
            followers: followers
                .iter()
                .map(|&(f, m)| (f, Some(m)))
                .collect::<BTreeMap<_, _>>(),
            purged_index: None,
            voters: Default::default(),
            learners: Default::default(),
        }
    }

    #[test]
    fn cluster_figures_are_aggregated_over_groups() {
        let scrape = ClusterScrape {
            node: 1,
            nodes: 3,
            nodes_known: 2,
            groups: vec![
                group("meta", Some(2), 10, &[]),
                group("t/a/0", Some(1), 100, &[(1, 100), (2, 90), (3, 100)]),
                group("t/a/1", Some(1), 50, &[(1, 50), (2, 50), (3, 20)]),
                group("t/a/2", None, 7, &[]),
            ],
            led_not_preferred: 1,
            handovers: (5, 2),
        };
        let mut registry = prometheus_client::registry::Registry::with_prefix("sluice");
        registry.register_collector(Box::new(scrape));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "sluice_cluster_node_id 1",
            "sluice_cluster_nodes 3",
            "sluice_cluster_nodes_known 2",
            "sluice_cluster_groups 4",
            "sluice_cluster_groups_led 2",
            "sluice_cluster_groups_without_leader 1",
            "sluice_cluster_meta_leader 2",
            "sluice_cluster_groups_led_not_preferred 1",
            "sluice_cluster_leader_handovers_total 5",
            "sluice_cluster_leader_handovers_failed_total 2",
            "sluice_cluster_meta_term 4",
            "sluice_cluster_unapplied_entries_max 1",
            "sluice_cluster_follower_lag_entries{follower=\"2\"} 10",
            "sluice_cluster_follower_lag_entries{follower=\"3\"} 30",
        ] {
            assert!(
                text.lines().any(|l| l == line || l == format!("{line}.0")),
                "{line} missing:\n{text}"
            );
        }
        assert!(!text.contains("follower=\"1\""), "{text}");
    }
}
