//! Groups as the admin API sees them. Two kinds:
//! - *offset groups*: a named subscriber or a Kafka consumer group, which is a committed
//!   offset per partition on each topic it reads (listed, described with lag, created at a
//!   position, reset, deleted);
//! - *consumer groups of a topic*: competing consumers over every partition with an ack state
//!   per partition (native groups and Kafka share groups), listed and deleted per topic.
//!
//! A group some client is subscribed as (a native subscription holding the name, a Kafka
//! member on a connection) is `InUse` for a reset or a delete. Every function is blocking.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_storage::{Offset, StartAt};

use super::{Broker, BrokerError, ErrorKind, Result};
use crate::metrics::SubscriptionKind;

/// Where a group's offsets go: `"earliest"`, `"latest"`, `{"offset": N}` or
/// `{"time_ms": T}` (the first message at or after T).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ResetTo {
    /// Each partition's start.
    Earliest,
    /// Each partition's visible end.
    Latest,
    /// This offset, clamped to each partition's range.
    Offset(u64),
    /// The first message at or after this time (milliseconds since the epoch).
    TimeMs(i64),
}

impl From<ResetTo> for StartAt {
    fn from(r: ResetTo) -> StartAt {
        match r {
            ResetTo::Earliest => StartAt::Earliest,
            ResetTo::Latest => StartAt::Latest,
            ResetTo::Offset(o) => StartAt::Offset(Offset(o)),
            ResetTo::TimeMs(t) => StartAt::Timestamp(t),
        }
    }
}

/// An offset group and the topics it has offsets on.
#[derive(Clone, Debug, Serialize)]
pub struct GroupSummary {
    /// Its name.
    pub name: String,
    /// The topics it has committed offsets on, sorted.
    pub topics: Vec<String>,
}

/// One committed offset of a group with its lag.
#[derive(Clone, Debug, Serialize)]
pub struct GroupOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The next offset the group reads.
    pub committed: u64,
    /// The partition's visible end.
    pub end_offset: u64,
    /// Messages between them.
    pub lag: u64,
}

/// An offset group described.
#[derive(Clone, Debug, Serialize)]
pub struct GroupInfo {
    /// Its name.
    pub name: String,
    /// Its committed offsets, by topic and partition.
    pub offsets: Vec<GroupOffset>,
}

/// One partition of a topic's consumer group.
#[derive(Clone, Debug, Serialize)]
pub struct GroupPartition {
    /// The partition.
    pub partition: u32,
    /// Every offset below it is acknowledged.
    pub ack_floor: u64,
    /// The next offset never delivered.
    pub cursor: u64,
    /// The partition's visible end.
    pub end_offset: u64,
    /// Messages not yet acknowledged.
    pub depth: u64,
    /// Delivered and not yet acknowledged.
    pub in_flight: u64,
    /// Moved to the dead-letter queue.
    pub dead_lettered: u64,
}

/// A consumer group of a topic.
#[derive(Clone, Debug, Serialize)]
pub struct TopicGroupInfo {
    /// Its name.
    pub name: String,
    /// Its dead-letter queue.
    pub dead_letter: String,
    /// Per partition.
    pub partitions: Vec<GroupPartition>,
}

impl Broker {
    /// Every offset group with its topics, sorted by name. Reads closed topics' offsets
    /// without opening them.
    pub fn list_offset_groups(&self) -> Vec<GroupSummary> {
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.store.list_topics() {
            for name in self.store.topic_subscribers(&t).unwrap_or_default() {
                by_name.entry(name).or_default().push(t.clone());
            }
        }
        by_name
            .into_iter()
            .map(|(name, topics)| GroupSummary { name, topics })
            .collect()
    }

    /// Offset group `name`'s committed offsets and lag; `NotFound` when it has none.
    pub fn describe_offset_group(&self, name: &str) -> Result<GroupInfo> {
        let commits = self.group_offsets(name);
        if commits.is_empty() {
            return Err(not_found(name));
        }
        let mut offsets = Vec::with_capacity(commits.len());
        for (topic, partition, next, _) in commits {
            let end = self
                .store
                .topic(&topic)?
                .partition(partition)?
                .visible_end();
            offsets.push(GroupOffset {
                lag: end.0.saturating_sub(next.0),
                topic,
                partition,
                committed: next.0,
                end_offset: end.0,
            });
        }
        Ok(GroupInfo {
            name: name.to_string(),
            offsets,
        })
    }

    /// Moves offset group `name` on `topic` (one partition, or all) to `to`, durably; with
    /// `create`, makes the group there if it has no offsets on it yet, else that is
    /// `NotFound`. Refused with `InUse` while a client is subscribed as the group.
    pub fn reset_offset_group(
        &self,
        name: &str,
        topic: &str,
        partition: Option<u32>,
        to: ResetTo,
        create: bool,
    ) -> Result<GroupInfo> {
        self.check_group_idle(name)?;
        let t = self.store.topic(topic)?;
        if !create && !t.has_subscriber(name) {
            let m = format!("group {name:?} has no offsets on topic {topic:?}");
            return Err(BrokerError::new(ErrorKind::NotFound, m));
        }
        let parts: Vec<u32> = match partition {
            Some(p) => vec![p],
            None => (0..t.partition_count()).collect(),
        };
        let mut commits = Vec::with_capacity(parts.len());
        for p in parts {
            commits.push((p, t.resolve(p, to.into())?, &[][..]));
        }
        for r in self.commit_offsets(name, topic, &commits)? {
            r?;
        }
        self.describe_offset_group(name)
    }

    /// Deletes offset group `name` on every topic, durably. `NotFound` when it has no
    /// offsets; `InUse` while a client is subscribed as the group.
    pub fn delete_offset_group(&self, name: &str) -> Result<()> {
        self.check_group_idle(name)?;
        if self.group_offsets(name).is_empty() {
            return Err(not_found(name));
        }
        self.delete_group_offsets(name)
    }

    /// `InUse` when a native subscription holds `name` or a Kafka connection is a member
    /// of group `name`.
    fn check_group_idle(&self, name: &str) -> Result<()> {
        let held = self
            .held_names
            .lock()
            .unwrap()
            .iter()
            .any(|(_, n)| n == name);
        let kafka = Some(crate::metrics::Protocol::Kafka);
        let member =
            self.metrics
                .connections()
                .count_subscribed(kafka, SubscriptionKind::Group, name)
                > 0;
        if held || member {
            let m = format!("group {name:?} has a client subscribed: stop it first");
            return Err(BrokerError::new(ErrorKind::InUse, m));
        }
        Ok(())
    }

    /// The consumer groups of `topic`, with each partition's figures.
    pub fn topic_consumer_groups(&self, topic: &str) -> Result<Vec<TopicGroupInfo>> {
        let t = self.store.topic(topic)?;
        let mut out = Vec::new();
        for name in t.list_groups() {
            let Some(g) = t.existing_group(&name) else {
                continue; // damaged, or deleted meanwhile
            };
            let partitions = g
                .partitions()
                .iter()
                .enumerate()
                .map(|(p, q)| {
                    let s = q.stats();
                    GroupPartition {
                        partition: p as u32,
                        ack_floor: s.ack_floor.0,
                        cursor: s.cursor.0,
                        end_offset: s.end_offset.0,
                        depth: s.depth,
                        in_flight: s.in_flight,
                        dead_lettered: s.dead_lettered,
                    }
                })
                .collect();
            let dead_letter = g.partitions().first().map(|q| q.dlq_name().to_string());
            out.push(TopicGroupInfo {
                name,
                dead_letter: dead_letter.unwrap_or_default(),
                partitions,
            });
        }
        Ok(out)
    }

    /// Deletes consumer group `group` of `topic` and its ack state, durably. `InUse` while
    /// it has messages in flight.
    pub fn delete_topic_consumer_group(&self, topic: &str, group: &str) -> Result<()> {
        let t = self.store.topic(topic)?;
        if let Some(c) = self.cluster() {
            // Its state is on every replica of each partition: deleted through each
            // partition's log, by the partitions' leaders.
            let count = t.partition_count();
            drop(t);
            let rt = tokio::runtime::Handle::try_current()
                .map_err(|e| BrokerError::new(ErrorKind::Internal, e.to_string()))?;
            let held = rt
                .block_on(c.forget_group(topic, group, count))
                .map_err(|r| forget_refused(topic, group, r))?;
            if held == 0 {
                let m = format!("topic {topic:?} has no group {group:?}");
                return Err(BrokerError::new(ErrorKind::NotFound, m));
            }
            return Ok(());
        }
        if let Some(g) = t.existing_group(group) {
            if g.partitions().iter().any(|q| q.stats().in_flight > 0) {
                let m = format!("group {group:?} of topic {topic:?} has messages in flight");
                return Err(BrokerError::new(ErrorKind::InUse, m));
            }
        }
        Ok(t.delete_group(group)?)
    }
}

/// A partition leader's refusal to delete a group, as the broker's error.
fn forget_refused(topic: &str, group: &str, r: crate::cluster::calls::Refusal) -> BrokerError {
    use crate::cluster::calls::Refusal;
    let what = format!("group {group:?} of topic {topic:?}");
    match r {
        Refusal::Held => {
            BrokerError::new(ErrorKind::InUse, format!("{what} has messages in flight"))
        }
        Refusal::NotFound => {
            BrokerError::new(ErrorKind::NotFound, format!("{what}: no such topic"))
        }
        Refusal::NotLeader => BrokerError::new(
            ErrorKind::NotLeader,
            format!("{what}: a partition's leader is not known now; try again"),
        ),
        Refusal::Failed(why) => BrokerError::new(ErrorKind::Internal, format!("{what}: {why}")),
    }
}

fn not_found(name: &str) -> BrokerError {
    BrokerError::new(
        ErrorKind::NotFound,
        format!("no group is named {name:?} (no committed offsets)"),
    )
}
