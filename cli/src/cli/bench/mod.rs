//! `sluice bench`: end-to-end load over TCP, against a running server (`--addr`) or one it
//! starts on a temporary directory (`--local`).
//!
//! Every message carries `{ producer u32 | sequence u64 | sent_ns u64 | filler }`, so consumers
//! can check what they received (every message, once, and per producer in order on a topic) and
//! measure publish-to-delivery latency on the bench's own clock. A run whose check fails exits
//! non-zero: a fast but lossy run is never a result.
//!
//! `mod.rs` holds the arguments and the driver; `producer` and `consumer` the tasks, `check`
//! what a consumer verifies, `report` the figures.

mod check;
mod consumer;
mod kafka;
mod kafka_share;
mod many;
mod producer;
mod report;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice::client::Client;
use sluice::config::Config;
use sluice::protocol::{LogSettings, QueueSettings, Target};
use sluice::server::Server;
use sluice::storage::{now_ms, FsyncPolicy};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often an idle queue consumer looks whether the others already received everything.
const POLL: Duration = Duration::from_millis(50);

/// Bytes of the header every bench message starts with.
const HEADER_BYTES: usize = 20;

/// Topic (every consumer gets every message) or queue (consumers compete, acking each one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// Publish to a topic; each consumer is an anonymous subscriber from the start.
    Topic,
    /// Publish to a queue; consumers compete and ack every message.
    Queue,
    /// Many small queues busy at once (`--queues`), one acking consumer each, `--producers`
    /// publishers with one batch in flight each, spread over the queues.
    ManyQueues,
}

/// The protocol the producers and consumers speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchProtocol {
    /// sluice's own protocol.
    Native,
    /// The Kafka wire protocol, to the broker's Kafka listener (in queue mode: share consumers
    /// of one share group on a topic).
    Kafka,
}

/// Arguments of `bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Start a server in this process on a temporary data directory instead of using --addr.
    #[arg(long)]
    pub local: bool,
    /// Durability of the --local server: always | interval:<ms> | never.
    #[arg(long, default_value = "always")]
    pub fsync: FsyncPolicy,
    /// Topic or queue.
    #[arg(long, value_enum, default_value = "topic")]
    pub mode: BenchMode,
    /// Protocol of the producers and consumers (the topic is created natively either way).
    #[arg(long, value_enum, default_value = "native")]
    pub protocol: BenchProtocol,
    /// The Kafka listener of the server at --addr (with --protocol kafka and without --local).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub kafka_addr: String,
    /// Producer connections.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer connections (subscribers in topic mode, competing consumers in queue mode).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Bytes per message (at least 20).
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Messages per published batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Batches each producer keeps in flight (sent, not yet confirmed).
    #[arg(long, default_value_t = 8)]
    pub inflight: usize,
    /// Total messages over all producers.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Subscriber credit or queue prefetch per consumer.
    #[arg(long, default_value_t = 20_000)]
    pub credit: u32,
    /// Start the consumers only after every message is published: measures delivery of an
    /// already written log instead of tailing.
    #[arg(long)]
    pub read_after: bool,
    /// With --read-after on a topic: read the whole log once, unmeasured, before the measured
    /// read, so that it comes from the page cache (direct writes leave nothing cached, so
    /// without this the first read comes from the disk).
    #[arg(long, requires = "read_after")]
    pub warm_cache: bool,
    /// Give up when consumers receive nothing for this long after producers finished.
    #[arg(long, default_value_t = 30_000)]
    pub idle_timeout_ms: u64,
    /// Queues of `--mode many-queues`.
    #[arg(long, default_value_t = 1000)]
    pub queues: usize,
    /// Connections the publishers and consumers of `--mode many-queues` share.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// With `--mode many-queues`: run this many queues at a time, one wave after another
    /// (0: all at once).
    #[arg(long, default_value_t = 0)]
    pub wave: usize,
    /// With `--mode many-queues`: use the existing queues `<prefix>-0` .. `<prefix>-<n-1>`
    /// instead of creating new ones.
    #[arg(long)]
    pub queue_prefix: Option<String>,
}

#[derive(Default)]
struct Shared {
    published: AtomicU64,
    delivered: AtomicU64,
    confirm_ns: Mutex<Option<Histogram<u64>>>,
    deliver_ns: Mutex<Option<Histogram<u64>>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 600_000_000_000, 3).expect("valid histogram bounds")
}

fn merge(into: &Mutex<Option<Histogram<u64>>>, h: &Histogram<u64>) {
    let mut g = into.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(histogram)
        .add(h)
        .expect("histograms of the same bounds");
}

/// What every task of one run shares: where to connect, what to publish to and read, the
/// sizes, the counters and histograms, and the bench clock.
#[derive(Clone)]
struct Run {
    addr: String,
    name: String,
    target: Target,
    mode: BenchMode,
    per_producer: u64,
    total: u64,
    shared: Arc<Shared>,
    clock: Instant,
}

/// A server of the bench's own (`--local`): how to stop it, its task, and its temporary data
/// directory (removed when dropped).
struct Local {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), sluice::server::ServerError>>,
    _dir: tempfile::TempDir,
}

/// Starts a server on a temporary directory under the current one, its Kafka listener on a
/// free port when `kafka`; returns its addresses.
async fn start_local(fsync: FsyncPolicy, kafka: bool) -> Result<(String, Option<String>, Local)> {
    let dir = tempfile::Builder::new()
        .prefix("sluice-bench")
        .tempdir_in(std::env::current_dir()?)
        .context("cannot create a temporary data directory here")?;
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        kafka_listen: match kafka {
            true => "127.0.0.1:0".into(),
            false => sluice::config::KAFKA_LISTEN_OFF.into(),
        },
        // Served, as in production (the counters run either way), on a free port.
        http_listen: "127.0.0.1:0".into(),
        ..Config::default()
    };
    config.log.fsync = fsync;
    let server = Server::bind(config)
        .await
        .context("cannot start the server")?;
    let addr = server.local_addr()?.to_string();
    let kafka_addr = server
        .kafka_local_addr()
        .transpose()?
        .map(|a| a.to_string());
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    Ok((
        addr,
        kafka_addr,
        Local {
            stop,
            task,
            _dir: dir,
        },
    ))
}

fn check_args(a: &BenchArgs) -> Result<()> {
    if a.message_bytes < HEADER_BYTES {
        bail!("--message-bytes must be at least {HEADER_BYTES}");
    }
    if a.producers == 0 || a.batch == 0 || a.inflight == 0 || a.messages == 0 {
        bail!("--producers, --batch, --inflight and --messages must be above 0");
    }
    if a.mode == BenchMode::ManyQueues && a.protocol != BenchProtocol::Native {
        bail!("--mode many-queues speaks the native protocol");
    }
    if a.warm_cache && a.mode != BenchMode::Topic {
        bail!("--warm-cache reads a topic; a queue read would consume its messages");
    }
    Ok(())
}

/// The publish progress bar (hidden for JSON output or when stderr is not a terminal).
fn progress_bar(json_out: bool, total: u64) -> ProgressBar {
    if json_out || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} published {per_sec}",
        )
        .expect("valid template"),
    );
    pb
}

/// Creates the run's topic or queue (a fresh name) and describes the run.
async fn prepare(addr: String, a: &BenchArgs) -> Result<Run> {
    let admin = Client::connect(&addr)
        .await
        .with_context(|| format!("cannot reach the server at {addr}"))?;
    let name = format!("bench-{}-{}", std::process::id(), now_ms());
    // Over Kafka, competing consumers are share consumers of a topic (a share group).
    let queue = a.mode == BenchMode::Queue && a.protocol == BenchProtocol::Native;
    let target = if queue {
        admin.create_queue(&name, QueueSettings::default()).await?;
        Target::Queue(name.clone())
    } else {
        admin.create_topic(&name, LogSettings::default()).await?;
        Target::Topic(name.clone())
    };
    let per_producer = a.messages.div_ceil(a.producers as u64);
    Ok(Run {
        addr,
        name,
        target,
        mode: a.mode,
        per_producer,
        total: per_producer * a.producers as u64,
        shared: Arc::new(Shared::default()),
        clock: Instant::now(),
    })
}

/// The run's consumers, over the Kafka listener at `kafka` or natively.
async fn spawn_consumers(
    run: &Run,
    a: &BenchArgs,
    kafka: Option<&str>,
) -> Result<Vec<JoinHandle<(check::Check, Result<()>)>>> {
    match kafka {
        Some(k) if a.mode == BenchMode::Queue => kafka_share::spawn_consumers(k, run, a).await,
        Some(k) => kafka::spawn_consumers(k, run, a).await,
        None => consumer::spawn_all(run, a).await,
    }
}

/// Runs the benchmark; returns an error (non-zero exit) when the check of what was received
/// fails.
pub async fn bench(addr: &str, json_out: bool, a: BenchArgs) -> Result<()> {
    check_args(&a)?;
    // A server of our own, if asked.
    let kafka = a.protocol == BenchProtocol::Kafka;
    let (addr, kafka_addr, local) = if a.local {
        let (addr, kafka_addr, local) = start_local(a.fsync, kafka).await?;
        (addr, kafka_addr, Some(local))
    } else {
        (addr.to_string(), Some(a.kafka_addr.clone()), None)
    };
    let kafka_addr = kafka_addr.filter(|_| kafka);
    if a.mode == BenchMode::ManyQueues {
        let server = if a.local {
            format!("local, fsync {}", a.fsync)
        } else {
            addr.clone()
        };
        let r = many::bench(&addr, json_out, &a, &server).await;
        if let Some(local) = local {
            let _ = local.stop.send(());
            let _ = local.task.await;
        }
        return r;
    }
    let run = prepare(addr, &a).await?;
    let progress = progress_bar(json_out, run.total);
    // Consumers first, so a topic subscriber misses nothing (unless asked to read afterwards).
    let mut consumers = Vec::new();
    if !a.read_after {
        consumers = spawn_consumers(&run, &a, kafka_addr.as_deref()).await?;
    }
    let started = Instant::now();
    let mut producers = Vec::new();
    for p in 0..a.producers {
        let pb = progress.clone();
        producers.push(match kafka_addr.as_deref() {
            Some(k) => kafka::spawn_producer(k, &run, &a, p as u32, pb).await?,
            None => producer::spawn(&run, &a, p as u32, pb).await?,
        });
    }
    for p in producers {
        p.await?.context("a producer failed")?;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    if a.warm_cache {
        consumer::warm_cache(&run.addr, &run.name, run.total, a.credit).await?;
    }
    let read_started = Instant::now();
    if a.read_after {
        consumers = spawn_consumers(&run, &a, kafka_addr.as_deref()).await?;
    }
    let mut checks = Vec::new();
    for c in consumers {
        let (check, result) = c.await?;
        result.context("a consumer failed")?;
        checks.push(check);
    }
    // Delivery ends with the last message any consumer received, not with idle waiting.
    let start_ns = if a.read_after { read_started } else { started }
        .duration_since(run.clock)
        .as_nanos() as u64;
    let last_ns = checks.iter().map(|c| c.last_ns).max().unwrap_or(0);
    let deliver_secs = (last_ns.saturating_sub(start_ns) as f64 / 1e9).max(1e-9);
    if let Some(local) = local {
        let _ = local.stop.send(());
        let _ = local.task.await;
    }
    let problems = check::received(&run, &a, &checks);
    report::print(&run, &a, json_out, publish_secs, deliver_secs, &problems);
    if !problems.is_empty() {
        bail!(
            "the check of what was received failed: {}",
            problems.join("; ")
        );
    }
    Ok(())
}
