//! RabbitMQ over AMQP 0-9-1 (lapin): a quorum or a classic durable queue.
//!
//! - publish: `producers` connections, one channel each, in confirm mode; persistent messages
//!   (delivery_mode 2, `mandatory`) to the default exchange, routed to the queue. Each producer
//!   keeps at most `window` messages unconfirmed. Latency is send to confirm, per message.
//!   Throughput counts confirmed messages over the time from the first send to the last
//!   confirm. A nack, a returned (unroutable) message or a confirm that does not come within
//!   `--timeout-s` makes the check fail.
//! - consume: `producers` consumers (a connection each), prefetch `window`, manual acks, one
//!   `basic.ack` per message (never `multiple`), until `messages` were received; throughput
//!   is messages over the time from `basic.consume` to every consumer's acks being processed
//!   (`basic.cancel` answered, then the channel closed). The check: every (producer, sequence)
//!   the publish run wrote arrived exactly once, in order per producer when there is a single
//!   consumer, and nothing is left in the queue afterwards. The cancel matters for quorum
//!   queues: RabbitMQ 3.10 may still hold back some settles (acks) on the channel when it is
//!   closed straight after the last ack, and those messages went back to the queue (seen as
//!   "N messages left" before the cancel was added). Prefetch is capped at 65535 (AMQP's u16).
//!
//! Every body starts with the producer id and the sequence number (big-endian u64 each).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::future::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use crate::report::{check_of, Latency, Mode, Report, Workload};

const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5679/%2f";
/// Bytes at the start of each body: producer id, then sequence number.
const HEADER: usize = 16;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueType {
    /// Raft-replicated queue (one node here); confirms after the WAL is fsynced.
    Quorum,
    /// Classic durable queue; persistent messages are confirmed after the message store (or
    /// queue index) has fsynced them.
    Classic,
}

impl QueueType {
    fn name(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub workload: Workload,
    /// AMQP URL [default: $RABBITMQ_URL, else amqp://guest:guest@127.0.0.1:5679/%2f].
    #[arg(long)]
    pub url: Option<String>,
    /// Queue type (x-queue-type); the queue is always durable.
    #[arg(long, value_enum, default_value = "quorum")]
    pub queue_type: QueueType,
    /// Queue name [default: sluice-bench-<queue-type>].
    #[arg(long)]
    pub queue: Option<String>,
    /// Publish: keep the queue and what is in it (by default it is deleted and declared anew
    /// before publishing).
    #[arg(long)]
    pub keep_queue: bool,
    /// Seconds to wait for a confirm (publish) or for the next delivery (consume) before the
    /// run is given up as failed.
    #[arg(long, default_value_t = 60)]
    pub timeout_s: u64,
}

pub async fn run(a: Args) -> Result<Report> {
    let w = &a.workload;
    if w.message_bytes < HEADER {
        bail!("--message-bytes must be at least {HEADER} (producer id and sequence number)");
    }
    if w.producers == 0 || w.window == 0 {
        bail!("--producers and --window must be at least 1");
    }
    let url = a
        .url
        .clone()
        .or_else(|| std::env::var("RABBITMQ_URL").ok())
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let queue = a
        .queue
        .clone()
        .unwrap_or_else(|| format!("sluice-bench-{}", a.queue_type.name()));
    let system = format!("rabbitmq-{}", a.queue_type.name());
    let durability = match a.queue_type {
        QueueType::Quorum => {
            "quorum queue (1 node), persistent messages, publisher confirms (after WAL fsync)"
        }
        QueueType::Classic => {
            "classic durable queue, persistent messages, publisher confirms (after message store fsync)"
        }
    };
    let timeout = Duration::from_secs(a.timeout_s);

    let admin = connect(&url).await?;
    let admin_ch = admin
        .create_channel()
        .await
        .context("opening the admin channel")?;
    match w.mode {
        Mode::Publish => {
            if !a.keep_queue {
                admin_ch
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .with_context(|| format!("deleting queue {queue}"))?;
            }
            declare(&admin_ch, &queue, a.queue_type, false).await?;
        }
        Mode::Consume => {
            let q = declare(&admin_ch, &queue, a.queue_type, true).await?;
            if u64::from(q.message_count()) < w.messages {
                eprintln!(
                    "rabbitmq: queue {queue} holds {} messages, fewer than --messages {}",
                    q.message_count(),
                    w.messages
                );
            }
        }
    }

    let (count, elapsed, latency, check) = match w.mode {
        Mode::Publish => publish(&url, &queue, w, timeout).await?,
        Mode::Consume => {
            let (count, elapsed, mut check) = consume(&url, &queue, w, timeout).await?;
            // Whatever a consumer had prefetched beyond the total went back to the queue when
            // its channel closed; anything still there is more than the publish run wrote.
            let left = declare(&admin_ch, &queue, a.queue_type, true)
                .await?
                .message_count();
            if left > 0 && check == "ok" {
                check = format!("{left} messages left in queue {queue} after consuming all");
            }
            (count, elapsed, Latency::default(), check)
        }
    };
    let _ = admin.close(200, "OK".into()).await;
    Ok(Report::new(
        &system, durability, w, count, elapsed, &latency, check,
    ))
}

async fn connect(url: &str) -> Result<Connection> {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Declares the durable queue (or, `passive`, checks that it exists).
async fn declare(ch: &Channel, queue: &str, ty: QueueType, passive: bool) -> Result<lapin::Queue> {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(ty.name())),
    );
    let options = QueueDeclareOptions {
        passive,
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(queue.into(), options, args)
        .await
        .with_context(|| {
            if passive {
                format!("queue {queue} not found (run a publish first)")
            } else {
                format!(
                    "declaring durable {} queue {queue} (an existing queue of another type \
                     must be deleted first)",
                    ty.name()
                )
            }
        })
}

/// `total` split into `parts` counts, the first ones one larger when it does not divide.
fn split(total: u64, parts: usize) -> Vec<u64> {
    let parts = parts as u64;
    (0..parts)
        .map(|i| total / parts + u64::from(i < total % parts))
        .collect()
}

#[derive(Default)]
struct Published {
    latency: Latency,
    confirmed: u64,
    nacked: u64,
    returned: u64,
    timed_out: u64,
    last_confirm: Option<Instant>,
}

async fn publish(
    url: &str,
    queue: &str,
    w: &Workload,
    timeout: Duration,
) -> Result<(u64, Duration, Latency, String)> {
    // Every connection is open and in confirm mode before the clock starts.
    let mut producers = Vec::with_capacity(w.producers);
    for id in 0..w.producers {
        let conn = connect(url).await?;
        let ch = conn
            .create_channel()
            .await
            .context("opening a producer channel")?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        producers.push((id as u64, conn, ch));
    }
    let counts = split(w.messages, w.producers);
    let start = Instant::now();
    let tasks: Vec<_> = producers
        .into_iter()
        .zip(counts)
        .map(|((id, conn, ch), n)| {
            let queue = ShortString::from(queue);
            let (bytes, window) = (w.message_bytes, w.window);
            tokio::spawn(async move {
                let out = producer(&ch, id, queue, n, bytes, window, timeout).await;
                let _ = conn.close(200, "OK".into()).await;
                out
            })
        })
        .collect();

    let mut total = Published::default();
    for t in tasks {
        let p = t.await.context("producer task")??;
        total.latency.add(&p.latency);
        total.confirmed += p.confirmed;
        total.nacked += p.nacked;
        total.returned += p.returned;
        total.timed_out += p.timed_out;
        total.last_confirm = total.last_confirm.max(p.last_confirm);
    }
    let elapsed = total
        .last_confirm
        .map_or(Duration::ZERO, |t| t.duration_since(start));
    let mut problems = Vec::new();
    if total.nacked > 0 {
        problems.push(format!("{} nacked by the broker", total.nacked));
    }
    if total.returned > 0 {
        problems.push(format!("{} returned unroutable", total.returned));
    }
    if total.timed_out > 0 {
        problems.push(format!(
            "{} not confirmed within {}s",
            total.timed_out,
            timeout.as_secs()
        ));
    }
    if problems.is_empty() && total.confirmed != w.messages {
        problems.push(format!("{} of {} confirmed", total.confirmed, w.messages));
    }
    let check = check_of(&problems);
    Ok((total.confirmed, elapsed, total.latency, check))
}

async fn producer(
    ch: &Channel,
    id: u64,
    queue: ShortString,
    n: u64,
    bytes: usize,
    window: usize,
    timeout: Duration,
) -> Result<Published> {
    let mut out = Published::default();
    let mut body = vec![0u8; bytes];
    for (i, b) in body.iter_mut().enumerate().skip(HEADER) {
        *b = b'a' + (i % 26) as u8;
    }
    body[..8].copy_from_slice(&id.to_be_bytes());
    let props = BasicProperties::default().with_delivery_mode(2);
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    let mut in_flight = FuturesUnordered::new();
    let mut next = 0u64;
    while next < n || !in_flight.is_empty() {
        while next < n && in_flight.len() < window {
            body[8..HEADER].copy_from_slice(&next.to_be_bytes());
            let sent = Instant::now();
            let confirm = ch
                .basic_publish(
                    ShortString::from(""),
                    queue.clone(),
                    options,
                    &body,
                    props.clone(),
                )
                .await
                .context("basic.publish")?;
            in_flight.push(confirm.map(move |c| (sent, c)));
            next += 1;
        }
        // Wait for one confirm, then take every other one that is already in.
        let Ok(first) = tokio::time::timeout(timeout, in_flight.next()).await else {
            out.timed_out = in_flight.len() as u64 + (n - next);
            break;
        };
        let mut ready = first.into_iter().collect::<Vec<_>>();
        while let Some(Some(c)) = in_flight.next().now_or_never() {
            ready.push(c);
        }
        let now = Instant::now();
        for (sent, c) in ready {
            match c.context("waiting for a publisher confirm")? {
                Confirmation::Ack(None) => {
                    out.confirmed += 1;
                    out.latency.record(now.duration_since(sent));
                }
                Confirmation::Ack(Some(_)) => out.returned += 1,
                Confirmation::Nack(_) => out.nacked += 1,
                Confirmation::NotRequested => bail!("channel is not in confirm mode"),
            }
        }
        out.last_confirm = Some(now);
    }
    Ok(out)
}

struct Consumed {
    /// (producer id, sequence) in arrival order.
    seen: Vec<(u64, u64)>,
    wrong_size: u64,
    redelivered: u64,
    timed_out: bool,
    finished: Instant,
}

async fn consume(
    url: &str,
    queue: &str,
    w: &Workload,
    timeout: Duration,
) -> Result<(u64, Duration, String)> {
    let prefetch = u16::try_from(w.window).unwrap_or(u16::MAX);
    let mut consumers = Vec::with_capacity(w.producers);
    for _ in 0..w.producers {
        let conn = connect(url).await?;
        let ch = conn
            .create_channel()
            .await
            .context("opening a consumer channel")?;
        ch.basic_qos(prefetch, BasicQosOptions::default())
            .await
            .context("basic.qos")?;
        consumers.push((conn, ch));
    }
    let claimed = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let done_tx = Arc::new(done_tx);
    let start = Instant::now();
    let tasks: Vec<_> = consumers
        .into_iter()
        .enumerate()
        .map(|(i, (conn, ch))| {
            let queue = ShortString::from(queue);
            let claimed = claimed.clone();
            let (done_tx, done_rx) = (done_tx.clone(), done_rx.clone());
            let (total, bytes) = (w.messages, w.message_bytes);
            tokio::spawn(async move {
                let out = consumer(
                    &ch, i, queue, total, bytes, timeout, &claimed, &done_tx, done_rx,
                )
                .await;
                let _ = conn.close(200, "OK".into()).await;
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.context("consumer task")??);
    }
    let finished = all.iter().map(|c| c.finished).max().unwrap_or(start);
    let elapsed = finished.duration_since(start);
    let received: u64 = all.iter().map(|c| c.seen.len() as u64).sum();
    Ok((received, elapsed, check_consumed(&all, w.messages, timeout)))
}

#[allow(clippy::too_many_arguments)]
async fn consumer(
    ch: &Channel,
    index: usize,
    queue: ShortString,
    total: u64,
    bytes: usize,
    timeout: Duration,
    claimed: &AtomicU64,
    done_tx: &tokio::sync::watch::Sender<bool>,
    mut done_rx: tokio::sync::watch::Receiver<bool>,
) -> Result<Consumed> {
    let tag = ShortString::from(format!("sluice-bench-{index}"));
    let mut deliveries = ch
        .basic_consume(
            queue,
            tag.clone(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("basic.consume")?;
    let mut out = Consumed {
        seen: Vec::new(),
        wrong_size: 0,
        redelivered: 0,
        timed_out: false,
        finished: Instant::now(),
    };
    // Acks are sent one per message; lapin resolves each once it is written, so several are
    // kept going at once rather than waiting for each write in turn.
    let mut acks = FuturesUnordered::new();
    let mut done = *done_rx.borrow();
    while !done {
        tokio::select! {
            Some(r) = acks.next(), if !acks.is_empty() => {
                r?;
            }
            _ = done_rx.changed() => done = true,
            d = tokio::time::timeout(timeout, deliveries.next()) => {
                let delivery = match d {
                    Err(_) => {
                        out.timed_out = true;
                        done_tx.send_replace(true);
                        break;
                    }
                    Ok(None) => bail!("consumer {index}: the broker ended the delivery stream"),
                    Ok(Some(d)) => d.with_context(|| format!("consumer {index}: delivery"))?,
                };
                let n = claimed.fetch_add(1, Ordering::SeqCst);
                if n >= total {
                    // Beyond the total (another consumer got there first): not acked, so it
                    // goes back to the queue when the channel closes.
                    continue;
                }
                acks.push(record(&mut out, delivery, bytes));
                if n + 1 == total {
                    done_tx.send_replace(true);
                    done = true;
                }
            }
        }
    }
    finish(ch, index, tag, acks).await?;
    out.finished = Instant::now();
    Ok(out)
}

/// Counts one delivery in `out` (its producer and sequence, a body of the wrong size, a
/// redelivery) and returns its ack, to be sent.
fn record(
    out: &mut Consumed,
    delivery: Delivery,
    bytes: usize,
) -> impl Future<Output = Result<()>> {
    if delivery.data.len() != bytes {
        out.wrong_size += 1;
    }
    if delivery.redelivered {
        out.redelivered += 1;
    }
    let head = delivery.data.get(..HEADER).unwrap_or(&[0xff; HEADER]);
    let p = u64::from_be_bytes(head[..8].try_into().unwrap_or([0xff; 8]));
    let s = u64::from_be_bytes(head[8..].try_into().unwrap_or([0xff; 8]));
    out.seen.push((p, s));
    let acker = delivery.acker;
    async move {
        acker
            .ack(BasicAckOptions { multiple: false })
            .await
            .context("basic.ack")
            .and_then(|ok| {
                if ok {
                    Ok(())
                } else {
                    bail!("delivery acked twice")
                }
            })
    }
}

/// Waits for the acks still being sent, then cancels the consumer and closes its channel.
async fn finish<F: Future<Output = Result<()>>>(
    ch: &Channel,
    index: usize,
    tag: ShortString,
    mut acks: FuturesUnordered<F>,
) -> Result<()> {
    while let Some(r) = acks.next().await {
        r?;
    }
    // The broker handles a channel's frames in order, so the cancel is answered after every
    // ack was handled; for a quorum queue the cancel is a Raft command, applied after the
    // settles the channel has sent.
    ch.basic_cancel(tag, BasicCancelOptions::default())
        .await
        .with_context(|| format!("consumer {index}: basic.cancel"))?;
    ch.close(200, "OK".into())
        .await
        .with_context(|| format!("consumer {index}: closing the channel"))?;
    Ok(())
}

/// Every producer's sequence numbers 0..its share, exactly once each; in order per producer
/// when there was one consumer.
fn check_consumed(all: &[Consumed], total: u64, timeout: Duration) -> String {
    let mut problems = Vec::new();
    let received: u64 = all.iter().map(|c| c.seen.len() as u64).sum();
    if all.iter().any(|c| c.timed_out) {
        problems.push(format!(
            "received {received} of {total}: no delivery for {}s",
            timeout.as_secs()
        ));
    }
    let wrong_size: u64 = all.iter().map(|c| c.wrong_size).sum();
    if wrong_size > 0 {
        problems.push(format!("{wrong_size} bodies of the wrong size"));
    }
    let redelivered: u64 = all.iter().map(|c| c.redelivered).sum();
    if redelivered > 0 {
        problems.push(format!("{redelivered} redelivered"));
    }
    if all.len() == 1 {
        let mut last: HashMap<u64, u64> = HashMap::new();
        let out_of_order = all[0]
            .seen
            .iter()
            .filter(|&&(p, s)| last.insert(p, s).is_some_and(|prev| s <= prev))
            .count();
        if out_of_order > 0 {
            problems.push(format!("{out_of_order} out of order within their producer"));
        }
    }
    let mut by_producer: HashMap<u64, Vec<u64>> = HashMap::new();
    for &(p, s) in all.iter().flat_map(|c| &c.seen) {
        by_producer.entry(p).or_default().push(s);
    }
    let producers = by_producer.len();
    let expected = split(total, producers.max(1));
    let (mut duplicated, mut missing) = (0u64, 0u64);
    for p in 0..producers as u64 {
        let Some(seqs) = by_producer.get_mut(&p) else {
            problems.push(format!(
                "producer ids are not 0..{producers} (publish and consume --messages differ?)"
            ));
            break;
        };
        seqs.sort_unstable();
        let before = seqs.len();
        seqs.dedup();
        duplicated += (before - seqs.len()) as u64;
        let want = expected[p as usize];
        let present = seqs.iter().filter(|&&s| s < want).count() as u64;
        missing += want - present;
        if seqs.len() as u64 > present {
            problems.push(format!(
                "producer {p}: sequence numbers beyond its share of {want}"
            ));
        }
    }
    if duplicated > 0 {
        problems.push(format!("{duplicated} duplicated"));
    }
    if missing > 0 {
        problems.push(format!("{missing} missing"));
    }
    check_of(&problems)
}
