//! Over the wire, an ACK settles only what that consumer holds: a consumer on another
//! connection acking a message it was never given gets `NotHeld` naming it, and the message is
//! still redelivered when its holder goes away.

mod common;

use std::time::Duration;

use common::{data_dir, start};
use sluice::client::Client;
use sluice::protocol::{ErrorCode, QueueSettings, Source};
use sluice::storage::Record;

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test step timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_of_another_consumers_message_is_refused_and_the_message_survives_its_holder() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    bounded(async {
        let admin = Client::connect(&server.addr).await.unwrap();
        admin
            .create_queue("jobs", QueueSettings::default())
            .await
            .unwrap();
        admin
            .publish("jobs", &[Record::from_value("only")])
            .await
            .unwrap();
        let a_conn = Client::connect(&server.addr).await.unwrap();
        let mut a = a_conn
            .consume(Source::Queue("jobs".into()), 10)
            .await
            .unwrap();
        let first = a.next().await.unwrap().unwrap();
        assert_eq!((first.offset, first.attempt), (0, 1));
        // B, on its own connection, holds nothing and tries to ack A's message.
        let b_conn = Client::connect(&server.addr).await.unwrap();
        let mut b = b_conn
            .consume(Source::Queue("jobs".into()), 10)
            .await
            .unwrap();
        let err = b.acker().ack(&[(0, 0)]).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::NotHeld), "{err}");
        assert!(err.to_string().contains('0'), "{err}");
        assert_eq!(admin.describe_queue("jobs").await.unwrap().in_flight, 1);
        // A goes away without acking: the message comes to B, which can ack it.
        drop(a);
        drop(a_conn);
        let again = b.next().await.unwrap().unwrap();
        assert_eq!((again.offset, again.attempt), (0, 2));
        again.ack().await.unwrap();
        let info = admin.describe_queue("jobs").await.unwrap();
        assert_eq!((info.ack_floor, info.depth), (1, 0));
    })
    .await;
}
