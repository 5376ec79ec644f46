//! The native protocol's frontend: one connection's reader, ordered reply queue and writer
//! (`connection`), the routing of requests (`dispatch`), and one module per request family
//! (`publish`, `subscribe`, `consume`, `admin`), each calling the broker core
//! ([`crate::broker`]) and encoding what it returns as frames ([`crate::protocol`]).
//!
//! Structure (one connection):
//! - the *reader* (the connection task) reads frames, decodes them and dispatches requests;
//! - every request gets a *reply slot* in a bounded FIFO (`pending_requests_max`); the *replier*
//!   task forwards slots to the writer in request order as they are filled, so replies are
//!   pipelined and ordered while work (fsync, admin) runs concurrently;
//! - the *writer* task owns the socket's write half and batches frames into one flush;
//! - each subscription and consumer is a task that pushes frames straight to the writer,
//!   woken by the topic's or queue's append listener.
//!
//! Disk work (appends, syncs, reads, acks, admin) runs on `spawn_blocking` threads.

mod admin;
mod auth;
mod connection;
mod consume;
mod dispatch;
mod publish;
mod subscribe;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::broker::{BrokerError, ErrorKind};
use crate::protocol::{ErrorCode, OutFrame, ProtocolError, Reply};

pub(crate) use connection::handle_connection;
pub(crate) use connection::reject;

/// Frames queued to a connection's writer.
const WRITER_QUEUE: usize = 256;
/// Bytes of stored batches pushed to a connection's subscriptions and not yet written to its
/// socket. A subscriber that stops reading its socket (with credit left) pins at most this much
/// (plus one read) instead of `WRITER_QUEUE` batches of up to `batch_bytes_max` each.
const PUSH_BYTES_MAX: usize = 4 << 20;

/// A request failure: code and message of the `ERROR` reply.
#[derive(Debug)]
struct Fail(ErrorCode, String);

/// The native error code of a broker failure kind.
fn error_code(kind: ErrorKind) -> ErrorCode {
    match kind {
        ErrorKind::NotFound => ErrorCode::NotFound,
        ErrorKind::AlreadyExists => ErrorCode::AlreadyExists,
        ErrorKind::InvalidArgument => ErrorCode::InvalidArgument,
        ErrorKind::InvalidBatch => ErrorCode::InvalidBatch,
        ErrorKind::LimitReached => ErrorCode::LimitReached,
        ErrorKind::Storage => ErrorCode::Storage,
        ErrorKind::UnknownId => ErrorCode::UnknownId,
        ErrorKind::NotHeld => ErrorCode::NotHeld,
        ErrorKind::InUse => ErrorCode::InUse,
        ErrorKind::PartitionsChanged => ErrorCode::PartitionsChanged,
        ErrorKind::NotLeader => ErrorCode::NotLeader,
        ErrorKind::Internal => ErrorCode::Internal,
    }
}

impl From<BrokerError> for Fail {
    fn from(e: BrokerError) -> Self {
        Fail(error_code(e.kind), e.message)
    }
}

impl Fail {
    fn reply(self) -> Reply {
        Reply::error(self.0, self.1)
    }
}

/// A filled reply slot: the frame and, optionally, who to tell once it is queued to the writer.
struct Slot {
    frame: OutFrame,
    written: Option<oneshot::Sender<()>>,
}

type SlotTx = oneshot::Sender<Slot>;

fn fill(tx: SlotTx, id: u32, reply: Reply) {
    let _ = tx.send(Slot {
        frame: reply.encode(id),
        written: None,
    });
}

/// Fills the slot with `f`'s reply; a panic in `f` becomes an internal error reply rather than
/// a request that is never answered.
fn fill_catching(tx: SlotTx, id: u32, f: impl FnOnce() -> Reply) {
    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Reply::error(ErrorCode::Internal, "store task failed: it panicked"));
    fill(tx, id, reply);
}

/// Fills the slot with `reply` and waits until it is queued to the writer (so that pushes of
/// the stream it opens follow it); false when the connection is gone.
async fn fill_and_wait(tx: SlotTx, id: u32, reply: Reply) -> bool {
    let (wtx, wrx) = oneshot::channel();
    let slot = Slot {
        frame: reply.encode(id),
        written: Some(wtx),
    };
    tx.send(slot).is_ok() && wrx.await.is_ok()
}

/// How a connection ended.
enum End {
    /// Peer closed, I/O failed, or shutdown.
    Closed,
    /// A protocol violation or limit: send this error, then close.
    Fatal(u32, ErrorCode, String),
}

impl From<ProtocolError> for End {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Io(_) => End::Closed,
            ProtocolError::TooLarge { .. } => {
                End::Fatal(0, ErrorCode::FrameTooLarge, e.to_string())
            }
            // Malformed, UnknownKind, BadMagic, and any kind a newer protocol crate adds.
            _ => End::Fatal(0, ErrorCode::Malformed, e.to_string()),
        }
    }
}

/// Bytes of a frame on their way to a client, holding their share of the connection's push
/// budget until the writer has written and dropped the frame.
struct Budgeted {
    bytes: bytes::Bytes,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Counts one in-flight item: increments on creation, decrements when dropped (however the
/// holder ends).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn count(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks a subscription or consumer as ended for its connection, which then forgets it (later
/// `CREDIT`, `ACK`, `NACK` or `CANCEL` naming it answer `UnknownId`). Marked explicitly before
/// an error push (so the mark is set before the client can see the error) and on drop.
struct StreamEnd {
    ended: Arc<AtomicBool>,
    conn: Arc<AtomicBool>,
}

impl StreamEnd {
    fn mark(&self) {
        self.ended.store(true, Ordering::Release);
        self.conn.store(true, Ordering::Release);
    }
}

impl Drop for StreamEnd {
    fn drop(&mut self) {
        self.mark();
    }
}

/// Pushes an error frame for stream `id` without waiting (the stream ends with it).
fn push_error(out: &tokio::sync::mpsc::Sender<OutFrame>, id: u32, fail: Fail) {
    let _ = out.try_send(fail.reply().encode(id));
}
