//! `PUBLISH`: appends a batch and confirms it once durable, inline for a small publish of a
//! client waiting for each confirm, else on the blocking pool with syncs shared (group commit).

use crate::broker::spawn_blocking;
use sluice_storage::FsyncPolicy;
use tokio::sync::oneshot;

use super::connection::Conn;
use super::{fill, fill_catching, End, Fail, InFlight};
use crate::broker::{self, Published};
use crate::protocol::{ErrorCode, Reply, Route, Target};

fn published(partition: u32, r: broker::Result<Published>) -> Reply {
    match r {
        Ok(p) => Reply::Published {
            partition,
            base_offset: p.base_offset.0,
            last_offset: p.last_offset.0,
        },
        Err(e) => Fail::from(e).reply(),
    }
}

impl Conn {
    pub(super) async fn publish(
        &mut self,
        id: u32,
        target: Target,
        route: Route,
        batch: Vec<u8>,
    ) -> Result<(), End> {
        let tx = self.slot().await?;
        // Anonymous connections have no quota: no throttle is built on their hot path.
        if self.auth.principal != crate::security::Principal::Anonymous {
            let owed = self
                .throttle()
                .record(crate::security::Direction::Produce, batch.len());
            if !owed.is_zero() {
                self.throttle_until = Some(tokio::time::Instant::now() + owed);
            }
        }
        let (partition, log) = match self.broker.resolve_target(&target, route) {
            Ok(l) => l,
            Err(e) => {
                fill(tx, id, Fail::from(e).reply());
                return Ok(());
            }
        };
        if let Some(cluster) = self.broker.cluster().cloned() {
            // A replicated partition: confirmed once a majority has it on disk. Proposals of
            // one connection may complete out of order, each in its own slot.
            let to_queue = match &target {
                Target::Queue(_) => true,
                Target::Topic(_) => false,
                Target::Any(n) => !self.broker.store().has_topic(n),
            };
            let pending = if to_queue {
                cluster.submit_queue_publish(target.name(), batch).await
            } else {
                cluster
                    .submit_publish(target.name(), partition, batch)
                    .await
            };
            tokio::spawn(async move {
                let r = match pending {
                    Ok(confirm) => confirm.await,
                    Err(e) => Err(e),
                };
                fill(tx, id, published(partition, r));
            });
            drop(log);
            return Ok(());
        }
        let always = log.config().fsync == FsyncPolicy::Always;
        if always && self.can_sync_inline {
            if let Some(_held) = self.broker.try_inline_sync(batch.len()) {
                fill_catching(tx, id, || {
                    published(partition, broker::publish(&log, batch, true, || {}))
                });
                return Ok(());
            }
        }
        // One blocking call appends and then, under `always`, joins the group commit and
        // fills the reply itself. The connection reads on as soon as the append is in
        // place, so appends of one connection stay in order while their syncs overlap,
        // and the confirm leaves the thread that made it durable without another hop.
        let (appended_tx, appended) = oneshot::channel::<()>();
        let in_flight = InFlight::count(&self.publishing);
        spawn_blocking(move || {
            fill_catching(tx, id, || {
                let reply = published(
                    partition,
                    broker::publish(&log, batch, always, || {
                        let _ = appended_tx.send(());
                    }),
                );
                drop(in_flight);
                reply
            })
        });
        if appended.await.is_err() {
            return Err(End::Fatal(
                id,
                ErrorCode::Internal,
                "the append task failed".into(),
            ));
        }
        Ok(())
    }
}
