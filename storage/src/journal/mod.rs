//! An append-only, checksummed state journal with group commit, periodic snapshots and
//! generations: the durable home of subscriber offsets and of queue ack state.
//!
//! A state directory holds, for one `prefix`:
//! ```text
//! <prefix>.snapshot                 the last snapshot; names the journal generation that follows it
//! <prefix>.<gen as 16 hex>.journal  the records written since that snapshot
//! ```
//! Byte layouts (all integers little-endian; spec in `docs/format-state.md`):
//! ```text
//! journal header (24 B): { magic [u8;8] | version u16 | reserved u16 | generation u64 | crc u32 }
//!                        crc covers the 20 bytes before it
//! journal record:        { len u32 | crc u32 | kind u8 | payload [u8; len-1] }
//!                        len counts kind + payload; crc covers len, kind and payload
//! snapshot:              { magic [u8;8] | version u16 | reserved u16 | generation u64 |
//!                          body_len u32 | crc u32 | body [u8; body_len] }
//!                        crc covers the 24 header bytes before it and the body
//! ```
//! Writers append records under their own state lock (a pwrite into the page cache) and then
//! call [`Journal::sync_to`] outside it: the first caller becomes the group-commit leader and
//! syncs once for every record appended meanwhile. Positions handed out are *logical*: they keep
//! growing across generations, so a waiter whose record went into a journal that a snapshot has
//! since replaced is covered by that snapshot.
//!
//! A snapshot switches generation: the next journal file is created with its header and synced,
//! the directory synced, then the snapshot naming that generation is written atomically (temporary
//! file, fsync, rename, directory fsync), and only then is the old journal removed. A crash at
//! any point leaves either the old snapshot with its complete journal, or the new snapshot with
//! an empty (or valid) journal.
//!
//! Recovery reads the snapshot, replays the journal of its generation up to the first short or
//! bad record, cuts the file there and syncs the cut (a torn tail can only hold records whose
//! writers were never told they were durable).
//!
//! # Layout
//! - `format`: the byte layouts: file names, journal header, records, snapshot.
//! - `load`: reading a state directory without changing it ([`examine`], [`load`]), shared by
//!   recovery and `sluice inspect`.
//! - `writer`: the open [`Journal`]: append, group-commit sync, preallocation, snapshots.

mod format;
mod load;
#[cfg(test)]
mod tests;
mod writer;

use std::sync::{Mutex, MutexGuard};

pub use format::*;
pub use load::*;
pub use writer::*;

/// Version of the journal and snapshot layouts written. Version 2 added the ack-state run
/// records (kinds 5-7); the framing, the offsets records and the snapshot bodies are unchanged.
/// Version 3 added the offsets record COMMIT_PARTITION (kind 3: partition and metadata) and a
/// new offsets snapshot body with them; ack state and the framing are unchanged. Version 4
/// added the ack-state record RESET (kind 8: the cursor moved, a replicated queue's purge).
pub const STATE_VERSION: u16 = 4;
/// Oldest version still read.
pub const STATE_VERSION_MIN: u16 = 1;

/// True for a layout version this build reads.
pub fn version_supported(v: u16) -> bool {
    (STATE_VERSION_MIN..=STATE_VERSION).contains(&v)
}
/// Length of the journal file header.
pub const JOURNAL_HEADER_LEN: usize = 24;
/// Length of the snapshot header (before the body).
pub const SNAPSHOT_HEADER_LEN: usize = 28;
/// Largest record accepted (kind + payload).
pub const RECORD_MAX: u32 = 64 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
