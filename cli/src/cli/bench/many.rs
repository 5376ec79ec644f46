//! `sluice bench --mode many-queues`: many small queues busy at once. `--queues` queues, each
//! with one consumer that acks every message; `--producers` publisher tasks, publisher `j`
//! publishing to queue `j % queues` in batches of `--batch`, one batch in flight (each waits
//! for its confirmation: a modest rate per publisher, as from many small clients). Tasks share
//! `--connections` connections. The check: every queue got exactly what was published to it.
//!
//! Run once with many queues and once with `--queues 1` and the same publishers: the ratio of
//! the two totals says whether syncs are shared across queues as well as within one.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use sluice::client::Client;
use sluice::protocol::{QueueSettings, Source};
use sluice::storage::{now_ms, Record};

use super::BenchArgs;

/// What a many-queues run measured.
struct Outcome {
    published: u64,
    delivered: u64,
    seconds: f64,
    problems: Vec<String>,
}

/// Creates the queues, pipelined (or takes the existing `<prefix>-<i>`); returns their names.
async fn create_queues(c: &Client, n: usize, existing: Option<&str>) -> Result<Vec<String>> {
    if let Some(p) = existing {
        return Ok((0..n).map(|i| format!("{p}-{i}")).collect());
    }
    let prefix = format!("many-{}-{}", std::process::id(), now_ms());
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let mut tasks = Vec::new();
    for chunk in names.chunks(64) {
        for n in chunk {
            let (c, n) = (c.clone(), n.clone());
            tasks.push(tokio::spawn(async move {
                c.create_queue(&n, QueueSettings::default()).await
            }));
        }
        for t in tasks.drain(..) {
            t.await?.context("cannot create a queue")?;
        }
    }
    Ok(names)
}

/// One publisher: `count` messages to `queue` in batches of `batch`, each confirmed before the
/// next is sent.
async fn publish(c: Client, queue: String, count: u64, batch: usize, bytes: usize) -> Result<()> {
    let mut sent = 0u64;
    while sent < count {
        let n = (count - sent).min(batch as u64);
        let records: Vec<Record> = (0..n)
            .map(|_| Record::from_value(vec![0x61u8; bytes]))
            .collect();
        c.publish(&queue, &records)
            .await
            .with_context(|| format!("publish to {queue}"))?;
        sent += n;
    }
    Ok(())
}

/// One queue's consumer: takes `expect` messages, acking what it has received so far in one
/// ack (as a consumer that works through what arrived together would); returns the offsets it
/// saw.
async fn consume(
    c: Client,
    queue: String,
    expect: u64,
    prefetch: u32,
    delivered: Arc<AtomicU64>,
    idle: Duration,
) -> Result<Vec<u64>> {
    let mut cons = c.consume(Source::Queue(queue.clone()), prefetch).await?;
    let acker = cons.acker();
    let mut seen = Vec::with_capacity(expect as usize);
    while (seen.len() as u64) < expect {
        let d = match tokio::time::timeout(idle, cons.next()).await {
            Ok(Some(d)) => d.with_context(|| format!("consume from {queue}"))?,
            Ok(None) => bail!("the consumer of {queue} ended"),
            Err(_) => bail!("{queue}: nothing for {} ms", idle.as_millis()),
        };
        let mut ids = vec![d.id()];
        while cons.buffered() > 0 {
            match cons.next().await {
                Some(d) => ids.push(d?.id()),
                None => break,
            }
        }
        seen.extend(ids.iter().map(|&(_, o)| o));
        delivered.fetch_add(ids.len() as u64, Ordering::Relaxed);
        acker.ack(&ids).await?;
    }
    Ok(seen)
}

async fn connections(addr: &str, n: usize) -> Result<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(
            Client::connect(addr)
                .await
                .with_context(|| format!("cannot reach the server at {addr}"))?,
        );
    }
    Ok(out)
}

async fn run(addr: &str, a: &BenchArgs) -> Result<Outcome> {
    let queues = a.queues.max(1);
    let conns = connections(addr, a.connections.max(1)).await?;
    let names = create_queues(&conns[0], queues, a.queue_prefix.as_deref()).await?;
    // Messages per queue: what its publishers send.
    let per_publisher = a.messages.div_ceil(a.producers as u64);
    let mut per_queue = vec![0u64; queues];
    for j in 0..a.producers {
        per_queue[j % queues] += per_publisher;
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut problems = Vec::new();
    let wave = if a.wave == 0 { queues } else { a.wave };
    for first in (0..queues).step_by(wave) {
        let range = first..(first + wave).min(queues);
        let w = Wave {
            names: &names,
            per_queue: &per_queue,
            conns: &conns,
            delivered: &delivered,
        };
        problems.extend(w.run(a, range, per_publisher).await?);
    }
    Ok(Outcome {
        published: per_queue.iter().sum(),
        delivered: delivered.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        problems,
    })
}

/// The queues of one wave, run together: their consumers, and the publishers of those queues.
struct Wave<'a> {
    names: &'a [String],
    per_queue: &'a [u64],
    conns: &'a [Client],
    delivered: &'a Arc<AtomicU64>,
}

impl Wave<'_> {
    /// Runs the queues `range`; the problems found.
    async fn run(
        &self,
        a: &BenchArgs,
        range: std::ops::Range<usize>,
        per_publisher: u64,
    ) -> Result<Vec<String>> {
        let (names, conns) = (self.names, self.conns);
        let queues = names.len();
        let idle = Duration::from_millis(a.idle_timeout_ms);
        let mut consumers = Vec::new();
        for i in range.clone() {
            let c = conns[i % conns.len()].clone();
            let prefetch = (a.batch as u32).saturating_mul(2).max(1);
            let f = consume(
                c,
                names[i].clone(),
                self.per_queue[i],
                prefetch,
                self.delivered.clone(),
                idle,
            );
            consumers.push((i, tokio::spawn(f)));
        }
        let mut publishers = Vec::new();
        for j in (0..a.producers).filter(|j| range.contains(&(j % queues))) {
            let c = conns[(j + 1) % conns.len()].clone();
            let q = names[j % queues].clone();
            let f = publish(c, q, per_publisher, a.batch, a.message_bytes);
            publishers.push(tokio::spawn(f));
        }
        for p in publishers {
            p.await?.context("a publisher failed")?;
        }
        let mut problems = Vec::new();
        for (i, c) in consumers {
            match c.await? {
                Ok(seen) => {
                    let distinct: BTreeSet<u64> = seen.iter().copied().collect();
                    if distinct.len() != seen.len() || distinct.len() as u64 != self.per_queue[i] {
                        problems.push(format!(
                            "{}: {} deliveries of {} distinct offsets, {} published",
                            names[i],
                            seen.len(),
                            distinct.len(),
                            self.per_queue[i]
                        ));
                    }
                }
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
        Ok(problems)
    }
}

/// Runs the many-queues benchmark against `addr` and prints its figures.
pub(super) async fn bench(addr: &str, json_out: bool, a: &BenchArgs, server: &str) -> Result<()> {
    let o = run(addr, a).await?;
    let rate = o.delivered as f64 / o.seconds;
    let check = if o.problems.is_empty() {
        "ok".to_string()
    } else {
        o.problems.join("; ")
    };
    if json_out {
        let report = json!({
            "type": "bench",
            "mode": "many-queues",
            "server": server,
            "queues": a.queues,
            "producers": a.producers,
            "connections": a.connections,
            "batch": a.batch,
            "message_bytes": a.message_bytes,
            "published": o.published,
            "delivered": o.delivered,
            "seconds": o.seconds,
            "msgs_per_s": rate,
            "check": check,
        });
        println!("{report}");
    } else {
        println!(
            "{server}: {} queues, {} publishers (batches of {}, one in flight), {} connections",
            a.queues, a.producers, a.batch, a.connections
        );
        println!(
            "published {} and delivered {} (acked) in {:.2} s: {rate:.0} msgs/s",
            o.published, o.delivered, o.seconds
        );
        println!("check:    {check}");
    }
    if !o.problems.is_empty() {
        bail!("the check of what was received failed: {check}");
    }
    Ok(())
}
