//! ShareFetch (version 1): the share session steps (see `session`), the piggy-backed
//! acknowledgements are applied, then records are acquired for the member from the session's
//! partitions: a delivery round of its consumers, at most `max_records` and about `max_bytes`,
//! made durable (with the accepts, in one sync per queue) before the response leaves. With
//! nothing to acquire the fetch waits, up to `max_wait_ms` (at most [`SHARE_WAIT_MS_MAX`]), for
//! records to be published, returned or to pass their lock.

use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use kafka_protocol::messages::share_fetch_response::{
    LeaderIdAndEpoch, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::{ShareFetchRequest, ShareFetchResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_storage::store::Delivery;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use uuid::Uuid;

use super::ack::{AckBatch, Acks};
use super::records::partition_records;
use super::session::{self, Session, Step};
use super::{request_ids, Member, ShareGroups, TopicConsumer};
use crate::broker::{blocking, Round};
use crate::server::kafka::{LEADER_EPOCH, NODE_ID};

/// Longest a ShareFetch waits for records.
pub const SHARE_WAIT_MS_MAX: i32 = 30_000;
/// Bytes one ShareFetch acquires at most when the request allows more (the response must fit
/// a frame).
pub const SHARE_FETCH_BYTES_MAX: usize = 16 << 20;

/// The partitions a fetch acquires from: one member's consumer of a topic and which of its
/// partitions.
struct Source {
    topic_id: Uuid,
    topic: String,
    tc: Arc<TopicConsumer>,
    partitions: Vec<u32>,
}

/// A partition's answer as it is built.
#[derive(Default)]
struct Answer {
    error: i16,
    ack_error: Option<i16>,
    deliveries: Vec<Delivery>,
}

impl ShareGroups {
    /// Serves one ShareFetch; `ended` changes when the client's connection closes.
    pub async fn share_fetch(
        &self,
        req: ShareFetchRequest,
        ended: watch::Receiver<()>,
    ) -> ShareFetchResponse {
        let fail = |e: ResponseError, why: &str| {
            ShareFetchResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(why.to_string())))
        };
        let (group, member_id) = match request_ids(&req.group_id, &req.member_id) {
            Ok(ids) => ids,
            Err((e, why)) => return fail(e, why),
        };
        let member = match self.member(group, member_id) {
            Ok(m) => m,
            Err(e) => return fail(e, "too many share groups or members"),
        };
        let acks = acks_of(&req);
        let has_acks = !acks.parts.is_empty();
        let step = match step_session(&member, &req, has_acks) {
            Ok(step) => step,
            Err((e, why)) => return fail(e, why),
        };
        let mut answers: BTreeMap<(Uuid, i32), Answer> = BTreeMap::new();
        let acked = self.acknowledge(&member, acks).await;
        for (key, code) in acked.results {
            answers.entry(key).or_default().ack_error = Some(code);
        }
        let mut lock_ms = None;
        if step == Step::Close {
            if let Err(e) = commit(acked.round).await {
                mark_failed(&mut answers, crate::server::kafka::error_code(&e));
            }
            member.lock().session = None;
            self.session_closed(&member);
        } else {
            lock_ms = self
                .fetch(&member, &req, acked.round, &mut answers, ended)
                .await;
        }
        let lock_ms = lock_ms.unwrap_or(30_000).min(i32::MAX as u64) as i32;
        response(answers, lock_ms)
    }

    /// Acquires records for `member` from its session's partitions, committing `acked` with
    /// the first round, into `answers`; the acquisition lock of the first source's group.
    async fn fetch(
        &self,
        member: &Arc<Member>,
        req: &ShareFetchRequest,
        acked: Round,
        answers: &mut BTreeMap<(Uuid, i32), Answer>,
        mut ended: watch::Receiver<()>,
    ) -> Option<u64> {
        let sources = self.sources(member, answers).await;
        let lock_ms = sources
            .first()
            .map(|s| s.tc.queues[0].config().ack_timeout_ms);
        let limits = self.fetch_limits(req);
        match acquire(&sources, acked, limits, &mut ended).await {
            Ok(ds) => {
                for (id, d) in ds {
                    let key = (id, d.partition as i32);
                    answers.entry(key).or_default().deliveries.push(d);
                }
            }
            Err(e) => {
                let code = crate::server::kafka::error_code(&e);
                mark_failed(answers, code);
                for s in &sources {
                    for &p in &s.partitions {
                        answers.entry((s.topic_id, p as i32)).or_default().error = code;
                    }
                    if s.tc.queues[0].log().is_closed() {
                        member.drop_consumer(&s.topic);
                    }
                }
            }
        }
        lock_ms
    }

    /// The member's consumers of the session's partitions, by topic; partitions that cannot
    /// be fetched get their error in `answers`.
    async fn sources(
        &self,
        member: &Arc<Member>,
        answers: &mut BTreeMap<(Uuid, i32), Answer>,
    ) -> Vec<Source> {
        let parts: Vec<(Uuid, i32)> = {
            let st = member.lock();
            st.session.iter().flat_map(|s| s.partitions()).collect()
        };
        let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
        for (id, p) in parts {
            by_topic.entry(id).or_default().push(p);
        }
        let mut out = Vec::new();
        for (id, ps) in by_topic {
            let Some(topic) = self.topic_name(id) else {
                for p in ps {
                    answers.entry((id, p)).or_default().error =
                        ResponseError::UnknownTopicId.code();
                }
                continue;
            };
            let tc = match self.topic_consumer(member, &topic).await {
                Ok(tc) => tc,
                Err(e) => {
                    for p in ps {
                        answers.entry((id, p)).or_default().error =
                            crate::server::kafka::error_code(&e);
                    }
                    continue;
                }
            };
            let mut partitions = Vec::new();
            for p in ps {
                if p >= 0 && (p as usize) < tc.queues.len() {
                    // In a cluster each partition is served by its leader only.
                    if let Err(e) = tc.queues[p as usize].check_leader() {
                        answers.entry((id, p)).or_default().error =
                            crate::server::kafka::error_code(&e.into());
                        continue;
                    }
                    partitions.push(p as u32);
                } else {
                    answers.entry((id, p)).or_default().error =
                        ResponseError::UnknownTopicOrPartition.code();
                }
            }
            out.push(Source {
                topic_id: id,
                topic,
                tc,
                partitions,
            });
        }
        out
    }

    /// How much one fetch acquires at most: (records, bytes).
    fn fetch_limits(&self, req: &ShareFetchRequest) -> (usize, usize, Duration) {
        let records = if req.max_records > 0 {
            req.max_records as usize
        } else {
            self.config.fetch_records_default as usize
        };
        let bytes = if req.max_bytes > 0 {
            (req.max_bytes as usize).min(SHARE_FETCH_BYTES_MAX)
        } else {
            SHARE_FETCH_BYTES_MAX
        };
        let wait = req.max_wait_ms.clamp(0, SHARE_WAIT_MS_MAX) as u64;
        (records, bytes, Duration::from_millis(wait))
    }
}

/// Steps the member's share session for a ShareFetch (see `session`): opens it over the
/// request's partitions, or adds and forgets partitions; an error and why for an epoch out of
/// turn, no session, or acknowledgements in a request that opens one.
fn step_session(
    member: &Member,
    req: &ShareFetchRequest,
    has_acks: bool,
) -> Result<Step, (ResponseError, &'static str)> {
    let mut st = member.lock();
    let step = session::step(&mut st.session, req.share_session_epoch, true)
        .map_err(|e| (e, "share session"))?;
    let add = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic_id, p.partition_index)));
    match step {
        Step::Open if has_acks => {
            let why = "a request that opens a share session carries no acknowledgements";
            return Err((ResponseError::InvalidRequest, why));
        }
        Step::Open => st.session = Some(Session::open(add)),
        Step::Continue => {
            let forget = req
                .forgotten_topics_data
                .iter()
                .flat_map(|t| t.partitions.iter().map(|&p| (t.topic_id, p)));
            if let Some(s) = st.session.as_mut() {
                s.update(add, forget);
            }
        }
        Step::Close => {}
    }
    Ok(step)
}

/// Commits a round on the blocking pool.
async fn commit(round: Round) -> crate::broker::Result<()> {
    blocking(move || round.commit()).await
}

/// Sets `code` as the acknowledgement error of every partition whose acknowledgements had
/// none: their commit failed, so none may be confirmed.
fn mark_failed(answers: &mut BTreeMap<(Uuid, i32), Answer>, code: i16) {
    for a in answers.values_mut() {
        if a.ack_error == Some(0) {
            a.ack_error = Some(code);
        }
    }
}

/// Acquires records from `sources`: a delivery round committed with `acked` (the accepts of
/// the request); with nothing acquired, waits for more until the wait ends or the connection
/// does. Returns the deliveries with their topic id.
async fn acquire(
    sources: &[Source],
    acked: Round,
    (records_max, bytes_max, wait): (usize, usize, Duration),
    ended: &mut watch::Receiver<()>,
) -> crate::broker::Result<Vec<(Uuid, Delivery)>> {
    let deadline = Instant::now() + wait;
    let mut acked = Some(acked);
    loop {
        // Seen before the round, so a change during it wakes the wait below.
        let mut appended: Vec<watch::Receiver<u64>> = sources
            .iter()
            .map(|s| {
                let mut rx = s.tc.appended.clone();
                rx.borrow_and_update();
                rx
            })
            .collect();
        let mut notified: Vec<_> = sources
            .iter()
            .flat_map(|s| [s.tc.events.notified(), s.tc.consumer.woken().notified()])
            .map(Box::pin)
            .collect();
        for n in &mut notified {
            n.as_mut().enable();
        }
        let round_sources: Vec<(Uuid, Arc<TopicConsumer>, Vec<u32>)> = sources
            .iter()
            .map(|s| (s.topic_id, s.tc.clone(), s.partitions.clone()))
            .collect();
        let first = acked.take();
        let got =
            blocking(move || acquire_round(&round_sources, first, records_max, bytes_max)).await?;
        if !got.is_empty() || Instant::now() >= deadline {
            return Ok(got);
        }
        // Nothing yet: wait for a publish, a return, a lock to pass, the end of the wait.
        let lock_due = sources
            .iter()
            .map(|s| Duration::from_millis(s.tc.consumer.wait_ms(&s.tc.queues)))
            .min()
            .unwrap_or(wait);
        let until = deadline.min(Instant::now() + lock_due);
        if !wait_for_more(&mut appended, notified, until, ended).await {
            return Ok(Vec::new());
        }
    }
}

/// One acquisition round over `sources` (after taking back what passed its lock): at most
/// `records` records and about `bytes`, committed with `first` (the request's accepts).
/// Blocking.
fn acquire_round(
    sources: &[(Uuid, Arc<TopicConsumer>, Vec<u32>)],
    first: Option<Round>,
    mut records: usize,
    mut bytes: usize,
) -> crate::broker::Result<Vec<(Uuid, Delivery)>> {
    let mut round = first.unwrap_or_default();
    let mut out = Vec::new();
    for (id, tc, parts) in sources {
        expire_due(tc)?;
        if records == 0 || bytes == 0 {
            break;
        }
        let qs: Vec<_> = parts
            .iter()
            .map(|&p| tc.queues[p as usize].clone())
            .collect();
        let (ds, r) = tc.consumer.deliver_round_within(&qs, records, bytes)?;
        round.extend(r);
        records -= ds.len().min(records);
        let used: usize = ds
            .iter()
            .map(|d| sluice_storage::store::delivery_bytes(&d.record))
            .sum();
        bytes = bytes.saturating_sub(used);
        out.extend(ds.into_iter().map(|d| (*id, d)));
    }
    round.commit()?;
    Ok(out)
}

/// Waits until one of `appended` changes, one of `notified` fires, or `until`; false when
/// the connection ended first.
async fn wait_for_more<'a>(
    appended: &'a mut [watch::Receiver<u64>],
    notified: Vec<Pin<Box<tokio::sync::futures::Notified<'a>>>>,
    until: Instant,
    ended: &mut watch::Receiver<()>,
) -> bool {
    let mut waits: Vec<Pin<Box<dyn Future<Output = ()> + Send + 'a>>> = Vec::new();
    for rx in appended.iter_mut() {
        waits.push(Box::pin(async move {
            let _ = rx.changed().await;
        }));
    }
    for n in notified {
        waits.push(n);
    }
    let any = poll_fn(|cx| {
        if waits.iter_mut().any(|w| w.as_mut().poll(cx).is_ready()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    });
    tokio::select! {
        _ = any => true,
        _ = sleep_until(until) => true,
        _ = ended.changed() => false,
    }
}

/// Takes back the records of `tc`'s group whose lock passed. Blocking.
fn expire_due(tc: &TopicConsumer) -> crate::broker::Result<()> {
    let now = sluice_storage::now_ms();
    let mut n = 0;
    for q in &tc.queues {
        if q.next_deadline().is_some_and(|d| d <= now) {
            n += q.expire()?;
        }
    }
    if n > 0 {
        tc.events.notify_waiters();
    }
    Ok(())
}

/// The acknowledgements a ShareFetch carries, by partition.
fn acks_of(req: &ShareFetchRequest) -> Acks {
    Acks::gather(req.topics.iter().flat_map(|t| {
        t.partitions.iter().map(|p| {
            let batches = p.acknowledgement_batches.iter().map(|b| AckBatch {
                first_offset: b.first_offset,
                last_offset: b.last_offset,
                types: b.acknowledge_types.clone(),
            });
            (t.topic_id, p.partition_index, batches.collect())
        })
    }))
}

/// The response: every partition with records, an error or acknowledgements.
fn response(answers: BTreeMap<(Uuid, i32), Answer>, lock_ms: i32) -> ShareFetchResponse {
    let mut topics: Vec<ShareFetchableTopicResponse> = Vec::new();
    for ((id, p), a) in answers {
        // Never null: Kafka's schema does not allow it, and the Java client fails on it.
        let (records, acquired) = if a.deliveries.is_empty() {
            (Some(bytes::Bytes::new()), Vec::new())
        } else {
            let (b, r) = partition_records(a.deliveries);
            (Some(b), r)
        };
        let data = PartitionData::default()
            .with_partition_index(p)
            .with_error_code(a.error)
            .with_acknowledge_error_code(a.ack_error.unwrap_or(0))
            .with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(NODE_ID)
                    .with_leader_epoch(LEADER_EPOCH),
            )
            .with_records(records)
            .with_acquired_records(acquired);
        match topics.last_mut() {
            Some(t) if t.topic_id == id => t.partitions.push(data),
            _ => topics.push(
                ShareFetchableTopicResponse::default()
                    .with_topic_id(id)
                    .with_partitions(vec![data]),
            ),
        }
    }
    ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(lock_ms)
        .with_responses(topics)
}
