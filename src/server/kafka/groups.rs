//! The consumer-group requests handed to the coordinator (`group/`): each runs on a task of its
//! own, since JoinGroup and SyncGroup wait for the other members (up to a rebalance timeout)
//! while the connection goes on reading, and its response takes its slot in request order.

use std::future::Future;

use kafka_protocol::protocol::{Encodable, HeaderVersion};

use super::codec::{Header, Request};
use super::connection::{Conn, Slot};
use super::dispatch::respond;

impl Conn {
    /// Serves one group request; `req` is one of the group APIs (anything else is a routing
    /// bug and gets no response).
    pub(super) fn group_request(&self, tx: Slot, h: Header, req: Request) {
        let groups = self.ctx.groups.clone();
        let v = h.api_version;
        let client_id = h.client_id.clone().unwrap_or_default();
        // Kafka's member host is Java's InetAddress::toString of the peer: "/<ip>".
        let host = format!("/{}", self.peer.ip());
        match req {
            Request::JoinGroup(r) => spawn(tx, h, async move {
                groups.join_group(r, v, &client_id, &host).await
            }),
            Request::SyncGroup(r) => spawn(tx, h, async move { groups.sync_group(r, v).await }),
            Request::Heartbeat(r) => spawn(tx, h, async move { groups.heartbeat(r, v).await }),
            Request::LeaveGroup(r) => spawn(tx, h, async move { groups.leave_group(r, v).await }),
            Request::OffsetCommit(r) => {
                spawn(tx, h, async move { groups.offset_commit(r, v).await })
            }
            Request::OffsetFetch(r) => spawn(tx, h, async move { groups.offset_fetch(r, v).await }),
            Request::DescribeGroups(r) => {
                spawn(tx, h, async move { groups.describe_groups(r, v).await })
            }
            Request::ListGroups(r) => spawn(tx, h, async move { groups.list_groups(r, v).await }),
            Request::DeleteGroups(r) => {
                spawn(tx, h, async move { groups.delete_groups(r, v).await })
            }
            other => {
                tracing::error!(?other, "not a group request");
                let _ = tx.send(None);
            }
        }
    }
}

/// Runs `work` on its own task and answers `h` with its response.
pub(super) fn spawn<R, F>(tx: Slot, h: Header, work: F)
where
    R: Encodable + HeaderVersion + Send + 'static,
    F: Future<Output = R> + Send + 'static,
{
    crate::broker::spawn_in_span(async move {
        let body = work.await;
        respond(tx, &h, &body);
    });
}
