//! Every API the Kafka listener advertises, at every version it advertises, gets a response
//! that decodes under that version's schema (a response field set that a version lacks would
//! make the broker send nothing, and only the versions real clients pick are exercised by the
//! client tests). Each API is checked for a sensible answer too, not only for an answer.

mod common;
#[path = "kafka_versions/groups.rs"]
mod groups;
#[path = "kafka_versions/replicas.rs"]
mod replicas;
#[path = "kafka_versions/security.rs"]
mod security;
#[path = "kafka_versions/share.rs"]
mod share;

use common::kafka_raw::{batch, fetch_req, fetched, metadata, produce, produce_req, server, Raw};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

fn topic(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.into()))
}

fn s(n: &str) -> StrBytes {
    StrBytes::from_string(n.into())
}

fn check_metadata(c: &mut Raw, v: i16) {
    let t = metadata_request::MetadataRequestTopic::default().with_name(Some(topic("v")));
    let r: MetadataResponse = c.call(
        ApiKey::Metadata,
        v,
        &MetadataRequest::default().with_topics(Some(vec![t])),
    );
    assert_eq!(r.topics[0].error_code, 0, "v{v}");
    assert_eq!(r.brokers[0].node_id.0, 0, "v{v}");
    let all = if v == 0 { Some(vec![]) } else { None };
    let r: MetadataResponse = c.call(
        ApiKey::Metadata,
        v,
        &MetadataRequest::default().with_topics(all),
    );
    assert!(
        r.topics.iter().any(|t| t.name == Some(topic("v"))),
        "v{v}: every topic"
    );
    // From version 12 a topic may be asked for by id: with a null name, or with the name ""
    // beside the id as Kafka's Java client sends it (its describeTopics by id).
    if v >= 12 {
        let id = metadata(c, "v").topics[0].topic_id;
        for name in [None, Some(topic(""))] {
            let t = metadata_request::MetadataRequestTopic::default()
                .with_name(name.clone())
                .with_topic_id(id);
            let req = MetadataRequest::default().with_topics(Some(vec![t]));
            let r: MetadataResponse = c.call(ApiKey::Metadata, v, &req);
            let got = &r.topics[0];
            assert_eq!(
                (got.error_code, &got.name, got.topic_id),
                (0, &Some(topic("v")), id),
                "v{v} by id, name {name:?}"
            );
            assert!(!got.partitions.is_empty(), "v{v} by id, name {name:?}");
        }
        // An id no topic has (its type is the message's, inferred).
        let unknown = "00000000-0000-4000-8000-000000000007".parse().unwrap();
        let t = metadata_request::MetadataRequestTopic::default()
            .with_name(Some(topic("")))
            .with_topic_id(unknown);
        let req = MetadataRequest::default().with_topics(Some(vec![t]));
        let r: MetadataResponse = c.call(ApiKey::Metadata, v, &req);
        let got = &r.topics[0];
        assert_eq!(
            (got.error_code, &got.name, got.topic_id),
            (100, &None, unknown),
            "v{v}: UNKNOWN_TOPIC_ID"
        );
    }
}

fn produce_at(c: &mut Raw, v: i16, records: Vec<u8>) -> ProduceResponse {
    let mut req = produce_req("v", records, -1);
    // From version 13 Produce names topics by id (taken from Metadata).
    if v >= 13 {
        req.topic_data[0].topic_id = metadata(c, "v").topics[0].topic_id;
        req.topic_data[0].name = TopicName(StrBytes::from_static_str(""));
    }
    c.call(ApiKey::Produce, v, &req)
}

fn check_produce(c: &mut Raw, v: i16) {
    let r = produce_at(c, v, batch(&["x"], Compression::None));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "v{v}");
    let r = produce_at(c, v, vec![1, 2, 3]);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 2, "v{v}");
}

fn fetch_at(c: &mut Raw, v: i16, offset: i64) -> FetchResponse {
    let mut req = fetch_req("v", offset, 1 << 20, 0, 0);
    // From version 13 Fetch names topics by id.
    if v >= 13 {
        req.topics[0].topic_id = metadata(c, "v").topics[0].topic_id;
    }
    c.call(ApiKey::Fetch, v, &req)
}

fn check_fetch(c: &mut Raw, v: i16) {
    let r = fetch_at(c, v, 0);
    assert!(!fetched(&r).2.is_empty(), "v{v}");
    let r = fetch_at(c, v, 999);
    assert_eq!(fetched(&r).0, 1, "v{v}");
}

fn check_list_offsets(c: &mut Raw, v: i16) {
    for ts in [-1, -2, -3, 0] {
        let p = list_offsets_request::ListOffsetsPartition::default().with_timestamp(ts);
        let t = list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic("v"))
            .with_partitions(vec![p]);
        let req = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![t]);
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, v, &req);
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{v} ts {ts}");
        match ts {
            // Produce's checks appended more: at least the first two records.
            -1 => assert!(p.offset >= 2, "v{v}: latest {}", p.offset),
            -2 | 0 => assert_eq!(p.offset, 0, "v{v} ts {ts}"),
            _ => assert!(p.offset >= 0, "v{v}: max timestamp {}", p.offset),
        }
    }
}

fn check_find_coordinator(c: &mut Raw, v: i16) {
    let req = if v >= 4 {
        FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")])
    } else {
        FindCoordinatorRequest::default().with_key(s("g"))
    };
    let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &req);
    let (code, node) = if v >= 4 {
        (r.coordinators[0].error_code, r.coordinators[0].node_id.0)
    } else {
        (r.error_code, r.node_id.0)
    };
    assert_eq!((code, node), (0, 0), "v{v}");
    if v >= 1 {
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &req.with_key_type(1));
        let code = if v >= 4 {
            r.coordinators[0].error_code
        } else {
            r.error_code
        };
        assert_eq!(code, 42, "transactions are refused (v{v})");
    }
}

fn check_create_topics(c: &mut Raw, v: i16) {
    let cfg = create_topics_request::CreatableTopicConfig::default()
        .with_name(s("retention.ms"))
        .with_value(Some(s("60000")));
    let t = create_topics_request::CreatableTopic::default()
        .with_name(topic(&format!("created-v{v}")))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_configs(vec![cfg]);
    let req = CreateTopicsRequest::default().with_topics(vec![t]);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, v, &req);
    assert_eq!(r.topics[0].error_code, 0, "v{v}");
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, v, &req);
    assert_eq!(r.topics[0].error_code, 36, "v{v}: TOPIC_ALREADY_EXISTS");
}

fn check_delete_topics(c: &mut Raw, v: i16) {
    let name = topic(&format!("created-v{}", v.clamp(2, 7)));
    let req = if v >= 6 {
        let t = delete_topics_request::DeleteTopicState::default().with_name(Some(name));
        DeleteTopicsRequest::default().with_topics(vec![t])
    } else {
        DeleteTopicsRequest::default().with_topic_names(vec![name])
    };
    let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, v, &req);
    // Versions 1 and 2 delete the same topic: the second finds it gone.
    assert!(matches!(r.responses[0].error_code, 0 | 3), "v{v}");
}

fn check_describe_configs(c: &mut Raw, v: i16) {
    let res = describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s("v"));
    let req = DescribeConfigsRequest::default()
        .with_resources(vec![res])
        .with_include_documentation(v >= 3);
    let r: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, v, &req);
    assert_eq!(r.results[0].configs.len(), 6, "v{v}");
}

fn check_alter_configs(c: &mut Raw, v: i16) {
    let cfg = alter_configs_request::AlterableConfig::default()
        .with_name(s("retention.ms"))
        .with_value(Some(s("120000")));
    let res = alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s("v"))
        .with_configs(vec![cfg]);
    let req = AlterConfigsRequest::default().with_resources(vec![res]);
    let r: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, v, &req);
    assert_eq!(r.responses[0].error_code, 0, "v{v}");
}

fn check_incremental_alter_configs(c: &mut Raw, v: i16) {
    let cfg = incremental_alter_configs_request::AlterableConfig::default()
        .with_name(s("retention.bytes"))
        .with_value(Some(s("1000000")));
    let res = incremental_alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s("v"))
        .with_configs(vec![cfg]);
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![res]);
    let r: IncrementalAlterConfigsResponse = c.call(ApiKey::IncrementalAlterConfigs, v, &req);
    assert_eq!(r.responses[0].error_code, 0, "v{v}");
}

fn check_init_producer_id(c: &mut Raw, v: i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r: InitProducerIdResponse = c.call(ApiKey::InitProducerId, v, &req);
    assert_eq!((r.error_code, r.producer_epoch), (0, 0), "v{v}");
    assert!(r.producer_id.0 >= 0, "v{v}");
}

fn check_create_partitions(c: &mut Raw, v: i16) {
    let n = metadata(c, "v").topics[0].partitions.len() as i32;
    let grow = |count: i32| {
        let t = create_partitions_request::CreatePartitionsTopic::default()
            .with_name(topic("v"))
            .with_count(count)
            .with_assignments(None);
        CreatePartitionsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(10_000)
    };
    let r: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, v, &grow(n + 1));
    assert_eq!(r.results[0].error_code, 0, "v{v}");
    assert_eq!(
        metadata(c, "v").topics[0].partitions.len() as i32,
        n + 1,
        "v{v}"
    );
    let r: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, v, &grow(1));
    assert_eq!(r.results[0].error_code, 37, "v{v}: INVALID_PARTITIONS");
}

#[test]
fn every_served_version_of_every_api_is_answered() {
    let (_t, server) = server();
    let mut c = Raw::connect(&server.kafka);
    let versions: ApiVersionsResponse =
        c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    metadata(&mut c, "v");
    assert_eq!(
        produce(&mut c, "v", batch(&["a", "b"], Compression::None)),
        (0, 0)
    );
    let mut answered = 0;
    for range in &versions.api_keys {
        let api = ApiKey::try_from(range.api_key).unwrap();
        for v in range.min_version..=range.max_version {
            match api {
                ApiKey::ApiVersions => {
                    let r: ApiVersionsResponse = c.call(api, v, &ApiVersionsRequest::default());
                    assert_eq!(r.api_keys, versions.api_keys, "v{v}");
                }
                ApiKey::Metadata => check_metadata(&mut c, v),
                // Produce v0-2 has no schema in the crate: kafka_wire covers its refusal.
                ApiKey::Produce if v < 3 => continue,
                ApiKey::Produce => check_produce(&mut c, v),
                ApiKey::Fetch => check_fetch(&mut c, v),
                ApiKey::ListOffsets => check_list_offsets(&mut c, v),
                ApiKey::FindCoordinator => check_find_coordinator(&mut c, v),
                ApiKey::CreateTopics => check_create_topics(&mut c, v),
                ApiKey::DeleteTopics => check_delete_topics(&mut c, v),
                ApiKey::DescribeConfigs => check_describe_configs(&mut c, v),
                ApiKey::AlterConfigs => check_alter_configs(&mut c, v),
                ApiKey::IncrementalAlterConfigs => check_incremental_alter_configs(&mut c, v),
                ApiKey::InitProducerId => check_init_producer_id(&mut c, v),
                ApiKey::CreatePartitions => check_create_partitions(&mut c, v),
                ApiKey::DescribeLogDirs => {
                    let n = metadata(&mut c, "v").topics[0].partitions.len();
                    replicas::check_describe_log_dirs(&mut c, v, n)
                }
                ApiKey::AlterPartitionReassignments => {
                    replicas::check_alter_reassignments(&mut c, v)
                }
                ApiKey::ListPartitionReassignments => replicas::check_list_reassignments(&mut c, v),
                ApiKey::JoinGroup => groups::check_join_group(&mut c, v),
                ApiKey::SyncGroup => groups::check_sync_group(&mut c, v),
                ApiKey::Heartbeat => groups::check_heartbeat(&mut c, v),
                ApiKey::LeaveGroup => groups::check_leave_group(&mut c, v),
                ApiKey::OffsetCommit => groups::check_offset_commit(&mut c, v),
                ApiKey::OffsetFetch => groups::check_offset_fetch(&mut c, v),
                ApiKey::DescribeGroups => groups::check_describe_groups(&mut c, v),
                ApiKey::ListGroups => groups::check_list_groups(&mut c, v),
                ApiKey::DeleteGroups => groups::check_delete_groups(&mut c, v),
                ApiKey::ShareGroupHeartbeat => share::check_heartbeat(&server.kafka, v),
                ApiKey::ShareFetch => share::check_share_fetch(&server.kafka, v),
                ApiKey::ShareAcknowledge => share::check_share_acknowledge(&server.kafka, v),
                ApiKey::ShareGroupDescribe => share::check_describe(&server.kafka, v),
                ApiKey::DescribeShareGroupOffsets => {
                    share::check_describe_offsets(&server.kafka, v)
                }
                ApiKey::DeleteShareGroupOffsets => share::check_delete_offsets(&server.kafka, v),
                ApiKey::AlterShareGroupOffsets => share::check_alter_offsets(&server.kafka, v),
                ApiKey::SaslHandshake => security::check_handshake(&server.kafka, v),
                ApiKey::SaslAuthenticate => security::check_authenticate(&server.kafka, v),
                ApiKey::DescribeAcls => security::check_describe(&mut c, v),
                ApiKey::CreateAcls => security::check_create_and_delete(&mut c, v, 1),
                ApiKey::DeleteAcls => security::check_create_and_delete(&mut c, 1, v),
                other => panic!("{other:?} is advertised but this test does not know it"),
            }
            answered += 1;
        }
    }
    assert!(answered > 60, "{answered} versions answered");
}
