//! The share-group requests handed to `share/`: each runs on a task of its own (a ShareFetch
//! waits for records while the connection goes on reading), and its response takes its slot in
//! request order.

use super::codec::{Header, Request};
use super::connection::{Conn, Slot};

impl Conn {
    /// Serves one share-group request; `req` is one of the share APIs (anything else is a
    /// routing bug and gets no response).
    pub(super) fn share_request(&self, tx: Slot, h: Header, req: Request) {
        let shares = self.ctx.shares.clone();
        let client_id = h.client_id.clone().unwrap_or_default();
        let host = format!("/{}", self.peer.ip());
        match req {
            Request::ShareGroupHeartbeat(r) => self.spawn(tx, h, async move {
                shares.heartbeat(r, &client_id, &host).await
            }),
            Request::ShareFetch(r) => {
                let ended = self.ended();
                self.spawn(tx, h, async move { shares.share_fetch(r, ended).await })
            }
            Request::ShareAcknowledge(r) => {
                self.spawn(tx, h, async move { shares.share_acknowledge(r).await })
            }
            Request::ShareGroupDescribe(r) => {
                self.spawn(tx, h, async move { shares.describe(r).await })
            }
            Request::DescribeShareGroupOffsets(r) => {
                self.spawn(tx, h, async move { shares.describe_offsets(r).await })
            }
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
