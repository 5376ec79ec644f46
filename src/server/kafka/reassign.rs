//! AlterPartitionReassignments and ListPartitionReassignments (`kafka-reassign-partitions`,
//! `Admin.alterPartitionReassignments`): moving a cluster's partitions to the nodes named.
//!
//! A reassignment is a metadata command (`MetaCommand::Reassign`, `cluster::factor`): each
//! partition's placement becomes the nodes given (their count its replication factor), and
//! the metadata's leader then moves the replicas as it does for a node added or removed. The
//! answer comes once the metadata has the change; ListPartitionReassignments, answered by the
//! metadata's leader (the controller Kafka clients send it to; another node answers
//! NOT_CONTROLLER), lists the partitions whose members are not yet their placement. A
//! reassignment under way is cancelled by a `null` replica list: the partition is moved back
//! to the nodes it had before (as every node's metadata recorded at the reassignment), so a
//! replica still catching up is dropped. A single node holds every partition and refuses
//! every reassignment.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_replication::GroupId;

use super::authz;
use super::codec::Header;
use super::connection::{Conn, Slot};
use super::dispatch::respond;
use super::{error_code, KafkaContext};
use crate::broker::spawn_blocking;
use crate::security::{Operation, Resource};

/// An error code and its message.
type Refusal = (i16, String);

/// A topic's partitions, each with its refusal if any.
type TopicOutcome = (TopicName, Vec<(i32, Option<Refusal>)>);

/// One partition's refusal, or the move it asks for.
type Checked = Result<Option<(GroupId, Vec<u64>)>, Refusal>;

/// Checks one partition's reassignment. Blocking.
fn check(
    ctx: &KafkaContext,
    topic: &str,
    partition: i32,
    replicas: Option<&Vec<BrokerId>>,
    keep_factor: bool,
) -> Checked {
    let Some(cluster) = ctx.broker.cluster() else {
        let m = "a single node holds every partition".to_string();
        return Err((ResponseError::InvalidReplicaAssignment.code(), m));
    };
    let count = ctx
        .broker
        .partition_count(topic)
        .map_err(|e| (error_code(&e), e.message))?;
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    let p = u32::try_from(partition)
        .ok()
        .filter(|p| *p < count)
        .ok_or((
            unknown,
            format!("topic {topic:?} has no partition {partition}"),
        ))?;
    let group = GroupId(format!("t/{topic}/{p}"));
    let Some(replicas) = replicas else {
        return cancel(cluster, group);
    };
    let to: Vec<u64> = replicas
        .iter()
        .map(|b| u64::try_from(b.0).unwrap_or(0))
        .collect();
    if !cluster.are_distinct_nodes(&to) {
        let m = format!("{group}: {to:?} is not a list of distinct nodes of the cluster");
        return Err((ResponseError::InvalidReplicaAssignment.code(), m));
    }
    let now = cluster.placement(&group).map(|p| p.nodes.len());
    if keep_factor && now.is_some_and(|n| n != to.len()) {
        let m = format!(
            "{group} has {} replicas, not {}",
            now.unwrap_or(0),
            to.len()
        );
        return Err((ResponseError::InvalidReplicationFactor.code(), m));
    }
    Ok(Some((group, to)))
}

/// A cancel (a `null` replica list) of `group`'s reassignment: the move back to the nodes it
/// had before, while the move is under way.
fn cancel(cluster: &crate::cluster::Cluster, group: GroupId) -> Checked {
    let moving = cluster.moving_groups().unwrap_or_default();
    if !moving.contains(&group) {
        return Err((
            ResponseError::NoReassignmentInProgress.code(),
            format!("no reassignment of {group} is under way"),
        ));
    }
    match cluster.reassigned_from(&group) {
        Some(from) => Ok(Some((group, from))),
        None => Err((
            ResponseError::InvalidRequest.code(),
            format!(
                "{group} is moving, but not by a reassignment this node applied (a node \
                 added or removed, or one from before the metadata's last compaction): it \
                 cannot be cancelled"
            ),
        )),
    }
}

/// Answers AlterPartitionReassignments. Blocking.
fn alter(
    ctx: &KafkaContext,
    allowed: bool,
    req: &AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut resp = AlterPartitionReassignmentsResponse::default();
    resp.allow_replication_factor_change = req.allow_replication_factor_change;
    if !allowed {
        resp.error_code = authz::cluster_denied();
        resp.error_message = Some(StrBytes::from_static_str("may not alter the cluster"));
        return resp;
    }
    let keep_factor = !req.allow_replication_factor_change;
    let mut wanted = Vec::new();
    let mut results: Vec<TopicOutcome> = Vec::new();
    for t in &req.topics {
        let mut parts = Vec::new();
        for p in &t.partitions {
            let checked = check(
                ctx,
                &t.name.0,
                p.partition_index,
                p.replicas.as_ref(),
                keep_factor,
            );
            let refusal = match checked {
                Ok(Some(w)) => {
                    wanted.push(w);
                    None
                }
                Ok(None) => None,
                Err(e) => Some(e),
            };
            parts.push((p.partition_index, refusal));
        }
        results.push((t.name.clone(), parts));
    }
    let failed = match (ctx.broker.cluster(), wanted.is_empty()) {
        (Some(c), false) => c.reassign_blocking(wanted).err(),
        _ => None,
    };
    for (name, parts) in results {
        let mut r = ReassignableTopicResponse::default();
        r.name = name;
        for (partition_index, refusal) in parts {
            let mut pr = ReassignablePartitionResponse::default();
            pr.partition_index = partition_index;
            let refusal =
                refusal.or_else(|| failed.as_ref().map(|e| (error_code(e), e.message.clone())));
            if let Some((code, m)) = refusal {
                pr.error_code = code;
                pr.error_message = Some(StrBytes::from_string(m));
            }
            r.partitions.push(pr);
        }
        resp.responses.push(r);
    }
    resp
}

/// Answers ListPartitionReassignments. Blocking.
fn list(
    ctx: &KafkaContext,
    allowed: bool,
    req: &ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let mut resp = ListPartitionReassignmentsResponse::default();
    if !allowed {
        resp.error_code = authz::cluster_denied();
        return resp;
    }
    let Some(cluster) = ctx.broker.cluster() else {
        return resp;
    };
    let Some(moving) = cluster.moving_groups() else {
        resp.error_code = ResponseError::NotController.code();
        resp.error_message = Some(StrBytes::from_static_str("ask the metadata's leader"));
        return resp;
    };
    let asked = |topic: &str, p: u32| match &req.topics {
        None => true,
        Some(ts) => ts
            .iter()
            .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&(p as i32))),
    };
    let mut by_topic: std::collections::BTreeMap<String, Vec<OngoingPartitionReassignment>> =
        Default::default();
    let mut groups: Vec<&GroupId> = moving.iter().collect();
    groups.sort();
    for g in groups {
        let Some((topic, p)) = crate::cluster::placement::partition_of(&g.0) else {
            continue;
        };
        if !asked(topic, p) {
            continue;
        }
        let nodes = cluster.replicas_of(g);
        // Kafka's adding and removing replicas are relative to the nodes before the
        // reassignment; the group's voters where that is not known.
        let voters = cluster
            .reassigned_from(g)
            .or_else(|| cluster.members_seen(g));
        let ids = |v: &mut dyn Iterator<Item = &u64>| v.map(|n| BrokerId(*n as i32)).collect();
        let mut o = OngoingPartitionReassignment::default();
        o.partition_index = p as i32;
        o.replicas = ids(&mut nodes.iter());
        if let Some(voters) = voters {
            o.adding_replicas = ids(&mut nodes.iter().filter(|n| !voters.contains(n)));
            o.removing_replicas = ids(&mut voters.iter().filter(|n| !nodes.contains(n)));
        }
        by_topic.entry(topic.to_string()).or_default().push(o);
    }
    for (name, partitions) in by_topic {
        let mut t = OngoingTopicReassignment::default();
        t.name = TopicName(StrBytes::from_string(name));
        t.partitions = partitions;
        resp.topics.push(t);
    }
    resp
}

impl Conn {
    pub(super) fn alter_partition_reassignments(
        &self,
        tx: Slot,
        h: Header,
        req: AlterPartitionReassignmentsRequest,
    ) {
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        spawn_blocking(move || {
            let allowed = authz::check(&ctx, &p, Operation::Alter, Resource::cluster());
            let resp = alter(&ctx, allowed, &req);
            respond(ctx.broker.metrics(), tx, &h, &resp);
        });
    }

    pub(super) fn list_partition_reassignments(
        &self,
        tx: Slot,
        h: Header,
        req: ListPartitionReassignmentsRequest,
    ) {
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        spawn_blocking(move || {
            let allowed = authz::check(&ctx, &p, Operation::Describe, Resource::cluster());
            let resp = list(&ctx, allowed, &req);
            respond(ctx.broker.metrics(), tx, &h, &resp);
        });
    }
}
