//! Requests: client → server frames.

use super::codec::{R, W};
use super::error::{malformed, ProtocolError};
use super::frame::{OutFrame, RawFrame};
use super::security::SecurityRequest;
use super::settings::{LogSettings, QueueSettings, Route, Source, Start, Target};
use super::{kind, MAGIC};

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
        /// Which partition of a topic.
        route: Route,
        /// The batch.
        batch: Vec<u8>,
    },
    /// Opens a subscription; its id is this request's id.
    Subscribe {
        /// Topic.
        topic: String,
        /// Named subscriber, or anonymous.
        name: Option<String>,
        /// The partitions to read (empty: every partition).
        partitions: Vec<u32>,
        /// Start position (on each partition).
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
        /// Partition.
        partition: u32,
        /// Next offset to read.
        next: u64,
        /// Stored with the offset (at most 4096 bytes; empty for none).
        metadata: Vec<u8>,
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
        /// (partition, offset) of each message.
        offsets: Vec<(u32, u64)>,
    },
    /// Returns messages of consumer `id` to the queue.
    Nack {
        /// Consumer id.
        id: u32,
        /// Redelivery delay.
        delay_ms: u64,
        /// (partition, offset) of each message.
        offsets: Vec<(u32, u64)>,
    },
    /// Admin.
    CreateTopic {
        /// Name.
        name: String,
        /// Settings.
        settings: LogSettings,
        /// Partitions (absent: 1).
        partitions: Option<u32>,
    },
    /// Admin: grows a topic to `partitions` partitions.
    AlterTopic {
        /// Name.
        name: String,
        /// The new partition count (above the current one).
        partitions: u32,
    },
    /// A topic's id and partition count.
    TopicMeta {
        /// Name.
        name: String,
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
    /// Admin: the answering node's view of its cluster.
    ClusterStatus,
    /// Admin: adds a node to the cluster (every group gains a replica on it).
    ClusterAddNode {
        /// The new node's id.
        id: u64,
        /// Its cluster listener, `host:port`.
        addr: String,
    },
    /// Admin: removes a node from the cluster (every group drops its replica there).
    ClusterRemoveNode {
        /// The node's id.
        id: u64,
    },
    /// Admin: sets the replication factor of every partition of a topic, or of a queue
    /// (`Target::Any` is refused); the replicas then move in the background.
    ClusterSetReplicas {
        /// The topic or queue.
        target: Target,
        /// Its replicas from now on (1 to the cluster's nodes).
        replicas: u32,
    },
    /// Authentication, users and access rules.
    Security(SecurityRequest),
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
            AlterTopic { .. } => kind::ALTER_TOPIC,
            TopicMeta { .. } => kind::TOPIC_META,
            CreateQueue { .. } => kind::CREATE_QUEUE,
            DeleteQueue { .. } => kind::DELETE_QUEUE,
            ListQueues => kind::LIST_QUEUES,
            DescribeQueue { .. } => kind::DESCRIBE_QUEUE,
            ClusterStatus => kind::CLUSTER_STATUS,
            ClusterAddNode { .. } => kind::CLUSTER_ADD_NODE,
            ClusterRemoveNode { .. } => kind::CLUSTER_REMOVE_NODE,
            ClusterSetReplicas { .. } => kind::CLUSTER_SET_REPLICAS,
            Security(s) => s.kind(),
        }
    }

    /// Encodes the request as a frame with `request_id`.
    ///
    /// Longer than most functions on purpose: one short arm per frame kind, each next to its
    /// `Format:` line, so the whole wire layout of this direction reads in one place and an
    /// encoder and its decoder can be compared arm by arm.
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
            Request::Ping | Request::ListTopics | Request::ListQueues | Request::ClusterStatus => {}
            // Format: { id u64 | addr str }
            Request::ClusterAddNode { id, addr } => {
                w.u64(*id).str(addr);
            }
            // Format: { id u64 }
            Request::ClusterRemoveNode { id } => {
                w.u64(*id);
            }
            // Format: { target u8 (0 topic, 1 queue) | name str | replicas u32 }
            Request::ClusterSetReplicas { target, replicas } => {
                let t = match target {
                    Target::Topic(_) => 0,
                    Target::Queue(_) => 1,
                    Target::Any(_) => 2,
                };
                w.u8(t).str(target.name()).u32(*replicas);
            }
            // Format: { target u8 (0 topic, 1 queue, 2 any) | name str | route | batch [u8; rest] }
            // route: { 0 u8 } (any) | { 1 u8 | partition u32 | expected_partitions u32 }
            Request::Publish {
                target,
                route,
                batch,
            } => {
                let t = match target {
                    Target::Topic(_) => 0,
                    Target::Queue(_) => 1,
                    Target::Any(_) => 2,
                };
                w.u8(t).str(target.name());
                match route {
                    Route::Any => w.u8(0),
                    Route::Partition {
                        partition,
                        expected_partitions,
                    } => w.u8(1).u32(*partition).u32(*expected_partitions),
                };
                w.0.extend_from_slice(batch);
            }
            // Format: { topic str | name opt<str> | count u32 | partition u32 * count | start |
            //           credit u32 }   (count 0: every partition)
            // start: { tag u8 (0 default, 1 earliest, 2 latest) } | { 3 u8 | offset u64 }
            //        | { 4 u8 | timestamp_ms i64 }
            Request::Subscribe {
                topic,
                name,
                partitions,
                start,
                credit,
            } => {
                w.str(topic).opt_str(name.as_deref());
                w.u32(partitions.len() as u32);
                for p in partitions {
                    w.u32(*p);
                }
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
            // Format: { topic str | name str | partition u32 | next u64 | metadata bytes }
            Request::Commit {
                topic,
                name,
                partition,
                next,
                metadata,
            } => {
                w.str(topic)
                    .str(name)
                    .u32(*partition)
                    .u64(*next)
                    .bytes(metadata);
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
            // Format: { id u32 | count u32 | { partition u32 | offset u64 } * count }
            Request::Ack { id, offsets } => {
                w.u32(*id);
                put_offsets(&mut w, offsets);
            }
            // Format: { id u32 | delay_ms u64 | count u32 | { partition u32 | offset u64 } * count }
            Request::Nack {
                id,
                delay_ms,
                offsets,
            } => {
                w.u32(*id).u64(*delay_ms);
                put_offsets(&mut w, offsets);
            }
            // Format: { name str | log_settings | partitions opt<u32> | [replicas u32] }
            // (replicas only when given: a frame without it is the older form)
            Request::CreateTopic {
                name,
                settings,
                partitions,
            } => {
                w.str(name);
                put_log_settings(&mut w, settings);
                match partitions {
                    Some(p) => w.u8(1).u32(*p),
                    None => w.u8(0),
                };
                if let Some(r) = settings.replicas {
                    w.u32(r);
                }
            }
            // Format: { name str | partitions u32 }
            Request::AlterTopic { name, partitions } => {
                w.str(name).u32(*partitions);
            }
            // Format: { name str }
            Request::DeleteTopic { name }
            | Request::DescribeTopic { name }
            | Request::TopicMeta { name }
            | Request::DeleteQueue { name }
            | Request::DescribeQueue { name } => {
                w.str(name);
            }
            // Format: { name str | log_settings | ack_timeout_ms opt<u64> |
            //           max_deliveries opt<u64> | dead_letter opt<str> | [replicas u32] }
            Request::CreateQueue { name, settings } => {
                w.str(name);
                put_log_settings(&mut w, &settings.log);
                w.opt_u64(settings.ack_timeout_ms)
                    .opt_u64(settings.max_deliveries)
                    .opt_str(settings.dead_letter.as_deref());
                // Only when given: a frame without it is the older form.
                if let Some(r) = settings.log.replicas {
                    w.u32(r);
                }
            }
            // Format: see `security.rs`.
            Request::Security(s) => s.encode_body(&mut w),
        }
        f.finish()
    }

    /// Decodes a request frame.
    ///
    /// Longer than most functions on purpose: one short arm per frame kind, each next to its
    /// `Format:` line, so the whole wire layout of this direction reads in one place and an
    /// encoder and its decoder can be compared arm by arm.
    pub fn decode(frame: &RawFrame) -> Result<Request, ProtocolError> {
        let mut r = R::new(&frame.body);
        let req = match frame.kind {
            kind::HELLO => {
                let magic = r.take(4)?;
                if magic != MAGIC {
                    let mut m = [0u8; 4];
                    m.copy_from_slice(magic);
                    return Err(ProtocolError::BadMagic(m));
                }
                Request::Hello {
                    version: r.u16()?,
                    client: r.str()?,
                }
            }
            kind::PING => Request::Ping,
            kind::LIST_TOPICS => Request::ListTopics,
            kind::LIST_QUEUES => Request::ListQueues,
            kind::CLUSTER_STATUS => Request::ClusterStatus,
            kind::CLUSTER_ADD_NODE => Request::ClusterAddNode {
                id: r.u64()?,
                addr: r.str()?,
            },
            kind::CLUSTER_REMOVE_NODE => Request::ClusterRemoveNode { id: r.u64()? },
            kind::CLUSTER_SET_REPLICAS => {
                let t = r.u8()?;
                let name = r.str()?;
                let target = match t {
                    0 => Target::Topic(name),
                    1 => Target::Queue(name),
                    v => return Err(malformed(format!("unknown replicas target {v}"))),
                };
                Request::ClusterSetReplicas {
                    target,
                    replicas: r.u32()?,
                }
            }
            kind::PUBLISH => {
                let t = r.u8()?;
                let name = r.str()?;
                let target = match t {
                    0 => Target::Topic(name),
                    1 => Target::Queue(name),
                    2 => Target::Any(name),
                    v => return Err(malformed(format!("unknown publish target {v}"))),
                };
                let route = match r.u8()? {
                    0 => Route::Any,
                    1 => Route::Partition {
                        partition: r.u32()?,
                        expected_partitions: r.u32()?,
                    },
                    v => return Err(malformed(format!("unknown publish route {v}"))),
                };
                Request::Publish {
                    target,
                    route,
                    batch: r.rest().to_vec(),
                }
            }
            kind::SUBSCRIBE => {
                let topic = r.str()?;
                let name = r.opt_str()?;
                let n = r.u32()? as usize;
                if n > (r.b.len() - r.pos) / 4 {
                    return Err(malformed("partition count exceeds the body"));
                }
                let partitions = (0..n).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
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
                    partitions,
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
                partition: r.u32()?,
                next: r.u64()?,
                metadata: r.bytes()?.to_vec(),
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
            kind::CREATE_TOPIC => {
                let name = r.str()?;
                let mut settings = get_log_settings(&mut r)?;
                let partitions = if r.flag()? { Some(r.u32()?) } else { None };
                if !r.at_end() {
                    settings.replicas = Some(r.u32()?);
                }
                Request::CreateTopic {
                    name,
                    settings,
                    partitions,
                }
            }
            kind::ALTER_TOPIC => Request::AlterTopic {
                name: r.str()?,
                partitions: r.u32()?,
            },
            kind::TOPIC_META => Request::TopicMeta { name: r.str()? },
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
                let dead_letter = r.opt_str()?;
                let replicas = if r.at_end() { None } else { Some(r.u32()?) };
                Request::CreateQueue {
                    name,
                    settings: QueueSettings {
                        log: LogSettings { replicas, ..log },
                        ack_timeout_ms,
                        max_deliveries,
                        dead_letter,
                    },
                }
            }
            k => match SecurityRequest::decode(k, &mut r)? {
                Some(s) => Request::Security(s),
                None => return Err(ProtocolError::UnknownKind(k)),
            },
        };
        r.end()?;
        Ok(req)
    }
}

// Format: { count u32 | { partition u32 | offset u64 } * count }
fn put_offsets(w: &mut W<'_>, offsets: &[(u32, u64)]) {
    w.u32(offsets.len() as u32);
    for (p, o) in offsets {
        w.u32(*p).u64(*o);
    }
}

fn get_offsets(r: &mut R<'_>) -> Result<Vec<(u32, u64)>, ProtocolError> {
    let n = r.u32()? as usize;
    // Bound the allocation by what the body can hold.
    if n > (r.b.len() - r.pos) / 12 {
        return Err(malformed("offset count exceeds the body"));
    }
    (0..n).map(|_| Ok((r.u32()?, r.u64()?))).collect()
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
        replicas: None,
    })
}
