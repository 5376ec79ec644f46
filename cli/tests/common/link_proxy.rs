//! A proxy in front of each node's cluster listener, under the test's control: every link
//! between two nodes, in each direction, can be delayed or blocked on its own (one-way
//! partitions), on loopback and without root or `netem`.
//!
//! Nodes are told the proxies' addresses (`--cluster`) and bind their real listeners elsewhere
//! (`--cluster-listen`). A proxy learns which node dialed it from the connection's first frame,
//! the caller's greeting (`{ 24-byte frame header | cluster id (16) | from u64 | to u64 }`), so
//! one proxy per node serves every link into it. Blocked bytes are held, not dropped (the
//! stream stays whole, as TCP would keep retransmitting), and flow once the link is restored.
//! A lossy link ([`Rule::damage_one_in`]) flips a byte of some chunks or cuts the connection:
//! what a flaky network can do to a stream beyond delaying it (bytes damaged past the
//! checksums below it, connections reset); the receiving node must refuse the damaged frame.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The bytes of a greeting frame: its header and its payload.
const GREETING_FRAME_BYTES: usize = 24 + 32;

/// Most chunks one direction of one connection holds (then it stops reading: backpressure).
const HELD_CHUNKS_MAX: usize = 4096;

/// What a link from one node to another does to the bytes it carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Each chunk is delivered this long after it was read.
    pub delay: Duration,
    /// Nothing is delivered while set.
    pub blocked: bool,
    /// With `n` > 0, about one chunk in `n` has a byte flipped, and as many connections are
    /// cut instead of carrying the chunk.
    pub damage_one_in: u32,
}

/// The rule of every directed link `(from, to)`; absent: delivered at once. Counts the chunks
/// damaged and the connections cut.
#[derive(Default)]
pub struct Links(
    Mutex<BTreeMap<(u64, u64), Rule>>,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicU64,
);

impl Links {
    pub fn set(&self, from: u64, to: u64, rule: Rule) {
        self.0.lock().unwrap().insert((from, to), rule);
    }

    /// Every link of `node`, both ways, to each of `others`.
    pub fn set_around(&self, node: u64, others: &[u64], rule: Rule) {
        for &o in others.iter().filter(|o| **o != node) {
            self.set(node, o, rule);
            self.set(o, node, rule);
        }
    }

    pub fn heal_all(&self) {
        self.0.lock().unwrap().clear();
    }

    /// (chunks with a byte flipped, connections cut) so far.
    pub fn damage(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.1.load(Relaxed), self.2.load(Relaxed))
    }

    fn get(&self, from: u64, to: u64) -> Rule {
        self.0
            .lock()
            .unwrap()
            .get(&(from, to))
            .copied()
            .unwrap_or_default()
    }
}

/// Serves `listener` as node `node`'s proxy, forwarding to its real listener at `target`.
pub fn spawn(listener: TcpListener, target: String, node: u64, links: Arc<Links>) {
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let (target, links) = (target.clone(), links.clone());
            tokio::spawn(async move {
                let _ = connection(inbound, &target, node, links).await;
            });
        }
    });
}

async fn connection(
    mut inbound: TcpStream,
    target: &str,
    to: u64,
    links: Arc<Links>,
) -> std::io::Result<()> {
    let mut greeting = [0u8; GREETING_FRAME_BYTES];
    tokio::time::timeout(Duration::from_secs(5), inbound.read_exact(&mut greeting))
        .await
        .map_err(|_| std::io::Error::other("no greeting"))??;
    let from = u64::from_le_bytes(greeting[40..48].try_into().unwrap());
    let outbound = TcpStream::connect(target).await?;
    // As the nodes' own sockets: no Nagle delay on small frames (heartbeats, replies).
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    let (in_r, in_w) = inbound.into_split();
    let (out_r, out_w) = outbound.into_split();
    let forward = tokio::spawn(pump(
        in_r,
        out_w,
        links.clone(),
        (from, to),
        greeting.to_vec(),
    ));
    let backward = tokio::spawn(pump(out_r, in_w, links, (to, from), Vec::new()));
    // Either side closing ends the connection.
    tokio::select! {
        _ = forward => {}
        _ = backward => {}
    }
    Ok(())
}

/// Copies `r` to `w` under the rule of link `(from, to)`, `first` ahead of what `r` reads.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    links: Arc<Links>,
    (from, to): (u64, u64),
    first: Vec<u8>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(HELD_CHUNKS_MAX);
    let _ = tx.send((Instant::now(), first)).await;
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    // A small xorshift, seeded per connection: which chunks a lossy link damages.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut roll = move |n: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % u64::from(n)
    };
    let mut greeted = false;
    while let Some((read_at, mut chunk)) = rx.recv().await {
        let n = links.get(from, to).damage_one_in;
        // The greetings (the first chunk each way) are left whole.
        if n > 0 && std::mem::replace(&mut greeted, true) && !chunk.is_empty() {
            match roll(n) {
                0 => {
                    let at = (roll(u32::MAX) as usize) % chunk.len();
                    chunk[at] ^= 0x5a;
                    links.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                1 => {
                    links.2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
                _ => {}
            }
        }
        loop {
            let rule = links.get(from, to);
            let due = read_at + rule.delay;
            if rule.blocked {
                tokio::time::sleep(Duration::from_millis(10)).await;
            } else if Instant::now() < due {
                tokio::time::sleep_until(due.min(Instant::now() + Duration::from_millis(10))).await;
            } else {
                break;
            }
        }
        if w.write_all(&chunk).await.is_err() {
            break;
        }
    }
    reader.abort();
}
