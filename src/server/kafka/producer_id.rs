//! InitProducerId for idempotent producers (the Java client's default): a producer id this data
//! directory never handed out before (`Store::new_producer_id`, durable before it is answered)
//! with epoch 0; a producer that asks again with its id and epoch (KIP-360, after a sequence
//! error) gets the same id with the next epoch, which fences its older epoch, or a new id once
//! the epoch would overflow. Transactional ids are refused: transactions are not served. In a
//! cluster a node's ids carry its node id in their high bits, so no two nodes hand out the same.
//!
//! The sequence checks themselves are the storage engine's (`Log::append_idempotent`), per
//! partition, called by `produce`.

use crate::broker::spawn_blocking;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::codec::Header;
use super::connection::{Conn, Slot};
use super::dispatch::respond;
use super::KafkaContext;

/// The id and epoch to hand out; blocking (a new id may be a durable write).
fn allocate(ctx: &KafkaContext, req: &InitProducerIdRequest) -> Result<(i64, i16), i16> {
    match &req.transactional_id {
        None => {}
        // As Kafka answers an empty transactional id.
        Some(t) if t.is_empty() => return Err(ResponseError::InvalidRequest.code()),
        Some(_) => return Err(ResponseError::TransactionalIdAuthorizationFailed.code()),
    }
    let (id, epoch) = (req.producer_id.0, req.producer_epoch);
    if id >= 0 && (0..i16::MAX - 1).contains(&epoch) {
        return Ok((id, epoch + 1));
    }
    let id = ctx.broker.store().new_producer_id().and_then(|local| {
        // In a cluster each node hands out ids of its own (its node id in the high bits).
        match ctx.broker.cluster() {
            None => Ok(local),
            Some(c) => crate::cluster::producers::cluster_producer_id(c.node_id(), local)
                .ok_or_else(|| {
                    sluice_storage::Error::LimitReached(format!(
                        "node {} has handed out every producer id it may",
                        c.node_id()
                    ))
                }),
        }
    });
    match id {
        Ok(id) => Ok((id, 0)),
        Err(e) => {
            tracing::error!("cannot hand out a producer id: {e}");
            Err(ResponseError::KafkaStorageError.code())
        }
    }
}

impl Conn {
    pub(super) fn init_producer_id(&self, tx: Slot, h: Header, req: InitProducerIdRequest) {
        let ctx = self.ctx.clone();
        spawn_blocking(move || {
            let mut resp = InitProducerIdResponse::default();
            match allocate(&ctx, &req) {
                Ok((id, epoch)) => {
                    resp.producer_id = ProducerId(id);
                    resp.producer_epoch = epoch;
                }
                Err(code) => {
                    resp.error_code = code;
                    resp.producer_id = ProducerId(-1);
                    resp.producer_epoch = -1;
                }
            }
            respond(ctx.broker.metrics(), tx, &h, &resp);
        });
    }
}
