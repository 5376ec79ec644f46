//! Settings enter through the wire with their ranges checked: durations past what a signed
//! millisecond clock can add (they used to wrap negative: `retention_ms = u64::MAX` deleted
//! confirmed messages at once, `ack_timeout_ms = u64::MAX` redelivered a message in
//! milliseconds) and segment sizes too small to keep file descriptors bounded get an
//! `InvalidArgument` reply, and nothing is created.

mod common;

use std::time::Duration;

use common::{data_dir, start};
use sluice::client::Client;
use sluice::protocol::{ErrorCode, LogSettings, QueueSettings};

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test step timed out")
}

fn assert_invalid(r: Result<(), sluice::client::ClientError>, what: &str) {
    match r {
        Err(e) => assert_eq!(e.code(), Some(ErrorCode::InvalidArgument), "{what}: {e}"),
        Ok(()) => panic!("{what}: accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_settings_are_refused_at_create() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    bounded(async {
        let c = Client::connect(&server.addr).await.unwrap();
        for ms in [u64::MAX, 1 << 63, 0] {
            let log = LogSettings {
                retention_ms: Some(ms),
                ..LogSettings::default()
            };
            assert_invalid(c.create_topic("t", log).await, "topic retention_ms");
            let q = QueueSettings {
                ack_timeout_ms: Some(ms),
                ..QueueSettings::default()
            };
            assert_invalid(c.create_queue("q", q).await, "queue ack_timeout_ms");
        }
        let tiny = LogSettings {
            segment_bytes_max: Some(80),
            ..LogSettings::default()
        };
        assert_invalid(c.create_topic("t", tiny.clone()).await, "80-byte segments");
        let q = QueueSettings {
            log: tiny,
            ..QueueSettings::default()
        };
        assert_invalid(c.create_queue("q", q).await, "80-byte queue segments");
        assert!(c.list_topics().await.unwrap().is_empty());
        assert!(c.list_queues().await.unwrap().is_empty());
        // The largest accepted duration keeps everything.
        let keep = LogSettings {
            retention_ms: Some(sluice::storage::config::DURATION_MS_MAX),
            ..LogSettings::default()
        };
        c.create_topic("t", keep).await.unwrap();
        for i in 0..10 {
            c.publish("t", &[sluice::storage::Record::from_value(format!("m{i}"))])
                .await
                .unwrap();
        }
        let info = c.describe_topic("t").await.unwrap();
        let p0 = &info.partitions[0];
        assert_eq!((p0.start_offset, p0.end_offset), (0, 10));
    })
    .await;
}
