//! Per-log settings: segment size, index density, limits, retention, fsync and recovery policy.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When appended data is made durable with fdatasync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FsyncPolicy {
    /// Confirm an append only after fdatasync; concurrent appends share one (group commit).
    Always,
    /// Confirm at once; a background thread syncs every `ms` milliseconds.
    Interval(u64),
    /// Confirm at once; leave writeback to the page cache (a sealed segment is still synced).
    Never,
}

/// Longest duration a setting may name, in milliseconds: 100 years. Durations are added to
/// signed millisecond timestamps; a larger value (up to `u64::MAX`) would wrap negative and turn
/// "keep for ever" into "delete now". Settings that mean "for ever" take no value instead.
pub const DURATION_MS_MAX: u64 = 100 * 365 * 24 * 3600 * 1000;

/// A duration in milliseconds as a signed amount to add to a timestamp, saturating (values are
/// validated against [`DURATION_MS_MAX`] where they enter; this keeps arithmetic safe anyway).
pub fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Checks that a duration setting is within 1..=[`DURATION_MS_MAX`].
pub fn check_duration_ms(what: &str, ms: u64) -> Result<(), String> {
    if ms == 0 || ms > DURATION_MS_MAX {
        return Err(format!(
            "{what} must be between 1 and {DURATION_MS_MAX} ms (100 years), got {ms}"
        ));
    }
    Ok(())
}

impl FsyncPolicy {
    /// The interval of `Interval`, if this is one.
    pub fn interval(&self) -> Option<Duration> {
        match self {
            FsyncPolicy::Interval(ms) => Some(Duration::from_millis(*ms)),
            _ => None,
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => write!(f, "always"),
            FsyncPolicy::Interval(ms) => write!(f, "interval:{ms}"),
            FsyncPolicy::Never => write!(f, "never"),
        }
    }
}

impl FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 && ms <= DURATION_MS_MAX => Ok(FsyncPolicy::Interval(ms)),
                _ => Err(format!(
                    "invalid fsync policy {s:?}: use always, never or interval:<ms> \
                     (0 < ms <= {DURATION_MS_MAX})"
                )),
            },
        }
    }
}

impl TryFrom<String> for FsyncPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<FsyncPolicy> for String {
    fn from(p: FsyncPolicy) -> String {
        p.to_string()
    }
}

/// What recovery does with an invalid batch past the recovery point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryPolicy {
    /// Cut the log at the first invalid batch, fsync the cut and log what was dropped (default).
    /// Under `always` only unconfirmed data can be there, so nothing confirmed is lost.
    #[default]
    TruncateTail,
    /// Refuse to open the log; an operator inspects it and runs `sluice repair`.
    Refuse,
}

/// Settings of one log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A segment is sealed and a new one started when an append would grow it past this size.
    pub segment_bytes_max: u64,
    /// A segment is also sealed when it has been open this long (none: never by age).
    pub segment_ms_max: Option<u64>,
    /// One offset index entry per this many bytes of log.
    pub index_interval_bytes: u32,
    /// Largest batch accepted, in bytes.
    pub batch_bytes_max: u32,
    /// Delete the oldest sealed segments while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// Durability policy.
    pub fsync: FsyncPolicy,
    /// Policy for an invalid tail found by recovery.
    pub recovery: RecoveryPolicy,
    /// Rewrite the recovery point after this many synced bytes (it is also written at every roll
    /// and at close), which bounds how much an unclean restart rescans.
    pub recovery_point_interval_bytes: u64,
    /// Under `always`, write appends with O_DIRECT from the group-commit leader (one aligned
    /// write and one fdatasync per group). Falls back to buffered writes where the file system
    /// refuses O_DIRECT. See docs/benchmarks.md for why this is the default.
    pub direct_io: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 128 << 20,
            segment_ms_max: None,
            index_interval_bytes: 4096,
            batch_bytes_max: 8 << 20,
            retention_bytes: None,
            retention_ms: None,
            fsync: FsyncPolicy::Always,
            recovery: RecoveryPolicy::TruncateTail,
            recovery_point_interval_bytes: 64 << 20,
            direct_io: true,
        }
    }
}

impl LogConfig {
    /// Checks the settings against the format's limits.
    pub fn validate(&self) -> Result<(), String> {
        let min = crate::format::FILE_HEADER_LEN as u64 + crate::format::BATCH_HEADER_LEN as u64;
        if self.segment_bytes_max < min || self.segment_bytes_max > u32::MAX as u64 {
            return Err(format!(
                "segment_bytes_max must be between {min} and {} (positions are 32-bit)",
                u32::MAX
            ));
        }
        if (self.batch_bytes_max as usize) < crate::format::BATCH_HEADER_LEN + 5 {
            return Err("batch_bytes_max is too small to hold one record".into());
        }
        if self.index_interval_bytes == 0 {
            return Err("index_interval_bytes must be above 0".into());
        }
        if let Some(ms) = self.segment_ms_max {
            check_duration_ms("segment_ms_max", ms)?;
        }
        if let Some(ms) = self.retention_ms {
            check_duration_ms("retention_ms", ms)?;
        }
        if let FsyncPolicy::Interval(ms) = self.fsync {
            check_duration_ms("the fsync interval", ms)?;
        }
        if self.recovery_point_interval_bytes == 0 {
            return Err("recovery_point_interval_bytes must be above 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses() {
        assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
        assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
        assert_eq!("interval:250".parse(), Ok(FsyncPolicy::Interval(250)));
        assert!("interval:0".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        assert_eq!(FsyncPolicy::Interval(5).to_string(), "interval:5");
        assert!(format!("interval:{}", u64::MAX)
            .parse::<FsyncPolicy>()
            .is_err());
        assert!(format!("interval:{}", DURATION_MS_MAX + 1)
            .parse::<FsyncPolicy>()
            .is_err());
    }

    #[test]
    fn durations_past_the_signed_range_are_refused() {
        for ms in [0, DURATION_MS_MAX + 1, 1 << 63, u64::MAX] {
            let c = LogConfig {
                retention_ms: Some(ms),
                ..LogConfig::default()
            };
            assert!(c.validate().is_err(), "retention_ms {ms}");
            let c = LogConfig {
                segment_ms_max: Some(ms),
                ..LogConfig::default()
            };
            assert!(c.validate().is_err(), "segment_ms_max {ms}");
            let c = LogConfig {
                fsync: FsyncPolicy::Interval(ms),
                ..LogConfig::default()
            };
            assert!(c.validate().is_err(), "interval {ms}");
        }
        let c = LogConfig {
            retention_ms: Some(DURATION_MS_MAX),
            segment_ms_max: Some(1),
            ..LogConfig::default()
        };
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(ms_i64(u64::MAX), i64::MAX);
    }
}
