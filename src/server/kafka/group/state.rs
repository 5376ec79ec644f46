//! One classic group's data: its state, generation, chosen protocol, leader, members (each
//! with its supported protocols, assignment, parked JoinGroup/SyncGroup reply and heartbeat
//! deadline), members between MEMBER_ID_REQUIRED and their second JoinGroup, and the group's
//! timers. The transitions live in `join` and `member`; this file holds the queries and the
//! small mutations they share (Kafka's `ClassicGroup`).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

/// A classic group's state, as Kafka names it in DescribeGroups and ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (a group known only by its committed offsets is Empty too).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment distributed.
    Stable,
    /// Removed; a request that finds it retries on the group's new incarnation.
    Dead,
}

impl GroupState {
    /// Kafka's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// The states a rebalance may start from.
    fn can_rebalance(self) -> bool {
        matches!(
            self,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        )
    }

    fn valid_previous(self, from: GroupState) -> bool {
        use GroupState::*;
        match self {
            Empty => from == PreparingRebalance,
            PreparingRebalance => from.can_rebalance(),
            CompletingRebalance => from == PreparingRebalance,
            Stable => from == CompletingRebalance,
            Dead => true,
        }
    }
}

/// Where a parked JoinGroup reply goes.
pub(super) type JoinWaiter = oneshot::Sender<JoinGroupResponse>;
/// Where a parked SyncGroup reply goes.
pub(super) type SyncWaiter = oneshot::Sender<SyncGroupResponse>;

/// One protocol a member supports (for consumers: an assignor), with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

/// A member of a group.
#[derive(Debug)]
pub(super) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    pub awaiting_join: Option<JoinWaiter>,
    pub awaiting_sync: Option<SyncWaiter>,
    /// Joined but not yet through a completed join phase: its heartbeat deadline is the
    /// new-member join timeout, and waiting does not count as heartbeating.
    pub is_new: bool,
    pub heartbeat_deadline_ms: Option<u64>,
}

impl Member {
    /// Whether `protocols` equals the member's list (names, metadata and order).
    pub fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// The member's first protocol among `candidates`.
    fn vote<'a>(&'a self, candidates: &BTreeSet<&str>) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|name| candidates.contains(name))
    }

    /// The member's metadata for `protocol` (empty if it does not support it).
    pub fn metadata(&self, protocol: Option<&str>) -> Bytes {
        self.protocols
            .iter()
            .find(|p| Some(p.name.as_str()) == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// Whether a heartbeat expiry should spare the member: it is waiting on a rebalance.
    pub fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }
}

/// What the join timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JoinTimerKind {
    /// The initial rebalance delay of a group that was Empty.
    Initial { delay_ms: u64, remaining_ms: u64 },
    /// The rebalance timeout: complete the join phase with the members that rejoined.
    Rebalance,
}

/// One classic group.
#[derive(Debug)]
pub(super) struct Group {
    pub id: String,
    pub state: GroupState,
    pub previous_state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation_id: i32,
    pub leader_id: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Static members: group instance id to member id.
    pub static_members: BTreeMap<String, String>,
    /// Members told MEMBER_ID_REQUIRED, with the deadline of their second JoinGroup.
    pub pending_join: BTreeMap<String, u64>,
    /// Members of this generation that have not sent SyncGroup yet.
    pub pending_sync: BTreeSet<String>,
    /// A member joined during the initial rebalance delay (which then extends).
    pub new_member_added: bool,
    pub join_timer: Option<(u64, JoinTimerKind)>,
    /// The deadline for this generation's SyncGroups, and the generation.
    pub sync_timer: Option<(u64, i32)>,
}

/// A Kafka error code.
pub(super) fn code(e: ResponseError) -> i16 {
    e.code()
}

pub(super) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Group {
    /// A new, Empty group.
    pub fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            previous_state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_join: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            join_timer: None,
            sync_timer: None,
        }
    }

    /// Whether the group holds nothing worth keeping in memory.
    pub fn is_removable(&self) -> bool {
        self.state == GroupState::Empty && self.members.is_empty() && self.pending_join.is_empty()
    }

    pub fn transition_to(&mut self, to: GroupState) {
        debug_assert!(
            to.valid_previous(self.state),
            "group {}: {:?} -> {:?}",
            self.id,
            self.state,
            to
        );
        self.previous_state = self.state;
        self.state = to;
    }

    pub fn can_rebalance(&self) -> bool {
        self.state.can_rebalance()
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub fn num_awaiting_join(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .count()
    }

    pub fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.num_awaiting_join() && self.pending_join.is_empty()
    }

    /// The largest rebalance timeout of the members.
    pub fn rebalance_timeout_ms(&self) -> u64 {
        let max = self.members.values().map(|m| m.rebalance_timeout_ms).max();
        u64::try_from(max.unwrap_or(0)).unwrap_or(0)
    }

    /// Adds a member (its join reply parked in `waiter`).
    pub fn add(&mut self, mut member: Member, waiter: Option<JoinWaiter>) {
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), member.id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.id.clone());
        }
        member.awaiting_join = waiter;
        self.pending_join.remove(&member.id);
        self.members.insert(member.id.clone(), member);
    }

    /// Removes a member (or a pending member); elects another leader if it led.
    pub fn remove(&mut self, member_id: &str) -> Option<Member> {
        let removed = self.members.remove(member_id);
        if let Some(instance) = removed.as_ref().and_then(|m| m.instance_id.as_ref()) {
            self.static_members.remove(instance);
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_join.remove(member_id);
        self.pending_sync.remove(member_id);
        removed
    }

    /// The protocols every member supports.
    fn candidate_protocols(&self) -> BTreeSet<&str> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return BTreeSet::new();
        };
        let mut common: BTreeSet<&str> = first.protocols.iter().map(|p| p.name.as_str()).collect();
        for m in members {
            let names: BTreeSet<&str> = m.protocols.iter().map(|p| p.name.as_str()).collect();
            common.retain(|n| names.contains(n));
        }
        common
    }

    /// Whether a member of `protocol_type` supporting `protocols` may join: any non-empty
    /// type and list when Empty, else the group's type and a protocol all members support.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        // Kafka counts the members supporting each protocol and accepts one supported by all:
        // with no members left (the last one left mid-rebalance), every protocol is.
        if self.members.is_empty() {
            return true;
        }
        let candidates = self.candidate_protocols();
        protocols
            .iter()
            .any(|p| candidates.contains(p.name.as_str()))
    }

    /// Kafka's vote: each member votes for its first protocol among those all support; most
    /// votes wins (ties go to the name first in order).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = member.vote(&candidates) {
                *votes.entry(name).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, n)| *n == best)
            .map(|(name, _)| name.to_string())
    }

    /// If the leader did not rejoin, the first member that did leads; false if none did.
    pub fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        let leader_joined = self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some());
        if leader_joined {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                self.leader_id = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    /// The next generation: CompletingRebalance with a chosen protocol, or Empty.
    pub fn init_next_generation(&mut self) {
        self.generation_id = self.generation_id.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition_to(GroupState::Empty);
        } else {
            self.protocol_name = self.select_protocol();
            self.transition_to(GroupState::CompletingRebalance);
        }
        self.pending_sync.clear();
    }

    /// The member list the leader receives in its JoinGroup reply.
    pub fn leader_member_list(&self) -> Vec<JoinGroupResponseMember> {
        let protocol = self.protocol_name.as_deref();
        self.members
            .values()
            .map(|m| {
                JoinGroupResponseMember::default()
                    .with_member_id(str_bytes(&m.id))
                    .with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                    .with_metadata(m.metadata(protocol))
            })
            .collect()
    }

    /// A JoinGroup reply carrying the current generation.
    pub fn generation_reply(&self, member_id: &str, with_members: bool) -> JoinGroupResponse {
        JoinGroupResponse::default()
            .with_member_id(str_bytes(member_id))
            .with_generation_id(self.generation_id)
            .with_protocol_type(self.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(self.protocol_name.as_deref().map(str_bytes))
            .with_leader(str_bytes(self.leader_id.as_deref().unwrap_or("")))
            .with_members(if with_members {
                self.leader_member_list()
            } else {
                Vec::new()
            })
    }

    /// Checks that `member_id` (and `instance_id`, for a static member) is a member:
    /// UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID otherwise.
    pub fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                None => return Err(code(ResponseError::UnknownMemberId)),
                Some(existing) if existing != member_id => {
                    return Err(code(ResponseError::FencedInstanceId))
                }
                Some(_) => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(code(ResponseError::UnknownMemberId));
        }
        Ok(())
    }

    /// Answers a parked JoinGroup, if any.
    pub fn complete_join(&mut self, member_id: &str, reply: JoinGroupResponse) -> bool {
        let waiter = self
            .members
            .get_mut(member_id)
            .and_then(|m| m.awaiting_join.take());
        match waiter {
            Some(w) => {
                let _ = w.send(reply);
                true
            }
            None => false,
        }
    }

    /// Answers a parked SyncGroup, if any.
    pub fn complete_sync(&mut self, member_id: &str, reply: SyncGroupResponse) -> bool {
        let waiter = self
            .members
            .get_mut(member_id)
            .and_then(|m| m.awaiting_sync.take());
        match waiter {
            Some(w) => {
                let _ = w.send(reply);
                true
            }
            None => false,
        }
    }

    /// The earliest timer deadline, if any.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let join = self.join_timer.map(|(d, _)| d);
        let sync = self.sync_timer.map(|(d, _)| d);
        let heartbeats = self
            .members
            .values()
            .filter_map(|m| m.heartbeat_deadline_ms);
        let pending = self.pending_join.values().copied();
        join.into_iter()
            .chain(sync)
            .chain(heartbeats)
            .chain(pending)
            .min()
    }
}
