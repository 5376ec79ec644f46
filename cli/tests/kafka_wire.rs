//! The Kafka listener spoken to over raw TCP (requests encoded with kafka-protocol, batches
//! built and broken by hand): ApiVersions, hostile frames (oversized and negative sizes,
//! garbage after a header, unknown and unserved APIs, a huge array count), corrupt batches
//! (bad CRC, a record count larger than the bytes, negative lengths), Produce v0-2 and
//! transactional produces refused, acks=0, and Fetch's semantics (a fetch inside a batch gets
//! the whole batch, out-of-range offsets, KIP-74, long polls). A bad client loses its own
//! connection at most; the broker keeps serving the others and stores nothing bad.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use common::kafka_raw::{
    alive, batch, fetch_req, fetched, latest, metadata, produce, produce_req, producer_batch,
    server, Raw,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProduceResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

#[test]
fn api_versions_lists_what_is_served_and_answers_an_unknown_version() {
    let (_t, s) = server();
    let mut c = Raw::connect(&s.kafka);
    for v in 0..=4 {
        let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, v, &ApiVersionsRequest::default());
        assert_eq!(r.error_code, 0, "v{v}");
        let range = |k: ApiKey| {
            r.api_keys
                .iter()
                .find(|a| a.api_key == k as i16)
                .map(|a| (a.min_version, a.max_version))
        };
        // Topics have ids, so the versions that name topics by id are served.
        assert_eq!(range(ApiKey::Produce), Some((0, 13)), "v{v}");
        assert_eq!(range(ApiKey::Fetch), Some((4, 18)), "v{v}");
        assert_eq!(range(ApiKey::Metadata), Some((0, 13)), "v{v}");
        assert_eq!(range(ApiKey::InitProducerId), Some((0, 5)), "v{v}");
        assert_eq!(range(ApiKey::JoinGroup), Some((0, 9)), "v{v}");
        assert_eq!(range(ApiKey::OffsetCommit), Some((2, 9)), "v{v}");
        assert_eq!(
            range(ApiKey::AddPartitionsToTxn),
            None,
            "not served, not advertised"
        );
        assert_eq!(range(ApiKey::ShareFetch), Some((1, 1)), "v{v}");
        assert_eq!(range(ApiKey::AlterShareGroupOffsets), Some((0, 0)), "v{v}");
        assert_eq!(
            range(ApiKey::ReadShareGroupState),
            None,
            "a broker-to-broker API: not served, not advertised"
        );
    }
    // Version 99: UNSUPPORTED_VERSION (35) with the ranges, as a v0 response.
    let mut b = BytesMut::new();
    b.put_i16(ApiKey::ApiVersions as i16);
    b.put_i16(99);
    b.put_i32(77);
    b.put_slice(&[0, 0, 0, 1, 2, 3]);
    c.send_frame(&b);
    let (id, r): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 0);
    assert_eq!((id, r.error_code), (77, 35));
    assert!(r.api_keys.iter().any(|a| a.api_key == ApiKey::Fetch as i16));
}

#[test]
fn hostile_frames_close_only_their_connection() {
    let (_t, s) = server();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("size over the limit", 0x7fff_ffffu32.to_be_bytes().to_vec()),
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        (
            "frame shorter than a header",
            [&3i32.to_be_bytes()[..], &[0, 3, 0]].concat(),
        ),
        (
            "unknown api key",
            [&8i32.to_be_bytes()[..], &[0x03, 0xe7, 0, 0, 0, 0, 0, 1]].concat(),
        ),
        // InitProducerId v4: not served.
        (
            "unserved api",
            [&10i32.to_be_bytes()[..], &[0, 22, 0, 4, 0, 0, 0, 1, 0, 0]].concat(),
        ),
        // Metadata v9 (flexible): garbage where the body should be.
        (
            "garbage after a header",
            [
                &20i32.to_be_bytes()[..],
                &[0, 3, 0, 9, 0, 0, 0, 1, 0, 0, 0],
                &[0xff; 9][..],
            ]
            .concat(),
        ),
        // Metadata v1: a topics array claiming i32::MAX entries.
        (
            "huge array count",
            [
                &14i32.to_be_bytes()[..],
                &[0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff],
            ]
            .concat(),
        ),
    ];
    for (what, bytes) in cases {
        let mut c = Raw::connect(&s.kafka);
        c.s.write_all(&bytes).unwrap();
        assert!(c.closed(), "{what}: the connection stays open");
        alive(&s);
    }
}

#[test]
fn corrupt_batches_are_refused_and_nothing_is_stored() {
    let (_t, s) = server();
    let mut c = Raw::connect(&s.kafka);
    assert_eq!(metadata(&mut c, "hostile").topics[0].error_code, 0);
    let good = batch(&["a", "b", "c"], Compression::None);
    // Byte 61 on is the records (CRC-covered); 57..61 the record count; 8..12 batchLength.
    let mut bad_crc = good.clone();
    *bad_crc.last_mut().unwrap() ^= 1;
    let mut big_count = good.clone();
    big_count[57..61].copy_from_slice(&1000i32.to_be_bytes());
    let crc = crc32c::crc32c(&big_count[21..]);
    big_count[17..21].copy_from_slice(&crc.to_be_bytes());
    let mut negative_len = good.clone();
    negative_len[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    let truncated = good[..good.len() - 3].to_vec();
    for (what, records) in [
        ("bad CRC", bad_crc),
        ("record count above the bytes", big_count),
        ("negative batchLength", negative_len),
        ("truncated", truncated),
        ("empty", vec![]),
    ] {
        let (code, base) = produce(&mut c, "hostile", records);
        assert_eq!((code, base), (2, -1), "{what}: CORRUPT_MESSAGE");
    }
    assert_eq!(latest(&mut c, "hostile"), 0, "nothing stored");
    assert_eq!(
        produce(&mut c, "hostile", good),
        (0, 0),
        "the same connection goes on"
    );
    assert_eq!(latest(&mut c, "hostile"), 3);
}

#[test]
fn refused_produces_old_versions_transactions_and_unknown_topics() {
    let (_t, s) = server();
    let mut c = Raw::connect(&s.kafka);
    // Produce v2 (message format v1): UNSUPPORTED_VERSION per partition, hand-encoded.
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i16(2);
    b.put_i32(9);
    b.put_i16(0); // client id ""
    b.put_i16(1); // acks
    b.put_i32(1000);
    b.put_i32(1);
    b.put_i16(1);
    b.put_slice(b"t");
    b.put_i32(1);
    b.put_i32(0);
    b.put_i32(2);
    b.put_slice(&[1, 2]);
    c.send_frame(&b);
    let mut r = c.recv_frame();
    assert_eq!(r.get_i32(), 9);
    assert_eq!(r.get_i32(), 1);
    assert_eq!((r.get_i16(), r.get_u8()), (1, b't'));
    assert_eq!((r.get_i32(), r.get_i32(), r.get_i16()), (1, 0, 35));
    // A transactional producer.
    let req = produce_req("tx", batch(&["x"], Compression::None), -1)
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("t1"))));
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &req);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 53);
    // An unknown topic and partition (Produce does not create topics).
    assert_eq!(
        produce(&mut c, "nosuch", batch(&["x"], Compression::None)).0,
        3
    );
    assert_eq!(
        metadata(&mut c, "bad name!").topics[0].error_code,
        17,
        "INVALID_TOPIC_EXCEPTION"
    );
    // acks=0: no response; the next request's response comes next.
    c.send(
        ApiKey::Produce,
        9,
        &produce_req("quiet", batch(&["q"], Compression::None), 0),
    );
    // An acks=0 produce that fails gets no response either.
    c.send(ApiKey::Produce, 9, &produce_req("quiet", vec![], 0));
    let id = c.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let (got, _): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 3);
    assert_eq!(got, id);
    assert_eq!(metadata(&mut c, "quiet").topics[0].error_code, 0);
}

#[test]
fn fetch_returns_whole_batches_within_the_visible_range() {
    let (_t, s) = server();
    let mut c = Raw::connect(&s.kafka);
    metadata(&mut c, "f");
    assert_eq!(
        produce(&mut c, "f", batch(&["a", "b"], Compression::None)),
        (0, 0)
    );
    assert_eq!(
        produce(&mut c, "f", batch(&["c", "d", "e"], Compression::None)),
        (0, 2)
    );
    assert_eq!(
        produce(&mut c, "f", batch(&["f"], Compression::None)),
        (0, 5)
    );
    // From inside the second batch: that whole batch first.
    let r: FetchResponse = c.call(ApiKey::Fetch, 11, &fetch_req("f", 3, 1 << 20, 0, 0));
    let (code, hw, batches) = fetched(&r);
    assert_eq!((code, hw), (0, 6));
    assert_eq!(batches, vec![(2, vec![2, 3, 4]), (5, vec![5])]);
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.last_stable_offset, p.log_start_offset), (6, 0));
    // KIP-74: a partition limit of 1 byte still returns one whole batch.
    let r: FetchResponse = c.call(ApiKey::Fetch, 11, &fetch_req("f", 0, 1, 0, 0));
    assert_eq!(fetched(&r).2, vec![(0, vec![0, 1])]);
    // Past the end: OFFSET_OUT_OF_RANGE; at the end: nothing, after max_wait_ms.
    let r: FetchResponse = c.call(ApiKey::Fetch, 11, &fetch_req("f", 7, 1 << 20, 0, 0));
    assert_eq!(fetched(&r).0, 1);
    let started = Instant::now();
    let r: FetchResponse = c.call(ApiKey::Fetch, 11, &fetch_req("f", 6, 1 << 20, 400, 1));
    assert_eq!(fetched(&r), (0, 6, vec![]));
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
    // A long poll is woken by an append from another connection.
    let kafka = s.kafka.clone();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let mut p = Raw::connect(&kafka);
        produce(&mut p, "f", batch(&["g"], Compression::None))
    });
    let started = Instant::now();
    let r: FetchResponse = c.call(ApiKey::Fetch, 11, &fetch_req("f", 6, 1 << 20, 20_000, 1));
    assert_eq!(producer.join().unwrap(), (0, 6));
    assert_eq!(fetched(&r).2, vec![(6, vec![6])]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken, not timed out: {:?}",
        started.elapsed()
    );
}

/// A long poll on a topic that is deleted meanwhile answers at once with
/// UNKNOWN_TOPIC_OR_PARTITION rather than waiting out max_wait_ms.
#[test]
fn a_long_poll_on_a_deleted_topic_ends_at_once() {
    use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
    let (_t, s) = server();
    let mut c = Raw::connect(&s.kafka);
    metadata(&mut c, "doomed");
    let kafka = s.kafka.clone();
    let deleter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let mut d = Raw::connect(&kafka);
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(StrBytes::from_static_str("doomed"))]);
        let r: DeleteTopicsResponse = d.call(ApiKey::DeleteTopics, 5, &req);
        r.responses[0].error_code
    });
    let started = Instant::now();
    let r: FetchResponse = c.call(
        ApiKey::Fetch,
        11,
        &fetch_req("doomed", 0, 1 << 20, 20_000, 1),
    );
    assert_eq!(deleter.join().unwrap(), 0);
    assert_eq!(fetched(&r).0, 3);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// The advertised address is what Metadata and FindCoordinator hand out; the cluster id stays
/// the same across a restart on the same data directory; SIGTERM during a long poll answers it
/// and exits promptly.
#[test]
fn advertised_address_cluster_id_and_shutdown() {
    use kafka_protocol::messages::{
        FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
    };
    let (_t, dir) = common::data_dir();
    let args = ["--kafka-advertised", "broker.example:19092"];
    let mut s = common::kafka::start_kafka(&dir, &args);
    let mut c = Raw::connect(&s.kafka);
    let m: MetadataResponse = c.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    let b = &m.brokers[0];
    assert_eq!(
        (b.node_id.0, b.host.as_str(), b.port),
        (0, "broker.example", 19092)
    );
    assert_eq!(m.controller_id.0, 0);
    let id = m.cluster_id.clone().expect("a cluster id");
    assert_eq!(id.len(), 22, "{id:?}");
    let req = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
    let f: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 3, &req);
    assert_eq!((f.host.as_str(), f.port), ("broker.example", 19092));
    // A long poll in flight when SIGTERM arrives is answered, and the server exits.
    metadata(&mut c, "idle");
    c.send(ApiKey::Fetch, 11, &fetch_req("idle", 0, 1 << 20, 30_000, 1));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let status = s.server.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let (_, r): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 11);
    assert_eq!(fetched(&r), (0, 0, vec![]));
    drop(s);
    let s = common::kafka::start_kafka(&dir, &[]);
    let mut c = Raw::connect(&s.kafka);
    let m: MetadataResponse = c.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert_eq!(m.cluster_id, Some(id), "the cluster id survives a restart");
}

fn init_producer(c: &mut Raw, prior: Option<(i64, i16)>) -> (i64, i16) {
    let (id, epoch) = prior.unwrap_or((-1, -1));
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch);
    let r: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &req);
    assert_eq!(r.error_code, 0);
    (r.producer_id.0, r.producer_epoch)
}

/// An idempotent producer: ids never repeat (across a restart too), a retried batch is answered
/// with its first offset and stored once, a gap in the sequence and a fenced epoch are refused
/// with Kafka's codes, and a transactional id is refused.
#[test]
fn idempotent_producers_are_answered_once_per_batch() {
    let (_t, mut s) = server();
    let mut c = Raw::connect(&s.kafka);
    assert_eq!(metadata(&mut c, "idem").topics[0].error_code, 0);
    let (id, epoch) = init_producer(&mut c, None);
    let (id2, _) = init_producer(&mut c, None);
    assert!(id >= 0 && epoch == 0 && id2 != id);
    let b0 = producer_batch(&["a", "b"], Compression::None, (id, epoch, 0));
    assert_eq!(produce(&mut c, "idem", b0.clone()), (0, 0));
    let b1 = producer_batch(&["c"], Compression::None, (id, epoch, 2));
    assert_eq!(produce(&mut c, "idem", b1.clone()), (0, 2));
    // Retries: the first offsets again, nothing stored twice.
    assert_eq!(produce(&mut c, "idem", b0), (0, 0));
    assert_eq!(produce(&mut c, "idem", b1), (0, 2));
    assert_eq!(latest(&mut c, "idem"), 3);
    // A gap: OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    let gap = producer_batch(&["x"], Compression::None, (id, epoch, 7));
    assert_eq!(produce(&mut c, "idem", gap).0, 45);
    // A new epoch (KIP-360) fences the old one: INVALID_PRODUCER_EPOCH (47).
    let (same, next) = init_producer(&mut c, Some((id, epoch)));
    assert_eq!((same, next), (id, epoch + 1));
    let fresh = producer_batch(&["d"], Compression::None, (id, next, 0));
    assert_eq!(produce(&mut c, "idem", fresh), (0, 3));
    let stale = producer_batch(&["y"], Compression::None, (id, epoch, 3));
    assert_eq!(produce(&mut c, "idem", stale).0, 47);
    assert_eq!(latest(&mut c, "idem"), 4, "refused batches stored nothing");
    let txn = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("t"))))
        .with_transaction_timeout_ms(60_000);
    let r: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &txn);
    assert_ne!(r.error_code, 0, "transactions are not served");
    // After a restart: the retry of the last batch is still recognised, ids stay fresh.
    drop(c);
    let dir = s.server.dir.clone();
    s.server.kill9();
    let s2 = common::kafka::start_kafka(&dir, &[]);
    let mut c = Raw::connect(&s2.kafka);
    let retry = producer_batch(&["d"], Compression::None, (id, next, 0));
    assert_eq!(produce(&mut c, "idem", retry), (0, 3));
    assert_eq!(latest(&mut c, "idem"), 4);
    let (id3, _) = init_producer(&mut c, None);
    assert!(id3 > id2, "a producer id came back after a restart: {id3}");
}
