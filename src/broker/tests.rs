//! The core functions a pull frontend (Kafka's) calls, on a real store: publish of an encoded
//! batch to (topic, partition), raw reads with a long-poll wait, list offsets, topic ids,
//! committed offsets with metadata, adding partitions, routes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_storage::{format, LogConfig, Offset, Record, StdFs, Store, StoreConfig};

use super::*;
use crate::config::Limits;

fn broker() -> (tempfile::TempDir, Arc<Broker>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Arc::new(StdFs), dir.path(), StoreConfig::default()).unwrap();
    let b = Broker::new(Arc::new(store), Limits::default(), LogConfig::default());
    (dir, Arc::new(b))
}

fn batch(values: &[&str]) -> Vec<u8> {
    let rs: Vec<Record> = values.iter().map(|v| Record::from_value(*v)).collect();
    format::encode_batch(&rs, 1_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_frontend_functions() {
    let (_d, b) = broker();
    b.create_topic("t", &LogSettings::default(), 3).unwrap();
    let (id, n) = b.topic_meta("t").unwrap();
    assert_eq!(n, 3);
    assert_eq!(b.topic_id("t").unwrap(), id);
    assert_eq!(b.topic_name(id).unwrap(), "t");

    publish_to_a_chosen_partition(&b);
    raw_reads_and_long_polls(&b).await;
    list_offsets(&b);
    committed_offsets_with_metadata(&b);
    adding_partitions_and_routes(&b);

    // Describe: per-partition figures and the id.
    let info = b.describe_topic("t".into()).unwrap();
    assert_eq!(info.partitions.len(), 5);
    assert_eq!(info.partitions[2].end_offset, 2);
    assert_eq!(info.partitions[2].subscribers[0].committed, 1);
    assert_eq!(info.id, id.to_string());

    // Deleted: gone by id too.
    b.delete_topic("t").unwrap();
    assert!(b.topic_name(id).is_err());
}

/// Two records to partition 2 of `t`.
fn publish_to_a_chosen_partition(b: &Broker) {
    // Publish an encoded batch to a chosen partition.
    let log = b.partition_log("t", 2).unwrap();
    let p = publish(&log, batch(&["a", "b"]), true, || {}).unwrap();
    assert_eq!((p.base_offset, p.last_offset), (Offset(0), Offset(1)));
    assert!(b.partition_log("t", 3).is_err());
}

/// Partition 2 holds 2 records, partition 1 none until the long poll's publish.
async fn raw_reads_and_long_polls(b: &Arc<Broker>) {
    // Raw reads: what is there at once, the whole batch holding the offset.
    let f = b
        .read_batches("t", 2, Offset(1), 1 << 20, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        (f.batches.len(), f.end, f.out_of_range),
        (1, Offset(2), false)
    );
    assert_eq!(f.batches[0].header.base_offset, Offset(0));
    // Out of range.
    let f = b
        .read_batches("t", 2, Offset(9), 1 << 20, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(f.out_of_range);
    // A long poll that ends at its wait with nothing.
    let started = Instant::now();
    let f = b
        .read_batches("t", 1, Offset(0), 1 << 20, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(f.batches.is_empty() && !f.out_of_range);
    assert!(started.elapsed() >= Duration::from_millis(190));
    // A long poll woken by a publish to that partition.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.read_batches("t", 1, Offset(0), 1 << 20, Duration::from_secs(30))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let l1 = b.partition_log("t", 1).unwrap();
    tokio::task::spawn_blocking(move || publish(&l1, batch(&["late"]), true, || {}))
        .await
        .unwrap()
        .unwrap();
    let f = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the long poll was not woken")
        .unwrap()
        .unwrap();
    assert_eq!(f.batches.len(), 1);
}

fn list_offsets(b: &Broker) {
    // List offsets.
    assert_eq!(
        b.list_offset("t", 2, OffsetSpec::Earliest).unwrap(),
        Some(Offset(0))
    );
    assert_eq!(
        b.list_offset("t", 2, OffsetSpec::Latest).unwrap(),
        Some(Offset(2))
    );
    assert_eq!(
        b.list_offset("t", 2, OffsetSpec::Timestamp(i64::MAX))
            .unwrap(),
        None
    );
}

/// Group `g` commits offset 1 of partition 2.
fn committed_offsets_with_metadata(b: &Broker) {
    // Committed offsets of a group, with metadata, made by the first commit.
    assert_eq!(b.fetch_offset("g", "t", 2).unwrap(), None);
    let stored = b
        .commit_offsets("g", "t", &[(2, Offset(1), b"kafka-meta".as_slice())])
        .unwrap();
    assert!(stored.iter().all(|r| r.is_ok()));
    assert_eq!(
        b.fetch_offset("g", "t", 2).unwrap(),
        Some((Offset(1), b"kafka-meta".to_vec()))
    );
    assert_eq!(b.fetch_offset("g", "t", 0).unwrap(), None);
}

/// `t` grows from 3 partitions to 5.
fn adding_partitions_and_routes(b: &Broker) {
    // Adding partitions; a route with a stale count is refused, nothing appended.
    assert_eq!(b.add_partitions("t", 5).unwrap(), 5);
    assert!(b.add_partitions("t", 4).is_err());
    let stale = Route::Partition {
        partition: 0,
        expected_partitions: 3,
    };
    let e = b
        .resolve_target(&Target::Topic("t".into()), stale)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PartitionsChanged);
    let fresh = Route::Partition {
        partition: 4,
        expected_partitions: 5,
    };
    let (p, _) = b.resolve_target(&Target::Topic("t".into()), fresh).unwrap();
    assert_eq!(p, 4);
    // Any: round robin over every partition.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..5 {
        seen.insert(
            b.resolve_target(&Target::Any("t".into()), Route::Any)
                .unwrap()
                .0,
        );
    }
    assert_eq!(seen.len(), 5);
}

/// A group consumer's rounds start one partition further each time, so a full window never
/// keeps one partition to itself; acks name (partition, offset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_consumer_takes_partitions_in_turn() {
    let (_d, b) = broker();
    b.create_topic("t", &LogSettings::default(), 3).unwrap();
    for p in 0..3 {
        let log = b.partition_log("t", p).unwrap();
        let vs: Vec<String> = (0..10).map(|i| format!("{p}-{i}")).collect();
        let vs: Vec<&str> = vs.iter().map(|s| s.as_str()).collect();
        publish(&log, batch(&vs), true, || {}).unwrap();
    }
    let c = b.new_consumer(3);
    let source = Source::Group {
        topic: "t".into(),
        group: "g".into(),
    };
    let feed = c.open(&b, &source).await.unwrap();
    assert_eq!(feed.queues.len(), 3);
    let (c2, qs) = (c.clone(), feed.queues.clone());
    let rounds = tokio::task::spawn_blocking(move || {
        let mut rounds = Vec::new();
        for _ in 0..6 {
            let ds = c2.deliver(&qs, 1 << 20).unwrap();
            let ids: Vec<MessageId> = ds.iter().map(|d| (d.partition, d.offset)).collect();
            rounds.push(ids.iter().map(|(p, _)| *p).collect::<Vec<_>>());
            c2.ack(&ids, None, |_| (), |_| ()).unwrap();
        }
        // An offset this consumer does not hold is refused, naming its partition.
        let e = c2.ack(&[(2, Offset(9))], None, |_| (), |_| ()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotHeld);
        assert!(e.message.contains("9@2"), "{}", e.message);
        rounds
    })
    .await
    .unwrap();
    let firsts: Vec<u32> = rounds.iter().map(|r| r[0]).collect();
    assert_eq!(firsts, vec![0, 1, 2, 0, 1, 2], "{rounds:?}");
    assert!(rounds.iter().all(|r| r.len() == 3));
    c.release();
}
