//! The cluster metadata: one replicated log, `meta`, of every node, whose control entries are
//! [`MetaCommand`]s. Applying one changes this node's store: a topic created through the
//! metadata is created on every node, with a replicated log for each of its partitions.
//!
//! The metadata state lives in the store (the topics themselves), so applying is idempotent and
//! the `meta` group applies its whole log again after a restart.

use serde::{Deserialize, Serialize};

/// A change of the cluster metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Create a topic on every node.
    CreateTopic {
        /// Its name.
        name: String,
        /// Its partitions.
        partitions: u32,
        /// Segment size, when not the default.
        segment_bytes_max: Option<u64>,
    },
    /// Delete a topic on every node.
    DeleteTopic {
        /// Its name.
        name: String,
    },
}

impl MetaCommand {
    /// The postcard bytes of a control entry.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a metadata command encodes")
    }

    /// Decodes a control entry of `meta`.
    pub fn decode(bytes: &[u8]) -> Result<MetaCommand, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}
