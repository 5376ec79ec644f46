//! The Kafka frontend on a node of a cluster (docs/replication.md, "Kafka clients"): which
//! brokers Metadata lists (every node whose Kafka address it has learnt, under its node id),
//! which node leads each partition (its replicated log's leader), which node is the controller
//! and the consumer group coordinator (the leader of the cluster metadata, where group offset
//! commits are proposed). A single server is node 0, the leader of everything.

use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{KafkaContext, NODE_ID};

/// A follower at most this many entries behind its leader's last is listed in sync (ISR).
pub const ISR_LAG_ENTRIES_MAX: u64 = 1_000;

/// A Kafka broker as clients are told to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KafkaNode {
    pub(super) id: i32,
    pub(super) host: String,
    pub(super) port: i32,
}

/// Who leads a partition, as Metadata tells it.
pub(super) struct PartitionLeader {
    /// The leader's node id; -1 while none is known.
    pub(super) leader: i32,
    /// Every replica.
    pub(super) replicas: Vec<i32>,
    /// The replicas in sync.
    pub(super) isr: Vec<i32>,
    /// LEADER_NOT_AVAILABLE while no leader is known, else 0.
    pub(super) error: i16,
}

/// `host:port` split as Kafka lists it (an IPv6 host without brackets).
fn split_host_port(addr: &str) -> Option<(String, i32)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok()?;
    (!host.is_empty()).then(|| (host.to_string(), port as i32))
}

/// Node `id`'s Kafka address, when it has one and introduced itself.
fn kafka_node(ctx: &KafkaContext, id: u64) -> Option<KafkaNode> {
    let cluster = ctx.broker.cluster()?;
    if id == cluster.node_id() {
        return Some(KafkaNode {
            id: id as i32,
            host: ctx.host.clone(),
            port: ctx.port,
        });
    }
    let (host, port) = split_host_port(&cluster.node_info(id)?.kafka?)?;
    Some(KafkaNode {
        id: id as i32,
        host,
        port,
    })
}

/// The brokers Metadata lists: this one alone, or every node of the cluster whose Kafka address
/// is known here.
pub(super) fn brokers(ctx: &KafkaContext) -> Vec<MetadataResponseBroker> {
    let nodes: Vec<KafkaNode> = match ctx.broker.cluster() {
        None => vec![this_node(ctx)],
        Some(c) => c
            .nodes()
            .keys()
            .filter_map(|&id| kafka_node(ctx, id))
            .collect(),
    };
    nodes
        .into_iter()
        .map(|n| {
            let mut b = MetadataResponseBroker::default();
            b.node_id = BrokerId(n.id);
            b.host = StrBytes::from_string(n.host);
            b.port = n.port;
            b
        })
        .collect()
}

/// A single server, as Kafka clients see it.
fn this_node(ctx: &KafkaContext) -> KafkaNode {
    KafkaNode {
        id: NODE_ID,
        host: ctx.host.clone(),
        port: ctx.port,
    }
}

/// The controller: the leader of the cluster metadata (-1 during an election).
pub(super) fn controller(ctx: &KafkaContext) -> i32 {
    match ctx.broker.cluster() {
        None => NODE_ID,
        Some(c) => c.meta_leader().map_or(-1, |l| l as i32),
    }
}

/// Who leads partition `p` of `topic`.
pub(super) fn partition_leader(ctx: &KafkaContext, topic: &str, p: u32) -> PartitionLeader {
    let Some(c) = ctx.broker.cluster() else {
        return PartitionLeader {
            leader: NODE_ID,
            replicas: vec![NODE_ID],
            isr: vec![NODE_ID],
            error: 0,
        };
    };
    let replicas: Vec<i32> = c
        .partition_replicas(topic, p)
        .into_iter()
        .map(|id| id as i32)
        .collect();
    let status = c.partition_status(topic, p);
    let Some(leader) = c.partition_leader(topic, p) else {
        return PartitionLeader {
            leader: -1,
            isr: Vec::new(),
            replicas,
            error: ResponseError::LeaderNotAvailable.code(),
        };
    };
    // The leader knows how far each follower is; another node lists every replica (a node
    // without a replica, from the leader directory).
    let isr = match status.filter(|s| s.is_leader) {
        Some(s) => {
            let last = s.last_index.unwrap_or(0);
            let mut isr = vec![leader as i32];
            isr.extend(s.followers.iter().filter_map(|(&id, &matched)| {
                let behind = last.saturating_sub(matched.unwrap_or(0));
                (id != leader && behind <= ISR_LAG_ENTRIES_MAX).then_some(id as i32)
            }));
            isr.sort_unstable();
            isr
        }
        None => replicas.clone(),
    };
    PartitionLeader {
        leader: leader as i32,
        replicas,
        isr,
        error: 0,
    }
}

/// The consumer group coordinator: this server, or the cluster metadata's leader; the error
/// while it is not known (an election, or its Kafka address not learnt yet).
pub(super) fn coordinator(ctx: &KafkaContext) -> Result<KafkaNode, i16> {
    let Some(c) = ctx.broker.cluster() else {
        return Ok(this_node(ctx));
    };
    c.meta_leader()
        .and_then(|l| kafka_node(ctx, l))
        .ok_or(ResponseError::CoordinatorNotAvailable.code())
}

/// Whether this node coordinates consumer groups now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Coordination {
    /// It does: a single server, or the metadata's leader once it has applied every entry
    /// of the terms before its own (every offset committed through an earlier leader).
    Here,
    /// It leads the metadata, but has not applied the entries of earlier terms yet: what it
    /// would answer about offsets may be stale (Kafka's COORDINATOR_LOAD_IN_PROGRESS).
    Loading,
    /// Another node does, or none is known yet.
    Elsewhere,
}

/// Whether this node coordinates consumer groups now.
pub(super) fn coordination(ctx: &KafkaContext) -> Coordination {
    match ctx.broker.cluster() {
        None => Coordination::Here,
        Some(c) if c.meta_ready() => Coordination::Here,
        Some(c) if c.meta_leader() == Some(c.node_id()) => Coordination::Loading,
        Some(_) => Coordination::Elsewhere,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_split_as_kafka_lists_them() {
        assert_eq!(
            split_host_port("10.0.0.1:9092"),
            Some(("10.0.0.1".into(), 9092))
        );
        assert_eq!(split_host_port("[::1]:19092"), Some(("::1".into(), 19092)));
        for bad in ["", "host", ":9092", "host:x", "host:70000"] {
            assert_eq!(split_host_port(bad), None, "{bad:?}");
        }
    }
}
