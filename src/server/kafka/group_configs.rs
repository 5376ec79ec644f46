//! Group configs as Kafka names them (resource type 32, Kafka 4.0+): the share-group settings
//! a group lists. Sluice's are the broker's own (`[kafka_share]`), the same for every group, so
//! DescribeConfigs lists them as static broker configs and an alter accepts a value only when
//! it is the one in force (Kafka's own tests and tools set `share.auto.offset.reset=earliest`,
//! which is what sluice does: a share group starts at each partition's log start).

use kafka_protocol::ResponseError;

use super::configs::{ConfigEntry, Refusal, TYPE_INT, TYPE_STRING};
use super::share::ShareConfig;

/// `resource_type` of a group.
pub(super) const RESOURCE_GROUP: i8 = 32;

/// Every config a group lists.
pub(super) fn group_configs(c: &ShareConfig) -> Vec<ConfigEntry> {
    let e = |name, value: String, config_type, doc| ConfigEntry {
        name,
        value,
        read_only: true,
        is_default: false,
        config_type,
        doc,
    };
    vec![
        e(
            "share.auto.offset.reset",
            "earliest".into(),
            TYPE_STRING,
            "Where a share group starts on a partition: its log start (sluice's only choice).",
        ),
        e(
            "share.record.lock.duration.ms",
            c.record_lock_ms.to_string(),
            TYPE_INT,
            "How long a member holds a record it acquired (the group's ack deadline).",
        ),
        e(
            "share.delivery.count.limit",
            c.delivery_count_limit.to_string(),
            TYPE_INT,
            "Deliveries of a record before it is dead-lettered.",
        ),
        e(
            "share.session.timeout.ms",
            c.session_timeout_ms.to_string(),
            TYPE_INT,
            "A member silent this long is removed and its records return.",
        ),
        e(
            "share.heartbeat.interval.ms",
            c.heartbeat_interval_ms.to_string(),
            TYPE_INT,
            "How often members heartbeat.",
        ),
        e(
            "share.isolation.level",
            "read_uncommitted".into(),
            TYPE_STRING,
            "Transactions are not served: every record is visible once durable.",
        ),
    ]
}

/// Alters group `name`'s configs: each must be set to the value in force, or deleted.
pub(super) fn alter_group(
    c: &ShareConfig,
    name: &str,
    configs: &[(String, Option<String>)],
) -> Result<(), Refusal> {
    let invalid = |m: String| (ResponseError::InvalidConfig.code(), m);
    if sluice_storage::store::validate_name(name).is_err() {
        let m = format!("group {name:?} is not a valid sluice name");
        return Err((ResponseError::InvalidGroupId.code(), m));
    }
    let now = group_configs(c);
    for (k, v) in configs {
        let Some(e) = now.iter().find(|e| e.name == k.as_str()) else {
            return Err(invalid(format!("unknown group config {k:?}")));
        };
        match v {
            None => {}
            Some(v) if *v == e.value => {}
            Some(v) => {
                return Err(invalid(format!(
                    "{k} is {} for every group on this broker (its [kafka_share] settings); \
                     it cannot be set to {v:?}",
                    e.value
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_values_in_force_are_accepted() {
        let c = ShareConfig::default();
        let set = |k: &str, v: Option<&str>| vec![(k.to_string(), v.map(str::to_string))];
        assert!(alter_group(&c, "g", &set("share.auto.offset.reset", Some("earliest"))).is_ok());
        assert!(alter_group(&c, "g", &set("share.auto.offset.reset", None)).is_ok());
        let e = alter_group(&c, "g", &set("share.auto.offset.reset", Some("latest"))).unwrap_err();
        assert_eq!(e.0, ResponseError::InvalidConfig.code());
        assert!(e.1.contains("earliest"), "{}", e.1);
        assert!(alter_group(
            &c,
            "g",
            &set("share.record.lock.duration.ms", Some("30000"))
        )
        .is_ok());
        assert!(alter_group(&c, "g", &set("nope", Some("1"))).is_err());
        assert!(alter_group(&c, "bad name", &[]).is_err());
    }
}
