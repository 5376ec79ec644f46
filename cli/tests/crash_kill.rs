//! Process crashes on the real file system: producers, a named subscriber and queue consumers run
//! against the real `sluice serve` (fsync `always`), and the broker is killed with SIGKILL at a
//! random moment of every round, then restarted on the same data directory. A CLI consumer
//! (`sluice consume`) is SIGKILLed mid-way in some rounds too.
//!
//! After every restart, and live while the next round runs:
//! - every confirmed publish is present at its offset, byte-identical, offsets dense; every
//!   message ever delivered to a reader is too (readers see only durable data); nothing in the
//!   log is a message no producer sent; each producer's messages are in the order it sent them;
//! - the named subscriber's committed offset is at least its last confirmed commit, and never
//!   goes backwards;
//! - no queue message whose ack was confirmed is delivered again, delivery counts only grow;
//! - every queue message delivered and not acked (held by a consumer, nacked, or printed by a
//!   killed `--no-ack` CLI consumer) comes back, and at the end the drained queue accounts for
//!   every confirmed publish;
//! - a topic and a queue that are created, published to, deleted and created again all the time
//!   (the kill lands in any of those): the broker starts, a confirmed delete is never undone, and
//!   everything confirmed since the last confirmed create of the name is there (a delete cut by
//!   the kill leaves the name either gone or whole).
//!
//! `SLUICE_CRASH_KILLS` sets the number of broker kills (default 25; `SLUICE_SOAK=1` makes it
//! 1000), `SLUICE_CRASH_SEED` the seed (printed, with the figures, on success and failure).
//!
//! Longer than most files on purpose: each file under `tests/` is a binary of its own that links
//! the whole broker, so the scenarios of one subject share one binary (and one set of helpers)
//! rather than adding links to a CI run on two cores.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{data_dir, sigkill_and_output, spawn_cli, start, ServerProc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice::client::{Client, SubscribeOptions};
use sluice::protocol::{ErrorCode, LogSettings, QueueSettings, Source, Start};
use sluice::storage::Record;

/// Small segments, so rounds also roll segments and queues reclaim acked ones.
const CONFIG: &str = "[log]\nsegment_bytes_max = 65536\n";
const TOPIC: &str = "t";
const QUEUE: &str = "q";
const SUBSCRIBER: &str = "s";
/// Producers 0 and 1 publish to the topic, producer 2 to the queue.
const PRODUCERS: u64 = 3;
const TOPIC_PRODUCERS: u64 = 2;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A message id: the producer in the top 16 bits, its sequence number below.
fn id(producer: u64, seq: u64) -> u64 {
    (producer << 48) | seq
}

/// The payload of message `id`: the id, then 0..300 bytes derived from it (binary).
fn payload(id: u64) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    let len = (splitmix(id) % 300) as usize;
    let mut x = id;
    while v.len() < 8 + len {
        x = splitmix(x);
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(8 + len);
    v
}

/// The id of a payload, after checking that the payload is exactly what it must be.
fn decode(p: &[u8], what: &str) -> u64 {
    assert!(p.len() >= 8, "{what}: payload of {} bytes", p.len());
    let id = u64::from_le_bytes(p[..8].try_into().unwrap());
    assert!(
        id >> 48 < PRODUCERS,
        "{what}: a message no producer sent (id {id:#x})"
    );
    assert_eq!(p, payload(id), "{what}: payload of id {id:#x} damaged");
    id
}

/// A topic and a queue that are deleted and created again all the time.
const CHURN_TOPIC: &str = "churn";
const CHURN_QUEUE: &str = "churnq";

/// The payload of the `n`th message published to a churned name.
fn churn_payload(n: u64) -> Vec<u8> {
    let mut v = b"churn".to_vec();
    v.extend_from_slice(&n.to_le_bytes());
    v
}

/// What the clients know of a churned name.
#[derive(Clone, Debug, Default)]
enum Churn {
    /// Never created, or its delete was confirmed.
    #[default]
    Absent,
    /// Created (confirmed), with its confirmed publishes since: offset -> message number.
    Present(BTreeMap<u64, u64>),
    /// A create was sent and cut by a kill: there (empty) or not.
    Creating,
    /// A delete of a name holding these was sent and cut by a kill: gone, or there whole.
    Deleting(BTreeMap<u64, u64>),
}

/// What the clients were told, kept across kills.
#[derive(Default)]
struct Model {
    /// The churned topic and queue.
    churn: [Churn; 2],
    /// Next message number of the churned names.
    churn_seq: u64,
    /// Confirmed deletes and creates of the churned names.
    churn_deletes: u64,
    churn_creates: u64,
    /// Next sequence number of each producer.
    seq: [u64; PRODUCERS as usize],
    /// Confirmed topic publishes: offset -> id.
    topic: BTreeMap<u64, u64>,
    /// Topic messages delivered to the subscriber: offset -> id.
    topic_seen: BTreeMap<u64, u64>,
    /// Largest confirmed commit of the subscriber.
    committed: u64,
    /// Committed offset found at the last restart.
    committed_at_restart: u64,
    /// Topic offsets below this were read back at the last verification.
    verified_to: u64,
    /// Confirmed queue publishes: offset -> id.
    queue: BTreeMap<u64, u64>,
    /// Queue messages whose ack was confirmed.
    acked: BTreeSet<u64>,
    /// Queue messages an ack was sent for (confirmed or not), or a CLI consumer printed in ack
    /// mode (it may have acked them before it was killed).
    ack_attempted: BTreeSet<u64>,
    /// Delivered, no ack sent: each must be delivered again.
    outstanding: BTreeSet<u64>,
    /// Highest attempt number seen per queue offset.
    attempts: BTreeMap<u64, u32>,
    // Figures.
    kills: u64,
    cli_kills: u64,
    cli_printed_then_killed: u64,
    /// Outstanding messages delivered again.
    came_back: u64,
    publishes_failed_by_kill: u64,
}

impl Model {
    /// A queue delivery seen by any consumer: checks and records it.
    fn on_delivery(&mut self, offset: u64, attempt: u32, what: &str) {
        assert!(
            !self.acked.contains(&offset),
            "{what}: queue message {offset} delivered again after its ack was confirmed"
        );
        let before = self.attempts.get(&offset).copied().unwrap_or(0);
        assert!(
            attempt > before,
            "{what}: queue message {offset} delivered with attempt {attempt} after attempt {before}"
        );
        self.attempts.insert(offset, attempt);
        if self.outstanding.remove(&offset) {
            self.came_back += 1;
        }
    }

    /// A delivery printed by a killed CLI consumer, read after the kill: by then the message
    /// may already have come back to another consumer (and been acked there).
    fn on_cli_delivery(&mut self, offset: u64, attempt: u32, no_ack: bool) {
        let what = "killed CLI consumer";
        let latest = self.attempts.get(&offset).copied().unwrap_or(0);
        assert_ne!(
            attempt, latest,
            "{what}: queue message {offset} delivered twice with attempt {attempt}"
        );
        if attempt > latest {
            self.on_delivery(offset, attempt, what);
            if no_ack {
                self.outstanding.insert(offset);
            } else {
                self.ack_attempted.insert(offset);
            }
        } else {
            // Already delivered again (with a higher attempt) after the kill: it came back.
            self.came_back += 1;
        }
    }

    fn check_queue_payload(&self, offset: u64, p: &[u8], what: &str) {
        let id = decode(p, what);
        assert_eq!(
            id >> 48,
            PRODUCERS - 1,
            "{what}: a topic message in the queue"
        );
        if let Some(&want) = self.queue.get(&offset) {
            assert_eq!(
                id, want,
                "{what}: queue offset {offset} holds another message"
            );
        }
    }
}

type Shared = Arc<Mutex<Model>>;

fn kills_wanted() -> u64 {
    if let Ok(v) = std::env::var("SLUICE_CRASH_KILLS") {
        return v.parse().expect("SLUICE_CRASH_KILLS is a number");
    }
    if std::env::var("SLUICE_SOAK").is_ok_and(|v| v == "1") {
        1000
    } else {
        25
    }
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

/// Reads the topic from `from` to `end` and checks it against the model.
async fn verify_topic(c: &Client, m: &Shared, from: u64, end: u64, what: &str) {
    if from >= end {
        return;
    }
    let mut sub = c
        .subscribe(
            TOPIC,
            SubscribeOptions::anonymous()
                .from(Start::Offset(from))
                .credit(4096),
        )
        .await
        .unwrap();
    assert_eq!(sub.start_offset(), from, "{what}: the log start moved");
    let mut last_seq = [None::<u64>; PRODUCERS as usize];
    let mut seen_ids = BTreeSet::new();
    let mut next = from;
    while next < end {
        let msg = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: reading offset {next} timed out"))
            .unwrap_or_else(|| panic!("{what}: subscription ended at {next}"))
            .unwrap_or_else(|e| panic!("{what}: reading offset {next}: {e}"));
        assert_eq!(msg.offset, next, "{what}: offsets are not dense");
        let id = decode(&msg.record.value, &format!("{what}: topic offset {next}"));
        let p = (id >> 48) as usize;
        assert!(
            p < TOPIC_PRODUCERS as usize,
            "{what}: a queue message in the topic"
        );
        assert!(seen_ids.insert(id), "{what}: message {id:#x} stored twice");
        if let Some(prev) = last_seq[p] {
            assert!(
                id & 0xFFFF_FFFF_FFFF > prev,
                "{what}: producer {p}'s messages out of order at offset {next}"
            );
        }
        last_seq[p] = Some(id & 0xFFFF_FFFF_FFFF);
        let model = m.lock().unwrap();
        for (kind, map) in [
            ("confirmed", &model.topic),
            ("delivered", &model.topic_seen),
        ] {
            if let Some(&want) = map.get(&next) {
                assert_eq!(
                    id, want,
                    "{what}: {kind} topic message at offset {next} lost or replaced"
                );
            }
        }
        next += 1;
    }
}

/// Checks the state right after a restart.
async fn verify_after_restart(addr: &str, m: &Shared, round: u64, last: bool) {
    let what = format!("after kill {round}");
    let c = Client::connect(addr).await.unwrap();
    // The topic has one partition.
    let info = c.describe_topic(TOPIC).await.unwrap().partitions.remove(0);
    let (from, committed, outstanding, max_queue) = {
        let model = m.lock().unwrap();
        for (name, map) in [
            ("confirmed", &model.topic),
            ("delivered", &model.topic_seen),
        ] {
            if let Some((&o, _)) = map.last_key_value() {
                assert!(
                    info.end_offset > o,
                    "{what}: {name} topic offset {o} beyond the end {}",
                    info.end_offset
                );
            }
        }
        // The whole topic after kills 1, 2, 4, 8, ... and the last; what is new otherwise.
        let full = last || round.is_power_of_two();
        (
            if full { 0 } else { model.verified_to },
            model.committed,
            model.outstanding.len() as u64,
            model.queue.last_key_value().map(|(&o, _)| o),
        )
    };
    assert_eq!(info.start_offset, 0, "{what}: the topic has no retention");
    let s = info
        .subscribers
        .iter()
        .find(|s| s.name == SUBSCRIBER)
        .unwrap_or_else(|| panic!("{what}: the named subscriber is gone"));
    assert!(
        s.committed >= committed,
        "{what}: committed offset {} below the last confirmed commit {committed}",
        s.committed
    );
    {
        let mut model = m.lock().unwrap();
        assert!(
            s.committed >= model.committed_at_restart,
            "{what}: committed offset went backwards"
        );
        model.committed_at_restart = s.committed;
    }
    verify_topic(&c, m, from, info.end_offset, &what).await;
    m.lock().unwrap().verified_to = info.end_offset;

    let q = c.describe_queue(QUEUE).await.unwrap();
    if let Some(o) = max_queue {
        assert!(q.end_offset > o, "{what}: confirmed queue offset {o} lost");
    }
    assert!(q.ack_floor <= q.end_offset, "{what}: {q:?}");
    assert!(
        q.depth >= outstanding,
        "{what}: {outstanding} delivered, unacked messages but a depth of {}",
        q.depth
    );
}

async fn producer(addr: String, m: Shared, p: u64, seed: u64) {
    let Ok(c) = Client::connect(&addr).await else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let name = if p < TOPIC_PRODUCERS { TOPIC } else { QUEUE };
    loop {
        let n = rng.gen_range(1..=5u64);
        let ids: Vec<u64> = {
            let mut model = m.lock().unwrap();
            let s = model.seq[p as usize];
            model.seq[p as usize] += n;
            (s..s + n).map(|s| id(p, s)).collect()
        };
        let recs: Vec<Record> = ids
            .iter()
            .map(|&i| Record::from_value(payload(i)))
            .collect();
        match c.publish(name, &recs).await {
            Ok(pb) => {
                assert_eq!(pb.last_offset - pb.base_offset + 1, n);
                let mut model = m.lock().unwrap();
                let map = if p < TOPIC_PRODUCERS {
                    &mut model.topic
                } else {
                    &mut model.queue
                };
                for (k, &i) in ids.iter().enumerate() {
                    assert!(map.insert(pb.base_offset + k as u64, i).is_none());
                }
            }
            Err(_) => {
                m.lock().unwrap().publishes_failed_by_kill += 1;
                return;
            }
        }
    }
}

async fn subscriber(addr: String, m: Shared, seed: u64) {
    let Ok(c) = Client::connect(&addr).await else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let Ok(mut sub) = c
        .subscribe(TOPIC, SubscribeOptions::named(SUBSCRIBER).credit(64))
        .await
    else {
        return;
    };
    let mut next = sub.start_offset();
    assert!(
        next >= m.lock().unwrap().committed,
        "the subscriber resumed below its last confirmed commit"
    );
    let mut until_commit = rng.gen_range(1..10);
    while let Some(Ok(msg)) = sub.next().await {
        assert_eq!(
            msg.offset, next,
            "the subscription skipped or repeated offsets"
        );
        next += 1;
        let id = decode(&msg.record.value, "subscriber");
        {
            let mut model = m.lock().unwrap();
            if let Some(&want) = model.topic.get(&msg.offset) {
                assert_eq!(
                    id, want,
                    "subscriber: offset {} holds another message",
                    msg.offset
                );
            }
            model.topic_seen.insert(msg.offset, id);
        }
        until_commit -= 1;
        if until_commit == 0 {
            until_commit = rng.gen_range(1..10);
            if sub.commit(0, next).await.is_err() {
                return;
            }
            let mut model = m.lock().unwrap();
            model.committed = model.committed.max(next);
        }
    }
}

async fn consumer(addr: String, m: Shared, seed: u64) {
    let Ok(c) = Client::connect(&addr).await else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let Ok(mut cons) = c.consume(Source::Queue(QUEUE.into()), 16).await else {
        return;
    };
    let mut held = Vec::new();
    while let Some(Ok(d)) = cons.next().await {
        {
            let mut model = m.lock().unwrap();
            model.check_queue_payload(d.offset, &d.record.value, "consumer");
            model.on_delivery(d.offset, d.attempt, "consumer");
        }
        let roll = rng.gen_range(0..100);
        if d.attempt == 1 && held.len() < 3 && roll < 15 {
            // Keep it unacked until the kill: it must come back after the restart.
            m.lock().unwrap().outstanding.insert(d.offset);
            held.push(d);
        } else if roll < 20 {
            // Given back: it comes back, now or after the restart.
            m.lock().unwrap().outstanding.insert(d.offset);
            if d.nack(0).await.is_err() {
                return;
            }
        } else {
            m.lock().unwrap().ack_attempted.insert(d.offset);
            if d.ack().await.is_err() {
                return;
            }
            m.lock().unwrap().acked.insert(d.offset);
        }
    }
}

/// A `sluice consume` process SIGKILLed after `kill_after`: what it printed is checked like any
/// delivery; with `no_ack` every printed message must come back.
async fn cli_consumer(addr: String, m: Shared, kill_after: Duration, no_ack: bool) {
    let mut args = vec![
        "consume",
        QUEUE,
        "--count",
        "200",
        "--wait-ms",
        "5000",
        "--json",
    ];
    if no_ack {
        args.push("--no-ack");
    }
    let child = spawn_cli(&addr, &args);
    tokio::time::sleep(kill_after).await;
    let out = tokio::task::spawn_blocking(move || sigkill_and_output(child))
        .await
        .unwrap();
    let mut model = m.lock().unwrap();
    model.cli_kills += 1;
    let lines: Vec<&str> = out.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            // Only the last line may be cut by the kill.
            Err(_) if i + 1 == lines.len() => continue,
            Err(e) => panic!("CLI consumer printed {line:?}: {e}"),
        };
        let offset = v["offset"].as_u64().expect("offset");
        let attempt = v["attempt"].as_u64().expect("attempt") as u32;
        model.cli_printed_then_killed += 1;
        model.on_cli_delivery(offset, attempt, no_ack);
    }
}

/// Acks everything left in the queue (in batches: after a long soak it holds a large backlog);
/// returns the offsets delivered.
async fn drain_queue(addr: &str, m: &Shared) -> BTreeSet<u64> {
    let c = Client::connect(addr).await.unwrap();
    let mut cons = c.consume(Source::Queue(QUEUE.into()), 1000).await.unwrap();
    let acker = cons.acker();
    let mut got = BTreeSet::new();
    let mut to_ack = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(3), cons.next()).await {
            Ok(Some(d)) => {
                let d = d.unwrap();
                {
                    let mut model = m.lock().unwrap();
                    model.check_queue_payload(d.offset, &d.record.value, "drain");
                    model.on_delivery(d.offset, d.attempt, "drain");
                }
                assert!(got.insert(d.offset), "drain: {} delivered twice", d.offset);
                to_ack.push(d.offset);
                if cons.buffered() == 0 {
                    acker
                        .ack_offsets(
                            &to_ack
                                .iter()
                                .map(|o| sluice::client::Offset(*o))
                                .collect::<Vec<_>>(),
                        )
                        .await
                        .unwrap();
                    m.lock().unwrap().acked.extend(to_ack.drain(..));
                }
            }
            Ok(None) => panic!("drain: the consumer was closed"),
            Err(_) => {
                assert!(to_ack.is_empty());
                let q = c.describe_queue(QUEUE).await.unwrap();
                assert_eq!(q.depth, 0, "drain: messages left but none delivered: {q:?}");
                return got;
            }
        }
    }
}

async fn churn_create(c: &Client, k: usize) -> Result<(), sluice::client::ClientError> {
    if k == 0 {
        c.create_topic(CHURN_TOPIC, LogSettings::default()).await
    } else {
        let settings = QueueSettings {
            max_deliveries: Some(0),
            ..QueueSettings::default()
        };
        c.create_queue(CHURN_QUEUE, settings).await
    }
}

async fn churn_delete(c: &Client, k: usize) -> Result<(), sluice::client::ClientError> {
    if k == 0 {
        c.delete_topic(CHURN_TOPIC).await
    } else {
        c.delete_queue(CHURN_QUEUE).await
    }
}

/// Creates, publishes to and deletes the churned topic (`k` 0) or queue (`k` 1) until a kill.
async fn churner(addr: String, m: Shared, k: usize, seed: u64) {
    let Ok(c) = Client::connect(&addr).await else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let name = [CHURN_TOPIC, CHURN_QUEUE][k];
    loop {
        let state = m.lock().unwrap().churn[k].clone();
        match state {
            Churn::Absent => {
                m.lock().unwrap().churn[k] = Churn::Creating;
                match churn_create(&c, k).await {
                    Ok(()) => {
                        let mut model = m.lock().unwrap();
                        model.churn[k] = Churn::Present(BTreeMap::new());
                        model.churn_creates += 1;
                    }
                    Err(e) => {
                        assert_ne!(
                            e.code(),
                            Some(ErrorCode::AlreadyExists),
                            "{name}: a confirmed delete came back"
                        );
                        return;
                    }
                }
            }
            Churn::Present(map) if rng.gen_range(0..100) < 15 => {
                m.lock().unwrap().churn[k] = Churn::Deleting(map);
                if churn_delete(&c, k).await.is_err() {
                    return;
                }
                let mut model = m.lock().unwrap();
                model.churn[k] = Churn::Absent;
                model.churn_deletes += 1;
            }
            Churn::Present(_) => {
                let n = {
                    let mut model = m.lock().unwrap();
                    model.churn_seq += 1;
                    model.churn_seq
                };
                let Ok(pb) = c
                    .publish(name, &[Record::from_value(churn_payload(n))])
                    .await
                else {
                    return;
                };
                if let Churn::Present(map) = &mut m.lock().unwrap().churn[k] {
                    assert!(
                        map.insert(pb.base_offset, n).is_none(),
                        "{name}: offset {} confirmed twice",
                        pb.base_offset
                    );
                }
            }
            Churn::Creating | Churn::Deleting(_) => unreachable!("settled after every restart"),
        }
    }
}

/// Where the churned name `k` is after a restart: its end offset, or `None` when absent.
async fn churn_end(c: &Client, k: usize, what: &str) -> Option<u64> {
    let r = if k == 0 {
        c.describe_topic(CHURN_TOPIC)
            .await
            .map(|i| i.partitions[0].end_offset)
    } else {
        c.describe_queue(CHURN_QUEUE).await.map(|i| i.end_offset)
    };
    match r {
        Ok(end) => Some(end),
        Err(e) if e.code() == Some(ErrorCode::NotFound) => None,
        Err(e) => panic!("{what}: describing a churned name: {e}"),
    }
}

/// Checks that churned name `k` holds every message of `want` (offset -> number).
async fn churn_check_content(
    c: &Client,
    k: usize,
    end: u64,
    want: &BTreeMap<u64, u64>,
    what: &str,
) {
    if let Some((&o, _)) = want.last_key_value() {
        assert!(
            end > o,
            "{what}: confirmed offset {o} of a churned name lost (end {end})"
        );
    }
    if k == 1 || end == 0 {
        return;
    }
    let mut sub = c
        .subscribe(
            CHURN_TOPIC,
            SubscribeOptions::anonymous()
                .from(Start::Offset(0))
                .credit(4096),
        )
        .await
        .unwrap();
    for next in 0..end {
        let msg = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: reading churned offset {next} timed out"))
            .unwrap_or_else(|| panic!("{what}: churned subscription ended at {next}"))
            .unwrap_or_else(|e| panic!("{what}: reading churned offset {next}: {e}"));
        assert_eq!(msg.offset, next, "{what}: churned offsets are not dense");
        if let Some(&n) = want.get(&next) {
            assert_eq!(
                msg.record.value,
                churn_payload(n),
                "{what}: churned offset {next} lost or replaced"
            );
        }
    }
}

/// Checks the churned names after a restart and settles what a kill left open.
async fn verify_churn(addr: &str, m: &Shared, what: &str) {
    let c = Client::connect(addr).await.unwrap();
    for k in 0..2 {
        let state = m.lock().unwrap().churn[k].clone();
        let end = churn_end(&c, k, what).await;
        let settled = match (state, end) {
            (Churn::Absent, None) => Churn::Absent,
            (Churn::Absent, Some(_)) => {
                panic!("{what}: a confirmed delete of churned name {k} came back")
            }
            (Churn::Present(map), Some(end)) => {
                churn_check_content(&c, k, end, &map, what).await;
                Churn::Present(map)
            }
            (Churn::Present(_), None) => {
                panic!("{what}: churned name {k}, created and confirmed, is gone")
            }
            (Churn::Creating, None) | (Churn::Deleting(_), None) => Churn::Absent,
            (Churn::Creating, Some(end)) => {
                assert_eq!(end, 0, "{what}: a create cut by the kill left messages");
                Churn::Present(BTreeMap::new())
            }
            (Churn::Deleting(map), Some(end)) => {
                // The delete did not happen: the name must be whole.
                churn_check_content(&c, k, end, &map, what).await;
                Churn::Present(map)
            }
        };
        m.lock().unwrap().churn[k] = settled;
    }
}

fn run_round(
    rt: &tokio::runtime::Runtime,
    server: &ServerProc,
    m: &Shared,
    rng: &mut StdRng,
    round: u64,
) {
    let addr = server.addr.clone();
    let run = Duration::from_millis(rng.gen_range(50..=300));
    let cli = match rng.gen_range(0..4) {
        0 => Some((Duration::from_millis(rng.gen_range(30..=250)), true)),
        1 => Some((Duration::from_millis(rng.gen_range(30..=250)), false)),
        _ => None,
    };
    let seeds: Vec<u64> = (0..10).map(|_| rng.gen()).collect();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for p in 0..PRODUCERS {
            tasks.push(tokio::spawn(producer(
                addr.clone(),
                m.clone(),
                p,
                seeds[p as usize],
            )));
        }
        tasks.push(tokio::spawn(subscriber(addr.clone(), m.clone(), seeds[3])));
        for k in 0..2 {
            tasks.push(tokio::spawn(churner(
                addr.clone(),
                m.clone(),
                k,
                seeds[6 + k],
            )));
        }
        for k in 0..2 {
            tasks.push(tokio::spawn(consumer(
                addr.clone(),
                m.clone(),
                seeds[4 + k],
            )));
        }
        if let Some((after, no_ack)) = cli {
            tasks.push(tokio::spawn(cli_consumer(
                addr.clone(),
                m.clone(),
                after,
                no_ack,
            )));
        }
        tokio::time::sleep(run).await;
        server.sigkill();
        for t in tasks {
            bounded(&format!("round {round}: a client task"), t)
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        }
    });
    m.lock().unwrap().kills += 1;
}

#[test]
fn sigkill_at_random_moments_loses_nothing_confirmed() {
    let kills = kills_wanted();
    let seed = crash_seed();
    eprintln!("crash_kill: {kills} broker kills, SLUICE_CRASH_SEED={seed}");
    let _guard = SeedOnPanic(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_t, dir) = data_dir();
    let m: Shared = Arc::default();
    let t0 = Instant::now();

    let mut server = start(&dir, Some(CONFIG));
    rt.block_on(create_topic_queue_and_subscriber(&server.addr));
    for round in 1..=kills {
        run_round(&rt, &server, &m, &mut rng, round);
        server.kill9();
        server = start(&dir, Some(CONFIG));
        let addr = server.addr.clone();
        rt.block_on(bounded(
            &format!("verification after kill {round}"),
            verify_after_restart(&addr, &m, round, round == kills),
        ));
        rt.block_on(bounded(
            &format!("churn verification after kill {round}"),
            verify_churn(&addr, &m, &format!("after kill {round}")),
        ));
    }
    let drained = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(900), drain_queue(&server.addr, &m))
            .await
            .expect("the final drain timed out")
    });
    let model = m.lock().unwrap();
    check_final(&model, &drained, seed, t0);
}

/// `SLUICE_CRASH_SEED`, else a random seed.
fn crash_seed() -> u64 {
    std::env::var("SLUICE_CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("SLUICE_CRASH_SEED is a number"))
        .unwrap_or_else(|| rand::thread_rng().gen())
}

/// Prints the seed again if anything fails while it is alive.
struct SeedOnPanic(u64);

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("crash_kill failed: rerun with SLUICE_CRASH_SEED={}", self.0);
        }
    }
}

/// The topic, the queue and the named subscriber, before anything can be killed.
async fn create_topic_queue_and_subscriber(addr: &str) {
    let c = Client::connect(addr).await.unwrap();
    c.create_topic(TOPIC, LogSettings::default()).await.unwrap();
    c.create_queue(
        QUEUE,
        QueueSettings {
            // Held messages come back because of the kills, not a timeout.
            ack_timeout_ms: Some(600_000),
            max_deliveries: Some(1_000_000),
            ..QueueSettings::default()
        },
    )
    .await
    .unwrap();
    // The subscriber exists (at offset 0) before anything can be killed.
    c.subscribe(
        TOPIC,
        SubscribeOptions::named(SUBSCRIBER).from(Start::Earliest),
    )
    .await
    .unwrap();
}

/// After the final drain: every delivered message came back, every confirmed queue message was
/// acked or is in the queue, and the run did confirm something of each kind. Prints the figures.
fn check_final(model: &Model, drained: &BTreeSet<u64>, seed: u64, t0: Instant) {
    assert!(
        model.outstanding.is_empty(),
        "delivered, unacked messages never came back: {:?}",
        model.outstanding
    );
    for o in model.queue.keys() {
        assert!(
            model.ack_attempted.contains(o) || drained.contains(o) || model.acked.contains(o),
            "confirmed queue message {o} was never acked and is not in the queue"
        );
    }
    assert!(
        !model.topic.is_empty() && !model.queue.is_empty(),
        "nothing was confirmed"
    );
    assert!(model.committed > 0, "no commit was confirmed");
    assert!(
        model.churn_deletes > 0 && model.churn_creates > 1,
        "no churned name was deleted and created again"
    );
    eprintln!(
        "crash_kill: {} broker kills survived in {:.1} s (seed {seed}); confirmed: {} topic \
         messages, {} queue messages, {} acks, subscriber commit {}; {} publishes cut by a kill; \
         {} CLI consumers killed, having printed {} messages; {} delivered, unacked messages \
         (held at a kill, nacked, or printed by a killed --no-ack CLI) came back; {} confirmed \
         creates and {} confirmed deletes of churned names; messages lost: 0",
        model.kills,
        t0.elapsed().as_secs_f64(),
        model.topic.len(),
        model.queue.len(),
        model.acked.len(),
        model.committed,
        model.publishes_failed_by_kill,
        model.cli_kills,
        model.cli_printed_then_killed,
        model.came_back,
        model.churn_creates,
        model.churn_deletes,
    );
}
