//! What a Kafka connection shows in the broker's connection registry: the client's
//! `client.id`, and the groups it has joined as seen in its requests (JoinGroup and
//! ShareGroupHeartbeat join; LeaveGroup and a heartbeat with the leave epoch leave).

use crate::metrics::{SubscriptionKind, SUBSCRIPTIONS_LISTED_MAX};

use super::codec::{Header, Request};
use super::connection::Conn;
use crate::security::{Operation, Resource};

/// ShareGroupHeartbeat's member epoch of a join and of a leave.
const SHARE_JOIN_EPOCH: i32 = 0;
const SHARE_LEAVE_EPOCH: i32 = -1;

impl Conn {
    /// Notes the client's name and the groups it joins or leaves.
    pub(super) fn note(&mut self, h: &Header, req: &Request) {
        if let Some(c) = &h.client_id {
            self.conn.set_client(c);
        }
        // A group the principal may not use is not listed (its request is refused).
        let group = match req {
            Request::JoinGroup(r) => Some(r.group_id.as_str()),
            Request::ShareGroupHeartbeat(r) => Some(r.group_id.as_str()),
            _ => None,
        };
        let security = self.ctx.broker.security();
        if group.is_some_and(|g| {
            security.enabled()
                && !security.allows(&self.auth.principal, Operation::Read, Resource::group(g))
        }) {
            return;
        }
        match req {
            Request::JoinGroup(r) => self.list(SubscriptionKind::Group, r.group_id.as_str(), ""),
            Request::LeaveGroup(r) => self.unlist(SubscriptionKind::Group, r.group_id.as_str()),
            Request::ShareGroupHeartbeat(r) => {
                let group = r.group_id.as_str();
                match r.member_epoch {
                    SHARE_JOIN_EPOCH => {
                        let topics = r
                            .subscribed_topic_names
                            .as_ref()
                            .map(|t| t.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(","));
                        self.list(
                            SubscriptionKind::ShareGroup,
                            group,
                            &topics.unwrap_or_default(),
                        )
                    }
                    SHARE_LEAVE_EPOCH => self.unlist(SubscriptionKind::ShareGroup, group),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn list(&mut self, kind: SubscriptionKind, name: &str, detail: &str) {
        let key = (kind, name.to_string());
        if self.listed.contains_key(&key) || self.listed.len() >= SUBSCRIPTIONS_LISTED_MAX {
            return;
        }
        let sub = self.conn.subscribe(kind, name, detail);
        self.listed.insert(key, sub);
    }

    fn unlist(&mut self, kind: SubscriptionKind, name: &str) {
        self.listed.remove(&(kind, name.to_string()));
    }
}
