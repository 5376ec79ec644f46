//! Joins, leader election, assignments, rebalances on join and leave, MEMBER_ID_REQUIRED,
//! the protocol vote, and the request checks of JoinGroup and SyncGroup.

use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::ResponseError;

use super::*;

#[tokio::test]
async fn one_member_joins_after_the_initial_delay_and_gets_its_assignment() {
    let fx = fixture();
    let id = fx.new_member_id(RANGE);
    let mut join = fx.start_join(join_req(&id, RANGE), 9);
    assert!(is_parked(&mut join), "the initial delay holds the join");
    assert_eq!(fx.state(), Some("PreparingRebalance"));
    fx.advance(u64::from(DELAY_MS) - 1);
    assert!(is_parked(&mut join));
    fx.advance(1);
    let reply = take(&mut join);
    assert_eq!(reply.error_code, 0);
    assert_eq!(reply.generation_id, 1);
    assert_eq!(reply.leader.as_str(), id);
    assert_eq!(reply.member_id.as_str(), id);
    assert_eq!(reply.protocol_name.as_deref(), Some("range"));
    assert_eq!(reply.members.len(), 1);
    assert_eq!(reply.members[0].metadata.as_ref(), b"meta");
    assert_eq!(fx.state(), Some("CompletingRebalance"));

    let sync = ready(fx.start_sync(&id, 1, &[(&id, b"mine")]));
    assert_eq!(sync.error_code, 0);
    assert_eq!(sync.assignment.as_ref(), b"mine");
    assert_eq!(sync.protocol_name.as_deref(), Some("range"));
    assert_eq!(fx.state(), Some("Stable"));
    assert_eq!(fx.heartbeat(&id, 1).await, 0);
}

#[tokio::test]
async fn three_members_get_one_leader_and_each_its_own_assignment() {
    let fx = fixture();
    let ids: Vec<String> = (0..3).map(|_| fx.new_member_id(RANGE)).collect();
    let mut first = fx.start_join(join_req(&ids[0], RANGE), 9);
    // Members arriving during the initial delay extend it.
    fx.advance(u64::from(DELAY_MS) / 2);
    let mut others: Vec<_> = ids[1..]
        .iter()
        .map(|id| fx.start_join(join_req(id, RANGE), 9))
        .collect();
    fx.advance(u64::from(DELAY_MS) / 2);
    assert!(
        is_parked(&mut first),
        "a member joined during the delay: it extends"
    );
    fx.advance(u64::from(DELAY_MS));
    let mut replies = vec![take(&mut first)];
    replies.extend(others.iter_mut().map(take));
    let leader = replies[0].leader.to_string();
    assert!(ids.contains(&leader));
    for r in &replies {
        assert_eq!(r.error_code, 0);
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.leader.as_str(), leader);
        let listed = if r.member_id.as_str() == leader { 3 } else { 0 };
        assert_eq!(
            r.members.len(),
            listed,
            "only the leader gets the member list"
        );
    }

    // Followers' SyncGroups wait for the leader's assignment.
    let followers: Vec<&String> = ids.iter().filter(|id| **id != leader).collect();
    let mut waiting: Vec<_> = followers
        .iter()
        .map(|id| fx.start_sync(id, 1, &[]))
        .collect();
    for w in &mut waiting {
        assert!(is_parked(w));
    }
    let plan: Vec<(&str, &[u8])> = vec![
        (leader.as_str(), b"p0"),
        (followers[0].as_str(), b"p1"),
        (followers[1].as_str(), b"p2"),
    ];
    let lead = ready(fx.start_sync(&leader, 1, &plan));
    assert_eq!(lead.assignment.as_ref(), b"p0");
    assert_eq!(take(&mut waiting[0]).assignment.as_ref(), b"p1");
    assert_eq!(take(&mut waiting[1]).assignment.as_ref(), b"p2");
    // A late SyncGroup in Stable gets the stored assignment.
    let again = ready(fx.start_sync(followers[1], 1, &[]));
    assert_eq!(again.assignment.as_ref(), b"p2");
}

#[tokio::test]
async fn heartbeat_during_a_rebalance_gets_rebalance_in_progress_and_rejoins_complete_it() {
    let fx = fixture();
    let (ids, generation) = fx.stable_group(2);
    let newcomer = fx.new_member_id(RANGE);
    assert_eq!(
        fx.state(),
        Some("Stable"),
        "a pending member does not rebalance"
    );
    let mut join_new = fx.start_join(join_req(&newcomer, RANGE), 9);
    assert_eq!(fx.state(), Some("PreparingRebalance"));
    assert_eq!(
        fx.heartbeat(&ids[0], generation).await,
        ec(ResponseError::RebalanceInProgress)
    );
    let sync = ready(fx.start_sync(&ids[1], generation, &[]));
    assert_eq!(sync.error_code, ec(ResponseError::RebalanceInProgress));

    let mut j0 = fx.start_join(join_req(&ids[0], RANGE), 9);
    assert!(is_parked(&mut j0));
    let mut j1 = fx.start_join(join_req(&ids[1], RANGE), 9);
    // Everyone rejoined: no waiting for the rebalance timeout.
    for p in [&mut j0, &mut j1, &mut join_new] {
        let r = take(p);
        assert_eq!(r.error_code, 0);
        assert_eq!(r.generation_id, generation + 1);
    }
    assert_eq!(fx.state(), Some("CompletingRebalance"));
    assert_eq!(
        fx.heartbeat(&ids[0], generation).await,
        ec(ResponseError::IllegalGeneration)
    );
    assert_eq!(fx.heartbeat(&ids[0], generation + 1).await, 0);
}

#[tokio::test]
async fn leave_triggers_a_rebalance_of_the_others() {
    let fx = fixture();
    let (ids, generation) = fx.stable_group(3);
    let errors = fx.leave(&[&ids[1], "nobody"]).await;
    assert_eq!(errors, vec![0, ec(ResponseError::UnknownMemberId)]);
    assert_eq!(fx.state(), Some("PreparingRebalance"));
    assert_eq!(
        fx.heartbeat(&ids[1], generation).await,
        ec(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        fx.heartbeat(&ids[0], generation).await,
        ec(ResponseError::RebalanceInProgress)
    );
    let mut j0 = fx.start_join(join_req(&ids[0], RANGE), 9);
    let mut j2 = fx.start_join(join_req(&ids[2], RANGE), 9);
    let leader_reply = take(&mut j0);
    assert_eq!(leader_reply.generation_id, generation + 1);
    assert_eq!(leader_reply.members.len(), 2);
    assert_eq!(take(&mut j2).generation_id, generation + 1);

    // LeaveGroup v0 names one member and answers with a top-level error.
    let req = LeaveGroupRequest::default()
        .with_group_id(gid(GROUP))
        .with_member_id(s(&ids[2]));
    assert_eq!(fx.coord.leave_group(req.clone(), 0).await.error_code, 0);
    let again = fx.coord.leave_group(req, 0).await;
    assert_eq!(again.error_code, ec(ResponseError::UnknownMemberId));
    assert!(again.members.is_empty());
}

#[tokio::test]
async fn the_last_member_leaving_empties_the_group_and_a_leave_of_an_unknown_group_is_per_member() {
    let fx = fixture();
    let (ids, _) = fx.stable_group(1);
    assert_eq!(fx.leave(&[&ids[0]]).await, vec![0]);
    assert_eq!(
        fx.state(),
        None,
        "an empty group without offsets leaves memory"
    );
    assert_eq!(
        fx.leave(&[&ids[0], "x"]).await,
        vec![ec(ResponseError::UnknownMemberId); 2]
    );
}

#[tokio::test]
async fn member_id_required_then_join_with_the_id_and_old_versions_join_at_once() {
    let fx = fixture();
    let first = ready(fx.start_join(join_req("", RANGE), 4));
    assert_eq!(first.error_code, ec(ResponseError::MemberIdRequired));
    let id = first.member_id.to_string();
    assert!(!id.is_empty());
    assert_eq!(
        fx.state(),
        Some("Empty"),
        "a pending member keeps the group"
    );
    let second = fx.new_member_id(RANGE);
    assert_ne!(id, second, "ids are unique");

    // A pending member that never comes back is gone after its session timeout.
    fx.advance(SESSION_MS as u64);
    assert_eq!(fx.state(), None);
    let late = ready(fx.start_join(join_req(&id, RANGE), 4));
    assert_eq!(late.error_code, ec(ResponseError::UnknownMemberId));

    // Before v4 the coordinator assigns the id in the same JoinGroup.
    let mut old = fx.start_join(join_req("", RANGE), 3);
    fx.advance(u64::from(DELAY_MS));
    let reply = take(&mut old);
    assert_eq!(reply.error_code, 0);
    assert!(reply.member_id.starts_with("client-"));
    assert_eq!(reply.leader, reply.member_id);
}

#[tokio::test]
async fn the_protocol_is_chosen_by_vote_among_those_all_members_support() {
    let fx = fixture();
    let a: &[(&str, &[u8])] = &[("range", b"a"), ("roundrobin", b"a")];
    let b: &[(&str, &[u8])] = &[("roundrobin", b"b"), ("range", b"b")];
    let c: &[(&str, &[u8])] = &[("range", b"c"), ("roundrobin", b"c"), ("sticky", b"c")];
    let ids: Vec<String> = [a, b, c].iter().map(|p| fx.new_member_id(p)).collect();
    let mut parked: Vec<_> = ids
        .iter()
        .zip([a, b, c])
        .map(|(id, p)| fx.start_join(join_req(id, p), 9))
        .collect();
    fx.advance(u64::from(DELAY_MS));
    fx.advance(u64::from(DELAY_MS));
    let replies: Vec<_> = parked.iter_mut().map(take).collect();
    // range: 2 votes (a, c), roundrobin: 1 (b); sticky is not supported by all.
    assert!(replies
        .iter()
        .all(|r| r.protocol_name.as_deref() == Some("range")));
    let leader = replies
        .iter()
        .find(|r| !r.members.is_empty())
        .expect("a leader");
    let by_id = |id: &str| {
        leader
            .members
            .iter()
            .find(|m| m.member_id.as_str() == id)
            .expect("listed")
    };
    assert_eq!(
        by_id(&ids[1]).metadata.as_ref(),
        b"b",
        "metadata of the chosen protocol"
    );

    // Only roundrobin in common once a member supports nothing else.
    let d: &[(&str, &[u8])] = &[("roundrobin", b"d")];
    let id_d = fx.new_member_id(d);
    let mut jd = fx.start_join(join_req(&id_d, d), 9);
    let mut rejoins: Vec<_> = ids
        .iter()
        .zip([a, b, c])
        .map(|(id, p)| fx.start_join(join_req(id, p), 9))
        .collect();
    assert_eq!(take(&mut jd).protocol_name.as_deref(), Some("roundrobin"));
    assert!(rejoins
        .iter_mut()
        .all(|p| take(p).protocol_name.as_deref() == Some("roundrobin")));

    // A member supporting none of the group's protocols, or of another type, is refused.
    let sticky: &[(&str, &[u8])] = &[("sticky", b"x")];
    let refused = ready(fx.start_join(join_req("", sticky), 9));
    assert_eq!(
        refused.error_code,
        ec(ResponseError::InconsistentGroupProtocol)
    );
    let other_type = join_req("", d).with_protocol_type(s("connect"));
    let refused = ready(fx.start_join(other_type, 9));
    assert_eq!(
        refused.error_code,
        ec(ResponseError::InconsistentGroupProtocol)
    );
    let empty = ready(fx.start_join(join_req("", &[]).with_group_id(gid("fresh")), 9));
    assert_eq!(
        empty.error_code,
        ec(ResponseError::InconsistentGroupProtocol)
    );
}

#[tokio::test]
async fn join_and_sync_requests_are_checked_as_kafka_does() {
    let fx = fixture();
    let short = join_req("", RANGE).with_session_timeout_ms(5_999);
    assert_eq!(
        ready(fx.start_join(short, 9)).error_code,
        ec(ResponseError::InvalidSessionTimeout)
    );
    let long = join_req("", RANGE).with_session_timeout_ms(1_800_001);
    assert_eq!(
        ready(fx.start_join(long, 9)).error_code,
        ec(ResponseError::InvalidSessionTimeout)
    );
    let no_group = join_req("", RANGE).with_group_id(gid(""));
    assert_eq!(
        ready(fx.start_join(no_group, 9)).error_code,
        ec(ResponseError::InvalidGroupId)
    );
    assert_eq!(
        ready(fx.start_join(join_req("", RANGE), 10)).error_code,
        ec(ResponseError::UnsupportedVersion)
    );
    let unknown = ready(fx.start_join(join_req("someone", RANGE), 9));
    assert_eq!(unknown.error_code, ec(ResponseError::UnknownMemberId));

    let (ids, generation) = fx.stable_group(1);
    let stale = ready(fx.start_sync(&ids[0], generation + 1, &[]));
    assert_eq!(stale.error_code, ec(ResponseError::IllegalGeneration));
    let mut req = kafka_protocol::messages::sync_group_request::SyncGroupRequest::default()
        .with_group_id(gid(GROUP))
        .with_generation_id(generation)
        .with_member_id(s(&ids[0]))
        .with_protocol_type(Some(s("consumer")));
    let missing_name = ready(fx.coord.start_sync(req.clone(), 5));
    assert_eq!(
        missing_name.error_code,
        ec(ResponseError::InconsistentGroupProtocol)
    );
    req.protocol_name = Some(s("roundrobin"));
    let wrong_name = ready(fx.coord.start_sync(req.clone(), 5));
    assert_eq!(
        wrong_name.error_code,
        ec(ResponseError::InconsistentGroupProtocol)
    );
    req.protocol_name = None;
    let v4 = ready(fx.coord.start_sync(req, 4));
    assert_eq!(
        v4.error_code, 0,
        "before v5 the protocol fields are optional"
    );
    let other = ready(fx.start_sync("stranger", generation, &[]));
    assert_eq!(other.error_code, ec(ResponseError::UnknownMemberId));
}

#[tokio::test]
async fn a_follower_rejoining_unchanged_gets_the_generation_and_the_leader_rejoining_rebalances() {
    let fx = fixture();
    let (ids, generation) = fx.stable_group(2);
    let follower = ready(fx.start_join(join_req(&ids[1], RANGE), 9));
    assert_eq!(follower.generation_id, generation);
    assert!(follower.members.is_empty());
    assert_eq!(fx.state(), Some("Stable"));
    let mut leader = fx.start_join(join_req(&ids[0], RANGE), 9);
    assert!(is_parked(&mut leader));
    assert_eq!(fx.state(), Some("PreparingRebalance"));
    // New metadata from the follower is a reason too; it completes the join phase.
    let changed: &[(&str, &[u8])] = &[("range", b"new")];
    let mut f = fx.start_join(join_req(&ids[1], changed), 9);
    let lead = take(&mut leader);
    assert_eq!(lead.generation_id, generation + 1);
    let listed = lead
        .members
        .iter()
        .find(|m| m.member_id.as_str() == ids[1])
        .expect("listed");
    assert_eq!(listed.metadata.as_ref(), b"new");
    assert_eq!(take(&mut f).generation_id, generation + 1);
}

/// A member that leaves while the initial delay holds its join leaves a rebalancing group with
/// no members; the next member to join must be accepted (Kafka counts, per protocol, the
/// members supporting it, and every protocol is supported by all of no members).
#[tokio::test]
async fn a_member_joining_after_the_only_member_left_during_the_initial_delay_is_accepted() {
    let fx = fixture();
    let first = fx.new_member_id(RANGE);
    let mut join = fx.start_join(join_req(&first, RANGE), 9);
    assert!(is_parked(&mut join));
    assert_eq!(fx.leave(&[&first]).await, vec![0]);
    let second = fx.new_member_id(RANGE);
    let mut join = fx.start_join(join_req(&second, RANGE), 9);
    // The initial delay runs on (extended by the new join, up to the rebalance timeout).
    let mut reply = None;
    for _ in 0..100 {
        reply = join.try_take();
        if reply.is_some() {
            break;
        }
        fx.advance(u64::from(DELAY_MS));
    }
    let reply = reply.expect("the join completes once the delay runs out");
    assert_eq!(reply.error_code, 0, "{reply:?}");
    assert_eq!(reply.leader.as_str(), second);
    assert_eq!(reply.protocol_name.as_deref(), Some("range"));
}
