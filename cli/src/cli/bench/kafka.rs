//! `sluice bench --protocol kafka`: the same producers and consumers, speaking the Kafka wire
//! protocol to the broker's Kafka listener: Produce (v9, acks=all, one partition) pipelined up to
//! `--inflight` requests, and Fetch (v12, long poll) from offset 0, each record checked as the
//! native consumers check theirs. A minimal client of its own (on the `kafka-protocol` codec),
//! so the figures measure the broker, not a client library's batching.
//!
//! With `--mode queue` the consumers are share consumers of one share group on the run's topic
//! (`kafka_share`).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use indicatif::ProgressBar;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use sluice::storage::format::{self, BatchBuilder, BatchRecords, BATCH_HEADER_LEN};
use sluice::storage::{now_ms, Offset};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::check::{message, Check};
use super::{histogram, merge, BenchArgs, Run};

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
/// Largest response the bench client accepts.
const RESPONSE_BYTES_MAX: usize = 256 << 20;
/// Bytes a fetch asks for: 1 MiB, the per-partition default of Kafka's clients
/// (`max.partition.fetch.bytes`). With one fetch in flight, a smaller fetch lets the broker's
/// next read overlap the client's checks sooner: 16 MiB fetches read back 1000-byte messages
/// at 69-80% of the native rate, 1 MiB fetches at 89-101%.
const FETCH_BYTES_MAX: i32 = 1 << 20;

/// One connection to a Kafka listener: requests written in order, responses read in order.
pub(super) struct Conn {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    next_id: i32,
    out: BytesMut,
}

impl Conn {
    pub(super) async fn connect(addr: &str) -> Result<Conn> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot reach the Kafka listener at {addr}"))?;
        s.set_nodelay(true)?;
        let (rd, wr) = s.into_split();
        Ok(Conn {
            rd: BufReader::with_capacity(1 << 20, rd),
            wr,
            next_id: 1,
            out: BytesMut::new(),
        })
    }

    /// Writes one request; returns its correlation id.
    pub(super) async fn send<R: Encodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &R,
    ) -> Result<i32> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-bench")));
        self.out.clear();
        self.out.put_i32(0);
        header.encode(&mut self.out, R::header_version(version))?;
        req.encode(&mut self.out, version)?;
        let len = (self.out.len() - 4) as i32;
        self.out[..4].copy_from_slice(&len.to_be_bytes());
        self.wr.write_all(&self.out).await?;
        Ok(id)
    }

    /// Reads the next response, which must answer request `id`.
    pub(super) async fn recv<R: Decodable + HeaderVersion>(
        &mut self,
        id: i32,
        version: i16,
    ) -> Result<R> {
        let len = self.rd.read_i32().await? as usize;
        if len > RESPONSE_BYTES_MAX {
            bail!("a response of {len} bytes");
        }
        // Read into spare capacity: a 16 MiB fetch response is not zeroed first.
        let mut buf = BytesMut::with_capacity(len);
        let mut body = (&mut self.rd).take(len as u64);
        while buf.len() < len {
            if body.read_buf(&mut buf).await? == 0 {
                bail!("the connection closed inside a response");
            }
        }
        let mut b = buf.freeze();
        let h = ResponseHeader::decode(&mut b, R::header_version(version))?;
        if h.correlation_id != id {
            bail!("response {} where {id} was expected", h.correlation_id);
        }
        R::decode(&mut b, version)
    }
}

/// Connects and starts producer `p` against the Kafka listener at `addr`.
pub(super) async fn spawn_producer(
    addr: &str,
    run: &Run,
    a: &BenchArgs,
    p: u32,
    progress: ProgressBar,
) -> Result<JoinHandle<Result<()>>> {
    let conn = Conn::connect(addr).await?;
    let task = produce(
        conn,
        run.clone(),
        p,
        (a.batch, a.inflight, a.message_bytes),
        progress,
    );
    Ok(tokio::spawn(task))
}

fn produce_request(topic: &str, records: Bytes) -> ProduceRequest {
    let part = PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(records));
    let t = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_data(vec![part]);
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![t])
}

/// Publishes this producer's share, `inflight` requests outstanding at most.
async fn produce(
    mut conn: Conn,
    run: Run,
    p: u32,
    (batch, inflight, size): (usize, usize, usize),
    progress: ProgressBar,
) -> Result<()> {
    let mut hist = histogram();
    let mut pending = VecDeque::new();
    let mut value = Vec::with_capacity(size);
    let mut seq = 0u64;
    let result: Result<()> = async {
        while seq < run.per_producer || !pending.is_empty() {
            if seq < run.per_producer && pending.len() < inflight {
                let n = (run.per_producer - seq).min(batch as u64);
                let mut b = BatchBuilder::with_capacity(n as usize * (size + 12) + 128);
                let sent = run.clock.elapsed().as_nanos() as u64;
                let ts = now_ms();
                for i in 0..n {
                    message(p, seq + i, sent, size, &mut value);
                    b.push(ts, None, &[], &value);
                }
                seq += n;
                // The body of a stored batch is the Kafka record batch a producer sends.
                let records = Bytes::from(b.finish()).slice(BATCH_HEADER_LEN..);
                let req = produce_request(&run.name, records);
                let id = conn.send(ApiKey::Produce, PRODUCE_VERSION, &req).await?;
                pending.push_back((Instant::now(), n, id));
                continue;
            }
            let (t, n, id) = pending.pop_front().expect("pending request");
            let resp: ProduceResponse = conn.recv(id, PRODUCE_VERSION).await?;
            for topic in &resp.responses {
                for part in &topic.partition_responses {
                    if part.error_code != 0 {
                        bail!("produce refused with Kafka error {}", part.error_code);
                    }
                }
            }
            let _ = hist.record((t.elapsed().as_nanos() as u64).max(1_000));
            run.shared.published.fetch_add(n, Ordering::Relaxed);
            progress.inc(n);
        }
        Ok(())
    }
    .await;
    merge(&run.shared.confirm_ns, &hist);
    result
}

/// Connects and starts every consumer of the run against the Kafka listener at `addr`.
pub(super) async fn spawn_consumers(
    addr: &str,
    run: &Run,
    a: &BenchArgs,
) -> Result<Vec<JoinHandle<(Check, Result<()>)>>> {
    let mut out = Vec::new();
    for _ in 0..a.consumers {
        let conn = Conn::connect(addr).await?;
        let idle = Duration::from_millis(a.idle_timeout_ms);
        let run = run.clone();
        let producers = a.producers;
        out.push(tokio::spawn(async move {
            let mut check = Check::new(producers, run.per_producer, true);
            let result = fetch_all(conn, &run, idle, &mut check).await;
            merge(&run.shared.deliver_ns, &check.hist);
            (check, result)
        }));
    }
    Ok(out)
}

fn fetch_request(topic: &str, offset: i64) -> FetchRequest {
    let part = FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(FETCH_BYTES_MAX);
    let t = FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partitions(vec![part]);
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES_MAX)
        .with_session_epoch(-1)
        .with_topics(vec![t])
}

/// Reads partition 0 from the start until every message arrived or nothing came for `idle`.
/// One fetch is always in flight: as soon as a response arrives, the next fetch (from the end
/// of its last whole batch) is sent, and the records are checked while the broker reads the
/// next ones, as librdkafka's prefetching consumer does.
async fn fetch_all(mut conn: Conn, run: &Run, idle: Duration, check: &mut Check) -> Result<()> {
    let mut last_data = Instant::now();
    let mut from = 0i64;
    let mut id = send_fetch(&mut conn, &run.name, from).await?;
    while check.received < run.total {
        let resp: FetchResponse = conn.recv(id, FETCH_VERSION).await?;
        let mut batches = Vec::new();
        for t in &resp.responses {
            for p in &t.partitions {
                if p.error_code != 0 {
                    bail!("fetch refused with Kafka error {}", p.error_code);
                }
                batches.extend(p.records.clone());
            }
        }
        let next = batches.iter().fold(from, |n, b| n.max(end_of_batches(b)));
        id = send_fetch(&mut conn, &run.name, next).await?;
        let now_ns = run.clock.elapsed().as_nanos() as u64;
        let mut got = 0u64;
        for b in batches {
            got += take_records(b, from, check, now_ns)?;
        }
        from = next;
        if got > 0 {
            check.last_ns = now_ns;
            run.shared.delivered.fetch_add(got, Ordering::Relaxed);
            last_data = Instant::now();
        } else if last_data.elapsed() >= idle {
            break;
        }
    }
    Ok(())
}

async fn send_fetch(conn: &mut Conn, topic: &str, offset: i64) -> Result<i32> {
    conn.send(ApiKey::Fetch, FETCH_VERSION, &fetch_request(topic, offset))
        .await
}

/// The offset after the last whole record batch of a fetch's records (0 when there is none):
/// a walk over the batch headers only (`baseOffset` at 0, `batchLength` at 8,
/// `lastOffsetDelta` at 23). A trailing partial batch (which Kafka lets a broker send) is left
/// for the next fetch.
fn end_of_batches(b: &Bytes) -> i64 {
    let (mut at, mut end) = (0usize, 0i64);
    while b.len() - at >= 27 {
        let field = |o: usize, n: usize| &b[at + o..at + o + n];
        let len = i32::from_be_bytes(field(8, 4).try_into().expect("4 bytes"));
        let Some(total) = usize::try_from(len).ok().map(|l| 12 + l) else {
            break;
        };
        if total > b.len() - at {
            break;
        }
        let base = i64::from_be_bytes(field(0, 8).try_into().expect("8 bytes"));
        let last = i32::from_be_bytes(field(23, 4).try_into().expect("4 bytes"));
        end = base + last as i64 + 1;
        at += total;
    }
    end
}

/// Checks the records at or after `from` of a fetch's whole record batches (CRC-32C included);
/// returns how many.
fn take_records(mut b: Bytes, from: i64, check: &mut Check, now_ns: u64) -> Result<u64> {
    let mut n = 0u64;
    while b.remaining() >= 12 {
        let len = i32::from_be_bytes(b[8..12].try_into().expect("4 bytes"));
        let total = 12 + usize::try_from(len).context("negative batch length")?;
        if total > b.remaining() {
            break;
        }
        let one = b.split_to(total);
        let base = i64::from_be_bytes(one[..8].try_into().expect("8 bytes"));
        // The CRC-32C and the header; each record is parsed (and checked) as it is read.
        let checked = format::check_kafka_header_and_crc(&one)?;
        let records = BatchRecords::kafka(&one, &checked, Offset(base as u64))?;
        for (k, r) in records.iter().enumerate() {
            let r = r?;
            if base + k as i64 >= from {
                check.record(r.value, now_ns);
                n += 1;
            }
        }
    }
    Ok(n)
}
