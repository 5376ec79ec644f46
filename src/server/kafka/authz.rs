//! Authorization of Kafka requests, mapped as Kafka's own authorizer maps them (the table is
//! in `docs/kafka.md`): each handler asks before it touches a resource, and a refused part of
//! a request gets the protocol's authorization error (TOPIC_, GROUP_ or
//! CLUSTER_AUTHORIZATION_FAILED) while nothing of it changes. Each refusal is counted in
//! `sluice_authorization_denials_total{protocol="kafka"}`.
//!
//! With no user stored (security off) every check is one relaxed atomic load and passes: no
//! string is cloned and no rule is read on the hot path.
//!
//! A Kafka topic name is checked as the topic of that name, or, when no topic has it and a
//! queue does (a queue shows as a one-partition topic), as that queue.

use kafka_protocol::ResponseError;
use tracing::info;

use super::KafkaContext;
use crate::broker::NamedLog;
use crate::metrics::Protocol;
use crate::security::{Operation, Principal, Resource};

/// Whether `p` may do `op` on `r`; a refusal is counted and logged.
pub(super) fn check(ctx: &KafkaContext, p: &Principal, op: Operation, r: Resource<'_>) -> bool {
    let security = ctx.broker.security();
    if !security.enabled() {
        return true;
    }
    match security.authorize(p, op, r) {
        Ok(()) => true,
        Err(e) => {
            ctx.broker.metrics().denied(Protocol::Kafka);
            info!(principal = %p, "kafka request denied: {e}");
            false
        }
    }
}

/// The resource a Kafka topic name stands for: the topic, or the queue of that name when no
/// topic has it. Blocking (it may look the name up).
pub(super) fn topic_resource<'a>(ctx: &KafkaContext, name: &'a str) -> Resource<'a> {
    match ctx.broker.named_log(name) {
        Ok(NamedLog::Queue(_)) => Resource::queue(name),
        _ => Resource::topic(name),
    }
}

/// Whether `p` may do `op` on the topic (or queue) `name`; a refusal is counted. Blocking.
pub(super) fn check_topic(ctx: &KafkaContext, p: &Principal, op: Operation, name: &str) -> bool {
    if !ctx.broker.security().enabled() {
        return true;
    }
    check(ctx, p, op, topic_resource(ctx, name))
}

/// Whether `p` may see the topic (or queue) `name` in a listing: not counted as a refusal.
/// Blocking.
pub(super) fn visible_topic(ctx: &KafkaContext, p: &Principal, name: &str) -> bool {
    let security = ctx.broker.security();
    !security.enabled() || security.allows(p, Operation::Describe, topic_resource(ctx, name))
}

/// Whether `p` may see the group `name` in a listing: not counted as a refusal.
pub(super) fn visible_group(ctx: &KafkaContext, p: &Principal, name: &str) -> bool {
    let security = ctx.broker.security();
    !security.enabled() || security.allows(p, Operation::Describe, Resource::group(name))
}

/// TOPIC_AUTHORIZATION_FAILED.
pub(super) fn topic_denied() -> i16 {
    ResponseError::TopicAuthorizationFailed.code()
}

/// GROUP_AUTHORIZATION_FAILED.
pub(super) fn group_denied() -> i16 {
    ResponseError::GroupAuthorizationFailed.code()
}

/// CLUSTER_AUTHORIZATION_FAILED.
pub(super) fn cluster_denied() -> i16 {
    ResponseError::ClusterAuthorizationFailed.code()
}

/// The refusal of a config resource (DescribeConfigs: `Describe`, AlterConfigs: `Alter`) of
/// Kafka's `resource_type` (2 topic, 4 broker, 32 group), or `None` when allowed. Blocking.
pub(super) fn config_refusal(
    ctx: &KafkaContext,
    p: &Principal,
    op: Operation,
    resource_type: i8,
    name: &str,
) -> Option<(i16, String)> {
    use super::configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
    use super::group_configs::RESOURCE_GROUP;
    if !ctx.broker.security().enabled() {
        return None;
    }
    let (allowed, code) = match resource_type {
        RESOURCE_TOPIC => (check_topic(ctx, p, op, name), topic_denied()),
        RESOURCE_GROUP => (check(ctx, p, op, Resource::group(name)), group_denied()),
        RESOURCE_BROKER => (check(ctx, p, op, Resource::cluster()), cluster_denied()),
        // Refused by the handler as not served.
        _ => (true, 0),
    };
    (!allowed).then(|| (code, format!("{p} may not {op} this resource")))
}
