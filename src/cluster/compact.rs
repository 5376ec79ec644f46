//! Reclaiming a replicated log's segments: a queue's acked ones, a topic partition's beyond
//! its retention.
//!
//! On a single node, segments below a queue's ack floor are deleted once the floor is durable,
//! and a topic's segments beyond its retention limits as they age or the log grows. A
//! replicated log is also its Raft log, so its segments go only through the group: its leader
//! looks every [`COMPACT_CHECK_INTERVAL`] for whole segments below its [`Floor`] whose entries
//! every replica has (each follower's last replicated index, as the leader knows it), and
//! proposes [`Command::Compact`] up to the last such entry. Every replica applies it in log
//! order: a queue acks the entry's own offset and writes its committed state as the journal's
//! snapshot, synced (`QueueHook::compact`, [`sluice_storage::Queue::persist_committed`]); the
//! replica records the entry as applied for good, and has openraft purge its log up to it
//! (whole segments).
//!
//! So a replica that is down or behind holds the compaction back: no entry leaves any log
//! before every replica has it, and no follower ever needs what a leader dropped. A queue's
//! message not acked is never in a segment that goes, since the floor bounds it.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use sluice_replication::{Command, Consensus, ReplicatedLog};
use tracing::{debug, warn};

use super::Cluster;

/// How often a replicated log's leader looks for segments to compact.
pub const COMPACT_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Below what a replicated log's segments may go.
#[derive(Clone)]
pub(super) enum Floor {
    /// A queue's committed ack floor.
    Acked {
        /// The queue.
        queue: String,
        /// The cluster, for the broker's store.
        cluster: Weak<Cluster>,
    },
    /// A topic partition's retention limits, as this node's config of the topic says.
    Retention,
}

/// Proposes the compaction of `group`'s log when this node leads it and whole segments below
/// its `floor` are on every replica. `proposed` is the last entry proposed for compaction by
/// this task, not proposed twice.
pub(super) async fn check(group: &ReplicatedLog, floor: &Floor, proposed: &mut u64) {
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
    let log = group.clone();
    let upto = match floor {
        Floor::Acked { queue, cluster } => {
            let Some(broker) = cluster.upgrade().and_then(|c| c.broker().ok()) else {
                return;
            };
            let name = queue.clone();
            crate::broker::spawn_blocking(move || -> Result<Option<u64>, String> {
                let q = broker.store().queue(&name).map_err(|e| e.to_string())?;
                let Some(floor) = q.committed_floor() else {
                    return Ok(None);
                };
                // Whole segments only: the base of the last segment starting at or below
                // the floor.
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
            .await
        }
        Floor::Retention => {
            crate::broker::spawn_blocking(move || -> Result<Option<u64>, String> {
                match log.log().retention_cut() {
                    Some(cut) => log.entry_ending_by(cut.0).map_err(|e| e.to_string()),
                    None => Ok(None),
                }
            })
            .await
        }
    };
    let what = group.group();
    let upto = match upto.map_err(|e| e.to_string()) {
        Ok(Ok(Some(upto))) => upto.min(everywhere),
        Ok(Ok(None)) => return,
        Ok(Err(e)) | Err(e) => {
            warn!(group = %what, error = %e, "cannot look for segments to compact");
            return;
        }
    };
    if upto <= done {
        return;
    }
    match group.propose(Command::Compact { upto }).await {
        Ok(_) => {
            debug!(group = %what, upto, "log compacted");
            *proposed = upto;
        }
        Err(e) => debug!(group = %what, upto, error = %e, "compaction not proposed"),
    }
}

/// On the metadata's leader, every [`COMPACT_CHECK_INTERVAL`]: once `entries` entries follow
/// the last compaction of the `meta` group's log, proposes compacting it up to the last
/// applied entry. Every node applies that by saving its metadata image (`image`); a node
/// that then lacks what its log drops is sent a snapshot. Ends with the cluster or at `stop`.
pub(super) async fn meta_loop(
    cluster: Weak<Cluster>,
    entries: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(COMPACT_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut proposed = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(c) = cluster.upgrade() else { return };
        let Some(meta) = c.meta.get().cloned() else {
            continue;
        };
        if meta.leading_term().is_none() {
            continue;
        }
        let Some(applied) = meta.status().applied_index else {
            continue;
        };
        let last = c.image_at.load(Ordering::Acquire).max(proposed);
        if applied < last + entries {
            continue;
        }
        drop(c);
        match meta.propose(Command::Compact { upto: applied }).await {
            Ok(_) => {
                debug!(upto = applied, "metadata log compacted");
                proposed = applied;
            }
            Err(e) => debug!(upto = applied, error = %e, "metadata compaction not proposed"),
        }
    }
}

/// Checks `group`'s retention every [`COMPACT_CHECK_INTERVAL`] until the group is closed (a
/// topic partition's: a queue's check runs in its proposal task).
pub(super) async fn retention_loop(group: ReplicatedLog, closed: impl Fn() -> bool) {
    let mut tick = tokio::time::interval(COMPACT_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut proposed = 0;
    loop {
        tick.tick().await;
        if closed() {
            return;
        }
        check(&group, &Floor::Retention, &mut proposed).await;
    }
}
