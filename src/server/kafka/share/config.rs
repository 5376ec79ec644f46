//! The share-group coordinator's settings: Kafka's `group.share.*` broker settings under sluice
//! names, and the named bounds on what it holds in memory.

use serde::Deserialize;

/// Settings of Kafka share groups (the `[kafka_share]` table of the server configuration).
/// Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShareConfig {
    /// How often members heartbeat (`group.share.heartbeat.interval.ms`).
    pub heartbeat_interval_ms: u32,
    /// A member that neither heartbeats nor fetches for this long is removed and the records
    /// it holds return to the group (`group.share.session.timeout.ms`).
    pub session_timeout_ms: u32,
    /// Members one share group holds at most (`group.share.max.size`); over it a joining
    /// member gets GROUP_MAX_SIZE_REACHED.
    pub group_members_max: usize,
    /// Share groups with members held at most; a member that would make one more gets
    /// GROUP_MAX_SIZE_REACHED.
    pub groups_max: usize,
    /// Records one member holds at most per topic without acknowledging them (its window, as
    /// a native consumer's prefetch; at most `limits.unacked_per_consumer_max`).
    pub member_records_max: u32,
    /// Records one ShareFetch acquires when the request asks for none (`max_records` <= 0).
    pub fetch_records_default: u32,
    /// The acquisition lock of groups a share member creates: their ack deadline
    /// (`group.share.record.lock.duration.ms`). A group that exists keeps its own.
    pub record_lock_ms: u64,
    /// The delivery limit of groups a share member creates: their `max_deliveries`
    /// (`group.share.delivery.count.limit`), after which a record is dead-lettered.
    pub delivery_count_limit: u32,
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            heartbeat_interval_ms: 5_000,
            session_timeout_ms: 45_000,
            group_members_max: 200,
            groups_max: 10_000,
            member_records_max: 1_000,
            fetch_records_default: 500,
            record_lock_ms: 30_000,
            delivery_count_limit: 5,
        }
    }
}

impl ShareConfig {
    /// Checks every setting's range.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |name: &str, why: &str| Err(format!("kafka_share.{name}: {why}"));
        if self.heartbeat_interval_ms == 0 {
            return bad("heartbeat_interval_ms", "must be at least 1");
        }
        if self.session_timeout_ms <= self.heartbeat_interval_ms {
            return bad(
                "session_timeout_ms",
                "must be longer than heartbeat_interval_ms",
            );
        }
        if self.group_members_max == 0 || self.groups_max == 0 {
            return bad("group_members_max and groups_max", "must be at least 1");
        }
        if self.member_records_max == 0 || self.fetch_records_default == 0 {
            return bad(
                "member_records_max and fetch_records_default",
                "must be at least 1",
            );
        }
        if self.record_lock_ms == 0 || self.delivery_count_limit == 0 {
            return bad(
                "record_lock_ms and delivery_count_limit",
                "must be at least 1",
            );
        }
        Ok(())
    }
}
