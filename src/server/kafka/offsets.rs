//! ListOffsets: a partition's earliest offset (-2, and -4: every segment is local), latest
//! (-1: the visible end, what a consumer may read), the offset of its largest timestamp (-3),
//! or the first offset whose timestamp is at or after a time. Leader epochs are unknown (-1),
//! as in Metadata; there are no transactions, so both isolation levels see the same offsets.

use crate::broker::spawn_blocking;
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;
use sluice_storage::{Log, Offset};

use super::authz;
use super::codec::Header;
use super::connection::{Conn, Slot};
use super::dispatch::respond;
use super::{error_code, KafkaContext, LEADER_EPOCH};
use crate::broker::{BrokerError, ErrorKind};
use crate::security::Operation;

/// The special timestamps of a ListOffsets partition.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
/// Bytes read per step while looking for the largest timestamp.
const SCAN_BYTES: usize = 1 << 20;

/// The offset and timestamp answering `timestamp` in `log`. Blocking.
fn lookup(log: &Log, timestamp: i64) -> Result<(i64, i64), BrokerError> {
    Ok(match timestamp {
        LATEST => (log.visible_end().0 as i64, -1),
        EARLIEST | EARLIEST_LOCAL => (log.start_offset().0 as i64, -1),
        // No tiered storage.
        LATEST_TIERED => (-1, -1),
        MAX_TIMESTAMP => max_timestamp(log)?.map_or((-1, -1), |(o, t)| (o.0 as i64, t)),
        t if t >= 0 => match log.offset_for_timestamp(t)? {
            Some(o) => (o.0 as i64, record_timestamp(log, o)?),
            None => (-1, -1),
        },
        t => {
            let m = format!("timestamp {t} is neither a time nor one of -1 to -5");
            return Err(BrokerError::new(ErrorKind::InvalidArgument, m));
        }
    })
}

/// The timestamp of the record at `o`.
fn record_timestamp(log: &Log, o: Offset) -> Result<i64, BrokerError> {
    let r = log.read_records(o, 1, 64 * 1024)?;
    Ok(r.first().and_then(|(_, r)| r.timestamp_ms).unwrap_or(-1))
}

/// The first offset holding the largest timestamp, and that timestamp: found in the segment
/// with the largest timestamp, read batch by batch (one segment at most).
fn max_timestamp(log: &Log) -> Result<Option<(Offset, i64)>, BrokerError> {
    let visible = log.visible_end();
    let Some(seg) = log
        .segments()
        .into_iter()
        .filter(|s| s.next_offset > s.base_offset && s.base_offset < visible)
        .max_by_key(|s| (s.max_timestamp_ms, std::cmp::Reverse(s.base_offset)))
    else {
        return Ok(None);
    };
    let mut from = seg.base_offset.max(log.start_offset());
    let end = seg.next_offset.min(visible);
    while from < end {
        let batches = log.read(from, SCAN_BYTES)?;
        let Some(last) = batches.last() else { break };
        let next = last.header.next_offset();
        for b in &batches {
            if b.header.max_timestamp_ms < seg.max_timestamp_ms {
                continue;
            }
            for r in b.records()?.iter() {
                let r = r.map_err(sluice_storage::record_error)?;
                if r.offset >= from && r.timestamp_ms == seg.max_timestamp_ms {
                    return Ok(Some((r.offset, r.timestamp_ms)));
                }
            }
        }
        from = next;
    }
    Ok(None)
}

/// One partition's answer. Blocking.
fn partition(
    ctx: &KafkaContext,
    topic: &str,
    p: &ListOffsetsPartition,
) -> ListOffsetsPartitionResponse {
    let mut r = ListOffsetsPartitionResponse::default();
    r.partition_index = p.partition_index;
    r.leader_epoch = LEADER_EPOCH;
    let found = u32::try_from(p.partition_index)
        .map_err(|_| BrokerError::new(ErrorKind::NotFound, "negative partition"))
        .and_then(|n| ctx.broker.partition_log(topic, n))
        .and_then(|log| lookup(&log, p.timestamp));
    match found {
        Ok((offset, timestamp)) => {
            r.offset = offset;
            r.timestamp = timestamp;
        }
        Err(e) => {
            r.offset = -1;
            r.timestamp = -1;
            r.error_code = match e.kind {
                ErrorKind::InvalidArgument => ResponseError::InvalidRequest.code(),
                _ => error_code(&e),
            };
        }
    }
    r
}

/// A partition's answer when its topic may not be described.
fn denied(p: &ListOffsetsPartition) -> ListOffsetsPartitionResponse {
    let mut r = ListOffsetsPartitionResponse::default();
    r.partition_index = p.partition_index;
    r.leader_epoch = LEADER_EPOCH;
    r.offset = -1;
    r.timestamp = -1;
    r.error_code = authz::topic_denied();
    r
}

impl Conn {
    pub(super) fn list_offsets(&self, tx: Slot, h: Header, req: ListOffsetsRequest) {
        let ctx = self.ctx.clone();
        let principal = self.auth.principal.clone();
        spawn_blocking(move || {
            let mut resp = ListOffsetsResponse::default();
            resp.topics = req
                .topics
                .iter()
                .map(|t| {
                    let mut out = ListOffsetsTopicResponse::default();
                    out.name = t.name.clone();
                    let name = t.name.0.as_str();
                    let allowed = authz::check_topic(&ctx, &principal, Operation::Describe, name);
                    out.partitions = t
                        .partitions
                        .iter()
                        .map(|p| match allowed {
                            true => partition(&ctx, name, p),
                            false => denied(p),
                        })
                        .collect();
                    out
                })
                .collect();
            respond(ctx.broker.metrics(), tx, &h, &resp);
        });
    }
}
