//! The run's figures: a JSON line, or lines for people.

use std::sync::atomic::Ordering;

use serde_json::json;

use super::check::percentiles;
use super::{BenchArgs, Run};

/// Prints the report of a run.
pub(super) fn print(
    run: &Run,
    a: &BenchArgs,
    json_out: bool,
    publish_secs: f64,
    deliver_secs: f64,
    problems: &[String],
) {
    let delivered = run.shared.delivered.load(Ordering::Relaxed);
    let mb = |msgs: f64, secs: f64| msgs * a.message_bytes as f64 / secs / 1e6;
    let confirm = run
        .shared
        .confirm_ns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let deliver = run
        .shared
        .deliver_ns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let report = json!({
        "type": "bench",
        "server": if a.local { format!("local, fsync {}", a.fsync) } else { run.addr.clone() },
        "mode": format!("{:?}", a.mode).to_lowercase(),
        "protocol": format!("{:?}", a.protocol).to_lowercase(),
        "producers": a.producers,
        "consumers": a.consumers,
        "message_bytes": a.message_bytes,
        "batch": a.batch,
        "inflight": a.inflight,
        "messages": run.total,
        "publish": {
            "seconds": publish_secs,
            "msgs_per_s": run.total as f64 / publish_secs,
            "mb_per_s": mb(run.total as f64, publish_secs),
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
        print_for_people(&report, a);
    }
}

/// The report as lines for people.
fn print_for_people(report: &serde_json::Value, a: &BenchArgs) {
    println!(
        "{} {:?} over {:?}: {} producers, {} consumers, {} B messages, batches of {}, {} in flight",
        report["server"].as_str().unwrap_or_default(),
        a.mode,
        a.protocol,
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
