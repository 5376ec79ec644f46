//! The producer tasks: batches of bench messages, a bounded number in flight, each confirm's
//! latency recorded.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Result;
use indicatif::ProgressBar;
use sluice::client::{Client, Route};
use sluice::storage::format::BatchBuilder;
use sluice::storage::now_ms;
use tokio::task::JoinHandle;

use super::check::message;
use super::{histogram, merge, BenchArgs, Run};

/// Connects and starts producer `p`.
pub(super) async fn spawn(
    run: &Run,
    a: &BenchArgs,
    p: u32,
    progress: ProgressBar,
) -> Result<JoinHandle<Result<()>>> {
    let client = Client::connect(&run.addr).await?;
    let task = produce(
        client,
        run.clone(),
        p,
        (a.batch, a.inflight, a.message_bytes),
        progress,
    );
    Ok(tokio::spawn(task))
}

/// Publishes this producer's share in batches of `batch`, `inflight` unconfirmed at most.
async fn produce(
    client: Client,
    run: Run,
    p: u32,
    (batch, inflight, size): (usize, usize, usize),
    progress: ProgressBar,
) -> Result<()> {
    let (per_producer, clock) = (run.per_producer, run.clock);
    let mut hist = histogram();
    let mut pending = VecDeque::new();
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
                    message(p, seq + i, sent, size, &mut value);
                    b.push(ts, None, &[], &value);
                }
                seq += n;
                let pp = client
                    .send_publish_encoded(run.target.clone(), Route::Any, b.finish())
                    .await?;
                pending.push_back((Instant::now(), n, pp));
                continue;
            }
            let (t, n, pp) = pending.pop_front().expect("pending batch");
            pp.confirmed().await?;
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
