//! Fetch (versions 4 and up): stored batches read from each partition's log and sent as the
//! Kafka record batches they hold (`sluice_storage::format::stored_to_kafka`, no record
//! re-encoded), up to the visible end: what is durable under `always`, the same end a native
//! subscription reads to, so a consumer never sees a message a crash could take back.
//!
//! - Long poll: while fewer than `min_bytes` are ready the fetch waits, woken by the
//!   partitions' log watchers, until `max_wait_ms` (at most [`FETCH_WAIT_MS_MAX`]).
//! - Sizes: whole batches only; a fetch from inside a batch gets that whole batch (the client
//!   skips the records before its offset); at most `partition_max_bytes` a partition and
//!   `max_bytes` in all (at most `limits.frame_bytes_max`), except that the first batch of the
//!   first partition with data is sent even if larger (KIP-74).
//! - An offset below the log start or above the visible end is OFFSET_OUT_OF_RANGE.
//! - High watermark and last stable offset are the visible end (no transactions).
//! - Fetch sessions (v7+) are not kept: every response has session id 0, which clients take as
//!   "sessionless" and answer with full fetches; a request naming a session gets
//!   FETCH_SESSION_ID_NOT_FOUND.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::broker::spawn_blocking;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use sluice_storage::format::stored_to_kafka_pieces;
use sluice_storage::{Error as StoreError, Log, Offset};
use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};
use uuid::Uuid;

use super::authz;
use super::codec::Header;
use super::connection::{Conn, Slot};
use super::fetch_frame::{fetch_frame, Pieces};
use super::{error_code, KafkaContext};
use crate::broker::{BrokerError, ErrorKind};
use crate::security::{Direction, Operation, Principal};

/// Longest a fetch waits for `min_bytes` (clients ask for 500 ms by default).
pub const FETCH_WAIT_MS_MAX: i32 = 30_000;

/// One partition a fetch reads.
struct Target {
    topic: usize,
    index: i32,
    fetch_offset: i64,
    partition_max_bytes: i32,
    /// The log and its watcher, or why the partition cannot be read.
    source: Result<(Log, watch::Receiver<u64>), i16>,
}

impl Conn {
    pub(super) fn fetch(&self, tx: Slot, h: Header, req: FetchRequest) {
        let ctx = self.ctx.clone();
        let metrics = self.ctx.broker.metrics().clone();
        let mut ended = self.ended();
        let principal = self.auth.principal.clone();
        let mute = self.mute.clone();
        crate::broker::spawn_in_span(async move {
            let (mut resp, records) =
                fetch(ctx.clone(), h.api_version, req, &principal, &mut ended).await;
            let bytes = records.iter().flatten().flatten().map(|(_, n)| *n).sum();
            let delay = fetch_throttle(&ctx, &principal, bytes);
            resp.throttle_time_ms = delay.as_millis().min(i32::MAX as u128) as i32;
            mute.mute_for(delay);
            super::errors::count(&metrics, &resp);
            match fetch_frame(&resp, records, h.api_version, h.correlation_id) {
                Ok(frame) => drop(tx.send(Some(frame))),
                Err(e) => {
                    tracing::error!(client = ?h.client_id, "cannot encode a response: {e}");
                    let _ = tx.send(None);
                }
            }
        });
    }
}

/// The quota delay of `bytes` fetched (zero while security is off), counted.
pub(super) fn fetch_throttle(ctx: &KafkaContext, p: &Principal, bytes: usize) -> Duration {
    let security = ctx.broker.security();
    if !security.enabled() || bytes == 0 {
        return Duration::ZERO;
    }
    let delay = security.throttle(p, Direction::Fetch, bytes);
    if !delay.is_zero() {
        ctx.broker.metrics().throttled(Direction::Fetch, delay);
    }
    delay
}

/// Resolves every partition of the request to its log and watcher (a topic `p` may not read
/// gets TOPIC_AUTHORIZATION_FAILED). Returns the topics (name, id) in request order and the
/// partitions. Blocking.
fn targets(
    ctx: &KafkaContext,
    version: i16,
    req: &FetchRequest,
    p: &Principal,
) -> (Vec<(TopicName, Uuid)>, Vec<Target>) {
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut out = Vec::new();
    for (k, t) in req.topics.iter().enumerate() {
        let name = if version >= 13 {
            ctx.broker.topic_by_id(*t.topic_id.as_bytes())
        } else {
            Some(t.topic.0.to_string())
        };
        topics.push((t.topic.clone(), t.topic_id));
        let denied = name
            .as_deref()
            .is_some_and(|n| !authz::check_topic(ctx, p, Operation::Read, n));
        for part in &t.partitions {
            let mut t = target(ctx, k, if denied { None } else { name.as_deref() }, part);
            if denied {
                t.source = Err(authz::topic_denied());
            }
            out.push(t);
        }
    }
    (topics, out)
}

fn target(ctx: &KafkaContext, topic: usize, name: Option<&str>, p: &FetchPartition) -> Target {
    let source = match name {
        None => Err(ResponseError::UnknownTopicId.code()),
        Some(n) => u32::try_from(p.partition)
            .map_err(|_| BrokerError::new(ErrorKind::NotFound, "negative partition"))
            .and_then(|i| ctx.broker.watch_partition(n, i))
            .map_err(|e| error_code(&e)),
    };
    Target {
        topic,
        index: p.partition,
        fetch_offset: p.fetch_offset,
        partition_max_bytes: p.partition_max_bytes,
        source,
    }
}

/// A partition's answer with no records yet.
fn partition_data(index: i32, code: i16, log: Option<&Log>) -> PartitionData {
    let mut d = PartitionData::default();
    // The records travel beside the answer (`fetch_frame`).
    d.records = None;
    d.partition_index = index;
    d.error_code = code;
    match log {
        Some(log) => {
            let end = log.visible_end().0 as i64;
            d.high_watermark = end;
            d.last_stable_offset = end;
            d.log_start_offset = log.start_offset().0 as i64;
        }
        None => {
            d.high_watermark = -1;
            d.last_stable_offset = -1;
            d.log_start_offset = -1;
        }
    }
    d
}

/// Reads one partition: whole batches from the one holding `fetch_offset`, within `limit`
/// bytes, or the first batch whatever its size when `oversized_ok`; the answer and its records
/// as pieces (slices of what the log read: no record is copied). Blocking.
fn read_partition(
    log: &Log,
    t: &Target,
    limit: usize,
    oversized_ok: bool,
) -> (PartitionData, Pieces) {
    let failed = |code: i16| (partition_data(t.index, code, Some(log)), None);
    let d = partition_data(t.index, 0, Some(log));
    let (start, end) = (log.start_offset().0 as i64, d.high_watermark);
    if t.fetch_offset < start || t.fetch_offset > end {
        return failed(ResponseError::OffsetOutOfRange.code());
    }
    let mut pieces = Vec::new();
    let mut len = 0usize;
    if t.fetch_offset < end && (limit > 0 || oversized_ok) {
        let batches = match log.read_messages(Offset(t.fetch_offset as u64), limit.max(1)) {
            Ok((b, _)) => b,
            Err(StoreError::OffsetOutOfRange { .. }) => {
                return failed(ResponseError::OffsetOutOfRange.code())
            }
            Err(e) => return failed(error_code(&BrokerError::from(e))),
        };
        let mut taken = 0usize;
        for b in batches {
            let stored = b.bytes.len();
            if taken + stored > limit && !(taken == 0 && oversized_ok) {
                break;
            }
            match stored_to_kafka_pieces(&b.bytes, &mut pieces) {
                Ok(n) => len += n,
                Err(e) => {
                    tracing::warn!(dir = %log.dir().display(), "a stored batch does not convert: {e}");
                    return failed(ResponseError::KafkaStorageError.code());
                }
            }
            taken += stored;
        }
    }
    (d, Some((pieces, len)))
}

/// A partition's answer and its records.
type Answer = (PartitionData, Pieces);

/// One pass over every partition: their answers and the record bytes gathered. Blocking.
fn read_all(targets: &[Target], max_bytes: usize) -> (Vec<Answer>, usize, bool) {
    let mut total = 0usize;
    let mut errors = false;
    let data = targets
        .iter()
        .map(|t| match &t.source {
            // Empty records, not null, as Kafka answers (librdkafka refuses a null set).
            Err(code) => {
                errors = true;
                (partition_data(t.index, *code, None), Some((Vec::new(), 0)))
            }
            Ok((log, _)) => {
                let limit =
                    (t.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
                let (d, pieces) = read_partition(log, t, limit, total == 0);
                errors |= d.error_code != 0;
                total += pieces.as_ref().map_or(0, |(_, n)| *n);
                (d, pieces)
            }
        })
        .collect();
    (data, total, errors)
}

/// Marks the partitions whose topic was deleted (its watcher closed) or whose log closed, so
/// the fetch answers at once instead of waiting on them.
fn drop_gone(targets: &mut [Target]) {
    for t in targets.iter_mut() {
        if let Ok((log, rx)) = &t.source {
            if rx.has_changed().is_err() || log.is_closed() {
                t.source = Err(ResponseError::UnknownTopicOrPartition.code());
            }
        }
    }
}

/// Waits until one of the watchers sees a new visible end (or closes), the connection ends, or
/// `deadline`.
async fn any_change(targets: &mut [Target], deadline: Instant, ended: &mut watch::Receiver<()>) {
    let mut waits: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = targets
        .iter_mut()
        .filter_map(|t| t.source.as_mut().ok())
        .map(|(_, rx)| {
            Box::pin(async move {
                let _ = rx.changed().await;
            }) as _
        })
        .collect();
    waits.push(Box::pin(async move {
        let _ = ended.changed().await;
    }));
    let any = std::future::poll_fn(|cx| {
        for w in waits.iter_mut() {
            if w.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    });
    let _ = timeout_at(deadline, any).await;
}

/// The whole fetch, long poll included.
/// `ended` closes when the connection ends (shutdown included): a long poll then answers with
/// what it has.
async fn fetch(
    ctx: Arc<KafkaContext>,
    version: i16,
    req: FetchRequest,
    p: &Principal,
    ended: &mut watch::Receiver<()>,
) -> (FetchResponse, Vec<Vec<Pieces>>) {
    let mut resp = FetchResponse::default();
    if version >= 7 && req.session_id != 0 {
        resp.error_code = ResponseError::FetchSessionIdNotFound.code();
        return (resp, Vec::new());
    }
    if version >= 7 && req.session_epoch > 0 {
        resp.error_code = ResponseError::InvalidFetchSessionEpoch.code();
        return (resp, Vec::new());
    }
    let frame_max = ctx.broker.limits().frame_bytes_max as usize;
    let max_bytes = (req.max_bytes.max(0) as usize).min(frame_max.saturating_sub(64 * 1024));
    let min_bytes = req.min_bytes.max(0) as usize;
    let wait = Duration::from_millis(req.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX) as u64);
    let deadline = Instant::now() + wait;
    let c = ctx.clone();
    let p = p.clone();
    let Ok((topics, mut targets)) = spawn_blocking(move || targets(&c, version, &req, &p)).await
    else {
        resp.error_code = ResponseError::UnknownServerError.code();
        return (resp, Vec::new());
    };
    let (data, targets) = loop {
        drop_gone(&mut targets);
        for t in targets.iter_mut() {
            if let Ok((_, rx)) = &mut t.source {
                rx.borrow_and_update();
            }
        }
        let Ok((data, total, errors, back)) = spawn_blocking(move || {
            let (d, total, errors) = read_all(&targets, max_bytes);
            (d, total, errors, targets)
        })
        .await
        else {
            resp.error_code = ResponseError::UnknownServerError.code();
            return (resp, Vec::new());
        };
        targets = back;
        let over = Instant::now() >= deadline || ended.has_changed().is_err();
        if min_bytes == 0 || total >= min_bytes || errors || over {
            break (data, targets);
        }
        any_change(&mut targets, deadline, ended).await;
    };
    let mut by_topic: Vec<FetchableTopicResponse> = topics
        .into_iter()
        .map(|(name, id)| {
            let mut t = FetchableTopicResponse::default();
            t.topic = name;
            t.topic_id = id;
            t
        })
        .collect();
    let mut records: Vec<Vec<Pieces>> = vec![Vec::new(); by_topic.len()];
    for (t, (d, pieces)) in targets.iter().zip(data) {
        by_topic[t.topic].partitions.push(d);
        records[t.topic].push(pieces);
    }
    resp.responses = by_topic;
    (resp, records)
}
