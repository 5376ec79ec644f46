//! A consumer group of a topic spread over the nodes of a cluster. Each node serves the
//! partitions of the group it leads, so a client given several nodes opens the group's
//! consumer on every node that accepts it and merges their deliveries into one [`Consumer`],
//! whose acks go back to the stream that delivered each partition ([`Routes`]). A task tries
//! the nodes without a stream again every [`SPREAD_RETRY`] (a node back after a restart, or
//! one that leads a partition again after leader balance), until the consumer is dropped; a
//! stream that ends (its node died, or it leads none of the partitions any more) is dropped,
//! and its node tried again. The consumer itself ends only when dropped or cancelled.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;

use super::connection::Conn;
use super::consumer::{Acker, Delivery, Part};
use super::failover::Failover;
use super::{Client, ConnectOptions, Consumer, Result, Source};

/// How often a spread consumer tries the nodes it has no stream on.
pub const SPREAD_RETRY: Duration = Duration::from_secs(1);

/// Which stream delivered each partition: where its acks go.
#[derive(Default)]
pub struct Routes {
    by_partition: Mutex<HashMap<u32, Acker>>,
}

impl Routes {
    fn set(&self, partition: u32, acker: &Acker) {
        let mut m = self.by_partition.lock().unwrap_or_else(|e| e.into_inner());
        let same = m.get(&partition).is_some_and(|a| a.same_stream(acker));
        if !same {
            m.insert(partition, acker.clone());
        }
    }

    /// `ids` grouped by the stream that delivered their partition (`own` for one never
    /// delivered), in the order of their first id.
    pub(super) fn split(&self, own: &Acker, ids: &[(u32, u64)]) -> Vec<(Acker, Vec<(u32, u64)>)> {
        let m = self.by_partition.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(Acker, Vec<(u32, u64)>)> = Vec::new();
        for &(p, o) in ids {
            let a = m.get(&p).unwrap_or(own);
            match out.iter_mut().find(|(x, _)| x.same_stream(a)) {
                Some((_, list)) => list.push((p, o)),
                None => out.push((a.clone(), vec![(p, o)])),
            }
        }
        out
    }
}

/// A spread consumer's side of the task opening its streams on other nodes.
pub(super) struct Joining {
    pub(super) routes: Arc<Routes>,
    rx: mpsc::UnboundedReceiver<Part>,
    /// The nodes (indexes among the client's addresses) with a stream.
    live: Arc<Mutex<BTreeSet<usize>>>,
}

/// Opens group `source` on every node of the client's list that accepts it; `None` when none
/// does (the caller then goes the usual way, retrying and reporting the failure).
pub(super) async fn consume_spread(
    client: &Client,
    f: &Arc<Failover>,
    source: &Source,
    prefetch: u32,
) -> Result<Option<Consumer>> {
    let opts = f.opts().clone();
    let partitions = client.inner.partitions.clone();
    let mut parts = Vec::new();
    let mut granted = prefetch;
    for i in 0..opts.addrs.len() {
        if let Ok((part, g)) = open_on(&opts, &partitions, i, source, prefetch).await {
            granted = g;
            parts.push(part);
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    let live = Arc::new(Mutex::new(parts.iter().map(|p| p.node).collect()));
    let (tx, rx) = mpsc::unbounded_channel();
    let task = keep_joining(opts, partitions, source.clone(), prefetch, live.clone(), tx);
    tokio::spawn(task);
    let joining = Joining {
        routes: Arc::default(),
        rx,
        live,
    };
    Ok(Some(Consumer::spread(parts, granted, joining)))
}

type Partitions = Arc<Mutex<HashMap<String, u32>>>;

async fn open_on(
    opts: &ConnectOptions,
    partitions: &Partitions,
    node: usize,
    source: &Source,
    prefetch: u32,
) -> Result<(Part, u32)> {
    let open = async {
        let conn = Conn::open(opts, &opts.addrs[node]).await?;
        let c = Client::on(conn, partitions.clone(), None);
        c.open_part(source.clone(), prefetch, node).await
    };
    // A node that takes the connection and never answers is tried again later.
    match tokio::time::timeout(opts.request_timeout, open).await {
        Ok(r) => r,
        Err(_) => Err(super::ClientError::TimedOut(opts.request_timeout)),
    }
}

/// Every [`SPREAD_RETRY`], opens the group on the nodes without a stream; ends when the
/// consumer is gone.
async fn keep_joining(
    opts: ConnectOptions,
    partitions: Partitions,
    source: Source,
    prefetch: u32,
    live: Arc<Mutex<BTreeSet<usize>>>,
    tx: mpsc::UnboundedSender<Part>,
) {
    loop {
        tokio::time::sleep(SPREAD_RETRY).await;
        for node in 0..opts.addrs.len() {
            if tx.is_closed() {
                return;
            }
            if live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&node)
            {
                continue;
            }
            let Ok((part, _)) = open_on(&opts, &partitions, node, &source, prefetch).await else {
                continue;
            };
            live.lock().unwrap_or_else(|e| e.into_inner()).insert(node);
            if let Err(mpsc::error::SendError(part)) = tx.send(part) {
                part.cancel_detached();
                return;
            }
        }
    }
}

/// The next delivery of a spread consumer: the parts take turns; a part that ends (an error
/// pushed, its connection gone) is dropped at once, and its node tried again by the task.
pub(super) fn poll_spread(
    c: &mut Consumer,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Delivery>>> {
    let joining = c.spread.as_mut().expect("a spread consumer");
    while let Poll::Ready(Some(p)) = joining.rx.poll_recv(cx) {
        c.parts.push(p);
    }
    let n = c.parts.len();
    let (mut found, mut ended) = (None, Vec::new());
    for k in 0..n {
        let i = (c.turn + k) % n;
        match c.parts[i].poll_delivery(cx) {
            Poll::Ready(Some(Ok(d))) => {
                joining.routes.set(d.partition, &c.parts[i].acker);
                c.turn = i + 1;
                found = Some(d);
                break;
            }
            Poll::Ready(Some(Err(_)) | None) => ended.push(i),
            Poll::Pending => {}
        }
    }
    ended.sort_unstable();
    for i in ended.into_iter().rev() {
        let p = c.parts.remove(i);
        p.cancel_detached();
        let mut live = joining.live.lock().unwrap_or_else(|e| e.into_inner());
        live.remove(&p.node);
    }
    match found {
        Some(d) => Poll::Ready(Some(Ok(d))),
        None => Poll::Pending,
    }
}
