//! Partitioned topics end to end, through the `sluice` command line and the Rust client against
//! a real server: create with partitions, keyed publishes on Kafka's murmur2 partition,
//! subscriptions over every partition, named subscribers resuming per partition after a
//! restart, a group consumer across partitions with acks, and adding partitions.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{cli, cli_ok, data_dir, json_lines, start};
use serde_json::Value;
use sluice::client::{partition_for_key, Client, Record, SubscribeOptions};
use sluice::protocol::{ErrorCode, Start, Target};

/// Partitions of keys among 3 and 6, as Kafka 4.4.0's `Utils.toPositive(Utils.murmur2(key)) %
/// n` computes them (see `client/src/partitioner.rs`).
const KEYS: [(&str, u64, u64); 4] = [
    ("order-1", 1, 4),
    ("customer-7", 1, 1),
    ("abc", 0, 3),
    ("a-little-bit-long-string", 2, 2),
];

fn publish_json(a: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json", "publish"];
    all.extend_from_slice(args);
    json_lines(&cli_ok(a, &all, None))
}

/// (partition, offset, payload) of every JSON line.
fn messages(lines: &[Value]) -> Vec<(u64, u64, String)> {
    lines
        .iter()
        .map(|l| {
            (
                l["partition"].as_u64().unwrap(),
                l["offset"].as_u64().unwrap(),
                l["payload"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn partitioned_topic_through_the_command_line() {
    let (_t, dir) = data_dir();
    let mut server = start(&dir, None);
    let a = server.addr.clone();
    let a = a.as_str();
    let id = create_orders(a);
    publish_keyed_keyless_and_chosen(a);
    let ends = subscribe_to_every_partition_and_to_one(a);

    // The named subscriber committed per partition; after a restart it resumes on each.
    let d = json_lines(&cli_ok(a, &["--json", "topic", "describe", "orders"], None));
    for (p, end) in ends.iter().enumerate() {
        let s = &d[0]["partitions"][p]["subscribers"][0];
        assert_eq!(
            (s["name"].as_str(), s["committed"].as_u64()),
            (Some("billing"), Some(*end))
        );
    }
    server.kill9();
    let server = start(&dir, None);
    let a = server.addr.as_str();
    named_subscriber_resumes_on_each_partition(a, &ends, &id);
    group_consumes_every_partition(a);
    added_partitions_take_messages(a);
}

/// Creates `orders` with 3 partitions and returns its id, a UUID v4.
fn create_orders(a: &str) -> String {
    let out = cli_ok(a, &["topic", "create", "orders", "--partitions", "3"], None);
    assert_eq!(out, ["created topic orders with 3 partition(s)"]);
    let d = json_lines(&cli_ok(a, &["--json", "topic", "describe", "orders"], None));
    assert_eq!(d[0]["partitions"].as_array().unwrap().len(), 3);
    let id = d[0]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(&id[14..15], "4", "a UUID v4: {id}");
    id
}

/// Publishes 4 keyed, 6 keyless and 1 explicitly placed message to `orders`.
fn publish_keyed_keyless_and_chosen(a: &str) {
    // Keyed publishes land on the key's murmur2 partition.
    for (key, of3, _) in KEYS {
        let out = publish_json(a, &["orders", "--key", key, &format!("v-{key}")]);
        assert_eq!(out[0]["partition"], of3, "{key}");
        // The client's partitioner agrees with the table.
        assert_eq!(partition_for_key(key.as_bytes(), 3) as u64, of3);
    }
    // Keyless ones spread over the partitions; an explicit partition is honoured.
    let mut spread = BTreeSet::new();
    for i in 0..6 {
        let out = publish_json(a, &["orders", &format!("free-{i}")]);
        spread.insert(out[0]["partition"].as_u64().unwrap());
    }
    assert_eq!(spread.len(), 3, "keyless publishes went to {spread:?}");
    let out = publish_json(a, &["orders", "--partition", "2", "chosen"]);
    assert_eq!(out[0]["partition"], 2);
    let bad = cli(a, &["publish", "orders", "--partition", "3", "x"], None);
    assert!(!bad.status.success());
}

/// Subscribes as `billing` from the start, then to partition 2 alone; returns how many
/// messages each partition holds.
fn subscribe_to_every_partition_and_to_one(a: &str) -> Vec<u64> {
    // A subscription from the start sees every partition, each in offset order.
    let lines = json_lines(&cli_ok(
        a,
        &[
            "--json",
            "subscribe",
            "orders",
            "--name",
            "billing",
            "--from",
            "earliest",
            "--wait-ms",
            "500",
        ],
        None,
    ));
    let seen = messages(&lines);
    assert_eq!(seen.len(), 4 + 6 + 1);
    let mut per: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (p, o, _) in &seen {
        per.entry(*p).or_default().push(*o);
    }
    assert_eq!(per.len(), 3);
    for offs in per.values() {
        assert_eq!(*offs, (0..offs.len() as u64).collect::<Vec<_>>());
    }
    let ends: Vec<u64> = per.values().map(|o| o.len() as u64).collect();

    // Only one partition reads when asked.
    let only = json_lines(&cli_ok(
        a,
        &[
            "--json",
            "subscribe",
            "orders",
            "--partition",
            "2",
            "--from",
            "earliest",
            "--wait-ms",
            "300",
        ],
        None,
    ));
    assert!(messages(&only).iter().all(|(p, _, _)| *p == 2));
    assert_eq!(only.len() as u64, ends[2]);
    ends
}

/// After the restart: one more message per partition, which `billing` alone receives, and the
/// topic kept its id.
fn named_subscriber_resumes_on_each_partition(a: &str, ends: &[u64], id: &str) {
    for p in 0..3 {
        publish_json(
            a,
            &[
                "orders",
                "--partition",
                &p.to_string(),
                &format!("late-{p}"),
            ],
        );
    }
    let lines = json_lines(&cli_ok(
        a,
        &[
            "--json",
            "subscribe",
            "orders",
            "--name",
            "billing",
            "--wait-ms",
            "500",
        ],
        None,
    ));
    let mut late = messages(&lines);
    late.sort();
    let want: Vec<(u64, u64, String)> = (0..3)
        .map(|p| (p, ends[p as usize], format!("late-{p}")))
        .collect();
    assert_eq!(late, want);
    let d = json_lines(&cli_ok(a, &["--json", "topic", "describe", "orders"], None));
    assert_eq!(d[0]["id"].as_str(), Some(id), "the id survives a restart");
}

/// A group consumer takes from every partition and acks (partition, offset).
fn group_consumes_every_partition(a: &str) {
    let lines = json_lines(&cli_ok(
        a,
        &[
            "--json",
            "consume",
            "orders",
            "--group",
            "ship",
            "--wait-ms",
            "800",
        ],
        None,
    ));
    let got = messages(&lines);
    assert_eq!(got.len(), 4 + 6 + 1 + 3);
    let parts: BTreeSet<u64> = got.iter().map(|(p, _, _)| *p).collect();
    assert_eq!(parts.len(), 3);
    let again = cli_ok(
        a,
        &["consume", "orders", "--group", "ship", "--wait-ms", "500"],
        None,
    );
    assert!(again.is_empty(), "acked messages came again: {again:?}");
}

/// Adding partitions: the new ones take messages, the group and keys follow.
fn added_partitions_take_messages(a: &str) {
    let out = cli_ok(a, &["topic", "alter", "orders", "--partitions", "6"], None);
    assert_eq!(out, ["topic orders has 6 partition(s)"]);
    let bad = cli(a, &["topic", "alter", "orders", "--partitions", "2"], None);
    assert!(!bad.status.success(), "partitions are never removed");
    for (key, _, of6) in KEYS {
        let out = publish_json(a, &["orders", "--key", key, "after-alter"]);
        assert_eq!(out[0]["partition"], of6, "{key}");
    }
    let lines = json_lines(&cli_ok(
        a,
        &[
            "--json",
            "consume",
            "orders",
            "--group",
            "ship",
            "--wait-ms",
            "800",
        ],
        None,
    ));
    let mut got: Vec<u64> = messages(&lines).iter().map(|(p, _, _)| *p).collect();
    got.sort();
    let mut want: Vec<u64> = KEYS.iter().map(|k| k.2).collect();
    want.sort();
    assert_eq!(got, want);
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test step timed out")
}

/// The client caches a topic's partition count; after partitions are added elsewhere, its next
/// keyed publish is refused by the server as stale, and it refreshes and lands on the key's new
/// partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_partition_count_is_refreshed() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    bounded(async {
        let c = Client::connect(&server.addr).await.unwrap();
        let admin = Client::connect(&server.addr).await.unwrap();
        c.create_topic_with_partitions("t", Default::default(), 3)
            .await
            .unwrap();
        let keyed = |k: &str| Record {
            key: Some(k.as_bytes().to_vec()),
            ..Record::from_value("v")
        };
        let p = c.publish("t", &[keyed("order-1")]).await.unwrap();
        assert_eq!(p.partition, 1);
        assert_eq!(c.partition_count("t").await.unwrap(), Some(3));
        admin.add_partitions("t", 6).await.unwrap();
        // `c` still believes 3: the server refuses that, `c` refreshes and goes to 4.
        let p = c.publish("t", &[keyed("order-1")]).await.unwrap();
        assert_eq!((p.partition, p.base_offset), (4, 0));
        assert_eq!(c.partition_count("t").await.unwrap(), Some(6));
        // A raw publish with a stale count names the error.
        let stale = sluice::protocol::Route::Partition {
            partition: 1,
            expected_partitions: 3,
        };
        let batch = sluice::storage::format::encode_batch(&[Record::from_value("x")], 1);
        let e = c
            .publish_encoded(Target::Topic("t".into()), stale, batch)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::PartitionsChanged), "{e}");
        // Metadata: id and count.
        let (id, n) = c.topic_meta("t").await.unwrap();
        assert_eq!(n, 6);
        assert!(!id.is_nil());
        // A subscription of chosen partitions; commits with metadata round-trip in describe.
        let mut sub = c
            .subscribe(
                "t",
                SubscribeOptions::named("s")
                    .from(Start::Earliest)
                    .partitions(vec![4]),
            )
            .await
            .unwrap();
        assert_eq!(sub.start_offsets(), &[(4, 0)]);
        let m = sub.next().await.unwrap().unwrap();
        assert_eq!((m.partition, m.offset), (4, 0));
        c.commit_with_metadata("t", "s", 4, 1, b"meta")
            .await
            .unwrap();
        let info = c.describe_topic("t").await.unwrap();
        assert_eq!(info.partitions[4].subscribers[0].committed, 1);
        assert_eq!(info.id, id.to_string());
    })
    .await;
}
