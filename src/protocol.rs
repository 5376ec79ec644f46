//! The wire protocol: length-prefixed binary frames (specification: `docs/protocol.md`).
//!
//! Every integer is little-endian. A frame is
//!
//! ```text
//! // Format: { len u32 | kind u8 | request_id u32 | body [u8; len - 5] }
//! ```
//!
//! where `len` counts the bytes after itself. Strings are `{ len u16 | utf8 bytes }`, byte
//! strings `{ len u32 | bytes }`, optional values `{ present u8 (0|1) | value }`.
//!
//! Publish frames carry one batch in the storage batch layout ([`sluice_storage::format`]), so
//! the server validates and appends it without re-encoding; `Deliver` frames carry stored
//! batches as read from the log.

use std::fmt;

use bytes::Bytes;
use sluice_storage::format::{self, RecordIter};
use sluice_storage::{Header, Record};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Protocol version spoken by this crate.
pub const VERSION: u16 = 1;
/// Magic bytes at the start of a `Hello` body.
pub const MAGIC: [u8; 4] = *b"SLCE";
/// Bytes of a frame after the length prefix and before the body (`kind` + `request_id`).
pub const FRAME_HEAD_LEN: usize = 5;
/// Default largest frame (the value of `len`) either side accepts.
pub const DEFAULT_FRAME_BYTES_MAX: u32 = 16 << 20;

/// Frame kinds (the `kind` byte).
pub mod kind {
    /// Client → server: opens the session.
    pub const HELLO: u8 = 0x01;
    /// Client → server: keep-alive; answered by `PONG`.
    pub const PING: u8 = 0x02;
    /// Client → server: append one batch.
    pub const PUBLISH: u8 = 0x10;
    /// Client → server: open a subscription on a topic.
    pub const SUBSCRIBE: u8 = 0x11;
    /// Client → server: grant messages to a subscription or consumer (no reply).
    pub const CREDIT: u8 = 0x12;
    /// Client → server: store a named subscriber's offset.
    pub const COMMIT: u8 = 0x13;
    /// Client → server: close a subscription or consumer.
    pub const CANCEL: u8 = 0x14;
    /// Client → server: become a competing consumer of a queue or of a topic's group.
    pub const CONSUME: u8 = 0x20;
    /// Client → server: acknowledge deliveries.
    pub const ACK: u8 = 0x21;
    /// Client → server: return deliveries to the queue.
    pub const NACK: u8 = 0x22;
    /// Client → server: admin.
    pub const CREATE_TOPIC: u8 = 0x30;
    /// Client → server: admin.
    pub const DELETE_TOPIC: u8 = 0x31;
    /// Client → server: admin.
    pub const LIST_TOPICS: u8 = 0x32;
    /// Client → server: admin.
    pub const DESCRIBE_TOPIC: u8 = 0x33;
    /// Client → server: admin.
    pub const CREATE_QUEUE: u8 = 0x40;
    /// Client → server: admin.
    pub const DELETE_QUEUE: u8 = 0x41;
    /// Client → server: admin.
    pub const LIST_QUEUES: u8 = 0x42;
    /// Client → server: admin.
    pub const DESCRIBE_QUEUE: u8 = 0x43;

    /// Server → client: handshake accepted.
    pub const HELLO_OK: u8 = 0x81;
    /// Server → client: request done, nothing to return.
    pub const OK: u8 = 0x82;
    /// Server → client: request (or connection) failed.
    pub const ERROR: u8 = 0x83;
    /// Server → client: answer to `PING`.
    pub const PONG: u8 = 0x84;
    /// Server → client: batch is durable; its offsets.
    pub const PUBLISHED: u8 = 0x85;
    /// Server → client: subscription or consumer open.
    pub const SUBSCRIBED: u8 = 0x86;
    /// Server → client: pushed topic messages (one stored batch).
    pub const DELIVER: u8 = 0x87;
    /// Server → client: pushed queue messages.
    pub const MESSAGES: u8 = 0x88;
    /// Server → client: a list of names.
    pub const NAMES: u8 = 0x89;
    /// Server → client: topic figures.
    pub const TOPIC_INFO: u8 = 0x8A;
    /// Server → client: queue figures.
    pub const QUEUE_INFO: u8 = 0x8B;
}

/// Error codes carried by `ERROR` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// A frame could not be decoded (fatal: the connection is closed).
    Malformed = 1,
    /// The handshake's magic or version is not supported (fatal).
    UnsupportedVersion = 2,
    /// A length prefix exceeded `frame_bytes_max` (fatal).
    FrameTooLarge = 3,
    /// The named topic, queue or subscriber does not exist.
    NotFound = 4,
    /// The topic or queue already exists.
    AlreadyExists = 5,
    /// An argument was rejected.
    InvalidArgument = 6,
    /// The published batch is not valid.
    InvalidBatch = 7,
    /// A limit was exceeded (fatal for connection limits).
    LimitReached = 8,
    /// A timeout expired: handshake, idle or mid-frame (fatal).
    Timeout = 9,
    /// The storage engine failed (I/O, corruption, fail-stop).
    Storage = 10,
    /// The server is shutting down.
    ShuttingDown = 11,
    /// A request id named no open subscription or consumer.
    UnknownId = 12,
    /// Anything else.
    Internal = 13,
    /// An ack or nack named messages the consumer does not hold; the others were applied.
    NotHeld = 14,
    /// The named subscriber is held by another open subscription.
    InUse = 15,
}

impl ErrorCode {
    /// From the wire value (unknown values map to `Internal`).
    pub fn from_u16(v: u16) -> ErrorCode {
        use ErrorCode::*;
        match v {
            1 => Malformed,
            2 => UnsupportedVersion,
            3 => FrameTooLarge,
            4 => NotFound,
            5 => AlreadyExists,
            6 => InvalidArgument,
            7 => InvalidBatch,
            8 => LimitReached,
            9 => Timeout,
            10 => Storage,
            11 => ShuttingDown,
            12 => UnknownId,
            14 => NotHeld,
            15 => InUse,
            _ => Internal,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The frame body is truncated or holds an impossible value.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The length prefix is above the limit (rejected before any allocation).
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// Unknown frame kind.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// The underlying stream failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

fn malformed(what: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed(what.into())
}

/// A frame as read from the wire: kind, request id and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// The kind byte.
    pub kind: u8,
    /// The request id.
    pub request_id: u32,
    /// The body.
    pub body: Vec<u8>,
}

/// A frame ready to write: `head` (prefix, kind, id and body start) then an optional shared
/// `tail` (a stored batch, sent without copying).
#[derive(Clone, Debug)]
pub struct OutFrame {
    /// Length prefix, kind, request id and the body's first bytes.
    pub head: Vec<u8>,
    /// The rest of the body.
    pub tail: Option<Bytes>,
}

impl OutFrame {
    fn new(kind: u8, request_id: u32) -> Self {
        let mut head = Vec::with_capacity(64);
        head.extend_from_slice(&[0, 0, 0, 0, kind]);
        head.extend_from_slice(&request_id.to_le_bytes());
        OutFrame { head, tail: None }
    }

    fn finish(mut self) -> Self {
        let len = self.head.len() - 4 + self.tail.as_ref().map_or(0, |t| t.len());
        // Senders bound what they put in a frame (the server splits deliveries by size, and a
        // record is at most a batch, whose length is 32-bit): a wrapped length would corrupt the
        // stream, so it is a bug to stop at rather than to send.
        let len = u32::try_from(len).expect("a frame's length fits its 32-bit prefix");
        self.head[..4].copy_from_slice(&len.to_le_bytes());
        self
    }

    /// The value of the length prefix.
    pub fn len_field(&self) -> u32 {
        u32::from_le_bytes(self.head[..4].try_into().unwrap())
    }

    /// The whole frame as one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = self.head.clone();
        if let Some(t) = &self.tail {
            v.extend_from_slice(t);
        }
        v
    }

    fn w(&mut self) -> W<'_> {
        W(&mut self.head)
    }
}

/// Little-endian writer helpers.
struct W<'a>(&'a mut Vec<u8>);

impl W<'_> {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Format: { len u16 | utf8 }
    fn str(&mut self, s: &str) -> &mut Self {
        let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
        self.u16(b.len() as u16);
        self.0.extend_from_slice(b);
        self
    }
    /// Format: { len u32 | bytes }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    /// Format: { present u8 | u64 }
    fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).u64(v),
            None => self.u8(0),
        }
    }
    /// Format: { present u8 | str }
    fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).str(v),
            None => self.u8(0),
        }
    }
}

/// Bounds-checked little-endian reader.
struct R<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> R<'a> {
    fn new(b: &'a [u8]) -> Self {
        R { b, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| malformed(format!("truncated body at byte {}", self.pos)))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn i64(&mut self) -> Result<i64, ProtocolError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn str(&mut self) -> Result<String, ProtocolError> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| malformed("string is not UTF-8"))
    }
    fn bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn flag(&mut self) -> Result<bool, ProtocolError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(malformed(format!("flag byte {v} is neither 0 nor 1"))),
        }
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, ProtocolError> {
        Ok(if self.flag()? {
            Some(self.u64()?)
        } else {
            None
        })
    }
    fn opt_str(&mut self) -> Result<Option<String>, ProtocolError> {
        Ok(if self.flag()? {
            Some(self.str()?)
        } else {
            None
        })
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.pos..];
        self.pos = self.b.len();
        s
    }
    fn end(&self) -> Result<(), ProtocolError> {
        if self.pos != self.b.len() {
            return Err(malformed(format!(
                "{} unexpected bytes after the body",
                self.b.len() - self.pos
            )));
        }
        Ok(())
    }
}

/// What a publish appends to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A topic.
    Topic(String),
    /// A queue.
    Queue(String),
    /// A topic if one has this name, else a queue.
    Any(String),
}

impl Target {
    /// The name.
    pub fn name(&self) -> &str {
        match self {
            Target::Topic(n) | Target::Queue(n) | Target::Any(n) => n,
        }
    }
}

/// Where a subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Named: the committed offset (new subscribers start at the end). Anonymous: the end.
    Default,
    /// The log start.
    Earliest,
    /// The visible end.
    Latest,
    /// An offset.
    Offset(u64),
    /// The first message at or after a time (ms since the epoch).
    Timestamp(i64),
}

/// What a consumer consumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A queue.
    Queue(String),
    /// A consumer group over a topic.
    Group {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
    },
}

/// Optional log settings of a new topic or queue (absent: the server's defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// Segment size.
    pub segment_bytes_max: Option<u64>,
    /// Retention by size.
    pub retention_bytes: Option<u64>,
    /// Retention by age.
    pub retention_ms: Option<u64>,
}

/// Settings of a new queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueSettings {
    /// Log settings.
    pub log: LogSettings,
    /// Ack timeout.
    pub ack_timeout_ms: Option<u64>,
    /// Deliveries before dead-lettering (the server refuses a value above `u32::MAX`).
    pub max_deliveries: Option<u64>,
    /// Dead-letter queue name (`<queue>.dlq` when absent).
    pub dead_letter: Option<String>,
}

/// A request (client → server frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Opens the session; must be the first frame.
    Hello {
        /// Protocol version.
        version: u16,
        /// Free-form client name.
        client: String,
    },
    /// Keep-alive.
    Ping,
    /// Appends one batch (storage batch layout).
    Publish {
        /// Where.
        target: Target,
        /// The batch.
        batch: Vec<u8>,
    },
    /// Opens a subscription; its id is this request's id.
    Subscribe {
        /// Topic.
        topic: String,
        /// Named subscriber, or anonymous.
        name: Option<String>,
        /// Start position.
        start: Start,
        /// Initial credit in messages.
        credit: u32,
    },
    /// Adds credit to subscription or consumer `id` (no reply).
    Credit {
        /// Subscription or consumer id.
        id: u32,
        /// Messages.
        credit: u32,
    },
    /// Stores a named subscriber's next offset.
    Commit {
        /// Topic.
        topic: String,
        /// Subscriber.
        name: String,
        /// Next offset to read.
        next: u64,
    },
    /// Closes a subscription or consumer.
    Cancel {
        /// Its id.
        id: u32,
    },
    /// Becomes a competing consumer; its id is this request's id.
    Consume {
        /// Queue or group.
        source: Source,
        /// Most unacked messages held at once.
        prefetch: u32,
    },
    /// Acknowledges messages of consumer `id`.
    Ack {
        /// Consumer id.
        id: u32,
        /// Offsets.
        offsets: Vec<u64>,
    },
    /// Returns messages of consumer `id` to the queue.
    Nack {
        /// Consumer id.
        id: u32,
        /// Redelivery delay.
        delay_ms: u64,
        /// Offsets.
        offsets: Vec<u64>,
    },
    /// Admin.
    CreateTopic {
        /// Name.
        name: String,
        /// Settings.
        settings: LogSettings,
    },
    /// Admin.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// Admin.
    ListTopics,
    /// Admin.
    DescribeTopic {
        /// Name.
        name: String,
    },
    /// Admin.
    CreateQueue {
        /// Name.
        name: String,
        /// Settings.
        settings: QueueSettings,
    },
    /// Admin.
    DeleteQueue {
        /// Name.
        name: String,
    },
    /// Admin.
    ListQueues,
    /// Admin.
    DescribeQueue {
        /// Name.
        name: String,
    },
}

impl Request {
    /// The frame kind of this request.
    pub fn kind(&self) -> u8 {
        use Request::*;
        match self {
            Hello { .. } => kind::HELLO,
            Ping => kind::PING,
            Publish { .. } => kind::PUBLISH,
            Subscribe { .. } => kind::SUBSCRIBE,
            Credit { .. } => kind::CREDIT,
            Commit { .. } => kind::COMMIT,
            Cancel { .. } => kind::CANCEL,
            Consume { .. } => kind::CONSUME,
            Ack { .. } => kind::ACK,
            Nack { .. } => kind::NACK,
            CreateTopic { .. } => kind::CREATE_TOPIC,
            DeleteTopic { .. } => kind::DELETE_TOPIC,
            ListTopics => kind::LIST_TOPICS,
            DescribeTopic { .. } => kind::DESCRIBE_TOPIC,
            CreateQueue { .. } => kind::CREATE_QUEUE,
            DeleteQueue { .. } => kind::DELETE_QUEUE,
            ListQueues => kind::LIST_QUEUES,
            DescribeQueue { .. } => kind::DESCRIBE_QUEUE,
        }
    }

    /// Encodes the request as a frame with `request_id`.
    pub fn encode(&self, request_id: u32) -> OutFrame {
        let mut f = OutFrame::new(self.kind(), request_id);
        let mut w = f.w();
        match self {
            // Format: { magic [u8;4] = "SLCE" | version u16 | client str }
            Request::Hello { version, client } => {
                w.0.extend_from_slice(&MAGIC);
                w.u16(*version).str(client);
            }
            // Format: {}
            Request::Ping | Request::ListTopics | Request::ListQueues => {}
            // Format: { target u8 (0 topic, 1 queue, 2 any) | name str | batch [u8; rest] }
            Request::Publish { target, batch } => {
                let t = match target {
                    Target::Topic(_) => 0,
                    Target::Queue(_) => 1,
                    Target::Any(_) => 2,
                };
                w.u8(t).str(target.name());
                w.0.extend_from_slice(batch);
            }
            // Format: { topic str | name opt<str> | start | credit u32 }
            // start: { tag u8 (0 default, 1 earliest, 2 latest) } | { 3 u8 | offset u64 }
            //        | { 4 u8 | timestamp_ms i64 }
            Request::Subscribe {
                topic,
                name,
                start,
                credit,
            } => {
                w.str(topic).opt_str(name.as_deref());
                match start {
                    Start::Default => w.u8(0),
                    Start::Earliest => w.u8(1),
                    Start::Latest => w.u8(2),
                    Start::Offset(o) => w.u8(3).u64(*o),
                    Start::Timestamp(t) => w.u8(4).i64(*t),
                };
                w.u32(*credit);
            }
            // Format: { id u32 | credit u32 }
            Request::Credit { id, credit } => {
                w.u32(*id).u32(*credit);
            }
            // Format: { topic str | name str | next u64 }
            Request::Commit { topic, name, next } => {
                w.str(topic).str(name).u64(*next);
            }
            // Format: { id u32 }
            Request::Cancel { id } => {
                w.u32(*id);
            }
            // Format: { source | prefetch u32 }
            // source: { 0 u8 | queue str } | { 1 u8 | topic str | group str }
            Request::Consume { source, prefetch } => {
                match source {
                    Source::Queue(q) => w.u8(0).str(q),
                    Source::Group { topic, group } => w.u8(1).str(topic).str(group),
                };
                w.u32(*prefetch);
            }
            // Format: { id u32 | count u32 | offset u64 * count }
            Request::Ack { id, offsets } => {
                w.u32(*id).u32(offsets.len() as u32);
                for o in offsets {
                    w.u64(*o);
                }
            }
            // Format: { id u32 | delay_ms u64 | count u32 | offset u64 * count }
            Request::Nack {
                id,
                delay_ms,
                offsets,
            } => {
                w.u32(*id).u64(*delay_ms).u32(offsets.len() as u32);
                for o in offsets {
                    w.u64(*o);
                }
            }
            // Format: { name str | log_settings }
            Request::CreateTopic { name, settings } => {
                w.str(name);
                put_log_settings(&mut w, settings);
            }
            // Format: { name str }
            Request::DeleteTopic { name }
            | Request::DescribeTopic { name }
            | Request::DeleteQueue { name }
            | Request::DescribeQueue { name } => {
                w.str(name);
            }
            // Format: { name str | log_settings | ack_timeout_ms opt<u64> |
            //           max_deliveries opt<u64> | dead_letter opt<str> }
            Request::CreateQueue { name, settings } => {
                w.str(name);
                put_log_settings(&mut w, &settings.log);
                w.opt_u64(settings.ack_timeout_ms)
                    .opt_u64(settings.max_deliveries)
                    .opt_str(settings.dead_letter.as_deref());
            }
        }
        f.finish()
    }

    /// Decodes a request frame.
    pub fn decode(frame: &RawFrame) -> Result<Request, ProtocolError> {
        let mut r = R::new(&frame.body);
        let req = match frame.kind {
            kind::HELLO => {
                if r.take(4)? != MAGIC {
                    return Err(malformed("bad magic in HELLO"));
                }
                Request::Hello {
                    version: r.u16()?,
                    client: r.str()?,
                }
            }
            kind::PING => Request::Ping,
            kind::LIST_TOPICS => Request::ListTopics,
            kind::LIST_QUEUES => Request::ListQueues,
            kind::PUBLISH => {
                let t = r.u8()?;
                let name = r.str()?;
                let target = match t {
                    0 => Target::Topic(name),
                    1 => Target::Queue(name),
                    2 => Target::Any(name),
                    v => return Err(malformed(format!("unknown publish target {v}"))),
                };
                Request::Publish {
                    target,
                    batch: r.rest().to_vec(),
                }
            }
            kind::SUBSCRIBE => {
                let topic = r.str()?;
                let name = r.opt_str()?;
                let start = match r.u8()? {
                    0 => Start::Default,
                    1 => Start::Earliest,
                    2 => Start::Latest,
                    3 => Start::Offset(r.u64()?),
                    4 => Start::Timestamp(r.i64()?),
                    v => return Err(malformed(format!("unknown start tag {v}"))),
                };
                Request::Subscribe {
                    topic,
                    name,
                    start,
                    credit: r.u32()?,
                }
            }
            kind::CREDIT => Request::Credit {
                id: r.u32()?,
                credit: r.u32()?,
            },
            kind::COMMIT => Request::Commit {
                topic: r.str()?,
                name: r.str()?,
                next: r.u64()?,
            },
            kind::CANCEL => Request::Cancel { id: r.u32()? },
            kind::CONSUME => {
                let source = match r.u8()? {
                    0 => Source::Queue(r.str()?),
                    1 => Source::Group {
                        topic: r.str()?,
                        group: r.str()?,
                    },
                    v => return Err(malformed(format!("unknown consume source {v}"))),
                };
                Request::Consume {
                    source,
                    prefetch: r.u32()?,
                }
            }
            kind::ACK => {
                let id = r.u32()?;
                Request::Ack {
                    id,
                    offsets: get_offsets(&mut r)?,
                }
            }
            kind::NACK => {
                let id = r.u32()?;
                let delay_ms = r.u64()?;
                Request::Nack {
                    id,
                    delay_ms,
                    offsets: get_offsets(&mut r)?,
                }
            }
            kind::CREATE_TOPIC => Request::CreateTopic {
                name: r.str()?,
                settings: get_log_settings(&mut r)?,
            },
            kind::DELETE_TOPIC => Request::DeleteTopic { name: r.str()? },
            kind::DESCRIBE_TOPIC => Request::DescribeTopic { name: r.str()? },
            kind::DELETE_QUEUE => Request::DeleteQueue { name: r.str()? },
            kind::DESCRIBE_QUEUE => Request::DescribeQueue { name: r.str()? },
            kind::CREATE_QUEUE => {
                let name = r.str()?;
                let log = get_log_settings(&mut r)?;
                // Values are checked by the server (an `InvalidArgument` reply), not here: a
                // well-formed request with a bad setting does not close the connection.
                let ack_timeout_ms = r.opt_u64()?;
                let max_deliveries = r.opt_u64()?;
                Request::CreateQueue {
                    name,
                    settings: QueueSettings {
                        log,
                        ack_timeout_ms,
                        max_deliveries,
                        dead_letter: r.opt_str()?,
                    },
                }
            }
            k => return Err(ProtocolError::UnknownKind(k)),
        };
        r.end()?;
        Ok(req)
    }
}

fn get_offsets(r: &mut R<'_>) -> Result<Vec<u64>, ProtocolError> {
    let n = r.u32()? as usize;
    // Bound the allocation by what the body can hold.
    if n > (r.b.len() - r.pos) / 8 {
        return Err(malformed("offset count exceeds the body"));
    }
    (0..n).map(|_| r.u64()).collect()
}

// Format: log_settings = { segment_bytes_max opt<u64> | retention_bytes opt<u64> |
//                          retention_ms opt<u64> }
fn put_log_settings(w: &mut W<'_>, s: &LogSettings) {
    w.opt_u64(s.segment_bytes_max)
        .opt_u64(s.retention_bytes)
        .opt_u64(s.retention_ms);
}

fn get_log_settings(r: &mut R<'_>) -> Result<LogSettings, ProtocolError> {
    Ok(LogSettings {
        segment_bytes_max: r.opt_u64()?,
        retention_bytes: r.opt_u64()?,
        retention_ms: r.opt_u64()?,
    })
}

/// A message pushed to a queue consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueMessage {
    /// Offset in the queue's (or topic's) log; the handle for ack and nack.
    pub offset: u64,
    /// 1 for a first delivery.
    pub attempt: u32,
    /// The message.
    pub record: Record,
}

impl QueueMessage {
    /// Bytes of this message in a `MESSAGES` frame: fixed fields, key, every header and value.
    pub fn encoded_len(&self) -> usize {
        let r = &self.record;
        let key = r.key.as_ref().map_or(0, |k| 4 + k.len());
        let headers: usize = r
            .headers
            .iter()
            .map(|h| 8 + h.name.len() + h.value.len())
            .sum();
        MESSAGE_MIN_LEN + key + headers + r.value.len()
    }
}

/// Bytes of a `MESSAGES` frame holding no message: length prefix, kind, request id and count.
pub const MESSAGES_FRAME_OVERHEAD: usize = 4 + FRAME_HEAD_LEN + 4;

/// Most headers a message of a `MESSAGES` frame can carry (its count is 16 bits). Publishes are
/// capped well below ([`format::RECORD_HEADERS_MAX`]) and no stored record holds more
/// ([`format::STORED_RECORD_HEADERS_MAX`]).
pub const MESSAGE_HEADERS_MAX: usize = u16::MAX as usize;
const _: () = assert!(format::STORED_RECORD_HEADERS_MAX <= MESSAGE_HEADERS_MAX);

/// A named subscriber in a `TopicInfo`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SubscriberStat {
    /// Name.
    pub name: String,
    /// Next offset it reads.
    pub committed: u64,
    /// Messages behind the end.
    pub lag: u64,
}

/// Figures of a topic.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// First offset held.
    pub start_offset: u64,
    /// One past the last visible offset.
    pub end_offset: u64,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Segments.
    pub segments: u32,
    /// Named subscribers.
    pub subscribers: Vec<SubscriberStat>,
}

/// Figures of a queue.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct QueueInfo {
    /// Name.
    pub name: String,
    /// First offset held.
    pub start_offset: u64,
    /// One past the last visible offset.
    pub end_offset: u64,
    /// Every offset below is acked.
    pub ack_floor: u64,
    /// Next never-delivered offset.
    pub cursor: u64,
    /// Unacked messages.
    pub depth: u64,
    /// Delivered, not acked.
    pub in_flight: u64,
    /// Dead-lettered since creation.
    pub dead_lettered: u64,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Ack timeout.
    pub ack_timeout_ms: u64,
    /// Deliveries before dead-lettering.
    pub max_deliveries: u32,
    /// Dead-letter queue.
    pub dead_letter: String,
}

/// Bytes of the smallest `message` of a `MESSAGES` frame: offset, attempt, timestamp, an absent
/// key, no headers and an empty value.
const MESSAGE_MIN_LEN: usize = 8 + 4 + 8 + 1 + 2 + 4;

/// A reply or push (server → client frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Handshake accepted.
    HelloOk {
        /// Protocol version the server speaks.
        version: u16,
        /// Server name and version.
        server: String,
        /// Largest frame the server accepts.
        frame_bytes_max: u32,
    },
    /// Done.
    Ok,
    /// Failed.
    Error {
        /// Code.
        code: ErrorCode,
        /// Human-readable text.
        message: String,
    },
    /// Answer to `Ping`.
    Pong,
    /// A batch is durable.
    Published {
        /// First offset.
        base_offset: u64,
        /// Last offset.
        last_offset: u64,
    },
    /// A subscription or consumer is open.
    Subscribed {
        /// Subscriptions: first offset delivered. Consumers: the granted prefetch.
        value: u64,
    },
    /// Topic messages `from..to` of a stored batch.
    Deliver {
        /// First offset of the range delivered.
        from: u64,
        /// One past the last offset delivered.
        to: u64,
        /// The stored batch (may hold records outside the range: skip them).
        batch: Bytes,
    },
    /// Queue messages.
    Messages(Vec<QueueMessage>),
    /// Names.
    Names(Vec<String>),
    /// Topic figures.
    TopicInfo(TopicInfo),
    /// Queue figures.
    QueueInfo(QueueInfo),
}

impl Reply {
    /// Builds an error reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error {
            code,
            message: message.into(),
        }
    }

    /// Encodes the reply as a frame answering `request_id`.
    pub fn encode(&self, request_id: u32) -> OutFrame {
        let k = match self {
            Reply::HelloOk { .. } => kind::HELLO_OK,
            Reply::Ok => kind::OK,
            Reply::Error { .. } => kind::ERROR,
            Reply::Pong => kind::PONG,
            Reply::Published { .. } => kind::PUBLISHED,
            Reply::Subscribed { .. } => kind::SUBSCRIBED,
            Reply::Deliver { .. } => kind::DELIVER,
            Reply::Messages(_) => kind::MESSAGES,
            Reply::Names(_) => kind::NAMES,
            Reply::TopicInfo(_) => kind::TOPIC_INFO,
            Reply::QueueInfo(_) => kind::QUEUE_INFO,
        };
        let mut f = OutFrame::new(k, request_id);
        let mut w = f.w();
        match self {
            // Format: { version u16 | server str | frame_bytes_max u32 }
            Reply::HelloOk {
                version,
                server,
                frame_bytes_max,
            } => {
                w.u16(*version).str(server).u32(*frame_bytes_max);
            }
            // Format: {}
            Reply::Ok | Reply::Pong => {}
            // Format: { code u16 | message str }
            Reply::Error { code, message } => {
                w.u16(*code as u16).str(message);
            }
            // Format: { base_offset u64 | last_offset u64 }
            Reply::Published {
                base_offset,
                last_offset,
            } => {
                w.u64(*base_offset).u64(*last_offset);
            }
            // Format: { value u64 }
            Reply::Subscribed { value } => {
                w.u64(*value);
            }
            // Format: { from u64 | to u64 | batch [u8; rest] }
            Reply::Deliver { from, to, batch } => {
                w.u64(*from).u64(*to);
                f.tail = Some(batch.clone());
            }
            // Format: { count u32 | message * count }
            // message: { offset u64 | attempt u32 | timestamp_ms i64 | key opt<bytes> |
            //            header_count u16 | { name bytes | value bytes } * header_count |
            //            value bytes }
            Reply::Messages(ms) => {
                w.u32(ms.len() as u32);
                for m in ms {
                    w.u64(m.offset)
                        .u32(m.attempt)
                        .i64(m.record.timestamp_ms.unwrap_or(0));
                    match &m.record.key {
                        Some(k) => w.u8(1).bytes(k),
                        None => w.u8(0),
                    };
                    // Only a record stored before publishes were capped can hold more headers
                    // than the count carries.
                    w.u16(m.record.headers.len().min(MESSAGE_HEADERS_MAX) as u16);
                    for h in m.record.headers.iter().take(MESSAGE_HEADERS_MAX) {
                        w.bytes(&h.name).bytes(&h.value);
                    }
                    w.bytes(&m.record.value);
                }
            }
            // Format: { count u32 | name str * count }
            Reply::Names(ns) => {
                w.u32(ns.len() as u32);
                for n in ns {
                    w.str(n);
                }
            }
            // Format: { name str | start_offset u64 | end_offset u64 | size_bytes u64 |
            //           segments u32 | count u32 | { name str | committed u64 | lag u64 } * count }
            Reply::TopicInfo(t) => {
                w.str(&t.name)
                    .u64(t.start_offset)
                    .u64(t.end_offset)
                    .u64(t.size_bytes)
                    .u32(t.segments)
                    .u32(t.subscribers.len() as u32);
                for s in &t.subscribers {
                    w.str(&s.name).u64(s.committed).u64(s.lag);
                }
            }
            // Format: { name str | start_offset u64 | end_offset u64 | ack_floor u64 | cursor u64 |
            //           depth u64 | in_flight u64 | dead_lettered u64 | size_bytes u64 |
            //           ack_timeout_ms u64 | max_deliveries u32 | dead_letter str }
            Reply::QueueInfo(q) => {
                w.str(&q.name)
                    .u64(q.start_offset)
                    .u64(q.end_offset)
                    .u64(q.ack_floor)
                    .u64(q.cursor)
                    .u64(q.depth)
                    .u64(q.in_flight)
                    .u64(q.dead_lettered)
                    .u64(q.size_bytes)
                    .u64(q.ack_timeout_ms)
                    .u32(q.max_deliveries)
                    .str(&q.dead_letter);
            }
        }
        f.finish()
    }

    /// Decodes a reply frame.
    pub fn decode(frame: RawFrame) -> Result<Reply, ProtocolError> {
        let mut r = R::new(&frame.body);
        let reply = match frame.kind {
            kind::HELLO_OK => Reply::HelloOk {
                version: r.u16()?,
                server: r.str()?,
                frame_bytes_max: r.u32()?,
            },
            kind::OK => Reply::Ok,
            kind::PONG => Reply::Pong,
            kind::ERROR => Reply::Error {
                code: ErrorCode::from_u16(r.u16()?),
                message: r.str()?,
            },
            kind::PUBLISHED => Reply::Published {
                base_offset: r.u64()?,
                last_offset: r.u64()?,
            },
            kind::SUBSCRIBED => Reply::Subscribed { value: r.u64()? },
            kind::DELIVER => {
                let from = r.u64()?;
                let to = r.u64()?;
                let start = r.pos;
                // The batch stays in the frame's buffer: a slice, not a copy.
                let batch = Bytes::from(frame.body).slice(start..);
                return Ok(Reply::Deliver { from, to, batch });
            }
            kind::MESSAGES => {
                let n = r.u32()? as usize;
                // Bound the allocation by what the body can hold: a message takes at least
                // MESSAGE_MIN_LEN bytes (an empty value, no key, no headers).
                if n > frame.body.len() / MESSAGE_MIN_LEN {
                    return Err(malformed("message count exceeds the body"));
                }
                // Grown message by message: a count read off the wire sizes nothing.
                let mut ms = Vec::new();
                for _ in 0..n {
                    let offset = r.u64()?;
                    let attempt = r.u32()?;
                    let ts = r.i64()?;
                    let key = if r.flag()? {
                        Some(r.bytes()?.to_vec())
                    } else {
                        None
                    };
                    let hn = r.u16()?;
                    let mut headers = Vec::new();
                    for _ in 0..hn {
                        let name = r.bytes()?.to_vec();
                        let value = r.bytes()?.to_vec();
                        headers.push(Header { name, value });
                    }
                    let value = r.bytes()?.to_vec();
                    ms.push(QueueMessage {
                        offset,
                        attempt,
                        record: Record {
                            timestamp_ms: Some(ts),
                            key,
                            headers,
                            value,
                        },
                    });
                }
                Reply::Messages(ms)
            }
            kind::NAMES => {
                let n = r.u32()? as usize;
                if n > frame.body.len() / 2 {
                    return Err(malformed("name count exceeds the body"));
                }
                let mut names = Vec::new();
                for _ in 0..n {
                    names.push(r.str()?);
                }
                Reply::Names(names)
            }
            kind::TOPIC_INFO => {
                let name = r.str()?;
                let start_offset = r.u64()?;
                let end_offset = r.u64()?;
                let size_bytes = r.u64()?;
                let segments = r.u32()?;
                let n = r.u32()? as usize;
                if n > frame.body.len() / 18 {
                    return Err(malformed("subscriber count exceeds the body"));
                }
                let mut subscribers = Vec::new();
                for _ in 0..n {
                    subscribers.push(SubscriberStat {
                        name: r.str()?,
                        committed: r.u64()?,
                        lag: r.u64()?,
                    });
                }
                Reply::TopicInfo(TopicInfo {
                    name,
                    start_offset,
                    end_offset,
                    size_bytes,
                    segments,
                    subscribers,
                })
            }
            kind::QUEUE_INFO => Reply::QueueInfo(QueueInfo {
                name: r.str()?,
                start_offset: r.u64()?,
                end_offset: r.u64()?,
                ack_floor: r.u64()?,
                cursor: r.u64()?,
                depth: r.u64()?,
                in_flight: r.u64()?,
                dead_lettered: r.u64()?,
                size_bytes: r.u64()?,
                ack_timeout_ms: r.u64()?,
                max_deliveries: r.u32()?,
                dead_letter: r.str()?,
            }),
            k => return Err(ProtocolError::UnknownKind(k)),
        };
        r.end()?;
        Ok(reply)
    }
}

/// A topic message decoded from a `Deliver` frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its offset.
    pub offset: u64,
    /// The message (timestamp always set).
    pub record: Record,
}

/// Checks a delivered batch (length and both checksums) and returns its records in
/// `from..to`; a malformed record is an error of the same walk that decodes them, so every byte
/// is read once.
pub fn decode_delivery(from: u64, to: u64, batch: &[u8]) -> Result<Vec<Message>, ProtocolError> {
    let h = format::decode_batch_header(batch, u32::MAX).map_err(|e| malformed(e.to_string()))?;
    if h.batch_len as usize != batch.len() {
        return Err(malformed(format!(
            "delivered batch says {} bytes but {} arrived",
            h.batch_len,
            batch.len()
        )));
    }
    if !format::check_records_crc(batch, &h) {
        return Err(malformed(
            "delivered batch: records checksum mismatch".to_string(),
        ));
    }
    // Grown record by record: the counts come off the wire.
    let mut out = Vec::new();
    for r in RecordIter::new(batch, &h) {
        let r = r.map_err(malformed)?;
        if r.offset.0 >= from && r.offset.0 < to {
            out.push(Message {
                offset: r.offset.0,
                record: r.to_record(),
            });
        }
    }
    Ok(out)
}

/// Reads one frame. Returns `Ok(None)` on a clean end of stream before a frame starts. The
/// length prefix is checked against `max` before anything is allocated.
pub async fn read_frame<Rd: AsyncRead + Unpin>(
    rd: &mut Rd,
    max: u32,
) -> Result<Option<RawFrame>, ProtocolError> {
    let mut first = [0u8; 1];
    if rd.read(&mut first).await? == 0 {
        return Ok(None);
    }
    read_frame_rest(rd, first[0], max).await.map(Some)
}

/// Reads the rest of a frame whose first byte was `first`.
pub async fn read_frame_rest<Rd: AsyncRead + Unpin>(
    rd: &mut Rd,
    first: u8,
    max: u32,
) -> Result<RawFrame, ProtocolError> {
    let mut len = [first, 0, 0, 0];
    rd.read_exact(&mut len[1..]).await?;
    let len = u32::from_le_bytes(len);
    check_len(len, max)?;
    let mut head = [0u8; FRAME_HEAD_LEN];
    rd.read_exact(&mut head).await?;
    let mut body = vec![0u8; len as usize - FRAME_HEAD_LEN];
    rd.read_exact(&mut body).await?;
    Ok(RawFrame {
        kind: head[0],
        request_id: u32::from_le_bytes(head[1..5].try_into().unwrap()),
        body,
    })
}

/// Checks a length prefix.
pub fn check_len(len: u32, max: u32) -> Result<(), ProtocolError> {
    if len > max {
        return Err(ProtocolError::TooLarge { len, max });
    }
    if (len as usize) < FRAME_HEAD_LEN {
        return Err(malformed(format!(
            "length prefix {len} is below the {FRAME_HEAD_LEN}-byte frame head"
        )));
    }
    Ok(())
}

/// Splits an encoded frame into a [`RawFrame`] (for tests and in-memory use).
pub fn parse_frame(bytes: &[u8], max: u32) -> Result<RawFrame, ProtocolError> {
    if bytes.len() < 4 + FRAME_HEAD_LEN {
        return Err(malformed("short frame"));
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    check_len(len, max)?;
    if bytes.len() != 4 + len as usize {
        return Err(malformed("length prefix does not match the frame"));
    }
    Ok(RawFrame {
        kind: bytes[4],
        request_id: u32::from_le_bytes(bytes[5..9].try_into().unwrap()),
        body: bytes[9..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt_req(r: Request) {
        let f = r.encode(42).to_vec();
        let raw = parse_frame(&f, u32::MAX).unwrap();
        assert_eq!(raw.request_id, 42);
        assert_eq!(Request::decode(&raw).unwrap(), r);
        // Every strict prefix of the body fails cleanly (no panic), except where the tail is a
        // free-length byte run.
        for cut in 0..raw.body.len() {
            let short = RawFrame {
                body: raw.body[..cut].to_vec(),
                ..raw.clone()
            };
            let _ = Request::decode(&short);
        }
    }

    fn rt_reply(r: Reply) {
        let f = r.encode(7).to_vec();
        let raw = parse_frame(&f, u32::MAX).unwrap();
        assert_eq!(raw.request_id, 7);
        assert_eq!(Reply::decode(raw.clone()).unwrap(), r);
        for cut in 0..raw.body.len() {
            let _ = Reply::decode(RawFrame {
                body: raw.body[..cut].to_vec(),
                ..raw.clone()
            });
        }
    }

    #[test]
    fn requests_round_trip() {
        let batch = format::encode_batch(&[Record::from_value("x")], 5);
        for r in [
            Request::Hello {
                version: VERSION,
                client: "t".into(),
            },
            Request::Ping,
            Request::Publish {
                target: Target::Queue("q".into()),
                batch,
            },
            Request::Subscribe {
                topic: "t".into(),
                name: Some("s".into()),
                start: Start::Timestamp(-5),
                credit: 10,
            },
            Request::Subscribe {
                topic: "t".into(),
                name: None,
                start: Start::Offset(3),
                credit: 0,
            },
            Request::Credit { id: 3, credit: 9 },
            Request::Commit {
                topic: "t".into(),
                name: "n".into(),
                next: 99,
            },
            Request::Cancel { id: 1 },
            Request::Consume {
                source: Source::Group {
                    topic: "t".into(),
                    group: "g".into(),
                },
                prefetch: 5,
            },
            Request::Ack {
                id: 2,
                offsets: vec![1, 2, 3],
            },
            Request::Nack {
                id: 2,
                delay_ms: 10,
                offsets: vec![7],
            },
            Request::CreateTopic {
                name: "t".into(),
                settings: LogSettings {
                    segment_bytes_max: Some(1 << 20),
                    retention_bytes: None,
                    retention_ms: Some(5),
                },
            },
            Request::CreateQueue {
                name: "q".into(),
                settings: QueueSettings {
                    log: LogSettings::default(),
                    ack_timeout_ms: Some(100),
                    max_deliveries: Some(3),
                    dead_letter: Some("dead".into()),
                },
            },
            Request::DeleteTopic { name: "a".into() },
            Request::DescribeQueue { name: "b".into() },
            Request::ListTopics,
            Request::ListQueues,
        ] {
            rt_req(r);
        }
    }

    #[test]
    fn replies_round_trip() {
        let mut batch = format::encode_batch(
            &[
                Record::from_value("a"),
                Record::from_value("b"),
                Record::from_value("c"),
            ],
            5,
        );
        format::set_base_offset(&mut batch, sluice_storage::Offset(10));
        for r in [
            Reply::HelloOk {
                version: 1,
                server: "s".into(),
                frame_bytes_max: 9,
            },
            Reply::Ok,
            Reply::Pong,
            Reply::error(ErrorCode::NotFound, "nope"),
            Reply::Published {
                base_offset: 1,
                last_offset: 4,
            },
            Reply::Subscribed { value: 8 },
            Reply::Deliver {
                from: 11,
                to: 13,
                batch: Bytes::from(batch.clone()),
            },
            Reply::Messages(vec![QueueMessage {
                offset: 5,
                attempt: 2,
                record: Record {
                    timestamp_ms: Some(77),
                    key: Some(b"k".to_vec()),
                    headers: vec![Header::new("h", "v")],
                    value: vec![0, 159, 146, 150],
                },
            }]),
            Reply::Names(vec!["a".into(), "b".into()]),
            Reply::TopicInfo(TopicInfo {
                name: "t".into(),
                start_offset: 0,
                end_offset: 5,
                size_bytes: 100,
                segments: 1,
                subscribers: vec![SubscriberStat {
                    name: "s".into(),
                    committed: 3,
                    lag: 2,
                }],
            }),
            Reply::QueueInfo(QueueInfo {
                name: "q".into(),
                start_offset: 0,
                end_offset: 1,
                ack_floor: 0,
                cursor: 1,
                depth: 1,
                in_flight: 1,
                dead_lettered: 0,
                size_bytes: 70,
                ack_timeout_ms: 30_000,
                max_deliveries: 5,
                dead_letter: "q.dlq".into(),
            }),
        ] {
            rt_reply(r);
        }
        let ms = decode_delivery(11, 13, &batch).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].offset, 11);
        assert_eq!(ms[1].record.value, b"c");
    }

    #[test]
    fn every_error_code_round_trips() {
        for v in (1..=13u16).chain([15]) {
            assert_eq!(ErrorCode::from_u16(v) as u16, v);
        }
        assert_eq!(ErrorCode::from_u16(16), ErrorCode::Internal);
    }

    #[test]
    fn encoded_len_is_the_exact_size_of_a_message_in_a_frame() {
        let m = |key: Option<Vec<u8>>, headers: Vec<Header>, value: usize| QueueMessage {
            offset: 9,
            attempt: 1,
            record: Record {
                timestamp_ms: Some(5),
                key,
                headers,
                value: vec![7; value],
            },
        };
        let ms = [
            m(None, vec![], 0),
            m(Some(vec![]), vec![Header::default()], 3),
            m(
                Some(vec![1; 300]),
                vec![Header::new("a", vec![2; 500]); 7],
                1000,
            ),
        ];
        for k in 0..=ms.len() {
            let part = ms[..k].to_vec();
            let want: usize = part.iter().map(QueueMessage::encoded_len).sum();
            let f = Reply::Messages(part).encode(1).to_vec();
            assert_eq!(f.len(), MESSAGES_FRAME_OVERHEAD + want);
        }
    }

    #[test]
    fn messages_of_empty_and_tiny_values_decode() {
        // Many smallest messages in one frame: the count bound must not refuse them.
        for len in 0..4 {
            for n in 1..40 {
                let ms = (0..n)
                    .map(|i| QueueMessage {
                        offset: i,
                        attempt: 1,
                        record: Record {
                            timestamp_ms: Some(0),
                            key: None,
                            headers: vec![],
                            value: vec![b'x'; len],
                        },
                    })
                    .collect();
                rt_reply(Reply::Messages(ms));
            }
        }
    }

    #[test]
    fn garbage_is_rejected_not_panicking() {
        assert!(matches!(
            Request::decode(&RawFrame {
                kind: 0x7f,
                request_id: 1,
                body: vec![]
            }),
            Err(ProtocolError::UnknownKind(0x7f))
        ));
        let mut seed = 0x1234_5678u64;
        for _ in 0..2000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let len = (seed >> 59) as usize;
            let body: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
            let kind = (seed >> 8) as u8;
            let _ = Request::decode(&RawFrame {
                kind,
                request_id: 0,
                body: body.clone(),
            });
            let _ = Reply::decode(RawFrame {
                kind,
                request_id: 0,
                body,
            });
        }
        // Huge counts do not allocate.
        let mut f = Request::Ack {
            id: 1,
            offsets: vec![],
        }
        .encode(1)
        .to_vec();
        f[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        let raw = parse_frame(&f, 1 << 20).unwrap();
        assert!(Request::decode(&raw).is_err());
    }

    #[tokio::test]
    async fn oversized_length_prefix_is_rejected_before_reading() {
        let mut bytes: &[u8] = &[0xff, 0xff, 0xff, 0x7f, 1, 2, 3];
        match read_frame(&mut bytes, 1 << 20).await {
            Err(ProtocolError::TooLarge { len, max }) => {
                assert_eq!(len, 0x7fff_ffff);
                assert_eq!(max, 1 << 20);
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut short: &[u8] = &[2, 0, 0, 0, 1, 2];
        assert!(matches!(
            read_frame(&mut short, 1 << 20).await,
            Err(ProtocolError::Malformed(_))
        ));
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, 10).await.unwrap().is_none());
        let ping = Request::Ping.encode(5).to_vec();
        let mut rd: &[u8] = &ping;
        let f = read_frame(&mut rd, 1 << 20).await.unwrap().unwrap();
        assert_eq!(Request::decode(&f).unwrap(), Request::Ping);
    }
}
