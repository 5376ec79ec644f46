//! Replies and pushes: server → client frames, and the figures they carry.

use bytes::Bytes;
use sluice_format::{Header, Record};

use super::cluster::ClusterStatus;
use super::codec::R;
use super::error::{malformed, ErrorCode, ProtocolError};
use super::frame::{OutFrame, RawFrame};
use super::kind;
use super::message::{QueueMessage, MESSAGE_HEADERS_MAX, MESSAGE_MIN_LEN};
use super::security::SecurityReply;
use super::settings::{PartitionInfo, QueueInfo, SubscriberStat, TopicInfo};

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
        /// The partition it went to (0 for a queue).
        partition: u32,
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
    /// A subscription is open: the partitions it reads and where it starts on each.
    Positions(Vec<(u32, u64)>),
    /// Topic messages `from..to` of a stored batch.
    Deliver {
        /// The partition.
        partition: u32,
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
    /// A topic's id and partition count.
    TopicMeta {
        /// Its id (16 bytes, a UUID).
        id: [u8; 16],
        /// Its partition count.
        partitions: u32,
    },
    /// A cluster node's view of the cluster.
    ClusterStatus(ClusterStatus),
    /// Authentication, users and access rules.
    Security(SecurityReply),
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
    ///
    /// Longer than most functions on purpose: one short arm per frame kind, each next to its
    /// `Format:` line, so the whole wire layout of this direction reads in one place and an
    /// encoder and its decoder can be compared arm by arm.
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
            Reply::TopicMeta { .. } => kind::TOPIC_METADATA,
            Reply::Positions(_) => kind::POSITIONS,
            Reply::ClusterStatus(_) => kind::CLUSTER_STATE,
            Reply::Security(s) => s.kind(),
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
            // Format: { partition u32 | base_offset u64 | last_offset u64 }
            Reply::Published {
                partition,
                base_offset,
                last_offset,
            } => {
                w.u32(*partition).u64(*base_offset).u64(*last_offset);
            }
            // Format: { count u32 | { partition u32 | next u64 } * count }
            Reply::Positions(ps) => {
                w.u32(ps.len() as u32);
                for (p, o) in ps {
                    w.u32(*p).u64(*o);
                }
            }
            // Format: { id [u8;16] | partitions u32 }
            Reply::TopicMeta { id, partitions } => {
                w.0.extend_from_slice(id);
                w.u32(*partitions);
            }
            // Format: { value u64 }
            Reply::Subscribed { value } => {
                w.u64(*value);
            }
            // Format: { partition u32 | from u64 | to u64 | batch [u8; rest] }
            Reply::Deliver {
                partition,
                from,
                to,
                batch,
            } => {
                w.u32(*partition).u64(*from).u64(*to);
                f.tail = Some(batch.clone());
            }
            // Format: { count u32 | message * count }
            // message: { partition u32 | offset u64 | attempt u32 | timestamp_ms i64 | key opt<bytes> |
            //            header_count u16 | { name bytes | value bytes } * header_count |
            //            value bytes }
            Reply::Messages(ms) => {
                w.u32(ms.len() as u32);
                for m in ms {
                    w.u32(m.partition)
                        .u64(m.offset)
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
            // Format: { name str | id str | count u32 | partition_info * count }
            // partition_info: { partition u32 | start_offset u64 | end_offset u64 |
            //                   size_bytes u64 | segments u32 | count u32 |
            //                   { name str | committed u64 | lag u64 } * count }
            Reply::TopicInfo(t) => {
                w.str(&t.name).str(&t.id).u32(t.partitions.len() as u32);
                for p in &t.partitions {
                    w.u32(p.partition)
                        .u64(p.start_offset)
                        .u64(p.end_offset)
                        .u64(p.size_bytes)
                        .u32(p.segments)
                        .u32(p.subscribers.len() as u32);
                    for s in &p.subscribers {
                        w.str(&s.name).u64(s.committed).u64(s.lag);
                    }
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
            // Format: see `cluster.rs`.
            Reply::ClusterStatus(c) => c.encode_body(&mut w),
            // Format: see `security.rs`.
            Reply::Security(s) => s.encode_body(&mut w),
        }
        f.finish()
    }

    /// Decodes a reply frame.
    ///
    /// Longer than most functions on purpose: one short arm per frame kind, each next to its
    /// `Format:` line, so the whole wire layout of this direction reads in one place and an
    /// encoder and its decoder can be compared arm by arm.
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
                partition: r.u32()?,
                base_offset: r.u64()?,
                last_offset: r.u64()?,
            },
            kind::POSITIONS => {
                let n = r.u32()? as usize;
                if n > frame.body.len() / 12 {
                    return Err(malformed("partition count exceeds the body"));
                }
                let mut ps = Vec::new();
                for _ in 0..n {
                    ps.push((r.u32()?, r.u64()?));
                }
                Reply::Positions(ps)
            }
            kind::TOPIC_METADATA => {
                let mut id = [0u8; 16];
                id.copy_from_slice(r.take(16)?);
                Reply::TopicMeta {
                    id,
                    partitions: r.u32()?,
                }
            }
            kind::SUBSCRIBED => Reply::Subscribed { value: r.u64()? },
            kind::DELIVER => {
                let partition = r.u32()?;
                let from = r.u64()?;
                let to = r.u64()?;
                let start = r.pos;
                // The batch stays in the frame's buffer: a slice, not a copy.
                let batch = Bytes::from(frame.body).slice(start..);
                return Ok(Reply::Deliver {
                    partition,
                    from,
                    to,
                    batch,
                });
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
                    let partition = r.u32()?;
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
                        partition,
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
                let id = r.str()?;
                let n = r.u32()? as usize;
                if n > frame.body.len() / 36 {
                    return Err(malformed("partition count exceeds the body"));
                }
                let mut partitions = Vec::new();
                for _ in 0..n {
                    partitions.push(get_partition_info(&mut r, frame.body.len())?);
                }
                Reply::TopicInfo(TopicInfo {
                    name,
                    id,
                    partitions,
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
            kind::CLUSTER_STATE => Reply::ClusterStatus(ClusterStatus::decode(&mut r)?),
            k => match SecurityReply::decode(k, &mut r)? {
                Some(s) => Reply::Security(s),
                None => return Err(ProtocolError::UnknownKind(k)),
            },
        };
        r.end()?;
        Ok(reply)
    }
}

fn get_partition_info(r: &mut R<'_>, body_len: usize) -> Result<PartitionInfo, ProtocolError> {
    let partition = r.u32()?;
    let start_offset = r.u64()?;
    let end_offset = r.u64()?;
    let size_bytes = r.u64()?;
    let segments = r.u32()?;
    let n = r.u32()? as usize;
    if n > body_len / 18 {
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
    Ok(PartitionInfo {
        partition,
        start_offset,
        end_offset,
        size_bytes,
        segments,
        subscribers,
    })
}
