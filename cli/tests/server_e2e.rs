//! End-to-end tests of the server through the Rust client: the real `sluice` binary on a free
//! port and a temporary data directory.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::time::Duration;

use common::{data_dir, start};
use sluice::client::{Client, SubscribeOptions};
use sluice::protocol::{LogSettings, QueueSettings, Source, Start};
use sluice::storage::Record;

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test step timed out")
}

fn msgs(prefix: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record::from_value(format!("{prefix}-{i}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_several_subscribers() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    bounded(async {
        let c = Client::connect(&server.addr).await.unwrap();
        c.create_topic("news", LogSettings::default())
            .await
            .unwrap();
        let mut subs = Vec::new();
        for name in ["a", "b", "c"] {
            let s = Client::connect(&server.addr).await.unwrap();
            let opts = SubscribeOptions::named(name)
                .from(Start::Earliest)
                .credit(7);
            subs.push(s.subscribe("news", opts).await.unwrap());
        }
        let mut anon = c
            .subscribe("news", SubscribeOptions::anonymous().credit(3))
            .await
            .unwrap();
        let mut expected = Vec::new();
        for batch in 0..10 {
            let p = c
                .publish("news", &msgs(&format!("b{batch}"), 10))
                .await
                .unwrap();
            assert_eq!(p.base_offset, batch * 10);
            assert_eq!(p.last_offset, batch * 10 + 9);
            expected.extend((0..10).map(|i| format!("b{batch}-{i}")));
        }
        for sub in subs.iter_mut().chain(std::iter::once(&mut anon)) {
            for (i, want) in expected.iter().enumerate() {
                let m = sub.next().await.unwrap().unwrap();
                assert_eq!(m.offset, i as u64);
                assert_eq!(m.record.value, want.as_bytes());
            }
        }
        subs[0].commit(0, 100).await.unwrap();
        let info = c.describe_topic("news").await.unwrap();
        assert_eq!(info.partitions[0].end_offset, 100);
        let a = info.partitions[0]
            .subscribers
            .iter()
            .find(|s| s.name == "a")
            .unwrap();
        assert_eq!((a.committed, a.lag), (100, 0));
        assert_eq!(c.list_topics().await.unwrap(), vec!["news".to_string()]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_see_disjoint_sets_covering_everything() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    bounded(async {
        let c = Client::connect(&server.addr).await.unwrap();
        c.create_queue("jobs", QueueSettings::default())
            .await
            .unwrap();
        const N: u64 = 300;
        for chunk in 0..(N / 30) {
            c.publish("jobs", &msgs(&format!("j{chunk}"), 30))
                .await
                .unwrap();
        }
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let addr = server.addr.clone();
            tasks.push(tokio::spawn(async move {
                let c = Client::connect(&addr).await.unwrap();
                let mut cons = c.consume(Source::Queue("jobs".into()), 8).await.unwrap();
                let mut got = Vec::new();
                while let Ok(Some(d)) =
                    tokio::time::timeout(Duration::from_millis(1500), cons.next()).await
                {
                    let d = d.unwrap();
                    assert_eq!(d.attempt, 1);
                    got.push(d.offset);
                    d.ack().await.unwrap();
                }
                got
            }));
        }
        let mut all = Vec::new();
        let mut sets = Vec::new();
        for t in tasks {
            let got = t.await.unwrap();
            sets.push(got.iter().copied().collect::<HashSet<u64>>());
            all.extend(got);
        }
        let distinct: BTreeSet<u64> = all.iter().copied().collect();
        assert_eq!(all.len(), distinct.len(), "an offset was delivered twice");
        assert_eq!(distinct, (0..N).collect::<BTreeSet<u64>>());
        assert!(
            sets.iter().filter(|s| !s.is_empty()).count() >= 2,
            "no competition happened"
        );
        let q = c.describe_queue("jobs").await.unwrap();
        assert_eq!((q.depth, q.in_flight, q.ack_floor), (0, 0, N));
        // No dead letter: the dead-letter queue was never made.
        assert!(!c
            .list_queues()
            .await
            .unwrap()
            .contains(&"jobs.dlq".to_string()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_gone_before_acking_has_its_messages_redelivered() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    bounded(async {
        let c = Client::connect(&server.addr).await.unwrap();
        c.create_queue("work", QueueSettings::default())
            .await
            .unwrap();
        c.publish("work", &msgs("w", 5)).await.unwrap();
        let first: Vec<u64> = {
            let c1 = Client::connect(&server.addr).await.unwrap();
            let mut cons = c1.consume(Source::Queue("work".into()), 5).await.unwrap();
            let mut v = Vec::new();
            for _ in 0..5 {
                v.push(cons.next().await.unwrap().unwrap().offset);
            }
            v
            // c1 and its connection drop here without acking.
        };
        assert_eq!(first, vec![0, 1, 2, 3, 4]);
        let c2 = Client::connect(&server.addr).await.unwrap();
        let mut cons = c2.consume(Source::Queue("work".into()), 5).await.unwrap();
        let mut again = Vec::new();
        for _ in 0..5 {
            let d = cons.next().await.unwrap().unwrap();
            assert!(d.attempt >= 2, "redelivery must count attempts");
            again.push(d.offset);
            d.ack().await.unwrap();
        }
        again.sort();
        assert_eq!(again, first);
        // A nacked message comes back.
        c.publish("work", &msgs("x", 1)).await.unwrap();
        let d = cons.next().await.unwrap().unwrap();
        assert_eq!(d.offset, 5);
        d.nack(0).await.unwrap();
        let d = cons.next().await.unwrap().unwrap();
        assert_eq!((d.offset, d.attempt), (5, 2));
        d.ack().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_publish_loses_no_confirmed_message_nor_offset_nor_ack() {
    let (_t, dir) = data_dir();
    let mut server = start(&dir, None);
    let (confirmed, committed) = bounded(async {
        let c = Client::connect(&server.addr).await.unwrap();
        c.create_topic("t", LogSettings::default()).await.unwrap();
        c.create_queue("q", QueueSettings::default()).await.unwrap();
        c.publish("t", &msgs("pre", 20)).await.unwrap();
        c.publish("q", &msgs("pre", 10)).await.unwrap();
        // A committed subscriber offset and some acks.
        c.subscribe("t", SubscribeOptions::named("s").from(Start::Earliest))
            .await
            .unwrap();
        c.commit("t", "s", 0, 12).await.unwrap();
        let mut cons = c.consume(Source::Queue("q".into()), 4).await.unwrap();
        for _ in 0..4 {
            cons.next().await.unwrap().unwrap().ack().await.unwrap();
        }
        // Publish continuously from several pipelined tasks and kill the server meanwhile.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for w in 0..4 {
            let c = c.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    match c.publish("t", &msgs(&format!("w{w}-{i}"), 5)).await {
                        Ok(p) => {
                            let _ = tx.send((p, format!("w{w}-{i}")));
                        }
                        Err(_) => return,
                    }
                }
            });
        }
        drop(tx);
        tokio::time::sleep(Duration::from_millis(700)).await;
        server.kill9();
        let mut confirmed = Vec::new();
        while let Some(x) = rx.recv().await {
            confirmed.push(x);
        }
        (confirmed, 12u64)
    })
    .await;
    assert!(
        !confirmed.is_empty(),
        "nothing was confirmed before the kill"
    );
    let server = start(&dir, None);
    bounded(async {
        let c = Client::connect(&server.addr).await.unwrap();
        let info = c.describe_topic("t").await.unwrap();
        let s = info.partitions[0]
            .subscribers
            .iter()
            .find(|s| s.name == "s")
            .unwrap();
        assert_eq!(s.committed, committed);
        let last = confirmed.iter().map(|(p, _)| p.last_offset).max().unwrap();
        assert!(info.partitions[0].end_offset > last);
        let mut sub = c
            .subscribe("t", SubscribeOptions::anonymous().from(Start::Earliest))
            .await
            .unwrap();
        let mut by_offset = std::collections::HashMap::new();
        while let Some(m) = sub.next().await {
            let m = m.unwrap();
            by_offset.insert(m.offset, m.record.value);
            if m.offset == last {
                break;
            }
        }
        for (p, prefix) in &confirmed {
            for (i, o) in (p.base_offset..=p.last_offset).enumerate() {
                assert_eq!(
                    by_offset[&o],
                    format!("{prefix}-{i}").as_bytes(),
                    "offset {o}"
                );
            }
        }
        let q = c.describe_queue("q").await.unwrap();
        assert_eq!(q.depth, 6, "acked messages must stay acked");
        let mut cons = c.consume(Source::Queue("q".into()), 10).await.unwrap();
        let d = cons.next().await.unwrap().unwrap();
        assert!(d.offset >= 4);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_share_a_topic() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    bounded(async {
        let c = Client::connect(&server.addr).await.unwrap();
        c.create_topic("ev", LogSettings::default()).await.unwrap();
        c.publish("ev", &msgs("e", 10)).await.unwrap();
        let src = || Source::Group {
            topic: "ev".into(),
            group: "g".into(),
        };
        let mut a = c.consume(src(), 10).await.unwrap();
        let mut seen = BTreeSet::new();
        while seen.len() < 10 {
            let d = a.next().await.unwrap().unwrap();
            seen.insert(d.offset);
            d.ack().await.unwrap();
        }
        assert_eq!(seen, (0..10).collect());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_time_out_then_go_to_the_dead_letter_queue() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    bounded(async {
        let c = Client::connect(&server.addr).await.unwrap();
        let settings = QueueSettings {
            ack_timeout_ms: Some(300),
            max_deliveries: Some(2),
            ..QueueSettings::default()
        };
        c.create_queue("slow", settings).await.unwrap();
        c.publish("slow", &msgs("s", 1)).await.unwrap();
        let mut cons = c.consume(Source::Queue("slow".into()), 1).await.unwrap();
        // Never acked: delivered again after the ack timeout, to the same prefetch-1 consumer.
        let d1 = cons.next().await.unwrap().unwrap();
        let d2 = cons.next().await.unwrap().unwrap();
        assert_eq!((d1.offset, d1.attempt), (0, 1));
        assert_eq!((d2.offset, d2.attempt), (0, 2));
        // After max_deliveries it is dead-lettered, and the dead-letter queue is a queue.
        let mut dead = c
            .consume(Source::Queue("slow.dlq".into()), 1)
            .await
            .unwrap();
        let d = tokio::time::timeout(Duration::from_secs(10), dead.next())
            .await
            .expect("dead letter not delivered")
            .unwrap()
            .unwrap();
        assert_eq!(d.record.value, b"s-0");
        d.ack().await.unwrap();
        let q = c.describe_queue("slow").await.unwrap();
        assert_eq!((q.dead_lettered, q.depth, q.in_flight), (1, 0, 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_and_prefetch_bound_what_the_server_sends() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    bounded(async {
        let c = Client::connect(&server.addr).await.unwrap();
        c.create_topic("t", LogSettings::default()).await.unwrap();
        c.create_queue("q", QueueSettings::default()).await.unwrap();
        // Pipelined, ordered publishes.
        let mut pending = Vec::new();
        for i in 0..20 {
            pending.push(
                c.send_publish(
                    sluice::protocol::Target::Topic("t".into()),
                    &msgs(&format!("p{i}"), 5),
                )
                .await
                .unwrap(),
            );
        }
        for (i, p) in pending.into_iter().enumerate() {
            let p = p.confirmed().await.unwrap();
            assert_eq!(p.base_offset, i as u64 * 5);
        }
        // A subscription with 5 credits that takes one message holds the other 4, no more.
        let mut sub = c
            .subscribe(
                "t",
                SubscribeOptions::anonymous()
                    .from(Start::Earliest)
                    .credit(5),
            )
            .await
            .unwrap();
        assert_eq!(sub.next().await.unwrap().unwrap().offset, 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sub.buffered(), 4);
        // Taking them grants credit back: everything arrives in order.
        for o in 1..100 {
            assert_eq!(sub.next().await.unwrap().unwrap().offset, o);
        }
        // A consumer with prefetch 3 that acks nothing gets 3 messages and then nothing.
        c.publish("q", &msgs("q", 10)).await.unwrap();
        let mut cons = c.consume(Source::Queue("q".into()), 3).await.unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(cons.next().await.unwrap().unwrap());
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(300), cons.next())
                .await
                .is_err()
        );
        assert_eq!(c.describe_queue("q").await.unwrap().in_flight, 3);
        // One ack makes room for exactly one more.
        held[0].ack().await.unwrap();
        let d = cons.next().await.unwrap().unwrap();
        assert_eq!(d.offset, 3);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), cons.next())
                .await
                .is_err()
        );
        // An invalid batch is refused without closing the connection.
        let mut bad = sluice::storage::format::encode_batch(&msgs("x", 1), 0);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let e = c
            .publish_encoded(
                sluice::protocol::Target::Topic("t".into()),
                sluice::protocol::Route::Any,
                bad,
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(sluice::protocol::ErrorCode::InvalidBatch));
        c.ping().await.unwrap();
        assert_eq!(
            c.describe_topic("t").await.unwrap().partitions[0].end_offset,
            100
        );
    })
    .await;
}

/// A consumer's window is refilled both by its acks (the round runs with the ack) and by its
/// own task (when messages are published): together they never hand out more than the
/// prefetch, and every message arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_and_publishes_refill_the_window_without_overrunning_it() {
    const PREFETCH: u32 = 40;
    const TOTAL: u64 = 4000;
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    bounded(async {
        let c = Client::connect(&server.addr).await.unwrap();
        c.create_queue("q", QueueSettings::default()).await.unwrap();
        let mut cons = c
            .consume(Source::Queue("q".into()), PREFETCH)
            .await
            .unwrap();
        let publisher = {
            let p = Client::connect(&server.addr).await.unwrap();
            tokio::spawn(async move {
                for i in 0..TOTAL / 10 {
                    p.publish("q", &msgs(&format!("m{i}"), 10)).await.unwrap();
                }
            })
        };
        let acker = cons.acker();
        let mut seen = HashSet::new();
        let mut held = Vec::new();
        while (seen.len() as u64) < TOTAL {
            let d = cons.next().await.unwrap().unwrap();
            assert!(seen.insert(d.offset), "offset {} delivered twice", d.offset);
            held.push(d.id());
            if held.len() as u32 == PREFETCH || seen.len() as u64 == TOTAL {
                // The window is full: nothing more may come until an ack.
                tokio::time::sleep(Duration::from_millis(5)).await;
                assert_eq!(
                    cons.buffered(),
                    0,
                    "more than the prefetch of {PREFETCH} was handed out"
                );
                // Acked in four concurrent requests, so rounds run by the acks overlap each
                // other and the rounds that publishes start.
                let mut acks = Vec::new();
                for part in held.chunks(held.len().div_ceil(4)) {
                    let (a, part) = (acker.clone(), part.to_vec());
                    acks.push(tokio::spawn(async move { a.ack(&part).await }));
                }
                for a in acks {
                    a.await.unwrap().unwrap();
                }
                held.clear();
            }
        }
        publisher.await.unwrap();
        let st = c.describe_queue("q").await.unwrap();
        assert_eq!(st.in_flight, 0);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), cons.next())
                .await
                .is_err(),
            "nothing more to deliver"
        );
    })
    .await;
}

/// A named subscriber is held by one open subscription at a time (two connections used to read
/// and commit the same one at once), and a commit past the end is refused (it used to be
/// clamped to the end without a word).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_subscriber_has_one_holder_and_commits_stay_in_range() {
    use sluice::protocol::ErrorCode;
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    bounded(async {
        let a = Client::connect(&server.addr).await.unwrap();
        let b = Client::connect(&server.addr).await.unwrap();
        a.create_topic("t", LogSettings::default()).await.unwrap();
        a.publish("t", &msgs("m", 10)).await.unwrap();
        let opts = || SubscribeOptions::named("n").from(Start::Earliest);
        let sub = a.subscribe("t", opts()).await.unwrap();
        let Err(e) = b.subscribe("t", opts()).await else {
            panic!("two subscriptions held subscriber n at once");
        };
        assert_eq!(e.code(), Some(ErrorCode::InUse), "{e}");
        // The same connection cannot open it twice either; another name is free.
        let Err(e) = a.subscribe("t", opts()).await else {
            panic!("one connection held subscriber n twice");
        };
        assert_eq!(e.code(), Some(ErrorCode::InUse), "{e}");
        let other = b
            .subscribe("t", SubscribeOptions::named("other"))
            .await
            .unwrap();
        // A commit past the end (10) is refused and changes nothing; at the end it is fine.
        let e = b.commit("t", "n", 0, 11).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::InvalidArgument), "{e}");
        b.commit("t", "n", 0, 10).await.unwrap();
        b.commit("t", "n", 0, 4).await.unwrap();
        // Once its holder cancels, the name is free again, at its committed offset.
        sub.cancel().await.unwrap();
        let mut again = b.subscribe("t", opts().from(Start::Default)).await.unwrap();
        assert_eq!(again.start_offset(), 4);
        assert_eq!(again.next().await.unwrap().unwrap().offset, 4);
        drop(other);
    })
    .await;
}
