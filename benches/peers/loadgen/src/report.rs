//! What every load generator shares: the workload options, a latency histogram and the one
//! JSON line each run prints.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Publish (`--window` unconfirmed messages per producer at most) or consume what an earlier
/// publish run left, acking every message on its own.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Publish,
    Consume,
}

/// Options every broker's subcommand takes.
#[derive(clap::Args, Clone, Debug)]
pub struct Workload {
    /// Publish, or consume messages left by an earlier publish run.
    #[arg(long, value_enum, default_value = "publish")]
    pub mode: Mode,
    /// Bytes of each message body.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Messages in all (split evenly among producers).
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Publishing connections (or consumers when consuming).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Messages published and not yet confirmed, per producer, at most (1 = one at a time);
    /// when consuming, the prefetch window.
    #[arg(long, default_value_t = 1000)]
    pub window: usize,
}

/// Send-to-confirm latency of each message, in microseconds.
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds"))
    }
}

impl Latency {
    pub fn record(&mut self, d: Duration) {
        self.0.saturating_record((d.as_micros() as u64).max(1));
    }
    pub fn add(&mut self, other: &Latency) {
        self.0.add(&other.0).expect("same histogram bounds");
    }
    fn ms(&self, q: f64) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.value_at_quantile(q) as f64 / 1000.0)
    }
}

/// One run's result: the line `benches/peers/run.sh` collects.
#[derive(Serialize, Debug)]
pub struct Report {
    /// e.g. `rabbitmq-quorum`, `nats-jetstream`.
    pub system: String,
    pub mode: Mode,
    /// What was promised before a confirm, in the broker's own words.
    pub durability: String,
    pub message_bytes: usize,
    pub producers: usize,
    pub window: usize,
    /// Messages confirmed (publish) or received and acked (consume).
    pub messages: u64,
    pub elapsed_s: f64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    /// Publish: send to confirm. Consume: not measured (null).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// `ok` when every message was confirmed (publish) or arrived exactly as many times as
    /// expected (consume); otherwise what was wrong.
    pub check: String,
}

impl Report {
    pub fn new(
        system: &str,
        durability: &str,
        w: &Workload,
        messages: u64,
        elapsed: Duration,
        latency: &Latency,
        check: String,
    ) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let msgs_per_s = messages as f64 / secs;
        Report {
            system: system.to_string(),
            mode: w.mode,
            durability: durability.to_string(),
            message_bytes: w.message_bytes,
            producers: w.producers,
            window: w.window,
            messages,
            elapsed_s: secs,
            msgs_per_s,
            mb_per_s: msgs_per_s * w.message_bytes as f64 / 1e6,
            p50_ms: latency.ms(0.5),
            p99_ms: latency.ms(0.99),
            p999_ms: latency.ms(0.999),
            max_ms: (!latency.0.is_empty()).then(|| latency.0.max() as f64 / 1000.0),
            check,
        }
    }
}

/// The `check` field: `ok`, or every problem found.
pub fn check_of(problems: &[String]) -> String {
    if problems.is_empty() {
        "ok".to_string()
    } else {
        problems.join("; ")
    }
}
