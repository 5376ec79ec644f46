//! Share groups (KIP-932) in the raw Kafka protocol against the real `sluice serve`: members
//! acquire disjoint records that together cover everything, RELEASE redelivers at once, REJECT
//! and the delivery limit dead-letter (to `<topic>.<group>.dlq`, a sluice queue), locks expire,
//! a member's records return when its share session closes (not when it leaves the group)
//! or when it falls silent for the session timeout, session epochs are
//! checked, acknowledgements of records not held change nothing, and accepted records stay
//! accepted across a SIGKILL of the broker.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::kafka::{start_kafka, KafkaServer};
use common::kafka_raw::{batch, metadata, produce, Raw};
use common::kafka_share::{Member, ACCEPT, REJECT, RELEASE};
use common::{cli_ok, data_dir, json_lines};
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;

const INVALID_RECORD_STATE: i16 = 121;
const SHARE_SESSION_NOT_FOUND: i16 = 122;
const INVALID_SHARE_SESSION_EPOCH: i16 = 123;

/// A server whose share members hold at most `window` records, with a `lock_ms` lock and a
/// delivery limit of `limit`.
fn server(dir: &Path, window: u32, lock_ms: u64, limit: u32) -> KafkaServer {
    let cfg = dir.with_extension("share.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka_share]\nmember_records_max = {window}\nrecord_lock_ms = {lock_ms}\n\
             delivery_count_limit = {limit}\nheartbeat_interval_ms = 500\nsession_timeout_ms = 3000\n"
        ),
    )
    .unwrap();
    start_kafka(dir, &["--config", cfg.to_str().unwrap()])
}

/// Creates `topic` and produces `n` records `r0..` to it.
fn fill(addr: &str, topic: &str, n: usize) {
    let mut c = Raw::connect(addr);
    metadata(&mut c, topic);
    let values: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    let refs: Vec<&str> = values.iter().map(|s| s.as_str()).collect();
    for chunk in refs.chunks(50) {
        assert_eq!(produce(&mut c, topic, batch(chunk, Compression::None)).0, 0);
    }
}

fn offsets(a: &[(i64, String, i16)]) -> BTreeSet<i64> {
    a.iter().map(|r| r.0).collect()
}

/// The messages of a sluice queue (its depth, from `sluice queue describe`).
fn queue_depth(native: &str, queue: &str) -> u64 {
    let lines = cli_ok(native, &["--json", "queue", "describe", queue], None);
    let v = &json_lines(&lines)[0];
    v["depth"]
        .as_u64()
        .unwrap_or_else(|| panic!("no depth in {v}"))
}

#[test]
fn two_members_acquire_disjoint_records_that_together_cover_everything() {
    let (_t, dir) = data_dir();
    let s = server(&dir, 30, 30_000, 5);
    fill(&s.kafka, "jobs", 100);
    let mut a = Member::join(&s.kafka, "workers", "member-a", "jobs");
    let mut b = Member::join(&s.kafka, "workers", "member-b", "jobs");
    assert_eq!(a.partitions, vec![0]);
    let (ra, _) = a.fetch(&[], 500);
    let (rb, _) = b.fetch(&[], 500);
    assert_eq!(ra.len(), 30, "the window bounds what a member holds");
    assert_eq!(rb.len(), 30);
    assert!(offsets(&ra).is_disjoint(&offsets(&rb)));
    // Nothing more for a member with a full window, until it acknowledges.
    let (more, _) = a.fetch(&[], 100);
    assert!(more.is_empty(), "{more:?}");
    let mut seen: BTreeSet<i64> = offsets(&ra).union(&offsets(&rb)).copied().collect();
    let (mut last_a, mut last_b) = (ra, rb);
    while seen.len() < 100 {
        let acks_a: Vec<(i64, i64, i8)> = last_a.iter().map(|r| (r.0, r.0, ACCEPT)).collect();
        let (na, code) = a.fetch(&acks_a, 200);
        assert_eq!(code, 0);
        let acks_b: Vec<(i64, i64, i8)> = last_b.iter().map(|r| (r.0, r.0, ACCEPT)).collect();
        let (nb, code) = b.fetch(&acks_b, 200);
        assert_eq!(code, 0);
        for r in na.iter().chain(&nb) {
            assert!(seen.insert(r.0), "offset {} acquired twice", r.0);
            assert_eq!(r.1, format!("r{}", r.0));
            assert_eq!(r.2, 1, "first delivery");
        }
        (last_a, last_b) = (na, nb);
    }
    assert_eq!(seen, (0..100).collect());
}

#[test]
fn release_redelivers_at_once_and_reject_dead_letters() {
    let (_t, dir) = data_dir();
    let s = server(&dir, 100, 30_000, 5);
    fill(&s.kafka, "t", 4);
    let mut a = Member::join(&s.kafka, "g", "a", "t");
    let (got, _) = a.fetch(&[], 500);
    assert_eq!(offsets(&got), (0..4).collect());
    // 0 accepted, 1 released, 2 rejected, 3 kept.
    let (again, code) = a.fetch(&[(0, 0, ACCEPT), (1, 1, RELEASE), (2, 2, REJECT)], 500);
    assert_eq!(code, 0);
    assert_eq!(
        again,
        vec![(1, "r1".to_string(), 2)],
        "released: redelivered, count 2"
    );
    assert_eq!(
        queue_depth(&s.server.addr, "t.g.dlq"),
        1,
        "the rejected record"
    );
    let lines = cli_ok(
        &s.server.addr,
        &[
            "--json",
            "consume",
            "t.g.dlq",
            "--count",
            "1",
            "--wait-ms",
            "5000",
        ],
        None,
    );
    let v = &json_lines(&lines)[0];
    assert_eq!(v["payload"], "r2");
    let headers: Vec<(String, String)> = v["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("no headers in {v}"))
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().into(),
                h["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    for want in [
        ("x-dead-letter-reason", "rejected"),
        ("x-original-queue", "t/g"),
        ("x-original-offset", "2"),
        ("x-delivery-count", "1"),
    ] {
        assert!(
            headers.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {headers:?}"
        );
    }
}

#[test]
fn locks_expire_and_the_delivery_limit_dead_letters() {
    let (_t, dir) = data_dir();
    let s = server(&dir, 100, 300, 2);
    fill(&s.kafka, "t", 1);
    let mut a = Member::join(&s.kafka, "g", "a", "t");
    let (first, _) = a.fetch(&[], 500);
    assert_eq!(first, vec![(0, "r0".to_string(), 1)]);
    // Not acknowledged: the lock passes and the record comes back.
    let (second, _) = a.fetch(&[], 3_000);
    assert_eq!(second, vec![(0, "r0".to_string(), 2)]);
    // A second lock passes: the limit of 2 deliveries is reached, it is dead-lettered.
    std::thread::sleep(Duration::from_millis(600));
    let (third, _) = a.fetch(&[], 500);
    assert!(third.is_empty(), "{third:?}");
    assert_eq!(queue_depth(&s.server.addr, "t.g.dlq"), 1);
}

#[test]
fn a_member_that_leaves_or_closes_its_session_returns_what_it_holds() {
    let (_t, dir) = data_dir();
    let s = server(&dir, 100, 60_000, 5);
    fill(&s.kafka, "t", 10);
    let mut a = Member::join(&s.kafka, "g", "a", "t");
    let mut b = Member::join(&s.kafka, "g", "b", "t");
    let (held, _) = a.fetch(&[], 500);
    assert_eq!(held.len(), 10);
    let (none, _) = b.fetch(&[], 100);
    assert!(none.is_empty());
    // Closing the session (epoch -1) returns a's records at once.
    let r = a.fetch_req(-1, &[(0, 1, ACCEPT)], 0);
    let r: ShareFetchResponse = a.c.call(ApiKey::ShareFetch, 1, &r);
    assert_eq!(r.error_code, 0);
    let (got, _) = b.fetch(&[], 1_000);
    assert_eq!(offsets(&got), (2..10).collect(), "all but the two accepted");
    assert!(got.iter().all(|r| r.2 == 2));
    // b leaves the group: its share session, and what it holds, stay until the session
    // closes (as in Kafka, where a client leaves, then closes its session).
    b.leave();
    let mut c = Member::join(&s.kafka, "g", "c", "t");
    let (none, _) = c.fetch(&[], 200);
    assert!(none.is_empty(), "{none:?}");
    let r = b.fetch_req(-1, &[], 0);
    let r: ShareFetchResponse = b.c.call(ApiKey::ShareFetch, 1, &r);
    assert_eq!(r.error_code, 0);
    let (got, _) = c.fetch(&[], 1_000);
    assert_eq!(offsets(&got), (2..10).collect());
    // c goes silent: after the session timeout (3 s here) it is removed and its records
    // return.
    let mut d = Member::join(&s.kafka, "g", "d", "t");
    let mut got = Vec::new();
    for _ in 0..20 {
        got.extend(d.fetch(&[], 500).0);
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(offsets(&got), (2..10).collect());
    assert!(
        got.iter().all(|r| r.2 == 4),
        "fourth delivery (a, b, c, d): {got:?}"
    );
}

#[test]
fn share_sessions_check_their_epochs() {
    let (_t, dir) = data_dir();
    let s = server(&dir, 100, 30_000, 5);
    fill(&s.kafka, "t", 3);
    let mut a = Member::join(&s.kafka, "g", "a", "t");
    // No session yet.
    let r: ShareFetchResponse = a.c.call(ApiKey::ShareFetch, 1, &a.fetch_req(1, &[], 0));
    assert_eq!(r.error_code, SHARE_SESSION_NOT_FOUND);
    let (got, _) = a.fetch(&[], 500);
    assert_eq!(got.len(), 3);
    // Out of turn: epoch 5 instead of 1.
    let r: ShareFetchResponse = a.c.call(ApiKey::ShareFetch, 1, &a.fetch_req(5, &[], 0));
    assert_eq!(r.error_code, INVALID_SHARE_SESSION_EPOCH);
    // An opening request carries no acknowledgements.
    let r: ShareFetchResponse =
        a.c.call(ApiKey::ShareFetch, 1, &a.fetch_req(0, &[(0, 0, ACCEPT)], 0));
    assert_ne!(r.error_code, 0);
    // In turn, ShareAcknowledge works and advances the epoch.
    assert_eq!(a.acknowledge(&[(0, 2, ACCEPT)]), 0);
    let (none, _) = a.fetch(&[], 100);
    assert!(none.is_empty());
}

#[test]
fn acknowledging_records_not_held_is_invalid_record_state_and_changes_nothing() {
    let (_t, dir) = data_dir();
    let s = server(&dir, 100, 30_000, 5);
    fill(&s.kafka, "t", 4);
    let mut a = Member::join(&s.kafka, "g", "a", "t");
    let mut b = Member::join(&s.kafka, "g", "b", "t");
    let (got, _) = a.fetch(&[], 500);
    assert_eq!(got.len(), 4);
    let (_, _) = b.fetch(&[], 0);
    // b accepts records a holds: refused, a still holds them.
    assert_eq!(b.acknowledge(&[(0, 3, ACCEPT)]), INVALID_RECORD_STATE);
    assert_eq!(a.acknowledge(&[(0, 3, ACCEPT)]), 0);
    // Accepted twice: the second is refused.
    assert_eq!(a.acknowledge(&[(0, 0, ACCEPT)]), INVALID_RECORD_STATE);
}

#[test]
fn accepted_records_stay_accepted_across_a_kill_and_the_rest_come_back() {
    let (_t, dir) = data_dir();
    let mut s = server(&dir, 1_000, 30_000, 5);
    fill(&s.kafka, "t", 200);
    let mut a = Member::join(&s.kafka, "g", "a", "t");
    let (got, _) = a.fetch(&[], 500);
    assert_eq!(got.len(), 200);
    // Every even offset accepted, and confirmed.
    for o in (0..200).step_by(2) {
        assert_eq!(a.acknowledge(&[(o, o, ACCEPT)]), 0);
    }
    s.server.kill9();
    let s = server(&dir, 1_000, 30_000, 5);
    let mut b = Member::join(&s.kafka, "g", "b", "t");
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (got, _) = b.fetch(&[], 500);
        seen.extend(got);
        if seen.len() >= 100 {
            break;
        }
    }
    let odd: BTreeSet<i64> = (1..200).step_by(2).collect();
    assert_eq!(
        offsets(&seen),
        odd,
        "exactly the unaccepted records come back"
    );
    assert!(seen.iter().all(|r| r.2 == 2), "redelivered, count 2");
}

#[test]
fn a_queue_is_a_topic_of_one_partition_and_its_cursor_a_share_group() {
    let (_t, dir) = data_dir();
    let s = server(&dir, 100, 30_000, 5);
    cli_ok(&s.server.addr, &["queue", "create", "jobs"], None);
    let mut c = Raw::connect(&s.kafka);
    // Listed, one partition, a stable id; not auto-created as a topic.
    let all: MetadataResponse = c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    let jobs = all
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some("jobs"))
        .expect("the queue is listed");
    assert_eq!(jobs.partitions.len(), 1);
    assert!(!jobs.topic_id.is_nil());
    assert_eq!(metadata(&mut c, "jobs").topics[0].topic_id, jobs.topic_id);
    // Kafka produces go into the queue.
    assert_eq!(
        produce(
            &mut c,
            "jobs",
            batch(&["a", "b", "c", "d"], Compression::None)
        )
        .0,
        0
    );
    let lines = cli_ok(
        &s.server.addr,
        &["--json", "queue", "describe", "jobs"],
        None,
    );
    assert_eq!(json_lines(&lines)[0]["depth"], 4);
    // A topic of its name cannot be created.
    let req = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(
                kafka_protocol::protocol::StrBytes::from_static_str("jobs"),
            ))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(r.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");
    // A share member of any group consumes the queue's own cursor, beside a native consumer.
    let mut m = Member::join(&s.kafka, "workers", "m", "jobs");
    assert_eq!(m.topic_id, jobs.topic_id);
    let (got, _) = m.fetch(&[], 500);
    assert_eq!(offsets(&got), (0..4).collect());
    let (none, code) = m.fetch(&[(0, 1, ACCEPT), (2, 2, REJECT), (3, 3, RELEASE)], 0);
    assert_eq!(code, 0);
    // The released record went back to the queue: the native consumer may take it.
    let native = cli_ok(
        &s.server.addr,
        &[
            "--json",
            "consume",
            "jobs",
            "--count",
            "1",
            "--wait-ms",
            "3000",
        ],
        None,
    );
    let native_offsets: Vec<i64> = json_lines(&native)
        .iter()
        .map(|v| v["offset"].as_i64().unwrap())
        .collect();
    let mut taken: BTreeSet<i64> = offsets(&none);
    taken.extend(&native_offsets);
    assert_eq!(taken, BTreeSet::from([3]), "offset 3, once, to one of them");
    assert_eq!(
        queue_depth(&s.server.addr, "jobs.dlq"),
        1,
        "the rejected record"
    );
    if !none.is_empty() {
        assert_eq!(m.acknowledge(&[(3, 3, ACCEPT)]), 0);
    }
    // The cursor is reported as the share group named after the queue.
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(GroupId(
                kafka_protocol::protocol::StrBytes::from_static_str("jobs"),
            ))
            .with_topics(None),
    ]);
    let r: DescribeShareGroupOffsetsResponse = c.call(ApiKey::DescribeShareGroupOffsets, 0, &req);
    let t = &r.groups[0].topics[0];
    assert_eq!(t.topic_name.as_str(), "jobs");
    assert_eq!(t.topic_id, jobs.topic_id);
    assert_eq!(t.partitions[0].start_offset, 4, "everything settled");
}
