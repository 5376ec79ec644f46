//! The consumer-group APIs at each version: a member joins (with MEMBER_ID_REQUIRED from v4),
//! syncs, heartbeats and leaves; offsets are committed, fetched back with their metadata, and
//! deleted with their group; groups are described and listed.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::common::kafka_raw::Raw;
use super::{s, topic};

const MEMBER_ID_REQUIRED: i16 = 79;
const UNKNOWN_MEMBER_ID: i16 = 25;
const ILLEGAL_GENERATION: i16 = 22;
const OFFSET_OUT_OF_RANGE: i16 = 1;

fn gid(g: &str) -> GroupId {
    GroupId(s(g))
}

fn join_req(g: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(g))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(bytes::Bytes::from_static(b"meta"))])
}

/// Joins `g` at version `v` as a new member: (member id, generation).
fn join_at(c: &mut Raw, v: i16, g: &str) -> (StrBytes, i32) {
    let mut r: JoinGroupResponse = c.call(ApiKey::JoinGroup, v, &join_req(g, ""));
    if v >= 4 {
        assert_eq!(r.error_code, MEMBER_ID_REQUIRED, "v{v}");
        assert!(!r.member_id.is_empty(), "v{v}");
        r = c.call(ApiKey::JoinGroup, v, &join_req(g, &r.member_id));
    }
    assert_eq!(r.error_code, 0, "v{v}");
    assert_eq!(r.leader, r.member_id, "v{v}: the only member leads");
    assert_eq!(r.members.len(), 1, "v{v}: the leader gets the member list");
    assert_eq!(&r.members[0].metadata[..], b"meta", "v{v}");
    if v >= 7 {
        assert_eq!(r.protocol_name.as_deref(), Some("range"), "v{v}");
    }
    (r.member_id, r.generation_id)
}

fn sync_req(g: &str, member: &StrBytes, generation: i32) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(gid(g))
        .with_generation_id(generation)
        .with_member_id(member.clone())
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(member.clone())
                .with_assignment(bytes::Bytes::from_static(b"all of it")),
        ])
}

/// A member of `g`, joined and synced with the newest versions: (member id, generation).
fn stable_member(c: &mut Raw, g: &str) -> (StrBytes, i32) {
    let (m, generation) = join_at(c, 9, g);
    let r: SyncGroupResponse = c.call(ApiKey::SyncGroup, 5, &sync_req(g, &m, generation));
    assert_eq!(r.error_code, 0);
    (m, generation)
}

fn heartbeat(c: &mut Raw, v: i16, g: &str, m: &StrBytes, generation: i32) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(gid(g))
        .with_generation_id(generation)
        .with_member_id(m.clone());
    let r: HeartbeatResponse = c.call(ApiKey::Heartbeat, v, &req);
    r.error_code
}

fn leave(c: &mut Raw, v: i16, g: &str, m: &StrBytes) -> i16 {
    let req = if v >= 3 {
        LeaveGroupRequest::default()
            .with_group_id(gid(g))
            .with_members(vec![
                leave_group_request::MemberIdentity::default().with_member_id(m.clone())
            ])
    } else {
        LeaveGroupRequest::default()
            .with_group_id(gid(g))
            .with_member_id(m.clone())
    };
    let r: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, v, &req);
    if v >= 3 && r.error_code == 0 {
        return r.members[0].error_code;
    }
    r.error_code
}

pub fn check_join_group(c: &mut Raw, v: i16) {
    let g = format!("join-v{v}");
    let (m, generation) = join_at(c, v, &g);
    assert!(generation >= 1, "v{v}");
    assert_eq!(leave(c, 5, &g, &m), 0, "v{v}");
}

pub fn check_sync_group(c: &mut Raw, v: i16) {
    let g = format!("sync-v{v}");
    let (m, generation) = join_at(c, 9, &g);
    let r: SyncGroupResponse = c.call(ApiKey::SyncGroup, v, &sync_req(&g, &m, generation));
    assert_eq!(r.error_code, 0, "v{v}");
    assert_eq!(&r.assignment[..], b"all of it", "v{v}");
    let r: SyncGroupResponse = c.call(ApiKey::SyncGroup, v, &sync_req(&g, &m, generation + 7));
    assert_eq!(r.error_code, ILLEGAL_GENERATION, "v{v}");
    assert_eq!(leave(c, 5, &g, &m), 0, "v{v}");
}

pub fn check_heartbeat(c: &mut Raw, v: i16) {
    let g = format!("heartbeat-v{v}");
    let (m, generation) = stable_member(c, &g);
    assert_eq!(heartbeat(c, v, &g, &m, generation), 0, "v{v}");
    assert_eq!(
        heartbeat(c, v, &g, &m, generation + 1),
        ILLEGAL_GENERATION,
        "v{v}"
    );
    assert_eq!(leave(c, 5, &g, &m), 0, "v{v}");
}

pub fn check_leave_group(c: &mut Raw, v: i16) {
    let g = format!("leave-v{v}");
    let (m, generation) = stable_member(c, &g);
    assert_eq!(leave(c, v, &g, &m), 0, "v{v}");
    assert_eq!(
        heartbeat(c, 4, &g, &m, generation),
        UNKNOWN_MEMBER_ID,
        "v{v}: gone"
    );
}

fn commit_req(g: &str, offset: i64, metadata: &str) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(gid(g))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic("v"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)
                        .with_committed_metadata(Some(s(metadata))),
                ]),
        ])
}

fn commit(c: &mut Raw, v: i16, g: &str, offset: i64, metadata: &str) -> i16 {
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, v, &commit_req(g, offset, metadata));
    r.topics[0].partitions[0].error_code
}

/// The committed offset and metadata of `g` on v/0, fetched at version `v`.
fn fetch_committed(c: &mut Raw, v: i16, g: &str) -> (i64, String) {
    if v >= 8 {
        let t = offset_fetch_request::OffsetFetchRequestTopics::default()
            .with_name(topic("v"))
            .with_partition_indexes(vec![0]);
        let req = OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(gid(g))
                .with_topics(Some(vec![t])),
        ]);
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, v, &req);
        assert_eq!(r.groups[0].error_code, 0, "v{v}");
        let p = &r.groups[0].topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{v}");
        return (
            p.committed_offset,
            p.metadata.as_deref().unwrap_or("").into(),
        );
    }
    let t = offset_fetch_request::OffsetFetchRequestTopic::default()
        .with_name(topic("v"))
        .with_partition_indexes(vec![0]);
    let req = OffsetFetchRequest::default()
        .with_group_id(gid(g))
        .with_topics(Some(vec![t]));
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, v, &req);
    assert_eq!(r.error_code, 0, "v{v}");
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "v{v}");
    (
        p.committed_offset,
        p.metadata.as_deref().unwrap_or("").into(),
    )
}

pub fn check_offset_commit(c: &mut Raw, v: i16) {
    let g = format!("commit-v{v}");
    assert_eq!(commit(c, v, &g, 1, &format!("m{v}")), 0, "v{v}");
    assert_eq!(fetch_committed(c, 9, &g), (1, format!("m{v}")), "v{v}");
    // sluice keeps no committed offset past the end of the partition.
    assert_eq!(commit(c, v, &g, 1 << 40, ""), OFFSET_OUT_OF_RANGE, "v{v}");
    assert_eq!(fetch_committed(c, 9, &g).0, 1, "v{v}");
}

pub fn check_offset_fetch(c: &mut Raw, v: i16) {
    let g = format!("fetch-v{v}");
    assert_eq!(fetch_committed(c, v, &g), (-1, String::new()), "v{v}: none");
    assert_eq!(commit(c, 9, &g, 2, "kept"), 0, "v{v}");
    assert_eq!(fetch_committed(c, v, &g), (2, "kept".into()), "v{v}");
}

pub fn check_describe_groups(c: &mut Raw, v: i16) {
    let g = format!("describe-v{v}");
    let (m, _) = stable_member(c, &g);
    let req = DescribeGroupsRequest::default().with_groups(vec![gid(&g)]);
    let r: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, v, &req);
    let d = &r.groups[0];
    assert_eq!(d.error_code, 0, "v{v}");
    assert_eq!(d.group_state.as_str(), "Stable", "v{v}");
    assert_eq!(d.protocol_type.as_str(), "consumer", "v{v}");
    assert_eq!(d.protocol_data.as_str(), "range", "v{v}");
    assert_eq!(d.members.len(), 1, "v{v}");
    assert_eq!(d.members[0].member_id, m, "v{v}");
    assert_eq!(&d.members[0].member_assignment[..], b"all of it", "v{v}");
    // As Kafka writes the peer's address (Java's InetAddress::toString).
    assert_eq!(d.members[0].client_host.as_str(), "/127.0.0.1", "v{v}");
    assert_eq!(leave(c, 5, &g, &m), 0, "v{v}");
}

pub fn check_list_groups(c: &mut Raw, v: i16) {
    let g = format!("list-v{v}");
    let (m, _) = stable_member(c, &g);
    let r: ListGroupsResponse = c.call(ApiKey::ListGroups, v, &ListGroupsRequest::default());
    assert_eq!(r.error_code, 0, "v{v}");
    let listed = r.groups.iter().find(|l| l.group_id == gid(&g));
    let listed = listed.unwrap_or_else(|| panic!("v{v}: {g} not listed"));
    assert_eq!(listed.protocol_type.as_str(), "consumer", "v{v}");
    if v >= 4 {
        assert_eq!(listed.group_state.as_str(), "Stable", "v{v}");
    }
    assert_eq!(leave(c, 5, &g, &m), 0, "v{v}");
}

pub fn check_delete_groups(c: &mut Raw, v: i16) {
    let g = format!("delete-v{v}");
    assert_eq!(commit(c, 9, &g, 1, ""), 0, "v{v}");
    let req = DeleteGroupsRequest::default().with_groups_names(vec![gid(&g)]);
    let r: DeleteGroupsResponse = c.call(ApiKey::DeleteGroups, v, &req);
    assert_eq!(r.results[0].error_code, 0, "v{v}");
    assert_eq!(
        fetch_committed(c, 9, &g).0,
        -1,
        "v{v}: its offsets are gone"
    );
    let r: DeleteGroupsResponse = c.call(ApiKey::DeleteGroups, v, &req);
    assert_eq!(r.results[0].error_code, 69, "v{v}: GROUP_ID_NOT_FOUND");
}
