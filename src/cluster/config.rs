//! `--node-id` and `--cluster`: which node this is and where every node's cluster listener is.

use std::collections::BTreeMap;

use sluice_replication::NodeId;

/// The cluster this server is a node of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node.
    pub node_id: NodeId,
    /// Every node (this one included) and the `host:port` of its cluster listener: the
    /// cluster's first nodes, or, with `join`, the nodes this one may reach first.
    pub nodes: BTreeMap<NodeId, String>,
    /// `--join`: this node joins a running cluster (`sluice cluster add-node`) and forms no
    /// group by itself.
    pub join: bool,
    /// `--cluster-id`: the id of the cluster to be a node of (a joining node's; checked
    /// against the one this node's data directory holds).
    pub cluster_id: Option<[u8; 16]>,
    /// `--cluster-listen`: where the cluster listener binds, when not at this node's address
    /// in `nodes` (which peers dial: a proxy, a NAT, `0.0.0.0`).
    pub listen: Option<String>,
    /// `--raft-heartbeat-ms`: the Raft heartbeat interval, when not the default
    /// ([`ClusterConfig::timing`]).
    pub heartbeat_ms: Option<u64>,
    /// `--raft-quiet-ms`: how long a group has nothing to do before it goes quiet (no
    /// heartbeats; `sluice_replication::quiet`); unset: [`QUIET_MS_DEFAULT`]; 0: never.
    pub quiet_ms: Option<u64>,
    /// `--leader-balance-ms`: how often groups led away from their preferred leader are handed
    /// back ([`super::leaders`]); 0 never; unset the default.
    pub leader_balance_ms: Option<u64>,
    /// `--meta-snapshot-entries`: how many metadata entries follow a compaction of the
    /// metadata's log before the next ([`super::compact::meta_loop`]); 0 never; unset the
    /// default ([`META_SNAPSHOT_ENTRIES_DEFAULT`]).
    pub meta_snapshot_entries: Option<u64>,
    /// `--cluster-tls-cert`, `--cluster-tls-key`, `--cluster-tls-ca`: TLS between the nodes,
    /// each authenticated by the cluster's CA ([`super::tls`]); unset, plain TCP.
    pub tls: Option<super::tls::ClusterTlsFiles>,
}

/// How many metadata entries follow a compaction of its log before the next, by default.
pub const META_SNAPSHOT_ENTRIES_DEFAULT: u64 = 10_000;

/// Smallest `--raft-heartbeat-ms`.
pub const HEARTBEAT_MS_MIN: u64 = 10;
/// Largest `--raft-heartbeat-ms`.
pub const HEARTBEAT_MS_MAX: u64 = 5_000;

/// How long (ms) a group has nothing to do before it goes quiet, unless `--raft-quiet-ms`
/// says otherwise: long enough that a group in use never does, short enough that a node's
/// idle groups stop beating soon after a burst.
pub const QUIET_MS_DEFAULT: u64 = 2_000;

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
            if !is_host_port(addr) {
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
        Ok(ClusterConfig {
            node_id,
            nodes,
            join: false,
            cluster_id: None,
            listen: None,
            heartbeat_ms: None,
            quiet_ms: None,
            leader_balance_ms: None,
            meta_snapshot_entries: None,
            tls: None,
        })
    }

    /// This configuration joining a running cluster of id `cluster_id` (`--join`).
    pub fn joining(mut self, cluster_id: [u8; 16]) -> ClusterConfig {
        self.join = true;
        self.cluster_id = Some(cluster_id);
        self
    }

    /// The id of a cluster formed from this `--cluster` list: the same on every node given the same list (16 bytes of
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

    /// This node's cluster listener address, as peers dial it.
    pub fn own_addr(&self) -> &str {
        &self.nodes[&self.node_id]
    }

    /// The Raft timing of this node's groups: openraft's default, or with `--raft-heartbeat-ms`
    /// that heartbeat and elections after 6 to 12 of them, the default's ratios. openraft 0.9
    /// gives an AppendEntries one heartbeat interval to be answered (round trip and the
    /// follower's fsync): a link or disk slower than that needs a longer one.
    pub fn timing(&self) -> Result<sluice_replication::Timing, String> {
        let quiet_after = match self.quiet_ms {
            Some(0) => None,
            None => Some(std::time::Duration::from_millis(QUIET_MS_DEFAULT)),
            Some(ms) => Some(std::time::Duration::from_millis(ms)),
        };
        let Some(ms) = self.heartbeat_ms else {
            return Ok(sluice_replication::Timing {
                quiet_after,
                ..Default::default()
            });
        };
        if !(HEARTBEAT_MS_MIN..=HEARTBEAT_MS_MAX).contains(&ms) {
            return Err(format!(
                "--raft-heartbeat-ms {ms} is not {HEARTBEAT_MS_MIN} to {HEARTBEAT_MS_MAX}"
            ));
        }
        let at = |n: u64| std::time::Duration::from_millis(n * ms);
        Ok(sluice_replication::Timing {
            heartbeat: at(1),
            election_min: at(6),
            election_max: at(12),
            quiet_after,
            // A cluster node's groups beat together whatever this says (`ClusterNode::new`).
            ..Default::default()
        })
    }

    /// How often leaders are balanced: `None` when `--leader-balance-ms 0` turned it off.
    pub fn leader_balance_interval(&self) -> Option<std::time::Duration> {
        match self.leader_balance_ms {
            None => Some(super::leaders::LEADER_BALANCE_INTERVAL_DEFAULT),
            Some(0) => None,
            Some(ms) => Some(std::time::Duration::from_millis(ms)),
        }
    }

    /// How many metadata entries follow a compaction of its log before the next; `None`
    /// when `--meta-snapshot-entries 0` turned compaction off.
    pub fn meta_snapshot_entries(&self) -> Option<u64> {
        match self.meta_snapshot_entries {
            None => Some(META_SNAPSHOT_ENTRIES_DEFAULT),
            Some(0) => None,
            Some(n) => Some(n),
        }
    }

    /// Where this node's cluster listener binds: `--cluster-listen`, else [`Self::own_addr`].
    pub fn bind_addr(&self) -> &str {
        self.listen.as_deref().unwrap_or_else(|| self.own_addr())
    }
}

/// True when `addr` is `HOST:PORT` (a cluster listener's address).
pub fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

/// Parses a cluster id as `sluice cluster status` shows it: 32 hex digits, dashes anywhere.
pub fn parse_cluster_id(s: &str) -> Result<[u8; 16], String> {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    if hex.len() != 32 {
        return Err(format!("{s:?} is not a cluster id (32 hex digits)"));
    }
    let mut id = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => id[i] = h << 4 | l,
            _ => return Err(format!("{s:?} is not a cluster id (32 hex digits)")),
        }
    }
    Ok(id)
}

/// A cluster id as a UUID (`8-4-4-4-12` hex digits).
pub fn format_cluster_id(id: &[u8; 16]) -> String {
    let h: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
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

    #[test]
    fn the_heartbeat_scales_the_elections_within_bounds() {
        let mut c = ClusterConfig::parse(1, "1@a:1").unwrap();
        let quiet = sluice_replication::Timing {
            quiet_after: Some(std::time::Duration::from_millis(QUIET_MS_DEFAULT)),
            ..Default::default()
        };
        assert_eq!(c.timing().unwrap(), quiet);
        c.quiet_ms = Some(2000);
        let quiet = Some(std::time::Duration::from_secs(2));
        c.heartbeat_ms = Some(250);
        let t = c.timing().unwrap();
        assert_eq!(t.heartbeat.as_millis(), 250);
        assert_eq!(
            (t.election_min.as_millis(), t.election_max.as_millis()),
            (1500, 3000)
        );
        assert_eq!(t.quiet_after, quiet);
        c.quiet_ms = Some(0);
        assert_eq!(
            c.timing().unwrap().quiet_after,
            None,
            "--raft-quiet-ms 0: never"
        );
        c.quiet_ms = None;
        assert_eq!(
            c.timing().unwrap().quiet_after,
            Some(std::time::Duration::from_millis(QUIET_MS_DEFAULT)),
            "on unless turned off"
        );
        for bad in [0, 9, 5_001] {
            c.heartbeat_ms = Some(bad);
            assert!(c.timing().is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_ids_print_and_parse_back() {
        let c = ClusterConfig::parse(2, "1@127.0.0.1:9201,2@127.0.0.1:9202").unwrap();
        let id = c.cluster_uuid();
        let shown = format_cluster_id(&id);
        assert_eq!(shown.len(), 36);
        assert_eq!(parse_cluster_id(&shown).unwrap(), id);
        assert_eq!(parse_cluster_id(&shown.replace('-', "")).unwrap(), id);
        for bad in ["", "xyz", &shown[1..], &shown.replace('a', "g")] {
            if bad != shown {
                assert!(parse_cluster_id(bad).is_err(), "{bad:?}");
            }
        }
    }
}
