//! CreatePartitions: more partitions for a topic (never fewer), through the core's
//! `add_partitions`, which makes every new partition log durable before the topic counts it.
//! Replica assignments are refused (one node holds every partition); `validate_only` checks and
//! changes nothing.

use crate::broker::spawn_blocking;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
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
    if t.assignments.is_some() {
        let m = "replica assignments are not served: node 0 holds every partition".to_string();
        return Some((ResponseError::InvalidReplicaAssignment.code(), m));
    }
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
    if validate_only {
        return None;
    }
    ctx.broker
        .add_partitions(name, count)
        .err()
        .map(|e| (error_code(&e), e.message))
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
