//! Round trips and hostile input of every frame.

use super::*;
use bytes::Bytes;
use sluice_format as format;
use sluice_format::{Header, Record};

fn rt_req(r: Request) {
    let f = r.encode(42).to_vec();
    let raw = parse_frame(&f, u32::MAX).unwrap();
    assert_eq!(raw.request_id, 42);
    assert_eq!(Request::decode(&raw).unwrap(), r);
    // Every strict prefix of the body fails cleanly (no panic), except where the tail is a
    // free-length byte run.
    for cut in 0..raw.body.len() {
        let short = RawFrame {
            body: raw.body[..cut].to_vec(),
            ..raw.clone()
        };
        let _ = Request::decode(&short);
    }
}

fn rt_reply(r: Reply) {
    let f = r.encode(7).to_vec();
    let raw = parse_frame(&f, u32::MAX).unwrap();
    assert_eq!(raw.request_id, 7);
    assert_eq!(Reply::decode(raw.clone()).unwrap(), r);
    for cut in 0..raw.body.len() {
        let _ = Reply::decode(RawFrame {
            body: raw.body[..cut].to_vec(),
            ..raw.clone()
        });
    }
}

#[test]
fn requests_round_trip() {
    let batch = format::encode_batch(&[Record::from_value("x")], 5);
    for r in [
        Request::Hello {
            version: VERSION,
            client: "t".into(),
        },
        Request::Ping,
        Request::Publish {
            target: Target::Queue("q".into()),
            route: Route::Any,
            batch: batch.clone(),
        },
        Request::Publish {
            target: Target::Topic("t".into()),
            route: Route::Partition {
                partition: 3,
                expected_partitions: 6,
            },
            batch,
        },
        Request::Subscribe {
            topic: "t".into(),
            name: Some("s".into()),
            partitions: vec![],
            start: Start::Timestamp(-5),
            credit: 10,
        },
        Request::Subscribe {
            topic: "t".into(),
            name: None,
            partitions: vec![2, 0],
            start: Start::Offset(3),
            credit: 0,
        },
        Request::Credit { id: 3, credit: 9 },
        Request::Commit {
            topic: "t".into(),
            name: "n".into(),
            partition: 4,
            next: 99,
            metadata: b"meta".to_vec(),
        },
        Request::Cancel { id: 1 },
        Request::Consume {
            source: Source::Group {
                topic: "t".into(),
                group: "g".into(),
            },
            prefetch: 5,
        },
        Request::Ack {
            id: 2,
            offsets: vec![(0, 1), (2, 2), (1, 3)],
        },
        Request::Nack {
            id: 2,
            delay_ms: 10,
            offsets: vec![(5, 7)],
        },
        Request::CreateTopic {
            name: "t".into(),
            settings: LogSettings {
                segment_bytes_max: Some(1 << 20),
                retention_bytes: None,
                retention_ms: Some(5),
                replicas: Some(2),
            },
            partitions: Some(6),
        },
        Request::CreateTopic {
            name: "t".into(),
            settings: LogSettings::default(),
            partitions: None,
        },
        Request::AlterTopic {
            name: "t".into(),
            partitions: 9,
        },
        Request::TopicMeta { name: "t".into() },
        Request::CreateQueue {
            name: "q".into(),
            settings: QueueSettings {
                log: LogSettings::default(),
                ack_timeout_ms: Some(100),
                max_deliveries: Some(3),
                dead_letter: Some("dead".into()),
            },
        },
        Request::CreateQueue {
            name: "r".into(),
            settings: QueueSettings {
                log: LogSettings {
                    replicas: Some(3),
                    ..LogSettings::default()
                },
                ack_timeout_ms: None,
                max_deliveries: None,
                dead_letter: None,
            },
        },
        Request::DeleteTopic { name: "a".into() },
        Request::DescribeQueue { name: "b".into() },
        Request::ListTopics,
        Request::ListQueues,
        Request::ClusterStatus,
        Request::ClusterAddNode {
            id: 4,
            addr: "h:9204".into(),
        },
        Request::ClusterRemoveNode { id: 3 },
        Request::ClusterSetReplicas {
            target: Target::Topic("orders".into()),
            replicas: 2,
        },
        Request::ClusterSetReplicas {
            target: Target::Queue("jobs".into()),
            replicas: 1,
        },
    ] {
        rt_req(r);
    }
}

#[test]
fn replies_round_trip() {
    let mut batch = format::encode_batch(
        &[
            Record::from_value("a"),
            Record::from_value("b"),
            Record::from_value("c"),
        ],
        5,
    );
    format::set_base_offset(&mut batch, sluice_format::Offset(10));
    for r in [
        Reply::HelloOk {
            version: 1,
            server: "s".into(),
            frame_bytes_max: 9,
        },
        Reply::Ok,
        Reply::Pong,
        Reply::error(ErrorCode::NotFound, "nope"),
        Reply::Published {
            partition: 2,
            base_offset: 1,
            last_offset: 4,
        },
        Reply::Subscribed { value: 8 },
        Reply::ClusterStatus(super::ClusterStatus {
            node_id: 2,
            cluster_id: [7; 16],
            nodes: vec![
                super::ClusterNodeInfo {
                    id: 1,
                    cluster_addr: "a:1".into(),
                },
                super::ClusterNodeInfo {
                    id: 2,
                    cluster_addr: "b:2".into(),
                },
            ],
            groups: vec![
                super::GroupState {
                    group: "meta".into(),
                    term: 3,
                    leader: Some(2),
                    last_index: Some(9),
                    applied_index: Some(8),
                    followers: vec![super::FollowerState {
                        node: 1,
                        matched: Some(7),
                    }],
                    voters: vec![1, 2],
                    learners: vec![4],
                    preferred: None,
                },
                super::GroupState {
                    group: "t/o/0".into(),
                    term: 1,
                    leader: None,
                    last_index: None,
                    applied_index: None,
                    followers: vec![],
                    voters: vec![],
                    learners: vec![],
                    preferred: Some(2),
                },
            ],
            unreachable: vec![3],
        }),
        Reply::Positions(vec![(0, 3), (1, 0), (5, 9)]),
        Reply::TopicMeta {
            id: [7; 16],
            partitions: 6,
        },
        Reply::Deliver {
            partition: 1,
            from: 11,
            to: 13,
            batch: Bytes::from(batch.clone()),
        },
        Reply::Messages(vec![QueueMessage {
            partition: 3,
            offset: 5,
            attempt: 2,
            record: Record {
                timestamp_ms: Some(77),
                key: Some(b"k".to_vec()),
                headers: vec![Header::new("h", "v")],
                value: vec![0, 159, 146, 150],
            },
        }]),
        Reply::Names(vec!["a".into(), "b".into()]),
        Reply::TopicInfo(TopicInfo {
            name: "t".into(),
            id: "6f1c2a4e-0000-4000-8000-000000000001".into(),
            partitions: vec![
                PartitionInfo {
                    partition: 0,
                    start_offset: 0,
                    end_offset: 5,
                    size_bytes: 100,
                    segments: 1,
                    subscribers: vec![SubscriberStat {
                        name: "s".into(),
                        committed: 3,
                        lag: 2,
                    }],
                },
                PartitionInfo {
                    partition: 1,
                    start_offset: 2,
                    end_offset: 2,
                    size_bytes: 0,
                    segments: 1,
                    subscribers: vec![],
                },
            ],
        }),
        Reply::QueueInfo(QueueInfo {
            name: "q".into(),
            start_offset: 0,
            end_offset: 1,
            ack_floor: 0,
            cursor: 1,
            depth: 1,
            in_flight: 1,
            dead_lettered: 0,
            size_bytes: 70,
            ack_timeout_ms: 30_000,
            max_deliveries: 5,
            dead_letter: "q.dlq".into(),
        }),
    ] {
        rt_reply(r);
    }
    let ms = decode_delivery(4, 11, 13, &batch).unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!((ms[0].partition, ms[0].offset), (4, 11));
    assert_eq!(ms[1].record.value, b"c");
}

#[test]
fn every_error_code_round_trips() {
    for v in 1..=19u16 {
        assert_eq!(ErrorCode::from_u16(v) as u16, v);
    }
    assert_eq!(ErrorCode::from_u16(20), ErrorCode::Internal);
}

#[test]
fn encoded_len_is_the_exact_size_of_a_message_in_a_frame() {
    let m = |key: Option<Vec<u8>>, headers: Vec<Header>, value: usize| QueueMessage {
        partition: 1,
        offset: 9,
        attempt: 1,
        record: Record {
            timestamp_ms: Some(5),
            key,
            headers,
            value: vec![7; value],
        },
    };
    let ms = [
        m(None, vec![], 0),
        m(Some(vec![]), vec![Header::default()], 3),
        m(
            Some(vec![1; 300]),
            vec![Header::new("a", vec![2; 500]); 7],
            1000,
        ),
    ];
    for k in 0..=ms.len() {
        let part = ms[..k].to_vec();
        let want: usize = part.iter().map(QueueMessage::encoded_len).sum();
        let f = Reply::Messages(part).encode(1).to_vec();
        assert_eq!(f.len(), MESSAGES_FRAME_OVERHEAD + want);
    }
}

#[test]
fn messages_of_empty_and_tiny_values_decode() {
    // Many smallest messages in one frame: the count bound must not refuse them.
    for len in 0..4 {
        for n in 1..40 {
            let ms = (0..n)
                .map(|i| QueueMessage {
                    partition: 0,
                    offset: i,
                    attempt: 1,
                    record: Record {
                        timestamp_ms: Some(0),
                        key: None,
                        headers: vec![],
                        value: vec![b'x'; len],
                    },
                })
                .collect();
            rt_reply(Reply::Messages(ms));
        }
    }
}

#[test]
fn garbage_is_rejected_not_panicking() {
    assert!(matches!(
        Request::decode(&RawFrame {
            kind: 0x7f,
            request_id: 1,
            body: vec![]
        }),
        Err(ProtocolError::UnknownKind(0x7f))
    ));
    let mut seed = 0x1234_5678u64;
    for _ in 0..2000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let len = (seed >> 59) as usize;
        let body: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
        let kind = (seed >> 8) as u8;
        let _ = Request::decode(&RawFrame {
            kind,
            request_id: 0,
            body: body.clone(),
        });
        let _ = Reply::decode(RawFrame {
            kind,
            request_id: 0,
            body,
        });
    }
    // Huge counts do not allocate.
    let mut f = Request::Ack {
        id: 1,
        offsets: vec![],
    }
    .encode(1)
    .to_vec();
    f[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
    let raw = parse_frame(&f, 1 << 20).unwrap();
    assert!(Request::decode(&raw).is_err());
}

#[tokio::test]
async fn oversized_length_prefix_is_rejected_before_reading() {
    let mut bytes: &[u8] = &[0xff, 0xff, 0xff, 0x7f, 1, 2, 3];
    match read_frame(&mut bytes, 1 << 20).await {
        Err(ProtocolError::TooLarge { len, max }) => {
            assert_eq!(len, 0x7fff_ffff);
            assert_eq!(max, 1 << 20);
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut short: &[u8] = &[2, 0, 0, 0, 1, 2];
    assert!(matches!(
        read_frame(&mut short, 1 << 20).await,
        Err(ProtocolError::Malformed(_))
    ));
    let mut empty: &[u8] = &[];
    assert!(read_frame(&mut empty, 10).await.unwrap().is_none());
    let ping = Request::Ping.encode(5).to_vec();
    let mut rd: &[u8] = &ping;
    let f = read_frame(&mut rd, 1 << 20).await.unwrap().unwrap();
    assert_eq!(Request::decode(&f).unwrap(), Request::Ping);
}

#[test]
fn security_frames_round_trip() {
    use super::{SecurityReply as SR, SecurityRequest as SQ, WireQuotas, WireRule, WireUser};
    let quotas = WireQuotas {
        produce_bytes_per_sec: Some(1 << 20),
        fetch_bytes_per_sec: None,
        connections_max: Some(3),
    };
    let rule = WireRule {
        principal: "alice".into(),
        resource: 1,
        pattern: 1,
        name: "jobs.".into(),
        operation: 2,
        permission: 0,
    };
    for q in [
        SQ::Auth {
            mechanism: "SCRAM-SHA-256".into(),
            payload: b"n,,n=a,r=x".to_vec(),
        },
        SQ::AuthContinue { payload: vec![] },
        SQ::UserAdd {
            name: "a".into(),
            password: "p w".into(),
            superuser: true,
            expires_at_ms: Some(5),
            quotas,
        },
        SQ::UserDelete { name: "a".into() },
        SQ::UserList,
        SQ::UserQuotas {
            name: "a".into(),
            quotas: WireQuotas::default(),
        },
        SQ::RuleAdd(rule.clone()),
        SQ::RuleRemove(rule.clone()),
        SQ::RuleList,
    ] {
        rt_req(Request::Security(q));
    }
    let user = WireUser {
        name: "a".into(),
        superuser: false,
        expires_at_ms: None,
        quotas,
        created_ms: 9,
    };
    for r in [
        SR::AuthChallenge(b"r=1,s=2,i=4096".to_vec()),
        SR::AuthOk {
            user: "a".into(),
            payload: b"v=x".to_vec(),
        },
        SR::Users(vec![user.clone(), user]),
        SR::Users(vec![]),
        SR::Rules(vec![rule]),
    ] {
        rt_reply(Reply::Security(r));
    }
    // A count larger than the body could hold is refused before allocating.
    let mut f = Reply::Security(SR::Rules(vec![])).encode(1).to_vec();
    f[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
    let raw = super::parse_frame(&f, 1 << 20).unwrap();
    assert!(Reply::decode(raw).is_err());
}

#[test]
fn a_cluster_status_without_the_unreachable_nodes_decodes_as_none() {
    let status = super::ClusterStatus {
        node_id: 1,
        cluster_id: [2; 16],
        nodes: vec![],
        groups: vec![],
        unreachable: vec![],
    };
    let mut body = Vec::new();
    status.encode_body(&mut super::codec::W(&mut body));
    // A server that does not report unreachable nodes ends the body before their count.
    body.truncate(body.len() - 4);
    let mut r = super::codec::R { b: &body, pos: 0 };
    assert_eq!(super::ClusterStatus::decode(&mut r).unwrap(), status);
}
