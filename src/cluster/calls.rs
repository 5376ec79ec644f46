//! What one node asks of another on behalf of a client: the node coordinating groups (the
//! metadata's leader) moves a Kafka share group's start offset on each partition, or reads
//! it, through the partition's leader, the one node whose group state is current and the only
//! one that may change it (a move is a RESET change proposed to the partition's log); and a
//! node describing a partition or queue it holds no replica of asks its leader for the figures.
//!
//! A call travels as a `sluice-replication` call ([`sluice_replication::calls`]): its payload
//! is a version byte then a postcard [`NodeCall`]; the answer a version byte then a postcard
//! [`Answer`]. A call to this node's own partition takes the same path without the network.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_replication::{BoxFuture, CallError, CallHandler, Consensus};
use sluice_storage::{Error as StoreError, Offset, QueueConfig};

use super::Cluster;
use crate::broker::QueueView;
use crate::protocol::{PartitionInfo, QueueInfo};

/// Version byte that starts every call and answer.
const CALL_VERSION: u8 = 1;

/// Longest wait for a partition's leader to do what was asked (a RESET committed).
pub const GROUP_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for a leader's figures of a partition or queue (a describe).
pub const FIGURES_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Most partitions whose figures one call asks for (their answer stays well below
/// `CALL_PAYLOAD_BYTES_MAX`); a topic's others go in more calls, side by side.
pub const FIGURES_PARTITIONS_PER_CALL: usize = 64;

/// One request of a node to a partition's leader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeCall {
    /// Move `group`'s cursor on `topic`'s `partition` to `offset` (clamped to the log),
    /// making the group with `config` if the partition has none of that name yet.
    ResetGroup {
        /// The topic.
        topic: String,
        /// The consumer (share) group.
        group: String,
        /// The group's settings if it is made here.
        config: QueueConfig,
        /// The partition.
        partition: u32,
        /// The new start offset.
        offset: u64,
    },
    /// `group`'s start offset (its ack floor) on `topic`'s `partition`; `None` when the
    /// group has no state there.
    GroupStart {
        /// The topic.
        topic: String,
        /// The consumer (share) group.
        group: String,
        /// The partition.
        partition: u32,
    },
    /// The figures of those of `topic`'s `partitions` the node called leads (a describe on
    /// a node holding no replica of them).
    PartitionFigures {
        /// The topic.
        topic: String,
        /// The partitions, at most [`FIGURES_PARTITIONS_PER_CALL`].
        partitions: Vec<u32>,
    },
    /// The figures of queue `queue` (a describe on a node holding no replica).
    QueueFigures {
        /// The queue.
        queue: String,
    },
    /// Commit a forget entry of `group` to `topic`'s `partition` (`cluster::forget`).
    ForgetGroup {
        /// The topic.
        topic: String,
        /// The consumer (share) group.
        group: String,
        /// The partition.
        partition: u32,
    },
    /// How many records of `group` on `topic`'s `partition` consumers hold (`cluster::forget`
    /// asks every partition before it changes any).
    GroupHeld {
        /// The topic.
        topic: String,
        /// The consumer (share) group.
        group: String,
        /// The partition.
        partition: u32,
    },
}

/// A partition leader's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// Done (a [`NodeCall::ResetGroup`] committed).
    Done,
    /// The answer to [`NodeCall::GroupStart`].
    Start(Option<u64>),
    /// Not done, and why.
    Refused(Refusal),
    /// The answer to [`NodeCall::PartitionFigures`]: each partition asked that the node
    /// leads.
    Partitions(Vec<PartitionInfo>),
    /// The answer to [`NodeCall::QueueFigures`].
    Queue(QueueFigures),
    /// The answer to [`NodeCall::GroupHeld`]: records held (0 when the group has no state
    /// there).
    Held(u64),
}

/// A queue's figures as its leader has them: [`QueueView`]'s fields, in an order postcard can
/// carry (the view flattens its `info` for JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueFigures {
    info: QueueInfo,
    ready: u64,
    redelivery_ready: u64,
    delayed: u64,
    redelivered: u64,
    consumers: u64,
    consumers_holding: u64,
    oldest_unacked_timestamp_ms: Option<i64>,
}

impl From<QueueView> for QueueFigures {
    fn from(v: QueueView) -> Self {
        QueueFigures {
            info: v.info,
            ready: v.ready,
            redelivery_ready: v.redelivery_ready,
            delayed: v.delayed,
            redelivered: v.redelivered,
            consumers: v.consumers,
            consumers_holding: v.consumers_holding,
            oldest_unacked_timestamp_ms: v.oldest_unacked_timestamp_ms,
        }
    }
}

impl From<QueueFigures> for QueueView {
    fn from(f: QueueFigures) -> Self {
        QueueView {
            info: f.info,
            ready: f.ready,
            redelivery_ready: f.redelivery_ready,
            delayed: f.delayed,
            redelivered: f.redelivered,
            consumers: f.consumers,
            consumers_holding: f.consumers_holding,
            oldest_unacked_timestamp_ms: f.oldest_unacked_timestamp_ms,
        }
    }
}

/// Why a partition's leader did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// No such topic or partition.
    #[error("no such topic or partition")]
    NotFound,
    /// The node called does not lead the partition (any more), or none is known.
    #[error("not the partition's leader")]
    NotLeader,
    /// Consumers hold records of the group on the partition.
    #[error("records of the group are held by consumers")]
    Held,
    /// Anything else, said.
    #[error("{0}")]
    Failed(String),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => Refusal::NotFound,
            StoreError::NotLeader(_) => Refusal::NotLeader,
            StoreError::InvalidArgument(_) => Refusal::Held,
            other => Refusal::Failed(other.to_string()),
        }
    }
}

/// `message` as a call's or an answer's bytes.
fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut out = vec![CALL_VERSION];
    // Encoding to a Vec fails only on types postcard cannot encode, which these are not.
    out.extend(postcard::to_stdvec(message).expect("a call encodes"));
    out
}

/// A call's bytes read back (as [`Calls`] does; for the fuzz target too).
pub fn decode_call(bytes: &[u8]) -> Result<NodeCall, String> {
    decode(bytes)
}

/// An answer's bytes read back (as [`Cluster::reset_group`] does; for the fuzz target too).
pub fn decode_answer(bytes: &[u8]) -> Result<Answer, String> {
    decode(bytes)
}

/// A call's or an answer's bytes read back; bad bytes are an error, never a panic.
fn decode<T: for<'a> Deserialize<'a>>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&CALL_VERSION, rest)) => {
            let (m, left) = postcard::take_from_bytes(rest).map_err(|e| e.to_string())?;
            match left.len() {
                0 => Ok(m),
                n => Err(format!("{n} bytes after a call")),
            }
        }
        Some((v, _)) => Err(format!("call version {v} is not known here")),
        None => Err("an empty call".to_string()),
    }
}

impl Cluster {
    /// Moves `group`'s start offset on `topic`'s `partition` to `offset`, on the
    /// partition's leader (wherever it is); done once the move is committed.
    pub async fn reset_group(
        &self,
        topic: &str,
        group: &str,
        config: &QueueConfig,
        partition: u32,
        offset: u64,
    ) -> Result<(), Refusal> {
        let call = NodeCall::ResetGroup {
            topic: topic.to_string(),
            group: group.to_string(),
            config: config.clone(),
            partition,
            offset,
        };
        self.ask_leader(topic, partition, &call, |a| {
            matches!(a, Answer::Done).then_some(())
        })
        .await
    }

    /// Sends `call` to the leader of `topic`'s `partition`: the answer `pick` takes, the
    /// leader's refusal, or any other answer as a failure.
    pub(super) async fn ask_leader<T>(
        &self,
        topic: &str,
        partition: u32,
        call: &NodeCall,
        pick: impl FnOnce(&Answer) -> Option<T>,
    ) -> Result<T, Refusal> {
        let answer = self.call_leader(topic, partition, call).await?;
        match (pick(&answer), answer) {
            (Some(t), _) => Ok(t),
            (None, Answer::Refused(r)) => Err(r),
            (None, other) => Err(Refusal::Failed(format!("odd answer {other:?}"))),
        }
    }

    /// `group`'s start offset on `topic`'s `partition`, as the partition's leader has it.
    pub async fn group_start(
        &self,
        topic: &str,
        group: &str,
        partition: u32,
    ) -> Result<Option<u64>, Refusal> {
        let call = NodeCall::GroupStart {
            topic: topic.to_string(),
            group: group.to_string(),
            partition,
        };
        self.ask_leader(topic, partition, &call, |a| match a {
            Answer::Start(s) => Some(*s),
            _ => None,
        })
        .await
    }

    /// The figures of `topic`'s `partitions` as their leaders have them: one call per
    /// leader (and per [`FIGURES_PARTITIONS_PER_CALL`]), all at once. A partition without a
    /// known leader, or whose leader does not answer in [`FIGURES_CALL_TIMEOUT`], is missing.
    pub async fn partitions_figures(
        self: &Arc<Self>,
        topic: &str,
        partitions: &[u32],
    ) -> Vec<PartitionInfo> {
        let mut by_leader: std::collections::BTreeMap<u64, Vec<u32>> = Default::default();
        for &p in partitions {
            if let Some(l) = self.partition_leader(topic, p) {
                by_leader.entry(l).or_default().push(p);
            }
        }
        let mut calls = tokio::task::JoinSet::new();
        for (leader, ps) in by_leader {
            for chunk in ps.chunks(FIGURES_PARTITIONS_PER_CALL) {
                let call = NodeCall::PartitionFigures {
                    topic: topic.to_string(),
                    partitions: chunk.to_vec(),
                };
                let me = self.clone();
                calls.spawn(async move {
                    me.call_node(Some(leader), &call, FIGURES_CALL_TIMEOUT)
                        .await
                });
            }
        }
        let mut out = Vec::new();
        while let Some(done) = calls.join_next().await {
            match done {
                Ok(Ok(Answer::Partitions(ps))) => out.extend(ps),
                Ok(Ok(other)) => tracing::debug!(topic, "odd answer {other:?}"),
                Ok(Err(r)) => tracing::debug!(topic, "figures of a partition's leader: {r}"),
                Err(e) => tracing::debug!(topic, "figures of a partition's leader: {e}"),
            }
        }
        out
    }

    /// Queue `name`'s figures, as its leader has them.
    pub async fn queue_figures(&self, name: &str) -> Result<QueueView, Refusal> {
        let call = NodeCall::QueueFigures {
            queue: name.to_string(),
        };
        let leader = self.node.leader_of(&super::queues::queue_group(name));
        match self.call_node(leader, &call, FIGURES_CALL_TIMEOUT).await? {
            Answer::Queue(f) => Ok(f.into()),
            Answer::Refused(r) => Err(r),
            other => Err(Refusal::Failed(format!("odd answer {other:?}"))),
        }
    }

    /// Whether this node holds a replica of `topic`'s `partition`.
    pub fn holds_partition(&self, topic: &str, partition: u32) -> bool {
        self.partition(topic, partition).is_some()
    }

    /// Whether this node holds a replica of queue `name`.
    pub fn holds_queue(&self, name: &str) -> bool {
        self.queue(name).is_some()
    }

    /// Sends `call` to the leader of `topic`'s `partition` and reads its answer.
    pub(super) async fn call_leader(
        &self,
        topic: &str,
        partition: u32,
        call: &NodeCall,
    ) -> Result<Answer, Refusal> {
        let leader = self.partition_leader(topic, partition);
        self.call_node(leader, call, GROUP_CALL_TIMEOUT).await
    }

    /// Sends `call` to `leader` (refused when none is known) and reads its answer.
    async fn call_node(
        &self,
        leader: Option<u64>,
        call: &NodeCall,
        timeout: Duration,
    ) -> Result<Answer, Refusal> {
        let leader = leader.ok_or(Refusal::NotLeader)?;
        let answer = self.node.call(leader, encode(call), timeout).await;
        match answer {
            Ok(bytes) => decode_answer(&bytes).map_err(Refusal::Failed),
            Err(CallError::Unreachable { .. }) => Err(Refusal::NotLeader),
            Err(e) => Err(Refusal::Failed(e.to_string())),
        }
    }

    /// Does `call` here, as its partition's (or queue's) leader.
    async fn answer(self: Arc<Self>, call: NodeCall) -> Answer {
        let Some(broker) = self.broker.upgrade() else {
            return Answer::Refused(Refusal::Failed("the node is stopping".into()));
        };
        match call {
            NodeCall::ResetGroup {
                topic,
                group,
                config,
                partition,
                offset,
            } => {
                let reset = Some((config, offset));
                self.answer_group(broker, topic, partition, group, reset)
                    .await
            }
            NodeCall::GroupStart {
                topic,
                group,
                partition,
            } => {
                self.answer_group(broker, topic, partition, group, None)
                    .await
            }
            NodeCall::PartitionFigures { topic, partitions } => {
                self.answer_partitions(broker, &topic, &partitions).await
            }
            NodeCall::QueueFigures { queue } => self.answer_queue(broker, queue).await,
            NodeCall::ForgetGroup {
                topic,
                group,
                partition,
            } => self.answer_forget(&topic, &group, partition).await,
            NodeCall::GroupHeld {
                topic,
                group,
                partition,
            } => self.answer_held(broker, topic, group, partition).await,
        }
    }

    /// Answers [`NodeCall::ResetGroup`] (`reset`: the settings and the offset) or
    /// [`NodeCall::GroupStart`] (`reset` none) here, as the partition's leader.
    async fn answer_group(
        self: Arc<Self>,
        broker: Arc<crate::broker::Broker>,
        topic: String,
        partition: u32,
        group: String,
        reset: Option<(QueueConfig, u64)>,
    ) -> Answer {
        let leads = self
            .partition_status(&topic, partition)
            .is_some_and(|s| s.leader == Some(self.node_id()));
        if !leads {
            return Answer::Refused(Refusal::NotLeader);
        }
        let done = crate::broker::spawn_blocking(move || -> Result<Answer, Refusal> {
            let t = broker.store().topic(&topic)?;
            let Some((config, offset)) = reset else {
                if !t.list_groups().contains(&group) {
                    return Ok(Answer::Start(None));
                }
                let q = t.group(&group, QueueConfig::default())?.queue(partition)?;
                return Ok(Answer::Start(Some(q.stats().ack_floor.0)));
            };
            let g = t.group(&group, config)?;
            self.link_group(&topic, &g)
                .map_err(|e| Refusal::Failed(e.to_string()))?;
            g.queue(partition)?.reset_to(Offset(offset))?;
            Ok(Answer::Done)
        })
        .await;
        match done {
            Ok(Ok(a)) => a,
            Ok(Err(r)) => Answer::Refused(r),
            Err(e) => Answer::Refused(Refusal::Failed(e.to_string())),
        }
    }
}

impl Cluster {
    /// Answers [`NodeCall::PartitionFigures`] here: the figures of each partition asked
    /// that this node leads.
    async fn answer_partitions(
        &self,
        broker: Arc<crate::broker::Broker>,
        topic: &str,
        partitions: &[u32],
    ) -> Answer {
        if partitions.len() > FIGURES_PARTITIONS_PER_CALL {
            let why = format!("more than {FIGURES_PARTITIONS_PER_CALL} partitions in one call");
            return Answer::Refused(Refusal::Failed(why));
        }
        let led: Vec<u32> = partitions
            .iter()
            .copied()
            .filter(|&p| {
                self.partition_status(topic, p)
                    .is_some_and(|s| s.leader == Some(self.node_id()))
            })
            .collect();
        if led.is_empty() {
            return Answer::Refused(Refusal::NotLeader);
        }
        let name = topic.to_string();
        let info = crate::broker::spawn_blocking(move || broker.describe_topic(name)).await;
        match info {
            Ok(Ok(info)) => Answer::Partitions(
                info.partitions
                    .into_iter()
                    .filter(|p| led.contains(&p.partition))
                    .collect(),
            ),
            Ok(Err(e)) => Answer::Refused(broker_refusal(e)),
            Err(e) => Answer::Refused(Refusal::Failed(e.to_string())),
        }
    }

    /// Answers [`NodeCall::QueueFigures`] here, as the queue's leader.
    async fn answer_queue(&self, broker: Arc<crate::broker::Broker>, queue: String) -> Answer {
        let leads = self
            .queue(&queue)
            .is_some_and(|g| g.status().leader == Some(self.node_id()));
        if !leads {
            return Answer::Refused(Refusal::NotLeader);
        }
        let view = crate::broker::spawn_blocking(move || broker.queue_view(queue)).await;
        match view {
            Ok(Ok(v)) => Answer::Queue(v.into()),
            Ok(Err(e)) => Answer::Refused(broker_refusal(e)),
            Err(e) => Answer::Refused(Refusal::Failed(e.to_string())),
        }
    }
}

/// A broker error as a refusal.
fn broker_refusal(e: crate::broker::BrokerError) -> Refusal {
    match e.kind {
        crate::broker::ErrorKind::NotFound => Refusal::NotFound,
        crate::broker::ErrorKind::NotLeader => Refusal::NotLeader,
        _ => Refusal::Failed(e.to_string()),
    }
}

/// The cluster serves its peers' calls (held weakly by its node).
pub(super) struct Calls(pub std::sync::Weak<Cluster>);

impl CallHandler for Calls {
    fn call(&self, from: u64, payload: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let call = decode_call(&payload).map_err(|e| format!("from node {from}: {e}"))?;
            let cluster = self.0.upgrade().ok_or("the node is stopping")?;
            Ok(encode(&cluster.answer(call).await))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_answers_read_back_and_bad_bytes_are_refused() {
        let call = NodeCall::ResetGroup {
            topic: "t".into(),
            group: "g".into(),
            config: QueueConfig::default(),
            partition: 3,
            offset: 42,
        };
        let bytes = encode(&call);
        assert_eq!(decode::<NodeCall>(&bytes).unwrap(), call);
        let figures = NodeCall::QueueFigures { queue: "q".into() };
        assert_eq!(decode_call(&encode(&figures)).unwrap(), figures);
        let partition = PartitionInfo {
            partition: 1,
            start_offset: 2,
            end_offset: 9,
            size_bytes: 100,
            segments: 1,
            subscribers: vec![crate::protocol::SubscriberStat {
                name: "s".into(),
                committed: 3,
                lag: 6,
            }],
        };
        for a in [
            Answer::Done,
            Answer::Start(Some(7)),
            Answer::Refused(Refusal::Failed("x".into())),
            Answer::Partitions(vec![partition]),
        ] {
            assert_eq!(decode::<Answer>(&encode(&a)).unwrap(), a);
        }
        assert!(decode::<NodeCall>(&[]).is_err());
        assert!(decode::<NodeCall>(&[9, 0])
            .unwrap_err()
            .contains("version 9"));
        for cut in 1..bytes.len() {
            assert!(decode::<NodeCall>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode::<NodeCall>(&long).unwrap_err().contains("after"));
    }

    /// The seeds of the `cluster_input` fuzz target this crate adds: a node call and a
    /// group's change entry (the first byte picks nothing here: every decoder reads the rest).
    fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let call = NodeCall::GroupStart {
            topic: "orders".into(),
            group: "billing".into(),
            partition: 2,
        };
        let mut change = crate::cluster::groups::change_prefix("billing", &QueueConfig::default());
        sluice_storage::ackstate::encode_reset(&mut change, 17);
        let pick = |b: Vec<u8>| [vec![0xc0], b].concat();
        vec![
            ("node-call", pick(encode(&call))),
            ("group-change", pick(change)),
        ]
    }

    fn seed_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/cluster_input")
    }

    #[test]
    #[ignore = "writes seeds of cluster_input into fuzz/corpus"]
    fn write_seeds() {
        for (name, bytes) in seeds() {
            std::fs::write(seed_dir().join(format!("seed-{name}")), bytes).unwrap();
        }
    }

    #[test]
    fn the_seeds_are_stored_and_decode_as_what_they_are() {
        for (name, bytes) in seeds() {
            let stored = std::fs::read(seed_dir().join(format!("seed-{name}"))).unwrap();
            assert_eq!(stored, bytes, "{name}: write the seeds again (write_seeds)");
        }
        let read = |n: &str| std::fs::read(seed_dir().join(format!("seed-{n}"))).unwrap();
        assert!(decode_call(&read("node-call")[1..]).is_ok());
        let change = read("group-change");
        let c = crate::cluster::groups::decode_change(&change[1..]).unwrap();
        assert_eq!(c.group, "billing");
    }
}
