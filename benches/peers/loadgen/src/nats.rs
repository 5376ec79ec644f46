//! NATS JetStream: a file-storage, single-replica, work-queue stream (async-nats).
//!
//! - Publish: `--producers` connections, each with at most `--window` publishes awaiting their
//!   JetStream PubAck (pipelined through `PublishAckFuture`); send-to-ack latency per message.
//!   By default the stream is deleted and created again first (`--fresh`).
//! - Consume: `--producers` connections pulling from one shared durable pull consumer on the
//!   whole stream (explicit acks, `max_ack_pending` = window x consumers). Each connection keeps
//!   one pull request for `--window` messages outstanding and sends the next once it was served
//!   or expired; each message is acked on its own with a plain `ack()` (fire and forget, not
//!   `double_ack`), until `--messages` arrived in all. Work-queue retention makes the server
//!   delete each message once it is acked, like a queue, so the run ends by checking the stream
//!   shrank by exactly what was acked.
//!
//! Every body starts with the producer id and the producer's sequence number (big-endian u64
//! each), so consume can tell missing and duplicated messages apart.
//!
//! Longer than most files on purpose: one peer's whole workload (publish, pull consumer, checks)
//! in one file, beside the RabbitMQ and Redis ones, so the three read side by side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, consumer::pull, stream};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{watch, Barrier};

use crate::report::{check_of, Latency, Mode, Report, Workload};

const SYSTEM: &str = "nats-jetstream";
/// nats-server 2.9.10: the file store writes each message with pwrite(2) before the PubAck and
/// does not fsync it; strace shows the message block and its index fsynced only by a timer,
/// 2 minutes after the writes (none while publishing or at shutdown). There is no setting to
/// sync each write (`sync_interval` is a 2.10 addition).
const DURABILITY: &str =
    "file storage, 1 replica, pub ack after write to page cache (2.9.10: no fsync per write, \
     blocks fsynced every 2 min)";
/// Name of the durable pull consumer shared by every consuming connection.
const CONSUMER: &str = "bench-consumer";
/// Bytes at the start of every body: producer id and sequence.
const HEADER: usize = 16;
/// A consume run fails when no message arrived for this long.
const STALL: Duration = Duration::from_secs(15);
/// Bound on JetStream API requests and on each publish ack.
const API_TIMEOUT: Duration = Duration::from_secs(60);
/// Lifetime of a pull request the server could not serve in full.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub workload: Workload,
    /// Server URL (default: $NATS_URL, else nats://127.0.0.1:4229).
    #[arg(long, default_value_t = default_url())]
    pub url: String,
    /// Stream name.
    #[arg(long, default_value = "bench")]
    pub stream: String,
    /// Subject the stream captures and producers publish to (default: `<stream>.msgs`).
    #[arg(long)]
    pub subject: Option<String>,
    /// Publish mode: delete the stream (and its consumers) and create it again first.
    /// `--fresh false` keeps what an earlier run left. Ignored when consuming.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub fresh: bool,
}

fn default_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4229".to_string())
}

pub async fn run(a: Args) -> anyhow::Result<Report> {
    let w = &a.workload;
    if w.producers == 0 || w.window == 0 || w.messages == 0 {
        bail!("--producers, --window and --messages must be at least 1");
    }
    if w.message_bytes < HEADER {
        bail!("--message-bytes must be at least {HEADER} (producer id and sequence)");
    }
    let subject = a
        .subject
        .clone()
        .unwrap_or_else(|| format!("{}.msgs", a.stream));
    match w.mode {
        Mode::Publish => publish(&a, &subject).await,
        Mode::Consume => consume(&a).await,
    }
}

async fn connect(
    url: &str,
    name: String,
) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok((client.clone(), jetstream::new(client)))
}

// ---------------------------------------------------------------------------------------------
// Publish

/// What one producer saw.
#[derive(Default)]
struct Published {
    acked: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Latency,
    last_ack: Option<Instant>,
}

async fn publish(a: &Args, subject: &str) -> anyhow::Result<Report> {
    let w = &a.workload;
    let (_admin_client, admin) = connect(&a.url, "bench-admin".into()).await?;
    prepare_stream(&admin, a, subject).await?;
    let before = stream_messages(&admin, &a.stream).await?;

    let barrier = Arc::new(Barrier::new(w.producers + 1));
    let tasks = spawn_producers(a, subject, &barrier).await?;
    barrier.wait().await;
    let start = Instant::now();

    let total = collect_published(tasks).await?;
    let elapsed = total
        .last_ack
        .unwrap_or(start)
        .saturating_duration_since(start);

    let problems = publish_problems(&admin, a, before, &total).await;
    let check = check_of(&problems);
    Ok(Report::new(
        SYSTEM,
        DURABILITY,
        w,
        total.acked,
        elapsed,
        &total.latency,
        check,
    ))
}

/// The work-queue stream the producers publish to: deleted and created again with `--fresh`,
/// else created only if missing.
async fn prepare_stream(admin: &jetstream::Context, a: &Args, subject: &str) -> anyhow::Result<()> {
    let stream_config = stream::Config {
        name: a.stream.clone(),
        subjects: vec![subject.to_string()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: 1,
        max_bytes: -1,
        max_messages: -1,
        max_messages_per_subject: -1,
        max_consumers: -1,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    };
    if a.fresh {
        match admin.delete_stream(&a.stream).await {
            Ok(_) => {}
            Err(e)
                if matches!(e.kind(), jetstream::context::DeleteStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) => {}
            Err(e) => return Err(e).with_context(|| format!("deleting stream {}", a.stream)),
        }
        admin
            .create_stream(stream_config)
            .await
            .with_context(|| format!("creating stream {}", a.stream))?;
    } else {
        admin
            .get_or_create_stream(stream_config)
            .await
            .with_context(|| format!("getting or creating stream {}", a.stream))?;
    }
    Ok(())
}

/// One connection and task per producer, each sharing out `--messages`; every task waits on
/// `barrier` before its first publish.
async fn spawn_producers(
    a: &Args,
    subject: &str,
    barrier: &Arc<Barrier>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<Published>>> {
    let w = &a.workload;
    let producers = w.producers as u64;
    let mut tasks = Vec::with_capacity(w.producers);
    for p in 0..producers {
        let count = w.messages / producers + u64::from(p < w.messages % producers);
        let (client, _) = connect(&a.url, format!("bench-producer-{p}")).await?;
        // The client bounds acks in flight too; never below our own window.
        let js = jetstream::context::ContextBuilder::new()
            .timeout(API_TIMEOUT)
            .max_ack_inflight(w.window)
            .build(client);
        let barrier = barrier.clone();
        let subject = subject.to_string();
        let (window, bytes) = (w.window, w.message_bytes);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            produce(js, subject, p, count, window, bytes).await
        }));
    }
    Ok(tasks)
}

/// Every producer's counts added up; the first error is the first producer's that had one.
async fn collect_published(
    tasks: Vec<tokio::task::JoinHandle<Published>>,
) -> anyhow::Result<Published> {
    let mut total = Published::default();
    for t in tasks {
        let r = t.await.context("producer task panicked")?;
        total.acked += r.acked;
        total.errors += r.errors;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
        total.latency.add(&r.latency);
        total.last_ack = total.last_ack.max(r.last_ack);
    }
    Ok(total)
}

/// Failed or missing acks, and a stream that did not grow by exactly what was acked.
async fn publish_problems(
    admin: &jetstream::Context,
    a: &Args,
    before: u64,
    total: &Published,
) -> Vec<String> {
    let w = &a.workload;
    let mut problems = Vec::new();
    if total.errors > 0 {
        problems.push(format!(
            "{} of {} publishes failed, first: {}",
            total.errors,
            w.messages,
            total.first_error.as_deref().unwrap_or("?")
        ));
    } else if total.acked != w.messages {
        problems.push(format!("{} of {} publishes acked", total.acked, w.messages));
    }
    match stream_messages(admin, &a.stream).await {
        Ok(after) if after != before + total.acked => problems.push(format!(
            "stream holds {after} messages, expected {before} + {} acked",
            total.acked
        )),
        Ok(_) => {}
        Err(e) => problems.push(format!("{e:#}")),
    }
    problems
}

/// One producer: `count` messages, at most `window` of them awaiting their PubAck.
async fn produce(
    js: jetstream::Context,
    subject: String,
    producer: u64,
    count: u64,
    window: usize,
    bytes: usize,
) -> Published {
    let mut out = Published::default();
    let mut body = vec![0u8; bytes];
    body[..8].copy_from_slice(&producer.to_be_bytes());
    for (i, b) in body[HEADER..].iter_mut().enumerate() {
        *b = b'a' + (i % 26) as u8;
    }
    let mut inflight = FuturesUnordered::new();
    fn fail(out: &mut Published, e: String) {
        out.errors += 1;
        if out.first_error.is_none() {
            out.first_error = Some(e);
        }
    }
    let mut seq = 0u64;
    // After the first failure nothing more is sent; what is in flight is still awaited.
    while seq < count && out.errors == 0 || !inflight.is_empty() {
        if seq < count && out.errors == 0 && inflight.len() < window {
            body[8..HEADER].copy_from_slice(&seq.to_be_bytes());
            seq += 1;
            let sent = Instant::now();
            match js.publish(subject.clone(), body.clone().into()).await {
                Ok(ack) => inflight.push(async move { (sent, ack.await) }),
                Err(e) => fail(&mut out, format!("publish: {e}")),
            }
            continue;
        }
        let Some((sent, result)) = inflight.next().await else {
            continue;
        };
        let now = Instant::now();
        match result {
            Ok(ack) if ack.duplicate => fail(
                &mut out,
                format!("ack seq {} marked duplicate", ack.sequence),
            ),
            Ok(_) => {
                out.acked += 1;
                out.latency.record(now - sent);
                out.last_ack = Some(now);
            }
            Err(e) => fail(&mut out, format!("publish ack: {e}")),
        }
    }
    out
}

async fn stream_messages(js: &jetstream::Context, name: &str) -> anyhow::Result<u64> {
    let s = js
        .get_stream(name)
        .await
        .with_context(|| format!("getting stream {name}"))?;
    let info = s
        .get_info()
        .await
        .with_context(|| format!("stream {name} info"))?;
    Ok(info.state.messages)
}

// ---------------------------------------------------------------------------------------------
// Consume

/// What one consuming connection saw.
#[derive(Default)]
struct Consumed {
    /// `producer << 64 | sequence` of every message counted.
    keys: Vec<u128>,
    bad_bodies: u64,
    redelivered: u64,
    error: Option<String>,
    end: Option<Instant>,
}

async fn consume(a: &Args) -> anyhow::Result<Report> {
    let w = &a.workload;
    let (_admin_client, admin) = connect(&a.url, "bench-admin".into()).await?;
    let (s, before) = replace_consumer(&admin, a).await?;

    let received = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = watch::channel(false);
    let done_tx = Arc::new(done_tx);
    let barrier = Arc::new(Barrier::new(w.producers + 1));
    let tasks = spawn_pullers(a, &barrier, &received, &done_tx, &done_rx).await?;
    barrier.wait().await;
    let start = Instant::now();

    let stalled = watch_for_stall(done_rx.clone(), &received, &done_tx).await;

    let mut total = ConsumeTotals {
        keys: Vec::with_capacity(w.messages as usize),
        bad_bodies: 0,
        redelivered: 0,
        errors: Vec::new(),
        end: start,
    };
    for t in tasks {
        let r = t.await.context("consumer task panicked")?;
        total.keys.extend(r.keys);
        total.bad_bodies += r.bad_bodies;
        total.redelivered += r.redelivered;
        total.errors.extend(r.error);
        total.end = total.end.max(r.end.unwrap_or(start));
    }
    let elapsed = total.end - start;
    let got = total.keys.len() as u64;

    let problems = consume_problems(w, &s, before, stalled, total).await;
    let check = check_of(&problems);
    Ok(Report::new(
        SYSTEM,
        DURABILITY,
        w,
        got,
        elapsed,
        &Latency::default(),
        check,
    ))
}

/// Every consuming connection's results put together.
struct ConsumeTotals {
    keys: Vec<u128>,
    bad_bodies: u64,
    redelivered: u64,
    errors: Vec<String>,
    end: Instant,
}

/// Checks the stream holds at least `--messages`, then replaces the durable pull consumer.
/// Returns the stream and how many messages it held.
async fn replace_consumer(
    admin: &jetstream::Context,
    a: &Args,
) -> anyhow::Result<(stream::Stream, u64)> {
    let w = &a.workload;
    let s = admin
        .get_stream(&a.stream)
        .await
        .with_context(|| format!("getting stream {} (publish first)", a.stream))?;
    let before = s
        .get_info()
        .await
        .with_context(|| format!("stream {} info", a.stream))?
        .state
        .messages;
    if before < w.messages {
        bail!(
            "stream {} holds {before} messages, fewer than --messages {}",
            a.stream,
            w.messages
        );
    }
    // A consumer left by an earlier run may have another max_ack_pending: replace it. In a
    // work-queue stream this loses nothing (acked messages are gone, the rest is redelivered).
    match s.delete_consumer(CONSUMER).await {
        Ok(_) => {}
        Err(e)
            if matches!(e.kind(), jetstream::stream::ConsumerErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND) => {}
        Err(e) => return Err(e).context("deleting the previous consumer"),
    }
    let max_ack_pending = (w.window * w.producers) as i64;
    let consumer_config = pull::Config {
        durable_name: Some(CONSUMER.to_string()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        deliver_policy: jetstream::consumer::DeliverPolicy::All,
        ack_wait: Duration::from_secs(60),
        max_ack_pending,
        ..Default::default()
    };
    s.create_consumer(consumer_config)
        .await
        .context("creating the durable pull consumer")?;
    Ok((s, before))
}

/// One connection, pull subscription and task per consumer (`--producers` of them); every
/// task waits on `barrier` before its first pull request.
async fn spawn_pullers(
    a: &Args,
    barrier: &Arc<Barrier>,
    received: &Arc<AtomicU64>,
    done_tx: &Arc<watch::Sender<bool>>,
    done_rx: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<Consumed>>> {
    let w = &a.workload;
    let mut tasks = Vec::with_capacity(w.producers);
    for c in 0..w.producers {
        let (client, js) = connect(&a.url, format!("bench-consumer-{c}")).await?;
        // One subscription per connection for all its pull requests.
        let inbox = client.new_inbox();
        let sub = client
            .subscribe(inbox.clone())
            .await
            .context("subscribing to the pull inbox")?;
        let puller = Puller {
            client,
            js,
            sub,
            inbox,
            api: format!("$JS.API.CONSUMER.MSG.NEXT.{}.{CONSUMER}", a.stream),
            request: serde_json::to_vec(&serde_json::json!({
                "batch": w.window,
                "expires": PULL_EXPIRES.as_nanos() as u64,
            }))?,
            window: w.window,
        };
        let (barrier, received, done_tx, done_rx) = (
            barrier.clone(),
            received.clone(),
            done_tx.clone(),
            done_rx.clone(),
        );
        let (target, bytes) = (w.messages, w.message_bytes);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            puller
                .drain(target, bytes, received, done_tx, done_rx)
                .await
        }));
    }
    Ok(tasks)
}

/// Stall watch: returns once the consumers are done, or, after no progress for STALL, tells
/// them to stop and returns true.
async fn watch_for_stall(
    mut done_rx: watch::Receiver<bool>,
    received: &AtomicU64,
    done_tx: &watch::Sender<bool>,
) -> bool {
    let mut last = 0;
    let mut last_change = Instant::now();
    loop {
        tokio::select! {
            _ = done_rx.wait_for(|d| *d) => return false,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let now = received.load(Ordering::Relaxed);
        if now != last {
            (last, last_change) = (now, Instant::now());
        } else if last_change.elapsed() >= STALL {
            done_tx.send_replace(true);
            return true;
        }
    }
}

/// What went wrong in a consume run: a stall, the connections' errors, a wrong count, bad
/// bodies, redeliveries, gaps or duplicates, and a stream that did not shrink by what was acked.
async fn consume_problems(
    w: &Workload,
    s: &stream::Stream,
    before: u64,
    stalled: bool,
    mut total: ConsumeTotals,
) -> Vec<String> {
    let got = total.keys.len() as u64;
    let mut problems = Vec::new();
    if stalled {
        problems.push(format!(
            "stalled: nothing arrived for {} s",
            STALL.as_secs()
        ));
    }
    problems.extend(total.errors);
    if got != w.messages {
        problems.push(format!("received {got} of {} messages", w.messages));
    }
    if total.bad_bodies > 0 {
        problems.push(format!(
            "{} bodies not {} bytes long",
            total.bad_bodies, w.message_bytes
        ));
    }
    if total.redelivered > 0 {
        problems.push(format!("{} redeliveries", total.redelivered));
    }
    // Draining the stream, every producer's sequences come out whole. Taking part of it, the
    // consumers stop with messages pulled and left unacked (redelivered to a later run), which
    // leaves gaps and pending acks: then only duplicates and the stream's count are checked.
    let whole = before == w.messages;
    problems.extend(check_sequences(&mut total.keys, whole));
    problems.extend(check_acked(s, before - got, whole).await);
    problems
}

/// One consuming connection of the shared durable consumer. It pulls explicitly rather than
/// through `PullConsumer::stream()`: that stream, with batches of 1, loses count of what it
/// asked for when a message overtakes the request's bookkeeping, and then stops pulling until
/// the request expires (seen with async-nats 0.51: consume at window 1 stalled).
struct Puller {
    client: async_nats::Client,
    js: jetstream::Context,
    sub: async_nats::Subscriber,
    inbox: String,
    /// `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`.
    api: String,
    /// `{"batch": window, "expires": ...}`.
    request: Vec<u8>,
    window: usize,
}

impl Puller {
    /// Pull `window` messages at a time (the next request once the previous one was served
    /// completely or expired), ack each as it arrives, until `target` arrived in all.
    async fn drain(
        mut self,
        target: u64,
        bytes: usize,
        received: Arc<AtomicU64>,
        done_tx: Arc<watch::Sender<bool>>,
        mut done_rx: watch::Receiver<bool>,
    ) -> Consumed {
        let mut out = Consumed::default();
        let fail = |out: &mut Consumed, e: String| {
            out.error.get_or_insert(e);
            done_tx.send_replace(true);
        };
        let mut outstanding = 0;
        loop {
            if outstanding == 0 {
                if let Err(e) = self.request_next().await {
                    fail(&mut out, e);
                    break;
                }
                outstanding = self.window;
            }
            let next = tokio::select! {
                _ = done_rx.wait_for(|d| *d) => break,
                next = self.sub.next() => next,
            };
            let Some(msg) = next else {
                fail(&mut out, "pull subscription closed".into());
                break;
            };
            match msg.status {
                None => {}
                // The request expired before it was served in full: ask again.
                Some(async_nats::StatusCode::TIMEOUT) => {
                    outstanding = 0;
                    continue;
                }
                Some(async_nats::StatusCode::IDLE_HEARTBEAT) => continue,
                Some(status) => {
                    fail(
                        &mut out,
                        format!("pull: status {status} {:?}", msg.description),
                    );
                    break;
                }
            }
            outstanding -= 1;
            // Beyond the target (the stream held more): leave it unacked for a later run.
            let n = received.fetch_add(1, Ordering::Relaxed);
            if n >= target {
                break;
            }
            if let Err(e) = self.ack_and_count(msg, bytes, &mut out).await {
                fail(&mut out, e);
                break;
            }
            if n + 1 == target {
                done_tx.send_replace(true);
                break;
            }
        }
        // The acks are only queued on the client; make sure the server has them.
        if let Err(e) = self.client.flush().await {
            out.error.get_or_insert(format!("flush: {e}"));
        }
        out.end = Some(Instant::now());
        out
    }

    /// Asks the consumer for the next `window` messages, delivered to this connection's inbox.
    async fn request_next(&self) -> Result<(), String> {
        self.client
            .publish_with_reply(
                self.api.clone(),
                self.inbox.clone(),
                self.request.clone().into(),
            )
            .await
            .map_err(|e| format!("pull request: {e}"))
    }

    /// Acks one message, then counts it in `out`: its key, a body of the wrong size, a
    /// redelivery.
    async fn ack_and_count(
        &self,
        msg: async_nats::Message,
        bytes: usize,
        out: &mut Consumed,
    ) -> Result<(), String> {
        let body = msg.payload.clone();
        let msg = jetstream::Message {
            message: msg,
            context: self.js.clone(),
        };
        // A plain ack: an empty message to the reply subject, no reply awaited.
        if let Err(e) = msg.ack().await {
            return Err(format!("ack: {e}"));
        }
        if body.len() != bytes {
            out.bad_bodies += 1;
        }
        if body.len() >= HEADER {
            let p = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
            let s = u64::from_be_bytes(body[8..HEADER].try_into().expect("8 bytes"));
            out.keys.push(u128::from(p) << 64 | u128::from(s));
        }
        if msg.info().map(|i| i.delivered > 1).unwrap_or(false) {
            out.redelivered += 1;
        }
        Ok(())
    }
}

/// Per producer, the sequences seen must be contiguous (when `whole`), each once. (Starting at
/// 0 is not required: a consume run may take over where an earlier one stopped.)
fn check_sequences(keys: &mut [u128], whole: bool) -> Option<String> {
    keys.sort_unstable();
    let duplicates = keys.windows(2).filter(|k| k[0] == k[1]).count();
    // producer -> (distinct sequences, lowest, highest); keys are sorted.
    let mut per_producer: HashMap<u64, (u64, u64, u64)> = HashMap::new();
    let mut prev = None;
    for &k in keys.iter() {
        if prev == Some(k) {
            continue;
        }
        prev = Some(k);
        let seq = k as u64;
        let e = per_producer
            .entry((k >> 64) as u64)
            .or_insert((0, seq, seq));
        e.0 += 1;
        e.2 = seq;
    }
    let missing: u64 = per_producer
        .values()
        .map(|&(n, lo, hi)| hi - lo + 1 - n)
        .sum();
    let missing = if whole { missing } else { 0 };
    (duplicates > 0 || missing > 0).then(|| {
        format!(
            "{duplicates} duplicates, {missing} gaps in producer sequences ({} producers)",
            per_producer.len()
        )
    })
}

/// Work-queue retention: once every ack is processed the stream holds `expected` messages and
/// (when `whole`) the consumer has nothing pending. Acks are asynchronous, so allow the server
/// a moment.
async fn check_acked(s: &stream::Stream, expected: u64, whole: bool) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = async {
            let info = s.get_info().await.context("stream info")?;
            let c: jetstream::consumer::PullConsumer = s
                .get_consumer(CONSUMER)
                .await
                .map_err(anyhow::Error::from_boxed)
                .context("getting the consumer")?;
            let ci = c.get_info().await.context("consumer info")?;
            anyhow::Ok((info.state.messages, ci.num_ack_pending))
        }
        .await;
        match state {
            Ok((left, pending)) if left == expected && (pending == 0 || !whole) => return None,
            Ok((left, pending)) if Instant::now() >= deadline => {
                return Some(format!(
                    "after acking, stream holds {left} messages (expected {expected}), \
                     {pending} acks pending"
                ))
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Some(format!("{e:#}")),
        }
    }
}
