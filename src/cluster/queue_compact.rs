//! Reclaiming a replicated queue's acked segments.
//!
//! On a single node, segments below a queue's ack floor are deleted once the floor is durable.
//! A replicated queue's log is also its Raft log, so its segments go only through the group:
//! the queue's leader looks every [`COMPACT_CHECK_INTERVAL`] for whole segments below the
//! committed ack floor whose entries every replica has (each follower's last replicated index,
//! as the leader knows it), and proposes [`Command::Compact`] up to the last such entry. Every
//! replica applies it in log order: its queue acks the entry's own offset and writes its
//! committed state as the journal's snapshot, synced (`QueueHook::compact`,
//! [`sluice_storage::Queue::persist_committed`]); the replica records the entry as applied for
//! good, and has openraft purge its log up to it (whole segments).
//!
//! So a replica that is down or behind holds the compaction back: no entry leaves any log
//! before every replica has it, and no follower ever needs what a leader dropped. A message
//! not acked is never in a segment that goes, since the floor bounds it.

use std::sync::Weak;
use std::time::Duration;

use sluice_replication::{Command, Consensus, ReplicatedLog};
use tracing::{debug, warn};

use super::Cluster;

/// How often a queue's leader looks for segments to compact.
pub const COMPACT_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Proposes the compaction of queue `queue`'s log when this node leads it and whole segments
/// below its committed ack floor are on every replica. `proposed` is the last entry proposed
/// for compaction by this task, not proposed twice.
pub(super) async fn check(
    group: &ReplicatedLog,
    queue: &str,
    cluster: &Weak<Cluster>,
    proposed: &mut u64,
) {
    if group.leading_term().is_none() {
        return;
    }
    let status = group.status();
    let Some(mut everywhere) = status.applied_index else {
        return;
    };
    for matched in status.followers.values() {
        match matched {
            Some(m) => everywhere = everywhere.min(*m),
            // A replica whose log is not known to match yet: nothing is everywhere.
            None => return,
        }
    }
    let done = (*proposed).max(status.purged_index.unwrap_or(0));
    if everywhere <= done {
        return;
    }
    let Some(broker) = cluster.upgrade().and_then(|c| c.broker().ok()) else {
        return;
    };
    let (name, log) = (queue.to_string(), group.clone());
    let upto = crate::broker::spawn_blocking(move || -> Result<Option<u64>, String> {
        let q = broker.store().queue(&name).map_err(|e| e.to_string())?;
        let Some(floor) = q.committed_floor() else {
            return Ok(None);
        };
        // Whole segments only: the base of the last segment starting at or below the floor.
        let start = log.log().start_offset().0;
        let cut = log
            .log()
            .segments()
            .iter()
            .map(|s| s.base_offset.0)
            .filter(|&b| b <= floor)
            .max()
            .unwrap_or(start);
        if cut <= start {
            return Ok(None);
        }
        log.entry_ending_by(cut).map_err(|e| e.to_string())
    })
    .await;
    let upto = match upto.map_err(|e| e.to_string()) {
        Ok(Ok(Some(upto))) => upto.min(everywhere),
        Ok(Ok(None)) => return,
        Ok(Err(e)) | Err(e) => {
            warn!(queue, error = %e, "cannot look for segments to compact");
            return;
        }
    };
    if upto <= done {
        return;
    }
    match group.propose(Command::Compact { upto }).await {
        Ok(_) => {
            debug!(queue, upto, "queue log compacted");
            *proposed = upto;
        }
        Err(e) => debug!(queue, upto, error = %e, "compaction not proposed"),
    }
}
