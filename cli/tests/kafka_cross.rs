//! Across the two protocols on one store: records produced by a Kafka client (kcat) are read by
//! the native client with their keys, values, headers and timestamps, and records published
//! natively are consumed by kcat.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::data_dir;
use common::kafka::{kcat, kcat_ok, start_kafka};
use sluice::client::{Client, Header, Record, Start, SubscribeOptions};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn kafka_produced_records_read_natively_and_native_ones_consumed_by_kafka() {
    let Some(k) = kcat() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    let before = now_ms();
    kcat_ok(
        &k,
        None,
        &s.kafka,
        &[
            "-P",
            "-t",
            "cross",
            "-K:",
            "-H",
            "origin=kafka",
            "-z",
            "lz4",
        ],
        Some(b"k0:v0\nk1:v1\n"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = Client::connect(&s.server.addr).await.unwrap();
        let mut sub = c
            .subscribe("cross", SubscribeOptions::anonymous().from(Start::Earliest))
            .await
            .unwrap();
        for i in 0..2u64 {
            let m = tokio::time::timeout(Duration::from_secs(30), sub.next())
                .await
                .expect("a record within 30 s")
                .unwrap()
                .unwrap();
            assert_eq!(m.offset, i);
            assert_eq!(m.record.key.as_deref(), Some(format!("k{i}").as_bytes()));
            assert_eq!(m.record.value, format!("v{i}").into_bytes());
            assert_eq!(m.record.headers, vec![Header::new("origin", "kafka")]);
            let ts = m.record.timestamp_ms.unwrap();
            assert!(
                ts >= before - 1000 && ts <= now_ms(),
                "{ts} not near {before}"
            );
        }
        let native = Record {
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(b"nk".to_vec()),
            headers: vec![Header::new("origin", "native")],
            value: b"nv".to_vec(),
        };
        let p = c.publish("cross", &[native]).await.unwrap();
        assert_eq!(p.base_offset, 2);
    });
    let got = kcat_ok(
        &k,
        None,
        &s.kafka,
        &[
            "-C",
            "-t",
            "cross",
            "-o",
            "2",
            "-e",
            "-q",
            "-f",
            "%o|%k|%s|%h|%T\n",
        ],
        None,
    );
    assert_eq!(got, "2|nk|nv|origin=native|1700000000000\n");
}
