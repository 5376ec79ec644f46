//! What a consumer checks: every message once, per producer in order on a topic; and the
//! check of the run over every consumer.

use hdrhistogram::Histogram;
use serde_json::json;

use super::{histogram, BenchArgs, BenchMode, Run, HEADER_BYTES};

pub(super) fn message(producer: u32, seq: u64, sent_ns: u64, len: usize, out: &mut Vec<u8>) {
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
pub(super) struct Check {
    next_seq: Vec<u64>,
    pub(super) seen: Vec<Vec<u64>>,
    ordered: bool,
    pub(super) errors: Vec<String>,
    pub(super) received: u64,
    /// When the last message arrived, on the bench clock.
    pub(super) last_ns: u64,
    pub(super) hist: Histogram<u64>,
}

impl Check {
    pub(super) fn new(producers: usize, per_producer: u64, ordered: bool) -> Self {
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

    pub(super) fn record(&mut self, value: &[u8], now_ns: u64) {
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

pub(super) fn percentiles(h: &Option<Histogram<u64>>) -> serde_json::Value {
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

/// What was received: every consumer everything (topic), or the union everything (queue). The
/// problems found, none when the run is good.
pub(super) fn received(run: &Run, a: &BenchArgs, checks: &[Check]) -> Vec<String> {
    let total = run.total;
    let mut problems: Vec<String> = checks.iter().flat_map(|c| c.errors.clone()).collect();
    match a.mode {
        BenchMode::Topic => {
            for (i, c) in checks.iter().enumerate() {
                if c.received != total {
                    problems.push(format!("subscriber {i} received {} of {total}", c.received));
                }
            }
        }
        BenchMode::Queue | BenchMode::ManyQueues => {
            let got: u64 = checks.iter().map(|c| c.received).sum();
            let mut union = vec![vec![0u64; run.per_producer.div_ceil(64) as usize]; a.producers];
            for c in checks {
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
    problems
}
