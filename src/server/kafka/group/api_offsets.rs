//! OffsetCommit and OffsetFetch: the membership checks of a group commit (generation and
//! member of a classic group; commits without generation only to an Empty group), the limits
//! on each partition's commit, the durable write through [`GroupOffsets`] before the reply,
//! and reads of one group or, from v8, several.

use kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, TopicName};
use kafka_protocol::ResponseError;

use super::state::{code, str_bytes};
use super::{version_served, GroupCoordinator, OffsetCommitEntry, OffsetStoreError};

const OFFSET_COMMIT: i16 = 8;
const OFFSET_FETCH: i16 = 9;

/// The Kafka error code of a store error. A failed store answers NOT_COORDINATOR, as Kafka
/// maps its own storage errors for group writes: the client retries, nothing is confirmed.
pub(super) fn store_error_code(e: &OffsetStoreError) -> i16 {
    match e {
        OffsetStoreError::UnknownTopicOrPartition { .. } => {
            code(ResponseError::UnknownTopicOrPartition)
        }
        OffsetStoreError::MetadataTooLarge { .. } => code(ResponseError::OffsetMetadataTooLarge),
        OffsetStoreError::InvalidGroupId(_) => code(ResponseError::InvalidGroupId),
        OffsetStoreError::OffsetOutOfRange(_) => code(ResponseError::OffsetOutOfRange),
        OffsetStoreError::Storage(_) => code(ResponseError::NotCoordinator),
    }
}

/// One partition's answer to an OffsetFetch.
struct Fetched {
    partition: i32,
    /// -1: nothing committed.
    offset: i64,
    metadata: String,
    error_code: i16,
}

/// One group's answer to an OffsetFetch: its topics, or a group-level error.
struct GroupFetch {
    group_id: String,
    topics: Vec<(String, Vec<Fetched>)>,
    error_code: i16,
}

impl GroupCoordinator {
    /// OffsetCommit (versions 2-9). Answered once every accepted partition is durable.
    pub async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        let membership = if !version_served(OFFSET_COMMIT, version) {
            Err(code(ResponseError::UnsupportedVersion))
        } else if !self.offsets.valid_group_id(&req.group_id) {
            Err(code(ResponseError::InvalidGroupId))
        } else {
            self.check_commit_membership(&req, version).await
        };
        let (entries, outcome) = self.plan_commit(&req, membership);
        let stored = if entries.is_empty() {
            Vec::new()
        } else {
            let group = req.group_id.as_str().to_string();
            let count = entries.len();
            match self
                .store_call(move |s| Ok(s.commit_many(&group, &entries)))
                .await
            {
                Ok(results) => results,
                Err(e) => vec![Err(e); count],
            }
        };
        commit_response(&req, outcome, &stored)
    }

    /// The store batch of a commit, and per partition its index in the batch or the error
    /// code that keeps it out (membership, metadata limit, negative offset).
    fn plan_commit(
        &self,
        req: &OffsetCommitRequest,
        membership: Result<(), i16>,
    ) -> (Vec<OffsetCommitEntry>, Vec<Vec<Result<usize, i16>>>) {
        let mut entries = Vec::new();
        let mut outcome = Vec::with_capacity(req.topics.len());
        for topic in &req.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in &topic.partitions {
                let metadata = p.committed_metadata.as_deref().unwrap_or("");
                let result = match membership {
                    Err(error) => Err(error),
                    Ok(()) if metadata.len() > self.cfg.offset_metadata_bytes_max => {
                        Err(code(ResponseError::OffsetMetadataTooLarge))
                    }
                    Ok(()) => match u64::try_from(p.committed_offset) {
                        Err(_) => Err(code(ResponseError::OffsetOutOfRange)),
                        Ok(next_offset) => {
                            entries.push(OffsetCommitEntry {
                                topic: topic.name.as_str().to_string(),
                                partition: p.partition_index,
                                next_offset,
                                metadata: metadata.to_string(),
                            });
                            Ok(entries.len() - 1)
                        }
                    },
                };
                partitions.push(result);
            }
            outcome.push(partitions);
        }
        (entries, outcome)
    }

    /// Kafka's membership checks of a commit. A group not in memory is Empty if it has
    /// committed offsets (then a member commit is UNKNOWN_MEMBER_ID), else it does not exist.
    async fn check_commit_membership(
        &self,
        req: &OffsetCommitRequest,
        version: i16,
    ) -> Result<(), i16> {
        let member_id = req.member_id.as_str().to_string();
        let instance_id = req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_string());
        let generation = req.generation_id_or_member_epoch;
        let in_memory = self.with_group(&req.group_id, false, |g, ctx| {
            let checked = g.validate_offset_commit(&member_id, instance_id.as_deref(), generation);
            if checked.is_ok() {
                g.commit_heartbeat(&member_id, ctx);
            }
            checked
        });
        match in_memory {
            Ok(checked) => checked,
            Err(_) if generation < 0 => Ok(()),
            Err(_) => {
                let group = req.group_id.as_str().to_string();
                match self.store_call(move |s| s.has_group(&group)).await {
                    Ok(true) => Err(code(ResponseError::UnknownMemberId)),
                    Ok(false) if version >= 9 => Err(code(ResponseError::GroupIdNotFound)),
                    Ok(false) => Err(code(ResponseError::IllegalGeneration)),
                    Err(e) => Err(store_error_code(&e)),
                }
            }
        }
    }

    /// OffsetFetch (versions 1-9; several groups from v8; all of a group's offsets when the
    /// topics are null, from v2). Nothing committed reads as offset -1 with empty metadata.
    /// Every stored offset is stable (no transactions), so `require_stable` needs no wait.
    pub async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        type Wanted = Option<Vec<(String, Vec<i32>)>>;
        let wanted: Vec<(String, Wanted)> = if version >= 8 {
            req.groups
                .iter()
                .map(|g| {
                    let topics = g.topics.as_ref().map(|ts| {
                        ts.iter()
                            .map(|t| (t.name.as_str().to_string(), t.partition_indexes.clone()))
                            .collect()
                    });
                    (g.group_id.as_str().to_string(), topics)
                })
                .collect()
        } else {
            let topics = req.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.as_str().to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            vec![(req.group_id.as_str().to_string(), topics)]
        };
        let mut fetched = Vec::with_capacity(wanted.len());
        for (group_id, topics) in wanted {
            let error = if !version_served(OFFSET_FETCH, version) {
                Some(code(ResponseError::UnsupportedVersion))
            } else {
                None
            };
            fetched.push(match error {
                Some(error_code) => GroupFetch {
                    group_id,
                    topics: requested_with_error(&topics, error_code),
                    error_code,
                },
                None => self.fetch_group(group_id, topics).await,
            });
        }
        fetch_response_for_version(fetched, version)
    }

    async fn fetch_group(
        &self,
        group_id: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> GroupFetch {
        let group = group_id.clone();
        let requested = topics.clone();
        let read = self
            .store_call(move |s| match requested {
                None => Ok(s
                    .fetch_all(&group)?
                    .into_iter()
                    .map(|(t, p, c)| (t, p, Some(c)))
                    .collect::<Vec<_>>()),
                Some(topics) => {
                    let mut out = Vec::new();
                    for (topic, partitions) in topics {
                        for p in partitions {
                            out.push((topic.clone(), p, s.fetch(&group, &topic, p)?));
                        }
                    }
                    Ok(out)
                }
            })
            .await;
        let rows = match read {
            Ok(rows) => rows,
            Err(e) => {
                let error_code = store_error_code(&e);
                return GroupFetch {
                    group_id,
                    topics: requested_with_error(&topics, error_code),
                    error_code,
                };
            }
        };
        let mut out: Vec<(String, Vec<Fetched>)> = Vec::new();
        for (topic, partition, committed) in rows {
            let (offset, metadata) = match committed {
                Some(c) => (i64::try_from(c.next_offset).unwrap_or(i64::MAX), c.metadata),
                None => (-1, String::new()),
            };
            let row = Fetched {
                partition,
                offset,
                metadata,
                error_code: 0,
            };
            match out.last_mut() {
                Some((t, rows)) if *t == topic => rows.push(row),
                _ => out.push((topic, vec![row])),
            }
        }
        GroupFetch {
            group_id,
            topics: out,
            error_code: 0,
        }
    }
}

/// The OffsetCommit reply: each partition of the request, in order, with its error code.
fn commit_response(
    req: &OffsetCommitRequest,
    outcome: Vec<Vec<Result<usize, i16>>>,
    stored: &[Result<(), OffsetStoreError>],
) -> OffsetCommitResponse {
    let topics = req
        .topics
        .iter()
        .zip(outcome)
        .map(|(topic, partitions)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(partitions)
                .map(|(p, result)| {
                    let error_code = match result {
                        Err(error) => error,
                        Ok(i) => match stored.get(i) {
                            Some(Ok(())) => 0,
                            Some(Err(e)) => store_error_code(e),
                            None => code(ResponseError::UnknownServerError),
                        },
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// The requested partitions, each with `error_code` (for versions without a group-level
/// error, which carry it per partition).
fn requested_with_error(
    topics: &Option<Vec<(String, Vec<i32>)>>,
    error_code: i16,
) -> Vec<(String, Vec<Fetched>)> {
    let Some(topics) = topics else {
        return Vec::new();
    };
    topics
        .iter()
        .map(|(t, ps)| {
            let rows = ps
                .iter()
                .map(|p| Fetched {
                    partition: *p,
                    offset: -1,
                    metadata: String::new(),
                    error_code,
                })
                .collect();
            (t.clone(), rows)
        })
        .collect()
}

fn fetch_response_for_version(groups: Vec<GroupFetch>, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = groups
            .into_iter()
            .map(|g| {
                let topics = g
                    .topics
                    .into_iter()
                    .map(|(name, rows)| {
                        let partitions = rows
                            .into_iter()
                            .map(|r| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(r.partition)
                                    .with_committed_offset(r.offset)
                                    .with_committed_leader_epoch(-1)
                                    .with_metadata(Some(str_bytes(&r.metadata)))
                                    .with_error_code(r.error_code)
                            })
                            .collect();
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(&name)))
                            .with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(str_bytes(&g.group_id)))
                    .with_topics(topics)
                    .with_error_code(g.error_code)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let Some(group) = groups.into_iter().next() else {
        return OffsetFetchResponse::default();
    };
    let topics = group
        .topics
        .into_iter()
        .map(|(name, rows)| {
            let partitions = rows
                .into_iter()
                .map(|r| {
                    // Before v2 a group-level error is carried by every partition.
                    let error_code = if version < 2 && group.error_code != 0 {
                        group.error_code
                    } else {
                        r.error_code
                    };
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(r.partition)
                        .with_committed_offset(r.offset)
                        .with_committed_leader_epoch(-1)
                        .with_metadata(Some(str_bytes(&r.metadata)))
                        .with_error_code(error_code)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(&name)))
                .with_partitions(partitions)
        })
        .collect();
    let error_code = if version >= 2 { group.error_code } else { 0 };
    OffsetFetchResponse::default()
        .with_topics(topics)
        .with_error_code(error_code)
}
