//! ShareGroupDescribe (version 1) and the share-group offset APIs DescribeShareGroupOffsets
//! and DeleteShareGroupOffsets (version 0). A share group with members is described from
//! memory (Stable); one known only by its ack state on some topic is Empty; any other id is
//! GROUP_ID_NOT_FOUND. A partition's start offset is its group's ack floor: the first record
//! not yet acknowledged.

use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic;
use kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup, DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::share_group_describe_response::{
    Assignment, DescribedGroup, Member as DescribedMember, TopicPartitions,
};
use kafka_protocol::messages::{
    DeleteShareGroupOffsetsRequest, DeleteShareGroupOffsetsResponse,
    DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse, ShareGroupDescribeRequest,
    ShareGroupDescribeResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_storage::QueueConfig;
use uuid::Uuid;

use super::{valid_group, ShareGroups};
use crate::broker::{blocking, NamedLog};
use crate::cluster::Cluster;
use crate::server::kafka::LEADER_EPOCH;

/// The assignor every share group is described with (every member gets every partition).
const ASSIGNOR: &str = "simple";

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

impl ShareGroups {
    /// Serves one ShareGroupDescribe.
    pub async fn describe(&self, req: ShareGroupDescribeRequest) -> ShareGroupDescribeResponse {
        let mut out = Vec::new();
        for gid in req.group_ids {
            let id = gid.as_str().to_string();
            let described = match self.describe_live(&id) {
                Some(d) => d,
                None if valid_group(&id) && !self.topics_of_group(&id).await.is_empty() => {
                    DescribedGroup::default()
                        .with_group_state(s("Empty"))
                        .with_assignor_name(s(ASSIGNOR))
                }
                None => DescribedGroup::default()
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(s(format!("share group {id:?} does not exist")))),
            };
            out.push(described.with_group_id(gid));
        }
        ShareGroupDescribeResponse::default().with_groups(out)
    }

    /// A group with members, as it is now.
    fn describe_live(&self, id: &str) -> Option<DescribedGroup> {
        let groups = self.groups.lock().unwrap();
        let g = groups.get(id)?;
        let members: Vec<DescribedMember> = g
            .members
            .values()
            .filter(|m| !m.lock().left)
            .map(|m| {
                let st = m.lock();
                let assignment = Assignment::default().with_topic_partitions(
                    st.assignment
                        .iter()
                        .map(|(tid, _, ps)| {
                            TopicPartitions::default()
                                .with_topic_id(*tid)
                                .with_partitions(ps.clone())
                        })
                        .collect(),
                );
                DescribedMember::default()
                    .with_member_id(s(m.id.clone()))
                    .with_rack_id(st.rack_id.clone().map(s))
                    .with_member_epoch(st.epoch)
                    .with_client_id(s(st.client_id.clone()))
                    .with_client_host(s(st.client_host.clone()))
                    .with_subscribed_topic_names(
                        st.subscribed
                            .iter()
                            .map(|n| TopicName(s(n.clone())))
                            .collect(),
                    )
                    .with_assignment(assignment)
            })
            .collect();
        if members.is_empty() {
            return None;
        }
        Some(
            DescribedGroup::default()
                .with_group_state(s("Stable"))
                .with_group_epoch(g.epoch)
                .with_assignment_epoch(g.epoch)
                .with_assignor_name(s(ASSIGNOR))
                .with_members(members)
                // Not computed: every operation is allowed to every client.
                .with_authorized_operations(i32::MIN),
        )
    }

    /// The topics on which group `id` has ack state, and the queue named `id` if there is one.
    /// Blocking work on the pool.
    async fn topics_of_group(&self, id: &str) -> Vec<String> {
        let b = self.broker.clone();
        let gid = id.to_string();
        let mut topics = blocking(move || {
            let id = gid;
            let mut out: Vec<String> = b
                .list_topics()
                .into_iter()
                // Read without opening closed topics.
                .filter(|t| b.store().topic_groups(t).is_ok_and(|g| g.contains(&id)))
                .collect();
            // A queue's cursor is reported as the share group of the queue's name.
            if matches!(b.named_log(&id), Ok(NamedLog::Queue(_))) {
                out.push(id);
            }
            Ok(out)
        })
        .await
        .unwrap_or_default();
        // In a cluster this node may hold no replica of a topic the group consumes: the
        // topics its members subscribe to count too.
        if self.broker.cluster().is_some() {
            for t in self.subscribed_topics(id) {
                if !topics.contains(&t) {
                    topics.push(t);
                }
            }
        }
        topics
    }

    /// The topics group `id`'s members subscribe to now.
    fn subscribed_topics(&self, id: &str) -> Vec<String> {
        let groups = self.groups.lock().unwrap();
        let mut out: Vec<String> = groups
            .get(id)
            .into_iter()
            .flat_map(|g| g.members.values())
            .flat_map(|m| m.lock().subscribed.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether group `id` has members now.
    pub(super) fn has_members(&self, id: &str) -> bool {
        self.groups
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(|g| g.members.values().any(|m| !m.lock().left))
    }

    /// Serves one DescribeShareGroupOffsets: each partition's start offset (-1 where the
    /// group has no state).
    pub async fn describe_offsets(
        &self,
        req: DescribeShareGroupOffsetsRequest,
    ) -> DescribeShareGroupOffsetsResponse {
        let mut out = Vec::new();
        for g in req.groups {
            let id = g.group_id.as_str().to_string();
            if !valid_group(&id) {
                out.push(
                    DescribeShareGroupOffsetsResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(ResponseError::InvalidGroupId.code()),
                );
                continue;
            }
            let wanted: Vec<(String, Option<Vec<i32>>)> = match g.topics {
                Some(ts) => ts
                    .into_iter()
                    .map(|t| (t.topic_name.to_string(), Some(t.partitions)))
                    .collect(),
                None => self
                    .topics_of_group(&id)
                    .await
                    .into_iter()
                    .map(|t| (t, None))
                    .collect(),
            };
            let b = self.broker.clone();
            let gid = id.clone();
            let mut topics = blocking(move || Ok(start_offsets(&b, &gid, wanted)))
                .await
                .unwrap_or_default();
            if let Some(c) = self.broker.cluster().cloned() {
                self.starts_from_leaders(&c, &id, &mut topics).await;
            }
            out.push(
                DescribeShareGroupOffsetsResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics),
            );
        }
        DescribeShareGroupOffsetsResponse::default().with_groups(out)
    }

    /// In a cluster: each topic partition's start offset as its leader has it (this node's
    /// own state of a partition it does not lead may be behind, or absent).
    async fn starts_from_leaders(
        &self,
        cluster: &Cluster,
        id: &str,
        topics: &mut [DescribeShareGroupOffsetsResponseTopic],
    ) {
        for t in topics.iter_mut() {
            let name = t.topic_name.to_string();
            if !matches!(self.broker.named_log(&name), Ok(NamedLog::Topic(_))) {
                continue;
            }
            for p in t.partitions.iter_mut().filter(|p| p.error_code == 0) {
                match cluster
                    .group_start(&name, id, p.partition_index as u32)
                    .await
                {
                    Ok(start) => p.start_offset = start.map_or(-1, |s| s as i64),
                    Err(r) => {
                        p.start_offset = -1;
                        p.error_code = super::alter::refusal_error(&r).code();
                    }
                }
            }
        }
    }

    /// Serves one DeleteShareGroupOffsets: the group's ack state on each topic named is
    /// deleted (durably), if the group has no members (else NON_EMPTY_GROUP). In a cluster,
    /// each partition's leader resets it to the log start instead
    /// ([`ShareGroups::delete_on_leaders`]).
    pub async fn delete_offsets(
        &self,
        req: DeleteShareGroupOffsetsRequest,
    ) -> DeleteShareGroupOffsetsResponse {
        let id = req.group_id.as_str().to_string();
        if !valid_group(&id) {
            return DeleteShareGroupOffsetsResponse::default()
                .with_error_code(ResponseError::InvalidGroupId.code());
        }
        if self.has_members(&id) {
            return DeleteShareGroupOffsetsResponse::default()
                .with_error_code(ResponseError::NonEmptyGroup.code())
                .with_error_message(Some(s("the share group has members")));
        }
        let names: Vec<String> = req
            .topics
            .iter()
            .map(|t| t.topic_name.to_string())
            .collect();
        if let Some(c) = self.broker.cluster().cloned() {
            let mut results = Vec::with_capacity(names.len());
            for name in names {
                let r = self.delete_on_leaders(&c, &id, &name).await;
                results.push((name, r));
            }
            return deleted_response(results);
        }
        let b = self.broker.clone();
        let results = blocking(move || {
            Ok(names
                .into_iter()
                .map(|name| {
                    let r = b
                        .store()
                        .topic(&name)
                        .map_err(|_| ResponseError::UnknownTopicOrPartition);
                    let r = r.and_then(|t| {
                        let id_bytes = t.id().0;
                        if !t.list_groups().contains(&id) {
                            return Ok(id_bytes);
                        }
                        t.delete_group(&id)
                            .map(|()| id_bytes)
                            .map_err(|_| ResponseError::KafkaStorageError)
                    });
                    (name, r)
                })
                .collect::<Vec<_>>())
        })
        .await
        .unwrap_or_default();
        deleted_response(results)
    }
}

/// The DeleteShareGroupOffsets answer: each topic's id, or its error.
fn deleted_response(
    results: Vec<(String, Result<[u8; 16], ResponseError>)>,
) -> DeleteShareGroupOffsetsResponse {
    let responses = results
        .into_iter()
        .map(|(name, r)| {
            let t =
                DeleteShareGroupOffsetsResponseTopic::default().with_topic_name(TopicName(s(name)));
            match r {
                Ok(id) => t.with_topic_id(Uuid::from_bytes(id)),
                Err(e) => t.with_error_code(e.code()),
            }
        })
        .collect();
    DeleteShareGroupOffsetsResponse::default().with_responses(responses)
}

/// The start offsets of group `id` on the `wanted` topics (all partitions when `None`).
/// Blocking.
fn start_offsets(
    b: &crate::broker::Broker,
    id: &str,
    wanted: Vec<(String, Option<Vec<i32>>)>,
) -> Vec<DescribeShareGroupOffsetsResponseTopic> {
    let mut out = Vec::new();
    for (name, parts) in wanted {
        let topic = TopicName(s(name.clone()));
        if let Ok(NamedLog::Queue(q)) = b.named_log(&name) {
            out.push(queue_offsets(b, q, topic, parts));
            continue;
        }
        let Ok(t) = b.store().topic(&name) else {
            let ps = parts.unwrap_or_default().into_iter().map(|p| {
                DescribeShareGroupOffsetsResponsePartition::default()
                    .with_partition_index(p)
                    .with_start_offset(-1)
                    .with_leader_epoch(LEADER_EPOCH)
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
            });
            out.push(
                DescribeShareGroupOffsetsResponseTopic::default()
                    .with_topic_name(topic)
                    .with_partitions(ps.collect()),
            );
            continue;
        };
        let has = t.list_groups().iter().any(|g| g == id);
        let queues = if has {
            t.group(id, QueueConfig::default())
                .map(|g| g.partitions())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let parts = parts.unwrap_or_else(|| (0..t.partition_count() as i32).collect::<Vec<_>>());
        let ps = parts
            .into_iter()
            .map(|p| {
                let d = DescribeShareGroupOffsetsResponsePartition::default()
                    .with_partition_index(p)
                    .with_leader_epoch(LEADER_EPOCH);
                if p < 0 || p as u32 >= t.partition_count() {
                    return d
                        .with_start_offset(-1)
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                }
                let start = queues
                    .get(p as usize)
                    .map(|q| q.stats().ack_floor.0 as i64)
                    .unwrap_or(-1);
                d.with_start_offset(start)
            })
            .collect();
        out.push(
            DescribeShareGroupOffsetsResponseTopic::default()
                .with_topic_name(topic)
                .with_topic_id(Uuid::from_bytes(t.id().0))
                .with_partitions(ps),
        );
    }
    out
}

/// A queue's start offset (its ack floor) as partition 0 of a topic: its cursor, whatever the
/// share group.
fn queue_offsets(
    b: &crate::broker::Broker,
    q: std::sync::Arc<sluice_storage::Queue>,
    topic: TopicName,
    parts: Option<Vec<i32>>,
) -> DescribeShareGroupOffsetsResponseTopic {
    let id = b.queue_topic_id(q.name()).map(|i| i.0).unwrap_or_default();
    let ps = parts
        .unwrap_or_else(|| vec![0])
        .into_iter()
        .map(|p| {
            let d = DescribeShareGroupOffsetsResponsePartition::default()
                .with_partition_index(p)
                .with_leader_epoch(LEADER_EPOCH);
            if p == 0 {
                d.with_start_offset(q.stats().ack_floor.0 as i64)
            } else {
                d.with_start_offset(-1)
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
            }
        })
        .collect();
    DescribeShareGroupOffsetsResponseTopic::default()
        .with_topic_name(topic)
        .with_topic_id(Uuid::from_bytes(id))
        .with_partitions(ps)
}
