//! Replays the stored fuzz corpus (`fuzz/corpus/<target>/*`) through the same entry points the
//! cargo-fuzz targets call (`sluice::fuzz`), so every seed and every minimised crash kept as a
//! regression runs in the ordinary `cargo test`, without nightly.
//!
//! The seeds are written by `write_seed_corpus` (ignored; run it with
//! `cargo test --test fuzz_corpus -- --ignored write_seed_corpus` after changing a format).
//!
//! Longer than most files on purpose: each file under `tests/` is a binary of its own that links
//! the whole broker, so the scenarios of one subject share one binary (and one set of helpers)
//! rather than adding links to a CI run on two cores.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice::protocol::{
    ErrorCode, LogSettings, PartitionInfo, QueueInfo, QueueMessage, QueueSettings, Reply, Request,
    Route, Source, Start, SubscriberStat, Target, TopicInfo,
};
use sluice::storage::fs::sim::SimFs;
use sluice::storage::{format, Header, Log, LogConfig, Offset, Record};

/// A fuzz target: its name (the corpus directory) and its entry point.
type FuzzTarget = (&'static str, fn(&[u8]));

const TARGETS: [FuzzTarget; 9] = [
    ("frame_decode", sluice::fuzz::frame_decode),
    ("request_decode", sluice::fuzz::request_decode),
    ("batch_parse", sluice::fuzz::batch_parse),
    ("kafka_batches", sluice::fuzz::kafka_batches),
    ("segment_recovery", sluice::fuzz::segment_recovery),
    ("kafka_requests", sluice::fuzz::kafka_requests),
    ("admin_input", sluice::fuzz::admin_input),
    ("security_input", sluice::fuzz::security_input),
    ("cluster_input", sluice::fuzz::cluster_input),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn stored_fuzz_corpus_replays_without_failure() {
    for (target, run) in TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 5, "{target}: corpus too small");
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            let r = std::panic::catch_unwind(|| run(&bytes));
            assert!(r.is_ok(), "{target}: {} fails", f.display());
            // Truncations of each input as well (cheap extra cases).
            for cut in [bytes.len() / 2, bytes.len().saturating_sub(1)] {
                let r = std::panic::catch_unwind(|| run(&bytes[..cut]));
                assert!(r.is_ok(), "{target}: {} cut at {cut} fails", f.display());
            }
        }
    }
}

#[test]
fn kafka_seed_frames_reach_the_request_decoders() {
    let dir = corpus_dir("kafka_requests");
    for (name, bytes) in kafka_frames() {
        let stored = std::fs::read(dir.join(format!("seed-{name}"))).unwrap();
        assert_eq!(
            stored, bytes,
            "{name}: rewrite the seeds (write_seed_corpus)"
        );
        let hostile = ["api-versions-v99", "unknown-api", "huge-array"];
        let want = usize::from(!hostile.iter().any(|h| name.ends_with(h)));
        assert_eq!(sluice::fuzz::kafka_requests_decoded(&bytes), want, "{name}");
    }
}

/// Without cargo-fuzz at hand, a bounded mutation run over the Kafka seeds: bytes flipped,
/// set to boundary values, inserted and cut, with a fixed random seed (reproducible).
#[test]
fn kafka_requests_survive_mutated_seeds() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_cafe);
    let seeds = kafka_frames();
    for _ in 0..200_000 {
        let (_, seed) = &seeds[rng.gen_range(0..seeds.len())];
        let mut b = seed.clone();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(4..b.len().max(5));
            match rng.gen_range(0..4) {
                0 if at < b.len() => b[at] ^= 1 << rng.gen_range(0..8),
                1 if at < b.len() => b[at] = [0x00, 0x7f, 0x80, 0xff][rng.gen_range(0..4)],
                2 => b.insert(at.min(b.len()), rng.gen()),
                _ => b.truncate(at.max(4)),
            }
        }
        let r = std::panic::catch_unwind(|| sluice::fuzz::kafka_requests(&b));
        assert!(r.is_ok(), "mutated input fails: {b:?}");
    }
}

fn records() -> Vec<Vec<Record>> {
    vec![
        vec![Record::from_value("hello")],
        vec![
            Record {
                timestamp_ms: Some(1_700_000_000_000),
                key: Some(b"key".to_vec()),
                headers: vec![Header::new("h", "v"), Header::new("empty", "")],
                value: b"with key and headers".to_vec(),
            },
            Record {
                timestamp_ms: Some(1_699_999_999_000),
                key: None,
                headers: vec![],
                value: vec![],
            },
            Record::from_value(vec![0xAB; 300]),
        ],
        vec![
            Record {
                timestamp_ms: Some(i64::MIN),
                key: Some(vec![]),
                headers: vec![],
                value: b"a".to_vec(),
            },
            Record {
                timestamp_ms: Some(i64::MAX),
                key: None,
                headers: vec![],
                value: b"b".to_vec(),
            },
        ],
    ]
}

fn batches() -> Vec<Vec<u8>> {
    batches_by(format::encode_batch)
}

/// The seed batches, each encoded by `encode` (version 2, or the former version 1).
fn batches_by(encode: fn(&[Record], i64) -> Vec<u8>) -> Vec<Vec<u8>> {
    records()
        .iter()
        .enumerate()
        .map(|(i, rs)| {
            let mut b = encode(rs, 1_700_000_000_000);
            format::set_base_offset(&mut b, Offset(i as u64 * 10));
            b
        })
        .collect()
}

/// Longer than most functions on purpose: one seed per request kind, a flat list read top to
/// bottom; splitting it would only scatter the seeds.
fn requests() -> Vec<Request> {
    let batch = batches()[1].clone();
    vec![
        Request::Hello {
            version: sluice::protocol::VERSION,
            client: "seed".into(),
        },
        Request::Ping,
        Request::Publish {
            target: Target::Topic("t".into()),
            route: Route::Partition {
                partition: 2,
                expected_partitions: 3,
            },
            batch: batch.clone(),
        },
        Request::Publish {
            target: Target::Any("q".into()),
            route: Route::Any,
            batch,
        },
        Request::Subscribe {
            topic: "t".into(),
            name: Some("s".into()),
            partitions: vec![],
            start: Start::Earliest,
            credit: 100,
        },
        Request::Subscribe {
            topic: "t".into(),
            name: None,
            partitions: vec![1],
            start: Start::Timestamp(-1),
            credit: 0,
        },
        Request::Subscribe {
            topic: "t".into(),
            name: None,
            partitions: vec![0, 2],
            start: Start::Offset(5),
            credit: 1,
        },
        Request::Credit { id: 3, credit: 50 },
        Request::Commit {
            topic: "t".into(),
            name: "s".into(),
            partition: 1,
            next: 42,
            metadata: b"m".to_vec(),
        },
        Request::Cancel { id: 3 },
        Request::Consume {
            source: Source::Queue("q".into()),
            prefetch: 10,
        },
        Request::Consume {
            source: Source::Group {
                topic: "t".into(),
                group: "g".into(),
            },
            prefetch: 1,
        },
        Request::Ack {
            id: 4,
            offsets: vec![(0, 0), (0, 1), (1, 2)],
        },
        Request::Nack {
            id: 4,
            delay_ms: 100,
            offsets: vec![(2, 7)],
        },
        Request::CreateTopic {
            name: "t".into(),
            settings: LogSettings {
                segment_bytes_max: Some(1 << 20),
                retention_bytes: None,
                retention_ms: Some(60_000),
                replicas: Some(2),
            },
            partitions: Some(3),
        },
        Request::CreateTopic {
            name: "u".into(),
            settings: LogSettings::default(),
            partitions: None,
        },
        Request::AlterTopic {
            name: "t".into(),
            partitions: 6,
        },
        Request::TopicMeta { name: "t".into() },
        Request::DeleteTopic { name: "t".into() },
        Request::ListTopics,
        Request::DescribeTopic { name: "t".into() },
        Request::CreateQueue {
            name: "q".into(),
            settings: QueueSettings {
                log: LogSettings::default(),
                ack_timeout_ms: Some(1000),
                max_deliveries: Some(3),
                dead_letter: Some("dead".into()),
            },
        },
        Request::DeleteQueue { name: "q".into() },
        Request::ListQueues,
        Request::DescribeQueue { name: "q".into() },
    ]
}

fn replies() -> Vec<Reply> {
    let batch = batches()[1].clone();
    let msg = |offset, value: &[u8]| QueueMessage {
        partition: 0,
        offset,
        attempt: 1,
        record: Record {
            timestamp_ms: Some(5),
            key: None,
            headers: vec![],
            value: value.to_vec(),
        },
    };
    vec![
        Reply::HelloOk {
            version: sluice::protocol::VERSION,
            server: "sluice".into(),
            frame_bytes_max: 16 << 20,
        },
        Reply::Ok,
        Reply::Pong,
        Reply::error(ErrorCode::NotFound, "no such topic"),
        Reply::Published {
            partition: 1,
            base_offset: 10,
            last_offset: 12,
        },
        Reply::Subscribed { value: 3 },
        Reply::Positions(vec![(0, 4), (1, 0)]),
        Reply::TopicMeta {
            id: [9; 16],
            partitions: 3,
        },
        Reply::Deliver {
            partition: 2,
            from: 11,
            to: 13,
            batch: batch.into(),
        },
        Reply::Messages(vec![
            msg(0, b""),
            msg(1, b"x"),
            QueueMessage {
                partition: 1,
                offset: 2,
                attempt: 3,
                record: Record {
                    timestamp_ms: Some(-7),
                    key: Some(b"k".to_vec()),
                    headers: vec![Header::new("n", "v")],
                    value: b"value".to_vec(),
                },
            },
        ]),
        Reply::Names(vec!["a".into(), "b".into()]),
        Reply::TopicInfo(TopicInfo {
            name: "t".into(),
            id: "0b7e5f8a-3c1d-4e2f-9a6b-5c4d3e2f1a0b".into(),
            partitions: vec![PartitionInfo {
                partition: 0,
                start_offset: 0,
                end_offset: 9,
                size_bytes: 1000,
                segments: 2,
                subscribers: vec![SubscriberStat {
                    name: "s".into(),
                    committed: 4,
                    lag: 5,
                }],
            }],
        }),
        Reply::QueueInfo(QueueInfo {
            name: "q".into(),
            start_offset: 0,
            end_offset: 3,
            ack_floor: 1,
            cursor: 2,
            depth: 2,
            in_flight: 1,
            dead_lettered: 0,
            size_bytes: 300,
            ack_timeout_ms: 30_000,
            max_deliveries: 5,
            dead_letter: "q.dlq".into(),
        }),
    ]
}

/// Segment files written by a real log on the simulated file system.
fn segments() -> Vec<(String, Vec<u8>)> {
    let sim = SimFs::new();
    let dir = Path::new("/log");
    let cfg = LogConfig {
        segment_bytes_max: 1024,
        ..LogConfig::default()
    };
    let log = Log::open(Arc::new(sim.clone()), dir, cfg).unwrap();
    for rs in records().iter().cycle().take(12) {
        log.append(rs).unwrap();
    }
    log.close().unwrap();
    let mut out = Vec::new();
    let mut names: Vec<String> = sluice::storage::FileSystem::read_dir(&sim, dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    let first = sim.read_file(&dir.join(&names[0])).unwrap();
    out.push(("segment".to_string(), first.clone()));
    out.push((
        "segment-torn".to_string(),
        first[..first.len() * 2 / 3].to_vec(),
    ));
    let mut flipped = first.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    out.push(("segment-flipped".to_string(), flipped));
    let mut garbage = first;
    garbage.extend_from_slice(&[0xFF; 64]);
    out.push(("segment-garbage-tail".to_string(), garbage));
    out.push((
        "segment-header-only".to_string(),
        format::encode_file_header(format::SEGMENT_MAGIC, 0, Offset(0)).to_vec(),
    ));
    out
}

#[test]
#[ignore = "writes the seed corpus into fuzz/corpus"]
fn write_seed_corpus() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    let mut stream = Vec::new();
    for (i, r) in requests().iter().enumerate() {
        let f = r.encode(i as u32 + 1).to_vec();
        write("frame_decode", &format!("request-{i:02}"), &f);
        let mut kb = vec![r.kind()];
        kb.extend_from_slice(&f[9..]);
        write("request_decode", &format!("request-{i:02}"), &kb);
        stream.extend_from_slice(&f);
    }
    write("frame_decode", "request-stream", &stream);
    for (i, r) in replies().iter().enumerate() {
        let f = r.encode(i as u32 + 1).to_vec();
        write("frame_decode", &format!("reply-{i:02}"), &f);
        write(
            "request_decode",
            &format!("reply-{i:02}"),
            &f[4..5].iter().chain(&f[9..]).copied().collect::<Vec<_>>(),
        );
    }
    write(
        "frame_decode",
        "oversized-prefix",
        &[0xFF, 0xFF, 0xFF, 0x7F, 1, 0, 0, 0, 0],
    );
    write("frame_decode", "short-prefix", &[2, 0, 0, 0, 1, 2]);
    for (i, b) in batches_by(format::encode_batch_v1).iter().enumerate() {
        write("batch_parse", &format!("batch-{i}"), b);
    }
    for (i, b) in batches().iter().enumerate() {
        write("batch_parse", &format!("batch-v2-{i}"), b);
        let mut kafka = Vec::new();
        format::stored_to_kafka(b, &mut kafka).unwrap();
        write("kafka_batches", &format!("batch-{i}"), &kafka);
    }
    let mut kafka = Vec::new();
    format::stored_to_kafka(&batches().concat(), &mut kafka).unwrap();
    write("kafka_batches", "three-batches", &kafka);
    let mut torn = kafka.clone();
    torn.truncate(kafka.len() - 3);
    write("kafka_batches", "torn-last-batch", &torn);
    let mut flipped = kafka.clone();
    flipped[30] ^= 4;
    write("kafka_batches", "crc-mismatch", &flipped);
    let mut two = batches()[0].clone();
    two.extend_from_slice(&batches()[1]);
    write("batch_parse", "two-batches", &two);
    let mut flipped = batches()[1].clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    write("batch_parse", "records-crc-mismatch", &flipped);
    for (name, bytes) in segments() {
        write("segment_recovery", &name, &bytes);
    }
    let frames = kafka_frames();
    for (name, bytes) in &frames {
        write("kafka_requests", name, bytes);
    }
    let stream: Vec<u8> = frames.iter().flat_map(|(_, b)| b.clone()).collect();
    write("kafka_requests", "stream", &stream);
}

/// One request frame: size, header (correlation id 7, client "seed"), body.
fn frame<R: kafka_protocol::protocol::Encodable>(
    api: kafka_protocol::messages::ApiKey,
    v: i16,
    r: &R,
) -> Vec<u8> {
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let h = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(v)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("seed")));
    let mut b = bytes::BytesMut::new();
    h.encode(&mut b, api.request_header_version(v)).unwrap();
    r.encode(&mut b, v).unwrap();
    let mut f = (b.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(&b);
    f
}

/// Size-prefixed Kafka request frames: every served API at a few versions, and hostile ones.
fn kafka_frames() -> Vec<(String, Vec<u8>)> {
    let mut out = group_membership_frames();
    out.extend(group_offset_frames());
    out.extend(data_frames());
    out.extend(admin_frames());
    out.extend(hostile_frames());
    out.extend(share_frames());
    out.into_iter()
        .map(|(n, b)| (format!("kafka-{n}"), b))
        .collect()
}

/// Seeds of the classic group's membership requests: join, sync, heartbeat, leave.
fn group_membership_frames() -> Vec<(&'static str, Vec<u8>)> {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let g = || GroupId(StrBytes::from_static_str("g"));
    let join = JoinGroupRequest::default()
        .with_group_id(g())
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(bytes::Bytes::from_static(&[0, 1, 0, 0, 0, 1, 0, 1, b't']))]);
    let sync = SyncGroupRequest::default()
        .with_group_id(g())
        .with_generation_id(1)
        .with_member_id(StrBytes::from_static_str("m-1"))
        .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
        .with_protocol_name(Some(StrBytes::from_static_str("range")))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_static_str("m-1"))
                .with_assignment(bytes::Bytes::from_static(&[0, 1])),
        ]);
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(g())
        .with_generation_id(1)
        .with_member_id(StrBytes::from_static_str("m-1"));
    let leave = LeaveGroupRequest::default()
        .with_group_id(g())
        .with_members(vec![leave_group_request::MemberIdentity::default()
            .with_member_id(StrBytes::from_static_str("m-1"))]);
    vec![
        ("join-group-v9", frame(ApiKey::JoinGroup, 9, &join)),
        ("join-group-v0", frame(ApiKey::JoinGroup, 0, &join)),
        ("sync-group-v5", frame(ApiKey::SyncGroup, 5, &sync)),
        ("heartbeat-v4", frame(ApiKey::Heartbeat, 4, &heartbeat)),
        ("leave-group-v5", frame(ApiKey::LeaveGroup, 5, &leave)),
    ]
}

/// Seeds of the group offset and group admin requests.
fn group_offset_frames() -> Vec<(&'static str, Vec<u8>)> {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let name = |s: &str| TopicName(StrBytes::from_string(s.into()));
    let g = || GroupId(StrBytes::from_static_str("g"));
    let commit = OffsetCommitRequest::default()
        .with_group_id(g())
        .with_generation_id_or_member_epoch(1)
        .with_member_id(StrBytes::from_static_str("m-1"))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_committed_offset(5)
                        .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
                ]),
        ]);
    let offset_fetch = OffsetFetchRequest::default()
        .with_group_id(g())
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name("t"))
                .with_partition_indexes(vec![0]),
        ]));
    let offset_fetch_v9 = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(g())
            .with_topics(None),
    ]);
    let describe_groups = DescribeGroupsRequest::default().with_groups(vec![g()]);
    let delete_groups = DeleteGroupsRequest::default().with_groups_names(vec![g()]);
    vec![
        ("offset-commit-v9", frame(ApiKey::OffsetCommit, 9, &commit)),
        ("offset-commit-v2", frame(ApiKey::OffsetCommit, 2, &commit)),
        (
            "offset-fetch-v7",
            frame(ApiKey::OffsetFetch, 7, &offset_fetch),
        ),
        (
            "offset-fetch-v9",
            frame(ApiKey::OffsetFetch, 9, &offset_fetch_v9),
        ),
        (
            "describe-groups-v6",
            frame(ApiKey::DescribeGroups, 6, &describe_groups),
        ),
        (
            "list-groups-v5",
            frame(ApiKey::ListGroups, 5, &ListGroupsRequest::default()),
        ),
        (
            "delete-groups-v2",
            frame(ApiKey::DeleteGroups, 2, &delete_groups),
        ),
    ]
}

/// Seeds of the data path: ApiVersions, Metadata, Produce, Fetch, ListOffsets.
fn data_frames() -> Vec<(&'static str, Vec<u8>)> {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let name = |s: &str| TopicName(StrBytes::from_string(s.into()));
    let mut kafka_batch = Vec::new();
    format::stored_to_kafka(&batches()[1], &mut kafka_batch).unwrap();
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name("t"))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_records(Some(kafka_batch.into())),
            ])]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name("t"))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_fetch_offset(3)
                .with_partition_max_bytes(1 << 20)])]);
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(name("t"))),
    ]));
    let list = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(name("t"))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default().with_timestamp(-2)
            ]),
    ]);
    vec![
        (
            "api-versions-v3",
            frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
        ),
        (
            "api-versions-v0",
            frame(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default()),
        ),
        ("metadata-v12", frame(ApiKey::Metadata, 12, &metadata)),
        ("metadata-v1", frame(ApiKey::Metadata, 1, &metadata)),
        ("produce-v9", frame(ApiKey::Produce, 9, &produce)),
        ("produce-v3", frame(ApiKey::Produce, 3, &produce)),
        ("fetch-v12", frame(ApiKey::Fetch, 12, &fetch)),
        ("fetch-v4", frame(ApiKey::Fetch, 4, &fetch)),
        ("list-offsets-v7", frame(ApiKey::ListOffsets, 7, &list)),
    ]
}

/// Seeds of the topic admin requests and FindCoordinator.
fn admin_frames() -> Vec<(&'static str, Vec<u8>)> {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let name = |s: &str| TopicName(StrBytes::from_string(s.into()));
    let create = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(name("t"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("1000")))]),
    ]);
    let delete = DeleteTopicsRequest::default().with_topics(vec![
        delete_topics_request::DeleteTopicState::default().with_name(Some(name("t"))),
    ]);
    let describe = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("t")),
    ]);
    let alter = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("t")),
    ]);
    let incremental = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("t")),
    ]);
    let find = FindCoordinatorRequest::default()
        .with_coordinator_keys(vec![StrBytes::from_static_str("g")]);
    vec![
        ("create-topics-v7", frame(ApiKey::CreateTopics, 7, &create)),
        ("delete-topics-v6", frame(ApiKey::DeleteTopics, 6, &delete)),
        (
            "describe-configs-v4",
            frame(ApiKey::DescribeConfigs, 4, &describe),
        ),
        ("alter-configs-v2", frame(ApiKey::AlterConfigs, 2, &alter)),
        (
            "incremental-alter-v1",
            frame(ApiKey::IncrementalAlterConfigs, 1, &incremental),
        ),
        (
            "find-coordinator-v4",
            frame(ApiKey::FindCoordinator, 4, &find),
        ),
        (
            "find-coordinator-v0",
            frame(
                ApiKey::FindCoordinator,
                0,
                &FindCoordinatorRequest::default(),
            ),
        ),
    ]
}

/// Hand-made frames the decoders must refuse or survive.
fn hostile_frames() -> Vec<(&'static str, Vec<u8>)> {
    // Produce v2 (refused by hand-written code), an unknown version of ApiVersions, an unknown
    // api key, and a Metadata v1 whose topics array claims i32::MAX entries.
    let legacy = [
        &[0, 0, 0, 35][..],
        &[
            0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 3, 232, 0, 0, 0, 1, 0, 1, b't',
        ],
        &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    ]
    .concat();
    vec![
        ("produce-v2", legacy),
        (
            "api-versions-v99",
            vec![0, 0, 0, 10, 0, 18, 0, 99, 0, 0, 0, 7, 0, 0],
        ),
        ("unknown-api", vec![0, 0, 0, 8, 3, 231, 0, 0, 0, 0, 0, 7]),
        (
            "huge-array",
            vec![
                0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 7, 0, 0, 0x7f, 0xff, 0xff, 0xff,
            ],
        ),
    ]
}

/// Seeds of the share-group requests (KIP-932), framed by `frame`.
///
/// Longer than most functions on purpose: one request built per share-group API, then the
/// list of seeds, read top to bottom; the builders are only used here.
fn share_frames() -> Vec<(&'static str, Vec<u8>)> {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let st = StrBytes::from_static_str;
    let g = || GroupId(st("g"));
    let topic_id = uuid::Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef);
    let heartbeat = ShareGroupHeartbeatRequest::default()
        .with_group_id(g())
        .with_member_id(st("m-1"))
        .with_subscribed_topic_names(Some(vec![TopicName(st("t"))]));
    let acks = || {
        vec![share_fetch_request::AcknowledgementBatch::default()
            .with_first_offset(3)
            .with_last_offset(5)
            .with_acknowledge_types(vec![1, 2, 3])]
    };
    let fetch = ShareFetchRequest::default()
        .with_group_id(Some(g()))
        .with_member_id(Some(st("m-1")))
        .with_share_session_epoch(1)
        .with_max_records(500)
        .with_topics(vec![share_fetch_request::FetchTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![
                share_fetch_request::FetchPartition::default().with_acknowledgement_batches(acks()),
            ])])
        .with_forgotten_topics_data(vec![share_fetch_request::ForgottenTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![1])]);
    let ack = ShareAcknowledgeRequest::default()
        .with_group_id(Some(g()))
        .with_member_id(Some(st("m-1")))
        .with_share_session_epoch(2)
        .with_topics(vec![share_acknowledge_request::AcknowledgeTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![
                share_acknowledge_request::AcknowledgePartition::default()
                    .with_acknowledgement_batches(vec![
                        share_acknowledge_request::AcknowledgementBatch::default()
                            .with_first_offset(0)
                            .with_last_offset(9)
                            .with_acknowledge_types(vec![1]),
                    ]),
            ])]);
    let describe = ShareGroupDescribeRequest::default().with_group_ids(vec![g()]);
    let offsets = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(g())
            .with_topics(None),
    ]);
    use alter_share_group_offsets_request as alter_req;
    let part = alter_req::AlterShareGroupOffsetsRequestPartition::default().with_start_offset(7);
    let alter = AlterShareGroupOffsetsRequest::default()
        .with_group_id(g())
        .with_topics(vec![
            alter_req::AlterShareGroupOffsetsRequestTopic::default()
                .with_topic_name(TopicName(st("t")))
                .with_partitions(vec![part]),
        ]);
    let delete = DeleteShareGroupOffsetsRequest::default()
        .with_group_id(g())
        .with_topics(vec![
            delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic::default()
                .with_topic_name(TopicName(st("t"))),
        ]);
    vec![
        (
            "share-heartbeat-v1",
            frame(ApiKey::ShareGroupHeartbeat, 1, &heartbeat),
        ),
        ("share-fetch-v1", frame(ApiKey::ShareFetch, 1, &fetch)),
        (
            "share-acknowledge-v1",
            frame(ApiKey::ShareAcknowledge, 1, &ack),
        ),
        (
            "share-describe-v1",
            frame(ApiKey::ShareGroupDescribe, 1, &describe),
        ),
        (
            "share-offsets-v0",
            frame(ApiKey::DescribeShareGroupOffsets, 0, &offsets),
        ),
        (
            "share-alter-v0",
            frame(ApiKey::AlterShareGroupOffsets, 0, &alter),
        ),
        (
            "share-delete-v0",
            frame(ApiKey::DeleteShareGroupOffsets, 0, &delete),
        ),
    ]
}
