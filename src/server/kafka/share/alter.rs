//! AlterShareGroupOffsets (version 0): a share group's start offset on each partition named,
//! moved (durably) while the group has no members: what follows it is delivered again as
//! first deliveries, what precedes it counts as settled. The offset is clamped to the
//! partition's log start and end. A queue's cursor is not moved here (INVALID_REQUEST).
//! In a cluster the coordinator has each partition's leader make the move
//! (`crate::cluster::calls`): a RESET change committed to that partition's log; so is a
//! DeleteShareGroupOffsets there (a reset to the log start, where a new group starts).

use kafka_protocol::messages::alter_share_group_offsets_response::{
    AlterShareGroupOffsetsResponsePartition, AlterShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::{AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_storage::{Error as StoreError, Offset, QueueConfig};
use uuid::Uuid;

use super::{valid_group, ShareGroups};
use crate::broker::{blocking, NamedLog, Source};
use crate::cluster::calls::Refusal;
use crate::cluster::Cluster;

impl ShareGroups {
    /// Serves one AlterShareGroupOffsets.
    pub async fn alter_offsets(
        &self,
        req: AlterShareGroupOffsetsRequest,
    ) -> AlterShareGroupOffsetsResponse {
        let id = req.group_id.as_str().to_string();
        let fail = |e: ResponseError, why: &str| {
            AlterShareGroupOffsetsResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(why.to_string())))
        };
        if !valid_group(&id) {
            return fail(
                ResponseError::InvalidGroupId,
                "share group ids follow sluice's name rules",
            );
        }
        if self.has_members(&id) {
            return fail(ResponseError::NonEmptyGroup, "the share group has members");
        }
        let mut responses = Vec::new();
        for t in req.topics {
            let name = t.topic_name.to_string();
            let wanted: Vec<(i32, i64)> = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.start_offset))
                .collect();
            let results = self.alter_topic(&id, &name, wanted).await;
            let topic_id = self.broker.topic_id_bytes(&name).map(Uuid::from_bytes);
            responses.push(
                AlterShareGroupOffsetsResponseTopic::default()
                    .with_topic_name(t.topic_name)
                    .with_topic_id(topic_id.unwrap_or(Uuid::nil()))
                    .with_partitions(
                        results
                            .into_iter()
                            .map(|(p, e)| {
                                AlterShareGroupOffsetsResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(e.map_or(0, |e| e.code()))
                            })
                            .collect(),
                    ),
            );
        }
        AlterShareGroupOffsetsResponse::default().with_responses(responses)
    }

    /// Moves group `id`'s start offset on each `(partition, offset)` of topic `name`.
    async fn alter_topic(
        &self,
        id: &str,
        name: &str,
        wanted: Vec<(i32, i64)>,
    ) -> Vec<(i32, Option<ResponseError>)> {
        let all = |e: ResponseError| wanted.iter().map(|&(p, _)| (p, Some(e))).collect();
        match self.broker.named_log(name) {
            Ok(NamedLog::Topic(_)) => {}
            Ok(NamedLog::Queue(_)) => return all(ResponseError::InvalidRequest),
            Err(_) => return all(ResponseError::UnknownTopicOrPartition),
        }
        if let Some(c) = self.broker.cluster().cloned() {
            return self.alter_on_leaders(&c, id, name, wanted).await;
        }
        // Made with the share settings if the group does not exist on the topic yet.
        match self.source_of(id, name).await {
            Ok(Source::Group { .. }) => {}
            _ => return all(ResponseError::KafkaStorageError),
        }
        let parts: Vec<i32> = wanted.iter().map(|w| w.0).collect();
        let (b, t, g) = (self.broker.clone(), name.to_string(), id.to_string());
        let moved = blocking(move || {
            let group = b.store().topic(&t)?.group(&g, QueueConfig::default())?;
            Ok(wanted
                .into_iter()
                .map(|(p, o)| {
                    if p < 0 || o < 0 {
                        return (p, Some(ResponseError::InvalidRequest));
                    }
                    let r = group
                        .queue(p as u32)
                        .and_then(|q| q.reset_to(Offset(o as u64)));
                    let e = match r {
                        Ok(()) => None,
                        Err(StoreError::NotFound { .. }) => {
                            Some(ResponseError::UnknownTopicOrPartition)
                        }
                        // Records of the partition are held (by a native consumer).
                        Err(StoreError::InvalidArgument(_)) => Some(ResponseError::NonEmptyGroup),
                        Err(_) => Some(ResponseError::KafkaStorageError),
                    };
                    (p, e)
                })
                .collect())
        })
        .await;
        moved.unwrap_or_else(|_| {
            let e = Some(ResponseError::KafkaStorageError);
            parts.into_iter().map(|p| (p, e)).collect()
        })
    }

    /// [`ShareGroups::alter_topic`] in a cluster: each partition's move is made by that
    /// partition's leader (a RESET committed to its log), wherever it is.
    async fn alter_on_leaders(
        &self,
        cluster: &Cluster,
        id: &str,
        name: &str,
        wanted: Vec<(i32, i64)>,
    ) -> Vec<(i32, Option<ResponseError>)> {
        let count = self.broker.partition_count(name).unwrap_or(0);
        let config = self.group_config();
        let mut out = Vec::with_capacity(wanted.len());
        for (p, o) in wanted {
            let e = if p < 0 || o < 0 {
                Some(ResponseError::InvalidRequest)
            } else if p as u32 >= count {
                Some(ResponseError::UnknownTopicOrPartition)
            } else {
                let r = cluster.reset_group(name, id, &config, p as u32, o as u64);
                r.await.err().map(|r| refusal_error(&r))
            };
            out.push((p, e));
        }
        out
    }
}

impl ShareGroups {
    /// DeleteShareGroupOffsets of topic `name` in a cluster: on each partition where group
    /// `id` has state (asked of the partition's leader), its leader resets the group to the
    /// partition's log start, then commits a forget entry, after which every replica
    /// deletes the group (`cluster::forget`), in order with the group's other changes. The
    /// topic's id, or the first partition's refusal.
    pub(super) async fn delete_on_leaders(
        &self,
        cluster: &Cluster,
        id: &str,
        name: &str,
    ) -> Result<[u8; 16], ResponseError> {
        match self.broker.named_log(name) {
            Ok(NamedLog::Topic(_)) => {}
            // A queue's cursor goes with the queue.
            Ok(NamedLog::Queue(_)) => return Err(ResponseError::InvalidRequest),
            Err(_) => return Err(ResponseError::UnknownTopicOrPartition),
        }
        let topic_id = self
            .broker
            .topic_id_bytes(name)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        let count = self.broker.partition_count(name).unwrap_or(0);
        cluster
            .forget_group(name, id, count)
            .await
            .map_err(|r| refusal_error(&r))?;
        Ok(topic_id)
    }
}

/// The Kafka error a partition leader's refusal is answered with.
pub(super) fn refusal_error(r: &Refusal) -> ResponseError {
    match r {
        Refusal::NotFound => ResponseError::UnknownTopicOrPartition,
        Refusal::NotLeader => ResponseError::NotLeaderOrFollower,
        Refusal::Held => ResponseError::NonEmptyGroup,
        Refusal::Failed(why) => {
            tracing::warn!("a partition's leader failed a share group's change: {why}");
            ResponseError::KafkaStorageError
        }
    }
}
