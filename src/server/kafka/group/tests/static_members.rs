//! Static membership (`group.instance.id`): a restarted instance replaces its previous member
//! id without a rebalance, the old id is fenced, static members survive the rebalance timeout,
//! and LeaveGroup removes them by instance id.

use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::leave_group_request::{LeaveGroupRequest, MemberIdentity};
use kafka_protocol::ResponseError;

use super::*;

fn static_join(member: &str, instance: &str) -> JoinGroupRequest {
    join_req(member, RANGE).with_group_instance_id(Some(s(instance)))
}

async fn static_heartbeat(fx: &Fx, member: &str, instance: &str, generation: i32) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(gid(GROUP))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(Some(s(instance)));
    fx.coord.heartbeat(req, 4).await.error_code
}

/// Two static members ("i-0" leading, "i-1") in a Stable group: (ids, generation).
fn static_group(fx: &Fx) -> (Vec<String>, i32) {
    let mut a = fx.start_join(static_join("", "i-0"), 9);
    let mut b = fx.start_join(static_join("", "i-1"), 9);
    fx.advance(u64::from(DELAY_MS));
    fx.advance(u64::from(DELAY_MS));
    let (ra, rb) = (take(&mut a), take(&mut b));
    assert!(
        ra.member_id.starts_with("i-0-"),
        "static ids start with the instance id"
    );
    assert_eq!(ra.leader, ra.member_id);
    let ids = vec![ra.member_id.to_string(), rb.member_id.to_string()];
    let mut follower = fx.start_sync(&ids[1], ra.generation_id, &[]);
    let lead = ready(fx.start_sync(
        &ids[0],
        ra.generation_id,
        &[(&ids[0], b"x0"), (&ids[1], b"x1")],
    ));
    assert_eq!(lead.error_code, 0);
    assert_eq!(take(&mut follower).assignment.as_ref(), b"x1");
    (ids, ra.generation_id)
}

#[tokio::test]
async fn a_restarted_static_member_takes_over_without_a_rebalance_and_the_old_id_is_fenced() {
    let fx = fixture();
    let (ids, generation) = static_group(&fx);
    let reply = ready(fx.start_join(static_join("", "i-1"), 9));
    assert_eq!(reply.error_code, 0);
    assert_eq!(reply.generation_id, generation, "no new generation");
    assert_ne!(reply.member_id.as_str(), ids[1]);
    assert_eq!(fx.state(), Some("Stable"));
    let new_id = reply.member_id.to_string();
    let fenced = ec(ResponseError::FencedInstanceId);
    assert_eq!(
        static_heartbeat(&fx, &ids[1], "i-1", generation).await,
        fenced
    );
    assert_eq!(static_heartbeat(&fx, &new_id, "i-1", generation).await, 0);
    let sync = ready(fx.start_sync(&new_id, generation, &[]));
    assert_eq!(
        sync.assignment.as_ref(),
        b"x1",
        "the assignment carries over"
    );

    // The leader restarting at v9 is told to skip the assignment; before v9 it is not told
    // it leads.
    let lead = ready(fx.start_join(static_join("", "i-0"), 9));
    assert!(lead.skip_assignment);
    assert_eq!(lead.leader, lead.member_id);
    assert_eq!(lead.members.len(), 2);
    let old = ready(fx.start_join(static_join("", "i-0"), 8));
    assert!(!old.skip_assignment);
    assert_eq!(old.leader, lead.member_id, "the previous leader id");
    assert_ne!(old.leader, old.member_id);
    assert_eq!(fx.state(), Some("Stable"));
}

#[tokio::test]
async fn static_members_outlive_the_rebalance_timeout_and_leave_by_instance_id() {
    let fx = fixture();
    let (ids, generation) = static_group(&fx);
    // The follower rejoins; the leader does not, but is static: it stays a member.
    let mut rejoin = fx.start_join(
        static_join(&ids[1], "i-1").with_protocols(protocols(&[("range", b"v2")])),
        9,
    );
    // The leader's session stays alive (heartbeats answered REBALANCE_IN_PROGRESS).
    for _ in 0..(REBALANCE_MS / 5_000) {
        assert!(is_parked(&mut rejoin));
        let in_progress = ec(ResponseError::RebalanceInProgress);
        assert_eq!(
            static_heartbeat(&fx, &ids[0], "i-0", generation).await,
            in_progress
        );
        fx.advance(5_000);
    }
    let reply = take(&mut rejoin);
    assert_eq!(reply.generation_id, generation + 1);
    assert_eq!(
        reply.leader.as_str(),
        ids[1],
        "the member that rejoined leads"
    );
    assert_eq!(
        reply.members.len(),
        2,
        "the static member that did not rejoin is kept"
    );

    let req = LeaveGroupRequest::default()
        .with_group_id(gid(GROUP))
        .with_members(vec![
            MemberIdentity::default()
                .with_member_id(s(""))
                .with_group_instance_id(Some(s("i-0"))),
            MemberIdentity::default()
                .with_member_id(s(""))
                .with_group_instance_id(Some(s("i-9"))),
            MemberIdentity::default()
                .with_member_id(s("wrong"))
                .with_group_instance_id(Some(s("i-1"))),
        ]);
    let left = fx.coord.leave_group(req, 5).await;
    let errors: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    assert_eq!(
        errors,
        vec![
            0,
            ec(ResponseError::UnknownMemberId),
            ec(ResponseError::FencedInstanceId)
        ]
    );
    assert_eq!(
        static_heartbeat(&fx, &ids[0], "i-0", generation + 1).await,
        ec(ResponseError::UnknownMemberId)
    );
}
