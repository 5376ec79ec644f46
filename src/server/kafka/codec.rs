//! The Kafka frame codec: a request frame's header and body decoded with the generated
//! schemas of `kafka_protocol` (checked against the versions this broker serves first), and a
//! response encoded with the header version its request's version calls for.
//!
//! ```text
//! frame    = { size i32 (big-endian, bytes after it) | message }
//! request  = { api_key i16 | api_version i16 | correlation_id i32 | client_id nullable string
//!              | tagged fields (header v2, flexible versions) | body }
//! response = { correlation_id i32 | tagged fields (header v1, flexible versions; never for
//!              ApiVersions) | body }
//! ```
//!
//! Bytes after a body are ignored, as Kafka's broker ignores them. Decoding never panics on
//! bad input (a panic in the generated decoders would be caught and
//! reported as [`DecodeError::Malformed`]) and never allocates more than the frame allows (the
//! vendored crate refuses array counts beyond the bytes left).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    AlterConfigsRequest, ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteGroupsRequest, DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    FetchRequest, FindCoordinatorRequest, HeartbeatRequest, IncrementalAlterConfigsRequest,
    InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest,
    RequestHeader, SyncGroupRequest,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, DescribeLogDirsRequest, ListPartitionReassignmentsRequest,
};
use kafka_protocol::messages::{
    AlterShareGroupOffsetsRequest, DeleteShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsRequest, ShareAcknowledgeRequest, ShareFetchRequest,
    ShareGroupDescribeRequest, ShareGroupHeartbeatRequest,
};
use kafka_protocol::messages::{
    CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use super::dispatch::served_range;
use super::produce_legacy::LegacyProduce;

/// The request header's fixed start: api key, api version, correlation id.
const HEADER_FIXED_BYTES: usize = 8;

/// The header fields every response needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The API.
    pub api_key: i16,
    /// Its version.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
    /// The client's name, if it sent one.
    pub client_id: Option<String>,
}

/// A decoded request this broker serves.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// ApiVersions (18).
    ApiVersions(ApiVersionsRequest),
    /// Metadata (3).
    Metadata(MetadataRequest),
    /// Produce (0), versions 3 and up.
    Produce(ProduceRequest),
    /// Produce (0), versions 0 to 2 (message format v0/v1): refused.
    LegacyProduce(LegacyProduce),
    /// Fetch (1).
    Fetch(FetchRequest),
    /// ListOffsets (2).
    ListOffsets(ListOffsetsRequest),
    /// FindCoordinator (10).
    FindCoordinator(FindCoordinatorRequest),
    /// InitProducerId (22).
    InitProducerId(InitProducerIdRequest),
    /// CreatePartitions (37).
    CreatePartitions(CreatePartitionsRequest),
    /// AlterPartitionReassignments (45).
    AlterPartitionReassignments(AlterPartitionReassignmentsRequest),
    /// ListPartitionReassignments (46).
    ListPartitionReassignments(ListPartitionReassignmentsRequest),
    /// DescribeLogDirs (35).
    DescribeLogDirs(DescribeLogDirsRequest),
    /// CreateTopics (19).
    CreateTopics(CreateTopicsRequest),
    /// DeleteTopics (20).
    DeleteTopics(DeleteTopicsRequest),
    /// DescribeConfigs (32).
    DescribeConfigs(DescribeConfigsRequest),
    /// AlterConfigs (33).
    AlterConfigs(AlterConfigsRequest),
    /// IncrementalAlterConfigs (44).
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    /// OffsetCommit (8).
    OffsetCommit(OffsetCommitRequest),
    /// OffsetFetch (9).
    OffsetFetch(OffsetFetchRequest),
    /// JoinGroup (11).
    JoinGroup(JoinGroupRequest),
    /// Heartbeat (12).
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup (13).
    LeaveGroup(LeaveGroupRequest),
    /// SyncGroup (14).
    SyncGroup(SyncGroupRequest),
    /// DescribeGroups (15).
    DescribeGroups(DescribeGroupsRequest),
    /// ListGroups (16).
    ListGroups(ListGroupsRequest),
    /// DeleteGroups (42).
    DeleteGroups(DeleteGroupsRequest),
    /// ShareGroupHeartbeat (76).
    ShareGroupHeartbeat(ShareGroupHeartbeatRequest),
    /// ShareGroupDescribe (77).
    ShareGroupDescribe(ShareGroupDescribeRequest),
    /// ShareFetch (78).
    ShareFetch(ShareFetchRequest),
    /// ShareAcknowledge (79).
    ShareAcknowledge(ShareAcknowledgeRequest),
    /// DescribeShareGroupOffsets (90).
    DescribeShareGroupOffsets(DescribeShareGroupOffsetsRequest),
    /// AlterShareGroupOffsets (91).
    AlterShareGroupOffsets(AlterShareGroupOffsetsRequest),
    /// DeleteShareGroupOffsets (92).
    DeleteShareGroupOffsets(DeleteShareGroupOffsetsRequest),
    /// SaslHandshake (17).
    SaslHandshake(SaslHandshakeRequest),
    /// SaslAuthenticate (36).
    SaslAuthenticate(SaslAuthenticateRequest),
    /// DescribeAcls (29).
    DescribeAcls(DescribeAclsRequest),
    /// CreateAcls (30).
    CreateAcls(CreateAclsRequest),
    /// DeleteAcls (31).
    DeleteAcls(DeleteAclsRequest),
}

/// What a frame turned out to be.
#[derive(Debug)]
pub enum Decoded {
    /// A request to serve.
    Request(Header, Request),
    /// An ApiVersions request of a version this broker does not know: answered with
    /// UNSUPPORTED_VERSION and the served ranges in a version 0 response.
    ApiVersionsUnsupported(Header),
    /// An API or version this broker does not serve; the reason. Only the fixed header
    /// fields are known.
    Unserved(Header, String),
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is shorter than a request header's fixed fields.
    #[error("frame of {0} bytes is shorter than a request header")]
    Short(usize),
    /// The header or body does not parse under its schema (or bytes follow the body).
    #[error("malformed {api} v{version} request (correlation id {correlation_id}): {why}")]
    Malformed {
        /// The API's name.
        api: String,
        /// The version.
        version: i16,
        /// The correlation id.
        correlation_id: i32,
        /// Why.
        why: String,
    },
}

/// Decodes one request frame (the bytes after the size prefix).
pub fn decode_request(frame: Bytes, topic_ids: bool) -> Result<Decoded, DecodeError> {
    if frame.len() < HEADER_FIXED_BYTES {
        return Err(DecodeError::Short(frame.len()));
    }
    let mut fixed = &frame[..HEADER_FIXED_BYTES];
    let api_key = fixed.get_i16();
    let api_version = fixed.get_i16();
    let correlation_id = fixed.get_i32();
    let bare = Header {
        api_key,
        api_version,
        correlation_id,
        client_id: None,
    };
    let Ok(api) = ApiKey::try_from(api_key) else {
        return Ok(Decoded::Unserved(
            bare,
            format!("unknown api key {api_key}"),
        ));
    };
    let known = api.valid_versions();
    if api == ApiKey::ApiVersions && !(known.min..=known.max).contains(&api_version) {
        return Ok(Decoded::ApiVersionsUnsupported(bare));
    }
    let legacy_produce = api == ApiKey::Produce && (0..known.min).contains(&api_version);
    match served_range(api, topic_ids) {
        Some((min, max)) if (min..=max).contains(&api_version) => {}
        Some((min, max)) => {
            let why = format!("{api:?} v{api_version} is not served (versions {min} to {max} are)");
            return Ok(Decoded::Unserved(bare, why));
        }
        None => {
            let why = format!("{api:?} (api key {api_key}) is not served");
            return Ok(Decoded::Unserved(bare, why));
        }
    }
    let malformed = |why: String| DecodeError::Malformed {
        api: format!("{api:?}"),
        version: api_version,
        correlation_id,
        why,
    };
    // The generated decoders return errors on bad input; a panic would be a bug in them, and
    // must not take the connection's task (or the fuzzer) down with it.
    let decoded = std::panic::catch_unwind(|| {
        let mut buf = frame.clone();
        let header = if legacy_produce {
            // The crate has no schema for these versions: the header is v1, the body is read
            // by `produce_legacy`.
            RequestHeader::decode(&mut buf, 1)
        } else {
            RequestHeader::decode(&mut buf, api.request_header_version(api_version))
        }
        .map_err(|e| format!("header: {e}"))?;
        let body = if legacy_produce {
            LegacyProduce::decode(&mut buf, api_version).map(Request::LegacyProduce)
        } else {
            decode_body(api, &mut buf, api_version)
        }
        .map_err(|e| format!("body: {e}"))?;
        // Bytes after the body are ignored, as Kafka's broker ignores them: librdkafka 2.16
        // sends Metadata v13 with 3 of them.
        Ok((header, body))
    });
    let (header, body) = match decoded {
        Ok(Ok(x)) => x,
        Ok(Err(why)) => return Err(malformed(why)),
        Err(_) => return Err(malformed("the decoder panicked".into())),
    };
    let header = Header {
        client_id: header.client_id.map(|c| c.to_string()),
        ..bare
    };
    Ok(Decoded::Request(header, body))
}

/// The body of a served API at a served version.
fn decode_body(api: ApiKey, buf: &mut Bytes, v: i16) -> Result<Request, String> {
    decode_body_of(api, buf, v).map_err(|e| e.to_string())
}

fn decode_body_of(
    api: ApiKey,
    buf: &mut Bytes,
    v: i16,
) -> Result<Request, Box<dyn std::error::Error + Send + Sync>> {
    Ok(match api {
        ApiKey::ApiVersions => Request::ApiVersions(ApiVersionsRequest::decode(buf, v)?),
        ApiKey::Metadata => Request::Metadata(MetadataRequest::decode(buf, v)?),
        ApiKey::Produce => Request::Produce(ProduceRequest::decode(buf, v)?),
        ApiKey::Fetch => Request::Fetch(FetchRequest::decode(buf, v)?),
        ApiKey::ListOffsets => Request::ListOffsets(ListOffsetsRequest::decode(buf, v)?),
        ApiKey::FindCoordinator => {
            Request::FindCoordinator(FindCoordinatorRequest::decode(buf, v)?)
        }
        ApiKey::InitProducerId => Request::InitProducerId(InitProducerIdRequest::decode(buf, v)?),
        ApiKey::CreateTopics => Request::CreateTopics(CreateTopicsRequest::decode(buf, v)?),
        ApiKey::CreatePartitions => {
            Request::CreatePartitions(CreatePartitionsRequest::decode(buf, v)?)
        }
        ApiKey::AlterPartitionReassignments => Request::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::decode(buf, v)?,
        ),
        ApiKey::ListPartitionReassignments => {
            Request::ListPartitionReassignments(ListPartitionReassignmentsRequest::decode(buf, v)?)
        }
        ApiKey::DescribeLogDirs => {
            Request::DescribeLogDirs(DescribeLogDirsRequest::decode(buf, v)?)
        }
        ApiKey::DeleteTopics => Request::DeleteTopics(DeleteTopicsRequest::decode(buf, v)?),
        ApiKey::DescribeConfigs => {
            Request::DescribeConfigs(DescribeConfigsRequest::decode(buf, v)?)
        }
        ApiKey::AlterConfigs => Request::AlterConfigs(AlterConfigsRequest::decode(buf, v)?),
        ApiKey::IncrementalAlterConfigs => {
            Request::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::decode(buf, v)?)
        }
        ApiKey::OffsetCommit => Request::OffsetCommit(OffsetCommitRequest::decode(buf, v)?),
        ApiKey::OffsetFetch => Request::OffsetFetch(OffsetFetchRequest::decode(buf, v)?),
        ApiKey::JoinGroup => Request::JoinGroup(JoinGroupRequest::decode(buf, v)?),
        ApiKey::Heartbeat => Request::Heartbeat(HeartbeatRequest::decode(buf, v)?),
        ApiKey::LeaveGroup => Request::LeaveGroup(LeaveGroupRequest::decode(buf, v)?),
        ApiKey::SyncGroup => Request::SyncGroup(SyncGroupRequest::decode(buf, v)?),
        ApiKey::DescribeGroups => Request::DescribeGroups(DescribeGroupsRequest::decode(buf, v)?),
        ApiKey::ListGroups => Request::ListGroups(ListGroupsRequest::decode(buf, v)?),
        ApiKey::DeleteGroups => Request::DeleteGroups(DeleteGroupsRequest::decode(buf, v)?),
        ApiKey::ShareGroupHeartbeat => {
            Request::ShareGroupHeartbeat(ShareGroupHeartbeatRequest::decode(buf, v)?)
        }
        ApiKey::ShareGroupDescribe => {
            Request::ShareGroupDescribe(ShareGroupDescribeRequest::decode(buf, v)?)
        }
        ApiKey::ShareFetch => Request::ShareFetch(ShareFetchRequest::decode(buf, v)?),
        ApiKey::ShareAcknowledge => {
            Request::ShareAcknowledge(ShareAcknowledgeRequest::decode(buf, v)?)
        }
        ApiKey::DescribeShareGroupOffsets => {
            Request::DescribeShareGroupOffsets(DescribeShareGroupOffsetsRequest::decode(buf, v)?)
        }
        ApiKey::AlterShareGroupOffsets => {
            Request::AlterShareGroupOffsets(AlterShareGroupOffsetsRequest::decode(buf, v)?)
        }
        ApiKey::DeleteShareGroupOffsets => {
            Request::DeleteShareGroupOffsets(DeleteShareGroupOffsetsRequest::decode(buf, v)?)
        }
        ApiKey::SaslHandshake => Request::SaslHandshake(SaslHandshakeRequest::decode(buf, v)?),
        ApiKey::SaslAuthenticate => {
            Request::SaslAuthenticate(SaslAuthenticateRequest::decode(buf, v)?)
        }
        ApiKey::DescribeAcls => Request::DescribeAcls(DescribeAclsRequest::decode(buf, v)?),
        ApiKey::CreateAcls => Request::CreateAcls(CreateAclsRequest::decode(buf, v)?),
        ApiKey::DeleteAcls => Request::DeleteAcls(DeleteAclsRequest::decode(buf, v)?),
        // `served_range` lists exactly the APIs above; a new one is added in both places.
        other => return Err(format!("{other:?} has no decoder here").into()),
    })
}

/// Encodes a whole response frame: size, header (v0, or v1 for flexible versions), body.
pub fn encode_response<R: Encodable + HeaderVersion>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, String> {
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let body_len = body
        .compute_size(version)
        .map_err(|e| format!("{api:?} v{version} response: {e}"))?;
    let mut out = BytesMut::with_capacity(4 + 4 + 1 + body_len);
    out.put_i32(0);
    out.put_i32(correlation_id);
    if header_version >= 1 {
        out.put_u8(0); // no tagged fields
    }
    body.encode(&mut out, version)
        .map_err(|e| format!("{api:?} v{version} response: {e}"))?;
    let size = i32::try_from(out.len() - 4).map_err(|_| "response over 2 GiB".to_string())?;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(api: i16, version: i16, correlation: i32, rest: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(api);
        b.put_i16(version);
        b.put_i32(correlation);
        b.put_slice(rest);
        b.freeze()
    }

    #[test]
    fn short_unknown_and_unserved_frames_are_told_apart() {
        assert_eq!(
            decode_request(Bytes::from_static(&[0, 3, 0]), false).unwrap_err(),
            DecodeError::Short(3)
        );
        let d = decode_request(frame(999, 0, 7, &[]), false).unwrap();
        assert!(matches!(d, Decoded::Unserved(h, _) if h.correlation_id == 7));
        // ApiVersions v9: answered with the ranges, whatever follows.
        let d = decode_request(frame(18, 9, 8, &[1, 2, 3]), false).unwrap();
        assert!(matches!(d, Decoded::ApiVersionsUnsupported(h) if h.correlation_id == 8));
        // WriteTxnMarkers is not served.
        let d = decode_request(frame(27, 1, 9, &[]), false).unwrap();
        assert!(matches!(d, Decoded::Unserved(..)));
    }

    #[test]
    fn a_huge_array_count_is_refused_without_allocating() {
        // Metadata v1: client id "" then a topics array claiming i32::MAX entries.
        let d = decode_request(frame(3, 1, 1, &[0, 0, 0x7f, 0xff, 0xff, 0xff]), false);
        assert!(matches!(d, Err(DecodeError::Malformed { .. })), "{d:?}");
    }

    #[test]
    fn bytes_after_the_body_are_ignored_as_kafka_does() {
        // Metadata v1, client id "", null topics, then one byte more.
        for rest in [
            &[0u8, 0, 0xff, 0xff, 0xff, 0xff][..],
            &[0, 0, 0xff, 0xff, 0xff, 0xff, 9],
        ] {
            let d = decode_request(frame(3, 1, 1, rest), false);
            assert!(
                matches!(d, Ok(Decoded::Request(_, Request::Metadata(_)))),
                "{d:?}"
            );
        }
        // A body cut short is malformed.
        let cut = decode_request(frame(3, 1, 1, &[0, 0, 0, 0, 0, 1]), false);
        assert!(matches!(cut, Err(DecodeError::Malformed { .. })), "{cut:?}");
    }
}
