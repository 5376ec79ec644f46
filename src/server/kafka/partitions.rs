//! CreatePartitions: more partitions for a topic (never fewer), through the core's
//! `add_partitions`, which makes every new partition log durable before the topic counts it.
//! Replica assignments (one list of nodes per new partition, as many as the topic's
//! replication factor) place the new partitions on a cluster; a single server takes only node
//! 0, which holds every partition. `validate_only` checks and changes nothing.

use crate::broker::spawn_blocking;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_storage::store::PARTITIONS_MAX;

use super::authz;
use super::codec::Header;
use super::connection::{Conn, Slot};
use super::dispatch::respond;
use super::{error_code, KafkaContext};
use crate::security::Operation;

/// Grows (or checks) one topic; the error code and message, `None` on success. Blocking.
fn grow(
    ctx: &KafkaContext,
    t: &CreatePartitionsTopic,
    validate_only: bool,
) -> Option<(i16, String)> {
    let name = t.name.0.as_str();
    let current = match ctx.broker.partition_count(name) {
        Ok(n) => n,
        Err(e) => return Some((error_code(&e), e.message)),
    };
    let invalid = |m: String| Some((ResponseError::InvalidPartitions.code(), m));
    let Ok(count) = u32::try_from(t.count) else {
        return invalid(format!("{} partitions", t.count));
    };
    if count <= current {
        return invalid(format!(
            "topic {name:?} has {current} partitions; a topic's partitions only grow"
        ));
    }
    if count > PARTITIONS_MAX {
        return invalid(format!("a topic has at most {PARTITIONS_MAX} partitions"));
    }
    let assigned = match t
        .assignments
        .as_ref()
        .map(|a| assigned(ctx, name, a, count - current))
    {
        None => None,
        Some(Ok(a)) => a,
        Some(Err(m)) => return Some((ResponseError::InvalidReplicaAssignment.code(), m)),
    };
    if validate_only {
        return None;
    }
    ctx.broker
        .add_partitions_assigned(name, count, assigned)
        .err()
        .map(|e| (error_code(&e), e.message))
}

/// The nodes of each of `new` partitions of topic `name`, as CreatePartitions assigns them
/// (`None` on a single server, which takes only node 0), or why they cannot be served.
fn assigned(
    ctx: &KafkaContext,
    name: &str,
    assignments: &[CreatePartitionsAssignment],
    new: u32,
) -> Result<Option<Vec<Vec<u64>>>, String> {
    if assignments.len() != new as usize {
        return Err(format!(
            "{} partitions assigned for {new} new ones",
            assignments.len()
        ));
    }
    let mut lists = Vec::with_capacity(assignments.len());
    for a in assignments {
        let ids: Result<Vec<u64>, _> = a.broker_ids.iter().map(|b| u64::try_from(b.0)).collect();
        lists.push(ids.map_err(|_| "a negative node id".to_string())?);
    }
    let Some(c) = ctx.broker.cluster() else {
        if lists
            .iter()
            .any(|l| l.as_slice() != [super::NODE_ID as u64])
        {
            return Err("node 0 holds every partition of a single server".to_string());
        }
        return Ok(None);
    };
    let factor = c
        .placement(&crate::cluster::partition_group(name, 0))
        .map(|p| p.factor);
    c.check_assignment(lists, factor)
        .map(Some)
        .map_err(|e| e.message)
}

impl Conn {
    pub(super) fn create_partitions(&self, tx: Slot, h: Header, req: CreatePartitionsRequest) {
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        spawn_blocking(move || {
            let mut resp = CreatePartitionsResponse::default();
            for t in &req.topics {
                let mut r = CreatePartitionsTopicResult::default();
                r.name = t.name.clone();
                let refusal = match authz::check_topic(&ctx, &p, Operation::Alter, &t.name) {
                    false => Some((
                        authz::topic_denied(),
                        format!("{p} may not alter {}", t.name.0),
                    )),
                    true => grow(&ctx, t, req.validate_only),
                };
                if let Some((code, m)) = refusal {
                    r.error_code = code;
                    r.error_message = Some(StrBytes::from_string(m));
                }
                resp.results.push(r);
            }
            respond(ctx.broker.metrics(), tx, &h, &resp);
        });
    }
}
