//! Idempotent Kafka producers on a replicated partition: the leader checks each batch of a
//! producer id against the producer's last batches **before** it proposes it, since a batch
//! proposed is in the log for good (the log is the Raft log).
//!
//! Each partition has a [`ProducerGate`]: the storage's `ProducerTable` of the producers whose
//! batches are at the end of the log, valid for one term of one leader. A batch is recorded in
//! it when it is proposed (offsets not known yet) and settled with its offsets once committed.
//! A retry of a committed batch is answered with the offsets it was first given; a retry of one
//! still in flight, or found in the log past its commit point, is refused with a retriable
//! error (the producer sends it again, and by then it is committed); a batch out of sequence or of a fenced epoch is refused. The table is
//! rebuilt from the log (uncommitted entries included: the leader's own tail) whenever the
//! term or the leader changed, or a proposal failed (its fate is then unknown, and only the log
//! says whether it is there).
//!
//! The table only ever reflects this leader's log: after a failover the new leader rebuilds it
//! from its own log, which holds every committed batch, so a producer retrying a batch that
//! was confirmed by the old leader gets its offsets, not a second copy.

use std::sync::{Arc, Mutex};

use sluice_replication::{Consensus, ReplicatedLog};
use sluice_storage::{Offset, ProducerBatch, ProducerError, ProducerTable, Verdict};

use crate::broker::{BrokerError, Published};

/// The offsets of a batch recorded when proposed, before they are known.
const IN_FLIGHT: Offset = Offset(u64::MAX);

/// Why an idempotent producer's batch is not proposed.
#[derive(Debug)]
pub enum GateError {
    /// Out of sequence, or of a fenced epoch.
    Producer(ProducerError),
    /// A retry of a batch still being replicated: send it again shortly.
    InFlight,
    /// The log could not be read, or this node does not lead.
    Broker(BrokerError),
}

/// The producers of one replicated partition, as its leader checks them.
#[derive(Default)]
pub struct ProducerGate {
    state: Mutex<Option<Valid>>,
}

/// A table and the (term, leader) it is valid for.
struct Valid {
    term: u64,
    table: ProducerTable,
}

/// What the gate decided for a batch.
pub enum Admitted {
    /// Propose it; settle it with [`ProducerGate::settle`] or [`ProducerGate::forget`].
    New,
    /// A retry of a committed batch: these are its offsets.
    Duplicate(Published),
}

impl ProducerGate {
    /// Checks `p` against the producers of `log` and, when it is new, records it as in flight.
    /// The caller proposes it while holding nothing: the order of proposals is the batcher's,
    /// and a producer has one batch of a sequence in flight at a time per partition.
    pub fn admit(&self, log: &ReplicatedLog, p: &ProducerBatch) -> Result<Admitted, GateError> {
        let status = log.status();
        if !status.is_leader {
            return Err(GateError::Broker(BrokerError::new(
                crate::broker::ErrorKind::NotLeader,
                format!("this node does not lead {}", status.group),
            )));
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.as_ref().is_some_and(|v| v.term == status.term) {
            let table = log
                .log()
                .producer_table_to_end()
                .map_err(|e| GateError::Broker(e.into()))?;
            *state = Some(Valid {
                term: status.term,
                table,
            });
        }
        let valid = state.as_mut().expect("set above");
        match valid.table.check(p).map_err(GateError::Producer)? {
            Verdict::Duplicate { base, .. } if base == IN_FLIGHT => Err(GateError::InFlight),
            // Found in the log past its commit point (a new leader's table holds its
            // uncommitted tail): not confirmed until committed.
            Verdict::Duplicate { last, .. } if last >= log.log().visible_end() => {
                Err(GateError::InFlight)
            }
            Verdict::Duplicate { base, last } => Ok(Admitted::Duplicate(Published {
                base_offset: base,
                last_offset: last,
            })),
            Verdict::Append => {
                valid.table.record(p, IN_FLIGHT, IN_FLIGHT);
                Ok(Admitted::New)
            }
        }
    }

    /// Records the offsets a batch admitted as new was committed at.
    pub fn settle(&self, p: &ProducerBatch, at: &Published) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = state.as_mut() {
            v.table.settle(p, at.base_offset, at.last_offset);
        }
    }

    /// A proposal failed, its fate unknown: the table is rebuilt from the log at the next
    /// batch.
    pub fn forget(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The gates of a node's partitions.
pub type Gates = Mutex<std::collections::HashMap<(String, u32), Arc<ProducerGate>>>;

/// Bits of a cluster producer id below its node id: each node hands out ids from its own
/// store's block in the low 44 bits, its node id above them, so two nodes never hand out the
/// same id (about 17.6 trillion ids per node, node ids up to 2^19 - 1).
pub const PRODUCER_ID_NODE_SHIFT: u32 = 44;

/// The producer id node `node` hands out for its store's `local` id; `None` when either does
/// not fit.
pub fn cluster_producer_id(node: u64, local: i64) -> Option<i64> {
    let local = u64::try_from(local).ok()?;
    if local >> PRODUCER_ID_NODE_SHIFT != 0 || node >> (63 - PRODUCER_ID_NODE_SHIFT) != 0 {
        return None;
    }
    i64::try_from(node << PRODUCER_ID_NODE_SHIFT | local).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_ids_of_two_nodes_never_meet() {
        assert_eq!(cluster_producer_id(1, 0), Some(1 << 44));
        assert_ne!(cluster_producer_id(1, 7), cluster_producer_id(2, 7));
        assert_eq!(cluster_producer_id(3, 5).map(|id| id >> 44), Some(3));
        let top = (1i64 << 44) - 1;
        assert!(cluster_producer_id(1, top).unwrap() < cluster_producer_id(2, 0).unwrap());
        assert_eq!(cluster_producer_id(1, 1 << 44), None);
        assert_eq!(cluster_producer_id(1, -1), None);
        assert_eq!(cluster_producer_id(1 << 19, 0), None);
        assert!(cluster_producer_id((1 << 19) - 1, top).unwrap() > 0);
    }
}
