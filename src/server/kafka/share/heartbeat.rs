//! ShareGroupHeartbeat (version 1): joining (epoch 0, with the member's own id), heartbeating,
//! changing the subscription, leaving (epoch -1). The assignment is every partition of every
//! subscribed topic that exists; the member's epoch rises whenever it changes, and the
//! response carries it only then (and at join).

use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{valid_group, Assigned, Member, ShareGroups};

/// The epoch a member joins with.
const JOIN_EPOCH: i32 = 0;
/// The epoch a member leaves with.
const LEAVE_EPOCH: i32 = -1;
/// Longest member id accepted (the Java client sends a 22-character UUID).
const MEMBER_ID_BYTES_MAX: usize = 255;

impl ShareGroups {
    /// Serves one ShareGroupHeartbeat from a client `client_id` at `host`.
    pub async fn heartbeat(
        &self,
        req: ShareGroupHeartbeatRequest,
        client_id: &str,
        host: &str,
    ) -> ShareGroupHeartbeatResponse {
        let fail = |(e, why): (ResponseError, &str)| {
            ShareGroupHeartbeatResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(why.to_string())))
        };
        if let Err(e) = check(&req) {
            return fail(e);
        }
        let group = req.group_id.as_str();
        let member_id = req.member_id.as_str().to_string();
        match req.member_epoch {
            LEAVE_EPOCH => {
                self.leave(group, &member_id);
                return ShareGroupHeartbeatResponse::default()
                    .with_member_id(Some(req.member_id))
                    .with_member_epoch(LEAVE_EPOCH);
            }
            JOIN_EPOCH => {}
            _ if self.known_member(group, &member_id).is_none() => {
                return fail((ResponseError::UnknownMemberId, "unknown member"));
            }
            _ => {}
        }
        let m = match self.member(group, &member_id) {
            Ok(m) => m,
            Err(e) => return fail((e, "too many share groups or members")),
        };
        let (epoch, changed) = match self.update(&m, &req, client_id, host) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let assignment = changed.map(|a| {
            Assignment::default().with_topic_partitions(
                a.into_iter()
                    .map(|(id, _, ps)| {
                        TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(ps)
                    })
                    .collect(),
            )
        });
        ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(member_id)))
            .with_member_epoch(epoch)
            .with_heartbeat_interval_ms(self.config.heartbeat_interval_ms as i32)
            .with_assignment(assignment)
    }

    /// Applies a heartbeat to member `m`: its epoch (FENCED_MEMBER_EPOCH unless it joins or
    /// carries the current one), client, subscription and assignment. Returns its epoch, and
    /// its assignment when the response must carry it (changed, or a join).
    fn update(
        &self,
        m: &Member,
        req: &ShareGroupHeartbeatRequest,
        client_id: &str,
        host: &str,
    ) -> Result<(i32, Option<Assigned>), (ResponseError, &'static str)> {
        let mut st = m.lock();
        if req.member_epoch != JOIN_EPOCH && req.member_epoch != st.epoch {
            return Err((
                ResponseError::FencedMemberEpoch,
                "member epoch is not current",
            ));
        }
        st.left = false;
        st.client_id = client_id.to_string();
        st.client_host = host.to_string();
        st.rack_id = req.rack_id.as_ref().map(|r| r.to_string());
        let mut subscription_changed = false;
        if let Some(names) = &req.subscribed_topic_names {
            let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            names.sort();
            names.dedup();
            subscription_changed = names != st.subscribed;
            st.subscribed = names;
        }
        let assignment = self.assignment(&st.subscribed);
        let changed = assignment != st.assignment || req.member_epoch == JOIN_EPOCH;
        if assignment != st.assignment || st.epoch == 0 {
            st.epoch += 1;
            st.assignment = assignment;
        }
        let out = (st.epoch, changed.then(|| st.assignment.clone()));
        drop(st);
        if subscription_changed {
            self.bump_epoch(req.group_id.as_str());
        }
        Ok(out)
    }

    /// Every partition of every topic in `subscribed` that exists, by topic name.
    fn assignment(&self, subscribed: &[String]) -> Assigned {
        subscribed
            .iter()
            .filter_map(|name| {
                let (id, n) = self.broker.kafka_topic_meta(name).ok()?;
                let parts = (0..n as i32).collect();
                Some((Uuid::from_bytes(id.0), name.clone(), parts))
            })
            .collect()
    }
}

/// The checks of a heartbeat that need no state: a sluice group name, a member id of a sane
/// length, and a join that names the member and its topics.
fn check(req: &ShareGroupHeartbeatRequest) -> Result<(), (ResponseError, &'static str)> {
    if !valid_group(req.group_id.as_str()) {
        let why = "share group ids follow sluice's name rules ([A-Za-z0-9._-], 1 to 200)";
        return Err((ResponseError::InvalidGroupId, why));
    }
    if req.member_id.len() > MEMBER_ID_BYTES_MAX {
        return Err((ResponseError::InvalidRequest, "member id too long"));
    }
    if req.member_epoch == JOIN_EPOCH {
        if req.subscribed_topic_names.is_none() {
            let why = "a joining member names its subscribed topics";
            return Err((ResponseError::InvalidRequest, why));
        }
        if req.member_id.is_empty() {
            // Since version 1 the member makes its own id (KIP-1082).
            return Err((ResponseError::InvalidRequest, "a member names its own id"));
        }
    }
    Ok(())
}
