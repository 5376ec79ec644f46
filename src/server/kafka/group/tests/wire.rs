//! Every reply the coordinator builds encodes at every version it serves (fields a version
//! lacks are left at their defaults, nullability follows the version).

use bytes::BytesMut;
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::leave_group_request::{LeaveGroupRequest, MemberIdentity};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequest, OffsetFetchRequestGroup};
use kafka_protocol::protocol::Encodable;

use super::offsets::commit_req;
use super::*;
use crate::server::kafka::group::API_VERSIONS;

fn versions(api_key: i16) -> std::ops::RangeInclusive<i16> {
    let (_, min, max) = API_VERSIONS
        .iter()
        .find(|(k, _, _)| *k == api_key)
        .copied()
        .expect("served");
    min..=max
}

fn encodes<T: Encodable + std::fmt::Debug>(reply: &T, version: i16) {
    let mut buf = BytesMut::new();
    if let Err(e) = reply.encode(&mut buf, version) {
        panic!("v{version}: {e}: {reply:?}");
    }
}

#[tokio::test]
async fn every_reply_encodes_at_every_served_version() {
    let fx = fixture();
    // A static member makes group instance ids appear in member lists.
    let mut a = fx.start_join(join_req("", RANGE).with_group_instance_id(Some(s("i"))), 9);
    let b_id = fx.new_member_id(RANGE);
    let mut b = fx.start_join(join_req(&b_id, RANGE), 9);
    fx.advance(u64::from(DELAY_MS));
    fx.advance(u64::from(DELAY_MS));
    let (ra, rb) = (take(&mut a), take(&mut b));
    let leader = if ra.members.is_empty() {
        rb.clone()
    } else {
        ra.clone()
    };
    for v in versions(11) {
        let ready_reply = fx
            .coord
            .join_group(join_req(&b_id, RANGE), v, "client", "h")
            .await;
        encodes(&ready_reply, v);
        encodes(
            &fx.coord.join_group(join_req("x", RANGE), v, "c", "h").await,
            v,
        );
        let with_members = super::super::api_members::join_reply_for_version(leader.clone(), v);
        encodes(&with_members, v);
    }
    let generation = ra.generation_id;
    let leader_id = leader.member_id.to_string();
    let sync = ready(fx.start_sync(&leader_id, generation, &[(&leader_id, b"x")]));
    for v in versions(14) {
        encodes(
            &super::super::api_members::sync_reply_for_version(sync.clone(), v),
            v,
        );
    }
    for v in versions(12) {
        let req = HeartbeatRequest::default()
            .with_group_id(gid(GROUP))
            .with_member_id(s(&leader_id));
        encodes(&fx.coord.heartbeat(req, v).await, v);
    }
    for v in versions(15) {
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![gid(GROUP), gid("nope")])
            .with_include_authorized_operations(true);
        encodes(&fx.coord.describe_groups(req, v).await, v);
    }
    for v in versions(16) {
        encodes(
            &fx.coord.list_groups(ListGroupsRequest::default(), v).await,
            v,
        );
    }
    for v in versions(8) {
        let req = commit_req("", -1, "t", &[(0, 1, Some("m"))]).with_group_id(gid("simple"));
        encodes(&fx.coord.offset_commit(req, v).await, v);
    }
    for v in versions(9) {
        let req = OffsetFetchRequest::default()
            .with_group_id(gid("simple"))
            .with_topics(if v >= 2 { None } else { Some(Vec::new()) })
            .with_groups(if v >= 8 {
                vec![OffsetFetchRequestGroup::default()
                    .with_group_id(gid("simple"))
                    .with_topics(None)]
            } else {
                Vec::new()
            });
        encodes(&fx.coord.offset_fetch(req, v).await, v);
    }
    for v in versions(13) {
        let req = LeaveGroupRequest::default()
            .with_group_id(gid(GROUP))
            .with_member_id(if v < 3 { s("nobody") } else { s("") })
            .with_members(if v >= 3 {
                vec![MemberIdentity::default().with_member_id(s("nobody"))]
            } else {
                Vec::new()
            });
        encodes(&fx.coord.leave_group(req, v).await, v);
    }
    for v in versions(42) {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![gid("nope")]);
        encodes(&fx.coord.delete_groups(req, v).await, v);
    }
}
