//! A classic group's members after the join: SyncGroup (the leader's assignment handed to
//! every member), Heartbeat, LeaveGroup (one member, or a batch by member id or group
//! instance id), the membership checks of OffsetCommit, and the group's timers (session
//! timeouts, rebalance and initial-delay timeouts, the SyncGroup deadline).

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::ResponseError;

use super::join::{join_error, Ctx};
use super::state::{code, str_bytes, Group, GroupState, JoinTimerKind, SyncWaiter};

/// A SyncGroup request, normalized.
#[derive(Debug, Clone)]
pub(super) struct SyncArgs {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

/// One member named by a LeaveGroup, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Leaver {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub error_code: i16,
}

/// A SyncGroup error reply.
pub(super) fn sync_error(error: ResponseError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code(error))
}

/// A request's protocol type or name disagrees with the group's (both must be known).
fn inconsistent(request: Option<&str>, group: Option<&str>) -> bool {
    matches!((request, group), (Some(r), Some(g)) if r != g)
}

/// The timer that is due first.
enum Due {
    Join(JoinTimerKind),
    Sync(i32),
    Heartbeat(String),
    Pending(String),
}

impl Group {
    /// Handles a SyncGroup: the leader's assignment completes the rebalance and answers every
    /// parked SyncGroup; a follower's waits for it.
    pub fn sync(&mut self, args: SyncArgs, waiter: SyncWaiter, ctx: &Ctx) {
        if let Err(error) = self.validate_sync(&args) {
            let _ = waiter.send(SyncGroupResponse::default().with_error_code(error));
            return;
        }
        let member_id = args.member_id.clone();
        match self.state {
            GroupState::PreparingRebalance => {
                let _ = waiter.send(sync_error(ResponseError::RebalanceInProgress));
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(&member_id) {
                    m.awaiting_sync = Some(waiter);
                }
                self.remove_pending_sync(&member_id);
                if self.is_leader(&member_id) {
                    let assignment: BTreeMap<String, Bytes> =
                        args.assignments.into_iter().collect();
                    self.set_and_propagate_assignment(assignment, ctx);
                    self.transition_to(GroupState::Stable);
                }
            }
            GroupState::Stable => {
                self.remove_pending_sync(&member_id);
                let Some(member) = self.members.get(&member_id) else {
                    return;
                };
                let reply = SyncGroupResponse::default()
                    .with_protocol_type(self.protocol_type.as_deref().map(str_bytes))
                    .with_protocol_name(self.protocol_name.as_deref().map(str_bytes))
                    .with_assignment(member.assignment.clone());
                let _ = waiter.send(reply);
            }
            GroupState::Empty | GroupState::Dead => {
                let _ = waiter.send(sync_error(ResponseError::UnknownMemberId));
            }
        }
    }

    fn validate_sync(&self, args: &SyncArgs) -> Result<(), i16> {
        self.validate_member(&args.member_id, args.instance_id.as_deref())?;
        if args.generation_id != self.generation_id {
            return Err(code(ResponseError::IllegalGeneration));
        }
        if inconsistent(args.protocol_type.as_deref(), self.protocol_type.as_deref())
            || inconsistent(args.protocol_name.as_deref(), self.protocol_name.as_deref())
        {
            return Err(code(ResponseError::InconsistentGroupProtocol));
        }
        Ok(())
    }

    fn remove_pending_sync(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_timer = None;
        }
    }

    /// Handles a Heartbeat: its error code.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        ctx: &Ctx,
    ) -> i16 {
        if let Err(error) = self.validate_member(member_id, instance_id) {
            return error;
        }
        if generation_id != self.generation_id {
            return code(ResponseError::IllegalGeneration);
        }
        let session_ms = self
            .members
            .get(member_id)
            .map_or(0, |m| u64::try_from(m.session_timeout_ms).unwrap_or(0));
        match self.state {
            GroupState::Empty | GroupState::Dead => code(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                self.reschedule_heartbeat(member_id, session_ms, ctx);
                code(ResponseError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.reschedule_heartbeat(member_id, session_ms, ctx);
                0
            }
        }
    }

    /// Handles a LeaveGroup of one or more members (by member id, or by group instance id with
    /// an empty member id); a rebalance follows if any left.
    pub fn leave(&mut self, leavers: Vec<(String, Option<String>)>, ctx: &Ctx) -> Vec<Leaver> {
        let mut results = Vec::with_capacity(leavers.len());
        for (member_id, instance_id) in leavers {
            let error_code = self.leave_one(&member_id, instance_id.as_deref());
            results.push(Leaver {
                member_id,
                instance_id,
                error_code,
            });
        }
        if results.iter().any(|r| r.error_code == 0) {
            match self.state {
                GroupState::Stable | GroupState::CompletingRebalance => {
                    self.maybe_prepare_rebalance_or_complete_join(ctx);
                }
                GroupState::PreparingRebalance => self.maybe_complete_join_phase(ctx),
                GroupState::Empty | GroupState::Dead => {}
            }
        }
        results
    }

    fn leave_one(&mut self, member_id: &str, instance_id: Option<&str>) -> i16 {
        if member_id.is_empty() {
            let static_id = instance_id.and_then(|i| self.static_members.get(i).cloned());
            return match static_id {
                Some(id) => {
                    self.remove_current_member(&id);
                    0
                }
                None => code(ResponseError::UnknownMemberId),
            };
        }
        if self.pending_join.remove(member_id).is_some() {
            return 0;
        }
        match self.validate_member(member_id, instance_id) {
            Ok(()) => {
                self.remove_current_member(member_id);
                0
            }
            Err(error) => error,
        }
    }

    /// Removes a member; a JoinGroup it has parked gets UNKNOWN_MEMBER_ID.
    fn remove_current_member(&mut self, member_id: &str) {
        self.complete_join(member_id, join_error("", ResponseError::UnknownMemberId));
        self.remove(member_id);
    }

    /// The membership checks of an OffsetCommit (Kafka's `validateOffsetCommit`): a commit
    /// without generation goes only to an Empty group; otherwise member and generation must
    /// match, and not while the group waits for SyncGroups.
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), i16> {
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id)?;
            if generation_id != self.generation_id {
                return Err(code(ResponseError::IllegalGeneration));
            }
        } else if self.state != GroupState::Empty {
            return Err(code(ResponseError::UnknownMemberId));
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(code(ResponseError::RebalanceInProgress));
        }
        Ok(())
    }

    /// After an accepted commit: in Stable and PreparingRebalance a commit counts as a
    /// heartbeat (as in Kafka).
    pub fn commit_heartbeat(&mut self, member_id: &str, ctx: &Ctx) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::PreparingRebalance
        ) {
            if let Some(m) = self.members.get(member_id) {
                let session_ms = u64::try_from(m.session_timeout_ms).unwrap_or(0);
                self.reschedule_heartbeat(member_id, session_ms, ctx);
            }
        }
    }

    /// Fires every timer due at `ctx.now_ms`, earliest first; returns how many fired.
    pub fn fire_due_timers(&mut self, ctx: &Ctx) -> usize {
        // Each firing clears or moves its timer past now; the bound only guards that.
        let bound = 2 * (self.members.len() + self.pending_join.len()) + 8;
        let mut fired = 0;
        while fired < bound {
            let Some(due) = self.earliest_due(ctx.now_ms) else {
                break;
            };
            fired += 1;
            match due {
                Due::Join(kind) => {
                    self.join_timer = None;
                    match kind {
                        JoinTimerKind::Initial {
                            delay_ms,
                            remaining_ms,
                        } => self.initial_delay_expired(delay_ms, remaining_ms, ctx),
                        JoinTimerKind::Rebalance => self.complete_join_phase(ctx),
                    }
                }
                Due::Sync(generation) => {
                    self.sync_timer = None;
                    self.sync_expired(generation, ctx);
                }
                Due::Heartbeat(id) => self.heartbeat_expired(&id, ctx),
                Due::Pending(id) => {
                    self.pending_join.remove(&id);
                    if self.state == GroupState::PreparingRebalance && self.has_all_members_joined()
                    {
                        self.complete_join_phase(ctx);
                    }
                }
            }
        }
        fired
    }

    fn earliest_due(&self, now_ms: u64) -> Option<Due> {
        let mut best: Option<(u64, Due)> = None;
        let mut consider = |deadline: u64, due: Due| {
            if deadline <= now_ms && best.as_ref().map_or(true, |(d, _)| deadline < *d) {
                best = Some((deadline, due));
            }
        };
        if let Some((d, kind)) = self.join_timer {
            consider(d, Due::Join(kind));
        }
        if let Some((d, generation)) = self.sync_timer {
            consider(d, Due::Sync(generation));
        }
        for m in self.members.values() {
            if let Some(d) = m.heartbeat_deadline_ms {
                consider(d, Due::Heartbeat(m.id.clone()));
            }
        }
        for (id, d) in &self.pending_join {
            consider(*d, Due::Pending(id.clone()));
        }
        best.map(|(_, due)| due)
    }

    /// A member's session timed out: removed unless it is waiting on a rebalance.
    fn heartbeat_expired(&mut self, member_id: &str, ctx: &Ctx) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        if member.has_satisfied_heartbeat() {
            member.heartbeat_deadline_ms = None;
            return;
        }
        self.remove_current_member(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance_or_complete_join(ctx);
            }
            GroupState::PreparingRebalance if self.has_all_members_joined() => {
                self.complete_join_phase(ctx);
            }
            _ => {}
        }
    }

    /// Members of `generation` that never sent SyncGroup are removed and the group
    /// rebalances.
    fn sync_expired(&mut self, generation: i32, ctx: &Ctx) {
        if generation != self.generation_id
            || !matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            )
            || self.pending_sync.is_empty()
        {
            return;
        }
        let late: Vec<String> = self.pending_sync.iter().cloned().collect();
        for id in &late {
            self.remove(id);
        }
        self.prepare_rebalance(ctx);
    }
}
