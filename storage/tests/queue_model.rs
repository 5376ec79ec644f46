//! Property test: a queue against a simple in-memory model, through publishes, deliveries, acks,
//! nacks with delays, consumer releases, ack deadlines, dead letters, clean restarts and
//! simulated broker crashes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use sluice_storage::fs::sim::{CrashMode, SimFs};
use sluice_storage::{
    ConsumerId, FsRef, ManualClock, Offset, Queue, QueueConfig, Record, Store, StoreConfig,
};

const MAX_DELIVERIES: u32 = 3;
const TIMEOUT: i64 = 100;
const MAX_UNACKED: usize = 8;
const PER_CONSUMER: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Publish(u8),
    Deliver(u64, u8),
    /// Ack the i-th held message of a consumer (or an arbitrary offset when it holds none, which
    /// must be refused).
    Ack(u64, u8),
    Nack(u64, u8, u16),
    Release(u64),
    Advance(u16),
    Expire,
    Restart,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..6).prop_map(Op::Publish),
        4 => (0u64..3, 1u8..6).prop_map(|(c, n)| Op::Deliver(c, n)),
        4 => (0u64..3, 0u8..8).prop_map(|(c, i)| Op::Ack(c, i)),
        2 => (0u64..3, 0u8..8, prop_oneof![Just(0u16), 1u16..200]).prop_map(|(c, i, d)| Op::Nack(c, i, d)),
        1 => (0u64..3).prop_map(Op::Release),
        2 => (1u16..150).prop_map(Op::Advance),
        2 => Just(Op::Expire),
        1 => Just(Op::Restart),
        1 => Just(Op::Crash),
    ]
}

#[derive(Default, Debug)]
struct Model {
    end: u64,
    cursor: u64,
    now: i64,
    done: BTreeSet<u64>, // acked or dead-lettered
    dead: u64,
    attempts: BTreeMap<u64, u32>,
    inflight: BTreeMap<u64, (u64, i64)>,
    ready: BTreeSet<u64>,
    delayed: BTreeMap<u64, i64>,
}

impl Model {
    fn promote(&mut self) {
        let due: Vec<u64> = self
            .delayed
            .iter()
            .filter(|(_, &t)| t <= self.now)
            .map(|(&o, _)| o)
            .collect();
        for o in due {
            self.delayed.remove(&o);
            self.ready.insert(o);
        }
    }
    fn at_bound(&self, o: u64) -> bool {
        self.attempts.get(&o).copied().unwrap_or(0) >= MAX_DELIVERIES
    }
    fn kill(&mut self, o: u64) {
        self.done.insert(o);
        self.dead += 1;
    }
    fn held(&self, c: u64) -> Vec<u64> {
        self.inflight
            .iter()
            .filter(|(_, h)| h.0 == c)
            .map(|(&o, _)| o)
            .collect()
    }
    fn deliver(&mut self, c: u64, max: usize) -> Vec<(u64, u32)> {
        self.promote();
        let room = max
            .min(MAX_UNACKED.saturating_sub(self.inflight.len()))
            .min(PER_CONSUMER.saturating_sub(self.held(c).len()));
        let mut picks = Vec::new();
        while picks.len() < room {
            let Some(o) = self.ready.pop_first() else {
                break;
            };
            if self.at_bound(o) {
                self.kill(o);
            } else {
                picks.push(o);
            }
        }
        while picks.len() < room && self.cursor < self.end {
            picks.push(self.cursor);
            self.cursor += 1;
        }
        picks
            .into_iter()
            .map(|o| {
                let a = self.attempts.entry(o).or_default();
                *a += 1;
                self.inflight.insert(o, (c, self.now + TIMEOUT));
                (o, *a)
            })
            .collect()
    }
    /// Acks `o` if `c` holds it; false (nothing changes) otherwise.
    fn ack(&mut self, c: u64, o: u64) -> bool {
        if self.inflight.get(&o).map(|h| h.0) != Some(c) {
            return false;
        }
        self.done.insert(o);
        self.inflight.remove(&o);
        true
    }
    fn nack(&mut self, c: u64, o: u64, delay: u64) {
        if self.inflight.get(&o).map(|h| h.0) != Some(c) {
            return;
        }
        self.inflight.remove(&o);
        if self.at_bound(o) {
            self.kill(o);
        } else if delay == 0 {
            self.ready.insert(o);
        } else {
            self.delayed.insert(o, self.now + delay as i64);
        }
    }
    fn release(&mut self, c: u64) {
        for o in self.held(c) {
            self.inflight.remove(&o);
            self.ready.insert(o);
        }
    }
    fn expire(&mut self) -> usize {
        self.promote();
        let due: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, h)| h.1 <= self.now)
            .map(|(&o, _)| o)
            .collect();
        let mut n = due.len();
        for o in due {
            self.inflight.remove(&o);
            if self.at_bound(o) {
                self.kill(o);
            } else {
                self.ready.insert(o);
            }
        }
        let over: Vec<u64> = self
            .ready
            .iter()
            .copied()
            .filter(|&o| self.at_bound(o))
            .collect();
        for o in over {
            self.ready.remove(&o);
            self.kill(o);
            n += 1;
        }
        n
    }
    fn restart(&mut self) {
        let back: Vec<u64> = self
            .inflight
            .keys()
            .chain(self.delayed.keys())
            .copied()
            .collect();
        self.inflight.clear();
        self.delayed.clear();
        self.ready.extend(back);
    }
    fn floor(&self) -> u64 {
        let mut f = 0;
        while self.done.contains(&f) {
            f += 1;
        }
        f
    }
}

fn open(sim: &SimFs, clock: &Arc<ManualClock>) -> (Store, Arc<Queue>) {
    let fs: FsRef = Arc::new(sim.clone());
    let s = Store::open_with_clock(fs, "/d", StoreConfig::default(), clock.clone()).unwrap();
    let q = match s.queue("q") {
        Ok(q) => q,
        Err(_) => s
            .create_queue(
                "q",
                QueueConfig {
                    ack_timeout_ms: TIMEOUT as u64,
                    max_deliveries: MAX_DELIVERIES,
                    max_unacked: MAX_UNACKED as u32,
                    max_unacked_per_consumer: PER_CONSUMER as u32,
                    ..QueueConfig::default()
                },
            )
            .unwrap(),
    };
    (s, q)
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let (mut s, mut q) = open(&sim, &clock);
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Publish(n) => {
                let recs: Vec<Record> = (0..n).map(|i| Record::from_value(vec![i])).collect();
                q.publish(&recs).unwrap();
                m.end += n as u64;
            }
            Op::Deliver(c, n) => {
                let got: Vec<(u64, u32)> = q
                    .deliver(ConsumerId(c), n as usize)
                    .unwrap()
                    .iter()
                    .map(|d| (d.offset.0, d.attempt))
                    .collect();
                prop_assert_eq!(got, m.deliver(c, n as usize));
            }
            Op::Ack(c, i) => {
                let held = m.held(c);
                let o = held
                    .get(i as usize % held.len().max(1))
                    .copied()
                    .unwrap_or(i as u64);
                let r = q.ack(ConsumerId(c), &[Offset(o)]);
                if m.ack(c, o) {
                    prop_assert!(r.is_ok(), "{:?}", r);
                } else {
                    let refused = matches!(&r, Err(sluice_storage::Error::NotHeld { offsets })
                        if offsets == &[Offset(o)]);
                    prop_assert!(refused, "ack of {} not held by {}: {:?}", o, c, r);
                }
            }
            Op::Nack(c, i, d) => {
                let held = m.held(c);
                if let Some(&o) = held.get(i as usize % held.len().max(1)) {
                    q.nack(ConsumerId(c), &[Offset(o)], d as u64).unwrap();
                    m.nack(c, o, d as u64);
                }
            }
            Op::Release(c) => {
                q.release(ConsumerId(c));
                m.release(c);
            }
            Op::Advance(ms) => {
                clock.advance(ms as i64);
                m.now += ms as i64;
            }
            Op::Expire => {
                prop_assert_eq!(q.expire().unwrap(), m.expire());
            }
            Op::Restart => {
                s.close().unwrap();
                drop(q);
                drop(s);
                (s, q) = open(&sim, &clock);
                m.restart();
            }
            Op::Crash => {
                drop(q);
                drop(s);
                sim.crash(CrashMode::DropUnsynced);
                (s, q) = open(&sim, &clock);
                m.restart();
            }
        }
        let st = q.stats();
        let floor = m.floor();
        prop_assert_eq!(st.ack_floor, Offset(floor));
        prop_assert_eq!(st.cursor, Offset(m.cursor));
        prop_assert_eq!(st.in_flight, m.inflight.len() as u64);
        prop_assert_eq!(st.dead_lettered, m.dead);
        prop_assert_eq!(
            st.acked_above_floor,
            m.done.iter().filter(|&&o| o >= floor).count() as u64
        );
        prop_assert_eq!(st.depth, m.end - m.done.len() as u64);
        let next = m
            .inflight
            .values()
            .map(|h| h.1)
            .chain(m.delayed.values().copied())
            .min();
        prop_assert_eq!(q.next_deadline(), next);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn queue_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
