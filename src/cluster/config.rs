//! `--node-id` and `--cluster`: which node this is and where every node's cluster listener is.

use std::collections::BTreeMap;

use sluice_replication::NodeId;

/// The cluster this server is a node of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node.
    pub node_id: NodeId,
    /// Every node (this one included) and the `host:port` of its cluster listener.
    pub nodes: BTreeMap<NodeId, String>,
}

/// Most nodes a cluster may name.
pub const CLUSTER_NODES_MAX: usize = 64;

impl ClusterConfig {
    /// Parses `--cluster ID@HOST:PORT,...` for node `node_id`, which must be one of them.
    pub fn parse(node_id: NodeId, spec: &str) -> Result<ClusterConfig, String> {
        let mut nodes = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) = part
                .split_once('@')
                .ok_or_else(|| format!("{part:?} is not ID@HOST:PORT"))?;
            let id: NodeId = id
                .parse()
                .map_err(|_| format!("{id:?} in {part:?} is not a node id (a number)"))?;
            if id == 0 {
                return Err("node ids start at 1".into());
            }
            let port_ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(format!("{addr:?} in {part:?} is not HOST:PORT"));
            }
            if nodes.insert(id, addr.to_string()).is_some() {
                return Err(format!("node {id} is named twice"));
            }
        }
        if nodes.len() > CLUSTER_NODES_MAX {
            return Err(format!("at most {CLUSTER_NODES_MAX} nodes"));
        }
        if !nodes.contains_key(&node_id) {
            return Err(format!(
                "--node-id {node_id} is not one of the --cluster nodes"
            ));
        }
        Ok(ClusterConfig { node_id, nodes })
    }

    /// The cluster's id: the same on every node given the same `--cluster` list (16 bytes of
    /// an FNV-1a hash of it, with the UUID version and variant bits of a name-based UUID).
    pub fn cluster_uuid(&self) -> [u8; 16] {
        let spec: Vec<String> = self
            .nodes
            .iter()
            .map(|(id, a)| format!("{id}@{a}"))
            .collect();
        let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
        for b in spec.join(",").bytes() {
            h ^= b as u128;
            h = h.wrapping_mul(0x0000000001000000000000000000013B);
        }
        let mut id = h.to_be_bytes();
        id[6] = (id[6] & 0x0f) | 0x50;
        id[8] = (id[8] & 0x3f) | 0x80;
        id
    }

    /// This node's cluster listener address.
    pub fn own_addr(&self) -> &str {
        &self.nodes[&self.node_id]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let c = ClusterConfig::parse(2, "1@127.0.0.1:9201, 2@127.0.0.1:9202,3@h:9203").unwrap();
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.own_addr(), "127.0.0.1:9202");
        // Every node of a cluster names it alike; another list, another cluster.
        let other = ClusterConfig::parse(3, "1@127.0.0.1:9201,2@127.0.0.1:9202,3@h:9203").unwrap();
        assert_eq!(c.cluster_uuid(), other.cluster_uuid());
        let moved = ClusterConfig::parse(2, "1@127.0.0.1:9201,2@127.0.0.1:9202,3@h:9204").unwrap();
        assert_ne!(c.cluster_uuid(), moved.cluster_uuid());
        for bad in [
            "",
            "1@a:1",
            "x@a:1,2@b:2",
            "1@a,2@b:2",
            "1@a:1,1@b:2,2@c:3",
            "0@a:1,2@b:2",
        ] {
            assert!(ClusterConfig::parse(2, bad).is_err(), "{bad:?}");
        }
    }
}
