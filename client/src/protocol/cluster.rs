//! `CLUSTER_STATUS` and its reply `CLUSTER_STATE`: a cluster node's view of the cluster.

use super::codec::{R, W};
use super::error::{malformed, ProtocolError};

/// Most nodes or groups one `CLUSTER_STATE` reply may list (a decoder refuses more).
pub const CLUSTER_LISTED_MAX: usize = 1_000_000;

/// A node of the cluster as the answering node knows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClusterNodeInfo {
    /// Its id.
    pub id: u64,
    /// Its cluster listener (`host:port`; not its client listener).
    pub cluster_addr: String,
}

/// One follower's replication, as its leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FollowerState {
    /// The follower.
    pub node: u64,
    /// The last index known to be on the follower (none yet).
    pub matched: Option<u64>,
}

/// One replicated group (the metadata, or a topic partition `t/<topic>/<partition>`) as the
/// answering node sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GroupState {
    /// The group's name.
    pub group: String,
    /// The current term.
    pub term: u64,
    /// The leader, when one is known.
    pub leader: Option<u64>,
    /// The last index in the answering node's log.
    pub last_index: Option<u64>,
    /// The last index applied (committed) on the answering node.
    pub applied_index: Option<u64>,
    /// When the answering node leads: each follower's replication (else empty).
    pub followers: Vec<FollowerState>,
    /// The voting members of the group's membership on the answering node.
    pub voters: Vec<u64>,
    /// Its learners (nodes being added, which do not vote yet).
    pub learners: Vec<u64>,
    /// The node that should lead it (the first of its placement), which the leaders move back
    /// to; none for the metadata and groups created before placement.
    pub preferred: Option<u64>,
}

impl GroupState {
    /// A follower's lag: the leader's last index minus the follower's matched index (the whole
    /// log when nothing is matched yet). Meaningful on the leader's report only.
    pub fn lag(&self, f: &FollowerState) -> u64 {
        let last = self.last_index.unwrap_or(0);
        match f.matched {
            Some(m) => last.saturating_sub(m),
            None => last,
        }
    }
}

/// A cluster node's view: who it is, the nodes, and every group it holds a replica of.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClusterStatus {
    /// The answering node.
    pub node_id: u64,
    /// The cluster's id (what `sluice serve --join --cluster-id` takes).
    pub cluster_id: [u8; 16],
    /// Every node of the cluster.
    pub nodes: Vec<ClusterNodeInfo>,
    /// Every group of the answering node: the metadata first, then the partitions by name.
    pub groups: Vec<GroupState>,
    /// The nodes the answering node has failed to connect to for a while (3 s), with no
    /// connection from them meanwhile (down, or cut off from it); empty from a server that
    /// does not report it.
    pub unreachable: Vec<u64>,
}

impl ClusterStatus {
    // Format: { node_id u64 | cluster_id [u8;16] | node_count u32 |
    //           { id u64 | cluster_addr str } * node_count | group_count u32 | group * group_count }
    // group: { name str | term u64 | leader opt<u64> | last_index opt<u64> |
    //          applied_index opt<u64> | follower_count u32 |
    //          { node u64 | matched opt<u64> } * follower_count |
    //          voter_count u32 | u64 * voter_count | learner_count u32 | u64 * learner_count |
    //          preferred opt<u64> }
    // then, optional (absent from older servers): unreachable_count u32 | u64 * unreachable_count
    pub(crate) fn encode_body(&self, w: &mut W<'_>) {
        w.u64(self.node_id);
        w.0.extend_from_slice(&self.cluster_id);
        w.u32(self.nodes.len() as u32);
        for n in &self.nodes {
            w.u64(n.id).str(&n.cluster_addr);
        }
        w.u32(self.groups.len() as u32);
        for g in &self.groups {
            w.str(&g.group)
                .u64(g.term)
                .opt_u64(g.leader)
                .opt_u64(g.last_index)
                .opt_u64(g.applied_index)
                .u32(g.followers.len() as u32);
            for f in &g.followers {
                w.u64(f.node).opt_u64(f.matched);
            }
            for ids in [&g.voters, &g.learners] {
                w.u32(ids.len() as u32);
                for id in ids {
                    w.u64(*id);
                }
            }
            w.opt_u64(g.preferred);
        }
        w.u32(self.unreachable.len() as u32);
        for id in &self.unreachable {
            w.u64(*id);
        }
    }

    pub(crate) fn decode(r: &mut R<'_>) -> Result<ClusterStatus, ProtocolError> {
        let node_id = r.u64()?;
        let mut cluster_id = [0u8; 16];
        cluster_id.copy_from_slice(r.take(16)?);
        let mut nodes = Vec::new();
        // Counts are bounded by the bytes left (a node takes at least 10, a group 26, a
        // follower 9, a member 8): a count read off the wire sizes nothing.
        for _ in 0..count(r, 10)? {
            nodes.push(ClusterNodeInfo {
                id: r.u64()?,
                cluster_addr: r.str()?,
            });
        }
        let mut groups = Vec::new();
        for _ in 0..count(r, 26)? {
            let group = r.str()?;
            let term = r.u64()?;
            let leader = r.opt_u64()?;
            let last_index = r.opt_u64()?;
            let applied_index = r.opt_u64()?;
            let mut followers = Vec::new();
            for _ in 0..count(r, 9)? {
                followers.push(FollowerState {
                    node: r.u64()?,
                    matched: r.opt_u64()?,
                });
            }
            let mut members = [Vec::new(), Vec::new()];
            for ids in &mut members {
                for _ in 0..count(r, 8)? {
                    ids.push(r.u64()?);
                }
            }
            let [voters, learners] = members;
            let preferred = r.opt_u64()?;
            groups.push(GroupState {
                group,
                term,
                leader,
                last_index,
                applied_index,
                followers,
                voters,
                learners,
                preferred,
            });
        }
        let mut unreachable = Vec::new();
        if r.pos < r.b.len() {
            for _ in 0..count(r, 8)? {
                unreachable.push(r.u64()?);
            }
        }
        Ok(ClusterStatus {
            node_id,
            cluster_id,
            nodes,
            groups,
            unreachable,
        })
    }
}

/// A count of items of at least `min_len` bytes each, checked against the bytes left.
fn count(r: &mut R<'_>, min_len: usize) -> Result<usize, ProtocolError> {
    let n = r.u32()? as usize;
    if n > CLUSTER_LISTED_MAX || n > (r.b.len() - r.pos) / min_len {
        return Err(malformed("cluster status count exceeds the body"));
    }
    Ok(n)
}
