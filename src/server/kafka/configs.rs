//! Topic configs as Kafka names them: the table of configs a topic lists (`topic_configs`),
//! the parsing of configs given at creation (`settings_from_configs`), and DescribeConfigs,
//! AlterConfigs and IncrementalAlterConfigs.
//!
//! | Kafka config        | sluice setting                | alterable |
//! |---------------------|-------------------------------|-----------|
//! | `retention.ms`      | `retention_ms` (-1: none)     | yes       |
//! | `retention.bytes`   | `retention_bytes` (-1: none)  | yes       |
//! | `segment.bytes`     | `segment_bytes_max`           | at creation only |
//! | `max.message.bytes` | `batch_bytes_max` (server's)  | no        |
//! | `cleanup.policy`    | `delete` (no compaction)      | no        |
//! | `message.timestamp.type` | `CreateTime`             | no        |
//!
//! Group configs (resource type 32) are in `group_configs`.
//!
//! DescribeConfigs lists every one with its source (the topic's own value or the default), so
//! an admin's read-modify-write round trip works: AlterConfigs accepts the non-alterable ones
//! back unchanged.

use crate::broker::spawn_blocking;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_storage::LogConfig;

use super::authz;
use super::codec::Header;
use super::connection::{Conn, Slot};
use super::dispatch::respond;
use super::group_configs::{alter_group, group_configs, RESOURCE_GROUP};
use super::share::ShareConfig;
use super::{error_code, KafkaContext, NODE_ID};
use crate::broker::{Broker, LogSettings};
use crate::security::Operation;

/// `resource_type` of a topic.
pub(super) const RESOURCE_TOPIC: i8 = 2;
/// `resource_type` of a broker.
pub(super) const RESOURCE_BROKER: i8 = 4;
/// `config_source`: set on the topic.
const SOURCE_TOPIC: i8 = 1;
/// `config_source`: the broker's static configuration.
const SOURCE_STATIC_BROKER: i8 = 4;
/// `config_source`: the default.
const SOURCE_DEFAULT: i8 = 5;
/// `config_type` values.
pub(super) const TYPE_STRING: i8 = 2;
pub(super) const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// One config as DescribeConfigs lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ConfigEntry {
    pub(super) name: &'static str,
    pub(super) value: String,
    /// Not alterable (AlterConfigs accepts it only unchanged).
    pub(super) read_only: bool,
    /// The topic's value is the default one.
    pub(super) is_default: bool,
    pub(super) config_type: i8,
    pub(super) doc: &'static str,
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-1".into(), |v| v.to_string())
}

/// Every config a topic with settings `c` lists, the server's defaults being `d`.
pub(super) fn topic_configs(c: &LogConfig, d: &LogConfig) -> Vec<ConfigEntry> {
    let e = |name, value: String, default: String, read_only, config_type, doc| ConfigEntry {
        name,
        is_default: value == default,
        value,
        read_only,
        config_type,
        doc,
    };
    vec![
        e(
            "retention.ms",
            opt(c.retention_ms),
            opt(d.retention_ms),
            false,
            TYPE_LONG,
            "Whole segments whose newest record is older than this are deleted (-1: never).",
        ),
        e(
            "retention.bytes",
            opt(c.retention_bytes),
            opt(d.retention_bytes),
            false,
            TYPE_LONG,
            "The oldest whole segments are deleted while the partition is larger (-1: never).",
        ),
        e(
            "segment.bytes",
            c.segment_bytes_max.to_string(),
            d.segment_bytes_max.to_string(),
            true,
            TYPE_INT,
            "Segment size; set at creation only.",
        ),
        e(
            "max.message.bytes",
            c.batch_bytes_max.to_string(),
            d.batch_bytes_max.to_string(),
            true,
            TYPE_INT,
            "Largest record batch accepted (the server's batch_bytes_max).",
        ),
        e(
            "cleanup.policy",
            "delete".into(),
            "delete".into(),
            true,
            TYPE_LIST,
            "Old segments are deleted; compaction is not supported.",
        ),
        e(
            "message.timestamp.type",
            "CreateTime".into(),
            "CreateTime".into(),
            true,
            TYPE_STRING,
            "Records keep the producer's timestamps.",
        ),
    ]
}

/// Why a config is refused: the error code and the message.
pub(super) type Refusal = (i16, String);

fn invalid_config(m: String) -> Refusal {
    (ResponseError::InvalidConfig.code(), m)
}

/// A `-1`-or-positive long config.
fn parse_limit(name: &str, value: Option<&str>) -> Result<Option<u64>, Refusal> {
    let v = value.ok_or_else(|| invalid_config(format!("{name} needs a value")))?;
    match v.trim().parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(n) if n >= 0 => Ok(Some(n as u64)),
        _ => Err(invalid_config(format!(
            "{name} must be -1 or a count, not {v:?}"
        ))),
    }
}

/// Applies one `name = value` to `s`, or says why not. `current` is what the topic lists now
/// (a non-alterable config is accepted when unchanged); `None` at creation, when `segment.bytes`
/// may be set too.
fn apply(
    s: &mut LogSettings,
    name: &str,
    value: Option<&str>,
    current: Option<&[ConfigEntry]>,
) -> Result<(), Refusal> {
    match name {
        "retention.ms" => s.retention_ms = parse_limit(name, value)?,
        "retention.bytes" => s.retention_bytes = parse_limit(name, value)?,
        "segment.bytes" if current.is_none() => {
            s.segment_bytes_max =
                Some(parse_limit(name, value)?.ok_or_else(|| {
                    invalid_config("segment.bytes must be a size in bytes".into())
                })?)
        }
        _ => {
            let now = match current {
                Some(c) => c.iter().find(|e| e.name == name).map(|e| e.value.clone()),
                None => match name {
                    "cleanup.policy" => Some("delete".into()),
                    "message.timestamp.type" => Some("CreateTime".into()),
                    _ => None,
                },
            };
            match now {
                Some(now) if value == Some(now.as_str()) => {}
                Some(now) => {
                    return Err(invalid_config(format!(
                        "{name} cannot be changed here (it is {now})"
                    )))
                }
                None => return Err(invalid_config(format!("unknown topic config {name:?}"))),
            }
        }
    }
    Ok(())
}

/// The settings of a new topic from the configs of a CreateTopics request; `defaults` are the
/// server's. A new topic's settings can only add limits to the defaults: `-1` (no limit) where
/// the defaults have one is refused (alter the topic after creating it instead).
pub(super) fn settings_from_configs<'a>(
    configs: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    defaults: &LogConfig,
) -> Result<LogSettings, Refusal> {
    let mut s = LogSettings::default();
    for (name, value) in configs {
        apply(&mut s, name, value, None)?;
        let unlimited = match name {
            "retention.ms" => s.retention_ms.is_none() && defaults.retention_ms.is_some(),
            "retention.bytes" => s.retention_bytes.is_none() && defaults.retention_bytes.is_some(),
            _ => false,
        };
        if unlimited {
            return Err(invalid_config(format!(
                "{name} = -1 at creation cannot lift the server's default limit; \
                 create the topic, then alter {name}"
            )));
        }
    }
    Ok(s)
}

/// DescribeConfigs' entry of one config.
fn describe_entry(
    e: &ConfigEntry,
    version: i16,
    docs: bool,
    broker: bool,
) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default();
    r.name = StrBytes::from_static_str(e.name);
    r.value = Some(StrBytes::from_string(e.value.clone()));
    r.read_only = e.read_only || broker;
    r.config_source = match (broker, e.is_default) {
        (true, _) => SOURCE_STATIC_BROKER,
        (false, true) => SOURCE_DEFAULT,
        (false, false) => SOURCE_TOPIC,
    };
    if version >= 3 {
        r.config_type = e.config_type;
        if docs {
            r.documentation = Some(StrBytes::from_static_str(e.doc));
        }
    }
    r
}

/// One resource of a DescribeConfigs request. Blocking.
fn describe_one(
    broker: &Broker,
    share: &ShareConfig,
    version: i16,
    docs: bool,
    res: kafka_protocol::messages::describe_configs_request::DescribeConfigsResource,
) -> DescribeConfigsResult {
    let mut out = DescribeConfigsResult::default();
    out.resource_type = res.resource_type;
    out.resource_name = res.resource_name.clone();
    let name = res.resource_name.as_str();
    let (entries, is_broker) = match res.resource_type {
        RESOURCE_TOPIC => match broker.topic_config(name) {
            Ok(c) => (topic_configs(&c, broker.default_log_config()), false),
            Err(e) => {
                out.error_code = error_code(&e);
                out.error_message = Some(StrBytes::from_string(e.message));
                return out;
            }
        },
        RESOURCE_BROKER if name.is_empty() || name == NODE_ID.to_string() => {
            let d = broker.default_log_config();
            (topic_configs(d, d), true)
        }
        RESOURCE_GROUP if sluice_storage::store::validate_name(name).is_ok() => {
            (group_configs(share), true)
        }
        t => {
            out.error_code = ResponseError::InvalidRequest.code();
            let m = format!("resource type {t} {name:?} is not served (topics (2), broker {NODE_ID} (4) and groups (32) are)");
            out.error_message = Some(StrBytes::from_string(m));
            return out;
        }
    };
    // No keys (null, or an empty list, as Kafka reads it): every config.
    let wanted = |n: &str| match &res.configuration_keys {
        Some(keys) if !keys.is_empty() => keys.iter().any(|k| k.as_str() == n),
        _ => true,
    };
    out.configs = entries
        .iter()
        .filter(|e| wanted(e.name))
        .map(|e| describe_entry(e, version, docs, is_broker))
        .collect();
    out
}

impl Conn {
    pub(super) fn describe_configs(&self, tx: Slot, h: Header, req: DescribeConfigsRequest) {
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        spawn_blocking(move || {
            let mut resp = DescribeConfigsResponse::default();
            let docs = req.include_documentation;
            let share = ctx.shares.config();
            resp.results = req
                .resources
                .into_iter()
                .map(|r| {
                    let (t, name) = (r.resource_type, r.resource_name.as_str());
                    match authz::config_refusal(&ctx, &p, Operation::Describe, t, name) {
                        None => describe_one(&ctx.broker, share, h.api_version, docs, r),
                        Some((code, m)) => {
                            let mut out = DescribeConfigsResult::default();
                            out.resource_type = r.resource_type;
                            out.resource_name = r.resource_name;
                            out.error_code = code;
                            out.error_message = Some(StrBytes::from_string(m));
                            out
                        }
                    }
                })
                .collect();
            respond(ctx.broker.metrics(), tx, &h, &resp);
        });
    }

    pub(super) fn alter_configs(&self, tx: Slot, h: Header, req: AlterConfigsRequest) {
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        spawn_blocking(move || {
            let mut resp = AlterConfigsResponse::default();
            for r in req.resources {
                let configs: Vec<(String, Option<String>)> = r
                    .configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                    .collect();
                // The whole set: what is not named returns to its default.
                let (t, name) = (r.resource_type, r.resource_name.as_str());
                let outcome = match authz::config_refusal(&ctx, &p, Operation::Alter, t, name) {
                    Some(refusal) => Err(refusal),
                    None => alter(&ctx, t, name, true, configs, req.validate_only),
                };
                let mut out = kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse::default();
                out.resource_type = r.resource_type;
                out.resource_name = r.resource_name;
                if let Err((code, m)) = outcome {
                    out.error_code = code;
                    out.error_message = Some(StrBytes::from_string(m));
                }
                resp.responses.push(out);
            }
            respond(ctx.broker.metrics(), tx, &h, &resp);
        });
    }

    pub(super) fn incremental_alter_configs(
        &self,
        tx: Slot,
        h: Header,
        req: IncrementalAlterConfigsRequest,
    ) {
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        spawn_blocking(move || {
            let mut resp = IncrementalAlterConfigsResponse::default();
            for r in req.resources {
                let configs: Result<Vec<(String, Option<String>)>, Refusal> = r
                    .configs
                    .iter()
                    .map(|c| match c.config_operation {
                        // SET
                        0 => Ok((c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))),
                        // DELETE: back to the default.
                        1 => Ok((c.name.to_string(), None)),
                        op => Err(invalid_config(format!(
                            "operation {op} on {} is not supported (SET and DELETE are)",
                            c.name.as_str()
                        ))),
                    })
                    .collect();
                let (t, name) = (r.resource_type, r.resource_name.as_str());
                let refusal = authz::config_refusal(&ctx, &p, Operation::Alter, t, name);
                let outcome = configs.and_then(|configs| {
                    if let Some(refusal) = refusal {
                        return Err(refusal);
                    }
                    alter(
                        &ctx,
                        r.resource_type,
                        r.resource_name.as_str(),
                        false,
                        configs,
                        req.validate_only,
                    )
                });
                let mut out = kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default();
                out.resource_type = r.resource_type;
                out.resource_name = r.resource_name;
                if let Err((code, m)) = outcome {
                    out.error_code = code;
                    out.error_message = Some(StrBytes::from_string(m));
                }
                resp.responses.push(out);
            }
            respond(ctx.broker.metrics(), tx, &h, &resp);
        });
    }
}

/// Kafka's replication throttles, of brokers and of topics, which sluice does not apply.
const THROTTLE_CONFIGS: [&str; 5] = [
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
    "leader.replication.throttled.replicas",
    "follower.replication.throttled.replicas",
];

/// Alters one resource. `whole_set`: configs not named return to their defaults (AlterConfigs);
/// otherwise they keep their values, and a `None` value means "back to the default"
/// (IncrementalAlterConfigs' DELETE). Blocking.
fn alter(
    ctx: &KafkaContext,
    resource_type: i8,
    name: &str,
    whole_set: bool,
    configs: Vec<(String, Option<String>)>,
    validate_only: bool,
) -> Result<(), Refusal> {
    if resource_type == RESOURCE_GROUP {
        return alter_group(ctx.shares.config(), name, &configs);
    }
    // Clearing replication throttles (`kafka-reassign-partitions` does after a reassignment
    // or a cancel): sluice sets none, so there is nothing to clear. Setting one is refused
    // below, as any config sluice does not have.
    let configs: Vec<(String, Option<String>)> = configs
        .into_iter()
        .filter(|(k, v)| !(v.is_none() && THROTTLE_CONFIGS.contains(&k.as_str())))
        .collect();
    if configs.is_empty() && resource_type == RESOURCE_BROKER {
        return Ok(());
    }
    if configs.is_empty() && resource_type == RESOURCE_TOPIC {
        // Nothing to clear, of a topic that must still exist.
        let fail = |e: crate::broker::BrokerError| (error_code(&e), e.message);
        return ctx.broker.topic_config(name).map(|_| ()).map_err(fail);
    }
    if resource_type != RESOURCE_TOPIC {
        let m = format!("only topic (type {RESOURCE_TOPIC}) and group (type {RESOURCE_GROUP}) configs can be altered, not type {resource_type}");
        return Err((ResponseError::InvalidRequest.code(), m));
    }
    let broker = &ctx.broker;
    let fail = |e: crate::broker::BrokerError| (error_code(&e), e.message);
    let current_cfg = broker.topic_config(name).map_err(fail)?;
    let defaults = broker.default_log_config();
    let current = topic_configs(&current_cfg, defaults);
    let mut s = if whole_set {
        LogSettings {
            retention_ms: defaults.retention_ms,
            retention_bytes: defaults.retention_bytes,
            segment_bytes_max: None,
            replicas: None,
        }
    } else {
        LogSettings {
            retention_ms: current_cfg.retention_ms,
            retention_bytes: current_cfg.retention_bytes,
            segment_bytes_max: None,
            replicas: None,
        }
    };
    for (k, v) in &configs {
        match (k.as_str(), v) {
            ("retention.ms", None) if !whole_set => s.retention_ms = defaults.retention_ms,
            ("retention.bytes", None) if !whole_set => s.retention_bytes = defaults.retention_bytes,
            _ => apply(&mut s, k, v.as_deref(), Some(&current))?,
        }
    }
    broker
        .set_topic_retention(name, s.retention_ms, s.retention_bytes, validate_only)
        .map_err(fail)
}
