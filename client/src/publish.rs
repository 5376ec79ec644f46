//! Publishing: one call is one batch, confirmed once durable; or sent at once and confirmed
//! later ([`PendingPublish`]) to pipeline batches in order.
//!
//! A batch goes to one partition of a topic. The client chooses it, as Kafka clients do: a
//! batch whose first record has a key goes to `(murmur2(key) & 0x7fffffff) % partitions`
//! (Kafka's default partitioner, see `partitioner`), a batch without a key to whichever
//! partition the server picks in turn, and [`Client::publish_to_partition`] names one. The
//! client learns a topic's partition count from the server (`TOPIC_META`) and caches it; a
//! keyed publish carries the count it was chosen with, and when partitions were added since,
//! the server refuses it (`PartitionsChanged`, nothing appended): the client then refreshes the
//! count and publishes again, to the key's new partition.
//!
//! With the nodes of a cluster as addresses, a publish refused with `NotLeader` or cut by a lost
//! connection is sent again to the next node (module `failover`): at-least-once.

use std::sync::Arc;

use sluice_format::{self as format, now_ms, Offset, Record};
use tokio::sync::oneshot;

use super::connection::Conn;
use super::failover::retriable;
use super::partitioner::partition_for_key;
use super::{unexpected, Client, ClientError, ErrorCode, Result, Target};
use crate::protocol::{Reply, Request, Route};

/// How many times a keyed publish refreshes a stale partition count before giving up.
const PARTITION_REFRESHES_MAX: u32 = 3;

/// The offsets given to a published batch, and its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    /// The partition it went to (0 for a queue).
    pub partition: u32,
    /// First offset.
    pub base_offset: u64,
    /// Last offset.
    pub last_offset: u64,
}

impl Published {
    /// The first offset.
    pub fn first(&self) -> Offset {
        Offset(self.base_offset)
    }

    /// The last offset.
    pub fn last(&self) -> Offset {
        Offset(self.last_offset)
    }

    /// The offset after the batch (where the next publish starts, what a subscriber that has
    /// read the batch commits).
    pub fn next(&self) -> Offset {
        Offset(self.last_offset + 1)
    }

    fn from_reply(r: Reply) -> Result<Published> {
        match r {
            Reply::Published {
                partition,
                base_offset,
                last_offset,
            } => Ok(Published {
                partition,
                base_offset,
                last_offset,
            }),
            r => Err(unexpected(r)),
        }
    }
}

fn non_empty(records: &[Record]) -> Result<()> {
    if records.is_empty() {
        return Err(ClientError::Unexpected(
            "a batch holds at least one record".into(),
        ));
    }
    Ok(())
}

impl Client {
    /// Publishes records as one batch to the topic, or else the queue, called `name`; returns
    /// once the batch is durable under the server's fsync policy. The batch's partition is
    /// its first record's key's (see the module documentation). Concurrent calls pipeline but
    /// may reach the server in any order; use [`Client::send_publish`] to pipeline batches
    /// while keeping their order.
    pub async fn publish(&self, name: &str, records: &[Record]) -> Result<Published> {
        self.publish_to(Target::Any(name.into()), records).await
    }

    /// Publishes records as one batch to an explicit target, on its first record's key's
    /// partition (any partition for a keyless first record).
    pub async fn publish_to(&self, target: Target, records: &[Record]) -> Result<Published> {
        non_empty(records)?;
        let batch = format::encode_batch(records, now_ms());
        let key = records[0].key.as_deref();
        let mut refreshes = 0;
        loop {
            let route = self.route(&target, key).await?;
            let req = Request::Publish {
                target: target.clone(),
                route,
                batch: batch.clone(),
            };
            match self.request(req).await {
                Err(e) if self.stale(&e, &target) && refreshes < PARTITION_REFRESHES_MAX => {
                    refreshes += 1;
                }
                r => return Published::from_reply(r?),
            }
        }
    }

    /// Publishes records as one batch to partition `partition` of topic `topic`.
    pub async fn publish_to_partition(
        &self,
        topic: &str,
        partition: u32,
        records: &[Record],
    ) -> Result<Published> {
        non_empty(records)?;
        let req = Request::Publish {
            target: Target::Topic(topic.into()),
            route: Route::Partition {
                partition,
                expected_partitions: 0,
            },
            batch: format::encode_batch(records, now_ms()),
        };
        Published::from_reply(self.request(req).await?)
    }

    /// Publishes a batch already in the storage batch layout
    /// ([`sluice_format::BatchBuilder`]) with an explicit route.
    pub async fn publish_encoded(
        &self,
        target: Target,
        route: Route,
        batch: Vec<u8>,
    ) -> Result<Published> {
        Published::from_reply(
            self.request(Request::Publish {
                target,
                route,
                batch,
            })
            .await?,
        )
    }

    /// Sends one batch and returns as soon as it is queued on the connection, before it is
    /// confirmed: batches sent this way from one task are appended in the order sent, and many
    /// can be in flight at once. Await [`PendingPublish::confirmed`] for the offsets. A keyed
    /// batch whose partition count went stale fails there with `PartitionsChanged` (the
    /// cached count is dropped, so the next send chooses again).
    pub async fn send_publish(&self, target: Target, records: &[Record]) -> Result<PendingPublish> {
        non_empty(records)?;
        let route = self.route(&target, records[0].key.as_deref()).await?;
        self.send_publish_encoded(target, route, format::encode_batch(records, now_ms()))
            .await
    }

    /// Like [`Client::send_publish`] for a batch already in the storage batch layout
    /// ([`sluice_format::BatchBuilder`]), with an explicit route.
    pub async fn send_publish_encoded(
        &self,
        target: Target,
        route: Route,
        batch: Vec<u8>,
    ) -> Result<PendingPublish> {
        let req = Request::Publish {
            target: target.clone(),
            route,
            batch,
        };
        let conn = self.live_conn().await?;
        let rx = conn.send_request(conn.next_id(), &req).await?;
        // Kept to send again elsewhere when the client fails over (a copy of the batch).
        let retry = self.inner.failover.is_some().then_some(req);
        Ok(PendingPublish {
            client: self.clone(),
            conn,
            target,
            rx,
            retry,
        })
    }

    /// The partition count of topic `name` (`None` when no topic has that name), from the
    /// cache or else the server.
    pub async fn partition_count(&self, name: &str) -> Result<Option<u32>> {
        if let Some(c) = self.inner.partitions.lock().unwrap().get(name) {
            return Ok(Some(*c));
        }
        // `topic_meta` caches what it learns; a name that is no topic (a queue, or nothing
        // yet) is not cached, so a topic made under it later is found.
        match self.topic_meta(name).await {
            Ok((_, n)) => Ok(Some(n)),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The route of a batch to `target` whose first record has `key`.
    async fn route(&self, target: &Target, key: Option<&[u8]>) -> Result<Route> {
        let (Some(key), Target::Topic(name) | Target::Any(name)) = (key, target) else {
            return Ok(Route::Any);
        };
        Ok(match self.partition_count(name).await? {
            Some(n) => Route::Partition {
                partition: partition_for_key(key, n),
                expected_partitions: n,
            },
            // A queue (or nothing: the server says which).
            None => Route::Any,
        })
    }

    /// True when `e` says the partition count used for `target` is stale; drops it from the
    /// cache.
    fn stale(&self, e: &ClientError, target: &Target) -> bool {
        let stale = e.code() == Some(ErrorCode::PartitionsChanged);
        if stale {
            self.inner.partitions.lock().unwrap().remove(target.name());
        }
        stale
    }
}

/// A batch sent by [`Client::send_publish`], awaiting its confirmation.
pub struct PendingPublish {
    client: Client,
    conn: Arc<Conn>,
    target: Target,
    rx: oneshot::Receiver<Reply>,
    /// The request, to send again on another node (failing over only).
    retry: Option<Request>,
}

impl PendingPublish {
    /// Waits until the batch is durable and returns its offsets. Failing over (several
    /// addresses), a batch refused with `NotLeader` or cut by a lost connection is sent again
    /// on the next node: it may then be appended twice, and after batches sent later.
    pub async fn confirmed(self) -> Result<Published> {
        let PendingPublish {
            client,
            conn,
            target,
            rx,
            retry,
        } = self;
        let first = match retry.is_some() {
            true => client.timed(conn.await_reply(rx)).await,
            false => conn.await_reply(rx).await,
        };
        let r = match (first, retry) {
            (Err(e), Some(req)) if retriable(&e) => {
                let req = &req;
                client
                    .retry_on(conn, e, |c| async move { c.request(req).await })
                    .await
            }
            (r, _) => r,
        };
        match r {
            Err(e) => {
                client.stale(&e, &target);
                Err(e)
            }
            Ok(r) => Published::from_reply(r),
        }
    }
}
