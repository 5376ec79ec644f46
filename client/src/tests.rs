//! Client behaviour against a scripted server.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::time::timeout;

use super::{Client, SubscribeOptions};
use crate::protocol::{self, ErrorCode, Reply, Request};

/// A server that answers the handshake, pings, subscriptions, consumers and cancels (a cancel of an
/// id already cancelled gets `UnknownId`, as from the real server), and returns how many
/// `CANCEL` frames it read once the client has gone.
async fn counting_server(listener: TcpListener) -> usize {
    let (sock, _) = listener.accept().await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    let mut cancels = 0;
    let mut open = std::collections::HashSet::new();
    loop {
        let f = match timeout(
            Duration::from_secs(5),
            protocol::read_frame(&mut rd, 1 << 20),
        )
        .await
        {
            Ok(Ok(Some(f))) => f,
            _ => break,
        };
        let reply = match Request::decode(&f).unwrap() {
            Request::Hello { .. } => Reply::HelloOk {
                version: protocol::VERSION,
                server: "counting".into(),
                frame_bytes_max: 1 << 20,
            },
            Request::Ping => Reply::Pong,
            Request::Subscribe { .. } => {
                open.insert(f.request_id);
                Reply::Positions(vec![(0, 0)])
            }
            Request::Consume { .. } => {
                open.insert(f.request_id);
                Reply::Subscribed { value: 1 }
            }
            Request::Cancel { id } => {
                cancels += 1;
                if open.remove(&id) {
                    Reply::Ok
                } else {
                    Reply::error(ErrorCode::UnknownId, "no open subscription")
                }
            }
            _ => continue,
        };
        wr.write_all(&reply.encode(f.request_id).to_vec())
            .await
            .unwrap();
    }
    cancels
}

#[tokio::test]
async fn a_cancelled_subscription_sends_one_cancel() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(counting_server(listener));
    let client = Client::connect(&addr).await.unwrap();
    let sub = client
        .subscribe("t", SubscribeOptions::anonymous())
        .await
        .unwrap();
    sub.cancel().await.unwrap();
    let consumer = client
        .consume(crate::protocol::Source::Queue("q".into()), 1)
        .await
        .unwrap();
    consumer.cancel().await.unwrap();
    client.ping().await.unwrap();
    drop(client);
    assert_eq!(server.await.unwrap(), 2, "one CANCEL per closed stream");
}

#[tokio::test]
async fn connect_options_name_the_client_and_time_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Accepts and never answers the handshake.
    let silent = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let mut rd = sock;
        let f = protocol::read_frame(&mut rd, 1 << 20)
            .await
            .unwrap()
            .unwrap();
        let Request::Hello { client, .. } = Request::decode(&f).unwrap() else {
            panic!("not a HELLO")
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        client
    });
    let r = Client::builder(addr)
        .client_name("billing-worker")
        .connect_timeout(Duration::from_millis(100))
        .connect()
        .await;
    match r {
        Err(super::ClientError::Connect { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::TimedOut)
        }
        Err(e) => panic!("expected a connect timeout, got {e}"),
        Ok(_) => panic!("expected a connect timeout, got a client"),
    }
    assert_eq!(silent.await.unwrap(), "billing-worker");
}
