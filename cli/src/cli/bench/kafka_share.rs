//! `sluice bench --protocol kafka --mode queue`: competing consumers as Kafka share consumers
//! (KIP-932) of one share group on the run's topic, on the same minimal client as
//! `bench::kafka`: ShareGroupHeartbeat to join, then ShareFetch after ShareFetch (one in
//! flight, as Kafka's clients keep), each acknowledging (ACCEPT) every record the previous one
//! acquired once it was checked, as a share consumer in implicit mode does. The broker
//! confirms those accepts durably in the same response that brings the next records.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::share_fetch_request::{
    AcknowledgementBatch, FetchPartition, FetchTopic,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, ShareFetchRequest, ShareFetchResponse, ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice::storage::format::{self, BatchRecords};
use sluice::storage::Offset;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::check::Check;
use super::kafka::Conn;
use super::{merge, BenchArgs, Run};

const SHARE_VERSION: i16 = 1;
/// ACCEPT.
const ACCEPT: i8 = 1;
/// The share group every consumer of a run joins.
const GROUP: &str = "sluice-bench";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Connects and starts every share consumer of the run against the Kafka listener at `addr`.
pub(super) async fn spawn_consumers(
    addr: &str,
    run: &Run,
    a: &BenchArgs,
) -> Result<Vec<JoinHandle<(Check, Result<()>)>>> {
    let mut out = Vec::new();
    for k in 0..a.consumers {
        let conn = Conn::connect(addr).await?;
        let idle = Duration::from_millis(a.idle_timeout_ms);
        let run = run.clone();
        let producers = a.producers;
        let records = a.credit.clamp(1, 10_000) as i32;
        out.push(tokio::spawn(async move {
            let mut check = Check::new(producers, run.per_producer, false);
            let member = format!("bench-{}-{k}", std::process::id());
            let result = share_all(conn, &run, &member, records, idle, &mut check).await;
            merge(&run.shared.deliver_ns, &check.hist);
            (check, result)
        }));
    }
    Ok(out)
}

/// Joins the group: the topic's id.
async fn join(conn: &mut Conn, topic: &str, member: &str) -> Result<Uuid> {
    let req = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_subscribed_topic_names(Some(vec![TopicName(s(topic))]));
    let id = conn
        .send(ApiKey::ShareGroupHeartbeat, SHARE_VERSION, &req)
        .await?;
    let r: ShareGroupHeartbeatResponse = conn.recv(id, SHARE_VERSION).await?;
    if r.error_code != 0 {
        bail!(
            "ShareGroupHeartbeat refused with Kafka error {}",
            r.error_code
        );
    }
    let Some(tp) = r
        .assignment
        .and_then(|a| a.topic_partitions.into_iter().next())
    else {
        bail!("the share group assigned nothing");
    };
    Ok(tp.topic_id)
}

/// Acquires, checks and accepts records until every message arrived (across the consumers)
/// or nothing came for `idle`.
async fn share_all(
    mut conn: Conn,
    run: &Run,
    member: &str,
    records: i32,
    idle: Duration,
    check: &mut Check,
) -> Result<()> {
    let topic_id = join(&mut conn, &run.name, member).await?;
    let mut epoch = 0;
    let mut acks: Vec<(i64, i64)> = Vec::new();
    let mut last_data = Instant::now();
    loop {
        let done = run.shared.delivered.load(Ordering::Relaxed) >= run.total;
        if done || last_data.elapsed() >= idle {
            // The last accepts, and the session closed.
            let req = fetch_request(member, topic_id, -1, &acks, 0, 0);
            let id = conn.send(ApiKey::ShareFetch, SHARE_VERSION, &req).await?;
            let _: ShareFetchResponse = conn.recv(id, SHARE_VERSION).await?;
            return Ok(());
        }
        let req = fetch_request(member, topic_id, epoch, &acks, records, 500);
        let id = conn.send(ApiKey::ShareFetch, SHARE_VERSION, &req).await?;
        let resp: ShareFetchResponse = conn.recv(id, SHARE_VERSION).await?;
        if resp.error_code != 0 {
            bail!("ShareFetch refused with Kafka error {}", resp.error_code);
        }
        epoch += 1;
        acks.clear();
        let now_ns = run.clock.elapsed().as_nanos() as u64;
        let mut got = 0u64;
        for t in resp.responses {
            for p in t.partitions {
                if p.error_code != 0 || p.acknowledge_error_code != 0 {
                    bail!(
                        "ShareFetch partition error {} (acknowledgements: {})",
                        p.error_code,
                        p.acknowledge_error_code
                    );
                }
                acks.extend(
                    p.acquired_records
                        .iter()
                        .map(|a| (a.first_offset, a.last_offset)),
                );
                if let Some(b) = p.records {
                    got += take_records(b, check, now_ns)?;
                }
            }
        }
        if got > 0 {
            check.last_ns = now_ns;
            run.shared.delivered.fetch_add(got, Ordering::Relaxed);
            last_data = Instant::now();
        }
    }
}

fn fetch_request(
    member: &str,
    topic_id: Uuid,
    epoch: i32,
    acks: &[(i64, i64)],
    records: i32,
    wait_ms: i32,
) -> ShareFetchRequest {
    let batches = acks
        .iter()
        .map(|&(f, l)| {
            AcknowledgementBatch::default()
                .with_first_offset(f)
                .with_last_offset(l)
                .with_acknowledge_types(vec![ACCEPT])
        })
        .collect();
    let part = FetchPartition::default()
        .with_partition_index(0)
        .with_acknowledgement_batches(batches);
    ShareFetchRequest::default()
        .with_group_id(Some(GroupId(s(GROUP))))
        .with_member_id(Some(s(member)))
        .with_share_session_epoch(epoch)
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(16 << 20)
        .with_max_records(records)
        .with_batch_size(records)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![part])])
}

/// Checks every record of a response's batches (CRC-32C included); returns how many.
fn take_records(mut b: Bytes, check: &mut Check, now_ns: u64) -> Result<u64> {
    let mut n = 0u64;
    while b.len() >= 12 {
        let len = i32::from_be_bytes(b[8..12].try_into().expect("4 bytes"));
        let total = 12 + usize::try_from(len)?;
        if total > b.len() {
            bail!("a share fetch sent a partial batch");
        }
        let one = b.split_to(total);
        let base = i64::from_be_bytes(one[..8].try_into().expect("8 bytes"));
        let checked = format::check_kafka_header_and_crc(&one)?;
        let records = BatchRecords::kafka(&one, &checked, Offset(base as u64))?;
        for r in records.iter() {
            check.record(r?.value, now_ns);
            n += 1;
        }
    }
    Ok(n)
}
