//! The join phase of a classic group (Kafka's `GroupMetadataManager.classicGroupJoin*` and
//! the rebalance steps): new and known members joining, MEMBER_ID_REQUIRED, static members
//! replacing their previous incarnation, preparing a rebalance, the initial rebalance delay,
//! and completing the join phase into a new generation whose JoinGroup replies are sent to
//! every parked member (the leader's with the member list).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponse;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::ResponseError;

use super::config::GroupConfig;
use super::state::{
    code, str_bytes, Group, GroupState, JoinTimerKind, JoinWaiter, Member, Protocol,
};

/// What one step of a group's state machine may use besides the group.
pub(super) struct Ctx<'a> {
    pub now_ms: u64,
    pub cfg: &'a GroupConfig,
    pub ids: &'a MemberIds,
}

impl Ctx<'_> {
    /// `now + ms`, at least 1 ms ahead so a zero timeout never fires in the step that set it.
    pub fn deadline(&self, ms: u64) -> u64 {
        self.now_ms.saturating_add(ms.max(1))
    }
}

/// Generates member ids: `<client id or group instance id>-<uuid-shaped random hex>`, as
/// Kafka does; random per process and counted, so ids never repeat.
#[derive(Debug)]
pub(super) struct MemberIds {
    seed: u64,
    counter: AtomicU64,
}

impl MemberIds {
    pub fn new() -> MemberIds {
        MemberIds {
            seed: std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish(),
            counter: AtomicU64::new(0),
        }
    }

    fn mix(&self, n: u64) -> u64 {
        // SplitMix64 over the seeded counter.
        let mut z = self
            .seed
            .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn generate(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let (a, b) = (self.mix(2 * n), self.mix(2 * n + 1));
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }
}

/// A JoinGroup request, normalized (the handler has checked group id and session timeout).
#[derive(Debug, Clone)]
pub(super) struct JoinArgs {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    pub version: i16,
}

/// A JoinGroup error reply.
pub(super) fn join_error(member_id: &str, error: ResponseError) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_member_id(str_bytes(member_id))
        .with_error_code(code(error))
        .with_generation_id(-1)
}

fn ms(value: i32) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Group {
    /// Handles a JoinGroup: answers `waiter` now or parks it until the join phase completes.
    pub fn join(&mut self, args: JoinArgs, waiter: JoinWaiter, ctx: &Ctx) {
        if !self.accept_joining_member(&args.member_id, ctx.cfg.group_members_max) {
            let _ = waiter.send(join_error("", ResponseError::GroupMaxSizeReached));
        } else if args.member_id.is_empty() {
            self.join_new_member(args, waiter, ctx);
        } else {
            self.join_existing_member(args, waiter, ctx);
        }
    }

    fn accept_joining_member(&self, member_id: &str, members_max: usize) -> bool {
        let known =
            self.members.contains_key(member_id) || self.pending_join.contains_key(member_id);
        if !known && self.members.len() + self.pending_join.len() >= members_max {
            return false;
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                self.members
                    .get(member_id)
                    .is_some_and(|m| m.awaiting_join.is_some())
                    || self.num_awaiting_join() < members_max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < members_max
            }
        }
    }

    fn join_new_member(&mut self, args: JoinArgs, waiter: JoinWaiter, ctx: &Ctx) {
        if !self.supports_protocols(&args.protocol_type, &args.protocols) {
            let _ = waiter.send(join_error("", ResponseError::InconsistentGroupProtocol));
            return;
        }
        let prefix = args.instance_id.as_deref().unwrap_or(&args.client_id);
        let new_id = ctx.ids.generate(prefix);
        if let Some(instance) = args.instance_id.clone() {
            match self.static_members.get(&instance).cloned() {
                Some(old_id) => self.rejoin_static_member(&old_id, new_id, args, waiter, ctx),
                None => self.add_member_then_rebalance(new_id, args, waiter, ctx),
            }
        } else if args.version >= 4 {
            // The member must come back with this id (KIP-394): until then it is pending,
            // for at most its session timeout.
            let deadline = ctx.deadline(ms(args.session_timeout_ms));
            self.pending_join.insert(new_id.clone(), deadline);
            let _ = waiter.send(join_error(&new_id, ResponseError::MemberIdRequired));
        } else {
            self.add_member_then_rebalance(new_id, args, waiter, ctx);
        }
    }

    fn join_existing_member(&mut self, args: JoinArgs, waiter: JoinWaiter, ctx: &Ctx) {
        let member_id = args.member_id.clone();
        if !self.supports_protocols(&args.protocol_type, &args.protocols) {
            let _ = waiter.send(join_error(
                &member_id,
                ResponseError::InconsistentGroupProtocol,
            ));
            return;
        }
        if self.pending_join.contains_key(&member_id) {
            if args.instance_id.is_some() {
                // A pending member is never static (Kafka treats this as a broken client).
                let _ = waiter.send(join_error(&member_id, ResponseError::UnknownMemberId));
                return;
            }
            self.add_member_then_rebalance(member_id, args, waiter, ctx);
            return;
        }
        if let Err(error) = self.validate_member(&member_id, args.instance_id.as_deref()) {
            let reply = JoinGroupResponse::default()
                .with_member_id(str_bytes(&member_id))
                .with_error_code(error)
                .with_generation_id(-1);
            let _ = waiter.send(reply);
            return;
        }
        let Some(member) = self.members.get(&member_id) else {
            return;
        };
        let same_metadata = member.matches(&args.protocols);
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member_then_rebalance(args, waiter, ctx);
            }
            GroupState::CompletingRebalance if same_metadata => {
                // It missed its JoinGroup reply: send the current generation again.
                let is_leader = self.is_leader(&member_id);
                let _ = waiter.send(self.generation_reply(&member_id, is_leader));
            }
            GroupState::Stable if !self.is_leader(&member_id) && same_metadata => {
                let _ = waiter.send(self.generation_reply(&member_id, false));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                // New metadata, or the leader asking for a rebalance (e.g. topic changes).
                self.update_member_then_rebalance(args, waiter, ctx);
            }
            GroupState::Empty | GroupState::Dead => {
                let _ = waiter.send(join_error(&member_id, ResponseError::UnknownMemberId));
            }
        }
    }

    fn update_member_then_rebalance(&mut self, args: JoinArgs, waiter: JoinWaiter, ctx: &Ctx) {
        if let Some(member) = self.members.get_mut(&args.member_id) {
            member.protocols = args.protocols;
            member.rebalance_timeout_ms = args.rebalance_timeout_ms;
            member.session_timeout_ms = args.session_timeout_ms;
            member.client_id = args.client_id;
            member.client_host = args.client_host;
            // A JoinGroup sent again replaces the parked one (whose reply is then dropped).
            member.awaiting_join = Some(waiter);
        }
        self.maybe_prepare_rebalance_or_complete_join(ctx);
    }

    fn add_member_then_rebalance(
        &mut self,
        member_id: String,
        args: JoinArgs,
        waiter: JoinWaiter,
        ctx: &Ctx,
    ) {
        let member = Member {
            id: member_id.clone(),
            instance_id: args.instance_id,
            client_id: args.client_id,
            client_host: args.client_host,
            rebalance_timeout_ms: args.rebalance_timeout_ms,
            session_timeout_ms: args.session_timeout_ms,
            protocol_type: args.protocol_type,
            protocols: args.protocols,
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: true,
            heartbeat_deadline_ms: None,
        };
        if self.state == GroupState::PreparingRebalance && self.previous_state == GroupState::Empty
        {
            self.new_member_added = true;
        }
        self.add(member, Some(waiter));
        // A parked JoinGroup cannot heartbeat, and a client that gave up would leave a
        // defunct member behind: new members get the new-member join timeout instead.
        self.reschedule_heartbeat(
            &member_id,
            u64::from(ctx.cfg.new_member_join_timeout_ms),
            ctx,
        );
        self.maybe_prepare_rebalance_or_complete_join(ctx);
    }

    /// A static member rejoining with an unknown member id replaces its old incarnation,
    /// whose parked requests are fenced.
    fn rejoin_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        args: JoinArgs,
        waiter: JoinWaiter,
        ctx: &Ctx,
    ) {
        let current_leader = self.leader_id.clone().unwrap_or_default();
        let Some(mut member) = self.members.remove(old_id) else {
            let _ = waiter.send(join_error("", ResponseError::UnknownMemberId));
            return;
        };
        if let Some(w) = member.awaiting_join.take() {
            let _ = w.send(join_error(old_id, ResponseError::FencedInstanceId));
        }
        if let Some(w) = member.awaiting_sync.take() {
            let fenced =
                SyncGroupResponse::default().with_error_code(code(ResponseError::FencedInstanceId));
            let _ = w.send(fenced);
        }
        member.id = new_id.clone();
        member.protocols = args.protocols;
        member.rebalance_timeout_ms = args.rebalance_timeout_ms;
        member.session_timeout_ms = args.session_timeout_ms;
        member.awaiting_join = Some(waiter);
        let instance = args.instance_id.unwrap_or_default();
        self.static_members.insert(instance, new_id.clone());
        if self.is_leader(old_id) {
            self.leader_id = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        let session_ms = ms(member.session_timeout_ms);
        self.members.insert(new_id.clone(), member);
        self.reschedule_heartbeat(&new_id, session_ms, ctx);

        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol_name => {
                // Same protocol: no rebalance; the member gets the current generation. Since
                // v9 a leader is told to skip the assignment; before, it is not told it leads.
                let reply = if args.version >= 9 {
                    let is_leader = self.is_leader(&new_id);
                    self.generation_reply(&new_id, is_leader)
                        .with_skip_assignment(is_leader)
                } else {
                    self.generation_reply(&new_id, false)
                        .with_leader(str_bytes(&current_leader))
                };
                self.complete_join(&new_id, reply);
            }
            GroupState::Stable => self.maybe_prepare_rebalance_or_complete_join(ctx),
            GroupState::CompletingRebalance => self.prepare_rebalance(ctx),
            GroupState::PreparingRebalance => self.maybe_complete_join_phase(ctx),
            GroupState::Empty | GroupState::Dead => {
                self.complete_join(&new_id, join_error(&new_id, ResponseError::UnknownMemberId));
            }
        }
    }

    pub fn maybe_prepare_rebalance_or_complete_join(&mut self, ctx: &Ctx) {
        if self.can_rebalance() {
            self.prepare_rebalance(ctx);
        } else {
            self.maybe_complete_join_phase(ctx);
        }
    }

    /// Starts a rebalance: parked SyncGroups get REBALANCE_IN_PROGRESS; an Empty group waits
    /// the initial delay, any other completes as soon as every member rejoined or at the
    /// rebalance timeout.
    pub fn prepare_rebalance(&mut self, ctx: &Ctx) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment(ResponseError::RebalanceInProgress, ctx);
        }
        self.pending_sync.clear();
        self.sync_timer = None;
        let initial = self.state == GroupState::Empty;
        if initial {
            let delay_ms = u64::from(ctx.cfg.initial_rebalance_delay_ms);
            let remaining_ms = self.rebalance_timeout_ms().saturating_sub(delay_ms);
            let kind = JoinTimerKind::Initial {
                delay_ms,
                remaining_ms,
            };
            self.join_timer = Some((ctx.deadline(delay_ms), kind));
        }
        self.transition_to(GroupState::PreparingRebalance);
        if !initial {
            if self.has_all_members_joined() {
                self.complete_join_phase(ctx);
            } else {
                let deadline = ctx.deadline(self.rebalance_timeout_ms());
                self.join_timer = Some((deadline, JoinTimerKind::Rebalance));
            }
        }
    }

    /// Completes the join phase if every member rejoined (never during the initial delay).
    pub fn maybe_complete_join_phase(&mut self, ctx: &Ctx) {
        if self.state == GroupState::PreparingRebalance
            && self.previous_state != GroupState::Empty
            && self.has_all_members_joined()
        {
            self.complete_join_phase(ctx);
        }
    }

    /// The initial delay fired: extend it while members keep arriving, else complete.
    pub fn initial_delay_expired(&mut self, delay_ms: u64, remaining_ms: u64, ctx: &Ctx) {
        if self.new_member_added && remaining_ms != 0 {
            self.new_member_added = false;
            let new_delay = u64::from(ctx.cfg.initial_rebalance_delay_ms).min(remaining_ms);
            let new_remaining = remaining_ms.saturating_sub(delay_ms);
            let kind = JoinTimerKind::Initial {
                delay_ms: new_delay,
                remaining_ms: new_remaining,
            };
            self.join_timer = Some((ctx.deadline(new_delay), kind));
        } else {
            self.complete_join_phase(ctx);
        }
    }

    /// Ends the join phase: drops dynamic members that did not rejoin, starts the next
    /// generation and answers every parked JoinGroup (the leader's with the member list).
    pub fn complete_join_phase(&mut self, ctx: &Ctx) {
        self.join_timer = None;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.remove(id);
        }
        if self.state == GroupState::Dead {
            return;
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Only static members that did not rejoin are left: wait another timeout.
            let deadline = ctx.deadline(self.rebalance_timeout_ms());
            self.join_timer = Some((deadline, JoinTimerKind::Rebalance));
            return;
        }
        self.init_next_generation();
        if self.state == GroupState::Empty {
            return;
        }
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            let is_leader = self.is_leader(id);
            let reply = self.generation_reply(id, is_leader);
            self.complete_join(id, reply);
            let session_ms = self.members.get(id).map_or(0, |m| ms(m.session_timeout_ms));
            self.reschedule_heartbeat(id, session_ms, ctx);
            if let Some(m) = self.members.get_mut(id) {
                m.is_new = false;
            }
            self.pending_sync.insert(id.clone());
        }
        let deadline = ctx.deadline(self.rebalance_timeout_ms());
        self.sync_timer = Some((deadline, self.generation_id));
    }

    /// Sets the member's heartbeat deadline `timeout_ms` from now.
    pub fn reschedule_heartbeat(&mut self, member_id: &str, timeout_ms: u64, ctx: &Ctx) {
        let deadline = ctx.deadline(timeout_ms);
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline_ms = Some(deadline);
        }
    }

    /// Clears every assignment and answers parked SyncGroups with `error`.
    pub fn reset_and_propagate_assignment(&mut self, error: ResponseError, ctx: &Ctx) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
        }
        self.propagate_assignment(Some(error), ctx);
    }

    /// Stores the leader's assignment (empty for members it left out) and answers every
    /// parked SyncGroup with its member's share.
    pub fn set_and_propagate_assignment(
        &mut self,
        mut assignment: BTreeMap<String, Bytes>,
        ctx: &Ctx,
    ) {
        for m in self.members.values_mut() {
            m.assignment = assignment.remove(&m.id).unwrap_or_default();
        }
        self.propagate_assignment(None, ctx);
    }

    fn propagate_assignment(&mut self, error: Option<ResponseError>, ctx: &Ctx) {
        let (protocol_type, protocol_name) = match error {
            None => (
                self.protocol_type.as_deref().map(str_bytes),
                self.protocol_name.as_deref().map(str_bytes),
            ),
            Some(_) => (None, None),
        };
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            let Some(member) = self.members.get(id) else {
                continue;
            };
            let session_ms = ms(member.session_timeout_ms);
            let reply = SyncGroupResponse::default()
                .with_error_code(error.map_or(0, code))
                .with_protocol_type(protocol_type.clone())
                .with_protocol_name(protocol_name.clone())
                .with_assignment(member.assignment.clone());
            if self.complete_sync(id, reply) {
                // Its session restarts once it has its assignment.
                self.reschedule_heartbeat(id, session_ms, ctx);
            }
        }
    }
}
