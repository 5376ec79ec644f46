//! The share-group requests handed to `share/`: each runs on a task of its own (a ShareFetch
//! waits for records while the connection goes on reading), and its response takes its slot in
//! request order.

use super::codec::{Header, Request};
use super::connection::{Conn, Slot};
use super::fetch::fetch_throttle;
use super::share_authz::{filter_share_describe, filter_share_offsets, share_refusal};
use kafka_protocol::messages::{
    AlterShareGroupOffsetsResponse, DeleteShareGroupOffsetsResponse, ShareAcknowledgeResponse,
    ShareFetchResponse, ShareGroupHeartbeatResponse,
};

impl Conn {
    /// Serves one share-group request; `req` is one of the share APIs (anything else is a
    /// routing bug and gets no response).
    pub(super) fn share_request(&self, tx: Slot, h: Header, req: Request) {
        let shares = self.ctx.shares.clone();
        let client_id = h.client_id.clone().unwrap_or_default();
        let host = format!("/{}", self.peer.ip());
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        if let Some(code) = share_refusal(&ctx, &p, &req) {
            return self.refuse_share(tx, h, req, code);
        }
        if let Some(code) = cluster_refusal(&ctx, &req) {
            return self.refuse_share(tx, h, req, code);
        }
        match req {
            Request::ShareGroupHeartbeat(r) => self.spawn(tx, h, async move {
                shares.heartbeat(r, &client_id, &host).await
            }),
            Request::ShareFetch(r) => {
                let ended = self.ended();
                let mute = self.mute.clone();
                self.spawn(tx, h, async move {
                    let mut resp = shares.share_fetch(r, ended).await;
                    let bytes = resp
                        .responses
                        .iter()
                        .flat_map(|t| &t.partitions)
                        .map(|x| x.records.as_ref().map_or(0, |r| r.len()))
                        .sum();
                    let delay = fetch_throttle(&ctx, &p, bytes);
                    resp.throttle_time_ms = delay.as_millis().min(i32::MAX as u128) as i32;
                    mute.mute_for(delay);
                    resp
                })
            }
            Request::ShareAcknowledge(r) => {
                self.spawn(tx, h, async move { shares.share_acknowledge(r).await })
            }
            Request::ShareGroupDescribe(r) => self.spawn(tx, h, async move {
                let mut resp = shares.describe(r).await;
                filter_share_describe(&ctx, &p, &mut resp);
                resp
            }),
            Request::DescribeShareGroupOffsets(r) => self.spawn(tx, h, async move {
                let mut resp = shares.describe_offsets(r).await;
                filter_share_offsets(&ctx, &p, &mut resp);
                resp
            }),
            Request::AlterShareGroupOffsets(r) => {
                self.spawn(tx, h, async move { shares.alter_offsets(r).await })
            }
            Request::DeleteShareGroupOffsets(r) => {
                self.spawn(tx, h, async move { shares.delete_offsets(r).await })
            }
            other => {
                tracing::error!(?other, "not a share-group request");
                let _ = tx.send(None);
            }
        }
    }
}

/// In a cluster: a share group's membership and offsets are served by the node coordinating
/// groups (the metadata's leader, as for consumer groups); fetches and acknowledgements by any
/// node, each partition by its leader. The coordinator moves, reads and deletes a share
/// group's start offsets through each partition's leader (`crate::cluster::calls`).
fn cluster_refusal(ctx: &super::KafkaContext, req: &Request) -> Option<i16> {
    use super::cluster::Coordination;
    use kafka_protocol::ResponseError;
    ctx.broker.cluster()?;
    if matches!(req, Request::ShareFetch(_) | Request::ShareAcknowledge(_)) {
        return None;
    }
    match super::cluster::coordination(ctx) {
        Coordination::Here => None,
        Coordination::Loading => Some(ResponseError::CoordinatorLoadInProgress.code()),
        Coordination::Elsewhere => Some(ResponseError::NotCoordinator.code()),
    }
}

impl Conn {
    /// Answers a refused share request with `code` at the top of its response.
    fn refuse_share(&self, tx: Slot, h: Header, req: Request, code: i16) {
        match req {
            Request::ShareGroupHeartbeat(_) => self.refuse(
                tx,
                h,
                ShareGroupHeartbeatResponse::default().with_error_code(code),
            ),
            Request::ShareFetch(_) => {
                self.refuse(tx, h, ShareFetchResponse::default().with_error_code(code))
            }
            Request::ShareAcknowledge(_) => self.refuse(
                tx,
                h,
                ShareAcknowledgeResponse::default().with_error_code(code),
            ),
            Request::AlterShareGroupOffsets(_) => self.refuse(
                tx,
                h,
                AlterShareGroupOffsetsResponse::default().with_error_code(code),
            ),
            Request::DeleteShareGroupOffsets(_) => {
                let resp = DeleteShareGroupOffsetsResponse::default().with_error_code(code);
                self.refuse(tx, h, resp)
            }
            other => {
                tracing::error!(?other, "not a refusable share request");
                let _ = tx.send(None);
            }
        }
    }
}
