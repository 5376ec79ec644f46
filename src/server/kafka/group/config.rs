//! The coordinator's settings and limits: Kafka's `group.*` broker settings under sluice names,
//! plus the named bounds on what one group and the coordinator hold in memory.

use serde::Deserialize;

/// Settings of the Kafka group coordinator (a `[kafka.groups]` table of the server
/// configuration, when the listener wires it in). Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    /// How long the first rebalance of an empty group waits for more members, extended by this
    /// much again while members keep arriving, up to the rebalance timeout
    /// (`group.initial.rebalance.delay.ms`; Kafka's default is 3000, ours is shorter so a
    /// single consumer starts quickly).
    pub initial_rebalance_delay_ms: u32,
    /// Smallest session timeout a member may ask for (`group.min.session.timeout.ms`).
    pub session_timeout_ms_min: i32,
    /// Largest session timeout a member may ask for (`group.max.session.timeout.ms`).
    pub session_timeout_ms_max: i32,
    /// How long a new member's first JoinGroup may stay parked before the member is dropped
    /// (Kafka's fixed 5 minutes): a client that disconnected while waiting cannot heartbeat.
    pub new_member_join_timeout_ms: u32,
    /// Members (including members between MEMBER_ID_REQUIRED and their second JoinGroup) one
    /// group holds at most (`group.max.size`; Kafka's default is unbounded). Over it a joining
    /// member gets GROUP_MAX_SIZE_REACHED.
    pub group_members_max: usize,
    /// Groups with members the coordinator holds at most; a JoinGroup that would create one
    /// more gets GROUP_MAX_SIZE_REACHED. Empty groups are not held in memory.
    pub groups_max: usize,
    /// Longest OffsetCommit metadata string, in bytes (`offset.metadata.max.bytes`); longer
    /// gets OFFSET_METADATA_TOO_LARGE. Matches sluice's stored metadata limit.
    pub offset_metadata_bytes_max: usize,
    /// Longest time the timer task sleeps between checks, in milliseconds (it also wakes when a
    /// sooner timer is set).
    pub timer_idle_ms_max: u32,
    /// Shortest time between two runs of the timer task, in milliseconds: timeouts fire up to
    /// this late, and a coordinator with many members does not scan them all at every deadline.
    pub timer_resolution_ms: u32,
}

/// Kafka's `group.min.session.timeout.ms` default.
pub const SESSION_TIMEOUT_MS_MIN_DEFAULT: i32 = 6_000;
/// Kafka's `group.max.session.timeout.ms` default (30 minutes).
pub const SESSION_TIMEOUT_MS_MAX_DEFAULT: i32 = 1_800_000;
/// Our `initial_rebalance_delay_ms` default.
pub const INITIAL_REBALANCE_DELAY_MS_DEFAULT: u32 = 300;
/// Kafka's new-member join timeout (5 minutes).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS_DEFAULT: u32 = 300_000;
/// Kafka's `offset.metadata.max.bytes` default, and sluice's stored metadata limit.
pub const OFFSET_METADATA_BYTES_MAX_DEFAULT: usize = 4096;

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: INITIAL_REBALANCE_DELAY_MS_DEFAULT,
            session_timeout_ms_min: SESSION_TIMEOUT_MS_MIN_DEFAULT,
            session_timeout_ms_max: SESSION_TIMEOUT_MS_MAX_DEFAULT,
            new_member_join_timeout_ms: NEW_MEMBER_JOIN_TIMEOUT_MS_DEFAULT,
            group_members_max: 1_000,
            groups_max: 10_000,
            offset_metadata_bytes_max: OFFSET_METADATA_BYTES_MAX_DEFAULT,
            timer_idle_ms_max: 1_000,
            timer_resolution_ms: 20,
        }
    }
}

/// A setting out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kafka group setting {name}: {reason}")]
pub struct GroupConfigError {
    /// The setting.
    pub name: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl GroupConfig {
    /// Checks the settings against each other and their bounds.
    pub fn validate(&self) -> Result<(), GroupConfigError> {
        let bad = |name, reason: String| Err(GroupConfigError { name, reason });
        if self.session_timeout_ms_min <= 0 {
            return bad("session_timeout_ms_min", "must be positive".into());
        }
        if self.session_timeout_ms_max < self.session_timeout_ms_min {
            return bad(
                "session_timeout_ms_max",
                format!(
                    "is below session_timeout_ms_min ({})",
                    self.session_timeout_ms_min
                ),
            );
        }
        if self.group_members_max == 0 {
            return bad("group_members_max", "must be at least 1".into());
        }
        if self.groups_max == 0 {
            return bad("groups_max", "must be at least 1".into());
        }
        if self.offset_metadata_bytes_max > OFFSET_METADATA_BYTES_MAX_DEFAULT {
            return bad(
                "offset_metadata_bytes_max",
                format!("sluice stores at most {OFFSET_METADATA_BYTES_MAX_DEFAULT} bytes"),
            );
        }
        if self.timer_resolution_ms == 0 || self.timer_resolution_ms > self.timer_idle_ms_max {
            return bad(
                "timer_resolution_ms",
                format!(
                    "must be 1 to timer_idle_ms_max ({})",
                    self.timer_idle_ms_max
                ),
            );
        }
        Ok(())
    }
}
