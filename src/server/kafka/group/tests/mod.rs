//! Unit tests of the group coordinator, on a [`ManualClock`] and a [`MemoryGroupOffsets`]:
//! membership and rebalances (`membership`), timeouts (`timeouts`), static members
//! (`static_members`), committed offsets (`offsets`), administration (`admin`), concurrency
//! (`concurrency`) and the replies' encoding at every served version (`wire`).

mod admin;
mod concurrency;
mod membership;
mod offsets;
mod static_members;
mod timeouts;
mod wire;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};
use kafka_protocol::messages::join_group_response::JoinGroupResponse;
use kafka_protocol::messages::leave_group_request::{LeaveGroupRequest, MemberIdentity};
use kafka_protocol::messages::sync_group_request::{SyncGroupRequest, SyncGroupRequestAssignment};
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::messages::GroupId;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{GroupConfig, GroupCoordinator, ManualClock, MemoryGroupOffsets, Parked};

pub(super) const SESSION_MS: i32 = 10_000;
pub(super) const REBALANCE_MS: i32 = 30_000;
pub(super) const DELAY_MS: u32 = 100;
pub(super) const GROUP: &str = "g";

pub(super) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub(super) fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

pub(super) fn ec(e: ResponseError) -> i16 {
    e.code()
}

/// A coordinator on a manual clock over an in-memory store.
pub(super) struct Fx {
    pub coord: Arc<GroupCoordinator>,
    pub clock: Arc<ManualClock>,
    pub store: Arc<MemoryGroupOffsets>,
}

pub(super) fn fixture() -> Fx {
    fixture_with(
        MemoryGroupOffsets::new(),
        GroupConfig {
            initial_rebalance_delay_ms: DELAY_MS,
            ..GroupConfig::default()
        },
    )
}

pub(super) fn fixture_with(store: MemoryGroupOffsets, cfg: GroupConfig) -> Fx {
    let clock = Arc::new(ManualClock::new(1_000));
    let store = Arc::new(store);
    let coord = GroupCoordinator::new(cfg, store.clone(), clock.clone()).expect("valid config");
    Fx {
        coord,
        clock,
        store,
    }
}

/// `(name, metadata)` pairs as JoinGroup protocols.
pub(super) fn protocols(list: &[(&str, &[u8])]) -> Vec<JoinGroupRequestProtocol> {
    list.iter()
        .map(|(name, meta)| {
            JoinGroupRequestProtocol::default()
                .with_name(s(name))
                .with_metadata(Bytes::copy_from_slice(meta))
        })
        .collect()
}

pub(super) fn join_req(member_id: &str, protos: &[(&str, &[u8])]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(GROUP))
        .with_session_timeout_ms(SESSION_MS)
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(protocols(protos))
}

pub(super) const RANGE: &[(&str, &[u8])] = &[("range", b"meta")];

impl Fx {
    pub fn start_join(&self, req: JoinGroupRequest, version: i16) -> Parked<JoinGroupResponse> {
        self.coord.start_join(req, version, "client", "/127.0.0.1")
    }

    /// The first JoinGroup of a new member at v9: MEMBER_ID_REQUIRED and the member's id.
    pub fn new_member_id(&self, protos: &[(&str, &[u8])]) -> String {
        let reply = ready(self.start_join(join_req("", protos), 9));
        assert_eq!(reply.error_code, ec(ResponseError::MemberIdRequired));
        assert!(
            reply.member_id.starts_with("client-"),
            "{:?}",
            reply.member_id
        );
        reply.member_id.to_string()
    }

    /// Moves the clock and fires what is due.
    pub fn advance(&self, ms: u64) {
        self.clock.advance(ms);
        self.coord.run_timers();
    }

    pub fn start_sync(
        &self,
        member: &str,
        generation: i32,
        assignments: &[(&str, &[u8])],
    ) -> Parked<SyncGroupResponse> {
        let req = SyncGroupRequest::default()
            .with_group_id(gid(GROUP))
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(m))
                            .with_assignment(Bytes::copy_from_slice(a))
                    })
                    .collect(),
            );
        self.coord.start_sync(req, 5)
    }

    pub async fn heartbeat(&self, member: &str, generation: i32) -> i16 {
        let req = HeartbeatRequest::default()
            .with_group_id(gid(GROUP))
            .with_generation_id(generation)
            .with_member_id(s(member));
        self.coord.heartbeat(req, 4).await.error_code
    }

    pub async fn leave(&self, members: &[&str]) -> Vec<i16> {
        let req = LeaveGroupRequest::default()
            .with_group_id(gid(GROUP))
            .with_members(
                members
                    .iter()
                    .map(|m| MemberIdentity::default().with_member_id(s(m)))
                    .collect(),
            );
        let reply = self.coord.leave_group(req, 5).await;
        assert_eq!(reply.error_code, 0);
        reply.members.iter().map(|m| m.error_code).collect()
    }

    pub fn state(&self) -> Option<&'static str> {
        let groups = super::lock(&self.coord.groups);
        groups.get(GROUP).map(|g| super::lock(g).state.name())
    }

    /// Joins `n` new members in one initial rebalance and syncs them (the leader assigning
    /// `a-<i>` to the i-th member of its list): the member ids, leader first, and the
    /// generation.
    pub fn stable_group(&self, n: usize) -> (Vec<String>, i32) {
        let ids: Vec<String> = (0..n).map(|_| self.new_member_id(RANGE)).collect();
        let mut parked: Vec<_> = ids
            .iter()
            .map(|id| self.start_join(join_req(id, RANGE), 9))
            .collect();
        // Members after the first extend the initial delay once.
        self.advance(u64::from(DELAY_MS));
        self.advance(u64::from(DELAY_MS));
        let replies: Vec<JoinGroupResponse> = parked.iter_mut().map(take).collect();
        let generation = replies[0].generation_id;
        let leader = replies[0].leader.to_string();
        let leader_reply = replies
            .iter()
            .find(|r| r.member_id.as_str() == leader)
            .expect("leader");
        let assignments: Vec<(String, Vec<u8>)> = leader_reply
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.member_id.to_string(), format!("a-{i}").into_bytes()))
            .collect();
        let mut syncs: Vec<_> = ids
            .iter()
            .filter(|id| **id != leader)
            .map(|id| self.start_sync(id, generation, &[]))
            .collect();
        let pairs: Vec<(&str, &[u8])> = assignments
            .iter()
            .map(|(m, a)| (m.as_str(), a.as_slice()))
            .collect();
        let lead = ready(self.start_sync(&leader, generation, &pairs));
        assert_eq!(lead.error_code, 0);
        for p in &mut syncs {
            assert_eq!(take(p).error_code, 0);
        }
        assert_eq!(self.state(), Some("Stable"));
        let mut ordered = vec![leader.clone()];
        ordered.extend(ids.into_iter().filter(|id| *id != leader));
        (ordered, generation)
    }
}

/// The reply of a parked request that must have been answered.
pub(super) fn take<T>(p: &mut Parked<T>) -> T {
    p.try_take().expect("the request should have been answered")
}

pub(super) fn ready<T>(mut p: Parked<T>) -> T {
    take(&mut p)
}

pub(super) fn is_parked<T>(p: &mut Parked<T>) -> bool {
    match p.rx.try_recv() {
        Err(tokio::sync::oneshot::error::TryRecvError::Empty) => true,
        Ok(_) => panic!("the request was answered"),
        Err(_) => panic!("the reply was dropped"),
    }
}
