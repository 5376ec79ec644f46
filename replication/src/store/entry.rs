//! A Raft entry as stored batches and back.
//!
//! A [`Command::Batch`] is stored as the batches it carries, back to back. A blank entry, a
//! membership change and a [`Command::Control`] are stored as one control batch whose one record
//! holds a postcard [`ControlEntry`]. Either way every batch is stamped with the entry's log id
//! and how many of its batches follow ([`format::set_raft_stamp`]), so the stored log alone
//! gives back every entry, and a torn entry (some of its batches only) is recognised.

use bytes::Bytes;
use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};
use serde::{Deserialize, Serialize};
use sluice_storage::format::{self, RaftStamp};
use sluice_storage::{now_ms, Batch};

use crate::error::{Error, Result};
use crate::types::{Command, Node, NodeId, TypeConfig};

/// The most batches one entry holds.
pub const ENTRY_BATCHES_MAX: usize = 1024;
const _: () = assert!(ENTRY_BATCHES_MAX <= format::RAFT_MORE_MAX as usize + 1);

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
    /// [`Command::Compact`]: entries up to this index may leave every replica's log.
    Compact(u64),
}

/// The log id of a stamp.
pub fn log_id(stamp: RaftStamp) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(stamp.term, 0), stamp.index)
}

/// The stamp of a log id's batch that `more` batches of the same entry follow.
pub fn stamp(id: &LogId<NodeId>, more: u16) -> RaftStamp {
    RaftStamp {
        term: id.leader_id.term,
        index: id.index,
        more,
    }
}

/// The batches back to back in `bytes`, each checked to have a whole header and its length.
pub fn split_batches(bytes: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let h = format::decode_batch_header(rest, u32::MAX)
            .map_err(|e| Error::BadEntry(format!("batch {} of an entry: {e}", out.len())))?;
        let len = h.batch_len as usize;
        if len < format::BATCH_HEADER_LEN || len > rest.len() {
            return Err(Error::BadEntry(format!(
                "batch {} of an entry claims {len} bytes, {} remain",
                out.len(),
                rest.len()
            )));
        }
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    if out.is_empty() || out.len() > ENTRY_BATCHES_MAX {
        return Err(Error::BadEntry(format!(
            "an entry holds {} batches (1 to {ENTRY_BATCHES_MAX})",
            out.len()
        )));
    }
    Ok(out)
}

/// The batches that store `entry`, each stamped with its log id.
pub fn to_batches(entry: &Entry) -> Result<Vec<Vec<u8>>> {
    let control = match &entry.payload {
        EntryPayload::Normal(Command::Batch(_)) => None,
        EntryPayload::Normal(Command::Control(b)) => Some(ControlEntry::Control(b.clone())),
        EntryPayload::Normal(Command::Compact { upto }) => Some(ControlEntry::Compact(*upto)),
        EntryPayload::Blank => Some(ControlEntry::Blank),
        EntryPayload::Membership(m) => Some(ControlEntry::Membership(m.clone())),
    };
    let mut batches = match (control, &entry.payload) {
        (Some(c), _) => {
            let payload = postcard::to_allocvec(&c)
                .map_err(|e| Error::BadEntry(format!("cannot encode a control entry: {e}")))?;
            vec![format::encode_control_batch(&payload, now_ms())]
        }
        (None, EntryPayload::Normal(Command::Batch(b))) => {
            split_batches(b)?.into_iter().map(<[u8]>::to_vec).collect()
        }
        (None, _) => unreachable!("only message batches are stored as they are"),
    };
    let n = batches.len();
    for (i, batch) in batches.iter_mut().enumerate() {
        let more = (n - 1 - i) as u16;
        format::set_raft_stamp(batch, stamp(&entry.log_id, more))
            .map_err(|e| Error::BadEntry(format!("entry {}: {e}", entry.log_id)))?;
    }
    Ok(batches)
}

/// The entry stored as `batches` (all of it: the last one's stamp has no more to follow).
pub fn from_batches(batches: &[Batch]) -> Result<Entry> {
    let (first, last) = match (batches.first(), batches.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Err(Error::BadEntry("an entry of no batch".into())),
    };
    let s = stamp_of(first)?;
    for (i, b) in batches.iter().enumerate() {
        let t = stamp_of(b)?;
        let want = (batches.len() - 1 - i) as u16;
        let control_part = batches.len() > 1 && b.header.is_control();
        if (t.term, t.index, t.more) != (s.term, s.index, want) || control_part {
            return Err(Error::BadEntry(format!(
                "the batch at {} does not continue entry {} ({t:?})",
                b.header.base_offset, s.index
            )));
        }
    }
    if batches.len() == 1 {
        return from_batch(first);
    }
    let mut bytes = Vec::with_capacity(batches.iter().map(|b| b.bytes.len()).sum());
    for b in batches {
        bytes.extend_from_slice(&b.bytes);
    }
    debug_assert_eq!(stamp_of(last)?.more, 0);
    Ok(Entry {
        log_id: log_id(s),
        payload: EntryPayload::Normal(Command::Batch(bytes.into())),
    })
}

/// The entry a stored batch holds, when it is the whole entry.
pub fn from_batch(batch: &Batch) -> Result<Entry> {
    let stamp = stamp_of(batch)?;
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
            Ok(ControlEntry::Compact(upto)) => EntryPayload::Normal(Command::Compact { upto }),
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
