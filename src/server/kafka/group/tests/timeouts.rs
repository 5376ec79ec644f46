//! Timeouts on the driven clock: session expiry, the rebalance timeout, the SyncGroup
//! deadline, the new-member join timeout, and the timer task on the system clock.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;

use super::*;
use crate::server::kafka::group::{GroupConfig, GroupCoordinator, MemoryGroupOffsets, SystemClock};

#[tokio::test]
async fn a_member_that_stops_heartbeating_is_expired_and_the_others_rebalance() {
    let fx = fixture();
    let (ids, generation) = fx.stable_group(2);
    let step = SESSION_MS as u64 / 2;
    fx.advance(step);
    assert_eq!(fx.heartbeat(&ids[0], generation).await, 0);
    fx.advance(step - 1);
    assert_eq!(
        fx.state(),
        Some("Stable"),
        "not yet past the session timeout"
    );
    assert_eq!(fx.heartbeat(&ids[0], generation).await, 0);
    fx.advance(1);
    assert_eq!(
        fx.state(),
        Some("PreparingRebalance"),
        "the silent member expired"
    );
    assert_eq!(
        fx.heartbeat(&ids[1], generation).await,
        ec(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        fx.heartbeat(&ids[0], generation).await,
        ec(ResponseError::RebalanceInProgress)
    );
    let reply = ready(fx.start_join(join_req(&ids[0], RANGE), 9));
    assert_eq!(reply.generation_id, generation + 1);
    assert_eq!(reply.members.len(), 1);
    assert_eq!(reply.leader.as_str(), ids[0]);
}

#[tokio::test]
async fn the_expired_leader_is_replaced_by_a_member_that_rejoins() {
    let fx = fixture();
    let (ids, generation) = fx.stable_group(2);
    fx.advance(SESSION_MS as u64 / 2);
    assert_eq!(fx.heartbeat(&ids[1], generation).await, 0);
    fx.advance(SESSION_MS as u64 / 2);
    // The leader's session is over; the follower's, renewed halfway, is not.
    assert_eq!(
        fx.heartbeat(&ids[1], generation).await,
        ec(ResponseError::RebalanceInProgress)
    );
    assert_eq!(
        fx.heartbeat(&ids[0], generation).await,
        ec(ResponseError::UnknownMemberId)
    );
    let reply = ready(fx.start_join(join_req(&ids[1], RANGE), 9));
    assert_eq!(reply.leader.as_str(), ids[1]);
    assert_eq!(reply.members.len(), 1);
}

#[tokio::test]
async fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped() {
    let fx = fixture();
    let (ids, generation) = fx.stable_group(2);
    let mut leader = fx.start_join(join_req(&ids[0], RANGE), 9);
    // The follower heartbeats (so its session stays alive) but never rejoins.
    let step = 5_000;
    let mut elapsed = 0;
    while elapsed + step < REBALANCE_MS as u64 {
        fx.advance(step);
        elapsed += step;
        assert!(is_parked(&mut leader));
        assert_eq!(
            fx.heartbeat(&ids[1], generation).await,
            ec(ResponseError::RebalanceInProgress)
        );
    }
    fx.advance(REBALANCE_MS as u64 - elapsed);
    let reply = take(&mut leader);
    assert_eq!(reply.error_code, 0);
    assert_eq!(reply.generation_id, generation + 1);
    assert_eq!(
        reply.members.len(),
        1,
        "the member that did not rejoin is gone"
    );
    assert_eq!(
        fx.heartbeat(&ids[1], generation).await,
        ec(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        fx.heartbeat(&ids[1], generation + 1).await,
        ec(ResponseError::UnknownMemberId)
    );
}

#[tokio::test]
async fn members_that_never_send_sync_group_are_removed_at_the_rebalance_timeout() {
    let fx = fixture();
    let ids: Vec<String> = (0..2).map(|_| fx.new_member_id(RANGE)).collect();
    let mut parked: Vec<_> = ids
        .iter()
        .map(|id| fx.start_join(join_req(id, RANGE), 9))
        .collect();
    fx.advance(u64::from(DELAY_MS));
    fx.advance(u64::from(DELAY_MS));
    let replies: Vec<_> = parked.iter_mut().map(take).collect();
    let leader = replies[0].leader.to_string();
    let follower = ids
        .iter()
        .find(|id| **id != leader)
        .expect("a follower")
        .clone();
    let sync = ready(fx.start_sync(&leader, 1, &[(&leader, b"x")]));
    assert_eq!(sync.error_code, 0);
    assert_eq!(fx.state(), Some("Stable"));
    // Both heartbeat (so no session expires); the follower never syncs.
    let steps = REBALANCE_MS / 5_000;
    for i in 0..steps {
        assert_eq!(fx.state(), Some("Stable"), "step {i}");
        assert_eq!(fx.heartbeat(&leader, 1).await, 0);
        assert_eq!(fx.heartbeat(&follower, 1).await, 0);
        fx.advance(5_000);
    }
    assert_eq!(fx.state(), Some("PreparingRebalance"));
    assert_eq!(
        fx.heartbeat(&follower, 1).await,
        ec(ResponseError::UnknownMemberId)
    );
}

#[tokio::test]
async fn a_new_member_parked_past_the_new_member_join_timeout_is_dropped() {
    let cfg = GroupConfig {
        initial_rebalance_delay_ms: DELAY_MS,
        new_member_join_timeout_ms: 20_000,
        ..GroupConfig::default()
    };
    let fx = fixture_with(MemoryGroupOffsets::new(), cfg);
    let (ids, generation) = fx.stable_group(1);
    let newcomer = fx.new_member_id(RANGE);
    let mut join_new = fx.start_join(join_req(&newcomer, RANGE), 9);
    // The old member keeps heartbeating but does not rejoin before the new member's timeout.
    for _ in 0..4 {
        fx.advance(5_000);
        assert_eq!(
            fx.heartbeat(&ids[0], generation).await,
            ec(ResponseError::RebalanceInProgress)
        );
    }
    let reply = take(&mut join_new);
    assert_eq!(reply.error_code, ec(ResponseError::UnknownMemberId));
}

#[tokio::test]
async fn a_commit_counts_as_a_heartbeat_in_stable() {
    let fx = fixture();
    let (ids, generation) = fx.stable_group(1);
    for _ in 0..4 {
        fx.advance(SESSION_MS as u64 / 2);
        let errors = super::offsets::commit(&fx, &ids[0], generation, "t", 0, 5, 8).await;
        assert_eq!(errors, vec![0]);
    }
    assert_eq!(fx.state(), Some("Stable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_task_completes_the_initial_rebalance_on_the_system_clock() {
    let cfg = GroupConfig {
        initial_rebalance_delay_ms: 50,
        ..GroupConfig::default()
    };
    let coord = GroupCoordinator::new(
        cfg,
        Arc::new(MemoryGroupOffsets::new()),
        Arc::new(SystemClock::new()),
    )
    .expect("valid config");
    let timers = coord.spawn_timer_task();
    let first = coord.join_group(join_req("", RANGE), 9, "c", "h").await;
    assert_eq!(first.error_code, ec(ResponseError::MemberIdRequired));
    let join = coord.join_group(join_req(&first.member_id, RANGE), 9, "c", "h");
    let reply = tokio::time::timeout(Duration::from_secs(5), join)
        .await
        .expect("answered by the timer task");
    assert_eq!(reply.error_code, 0);
    assert_eq!(reply.generation_id, 1);
    timers.abort();
}
