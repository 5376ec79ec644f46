//! A Raft entry as a stored batch and back.
//!
//! A [`Command::Batch`] is stored as the batch it carries. A blank entry, a membership change and
//! a [`Command::Control`] are stored as a control batch whose one record holds a postcard
//! [`ControlEntry`]. Either way the entry's log id is stamped into the batch
//! ([`format::set_raft_stamp`]), so the stored log alone gives back every entry.

use bytes::Bytes;
use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};
use serde::{Deserialize, Serialize};
use sluice_storage::format::{self, RaftStamp};
use sluice_storage::{now_ms, Batch};

use crate::error::{Error, Result};
use crate::types::{Command, Node, NodeId, TypeConfig};

/// An entry of a replicated log.
pub type Entry = openraft::Entry<TypeConfig>;

/// What a control batch of a replicated log holds.
#[derive(Debug, Serialize, Deserialize)]
enum ControlEntry {
    /// A new leader's first entry.
    Blank,
    /// A membership change.
    Membership(Membership<NodeId, Node>),
    /// A control record of the broker (queue acks, group commits, metadata).
    Control(Bytes),
}

/// The log id of a stamp.
pub fn log_id(stamp: RaftStamp) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(stamp.term, 0), stamp.index)
}

/// The stamp of a log id.
pub fn stamp(id: &LogId<NodeId>) -> RaftStamp {
    RaftStamp {
        term: id.leader_id.term,
        index: id.index,
    }
}

/// The batch that stores `entry`, stamped with its log id.
pub fn to_batch(entry: &Entry) -> Result<Vec<u8>> {
    let control = match &entry.payload {
        EntryPayload::Normal(Command::Batch(_)) => None,
        EntryPayload::Normal(Command::Control(b)) => Some(ControlEntry::Control(b.clone())),
        EntryPayload::Blank => Some(ControlEntry::Blank),
        EntryPayload::Membership(m) => Some(ControlEntry::Membership(m.clone())),
    };
    let mut batch = match (control, &entry.payload) {
        (Some(c), _) => {
            let payload = postcard::to_allocvec(&c)
                .map_err(|e| Error::BadEntry(format!("cannot encode a control entry: {e}")))?;
            format::encode_control_batch(&payload, now_ms())
        }
        (None, EntryPayload::Normal(Command::Batch(b))) => b.to_vec(),
        (None, _) => unreachable!("only message batches are stored as they are"),
    };
    format::set_raft_stamp(&mut batch, stamp(&entry.log_id))
        .map_err(|e| Error::BadEntry(format!("entry {}: {e}", entry.log_id)))?;
    Ok(batch)
}

/// The entry a stored batch holds.
pub fn from_batch(batch: &Batch) -> Result<Entry> {
    let stamp = format::raft_stamp(&batch.bytes, &batch.header).ok_or_else(|| {
        Error::BadEntry(format!(
            "the batch at {} carries no Raft stamp",
            batch.header.base_offset
        ))
    })?;
    let payload = if batch.header.is_control() {
        let bytes = format::control_payload(&batch.bytes, &batch.header).ok_or_else(|| {
            Error::BadEntry(format!(
                "control batch at {} is malformed",
                batch.header.base_offset
            ))
        })?;
        match postcard::from_bytes::<ControlEntry>(&bytes) {
            Ok(ControlEntry::Blank) => EntryPayload::Blank,
            Ok(ControlEntry::Membership(m)) => EntryPayload::Membership(m),
            Ok(ControlEntry::Control(b)) => EntryPayload::Normal(Command::Control(b)),
            Err(e) => {
                return Err(Error::BadEntry(format!(
                    "control batch at {}: {e}",
                    batch.header.base_offset
                )))
            }
        }
    } else {
        EntryPayload::Normal(Command::Batch(batch.bytes.clone()))
    };
    Ok(Entry {
        log_id: log_id(stamp),
        payload,
    })
}

/// The stamp of a stored batch, or an error naming where it is missing.
pub fn stamp_of(batch: &Batch) -> Result<RaftStamp> {
    format::raft_stamp(&batch.bytes, &batch.header).ok_or_else(|| {
        Error::BadEntry(format!(
            "the batch at {} carries no Raft stamp",
            batch.header.base_offset
        ))
    })
}
