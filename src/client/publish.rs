//! Publishing: one call is one batch, confirmed once durable; or sent at once and confirmed
//! later ([`PendingPublish`]) to pipeline batches in order.

use sluice_storage::{format, now_ms, Offset, Record};
use tokio::sync::oneshot;

use super::{unexpected, Client, ClientError, Result, Target};
use crate::protocol::{Reply, Request};

/// The offsets given to a published batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Published {
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
                base_offset,
                last_offset,
            } => Ok(Published {
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
    /// once the batch is durable under the server's fsync policy. Concurrent calls pipeline but
    /// may reach the server in any order; use [`Client::send_publish`] to pipeline batches
    /// while keeping their order.
    pub async fn publish(&self, name: &str, records: &[Record]) -> Result<Published> {
        self.publish_to(Target::Any(name.into()), records).await
    }

    /// Publishes records as one batch to an explicit target.
    pub async fn publish_to(&self, target: Target, records: &[Record]) -> Result<Published> {
        non_empty(records)?;
        self.publish_encoded(target, format::encode_batch(records, now_ms()))
            .await
    }

    /// Publishes a batch already in the storage batch layout
    /// ([`sluice_storage::format::BatchBuilder`]).
    pub async fn publish_encoded(&self, target: Target, batch: Vec<u8>) -> Result<Published> {
        Published::from_reply(self.request(Request::Publish { target, batch }).await?)
    }

    /// Sends one batch and returns as soon as it is queued on the connection, before it is
    /// confirmed: batches sent this way from one task are appended in the order sent, and many
    /// can be in flight at once. Await [`PendingPublish::confirmed`] for the offsets.
    pub async fn send_publish(&self, target: Target, records: &[Record]) -> Result<PendingPublish> {
        non_empty(records)?;
        self.send_publish_encoded(target, format::encode_batch(records, now_ms()))
            .await
    }

    /// Like [`Client::send_publish`] for a batch already in the storage batch layout
    /// ([`sluice_storage::format::BatchBuilder`]).
    pub async fn send_publish_encoded(
        &self,
        target: Target,
        batch: Vec<u8>,
    ) -> Result<PendingPublish> {
        let id = self.next_id();
        let rx = self
            .send_request(id, Request::Publish { target, batch })
            .await?;
        Ok(PendingPublish {
            client: self.clone(),
            rx,
        })
    }
}

/// A batch sent by [`Client::send_publish`], awaiting its confirmation.
pub struct PendingPublish {
    client: Client,
    rx: oneshot::Receiver<Reply>,
}

impl PendingPublish {
    /// Waits until the batch is durable and returns its offsets.
    pub async fn confirmed(self) -> Result<Published> {
        Published::from_reply(self.client.await_reply(self.rx).await?)
    }
}
