//! A raw Kafka client for the Kafka wire tests: requests encoded with kafka-protocol, record
//! batches built by hand (and broken on purpose by the tests), and small calls the tests share.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::data_dir;
use super::kafka::{start_kafka, KafkaServer};

/// A raw Kafka connection.
pub struct Raw {
    pub s: TcpStream,
    next: i32,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Raw { s, next: 1 }
    }

    pub fn send_frame(&mut self, body: &[u8]) {
        let mut f = Vec::with_capacity(4 + body.len());
        f.extend_from_slice(&(body.len() as i32).to_be_bytes());
        f.extend_from_slice(body);
        self.s.write_all(&f).unwrap();
    }

    /// Sends a request; its correlation id.
    pub fn send<R: Encodable>(&mut self, api: ApiKey, version: i16, req: &R) -> i32 {
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
    pub fn recv_frame(&mut self) -> Bytes {
        let mut size = [0u8; 4];
        self.s.read_exact(&mut size).unwrap();
        let mut b = vec![0u8; i32::from_be_bytes(size) as usize];
        self.s.read_exact(&mut b).unwrap();
        Bytes::from(b)
    }

    /// The next response, decoded as `api` v`version`; its correlation id and body.
    pub fn recv<R: Decodable>(&mut self, api: ApiKey, version: i16) -> (i32, R) {
        let mut b = self.recv_frame();
        let hv = if api == ApiKey::ApiVersions {
            0
        } else {
            api.response_header_version(version)
        };
        let h = ResponseHeader::decode(&mut b, hv).unwrap();
        (h.correlation_id, R::decode(&mut b, version).unwrap())
    }

    pub fn call<Q: Encodable, R: Decodable>(&mut self, api: ApiKey, version: i16, req: &Q) -> R {
        let id = self.send(api, version, req);
        let (got, r) = self.recv(api, version);
        assert_eq!(got, id, "responses come in request order");
        r
    }

    /// True when the broker closed the connection (within the read timeout).
    pub fn closed(&mut self) -> bool {
        self.s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }
}

pub fn server() -> (tempfile::TempDir, KafkaServer) {
    let (t, dir) = data_dir();
    (t, start_kafka(&dir, &[]))
}

/// A fresh connection can still get ApiVersions answered.
pub fn alive(s: &KafkaServer) {
    let mut c = Raw::connect(&s.kafka);
    let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
}

pub fn metadata(c: &mut Raw, topic: &str) -> MetadataResponse {
    let t = MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.into()))));
    let req = MetadataRequest::default()
        .with_topics(Some(vec![t]))
        .with_allow_auto_topic_creation(true);
    c.call(ApiKey::Metadata, 12, &req)
}

/// A Kafka record batch v2 of `values`, as a producer builds it.
pub fn batch(values: &[&str], compression: Compression) -> Vec<u8> {
    producer_batch(values, compression, (-1, -1, -1))
}

/// A batch of an idempotent producer: `(producer id, epoch, first sequence)`; `(-1, -1, -1)`
/// for none.
pub fn producer_batch(
    values: &[&str],
    compression: Compression,
    (id, epoch, seq): (i64, i16, i32),
) -> Vec<u8> {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder batches records whose offset - sequence agree: one batch, whose
            // baseSequence is `seq` (-1 with no producer id).
            sequence: if id < 0 { i as i32 - 1 } else { seq + i as i32 },
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

pub fn produce_req(topic: &str, records: Vec<u8>, acks: i16) -> ProduceRequest {
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
pub fn produce(c: &mut Raw, topic: &str, records: Vec<u8>) -> (i16, i64) {
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_req(topic, records, -1));
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

pub fn latest(c: &mut Raw, topic: &str) -> i64 {
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

pub fn fetch_req(
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
pub fn fetched(r: &FetchResponse) -> (i16, i64, Vec<(i64, Vec<i64>)>) {
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
