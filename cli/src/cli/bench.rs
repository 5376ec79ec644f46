//! `sluice bench`: end-to-end load over TCP, against a running server (`--addr`) or one it
//! starts on a temporary directory (`--local`).
//!
//! Every message carries `{ producer u32 | sequence u64 | sent_ns u64 | filler }`, so consumers
//! can check what they received (every message, once, and per producer in order on a topic) and
//! measure publish-to-delivery latency on the bench's own clock. A run whose check fails exits
//! non-zero: a fast but lossy run is never a result.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use sluice::client::{Acker, Client, SubscribeOptions};
use sluice::config::Config;
use sluice::protocol::{LogSettings, QueueSettings, Source, Start, Target};
use sluice::server::Server;
use sluice::storage::format::BatchBuilder;
use sluice::storage::{now_ms, FsyncPolicy};

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

fn message(producer: u32, seq: u64, sent_ns: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&producer.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&sent_ns.to_le_bytes());
    out.resize(len, b'x');
}

fn parse(value: &[u8]) -> Option<(u32, u64, u64)> {
    if value.len() < HEADER_BYTES {
        return None;
    }
    Some((
        u32::from_le_bytes(value[0..4].try_into().ok()?),
        u64::from_le_bytes(value[4..12].try_into().ok()?),
        u64::from_le_bytes(value[12..20].try_into().ok()?),
    ))
}

/// Per-consumer check of what arrived: counts per producer, order, duplicates.
struct Check {
    next_seq: Vec<u64>,
    seen: Vec<Vec<u64>>,
    ordered: bool,
    errors: Vec<String>,
    received: u64,
    /// When the last message arrived, on the bench clock.
    last_ns: u64,
    hist: Histogram<u64>,
}

impl Check {
    fn new(producers: usize, per_producer: u64, ordered: bool) -> Self {
        Check {
            next_seq: vec![0; producers],
            seen: vec![vec![0u64; per_producer.div_ceil(64) as usize]; producers],
            ordered,
            errors: Vec::new(),
            received: 0,
            last_ns: 0,
            hist: histogram(),
        }
    }

    fn record(&mut self, value: &[u8], now_ns: u64) {
        let Some((p, seq, sent)) = parse(value) else {
            self.error(format!(
                "message of {} bytes without a bench header",
                value.len()
            ));
            return;
        };
        let p = p as usize;
        if p >= self.next_seq.len() || seq / 64 >= self.seen[p].len() as u64 {
            self.error(format!("message from unknown producer {p} sequence {seq}"));
            return;
        }
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if self.seen[p][w] & (1 << b) != 0 {
            self.error(format!("producer {p} sequence {seq} delivered twice"));
        }
        self.seen[p][w] |= 1 << b;
        if self.ordered && seq != self.next_seq[p] {
            self.error(format!(
                "producer {p}: sequence {seq} arrived where {} was expected",
                self.next_seq[p]
            ));
        }
        self.next_seq[p] = seq + 1;
        self.received += 1;
        let _ = self.hist.record(now_ns.saturating_sub(sent).max(1_000));
    }

    fn error(&mut self, e: String) {
        if self.errors.len() < 10 {
            self.errors.push(e);
        }
    }
}

fn percentiles(h: &Option<Histogram<u64>>) -> serde_json::Value {
    match h {
        Some(h) if !h.is_empty() => json!({
            "p50_us": h.value_at_quantile(0.50) as f64 / 1e3,
            "p99_us": h.value_at_quantile(0.99) as f64 / 1e3,
            "p999_us": h.value_at_quantile(0.999) as f64 / 1e3,
            "max_us": h.max() as f64 / 1e3,
        }),
        _ => serde_json::Value::Null,
    }
}

/// Acks sent without waiting for each to be durable before reading on (an AMQP consumer's acks
/// get no reply at all), at most `ACKS_IN_FLIGHT` requests outstanding; every one is awaited
/// before the consumer finishes, so a failed ack still fails the run.
struct Acks {
    acker: Acker,
    held: Vec<u64>,
    in_flight: VecDeque<tokio::task::JoinHandle<Result<(), sluice::client::ClientError>>>,
}

/// Ack requests a bench consumer keeps outstanding.
const ACKS_IN_FLIGHT: usize = 4;

impl Acks {
    fn new(acker: Acker) -> Acks {
        Acks {
            acker,
            held: Vec::new(),
            in_flight: VecDeque::new(),
        }
    }

    /// Sends the held offsets as one ack request.
    async fn send(&mut self) -> Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= ACKS_IN_FLIGHT {
            self.wait_one().await?;
        }
        let offsets = std::mem::take(&mut self.held);
        let acker = self.acker.clone();
        self.in_flight
            .push_back(tokio::spawn(async move { acker.ack(&offsets).await }));
        Ok(())
    }

    async fn wait_one(&mut self) -> Result<()> {
        if let Some(h) = self.in_flight.pop_front() {
            h.await.context("an ack task failed")??;
        }
        Ok(())
    }

    /// Sends what is held and waits for every ack to be durable.
    async fn finish(&mut self) -> Result<()> {
        self.send().await?;
        while !self.in_flight.is_empty() {
            self.wait_one().await?;
        }
        Ok(())
    }
}

/// Takes a consumer's messages frame by frame. A message already received needs no timer, and
/// it arrived with the rest of its frame, so it takes the frame's arrival time: the clock is read
/// once per frame, not several times per message (on some VMs a clock read cost a fifth of the
/// consumer's CPU). The shared delivered count is updated per frame too.
struct Frames<'a> {
    shared: &'a Shared,
    clock: Instant,
    /// Taken since the last update of the shared count.
    counted: u64,
    /// When the current frame arrived, in ns since `clock`.
    arrived_ns: u64,
}

impl<'a> Frames<'a> {
    fn new(shared: &'a Shared, clock: Instant) -> Self {
        Frames {
            shared,
            clock,
            counted: 0,
            arrived_ns: clock.elapsed().as_nanos() as u64,
        }
    }

    /// `next` (the stream's next item) at once when `buffered` says one is waiting; otherwise
    /// waits up to `wait` for a new frame. `None` when the wait ran out.
    async fn next<T>(
        &mut self,
        buffered: usize,
        next: impl std::future::Future<Output = Option<T>>,
        wait: Duration,
    ) -> Option<Option<T>> {
        let item = if buffered > 0 {
            next.await
        } else {
            self.flush();
            let item = tokio::time::timeout(wait, next).await.ok()?;
            self.arrived_ns = self.clock.elapsed().as_nanos() as u64;
            item
        };
        self.counted += u64::from(item.is_some());
        Some(item)
    }

    /// Adds what was taken to the shared count.
    fn flush(&mut self) {
        self.shared
            .delivered
            .fetch_add(std::mem::take(&mut self.counted), Ordering::Relaxed);
    }
}

/// Reads the first `total` messages of topic `name` once and throws them away.
async fn warm_cache(addr: &str, name: &str, total: u64, credit: u32) -> Result<()> {
    let client = Client::connect(addr).await?;
    let mut sub = client
        .subscribe(
            name,
            SubscribeOptions::anonymous()
                .from(Start::Earliest)
                .credit(credit),
        )
        .await?;
    for _ in 0..total {
        match sub.next().await {
            Some(m) => drop(m?),
            None => bail!("the warm-up subscription ended early"),
        }
    }
    Ok(())
}

/// Runs the benchmark; returns an error (non-zero exit) when the check of what was received
/// fails.
pub async fn bench(addr: &str, json_out: bool, a: BenchArgs) -> Result<()> {
    if a.message_bytes < HEADER_BYTES {
        bail!("--message-bytes must be at least {HEADER_BYTES}");
    }
    if a.producers == 0 || a.batch == 0 || a.inflight == 0 || a.messages == 0 {
        bail!("--producers, --batch, --inflight and --messages must be above 0");
    }
    if a.warm_cache && a.mode != BenchMode::Topic {
        bail!("--warm-cache reads a topic; a queue read would consume its messages");
    }
    // A server of our own, if asked.
    let mut _tmp = None;
    let mut local = None;
    let addr = if a.local {
        let dir = tempfile::Builder::new()
            .prefix("sluice-bench")
            .tempdir_in(std::env::current_dir()?)
            .context("cannot create a temporary data directory here")?;
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            ..Config::default()
        };
        config.log.fsync = a.fsync;
        let server = Server::bind(config)
            .await
            .context("cannot start the server")?;
        let addr = server.local_addr()?.to_string();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stop_rx.await;
        }));
        local = Some((stop_tx, task));
        _tmp = Some(dir);
        addr
    } else {
        addr.to_string()
    };
    let admin = Client::connect(&addr)
        .await
        .with_context(|| format!("cannot reach the server at {addr}"))?;
    let name = format!("bench-{}-{}", std::process::id(), now_ms());
    match a.mode {
        BenchMode::Topic => admin.create_topic(&name, LogSettings::default()).await?,
        BenchMode::Queue => admin.create_queue(&name, QueueSettings::default()).await?,
    }
    let target = match a.mode {
        BenchMode::Topic => Target::Topic(name.clone()),
        BenchMode::Queue => Target::Queue(name.clone()),
    };

    let per_producer = a.messages.div_ceil(a.producers as u64);
    let total = per_producer * a.producers as u64;
    let expected_per_consumer = match a.mode {
        BenchMode::Topic => total,
        BenchMode::Queue => total, // the union over all consumers
    };
    let shared = Arc::new(Shared::default());
    let clock = Instant::now();
    let progress = if json_out || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
    } else {
        let pb = ProgressBar::new(total);
        pb.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} published {per_sec}",
            )
            .expect("valid template"),
        );
        pb
    };

    macro_rules! spawn_consumers {
        () => {{
        let mut consumers = Vec::new();
    for _ in 0..a.consumers {
        let client = Client::connect(&addr).await?;
        let shared = shared.clone();
        let (mode, name, credit, producers) = (a.mode, name.clone(), a.credit, a.producers);
        let idle = Duration::from_millis(a.idle_timeout_ms);
        let ordered = mode == BenchMode::Topic;
        consumers.push(tokio::spawn(async move {
            let mut check = Check::new(producers, per_producer, ordered);
            let result: Result<()> = async {
                match mode {
                    BenchMode::Topic => {
                        let mut sub = client
                            .subscribe(
                                &name,
                                SubscribeOptions::anonymous()
                                    .from(Start::Earliest)
                                    .credit(credit),
                            )
                            .await?;
                        let mut frames = Frames::new(&shared, clock);
                        while check.received < expected_per_consumer {
                            let buffered = sub.buffered();
                            let m = match frames.next(buffered, sub.next(), idle).await {
                                Some(Some(m)) => m?,
                                Some(None) => bail!("subscription ended"),
                                None => break,
                            };
                            check.last_ns = frames.arrived_ns;
                            check.record(&m.record.value, frames.arrived_ns);
                        }
                        frames.flush();
                    }
                    BenchMode::Queue => {
                        let mut cons = client.consume(Source::Queue(name.clone()), credit).await?;
                        let mut acker = Acks::new(cons.acker());
                        // Ack every half window (the server's prefetch, which may be lower
                        // than asked), so the window never closes while messages wait; what is
                        // held when nothing more arrives is acked on the idle poll below.
                        let ack_every = (cons.prefetch() as usize / 2).clamp(1, 1024);
                        let mut frames = Frames::new(&shared, clock);
                        loop {
                            let buffered = cons.buffered();
                            let d = match frames.next(buffered, cons.next(), POLL).await {
                                Some(Some(d)) => d?,
                                Some(None) => bail!("consumer ended"),
                                None => {
                                    // Nothing buffered: ack what we hold, then stop once the
                                    // consumers together have everything or all went idle.
                                    acker.send().await?;
                                    let quiet = clock.elapsed().as_nanos() as u64 - frames.arrived_ns;
                                    if shared.delivered.load(Ordering::Relaxed) >= total
                                        || quiet >= idle.as_nanos() as u64
                                    {
                                        break;
                                    }
                                    continue;
                                }
                            };
                            check.last_ns = frames.arrived_ns;
                            check.record(&d.record.value, frames.arrived_ns);
                            acker.held.push(d.offset);
                            if acker.held.len() >= ack_every {
                                acker.send().await?;
                            }
                        }
                        acker.finish().await?;
                    }
                }
                Ok(())
            }
            .await;
            merge(&shared.deliver_ns, &check.hist);
            (check, result)
        }));
    }

        consumers
        }};
    }
    // Consumers first, so a topic subscriber misses nothing (unless asked to read afterwards).
    let mut consumers = Vec::new();
    if !a.read_after {
        consumers = spawn_consumers!();
    }
    let started = Instant::now();
    let mut producers = Vec::new();
    for p in 0..a.producers {
        let client = Client::connect(&addr).await?;
        let shared = shared.clone();
        let target = target.clone();
        let progress = progress.clone();
        let (batch, inflight, size) = (a.batch, a.inflight, a.message_bytes);
        producers.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut pending = std::collections::VecDeque::new();
            let mut value = Vec::with_capacity(size);
            let mut seq = 0u64;
            let result: Result<()> = async {
                while seq < per_producer || !pending.is_empty() {
                    if seq < per_producer && pending.len() < inflight {
                        let n = (per_producer - seq).min(batch as u64);
                        let mut b = BatchBuilder::with_capacity(n as usize * (size + 8) + 64);
                        let sent = clock.elapsed().as_nanos() as u64;
                        let ts = now_ms();
                        for i in 0..n {
                            message(p as u32, seq + i, sent, size, &mut value);
                            b.push(ts, None, &[], &value);
                        }
                        seq += n;
                        let pp = client
                            .send_publish_encoded(target.clone(), b.finish())
                            .await?;
                        pending.push_back((Instant::now(), n, pp));
                        continue;
                    }
                    let (t, n, pp) = pending.pop_front().expect("pending batch");
                    pp.confirmed().await?;
                    let _ = hist.record((t.elapsed().as_nanos() as u64).max(1_000));
                    shared.published.fetch_add(n, Ordering::Relaxed);
                    progress.inc(n);
                }
                Ok(())
            }
            .await;
            merge(&shared.confirm_ns, &hist);
            result
        }));
    }
    for p in producers {
        p.await?.context("a producer failed")?;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    if a.warm_cache {
        warm_cache(&addr, &name, total, a.credit).await?;
    }
    let read_started = Instant::now();
    if a.read_after {
        consumers = spawn_consumers!();
    }
    let mut checks = Vec::new();
    for c in consumers {
        let (check, result) = c.await?;
        result.context("a consumer failed")?;
        checks.push(check);
    }
    // Delivery ends with the last message any consumer received, not with idle waiting.
    let start_ns = if a.read_after { read_started } else { started }
        .duration_since(clock)
        .as_nanos() as u64;
    let last_ns = checks.iter().map(|c| c.last_ns).max().unwrap_or(0);
    let deliver_secs = (last_ns.saturating_sub(start_ns) as f64 / 1e9).max(1e-9);
    if let Some((stop, task)) = local {
        let _ = stop.send(());
        let _ = task.await;
    }

    // What was received: every consumer everything (topic), or the union everything (queue).
    let mut problems: Vec<String> = checks.iter().flat_map(|c| c.errors.clone()).collect();
    match a.mode {
        BenchMode::Topic => {
            for (i, c) in checks.iter().enumerate() {
                if c.received != total {
                    problems.push(format!("subscriber {i} received {} of {total}", c.received));
                }
            }
        }
        BenchMode::Queue => {
            let got: u64 = checks.iter().map(|c| c.received).sum();
            let mut union = vec![vec![0u64; per_producer.div_ceil(64) as usize]; a.producers];
            for c in &checks {
                for (p, words) in c.seen.iter().enumerate() {
                    for (w, bits) in words.iter().enumerate() {
                        if union[p][w] & bits != 0 {
                            problems.push(format!("producer {p}: a message went to two consumers"));
                        }
                        union[p][w] |= bits;
                    }
                }
            }
            let distinct: u64 = union.iter().flatten().map(|w| w.count_ones() as u64).sum();
            if got != total || distinct != total {
                problems.push(format!(
                    "consumers received {got} ({distinct} distinct) of {total}"
                ));
            }
        }
    }
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let mb = |msgs: f64, secs: f64| msgs * a.message_bytes as f64 / secs / 1e6;
    let confirm = shared
        .confirm_ns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let deliver = shared
        .deliver_ns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let report = json!({
        "type": "bench",
        "server": if a.local { format!("local, fsync {}", a.fsync) } else { addr.clone() },
        "mode": format!("{:?}", a.mode).to_lowercase(),
        "producers": a.producers,
        "consumers": a.consumers,
        "message_bytes": a.message_bytes,
        "batch": a.batch,
        "inflight": a.inflight,
        "messages": total,
        "publish": {
            "seconds": publish_secs,
            "msgs_per_s": total as f64 / publish_secs,
            "mb_per_s": mb(total as f64, publish_secs),
            "confirm_latency_per_batch": percentiles(&confirm),
        },
        "delivery": {
            "seconds": deliver_secs,
            "messages": delivered,
            "msgs_per_s": delivered as f64 / deliver_secs,
            "mb_per_s": mb(delivered as f64, deliver_secs),
            "publish_to_delivery_latency": percentiles(&deliver),
        },
        "check": if problems.is_empty() { "ok".to_string() } else { problems.join("; ") },
    });
    if json_out {
        println!("{report}");
    } else {
        println!(
            "{} {:?}: {} producers, {} consumers, {} B messages, batches of {}, {} in flight",
            report["server"].as_str().unwrap_or_default(),
            a.mode,
            a.producers,
            a.consumers,
            a.message_bytes,
            a.batch,
            a.inflight
        );
        println!(
            "publish:  {:>12.0} msgs/s {:>9.1} MB/s  confirm p50 {} p99 {} p99.9 {} max {} (us, per batch)",
            report["publish"]["msgs_per_s"].as_f64().unwrap_or(0.0),
            report["publish"]["mb_per_s"].as_f64().unwrap_or(0.0),
            report["publish"]["confirm_latency_per_batch"]["p50_us"],
            report["publish"]["confirm_latency_per_batch"]["p99_us"],
            report["publish"]["confirm_latency_per_batch"]["p999_us"],
            report["publish"]["confirm_latency_per_batch"]["max_us"],
        );
        println!(
            "delivery: {:>12.0} msgs/s {:>9.1} MB/s  publish-to-delivery p50 {} p99 {} p99.9 {} max {} (us)",
            report["delivery"]["msgs_per_s"].as_f64().unwrap_or(0.0),
            report["delivery"]["mb_per_s"].as_f64().unwrap_or(0.0),
            report["delivery"]["publish_to_delivery_latency"]["p50_us"],
            report["delivery"]["publish_to_delivery_latency"]["p99_us"],
            report["delivery"]["publish_to_delivery_latency"]["p999_us"],
            report["delivery"]["publish_to_delivery_latency"]["max_us"],
        );
        println!("check:    {}", report["check"].as_str().unwrap_or_default());
    }
    if !problems.is_empty() {
        bail!(
            "the check of what was received failed: {}",
            problems.join("; ")
        );
    }
    Ok(())
}
