//! Metadata: the brokers (this one as node 0, or a cluster's nodes, see `cluster`), and the
//! topics asked for (all of them when the request names none), each partition with its leader. Unknown topics named in the
//! request are created with the server's defaults when `kafka_auto_create_topics` is on and the
//! client allows it. Sluice's queues are listed too, as topics of one partition (a topic shadows
//! a queue of its name).

use crate::broker::spawn_blocking;
use kafka_protocol::messages::metadata_response::{
    MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::authz;
use super::codec::Header;
use super::connection::{Conn, Slot};
use super::dispatch::respond;
use super::{cluster, error_code, valid_topic_name, KafkaContext, LEADER_EPOCH};
use crate::broker::{ErrorKind, LogSettings};
use crate::security::{Operation, Principal, Resource};

/// The value of `*_authorized_operations` when the client did not ask for them.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

impl Conn {
    pub(super) fn metadata(&self, tx: Slot, h: Header, req: MetadataRequest) {
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        spawn_blocking(move || {
            let body = metadata(&ctx, h.api_version, req, &p);
            respond(ctx.broker.metrics(), tx, &h, &body);
        });
    }
}

/// A topic's entry; the topic's partitions when `error` is 0.
pub(super) fn topic_entry(ctx: &KafkaContext, name: &str, error: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(name.to_owned())));
    t.error_code = error;
    if error != 0 {
        return t;
    }
    t.topic_id = topic_uuid(ctx, name);
    let count = match ctx.broker.partition_count(name) {
        Ok(n) => n,
        Err(e) => {
            t.error_code = error_code(&e);
            return t;
        }
    };
    t.partitions = (0..count)
        .map(|p| {
            let l = cluster::partition_leader(ctx, name, p);
            let mut m = MetadataResponsePartition::default();
            m.partition_index = p as i32;
            m.error_code = l.error;
            m.leader_id = BrokerId(l.leader);
            m.leader_epoch = LEADER_EPOCH;
            m.replica_nodes = l.replicas.into_iter().map(BrokerId).collect();
            m.isr_nodes = l.isr.into_iter().map(BrokerId).collect();
            m
        })
        .collect();
    t
}

/// A topic's id as Kafka writes it (the nil UUID for a topic that is gone).
pub(super) fn topic_uuid(ctx: &KafkaContext, name: &str) -> Uuid {
    ctx.broker
        .topic_id_bytes(name)
        .map(Uuid::from_bytes)
        .unwrap_or(Uuid::nil())
}

/// Looks a requested topic up, creating it when allowed (and `p` may create it); its entry
/// (TOPIC_AUTHORIZATION_FAILED when `p` may not describe it).
fn requested(
    ctx: &KafkaContext,
    name: &str,
    may_create: bool,
    p: &Principal,
) -> MetadataResponseTopic {
    if !valid_topic_name(name) {
        return topic_entry(ctx, name, ResponseError::InvalidTopicException.code());
    }
    if !authz::check_topic(ctx, p, Operation::Describe, name) {
        return topic_entry(ctx, name, authz::topic_denied());
    }
    match ctx.broker.partition_count(name) {
        Ok(_) => topic_entry(ctx, name, 0),
        Err(e) if e.kind == ErrorKind::NotFound && may_create => {
            if !authz::check(ctx, p, Operation::Create, Resource::topic(name)) {
                return topic_entry(ctx, name, authz::topic_denied());
            }
            match ctx
                .broker
                .create_topic(name, &LogSettings::default(), ctx.default_partitions)
            {
                // Another client's request may have created it meanwhile.
                Ok(()) => topic_entry(ctx, name, 0),
                Err(e) if e.kind == ErrorKind::AlreadyExists => topic_entry(ctx, name, 0),
                Err(e) => topic_entry(ctx, name, error_code(&e)),
            }
        }
        Err(e) => topic_entry(ctx, name, error_code(&e)),
    }
}

/// The whole response. Blocking (it may create topics).
fn metadata(
    ctx: &KafkaContext,
    version: i16,
    req: MetadataRequest,
    p: &Principal,
) -> MetadataResponse {
    // v0: an empty list means every topic; v1+: null means every topic. Versions 0-3 always
    // allow creation.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let may_create = ctx.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let topics = if all {
        let names = ctx.broker.list_named_logs();
        // Topics `p` may not describe are left out, as Kafka leaves them out.
        names
            .iter()
            .filter(|n| authz::visible_topic(ctx, p, n))
            .map(|n| topic_entry(ctx, n, 0))
            .collect()
    } else {
        req.topics
            .unwrap_or_default()
            .into_iter()
            // A topic with an id is asked for by that id whatever its name: Kafka's Java
            // client sends the name "" beside the id (KafkaApis, too, looks ids up first).
            .map(|t| match t.name {
                Some(name) if t.topic_id.is_nil() => requested(ctx, name.0.as_str(), may_create, p),
                _ => by_id(ctx, t.topic_id, p),
            })
            .collect()
    };
    let mut resp = MetadataResponse::default();
    resp.brokers = cluster::brokers(ctx);
    resp.cluster_id = Some(StrBytes::from_string(ctx.cluster_id.clone()));
    resp.controller_id = BrokerId(cluster::controller(ctx));
    resp.topics = topics;
    if (8..=10).contains(&version) {
        resp.cluster_authorized_operations = OPERATIONS_NOT_REQUESTED;
    }
    resp
}

/// A topic asked for by id (v10+); UNKNOWN_TOPIC_ID, with a null name, for an id no topic has.
fn by_id(ctx: &KafkaContext, id: Uuid, p: &Principal) -> MetadataResponseTopic {
    let found = ctx.broker.topic_by_id(*id.as_bytes());
    let denied = found
        .as_deref()
        .is_some_and(|n| !authz::check_topic(ctx, p, Operation::Describe, n));
    match found {
        Some(name) if !denied => topic_entry(ctx, &name, 0),
        found => {
            let code = match found {
                Some(_) => authz::topic_denied(),
                None => ResponseError::UnknownTopicId.code(),
            };
            let mut t = MetadataResponseTopic::default();
            t.name = None;
            t.topic_id = id;
            t.error_code = code;
            t
        }
    }
}
