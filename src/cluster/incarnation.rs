//! Telling a topic or queue from another of the same name (deleted, then created again), so
//! the metadata applied again after a restart leaves the one the store holds alone: a
//! creation or deletion of the earlier one does nothing to it.
//!
//! - A topic has an id: a creation carrying another id than the store's topic, or a
//!   deletion naming another id ([`super::MetaCommand::DeleteTopicWithId`]), is of another
//!   topic.
//! - A queue has none: each replica records, in its group's directory, the metadata index of
//!   the creation that made it (`created`, a state file: magic `SLCR`, version, CRC). A
//!   creation or deletion at an index below it is of an earlier queue.
//!
//! A deleted topic's or queue's groups lose their directories (Raft vote, applied entry,
//! last compaction) with it, and a freshly created one's are cleared of any left over, so a
//! group of the same name starts afresh.

use std::sync::Arc;

use sluice_replication::GroupId;
use tracing::{info, warn};

use super::Cluster;

/// The file in a queue group's directory naming the creation that made the queue.
const CREATED_FILE: &str = "created";
const CREATED_MAGIC: [u8; 4] = *b"SLCR";

/// How a topic's creation met the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Made {
    /// Created now.
    Fresh,
    /// There already, this very topic (the metadata applied again).
    Existing,
    /// There already, another topic of that name (created again since).
    Other,
}

impl Cluster {
    /// The metadata index of the creation that made queue `name`'s replica here, when its
    /// group's directory records one.
    pub(super) fn queue_created_at(&self, name: &str) -> Option<u64> {
        let dir = self
            .node
            .group_dir(&super::queues::queue_group(name))
            .ok()?;
        let path = dir.join(CREATED_FILE);
        match sluice_replication::store::state_file::load(
            &sluice_storage::StdFs,
            &path,
            CREATED_MAGIC,
        ) {
            Ok(at) => at,
            Err(e) => {
                warn!(queue = %name, "cannot read when the queue was created: {e}");
                None
            }
        }
    }

    /// True when an entry at metadata `index` about queue `name` is about an earlier queue
    /// of that name than the one held here.
    pub(super) fn is_earlier_queue(&self, name: &str, index: u64) -> bool {
        let earlier = self.queue_created_at(name).is_some_and(|at| at > index);
        if earlier {
            info!(queue = %name, index, "metadata: an entry about an earlier queue of this name, skipped");
        }
        earlier
    }

    /// Records that queue `name`'s replica here was made by the creation at `index`.
    pub(super) fn record_queue_created(&self, name: &str, index: u64) {
        let group = super::queues::queue_group(name);
        let Ok(dir) = self.node.group_dir(&group) else {
            return;
        };
        let saved = sluice_replication::store::state_file::save(
            &sluice_storage::StdFs,
            &dir.join(CREATED_FILE),
            CREATED_MAGIC,
            &index,
        );
        if let Err(e) = saved {
            warn!(queue = %name, "cannot record when the queue was created: {e}");
        }
    }

    /// Removes the directories of `groups` (closing any open), durably.
    pub(super) async fn remove_groups(self: &Arc<Self>, groups: impl IntoIterator<Item = GroupId>) {
        for g in groups {
            if let Err(e) = self.node.remove_group(&g).await {
                warn!(group = %g, "cannot remove the group's directory: {e}");
            }
        }
    }
}
