//! rskafka, a pure-Rust Kafka client with its own protocol code, against the real
//! `sluice serve`: a topic of three partitions created through the controller API and listed;
//! records with keys, headers and timestamps produced to each partition (uncompressed, gzip,
//! snappy) and fetched back intact at the offsets the produces returned, from the start and from
//! the middle of a batch; earliest, latest and by-time offsets; a stream consumer woken by a
//! later produce; a deleted topic gone. In-process (no installed client), so it always runs.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rskafka::chrono::{TimeZone, Utc};
use rskafka::client::consumer::{StartOffset, StreamConsumerBuilder};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

use common::data_dir;
use common::kafka::start_kafka;

/// Record `i` of partition `p`: key, value, a header and a timestamp 1 s apart.
fn record(p: i32, i: i64) -> Record {
    Record {
        key: Some(format!("k{p}-{i}").into_bytes()),
        value: Some(format!("value {p}/{i}").into_bytes()),
        headers: BTreeMap::from([("i".to_string(), i.to_string().into_bytes())]),
        timestamp: Utc
            .timestamp_millis_opt(1_700_000_000_000 + i * 1000)
            .unwrap(),
    }
}

async fn partition(client: &Client, topic: &str, p: i32) -> PartitionClient {
    client
        .partition_client(topic, p, UnknownTopicHandling::Error)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rskafka_produces_fetches_and_lists_offsets() {
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    let client = ClientBuilder::new(vec![s.kafka.clone()])
        .build()
        .await
        .unwrap();
    let controller = client.controller_client().unwrap();
    controller.create_topic("rs", 3, 1, 5_000).await.unwrap();
    let listed = client.list_topics().await.unwrap();
    let rs = listed.iter().find(|t| t.name == "rs").expect("listed");
    assert_eq!(rs.partitions.len(), 3);
    let codecs = [
        Compression::NoCompression,
        Compression::Gzip,
        Compression::Snappy,
    ];
    for (p, codec) in (0..3).zip(codecs) {
        let pc = partition(&client, "rs", p).await;
        // Two produces of 10: offsets 0-9 and 10-19.
        for batch in 0..2 {
            let records = (batch * 10..batch * 10 + 10)
                .map(|i| record(p, i))
                .collect();
            let offsets = pc.produce(records, codec).await.unwrap();
            assert_eq!(
                offsets,
                (batch * 10..batch * 10 + 10).collect::<Vec<_>>(),
                "{p}"
            );
        }
        let (got, high) = pc.fetch_records(0, 1..1_000_000, 1_000).await.unwrap();
        assert_eq!(high, 20, "{p}");
        assert_eq!(got.len(), 20, "{p}");
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.record, record(p, i as i64), "{p}/{i}");
        }
        // From inside the first batch: the client drops what precedes the offset.
        let (mid, _) = pc.fetch_records(5, 1..1_000_000, 1_000).await.unwrap();
        assert_eq!(mid.first().map(|r| r.offset), Some(5), "{p}");
        assert_eq!(pc.get_offset(OffsetAt::Earliest).await.unwrap(), 0);
        assert_eq!(pc.get_offset(OffsetAt::Latest).await.unwrap(), 20);
        let at = Utc.timestamp_millis_opt(1_700_000_012_500).unwrap();
        assert_eq!(pc.get_offset(OffsetAt::Timestamp(at)).await.unwrap(), 13);
    }
    // A stream consumer at the end is woken by a later produce.
    let pc = Arc::new(partition(&client, "rs", 1).await);
    let mut stream = StreamConsumerBuilder::new(Arc::clone(&pc), StartOffset::Latest)
        .with_max_wait_ms(500)
        .build();
    let producer = Arc::clone(&pc);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        producer
            .produce(vec![record(1, 20)], Compression::Gzip)
            .await
            .unwrap();
    });
    let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("woken by the produce")
        .unwrap()
        .unwrap();
    assert_eq!((next.0.offset, next.0.record), (20, record(1, 20)));
    assert_eq!(next.1, 21, "high watermark");
    controller.delete_topic("rs", 5_000).await.unwrap();
    let listed = client.list_topics().await.unwrap();
    assert!(!listed.iter().any(|t| t.name == "rs"));
}
