//! Routing: the APIs and versions this frontend serves ([`served_range`], which ApiVersions
//! advertises and the codec checks), ApiVersions itself, and the hand-off of each decoded
//! request to the file of its family.
//!
//! A request for an API or version that is not served closes the connection with the reason
//! logged, as Kafka's own broker does (clients send only what ApiVersions advertised); the
//! exceptions Kafka makes are kept: an ApiVersions request of an unknown version gets
//! UNSUPPORTED_VERSION with the ranges, and Produce v0-v2 (advertised, see `produce_legacy`)
//! gets UNSUPPORTED_VERSION for every partition.

use super::errors::ErrorCodes;
use crate::metrics::Metrics;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Encodable, HeaderVersion};
use kafka_protocol::ResponseError;
use tracing::{debug, error};

use super::codec::{encode_response, Decoded, Header, Request};
use super::connection::{Conn, End, Slot};
use super::group;

/// The versions of `api` this broker serves (`None`: not served). `topic_ids`: topics have
/// persistent ids, so the versions that address topics by id (Produce v13, Fetch v13+) can be
/// served.
pub fn served_range(api: ApiKey, topic_ids: bool) -> Option<(i16, i16)> {
    let by_id = |without: i16, with: i16| if topic_ids { with } else { without };
    Some(match api {
        // Minimum 0 although only 3+ is accepted (KAFKA-18659; see produce_legacy).
        ApiKey::Produce => (0, by_id(12, 13)),
        ApiKey::Fetch => (4, by_id(12, 18)),
        ApiKey::ListOffsets => (1, 10),
        ApiKey::Metadata => (0, 13),
        ApiKey::FindCoordinator => (0, 6),
        ApiKey::InitProducerId => (0, 5),
        ApiKey::ApiVersions => (0, 4),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::CreatePartitions => (0, 3),
        ApiKey::AlterPartitionReassignments => (0, 1),
        ApiKey::ListPartitionReassignments => (0, 0),
        ApiKey::DescribeLogDirs => (1, 4),
        ApiKey::DeleteTopics => (1, 6),
        ApiKey::DescribeConfigs => (1, 4),
        ApiKey::AlterConfigs => (0, 2),
        ApiKey::IncrementalAlterConfigs => (0, 1),
        // SASL (`sasl`): advertised from 0, as librdkafka requires to use SASL at all, but
        // only v1 (KIP-152, then SaslAuthenticate) is served; v0 is refused.
        ApiKey::SaslHandshake => (0, 1),
        ApiKey::SaslAuthenticate => (0, 2),
        // The ACL APIs (`acls`).
        ApiKey::DescribeAcls | ApiKey::CreateAcls | ApiKey::DeleteAcls => (1, 3),
        // Share groups, served by `share/` (the versions stock clients use).
        ApiKey::ShareGroupHeartbeat
        | ApiKey::ShareGroupDescribe
        | ApiKey::ShareFetch
        | ApiKey::ShareAcknowledge => (1, 1),
        ApiKey::DescribeShareGroupOffsets
        | ApiKey::AlterShareGroupOffsets
        | ApiKey::DeleteShareGroupOffsets => (0, 0),
        // The consumer-group APIs, served by `group/`.
        _ => {
            let key = api as i16;
            let &(_, min, max) = group::API_VERSIONS.iter().find(|(k, ..)| *k == key)?;
            (min, max)
        }
    })
}

/// Every served API and its range, as ApiVersions lists them.
fn advertised(topic_ids: bool) -> Vec<ApiVersion> {
    ApiKey::iter()
        .filter_map(|api| {
            served_range(api, topic_ids).map(|(min, max)| {
                ApiVersion::default()
                    .with_api_key(api as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
        })
        .collect()
}

/// Fills `tx` with the response frame to `h`; an encoding failure (a bug: a field set that
/// the version lacks) is logged and the request gets no response.
pub(super) fn respond<R: Encodable + HeaderVersion + ErrorCodes>(
    metrics: &Metrics,
    tx: Slot,
    h: &Header,
    body: &R,
) {
    let Ok(api) = ApiKey::try_from(h.api_key) else {
        return;
    };
    super::errors::count(metrics, body);
    match encode_response(api, h.api_version, h.correlation_id, body) {
        Ok(frame) => {
            let _ = tx.send(Some(vec![frame]));
        }
        Err(e) => {
            error!(client = ?h.client_id, "cannot encode a response: {e}");
            let _ = tx.send(None);
        }
    }
}

impl Conn {
    /// Handles one decoded frame; an `Err` ends the connection.
    pub(super) async fn dispatch(&mut self, decoded: Decoded) -> Result<(), End> {
        let (h, req) = match decoded {
            Decoded::Request(h, req) => (h, req),
            Decoded::ApiVersionsUnsupported(h) => {
                let tx = self.slot().await?;
                let body = self.api_versions(ResponseError::UnsupportedVersion.code());
                // The response to an unknown version is a version 0 response.
                respond(
                    self.ctx.broker.metrics(),
                    tx,
                    &Header {
                        api_version: 0,
                        ..h
                    },
                    &body,
                );
                return Ok(());
            }
            Decoded::Unserved(h, why) => {
                return Err(End::Fatal(format!(
                    "{why} (correlation id {}); clients send only what ApiVersions advertises",
                    h.correlation_id
                )));
            }
        };
        self.check_authenticated(&h, &req)?;
        self.note(&h, &req);
        let tx = self.slot().await?;
        match req {
            Request::ApiVersions(r) => self.api_versions_request(tx, &h, r),
            Request::SaslHandshake(r) => return self.sasl_handshake(tx, &h, r),
            Request::SaslAuthenticate(r) => return self.sasl_authenticate(tx, &h, r).await,
            Request::DescribeAcls(r) => self.describe_acls(tx, h, r),
            Request::CreateAcls(r) => self.create_acls(tx, h, r),
            Request::DeleteAcls(r) => self.delete_acls(tx, h, r),
            Request::Metadata(r) => self.metadata(tx, h, r),
            Request::Produce(r) => return self.produce(tx, h, r).await,
            Request::LegacyProduce(r) => self.legacy_produce(tx, &h, r),
            Request::Fetch(r) => self.fetch(tx, h, r),
            Request::ListOffsets(r) => self.list_offsets(tx, h, r),
            Request::FindCoordinator(r) => self.find_coordinator(tx, &h, r),
            Request::InitProducerId(r) => self.init_producer_id(tx, h, r),
            Request::CreateTopics(r) => self.create_topics(tx, h, r),
            Request::CreatePartitions(r) => self.create_partitions(tx, h, r),
            Request::AlterPartitionReassignments(r) => self.alter_partition_reassignments(tx, h, r),
            Request::ListPartitionReassignments(r) => self.list_partition_reassignments(tx, h, r),
            Request::DescribeLogDirs(r) => self.describe_log_dirs(tx, h, r),
            Request::DeleteTopics(r) => self.delete_topics(tx, h, r),
            Request::DescribeConfigs(r) => self.describe_configs(tx, h, r),
            Request::AlterConfigs(r) => self.alter_configs(tx, h, r),
            Request::IncrementalAlterConfigs(r) => self.incremental_alter_configs(tx, h, r),
            // The coordinator's, each on a task of its own.
            Request::OffsetCommit(_)
            | Request::OffsetFetch(_)
            | Request::JoinGroup(_)
            | Request::Heartbeat(_)
            | Request::LeaveGroup(_)
            | Request::SyncGroup(_)
            | Request::DescribeGroups(_)
            | Request::ListGroups(_)
            | Request::DeleteGroups(_) => self.group_request(tx, h, req),
            // Share groups', each on a task of its own too.
            Request::ShareGroupHeartbeat(_)
            | Request::ShareGroupDescribe(_)
            | Request::ShareFetch(_)
            | Request::ShareAcknowledge(_)
            | Request::DescribeShareGroupOffsets(_)
            | Request::AlterShareGroupOffsets(_)
            | Request::DeleteShareGroupOffsets(_) => self.share_request(tx, h, req),
        }
        Ok(())
    }

    /// Closes a connection that must authenticate and sent something else than ApiVersions or
    /// the SASL requests.
    fn check_authenticated(&self, h: &Header, req: &Request) -> Result<(), End> {
        let sasl = matches!(
            req,
            Request::ApiVersions(_) | Request::SaslHandshake(_) | Request::SaslAuthenticate(_)
        );
        match self.auth.authenticated || sasl {
            true => Ok(()),
            false => Err(self.unauthenticated(h.api_key)),
        }
    }

    fn api_versions_request(&self, tx: Slot, h: &Header, r: ApiVersionsRequest) {
        debug!(
            peer = %self.peer,
            client = ?h.client_id,
            software = %r.client_software_name.as_str(),
            version = %r.client_software_version.as_str(),
            "kafka client"
        );
        respond(self.ctx.broker.metrics(), tx, h, &self.api_versions(0))
    }

    fn api_versions(&self, error_code: i16) -> ApiVersionsResponse {
        ApiVersionsResponse::default()
            .with_error_code(error_code)
            .with_api_keys(advertised(self.ctx.broker.has_topic_ids()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_are_within_what_the_codec_knows() {
        for ids in [false, true] {
            let list = advertised(ids);
            assert!(!list.is_empty());
            for v in list {
                let api = ApiKey::try_from(v.api_key).unwrap();
                let known = api.valid_versions();
                assert!(v.max_version <= known.max, "{api:?}");
                // Produce is advertised from 0 on purpose; everything else from what decodes.
                if api != ApiKey::Produce {
                    assert!(v.min_version >= known.min, "{api:?}");
                }
            }
        }
        assert_eq!(served_range(ApiKey::Produce, false), Some((0, 12)));
        assert_eq!(served_range(ApiKey::Fetch, false), Some((4, 12)));
        assert_eq!(served_range(ApiKey::JoinGroup, false), Some((0, 9)));
        assert_eq!(served_range(ApiKey::OffsetCommit, true), Some((2, 9)));
        assert_eq!(served_range(ApiKey::DescribeAcls, true), Some((1, 3)));
        assert_eq!(served_range(ApiKey::SaslHandshake, true), Some((0, 1)));
        assert_eq!(served_range(ApiKey::WriteTxnMarkers, true), None);
        assert!(advertised(true)
            .iter()
            .any(|v| v.api_key == ApiKey::ShareFetch as i16));
    }

    #[test]
    fn api_versions_encodes_at_every_version() {
        let body = ApiVersionsResponse::default().with_api_keys(advertised(false));
        for v in 0..=4 {
            let h = Header {
                api_key: ApiKey::ApiVersions as i16,
                api_version: v,
                correlation_id: 5,
                client_id: None,
            };
            let (tx, mut rx) = tokio::sync::oneshot::channel();
            respond(&crate::metrics::Metrics::default(), tx, &h, &body);
            let frame = rx.try_recv().unwrap().unwrap().concat();
            // size, then the correlation id with no tagged fields (header v0 always).
            assert_eq!(&frame[4..8], &5i32.to_be_bytes());
            assert_eq!(&frame[8..10], &0i16.to_be_bytes());
        }
    }
}
