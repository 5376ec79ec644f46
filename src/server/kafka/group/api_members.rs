//! The membership requests: JoinGroup, SyncGroup, Heartbeat and LeaveGroup. Each checks what
//! Kafka's service layer checks (version, group id, session timeout, mandatory fields), runs
//! one step of the group's state machine, waits for a parked reply if there is one, and adapts
//! the reply to the request's version.

use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_request::JoinGroupRequest;
use kafka_protocol::messages::join_group_response::JoinGroupResponse;
use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::join::{join_error, JoinArgs};
use super::member::{sync_error, SyncArgs};
use super::state::{code, str_bytes, Protocol};
use super::{version_served, GroupCoordinator, NoGroup, Parked};

const JOIN_GROUP: i16 = 11;
const HEARTBEAT: i16 = 12;
const LEAVE_GROUP: i16 = 13;
const SYNC_GROUP: i16 = 14;

fn string(s: &StrBytes) -> String {
    s.as_str().to_string()
}

impl GroupCoordinator {
    /// JoinGroup (versions 0-9). Waits while the join phase is open (up to the rebalance
    /// timeout, or the initial rebalance delay of a new group).
    pub async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> JoinGroupResponse {
        let reply = self
            .start_join(req, version, client_id, client_host)
            .wait()
            .await;
        join_reply_for_version(reply, version)
    }

    /// The synchronous part of JoinGroup: the step runs now, the reply may be parked.
    pub(super) fn start_join(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> Parked<JoinGroupResponse> {
        let member_id = string(&req.member_id);
        let fallback = join_error(&member_id, ResponseError::UnknownMemberId);
        let early = |error| Parked::ready(join_error(&member_id, error), fallback.clone());
        if !version_served(JOIN_GROUP, version) {
            return early(ResponseError::UnsupportedVersion);
        }
        if !self.offsets.valid_group_id(&req.group_id) {
            return early(ResponseError::InvalidGroupId);
        }
        if req.session_timeout_ms < self.cfg.session_timeout_ms_min
            || req.session_timeout_ms > self.cfg.session_timeout_ms_max
        {
            return early(ResponseError::InvalidSessionTimeout);
        }
        let args = JoinArgs {
            member_id: member_id.clone(),
            instance_id: req.group_instance_id.as_ref().map(string),
            client_id: client_id.to_string(),
            client_host: client_host.to_string(),
            session_timeout_ms: req.session_timeout_ms,
            // Version 0 has no rebalance timeout: the session timeout serves.
            rebalance_timeout_ms: if version == 0 {
                req.session_timeout_ms
            } else {
                req.rebalance_timeout_ms
            },
            protocol_type: string(&req.protocol_type),
            protocols: req
                .protocols
                .iter()
                .map(|p| Protocol {
                    name: string(&p.name),
                    metadata: p.metadata.clone(),
                })
                .collect(),
            version,
        };
        let (tx, rx) = oneshot::channel();
        // A group is created by a member without id; a member id names an existing group.
        let create = member_id.is_empty();
        match self.with_group(&req.group_id, create, |g, ctx| g.join(args, tx, ctx)) {
            Ok(()) => Parked { rx, fallback },
            Err(NoGroup::NotFound) => early(ResponseError::UnknownMemberId),
            Err(NoGroup::TooMany) => early(ResponseError::GroupMaxSizeReached),
        }
    }

    /// SyncGroup (versions 0-5). A follower's waits for the leader's assignment.
    pub async fn sync_group(&self, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let reply = self.start_sync(req, version).wait().await;
        sync_reply_for_version(reply, version)
    }

    pub(super) fn start_sync(
        &self,
        req: SyncGroupRequest,
        version: i16,
    ) -> Parked<SyncGroupResponse> {
        let fallback = sync_error(ResponseError::RebalanceInProgress);
        let early = |error| Parked::ready(sync_error(error), fallback.clone());
        if !version_served(SYNC_GROUP, version) {
            return early(ResponseError::UnsupportedVersion);
        }
        if req.group_id.is_empty() {
            return early(ResponseError::InvalidGroupId);
        }
        if version >= 5 && (req.protocol_type.is_none() || req.protocol_name.is_none()) {
            return early(ResponseError::InconsistentGroupProtocol);
        }
        let args = SyncArgs {
            member_id: string(&req.member_id),
            instance_id: req.group_instance_id.as_ref().map(string),
            generation_id: req.generation_id,
            protocol_type: req.protocol_type.as_ref().map(string),
            protocol_name: req.protocol_name.as_ref().map(string),
            assignments: req
                .assignments
                .iter()
                .map(|a| (string(&a.member_id), a.assignment.clone()))
                .collect(),
        };
        let (tx, rx) = oneshot::channel();
        match self.with_group(&req.group_id, false, |g, ctx| g.sync(args, tx, ctx)) {
            Ok(()) => Parked { rx, fallback },
            Err(_) => early(ResponseError::UnknownMemberId),
        }
    }

    /// Heartbeat (versions 0-4).
    pub async fn heartbeat(&self, req: HeartbeatRequest, version: i16) -> HeartbeatResponse {
        let error_code = if !version_served(HEARTBEAT, version) {
            code(ResponseError::UnsupportedVersion)
        } else if req.group_id.is_empty() {
            code(ResponseError::InvalidGroupId)
        } else {
            let member_id = string(&req.member_id);
            let instance_id = req.group_instance_id.as_ref().map(string);
            self.with_group(&req.group_id, false, |g, ctx| {
                g.heartbeat(&member_id, instance_id.as_deref(), req.generation_id, ctx)
            })
            .unwrap_or(code(ResponseError::UnknownMemberId))
        };
        HeartbeatResponse::default().with_error_code(error_code)
    }

    /// LeaveGroup (versions 0-5; a batch of members by id or group instance id from v3).
    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        if !version_served(LEAVE_GROUP, version) {
            return LeaveGroupResponse::default()
                .with_error_code(code(ResponseError::UnsupportedVersion));
        }
        if req.group_id.is_empty() {
            return LeaveGroupResponse::default()
                .with_error_code(code(ResponseError::InvalidGroupId));
        }
        let leavers: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| {
                    (
                        string(&m.member_id),
                        m.group_instance_id.as_ref().map(string),
                    )
                })
                .collect()
        } else {
            vec![(string(&req.member_id), None)]
        };
        let unknown = code(ResponseError::UnknownMemberId);
        let results =
            match self.with_group(&req.group_id, false, |g, ctx| g.leave(leavers.clone(), ctx)) {
                Ok(results) => results
                    .into_iter()
                    .map(|r| (r.member_id, r.instance_id, r.error_code))
                    .collect(),
                Err(_) => leavers
                    .into_iter()
                    .map(|(m, i)| (m, i, unknown))
                    .collect::<Vec<_>>(),
            };
        if version < 3 {
            let error_code = results.first().map_or(0, |r| r.2);
            return LeaveGroupResponse::default().with_error_code(error_code);
        }
        let members = results
            .into_iter()
            .map(|(member_id, instance_id, error_code)| {
                MemberResponse::default()
                    .with_member_id(str_bytes(&member_id))
                    .with_group_instance_id(instance_id.as_deref().map(str_bytes))
                    .with_error_code(error_code)
            })
            .collect();
        LeaveGroupResponse::default().with_members(members)
    }
}

/// Adapts a JoinGroup reply to the fields and nullability of `version`.
pub(super) fn join_reply_for_version(
    mut reply: JoinGroupResponse,
    version: i16,
) -> JoinGroupResponse {
    if version < 7 {
        // The protocol name is nullable only from v7; the protocol type exists only from v7.
        reply.protocol_name = Some(reply.protocol_name.unwrap_or_default());
        reply.protocol_type = None;
    } else if reply.protocol_name.as_deref() == Some("") {
        reply.protocol_name = None;
    }
    if version < 9 {
        reply.skip_assignment = false;
    }
    if version < 5 {
        for m in &mut reply.members {
            m.group_instance_id = None;
        }
    }
    reply
}

/// Adapts a SyncGroup reply to `version` (protocol type and name exist from v5).
pub(super) fn sync_reply_for_version(
    mut reply: SyncGroupResponse,
    version: i16,
) -> SyncGroupResponse {
    if version < 5 {
        reply.protocol_type = None;
        reply.protocol_name = None;
    }
    reply
}
