//! Many members joining, rejoining, syncing and leaving at once from several threads: one
//! generation, one leader, every member in it, and no UNKNOWN_MEMBER_ID for a live member.

use std::sync::Arc;

use kafka_protocol::messages::leave_group_request::{LeaveGroupRequest, MemberIdentity};
use kafka_protocol::ResponseError;

use super::*;
use crate::server::kafka::group::GroupCoordinator;

const MEMBERS: usize = 16;

fn join_all(
    coord: &Arc<GroupCoordinator>,
    ids: &[String],
) -> Vec<std::thread::JoinHandle<Parked<JoinGroupResponse>>> {
    ids.iter()
        .map(|id| {
            let coord = Arc::clone(coord);
            let id = id.clone();
            std::thread::spawn(move || {
                coord.start_join(join_req(&id, RANGE), 9, "client", "/127.0.0.1")
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_rejoins_syncs_and_a_leave_agree_on_one_generation() {
    let fx = fixture();
    let ids = first_joins_get_distinct_member_ids(&fx);
    let leader = second_joins_agree_on_one_leader(&fx, &ids);
    everyone_syncs_at_once(&fx, &ids).await;
    rejoins_and_a_leave_agree_on_the_next_generation(&fx, &ids, &leader).await;
}

/// Returns the member ids, one per member.
fn first_joins_get_distinct_member_ids(fx: &Fx) -> Vec<String> {
    // First JoinGroups (MEMBER_ID_REQUIRED) from many threads at once.
    let firsts: Vec<_> = (0..MEMBERS)
        .map(|_| {
            let coord = Arc::clone(&fx.coord);
            std::thread::spawn(move || {
                ready(coord.start_join(join_req("", RANGE), 9, "client", "/127.0.0.1"))
            })
        })
        .collect();
    let ids: Vec<String> = firsts
        .into_iter()
        .map(|t| {
            let r = t.join().expect("thread");
            assert_eq!(r.error_code, ec(ResponseError::MemberIdRequired));
            r.member_id.to_string()
        })
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), MEMBERS);

    ids
}

/// Every member joins again with its id: generation 1, one leader. Returns the leader's id.
fn second_joins_agree_on_one_leader(fx: &Fx, ids: &[String]) -> String {
    let mut parked: Vec<_> = join_all(&fx.coord, ids)
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    fx.advance(u64::from(DELAY_MS));
    fx.advance(u64::from(DELAY_MS));
    let replies: Vec<_> = parked.iter_mut().map(take).collect();
    let leader = replies[0].leader.to_string();
    for r in &replies {
        assert_eq!((r.error_code, r.generation_id), (0, 1));
        assert_eq!(r.leader.as_str(), leader);
    }
    let lists: Vec<usize> = replies
        .iter()
        .map(|r| r.members.len())
        .filter(|n| *n > 0)
        .collect();
    assert_eq!(lists, vec![MEMBERS], "one leader with every member");

    leader
}

/// Every member syncs from its own thread; each gets the assignment the leader gave it.
async fn everyone_syncs_at_once(fx: &Fx, ids: &[String]) {
    // Everyone syncs at once; followers may come before or after the leader.
    let syncs: Vec<_> = ids
        .iter()
        .map(|id| {
            let coord = Arc::clone(&fx.coord);
            let id = id.clone();
            let plan: Vec<(String, Vec<u8>)> = ids.iter().map(|m| (m.clone(), m.as_bytes().to_vec())).collect();
            std::thread::spawn(move || {
                let assignments: Vec<(&str, &[u8])> = plan.iter().map(|(m, a)| (m.as_str(), a.as_slice())).collect();
                let fx_req = kafka_protocol::messages::sync_group_request::SyncGroupRequest::default()
                    .with_group_id(gid(GROUP))
                    .with_generation_id(1)
                    .with_member_id(s(&id))
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")))
                    .with_assignments(
                        assignments
                            .iter()
                            .map(|(m, a)| {
                                kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment::default()
                                    .with_member_id(s(m))
                                    .with_assignment(bytes::Bytes::copy_from_slice(a))
                            })
                            .collect(),
                    );
                (id, coord.start_sync(fx_req, 5))
            })
        })
        .collect();
    for t in syncs {
        let (id, p) = t.join().expect("thread");
        let reply = p.wait().await;
        assert_eq!(reply.error_code, 0);
        assert_eq!(
            reply.assignment.as_ref(),
            id.as_bytes(),
            "each member its own assignment"
        );
    }
    assert_eq!(fx.state(), Some("Stable"));
}

/// Generation 2: the leader and all but one follower rejoin while that one leaves.
async fn rejoins_and_a_leave_agree_on_the_next_generation(fx: &Fx, ids: &[String], leader: &str) {
    // The leader's rejoin starts a rebalance (a follower rejoining unchanged in Stable would
    // just get the current generation); then the others rejoin at once while the last leaves.
    let leaving = ids
        .iter()
        .find(|id| *id != leader)
        .expect("a follower")
        .clone();
    let mut lead = fx.start_join(join_req(leader, RANGE), 9);
    assert!(is_parked(&mut lead));
    let followers: Vec<String> = ids
        .iter()
        .filter(|id| *id != leader && **id != leaving)
        .cloned()
        .collect();
    let rejoins = join_all(&fx.coord, &followers);
    let coord = Arc::clone(&fx.coord);
    let leaver = leaving.clone();
    let leave = tokio::spawn(async move {
        let req = LeaveGroupRequest::default()
            .with_group_id(gid(GROUP))
            .with_members(vec![MemberIdentity::default().with_member_id(s(&leaver))]);
        coord.leave_group(req, 5).await
    });
    let mut parked: Vec<_> = rejoins
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    assert_eq!(leave.await.expect("task").members[0].error_code, 0);
    parked.push(lead);
    let replies: Vec<_> = parked.iter_mut().map(take).collect();
    assert_eq!(replies.len(), MEMBERS - 1);
    for r in &replies {
        assert_eq!((r.error_code, r.generation_id), (0, 2), "{r:?}");
    }
    let lists: Vec<usize> = replies
        .iter()
        .map(|r| r.members.len())
        .filter(|n| *n > 0)
        .collect();
    assert_eq!(lists, vec![MEMBERS - 1]);
}
