//! The segment map of a topic partition or a queue, for the console: each segment's offsets,
//! size and time range, and what will reclaim it next (time or size retention, or for a queue
//! its messages all acknowledged). Blocking.

use serde::Serialize;
use sluice_storage::{Log, Offset};

use super::{Broker, Result};

/// Why a segment goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reclaim {
    /// Older than `retention_ms`: removed at the next retention pass, or at `reclaim_at_ms`.
    RetentionMs,
    /// The log is over `retention_bytes` by at least this segment.
    RetentionBytes,
    /// Every message of it is acknowledged (queues).
    Acked,
}

/// One segment as the map shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentView {
    /// Its first offset.
    pub base_offset: u64,
    /// One past its last offset.
    pub next_offset: u64,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Its first message's timestamp, when it has one.
    pub first_timestamp_ms: Option<i64>,
    /// Its largest message timestamp, when it has messages.
    pub max_timestamp_ms: Option<i64>,
    /// The segment being appended to (never reclaimed).
    pub active: bool,
    /// What reclaims it, when it is eligible now or has a time to be.
    pub reclaim: Option<Reclaim>,
    /// When time retention makes it eligible (milliseconds since the epoch).
    pub reclaim_at_ms: Option<i64>,
}

/// The segment map of one log.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentMap {
    /// Time retention, if set.
    pub retention_ms: Option<u64>,
    /// Size retention, if set.
    pub retention_bytes: Option<u64>,
    /// For a queue: every offset below it is acknowledged.
    pub ack_floor: Option<u64>,
    /// Oldest first.
    pub segments: Vec<SegmentView>,
}

/// Most segments one map lists (the oldest ones first).
pub const SEGMENT_MAP_MAX: usize = 10_000;

/// The map of `log`; `ack_floor` for a queue.
fn map(log: &Log, ack_floor: Option<Offset>) -> Result<SegmentMap> {
    let r = log.retention();
    let segs = log.segments();
    let mut total: u64 = segs.iter().map(|s| s.size_bytes).sum();
    let last = segs.len().saturating_sub(1);
    let mut out = Vec::with_capacity(segs.len().min(SEGMENT_MAP_MAX));
    for (i, s) in segs.iter().enumerate().take(SEGMENT_MAP_MAX) {
        let active = i == last;
        let empty = s.next_offset == s.base_offset;
        let reclaim_at = r
            .retention_ms
            .filter(|_| !empty)
            .map(|ms| s.retention_time_ms.saturating_add(ms as i64));
        let by_bytes = r.retention_bytes.is_some_and(|max| total > max);
        let acked = ack_floor.is_some_and(|f| s.next_offset <= f);
        let reclaim = if active {
            None
        } else if acked {
            Some(Reclaim::Acked)
        } else if by_bytes {
            Some(Reclaim::RetentionBytes)
        } else if reclaim_at.is_some() {
            Some(Reclaim::RetentionMs)
        } else {
            None
        };
        total = total.saturating_sub(s.size_bytes);
        let first = if empty {
            None
        } else {
            log.read_records(s.base_offset, 1, 1)?
                .first()
                .and_then(|(_, r)| r.timestamp_ms)
        };
        out.push(SegmentView {
            base_offset: s.base_offset.0,
            next_offset: s.next_offset.0,
            size_bytes: s.size_bytes,
            first_timestamp_ms: first,
            max_timestamp_ms: (!empty).then_some(s.max_timestamp_ms),
            active,
            reclaim,
            reclaim_at_ms: if active { None } else { reclaim_at },
        });
    }
    Ok(SegmentMap {
        retention_ms: r.retention_ms,
        retention_bytes: r.retention_bytes,
        ack_floor: ack_floor.map(|f| f.0),
        segments: out,
    })
}

impl Broker {
    /// The segment map of partition `partition` of topic `topic`.
    pub fn topic_segments(&self, topic: &str, partition: u32) -> Result<SegmentMap> {
        map(&self.store.topic(topic)?.partition(partition)?, None)
    }

    /// The segment map of queue `queue`.
    pub fn queue_segments(&self, queue: &str) -> Result<SegmentMap> {
        let q = self.store.queue(queue)?;
        map(q.log(), Some(q.stats().ack_floor))
    }
}
