//! What one node asks of another on behalf of a client: the node coordinating groups (the
//! metadata's leader) moves a Kafka share group's start offset on each partition, or reads
//! it, through the partition's leader, the one node whose group state is current and the only
//! one that may change it (a move is a RESET change proposed to the partition's log).
//!
//! A call travels as a `sluice-replication` call ([`sluice_replication::calls`]): its payload
//! is a version byte then a postcard [`NodeCall`]; the answer a version byte then a postcard
//! [`Answer`]. A call to this node's own partition takes the same path without the network.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_replication::{BoxFuture, CallError, CallHandler};
use sluice_storage::{Error as StoreError, Offset, QueueConfig};

use super::Cluster;

/// Version byte that starts every call and answer.
const CALL_VERSION: u8 = 1;

/// Longest wait for a partition's leader to do what was asked (a RESET committed).
pub const GROUP_CALL_TIMEOUT: Duration = Duration::from_secs(10);

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
        match self.call_leader(topic, partition, &call).await? {
            Answer::Done => Ok(()),
            Answer::Refused(r) => Err(r),
            other => Err(Refusal::Failed(format!("odd answer {other:?}"))),
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
        match self.call_leader(topic, partition, &call).await? {
            Answer::Start(s) => Ok(s),
            Answer::Refused(r) => Err(r),
            other => Err(Refusal::Failed(format!("odd answer {other:?}"))),
        }
    }

    /// Sends `call` to the leader of `topic`'s `partition` and reads its answer.
    async fn call_leader(
        &self,
        topic: &str,
        partition: u32,
        call: &NodeCall,
    ) -> Result<Answer, Refusal> {
        let leader = self
            .partition_leader(topic, partition)
            .ok_or(Refusal::NotLeader)?;
        let answer = self
            .node
            .call(leader, encode(call), GROUP_CALL_TIMEOUT)
            .await;
        match answer {
            Ok(bytes) => decode_answer(&bytes).map_err(Refusal::Failed),
            Err(CallError::Unreachable { .. }) => Err(Refusal::NotLeader),
            Err(e) => Err(Refusal::Failed(e.to_string())),
        }
    }

    /// Does `call` here, as its partition's leader.
    async fn answer(self: Arc<Self>, call: NodeCall) -> Answer {
        let (topic, partition) = match &call {
            NodeCall::ResetGroup {
                topic, partition, ..
            }
            | NodeCall::GroupStart {
                topic, partition, ..
            } => (topic.clone(), *partition),
        };
        let leads = self
            .partition_status(&topic, partition)
            .is_some_and(|s| s.leader == Some(self.node_id()));
        if !leads {
            return Answer::Refused(Refusal::NotLeader);
        }
        let Some(broker) = self.broker.upgrade() else {
            return Answer::Refused(Refusal::Failed("the node is stopping".into()));
        };
        let me = self.clone();
        let done = crate::broker::spawn_blocking(move || -> Result<Answer, Refusal> {
            let t = broker.store().topic(&topic)?;
            Ok(match call {
                NodeCall::ResetGroup {
                    group,
                    config,
                    offset,
                    ..
                } => {
                    let g = t.group(&group, config)?;
                    me.link_group(&topic, &g)
                        .map_err(|e| Refusal::Failed(e.to_string()))?;
                    g.queue(partition)?.reset_to(Offset(offset))?;
                    Answer::Done
                }
                NodeCall::GroupStart { group, .. } => {
                    if !t.list_groups().contains(&group) {
                        return Ok(Answer::Start(None));
                    }
                    let q = t.group(&group, QueueConfig::default())?.queue(partition)?;
                    Answer::Start(Some(q.stats().ack_floor.0))
                }
            })
        })
        .await;
        match done {
            Ok(Ok(a)) => a,
            Ok(Err(r)) => Answer::Refused(r),
            Err(e) => Answer::Refused(Refusal::Failed(e.to_string())),
        }
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
        for a in [
            Answer::Done,
            Answer::Start(Some(7)),
            Answer::Refused(Refusal::Failed("x".into())),
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
