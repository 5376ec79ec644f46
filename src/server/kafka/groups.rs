//! The consumer-group requests handed to the coordinator (`group/`): each runs on a task of its
//! own, since JoinGroup and SyncGroup wait for the other members (up to a rebalance timeout)
//! while the connection goes on reading, and its response takes its slot in request order.

use std::future::Future;

use kafka_protocol::protocol::{Encodable, HeaderVersion};

use super::authz::group_denied;
use super::codec::{Header, Request};
use super::connection::{Conn, Slot};
use super::dispatch::respond;
use super::errors::ErrorCodes;
use super::group_authz::{
    commit_refused_whole, commit_response, filter_describe, filter_fetch, filter_list,
    membership_refused, merge_delete, split_commit, split_delete,
};
use kafka_protocol::messages::{
    HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, SyncGroupResponse,
};

impl Conn {
    /// Serves one group request; `req` is one of the group APIs (anything else is a routing
    /// bug and gets no response).
    pub(super) fn group_request(&self, tx: Slot, h: Header, req: Request) {
        let groups = self.ctx.groups.clone();
        let v = h.api_version;
        let client_id = h.client_id.clone().unwrap_or_default();
        // Kafka's member host is Java's InetAddress::toString of the peer: "/<ip>".
        let host = format!("/{}", self.peer.ip());
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        // In a cluster one node coordinates every group; any node lists the groups it knows.
        if !matches!(req, Request::ListGroups(_)) {
            use super::cluster::Coordination;
            let refused = match super::cluster::coordination(&ctx) {
                Coordination::Here => None,
                Coordination::Loading => {
                    Some(kafka_protocol::ResponseError::CoordinatorLoadInProgress)
                }
                Coordination::Elsewhere => Some(kafka_protocol::ResponseError::NotCoordinator),
            };
            if let Some(e) = refused {
                return self.refuse_not_coordinator(tx, h, req, e.code());
            }
        }
        if membership_refused(&ctx, &p, &req) {
            return self.refuse_membership(tx, h, req);
        }
        match req {
            Request::JoinGroup(r) => self.spawn(tx, h, async move {
                groups.join_group(r, v, &client_id, &host).await
            }),
            Request::SyncGroup(r) => {
                self.spawn(tx, h, async move { groups.sync_group(r, v).await })
            }
            Request::Heartbeat(r) => self.spawn(tx, h, async move { groups.heartbeat(r, v).await }),
            Request::LeaveGroup(r) => {
                self.spawn(tx, h, async move { groups.leave_group(r, v).await })
            }
            Request::OffsetCommit(mut r) => {
                let refused = split_commit(&ctx, &p, &mut r);
                if commit_refused_whole(&r, refused.len()) {
                    return self.refuse(tx, h, commit_response(refused));
                }
                self.spawn(tx, h, async move {
                    let mut resp = groups.offset_commit(r, v).await;
                    resp.topics.extend(refused);
                    resp
                })
            }
            Request::OffsetFetch(r) => self.spawn(tx, h, async move {
                let group = r.group_id.to_string();
                let mut resp = groups.offset_fetch(r, v).await;
                filter_fetch(&ctx, &p, &group, &mut resp);
                resp
            }),
            Request::DescribeGroups(r) => self.spawn(tx, h, async move {
                let mut resp = groups.describe_groups(r, v).await;
                filter_describe(&ctx, &p, &mut resp);
                resp
            }),
            Request::ListGroups(r) => self.spawn(tx, h, async move {
                let mut resp = groups.list_groups(r, v).await;
                filter_list(&ctx, &p, &mut resp);
                resp
            }),
            Request::DeleteGroups(mut r) => {
                let refused = split_delete(&ctx, &p, &mut r);
                self.spawn(tx, h, async move {
                    let mut resp = groups.delete_groups(r, v).await;
                    merge_delete(&mut resp, refused);
                    resp
                })
            }
            other => {
                tracing::error!(?other, "not a group request");
                let _ = tx.send(None);
            }
        }
    }
}

impl Conn {
    /// Answers a JoinGroup, SyncGroup, Heartbeat or LeaveGroup with GROUP_AUTHORIZATION_FAILED.
    fn refuse_membership(&self, tx: Slot, h: Header, req: Request) {
        let code = group_denied();
        match req {
            Request::JoinGroup(_) => {
                self.refuse(tx, h, JoinGroupResponse::default().with_error_code(code))
            }
            Request::SyncGroup(_) => {
                self.refuse(tx, h, SyncGroupResponse::default().with_error_code(code))
            }
            Request::Heartbeat(_) => {
                self.refuse(tx, h, HeartbeatResponse::default().with_error_code(code))
            }
            _ => self.refuse(tx, h, LeaveGroupResponse::default().with_error_code(code)),
        }
    }

    /// Answers at once with `body` (a refusal).
    pub(super) fn refuse<R>(&self, tx: Slot, h: Header, body: R)
    where
        R: Encodable + HeaderVersion + ErrorCodes,
    {
        respond(self.ctx.broker.metrics(), tx, &h, &body);
    }

    /// Runs `work` on a task of its own (in the connection's span) and answers with what it
    /// returns, its error codes counted.
    pub(super) fn spawn<R, F>(&self, tx: Slot, h: Header, work: F)
    where
        R: Encodable + HeaderVersion + ErrorCodes + Send + 'static,
        F: Future<Output = R> + Send + 'static,
    {
        let metrics = self.ctx.broker.metrics().clone();
        crate::broker::spawn_in_span(async move {
            let body = work.await;
            respond(&metrics, tx, &h, &body);
        });
    }
}
