//! The frame layout: round trips, and every kind of corruption answering an error.

use crate::net::frame::{
    self, Frame, FrameError, Kind, FRAME_BYTES_MAX, HEADER_BYTES, MAGIC, VERSION,
};
use crate::net::message;
use crate::net::{NetError, Request};

fn sample() -> Vec<u8> {
    frame::encode(Kind::Request, 0x0102_0304_0506_0708, b"hello, peer").expect("encode")
}

/// Decodes with both the in-memory decoder and the stream reader; both must agree.
async fn decode_both(
    bytes: &[u8],
) -> (Result<Frame, FrameError>, Result<Option<Frame>, FrameError>) {
    let mem = frame::decode(bytes).map(|(f, _)| f);
    let mut stream = bytes;
    let read = frame::read_frame(&mut stream).await;
    (mem, read)
}

#[tokio::test]
async fn round_trip() {
    for (kind, id, payload) in [
        (Kind::Request, 1u64, b"x".to_vec()),
        (Kind::Reply, u64::MAX, Vec::new()),
        (Kind::Request, 42, vec![0xAB; 100_000]),
    ] {
        let bytes = frame::encode(kind, id, &payload).expect("encode");
        assert_eq!(bytes.len(), HEADER_BYTES + payload.len());
        assert_eq!(&bytes[..4], b"SLRN");
        let expected = Frame {
            kind,
            request_id: id,
            payload,
        };
        let (mem, read) = decode_both(&bytes).await;
        assert_eq!(mem.expect("decode"), expected);
        assert_eq!(read.expect("read").expect("a frame"), expected);
    }
}

#[tokio::test]
async fn two_frames_back_to_back() {
    let mut bytes = frame::encode(Kind::Request, 1, b"one").expect("encode");
    bytes.extend(frame::encode(Kind::Reply, 2, b"two").expect("encode"));
    let (first, used) = frame::decode(&bytes).expect("first");
    let (second, _) = frame::decode(&bytes[used..]).expect("second");
    assert_eq!((first.request_id, second.request_id), (1, 2));
    let mut stream = &bytes[..];
    for id in [1, 2] {
        let f = frame::read_frame(&mut stream)
            .await
            .expect("read")
            .expect("frame");
        assert_eq!(f.request_id, id);
    }
    assert!(frame::read_frame(&mut stream)
        .await
        .expect("clean end")
        .is_none());
}

#[tokio::test]
async fn every_flipped_header_byte_is_an_error() {
    let good = sample();
    for at in 0..HEADER_BYTES {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut bad = good.clone();
            bad[at] ^= mask;
            let (mem, read) = decode_both(&bad).await;
            assert!(mem.is_err(), "byte {at} ^ {mask:#x} decoded");
            assert!(read.is_err(), "byte {at} ^ {mask:#x} read");
        }
    }
}

#[tokio::test]
async fn each_header_field_names_its_error() {
    let good = sample();
    let flip_with = |at: usize, mask: u8| {
        let mut b = good.clone();
        b[at] ^= mask;
        frame::decode(&b).map(|_| ())
    };
    let flip = |at| flip_with(at, 0x01);
    assert!(matches!(flip(0), Err(FrameError::BadMagic(m)) if m != MAGIC));
    assert!(matches!(flip(4), Err(FrameError::BadVersion(v)) if v == VERSION ^ 1));
    assert!(matches!(flip(5), Err(FrameError::BadKind(0))));
    assert!(matches!(flip(6), Err(FrameError::BadReserved(1))));
    assert!(matches!(flip(8), Err(FrameError::Checksum { .. })));
    // A shorter length checks the wrong bytes, a longer one runs past the end.
    assert!(matches!(flip(16), Err(FrameError::Checksum { .. })));
    assert!(matches!(
        flip_with(16, 0x80),
        Err(FrameError::Truncated { .. })
    ));
    assert!(matches!(flip(20), Err(FrameError::Checksum { .. })));
}

#[tokio::test]
async fn flipped_payload_byte_is_a_checksum_error() {
    let good = sample();
    for at in HEADER_BYTES..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        let (mem, read) = decode_both(&bad).await;
        assert!(
            matches!(mem, Err(FrameError::Checksum { .. })),
            "payload byte {at}"
        );
        assert!(
            matches!(read, Err(FrameError::Checksum { .. })),
            "payload byte {at}"
        );
    }
}

#[tokio::test]
async fn truncation_is_an_error() {
    let good = sample();
    for cut in 1..good.len() {
        let (mem, read) = decode_both(&good[..cut]).await;
        assert!(
            matches!(mem, Err(FrameError::Truncated { .. })),
            "cut at {cut}: {mem:?}"
        );
        assert!(
            matches!(read, Err(FrameError::Truncated { .. })),
            "cut at {cut}: {read:?}"
        );
    }
    let (mem, read) = decode_both(&[]).await;
    assert!(matches!(mem, Err(FrameError::Truncated { .. })));
    assert!(read.expect("empty stream is a clean end").is_none());
}

#[tokio::test]
async fn length_over_the_limit_is_refused_before_reading_it() {
    let mut bad = sample();
    let len = u32::try_from(FRAME_BYTES_MAX + 1).expect("fits");
    bad[16..20].copy_from_slice(&len.to_le_bytes());
    let (mem, read) = decode_both(&bad).await;
    assert!(matches!(mem, Err(FrameError::TooLong { .. })));
    assert!(matches!(read, Err(FrameError::TooLong { .. })));
    bad[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        frame::decode(&bad),
        Err(FrameError::TooLong { .. })
    ));
}

#[test]
fn encoding_over_the_limit_is_refused() {
    let payload = vec![0u8; FRAME_BYTES_MAX + 1];
    assert!(matches!(
        frame::encode(Kind::Reply, 1, &payload),
        Err(FrameError::TooLong { .. })
    ));
    assert!(frame::encode(Kind::Reply, 1, &payload[..FRAME_BYTES_MAX]).is_ok());
}

#[test]
fn random_bytes_never_panic() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let good = sample();
    for _ in 0..10_000 {
        let mut bytes = good.clone();
        let n = (next() % 4 + 1) as usize;
        for _ in 0..n {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] = next() as u8;
        }
        bytes.truncate((next() % (bytes.len() as u64 + 1)) as usize);
        let _ = frame::decode(&bytes);
        let _ = message::decode::<Request>(&bytes);
    }
}

#[test]
fn messages_round_trip_and_reject_bad_payloads() {
    let req = super::vote("t/orders/0", 7);
    let bytes = message::encode(&req).expect("encode");
    let back: Request = message::decode(&bytes).expect("decode");
    assert_eq!(back.group().0, "t/orders/0");
    assert!(matches!(back, Request::Vote { rpc, .. } if rpc.vote.leader_id.term == 7));

    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        message::decode::<Request>(&trailing),
        Err(NetError::TrailingBytes(1))
    ));
    assert!(matches!(
        message::decode::<Request>(&[0xFF; 3]),
        Err(NetError::Decode(_))
    ));
    assert!(matches!(
        message::decode::<Request>(&[]),
        Err(NetError::Decode(_))
    ));
}
