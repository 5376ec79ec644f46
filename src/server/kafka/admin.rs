//! CreateTopics and DeleteTopics. A topic is created with its partitions (`num_partitions`, or
//! `kafka_default_partitions` for -1; at most 1024) and its replicas (one, node 0, on a single
//! server; `replication_factor` placed by the cluster, or `assignments` by hand, on a
//! cluster), with `retention.ms`, `retention.bytes` and `segment.bytes` from its configs (see
//! `configs`); `validate_only` checks everything and creates nothing.
//! DeleteTopics by name, and from version 6 by id (UNKNOWN_TOPIC_ID for an id no topic has).

use crate::broker::spawn_blocking;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::authz;
use super::codec::Header;
use super::configs::{settings_from_configs, topic_configs};
use super::connection::{Conn, Slot};
use super::dispatch::respond;
use super::metadata::topic_uuid;
use super::{error_code, valid_topic_name, KafkaContext};
use crate::broker::ErrorKind;
use crate::protocol::LogSettings;
use crate::security::{Operation, Principal, Resource};

/// What a CreateTopics entry asks for: its partition count, replication factor (`None`: the
/// default) and replicas assigned by hand, if any.
struct Creatable {
    partitions: u32,
    factor: Option<u32>,
    assigned: Option<Vec<Vec<u64>>>,
}

/// The replicas a CreateTopics entry assigns by hand (`assignments`), one list per partition
/// in partition order, or why they cannot be served: `num_partitions` and
/// `replication_factor` must then be -1 (INVALID_REQUEST, as with Kafka), the partitions
/// 0 to n-1, and the nodes distinct nodes of the cluster, as many for each partition
/// (INVALID_REPLICA_ASSIGNMENT). A single server takes only node 0, which holds every
/// partition.
fn assigned_by_hand(ctx: &KafkaContext, t: &CreatableTopic) -> Result<Creatable, (i16, String)> {
    let bad = |m: String| Err((ResponseError::InvalidReplicaAssignment.code(), m));
    if t.num_partitions != -1 || t.replication_factor != -1 {
        let m = "replica assignments are given with num_partitions and replication_factor -1"
            .to_string();
        return Err((ResponseError::InvalidRequest.code(), m));
    }
    let mut by_partition: Vec<(i32, Vec<u64>)> = Vec::with_capacity(t.assignments.len());
    for a in &t.assignments {
        let Ok(ids) = a.broker_ids.iter().map(|b| u64::try_from(b.0)).collect() else {
            return bad(format!(
                "partition {}: a negative node id",
                a.partition_index
            ));
        };
        by_partition.push((a.partition_index, ids));
    }
    by_partition.sort_by_key(|(p, _)| *p);
    if by_partition
        .iter()
        .enumerate()
        .any(|(i, (p, _))| *p != i as i32)
    {
        return bad("the partitions assigned must be 0 to n-1, each once".to_string());
    }
    let lists: Vec<Vec<u64>> = by_partition.into_iter().map(|(_, ids)| ids).collect();
    let partitions = lists.len() as u32;
    let Some(c) = ctx.broker.cluster() else {
        if lists
            .iter()
            .any(|l| l.as_slice() != [super::NODE_ID as u64])
        {
            return bad("node 0 holds every partition of a single server".to_string());
        }
        return Ok(Creatable {
            partitions,
            factor: None,
            assigned: None,
        });
    };
    match c.check_assignment(lists, None) {
        Ok(lists) => Ok(Creatable {
            partitions,
            factor: Some(lists[0].len() as u32),
            assigned: Some(lists),
        }),
        Err(e) => bad(e.message),
    }
}

/// The partition count and replication factor (`None`: the default) a CreateTopics entry
/// asks for, or why it cannot be served here.
fn check_creatable(ctx: &KafkaContext, t: &CreatableTopic) -> Result<Creatable, (i16, String)> {
    if !t.assignments.is_empty() {
        return assigned_by_hand(ctx, t);
    }
    let partitions = match t.num_partitions {
        -1 => ctx.default_partitions,
        n if n > 0 => n as u32,
        n => {
            let m = format!("num_partitions {n}");
            return Err((ResponseError::InvalidPartitions.code(), m));
        }
    };
    let nodes = ctx.broker.cluster().map_or(1, |c| c.nodes().len() as i16);
    let factor = match t.replication_factor {
        -1 => None,
        r if (1..=nodes).contains(&r) => Some(r as u32),
        r => {
            let m = format!(
                "replication factor {r} on a cluster of {nodes} node(s) (1 to {nodes}, or -1)"
            );
            return Err((ResponseError::InvalidReplicationFactor.code(), m));
        }
    };
    // A single server has one replica, whatever was asked.
    Ok(Creatable {
        partitions,
        factor: factor.filter(|_| ctx.broker.cluster().is_some()),
        assigned: None,
    })
}

/// Creates (or checks) one topic; its result.
fn create_one(
    ctx: &KafkaContext,
    version: i16,
    t: CreatableTopic,
    validate_only: bool,
    p: &Principal,
) -> CreatableTopicResult {
    let name = t.name.0.to_string();
    let mut r = CreatableTopicResult::default();
    r.name = t.name.clone();
    let refuse = |mut r: CreatableTopicResult, code: i16, m: String| {
        r.error_code = code;
        r.error_message = Some(StrBytes::from_string(m));
        r
    };
    if !valid_topic_name(&name) {
        let m = format!("{name:?} is not a valid topic name (1 to 200 of [A-Za-z0-9._-])");
        return refuse(r, ResponseError::InvalidTopicException.code(), m);
    }
    if !authz::check(ctx, p, Operation::Create, Resource::topic(&name)) {
        let m = format!("{p} may not create topic {name}");
        return refuse(r, authz::topic_denied(), m);
    }
    let Creatable {
        partitions,
        factor,
        assigned,
    } = match check_creatable(ctx, &t) {
        Ok(c) => c,
        Err((code, m)) => return refuse(r, code, m),
    };
    let broker = &ctx.broker;
    let configs = t
        .configs
        .iter()
        .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str())));
    let settings = match settings_from_configs(configs, broker.default_log_config()) {
        Ok(s) => LogSettings {
            replicas: factor,
            ..s
        },
        Err((code, m)) => return refuse(r, code, m),
    };
    let asked = (partitions, assigned);
    if let Err(e) = broker.create_partitioned_topic(&name, asked, &settings, validate_only) {
        let code = match e.kind {
            ErrorKind::InvalidArgument
                if sluice_storage::store::check_partitions(partitions).is_err() =>
            {
                ResponseError::InvalidPartitions.code()
            }
            ErrorKind::InvalidArgument => ResponseError::InvalidConfig.code(),
            _ => error_code(&e),
        };
        return refuse(r, code, e.message);
    }
    r.num_partitions = partitions as i32;
    r.replication_factor = match broker.cluster() {
        Some(c) => c.replication_factor(factor).map_or(-1, |f| f as i16),
        None => 1,
    };
    if version >= 5 {
        // The topic's configs as created (as they would be, for validate_only).
        let cfg = match validate_only {
            true => broker.log_config(&settings).ok(),
            false => broker.topic_config(&name).ok(),
        };
        r.configs = cfg.map(|c| {
            topic_configs(&c, broker.default_log_config())
                .into_iter()
                .map(|e| {
                    let mut x = CreatableTopicConfigs::default();
                    x.name = StrBytes::from_static_str(e.name);
                    x.value = Some(StrBytes::from_string(e.value));
                    x.read_only = e.read_only;
                    x.config_source = if e.is_default { 5 } else { 1 };
                    x
                })
                .collect()
        });
        if version >= 7 && !validate_only {
            r.topic_id = topic_uuid(ctx, &name);
        }
    }
    r
}

/// Deletes one topic, by name or by id; its result.
fn delete_one(
    ctx: &KafkaContext,
    name: Option<TopicName>,
    id: Uuid,
    p: &Principal,
) -> DeletableTopicResult {
    let mut r = DeletableTopicResult::default();
    r.topic_id = id;
    let name = match name {
        Some(n) => n.0.to_string(),
        None => match ctx.broker.topic_by_id(*id.as_bytes()) {
            Some(n) => n,
            None => {
                r.name = None;
                r.error_code = ResponseError::UnknownTopicId.code();
                r.error_message = Some(StrBytes::from_static_str("no topic has this id"));
                return r;
            }
        },
    };
    r.name = Some(TopicName(StrBytes::from_string(name.clone())));
    if !authz::check_topic(ctx, p, Operation::Delete, &name) {
        r.error_code = authz::topic_denied();
        r.error_message = Some(StrBytes::from_string(format!("{p} may not delete {name}")));
        return r;
    }
    if let Err(e) = ctx.broker.delete_topic(&name) {
        r.error_code = error_code(&e);
        r.error_message = Some(StrBytes::from_string(e.message));
    }
    r
}

impl Conn {
    pub(super) fn create_topics(&self, tx: Slot, h: Header, req: CreateTopicsRequest) {
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        spawn_blocking(move || {
            let mut resp = CreateTopicsResponse::default();
            resp.topics = req
                .topics
                .into_iter()
                .map(|t| create_one(&ctx, h.api_version, t, req.validate_only, &p))
                .collect();
            respond(ctx.broker.metrics(), tx, &h, &resp);
        });
    }

    pub(super) fn delete_topics(&self, tx: Slot, h: Header, req: DeleteTopicsRequest) {
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        spawn_blocking(move || {
            let mut resp = DeleteTopicsResponse::default();
            resp.responses = if h.api_version >= 6 {
                req.topics
                    .into_iter()
                    .map(|t| delete_one(&ctx, t.name, t.topic_id, &p))
                    .collect()
            } else {
                req.topic_names
                    .into_iter()
                    .map(|n| delete_one(&ctx, Some(n), Uuid::nil(), &p))
                    .collect()
            };
            respond(ctx.broker.metrics(), tx, &h, &resp);
        });
    }
}
