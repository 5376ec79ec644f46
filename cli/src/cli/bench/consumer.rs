//! The consumer tasks: anonymous subscribers from the start (topic) or competing consumers
//! acking every message (queue), each checking what it receives.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sluice::client::{Acker, Client, SubscribeOptions};
use sluice::protocol::{Source, Start};
use tokio::task::JoinHandle;

use super::check::Check;
use super::{merge, BenchArgs, BenchMode, Run, Shared, POLL};

/// get no reply at all), at most `ACKS_IN_FLIGHT` requests outstanding; every one is awaited
/// before the consumer finishes, so a failed ack still fails the run.
struct Acks {
    acker: Acker,
    held: Vec<(u32, u64)>,
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
pub(super) async fn warm_cache(addr: &str, name: &str, total: u64, credit: u32) -> Result<()> {
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

/// Connects and starts every consumer of the run.
pub(super) async fn spawn_all(
    run: &Run,
    a: &BenchArgs,
) -> Result<Vec<JoinHandle<(Check, Result<()>)>>> {
    let mut consumers = Vec::new();
    for _ in 0..a.consumers {
        let client = Client::connect(&run.addr).await?;
        let idle = Duration::from_millis(a.idle_timeout_ms);
        let task = consume(client, run.clone(), a.credit, a.producers, idle);
        consumers.push(tokio::spawn(task));
    }
    Ok(consumers)
}

/// One consumer: reads until it has everything (topic), or until the consumers together have
/// everything or all went idle (queue); its check and how it ended.
async fn consume(
    client: Client,
    run: Run,
    credit: u32,
    producers: usize,
    idle: Duration,
) -> (Check, Result<()>) {
    let ordered = run.mode == BenchMode::Topic;
    let mut check = Check::new(producers, run.per_producer, ordered);
    let result = match run.mode {
        BenchMode::Topic => read_topic(&client, &run, credit, idle, &mut check).await,
        BenchMode::Queue | BenchMode::ManyQueues => {
            read_queue(&client, &run, credit, idle, &mut check).await
        }
    };
    merge(&run.shared.deliver_ns, &check.hist);
    (check, result)
}

async fn read_topic(
    client: &Client,
    run: &Run,
    credit: u32,
    idle: Duration,
    check: &mut Check,
) -> Result<()> {
    let opts = SubscribeOptions::anonymous()
        .from(Start::Earliest)
        .credit(credit);
    let mut sub = client.subscribe(&run.name, opts).await?;
    let mut frames = Frames::new(&run.shared, run.clock);
    while check.received < run.total {
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
    Ok(())
}

async fn read_queue(
    client: &Client,
    run: &Run,
    credit: u32,
    idle: Duration,
    check: &mut Check,
) -> Result<()> {
    let mut cons = client
        .consume(Source::Queue(run.name.clone()), credit)
        .await?;
    let mut acker = Acks::new(cons.acker());
    // Ack every half window (the server's prefetch, which may be lower than asked), so the
    // window never closes while messages wait; what is held when nothing more arrives is acked
    // on the idle poll below.
    let ack_every = (cons.prefetch() as usize / 2).clamp(1, 1024);
    let mut frames = Frames::new(&run.shared, run.clock);
    loop {
        let buffered = cons.buffered();
        let d = match frames.next(buffered, cons.next(), POLL).await {
            Some(Some(d)) => d?,
            Some(None) => bail!("consumer ended"),
            None => {
                // Nothing buffered: ack what we hold, then stop once the consumers together
                // have everything or all went idle.
                acker.send().await?;
                let quiet = run.clock.elapsed().as_nanos() as u64 - frames.arrived_ns;
                if run.shared.delivered.load(Ordering::Relaxed) >= run.total
                    || quiet >= idle.as_nanos() as u64
                {
                    break;
                }
                continue;
            }
        };
        check.last_ns = frames.arrived_ns;
        check.record(&d.record.value, frames.arrived_ns);
        acker.held.push(d.id());
        if acker.held.len() >= ack_every {
            acker.send().await?;
        }
    }
    acker.finish().await?;
    Ok(())
}
