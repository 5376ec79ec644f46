//! Produce (versions 3 and up): each partition's record batches are checked and converted to
//! stored batches (`sluice_storage::format::kafka_to_stored`), appended through the broker
//! core, and acknowledged only once durable per the topic's fsync policy: under `always` the
//! acknowledgement waits for the log's group commit, exactly as a native publish does. With
//! `acks = 0` nothing is sent back, but the batches are made durable (and so visible) all the
//! same.
//!
//! A batch of an idempotent producer (producer id >= 0, after InitProducerId) goes through
//! `Log::append_idempotent`: a retry is answered with the offsets it was first given, a batch
//! out of sequence gets OUT_OF_ORDER_SEQUENCE_NUMBER and one from a fenced epoch
//! INVALID_PRODUCER_EPOCH, nothing written for either.
//!
//! One blocking call appends every partition of the request, then lets the connection read
//! its next request (appends of one connection stay in request order), then waits for the
//! syncs and fills the response.

use crate::broker::spawn_blocking;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_storage::format::{kafka_to_stored, BatchError, KafkaBatch};
use sluice_storage::{
    Appended as LogAppended, Error as StoreError, Log, Offset, ProducerBatch, ProducerError,
};
use std::time::Duration;
use tokio::sync::oneshot;

use super::authz;
use crate::security::{Direction, Operation, Principal};

use super::codec::Header;
use super::connection::{Conn, End, Slot};
use super::dispatch::respond;
use super::produce_legacy::LegacyProduce;
use super::{error_code, KafkaContext};
use crate::broker::{make_durable, BrokerError, ErrorKind};

/// The Kafka error code of a batch refused by `kafka_to_stored`.
fn batch_error_code(e: &BatchError) -> i16 {
    let err = match e {
        BatchError::LengthOverLimit { .. } | BatchError::DecompressedTooLarge { .. } => {
            ResponseError::MessageTooLarge
        }
        BatchError::Transactional => ResponseError::InvalidTxnState,
        BatchError::Control
        | BatchError::TooManyHeaders { .. }
        | BatchError::UnsupportedAttributes(_)
        | BatchError::KafkaMagic(_) => ResponseError::InvalidRecord,
        _ => ResponseError::CorruptMessage,
    };
    err.code()
}

/// One partition of the request, once appended (or refused).
struct Appended {
    index: i32,
    outcome: Result<Done, (i16, String)>,
}

/// What an appended partition waits for before it is answered.
enum Done {
    /// Appended to this node's log, from `base` to `last`: its sync.
    Local(Log, Offset, Offset),
    /// Submitted to the partition's replicated log, batch by batch: their confirms.
    Replicated(Vec<Confirm>),
}

/// A replicated batch's confirm.
type Confirm =
    sluice_replication::BoxFuture<'static, Result<crate::broker::Published, BrokerError>>;

/// Checks, converts and appends one partition's batches. Blocking.
fn append_partition(ctx: &KafkaContext, topic: &str, p: PartitionProduceData) -> Appended {
    let index = p.index;
    let fail = |code: i16, m: String| Appended {
        index,
        outcome: Err((code, m)),
    };
    let log = match u32::try_from(index)
        .map_err(|_| BrokerError::new(ErrorKind::NotFound, format!("partition {index}")))
        .and_then(|n| ctx.broker.partition_log(topic, n))
    {
        Ok(l) => l,
        Err(e) => return fail(error_code(&e), e.message),
    };
    let records = p.records.unwrap_or_default();
    let batches = match kafka_to_stored(&records, log.config().batch_bytes_max) {
        Ok(b) => b,
        Err(e) => return fail(batch_error_code(&e), e.to_string()),
    };
    if let Some(cluster) = ctx.broker.cluster() {
        drop(log);
        return match submit_replicated(cluster, topic, index as u32, batches) {
            Ok(confirms) => Appended {
                index,
                outcome: Ok(Done::Replicated(confirms)),
            },
            Err((code, m)) => fail(code, m),
        };
    }
    let mut range: Option<(Offset, Offset)> = None;
    for b in batches {
        let info = match producer_of(&b) {
            Some(p) => log.append_idempotent(b.bytes, p).map(|a| match a {
                LogAppended::New(i) | LogAppended::Duplicate(i) => i,
            }),
            None => log.append_unsynced(b.bytes),
        };
        match info {
            // A retry answered with its first offsets may end below a batch before it.
            Ok(i) => {
                range = Some(range.map_or((i.base_offset, i.last_offset), |(b, l)| {
                    (b, l.max(i.last_offset))
                }))
            }
            Err(e) => {
                let (code, m) = append_error(e);
                return fail(code, m);
            }
        }
    }
    match range {
        Some((base, last)) => Appended {
            index,
            outcome: Ok(Done::Local(log, base, last)),
        },
        None => fail(ResponseError::CorruptMessage.code(), "no batch".into()),
    }
}

/// The idempotent producer of a batch, when it has one.
fn producer_of(b: &KafkaBatch) -> Option<ProducerBatch> {
    (b.producer_id >= 0).then_some(ProducerBatch {
        id: b.producer_id,
        epoch: b.producer_epoch,
        base_sequence: b.base_sequence,
        record_count: b.record_count,
    })
}

/// Submits a partition's batches to its replicated log, in order; their confirms, or the
/// Kafka error of the first refused. An idempotent producer's batch is checked first
/// (`cluster::producers`). Blocking.
fn submit_replicated(
    cluster: &std::sync::Arc<crate::cluster::Cluster>,
    topic: &str,
    partition: u32,
    batches: Vec<KafkaBatch>,
) -> Result<Vec<Confirm>, (i16, String)> {
    use crate::cluster::producers::GateError;
    let handle = tokio::runtime::Handle::current();
    let mut confirms = Vec::with_capacity(batches.len());
    for b in batches {
        let submitted = match producer_of(&b) {
            Some(p) => handle
                .block_on(cluster.submit_idempotent(topic, partition, b.bytes, p))
                .map_err(|e| match e {
                    GateError::Producer(p) => append_error(StoreError::Producer(p)),
                    GateError::InFlight => (
                        ResponseError::RequestTimedOut.code(),
                        "a retry of a batch still being replicated: send it again".into(),
                    ),
                    GateError::Broker(e) => (error_code(&e), e.message),
                })?,
            None => handle
                .block_on(cluster.submit_publish(topic, partition, b.bytes))
                .map_err(|e| (error_code(&e), e.message))?,
        };
        confirms.push(submitted);
    }
    Ok(confirms)
}

/// The Kafka error code and message of a refused append.
fn append_error(e: StoreError) -> (i16, String) {
    let m = e.to_string();
    let code = match &e {
        StoreError::Producer(ProducerError::OutOfOrder { .. }) => {
            ResponseError::OutOfOrderSequenceNumber.code()
        }
        StoreError::Producer(ProducerError::Fenced { .. }) => {
            ResponseError::InvalidProducerEpoch.code()
        }
        _ => {
            let b = BrokerError::from(e);
            match b.kind {
                ErrorKind::InvalidBatch => ResponseError::CorruptMessage.code(),
                _ => error_code(&b),
            }
        }
    };
    (code, m)
}

/// A response partition.
fn partition_response(
    version: i16,
    index: i32,
    code: i16,
    message: Option<String>,
) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default();
    r.index = index;
    r.error_code = code;
    r.base_offset = -1;
    r.log_append_time_ms = -1;
    r.log_start_offset = -1;
    if version >= 8 {
        r.error_message = message.map(StrBytes::from_string);
    }
    r
}

/// Refuses every partition of the request with `code`.
fn refuse_all(version: i16, topics: &[TopicProduceData], code: i16, m: &str) -> ProduceResponse {
    let mut resp = ProduceResponse::default();
    resp.responses = topics
        .iter()
        .map(|t| {
            let mut out = TopicProduceResponse::default();
            out.name = t.name.clone();
            out.topic_id = t.topic_id;
            out.partition_responses = t
                .partition_data
                .iter()
                .map(|p| partition_response(version, p.index, code, Some(m.to_owned())))
                .collect();
            out
        })
        .collect();
    resp
}

/// The topic a produce's topic entry names: by name, or by id from version 13.
fn topic_name(ctx: &KafkaContext, version: i16, t: &TopicProduceData) -> Option<String> {
    if version >= 13 {
        ctx.broker.topic_by_id(*t.topic_id.as_bytes())
    } else {
        Some(t.name.0.to_string())
    }
}

impl Conn {
    pub(super) async fn produce(
        &mut self,
        tx: Slot,
        h: Header,
        req: ProduceRequest,
    ) -> Result<(), End> {
        let v = h.api_version;
        let acks = req.acks;
        let refusal = if !matches!(acks, -1..=1) {
            Some((
                ResponseError::InvalidRequiredAcks,
                "acks must be -1, 0 or 1",
            ))
        } else if req.transactional_id.is_some() {
            Some((
                ResponseError::TransactionalIdAuthorizationFailed,
                "transactions are not supported by sluice",
            ))
        } else {
            None
        };
        if let Some((err, m)) = refusal {
            let resp = refuse_all(v, &req.topic_data, err.code(), m);
            match acks {
                0 => drop(tx.send(None)),
                _ => respond(self.ctx.broker.metrics(), tx, &h, &resp),
            }
            return Ok(());
        }
        let ctx = self.ctx.clone();
        let principal = self.auth.principal.clone();
        let delay = self.produce_throttle(&req);
        let (appended_tx, appended_rx) = oneshot::channel::<()>();
        spawn_blocking(move || {
            let topics = append_topics(&ctx, v, req.topic_data, &principal);
            let _ = appended_tx.send(());
            let tx = match acks {
                0 => {
                    let _ = tx.send(None);
                    None
                }
                _ => Some(tx),
            };
            let mut resp = ProduceResponse::default();
            resp.throttle_time_ms = delay.as_millis().min(i32::MAX as u128) as i32;
            for (name, topic_id, parts) in topics {
                let mut out = TopicProduceResponse::default();
                out.name = name;
                out.topic_id = topic_id;
                for a in parts {
                    out.partition_responses.push(durable(v, a));
                }
                resp.responses.push(out);
            }
            if let Some(tx) = tx {
                respond(ctx.broker.metrics(), tx, &h, &resp);
            }
        });
        // The next request is read once this one's appends are in place (and, over a
        // quota, once its delay has passed).
        appended_rx
            .await
            .map_err(|_| End::Fatal("a produce's append task failed".into()))?;
        self.mute.mute_for(delay);
        Ok(())
    }

    /// The quota delay of a produce's bytes (zero while security is off), counted.
    fn produce_throttle(&self, req: &ProduceRequest) -> Duration {
        let security = self.ctx.broker.security();
        if !security.enabled() {
            return Duration::ZERO;
        }
        let bytes: usize = req
            .topic_data
            .iter()
            .flat_map(|t| &t.partition_data)
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        let delay = security.throttle(&self.auth.principal, Direction::Produce, bytes);
        if !delay.is_zero() {
            self.ctx
                .broker
                .metrics()
                .throttled(Direction::Produce, delay);
        }
        delay
    }

    pub(super) fn legacy_produce(&self, tx: Slot, h: &Header, req: LegacyProduce) {
        if req.acks == 0 {
            let _ = tx.send(None);
            return;
        }
        let mut frame = bytes::BytesMut::new();
        let body = req.refusal();
        frame.extend_from_slice(&((4 + body.len()) as i32).to_be_bytes());
        frame.extend_from_slice(&h.correlation_id.to_be_bytes());
        frame.extend_from_slice(&body);
        let _ = tx.send(Some(vec![frame.freeze()]));
    }
}

/// One topic of a produce, appended (or refused).
type AppendedTopic = (
    kafka_protocol::messages::TopicName,
    uuid::Uuid,
    Vec<Appended>,
);

/// Appends every partition of every topic `principal` may write to; refuses the others with
/// TOPIC_AUTHORIZATION_FAILED. Blocking.
fn append_topics(
    ctx: &KafkaContext,
    v: i16,
    data: Vec<TopicProduceData>,
    principal: &Principal,
) -> Vec<AppendedTopic> {
    let mut topics = Vec::with_capacity(data.len());
    for t in data {
        let name = topic_name(ctx, v, &t);
        let denied = name
            .as_deref()
            .is_some_and(|n| !authz::check_topic(ctx, principal, Operation::Write, n));
        let refused = |index: i32, code: i16, m: String| Appended {
            index,
            outcome: Err((code, m)),
        };
        let parts: Vec<Appended> = t
            .partition_data
            .into_iter()
            .map(|p| match &name {
                Some(n) if denied => refused(
                    p.index,
                    authz::topic_denied(),
                    format!("{principal} may not write to {n}"),
                ),
                Some(n) => append_partition(ctx, n, p),
                None => refused(
                    p.index,
                    ResponseError::UnknownTopicId.code(),
                    "no topic has this id".into(),
                ),
            })
            .collect();
        topics.push((t.name, t.topic_id, parts));
    }
    topics
}

/// Waits until an appended partition is durable per its policy; its response. Blocking.
fn durable(version: i16, a: Appended) -> PartitionProduceResponse {
    match a.outcome {
        Err((code, m)) => partition_response(version, a.index, code, Some(m)),
        Ok(Done::Local(log, base, last)) => match make_durable(&log, last.add(1)) {
            Ok(()) => {
                let mut r = partition_response(version, a.index, 0, None);
                r.base_offset = base.0 as i64;
                r.log_start_offset = log.start_offset().0 as i64;
                r
            }
            Err(e) => partition_response(version, a.index, error_code(&e), Some(e.message)),
        },
        Ok(Done::Replicated(confirms)) => {
            let handle = tokio::runtime::Handle::current();
            let mut base = None;
            for c in confirms {
                match handle.block_on(c) {
                    Ok(p) => {
                        base.get_or_insert(p.base_offset);
                    }
                    Err(e) => {
                        return partition_response(
                            version,
                            a.index,
                            error_code(&e),
                            Some(e.message),
                        )
                    }
                }
            }
            let mut r = partition_response(version, a.index, 0, None);
            r.base_offset = base.map_or(-1, |b| b.0 as i64);
            r.log_start_offset = 0;
            r
        }
    }
}
