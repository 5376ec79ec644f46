//! Misbehaving clients, limits, the data-directory lock and graceful shutdown, against the real
//! `sluice` binary. Raw sockets speak the protocol by hand (docs/protocol.md).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{data_dir, start, wait_bounded, BIN};
use sluice::protocol::{self, kind, ErrorCode, RawFrame, Reply, Request};

const LIMITS: &str = "[limits]\nframe_timeout_ms = 300\nhandshake_timeout_ms = 300\nidle_timeout_ms = 2000\nconnections_max = 8\n";

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one frame; `None` at end of stream.
fn read_frame(s: &mut TcpStream) -> Option<RawFrame> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("read failed: {e}"),
    }
    let len = u32::from_le_bytes(len) as usize;
    let mut rest = vec![0u8; len];
    s.read_exact(&mut rest).unwrap();
    Some(RawFrame {
        kind: rest[0],
        request_id: u32::from_le_bytes(rest[1..5].try_into().unwrap()),
        body: rest[5..].to_vec(),
    })
}

fn hello(s: &mut TcpStream) {
    let f = Request::Hello {
        version: protocol::VERSION,
        client: "raw".into(),
    }
    .encode(1);
    s.write_all(&f.to_vec()).unwrap();
    let r = read_frame(s).expect("HELLO_OK");
    assert_eq!(r.kind, kind::HELLO_OK);
}

/// Expects an ERROR frame with `code`, then the end of the stream.
fn expect_error_then_close(s: &mut TcpStream, code: ErrorCode) {
    let f = read_frame(s).expect("an ERROR frame before the close");
    match Reply::decode(f).unwrap() {
        Reply::Error { code: c, .. } => assert_eq!(c, code),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(read_frame(s).is_none(), "the connection must be closed");
}

fn publish_one(addr: &str, topic: &str, value: &str) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = sluice::client::Client::connect(addr).await.unwrap();
        let _ = c.create_topic(topic, Default::default()).await;
        c.publish(topic, &[sluice::storage::Record::from_value(value)])
            .await
            .unwrap()
            .base_offset
    })
}

#[test]
fn garbage_oversized_and_stalled_clients_are_cut_off_and_others_unaffected() {
    let (_t, dir) = data_dir();
    let server = start(&dir, Some(LIMITS));
    assert_eq!(publish_one(&server.addr, "t", "before"), 0);

    // A well-behaved connection kept open across the abuse.
    let mut good = connect(&server.addr);
    hello(&mut good);

    // Unknown frame kind after the handshake.
    let mut s = connect(&server.addr);
    hello(&mut s);
    s.write_all(&[5, 0, 0, 0, 0x7f, 9, 0, 0, 0]).unwrap();
    expect_error_then_close(&mut s, ErrorCode::Malformed);

    // Truncated body of a known kind.
    let mut s = connect(&server.addr);
    hello(&mut s);
    s.write_all(&[7, 0, 0, 0, kind::DESCRIBE_TOPIC, 2, 0, 0, 0, 0xff, 0xff])
        .unwrap();
    expect_error_then_close(&mut s, ErrorCode::Malformed);

    // Plain garbage instead of a handshake (its "length" is huge).
    let mut s = connect(&server.addr);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    expect_error_then_close(&mut s, ErrorCode::FrameTooLarge);

    // Oversized length prefix after the handshake: rejected before the body is sent.
    let mut s = connect(&server.addr);
    hello(&mut s);
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    expect_error_then_close(&mut s, ErrorCode::FrameTooLarge);

    // Stalled mid-frame.
    let mut s = connect(&server.addr);
    hello(&mut s);
    let t0 = Instant::now();
    s.write_all(&[20, 0, 0]).unwrap();
    expect_error_then_close(&mut s, ErrorCode::Timeout);
    assert!(t0.elapsed() < Duration::from_secs(5));

    // No handshake at all.
    let mut s = connect(&server.addr);
    expect_error_then_close(&mut s, ErrorCode::Timeout);

    // Wrong protocol version.
    let mut s = connect(&server.addr);
    let f = Request::Hello {
        version: 99,
        client: "old".into(),
    }
    .encode(1);
    s.write_all(&f.to_vec()).unwrap();
    expect_error_then_close(&mut s, ErrorCode::UnsupportedVersion);

    // The good connection still works, and nothing stored was lost.
    good.write_all(&Request::Ping.encode(2).to_vec()).unwrap();
    let f = read_frame(&mut good).unwrap();
    assert_eq!((f.kind, f.request_id), (kind::PONG, 2));
    assert_eq!(publish_one(&server.addr, "t", "after"), 1);

    // And after idling past idle_timeout_ms it is closed with a Timeout.
    std::thread::sleep(Duration::from_millis(2300));
    expect_error_then_close(&mut good, ErrorCode::Timeout);
}

#[test]
fn connections_over_the_limit_are_refused_with_an_error() {
    let (_t, dir) = data_dir();
    let server = start(&dir, Some("[limits]\nconnections_max = 2\n"));
    let mut a = connect(&server.addr);
    hello(&mut a);
    let mut b = connect(&server.addr);
    hello(&mut b);
    let mut c = connect(&server.addr);
    expect_error_then_close(&mut c, ErrorCode::LimitReached);
    drop(a);
    std::thread::sleep(Duration::from_millis(200));
    let mut d = connect(&server.addr);
    hello(&mut d);
}

#[test]
fn a_second_server_on_the_same_directory_fails_at_once() {
    let (_t, dir) = data_dir();
    let _server = start(&dir, None);
    let mut second = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut second, Duration::from_secs(20)).expect("second serve hung");
    assert!(!status.success());
    let mut err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("already in use"), "stderr: {err}");
}

#[test]
fn sigterm_shuts_down_cleanly_and_data_survives() {
    let (_t, dir) = data_dir();
    let mut server = start(&dir, None);
    assert_eq!(publish_one(&server.addr, "t", "one"), 0);
    let status = server.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "exit status {status:?}");
    let server = start(&dir, None);
    assert_eq!(publish_one(&server.addr, "t", "two"), 1);
    let mut s = server;
    let status = s.signal_and_wait(libc::SIGINT);
    assert!(status.success(), "exit status {status:?}");
}
