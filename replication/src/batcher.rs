//! Gathers the message batches submitted to one replicated log into entries of several batches.
//!
//! openraft's leader appends and syncs its entries one at a time, so a log of one batch per
//! entry costs the leader one fsync per publish, in turn, before followers see it. The batcher
//! keeps at most [`ENTRIES_IN_FLIGHT_MAX`] entries in flight; while they replicate, new
//! publishes queue, and the next entry takes all of them (up to [`ENTRY_BATCHES_MAX`] batches
//! and about [`ENTRY_BYTES_MAX`] bytes). A lone publish on an idle log goes at once, alone.
//!
//! Each batch keeps its own bytes in the log (the entry is its batches back to back, see
//! `store::entry`), and its submitter is answered with its own offsets, cut from the entry's.
//! Batches are proposed in the order they were submitted, so the publishes of one connection
//! keep their order.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use openraft::error::ClientWriteError;
use openraft::Raft;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::{Error, Result};
use crate::group::Pending;
use crate::store::entry::ENTRY_BATCHES_MAX;
use crate::types::{Applied, Command, GroupId, TypeConfig};

/// Most entries of message batches one log has proposed and not yet seen applied.
pub const ENTRIES_IN_FLIGHT_MAX: usize = 4;
/// An entry takes no more batches once it holds this many bytes (one larger batch still goes,
/// alone).
pub const ENTRY_BYTES_MAX: usize = 1 << 20;
/// Most batches waiting for an entry; a submit waits for room beyond (back-pressure).
pub const BATCHES_QUEUED_MAX: usize = 8192;

/// A batch waiting for its entry.
struct Proposal {
    batch: Bytes,
    records: u64,
    done: oneshot::Sender<Result<Applied>>,
}

/// The batcher of one replicated log. Dropping it (with the log) ends its task once the
/// queued batches are proposed.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Proposal>,
}

impl Batcher {
    /// Starts the batcher of `raft` (on the current Tokio runtime).
    pub fn start(raft: Raft<TypeConfig>, group: GroupId) -> Batcher {
        let (tx, rx) = mpsc::channel(BATCHES_QUEUED_MAX);
        tokio::spawn(run(raft, group, rx));
        Batcher { tx }
    }

    /// Queues `batch` (a stored batch, already checked) for the next entry; the outcome is its
    /// own offsets once the entry is committed and applied here.
    pub async fn submit(&self, group: &GroupId, batch: Bytes) -> Result<Pending> {
        let h = sluice_storage::format::decode_batch_header(&batch, u32::MAX)
            .map_err(|e| Error::BadEntry(format!("a batch submitted to {group}: {e}")))?;
        let (done, rx) = oneshot::channel();
        let p = Proposal {
            batch,
            records: u64::from(h.record_count),
            done,
        };
        let stopped = || Error::Consensus(format!("group {group} stopped"));
        self.tx.send(p).await.map_err(|_| stopped())?;
        let stopped = stopped();
        Ok(Box::pin(async move { rx.await.unwrap_or(Err(stopped)) }))
    }
}

/// Proposes the queued batches, each entry taking what queued while the slots were full.
async fn run(raft: Raft<TypeConfig>, group: GroupId, mut rx: mpsc::Receiver<Proposal>) {
    let slots = Arc::new(Semaphore::new(ENTRIES_IN_FLIGHT_MAX));
    let mut carried: Option<Proposal> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut gathered = vec![first];
        let mut bytes = gathered[0].batch.len();
        while gathered.len() < ENTRY_BATCHES_MAX {
            let Ok(p) = rx.try_recv() else { break };
            if bytes + p.batch.len() > ENTRY_BYTES_MAX {
                carried = Some(p);
                break;
            }
            bytes += p.batch.len();
            gathered.push(p);
        }
        let command = Command::Batch(concat(&gathered, bytes));
        match raft.client_write_ff(command).await {
            Ok(answer) => {
                let group = group.clone();
                tokio::spawn(async move {
                    let outcome = match answer.await {
                        Ok(Ok(r)) => Ok(r.data),
                        Ok(Err(e)) => Err(write_error(&group, e)),
                        Err(_) => Err(Error::Consensus(format!("group {group} stopped"))),
                    };
                    drop(slot);
                    answer_each(gathered, outcome);
                });
            }
            Err(e) => answer_each(gathered, Err(Error::Consensus(e.to_string()))),
        }
    }
}

/// The batches back to back (the one batch itself, without a copy, when alone).
fn concat(gathered: &[Proposal], bytes: usize) -> Bytes {
    if let [one] = gathered {
        return one.batch.clone();
    }
    let mut b = BytesMut::with_capacity(bytes);
    for p in gathered {
        b.extend_from_slice(&p.batch);
    }
    b.freeze()
}

/// The error a refused write answers.
pub(crate) fn write_error(group: &GroupId, e: ClientWriteError<u64, crate::types::Node>) -> Error {
    match e {
        ClientWriteError::ForwardToLeader(f) => Error::NotLeader {
            group: group.0.clone(),
            leader: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.addr),
        },
        other => Error::Consensus(other.to_string()),
    }
}

/// An error like `e`, for each batch of an entry.
fn same(e: &Error) -> Error {
    match e {
        Error::NotLeader {
            group,
            leader,
            leader_addr,
        } => Error::NotLeader {
            group: group.clone(),
            leader: *leader,
            leader_addr: leader_addr.clone(),
        },
        Error::BadEntry(m) => Error::BadEntry(m.clone()),
        other => Error::Consensus(other.to_string()),
    }
}

/// Answers each gathered batch: its own offsets, cut in order from the entry's.
fn answer_each(gathered: Vec<Proposal>, outcome: Result<Applied>) {
    let total: u64 = gathered.iter().map(|p| p.records).sum();
    let outcome = outcome.and_then(|a| {
        let stored = a.last_offset + 1 - a.base_offset;
        if stored == total {
            Ok(a)
        } else {
            Err(Error::BadEntry(format!(
                "an entry of {total} records was stored as {stored} offsets"
            )))
        }
    });
    let mut next = outcome.as_ref().map(|a| a.base_offset).unwrap_or(0);
    for p in gathered {
        let answer = match &outcome {
            Ok(_) => {
                let a = Applied {
                    base_offset: next,
                    last_offset: next + p.records - 1,
                };
                next += p.records;
                Ok(a)
            }
            Err(e) => Err(same(e)),
        };
        let _ = p.done.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(records: u64) -> (Proposal, oneshot::Receiver<Result<Applied>>) {
        let (done, rx) = oneshot::channel();
        let p = Proposal {
            batch: Bytes::new(),
            records,
            done,
        };
        (p, rx)
    }

    #[test]
    fn each_batch_is_answered_with_its_own_offsets() {
        let (ps, rxs): (Vec<_>, Vec<_>) = [3, 1, 5].into_iter().map(proposal).unzip();
        let entry = Applied {
            base_offset: 10,
            last_offset: 18,
        };
        answer_each(ps, Ok(entry));
        let got: Vec<Applied> = rxs
            .into_iter()
            .map(|mut r| r.try_recv().unwrap().unwrap())
            .collect();
        let want = [(10, 12), (13, 13), (14, 18)];
        for (g, (b, l)) in got.iter().zip(want) {
            assert_eq!((g.base_offset, g.last_offset), (b, l));
        }
    }

    #[test]
    fn an_entry_stored_as_other_offsets_fails_every_batch() {
        let (ps, rxs): (Vec<_>, Vec<_>) = [3, 1].into_iter().map(proposal).unzip();
        let entry = Applied {
            base_offset: 0,
            last_offset: 9,
        };
        answer_each(ps, Ok(entry));
        for mut r in rxs {
            assert!(matches!(r.try_recv().unwrap(), Err(Error::BadEntry(_))));
        }
    }
}
