//! OffsetCommit and OffsetFetch: generation and member checks, simple consumers, limits,
//! store errors, and reads of one group, all of a group, and several groups.

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::ResponseError;

use super::*;
use crate::server::kafka::group::{GroupConfig, GroupOffsets, MemoryGroupOffsets};

pub(super) fn commit_req(
    member: &str,
    generation: i32,
    topic: &str,
    partitions: &[(i32, i64, Option<&str>)],
) -> OffsetCommitRequest {
    let parts = partitions
        .iter()
        .map(|(p, o, m)| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_metadata(m.map(s))
        })
        .collect();
    OffsetCommitRequest::default()
        .with_group_id(gid(GROUP))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(parts)])
}

/// Commits one offset (metadata "meta"); the partition error codes.
pub(super) async fn commit(
    fx: &Fx,
    member: &str,
    generation: i32,
    topic: &str,
    partition: i32,
    offset: i64,
    version: i16,
) -> Vec<i16> {
    let req = commit_req(
        member,
        generation,
        topic,
        &[(partition, offset, Some("meta"))],
    );
    let reply = fx.coord.offset_commit(req, version).await;
    reply
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// OffsetFetch v7 of one partition: (offset, metadata, partition error, group error).
async fn fetch_one(fx: &Fx, topic: &str, partition: i32) -> (i64, String, i16, i16) {
    let req = OffsetFetchRequest::default()
        .with_group_id(gid(GROUP))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(vec![partition])]))
        .with_require_stable(true);
    let reply = fx.coord.offset_fetch(req, 7).await;
    let p = &reply.topics[0].partitions[0];
    let metadata = p.metadata.as_deref().unwrap_or("<null>").to_string();
    (p.committed_offset, metadata, p.error_code, reply.error_code)
}

#[tokio::test]
async fn a_group_commit_round_trips_with_its_metadata_and_stale_generations_are_refused() {
    let fx = fixture();
    let (ids, generation) = fx.stable_group(2);
    assert_eq!(fetch_one(&fx, "t", 0).await, (-1, String::new(), 0, 0));
    assert_eq!(
        commit(&fx, &ids[0], generation, "t", 0, 42, 8).await,
        vec![0]
    );
    assert_eq!(fetch_one(&fx, "t", 0).await, (42, "meta".to_string(), 0, 0));
    let stored = fx
        .store
        .fetch(GROUP, "t", 0)
        .expect("read")
        .expect("stored");
    assert_eq!((stored.next_offset, stored.metadata.as_str()), (42, "meta"));

    let illegal = ec(ResponseError::IllegalGeneration);
    assert_eq!(
        commit(&fx, &ids[0], generation - 1, "t", 0, 50, 8).await,
        vec![illegal]
    );
    assert_eq!(
        commit(&fx, &ids[0], generation + 1, "t", 0, 50, 8).await,
        vec![illegal]
    );
    let unknown = ec(ResponseError::UnknownMemberId);
    assert_eq!(
        commit(&fx, "stranger", generation, "t", 0, 50, 8).await,
        vec![unknown]
    );
    assert_eq!(
        commit(&fx, "", -1, "t", 0, 50, 8).await,
        vec![unknown],
        "simple commits need an Empty group"
    );

    // A rebalance makes the old generation stale; during CompletingRebalance commits wait.
    let mut j0 = fx.start_join(join_req(&ids[0], RANGE), 9);
    let mut j1 = fx.start_join(join_req(&ids[1], RANGE), 9);
    let next = take(&mut j0).generation_id;
    take(&mut j1);
    assert_eq!(
        commit(&fx, &ids[1], generation, "t", 0, 50, 8).await,
        vec![illegal]
    );
    let in_progress = ec(ResponseError::RebalanceInProgress);
    assert_eq!(
        commit(&fx, &ids[1], next, "t", 0, 50, 8).await,
        vec![in_progress]
    );
    assert_eq!(
        fetch_one(&fx, "t", 0).await.0,
        42,
        "no refused commit was stored"
    );
}

#[tokio::test]
async fn simple_consumers_commit_to_groups_without_members() {
    let fx = fixture();
    assert_eq!(commit(&fx, "", -1, "t", 3, 7, 9).await, vec![0]);
    assert_eq!(fetch_one(&fx, "t", 3).await, (7, "meta".to_string(), 0, 0));
    assert_eq!(fx.state(), None, "no group is kept in memory for it");
    // A member commit to a group known only by its offsets: the group exists but is Empty.
    let unknown = ec(ResponseError::UnknownMemberId);
    assert_eq!(commit(&fx, "m", 3, "t", 3, 9, 9).await, vec![unknown]);
    // To a group that does not exist: GROUP_ID_NOT_FOUND from v9, ILLEGAL_GENERATION before.
    let mut req = commit_req("m", 3, "t", &[(0, 1, None)]);
    req.group_id = gid("nothing");
    let v9 = fx.coord.offset_commit(req.clone(), 9).await;
    assert_eq!(
        v9.topics[0].partitions[0].error_code,
        ec(ResponseError::GroupIdNotFound)
    );
    let v8 = fx.coord.offset_commit(req, 8).await;
    assert_eq!(
        v8.topics[0].partitions[0].error_code,
        ec(ResponseError::IllegalGeneration)
    );
}

#[tokio::test]
async fn commit_limits_unknown_partitions_and_store_failures_get_their_own_errors() {
    let cfg = GroupConfig {
        initial_rebalance_delay_ms: DELAY_MS,
        offset_metadata_bytes_max: 8,
        ..GroupConfig::default()
    };
    let fx = fixture_with(MemoryGroupOffsets::with_topics(&[("t", 2)]), cfg);
    let req = commit_req(
        "",
        -1,
        "t",
        &[
            (0, 5, Some("12345678")),
            (1, 6, Some("123456789")),
            (2, 7, None),
            (0, -1, None),
        ],
    );
    let reply = fx.coord.offset_commit(req, 8).await;
    let errors: Vec<i16> = reply.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        errors,
        vec![
            0,
            ec(ResponseError::OffsetMetadataTooLarge),
            ec(ResponseError::UnknownTopicOrPartition),
            ec(ResponseError::OffsetOutOfRange),
        ]
    );
    let partitions: Vec<i32> = reply.topics[0]
        .partitions
        .iter()
        .map(|p| p.partition_index)
        .collect();
    assert_eq!(partitions, vec![0, 1, 2, 0], "answers in request order");
    assert_eq!(fetch_one(&fx, "t", 1).await.0, -1);

    fx.store.set_failing(Some("disk gone"));
    assert_eq!(
        commit(&fx, "", -1, "t", 0, 9, 8).await,
        vec![ec(ResponseError::NotCoordinator)]
    );
    let (_, _, _, group_error) = fetch_one(&fx, "t", 0).await;
    assert_eq!(group_error, ec(ResponseError::NotCoordinator));
    fx.store.set_failing(None);
    assert_eq!(
        fetch_one(&fx, "t", 0).await.0,
        5,
        "the failed commit changed nothing"
    );

    let empty_group = commit_req("", -1, "t", &[(0, 1, None)]).with_group_id(gid(""));
    let reply = fx.coord.offset_commit(empty_group, 8).await;
    assert_eq!(
        reply.topics[0].partitions[0].error_code,
        ec(ResponseError::InvalidGroupId)
    );
}

#[tokio::test]
async fn fetch_reads_all_of_a_group_and_several_groups_from_v8() {
    let fx = fixture();
    for (topic, partition, offset) in [("a", 1, 10), ("a", 0, 11), ("b", 0, 12)] {
        assert_eq!(
            commit(&fx, "", -1, topic, partition, offset, 8).await,
            vec![0]
        );
    }
    let all = OffsetFetchRequest::default()
        .with_group_id(gid(GROUP))
        .with_topics(None);
    let reply = fx.coord.offset_fetch(all, 7).await;
    let rows: Vec<(String, i32, i64)> = reply
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index, p.committed_offset))
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("a".into(), 0, 11),
            ("a".into(), 1, 10),
            ("b".into(), 0, 12)
        ]
    );

    let groups = vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(gid(GROUP))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(s("b")))
                .with_partition_indexes(vec![0, 5])])),
        OffsetFetchRequestGroup::default()
            .with_group_id(gid("other"))
            .with_topics(None),
    ];
    let reply = fx
        .coord
        .offset_fetch(OffsetFetchRequest::default().with_groups(groups), 8)
        .await;
    assert_eq!(reply.groups.len(), 2);
    let mine = &reply.groups[0];
    assert_eq!(mine.group_id.as_str(), GROUP);
    let offsets: Vec<(i32, i64, Option<String>)> = mine.topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.committed_offset,
                p.metadata.as_ref().map(|m| m.to_string()),
            )
        })
        .collect();
    assert_eq!(
        offsets,
        vec![(0, 12, Some("meta".into())), (5, -1, Some(String::new()))]
    );
    assert!(reply.groups[1].topics.is_empty());
    assert_eq!(reply.groups[1].error_code, 0);
}
