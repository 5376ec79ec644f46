//! The Kafka listener spoken to over raw TCP (requests encoded with kafka-protocol, batches
//! built and broken by hand): ApiVersions, hostile frames (oversized and negative sizes,
//! garbage after a header, unknown and unserved APIs, a huge array count), corrupt batches
//! (bad CRC, a record count larger than the bytes, negative lengths), Produce v0-2 and
//! transactional produces refused, acks=0, and Fetch's semantics (a fetch inside a batch gets
//! the whole batch, out-of-range offsets, KIP-74, long polls). A bad client loses its own
//! connection at most; the broker keeps serving the others and stores nothing bad.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::data_dir;
use common::kafka::{start_kafka, KafkaServer};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A raw Kafka connection.
struct Raw {
    s: TcpStream,
    next: i32,
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Raw { s, next: 1 }
    }

    fn send_frame(&mut self, body: &[u8]) {
        let mut f = Vec::with_capacity(4 + body.len());
        f.extend_from_slice(&(body.len() as i32).to_be_bytes());
        f.extend_from_slice(body);
        self.s.write_all(&f).unwrap();
    }

    /// Sends a request; its correlation id.
    fn send<R: Encodable>(&mut self, api: ApiKey, version: i16, req: &R) -> i32 {
        let id = self.next;
        self.next += 1;
        let h = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("wire-test")));
        let mut b = BytesMut::new();
        h.encode(&mut b, api.request_header_version(version))
            .unwrap();
        req.encode(&mut b, version).unwrap();
        self.send_frame(&b);
        id
    }

    /// The next response frame, without its size.
    fn recv_frame(&mut self) -> Bytes {
        let mut size = [0u8; 4];
        self.s.read_exact(&mut size).unwrap();
        let mut b = vec![0u8; i32::from_be_bytes(size) as usize];
        self.s.read_exact(&mut b).unwrap();
        Bytes::from(b)
    }

    /// The next response, decoded as `api` v`version`; its correlation id and body.
    fn recv<R: Decodable>(&mut self, api: ApiKey, version: i16) -> (i32, R) {
        let mut b = self.recv_frame();
        let hv = if api == ApiKey::ApiVersions {
            0
        } else {
            api.response_header_version(version)
        };
        let h = ResponseHeader::decode(&mut b, hv).unwrap();
        (h.correlation_id, R::decode(&mut b, version).unwrap())
    }

    fn call<Q: Encodable, R: Decodable>(&mut self, api: ApiKey, version: i16, req: &Q) -> R {
        let id = self.send(api, version, req);
        let (got, r) = self.recv(api, version);
        assert_eq!(got, id, "responses come in request order");
        r
    }

    /// True when the broker closed the connection (within the read timeout).
    fn closed(&mut self) -> bool {
        self.s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }
}

fn server() -> (tempfile::TempDir, KafkaServer) {
    let (t, dir) = data_dir();
    (t, start_kafka(&dir, &[]))
}

/// A fresh connection can still get ApiVersions answered.
fn alive(s: &KafkaServer) {
    let mut c = Raw::connect(&s.kafka);
    let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
}

fn metadata(c: &mut Raw, topic: &str) -> MetadataResponse {
    let t = MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.into()))));
    let req = MetadataRequest::default()
        .with_topics(Some(vec![t]))
        .with_allow_auto_topic_creation(true);
    c.call(ApiKey::Metadata, 12, &req)
}

/// A Kafka record batch v2 of `values`, as a producer builds it.
fn batch(values: &[&str], compression: Compression) -> Vec<u8> {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder batches records whose offset - sequence agree: one batch, and
            // baseSequence -1 (no producer id).
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut b = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut b, &records, &opts).unwrap();
    b.to_vec()
}

fn produce_req(topic: &str, records: Vec<u8>, acks: i16) -> ProduceRequest {
    let p = PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(Bytes::from(records)));
    let t = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.into())))
        .with_partition_data(vec![p]);
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![t])
}

/// Produces and returns (error code, base offset) of partition 0.
fn produce(c: &mut Raw, topic: &str, records: Vec<u8>) -> (i16, i64) {
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_req(topic, records, -1));
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn latest(c: &mut Raw, topic: &str) -> i64 {
    let p = ListOffsetsPartition::default()
        .with_partition_index(0)
        .with_timestamp(-1);
    let t = ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.into())))
        .with_partitions(vec![p]);
    let r: ListOffsetsResponse = c.call(
        ApiKey::ListOffsets,
        7,
        &ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![t]),
    );
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

fn fetch_req(
    topic: &str,
    offset: i64,
    partition_max: i32,
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    let p = FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(partition_max);
    let t = FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_string(topic.into())))
        .with_partitions(vec![p]);
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(50 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![t])
}

/// The offsets of the records a fetch returned, with each batch's base offset.
fn fetched(r: &FetchResponse) -> (i16, i64, Vec<(i64, Vec<i64>)>) {
    let p = &r.responses[0].partitions[0];
    let mut out = Vec::new();
    if let Some(mut recs) = p.records.clone() {
        while recs.has_remaining() {
            let set = RecordBatchDecoder::decode(&mut recs).unwrap();
            let offsets: Vec<i64> = set.records.iter().map(|r| r.offset).collect();
            out.push((offsets[0], offsets));
        }
    }
    (p.error_code, p.high_watermark, out)
}

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
        assert_eq!(range(ApiKey::Produce), Some((0, 12)), "v{v}");
        assert_eq!(range(ApiKey::Fetch), Some((4, 12)), "v{v}");
        assert_eq!(range(ApiKey::Metadata), Some((0, 13)), "v{v}");
        assert_eq!(
            range(ApiKey::InitProducerId),
            None,
            "not served, not advertised"
        );
        assert_eq!(range(ApiKey::JoinGroup), None, "not served, not advertised");
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

/// Every served API at every served version gets a response that decodes under that
/// version's schema (a field set that a version lacks would make the broker send nothing).
#[test]
fn every_served_version_of_every_api_is_answered() {
    use kafka_protocol::messages::*;
    let (_t, s) = server();
    let mut c = Raw::connect(&s.kafka);
    let versions: ApiVersionsResponse =
        c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let topic = |n: &str| TopicName(StrBytes::from_string(n.into()));
    let str_ = |n: &str| StrBytes::from_string(n.into());
    metadata(&mut c, "v");
    assert_eq!(
        produce(&mut c, "v", batch(&["a", "b"], Compression::None)),
        (0, 0)
    );
    let mut answered = 0;
    for range in &versions.api_keys {
        let api = ApiKey::try_from(range.api_key).unwrap();
        for v in range.min_version..=range.max_version {
            macro_rules! check {
                ($req:expr, $resp:ty) => {{
                    let _: $resp = c.call(api, v, &$req);
                }};
            }
            match api {
                ApiKey::ApiVersions => check!(ApiVersionsRequest::default(), ApiVersionsResponse),
                ApiKey::Metadata => {
                    let t = metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(topic("v")));
                    check!(
                        MetadataRequest::default().with_topics(Some(vec![t])),
                        MetadataResponse
                    );
                    let all = if v == 0 { Some(vec![]) } else { None };
                    check!(
                        MetadataRequest::default().with_topics(all),
                        MetadataResponse
                    );
                }
                // Produce v0-2 is covered by `refused_produces_...` (no schema in the crate).
                ApiKey::Produce if v < 3 => continue,
                ApiKey::Produce => {
                    let r: ProduceResponse = c.call(
                        api,
                        v,
                        &produce_req("v", batch(&["x"], Compression::None), -1),
                    );
                    assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "v{v}");
                    let r: ProduceResponse = c.call(api, v, &produce_req("v", vec![1, 2, 3], -1));
                    assert_eq!(r.responses[0].partition_responses[0].error_code, 2, "v{v}");
                }
                ApiKey::Fetch => {
                    let r: FetchResponse = c.call(api, v, &fetch_req("v", 0, 1 << 20, 0, 0));
                    assert!(!fetched(&r).2.is_empty(), "v{v}");
                    let r: FetchResponse = c.call(api, v, &fetch_req("v", 999, 1 << 20, 0, 0));
                    assert_eq!(fetched(&r).0, 1, "v{v}");
                }
                ApiKey::ListOffsets => {
                    for ts in [-1, -2, -3, 0] {
                        let p = list_offsets_request::ListOffsetsPartition::default()
                            .with_timestamp(ts);
                        let t = list_offsets_request::ListOffsetsTopic::default()
                            .with_name(topic("v"))
                            .with_partitions(vec![p]);
                        let r: ListOffsetsResponse = c.call(
                            api,
                            v,
                            &ListOffsetsRequest::default()
                                .with_replica_id((-1).into())
                                .with_topics(vec![t]),
                        );
                        assert_eq!(r.topics[0].partitions[0].error_code, 0, "v{v} ts {ts}");
                    }
                }
                ApiKey::FindCoordinator => {
                    let req = if v >= 4 {
                        FindCoordinatorRequest::default().with_coordinator_keys(vec![str_("g")])
                    } else {
                        FindCoordinatorRequest::default().with_key(str_("g"))
                    };
                    check!(req, FindCoordinatorResponse);
                    if v >= 1 {
                        let r: FindCoordinatorResponse = c.call(api, v, &req.with_key_type(1));
                        let code = if v >= 4 {
                            r.coordinators[0].error_code
                        } else {
                            r.error_code
                        };
                        assert_eq!(code, 42, "transactions are refused (v{v})");
                    }
                }
                ApiKey::CreateTopics => {
                    let name = format!("created-v{v}");
                    let cfg = create_topics_request::CreatableTopicConfig::default()
                        .with_name(str_("retention.ms"))
                        .with_value(Some(str_("60000")));
                    let t = create_topics_request::CreatableTopic::default()
                        .with_name(topic(&name))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                        .with_configs(vec![cfg]);
                    let r: CreateTopicsResponse = c.call(
                        api,
                        v,
                        &CreateTopicsRequest::default().with_topics(vec![t.clone()]),
                    );
                    assert_eq!(r.topics[0].error_code, 0, "v{v}");
                    let r: CreateTopicsResponse =
                        c.call(api, v, &CreateTopicsRequest::default().with_topics(vec![t]));
                    assert_eq!(r.topics[0].error_code, 36, "v{v}: TOPIC_ALREADY_EXISTS");
                }
                ApiKey::DeleteTopics => {
                    let name = format!("created-v{}", v.clamp(2, 7));
                    let req = if v >= 6 {
                        DeleteTopicsRequest::default()
                            .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                                .with_name(Some(topic(&name)))])
                    } else {
                        DeleteTopicsRequest::default().with_topic_names(vec![topic(&name)])
                    };
                    let r: DeleteTopicsResponse = c.call(api, v, &req);
                    assert!(matches!(r.responses[0].error_code, 0 | 3), "v{v}");
                }
                ApiKey::DescribeConfigs => {
                    let res = describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(str_("v"));
                    let r: DescribeConfigsResponse = c.call(
                        api,
                        v,
                        &DescribeConfigsRequest::default()
                            .with_resources(vec![res])
                            .with_include_documentation(v >= 3),
                    );
                    assert_eq!(r.results[0].configs.len(), 6, "v{v}");
                }
                ApiKey::AlterConfigs => {
                    let cfg = alter_configs_request::AlterableConfig::default()
                        .with_name(str_("retention.ms"))
                        .with_value(Some(str_("120000")));
                    let res = alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(str_("v"))
                        .with_configs(vec![cfg]);
                    let r: AlterConfigsResponse = c.call(
                        api,
                        v,
                        &AlterConfigsRequest::default().with_resources(vec![res]),
                    );
                    assert_eq!(r.responses[0].error_code, 0, "v{v}");
                }
                ApiKey::IncrementalAlterConfigs => {
                    let cfg = incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(str_("retention.bytes"))
                        .with_value(Some(str_("1000000")));
                    let res = incremental_alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(str_("v"))
                        .with_configs(vec![cfg]);
                    let r: IncrementalAlterConfigsResponse = c.call(
                        api,
                        v,
                        &IncrementalAlterConfigsRequest::default().with_resources(vec![res]),
                    );
                    assert_eq!(r.responses[0].error_code, 0, "v{v}");
                }
                other => panic!("{other:?} is advertised but this test does not know it"),
            }
            answered += 1;
        }
    }
    assert!(answered > 60, "{answered} versions answered");
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
