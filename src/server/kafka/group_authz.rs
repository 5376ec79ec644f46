//! Authorization of the consumer-group requests, before they reach the coordinator (requests
//! that change something: what is refused is taken out of the request, and answered with the
//! authorization error) or after it (listings and reads: what may not be seen is taken out of
//! the answer, or replaced by the error). As Kafka: JoinGroup, SyncGroup, Heartbeat and
//! LeaveGroup need read on the group; OffsetCommit read on the group and on each topic;
//! OffsetFetch describe on the group and on each topic; DescribeGroups describe; ListGroups
//! lists only the groups the principal may describe; DeleteGroups needs delete.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsResponse, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchResponse,
};

use super::authz::{check, check_topic, group_denied, topic_denied, visible_group};
use super::codec::Request;
use super::KafkaContext;
use crate::security::{Operation, Principal, Resource};

/// Whether `p` may do `op` on group `g` (counted when refused).
pub(super) fn group_allowed(ctx: &KafkaContext, p: &Principal, op: Operation, g: &str) -> bool {
    check(ctx, p, op, Resource::group(g))
}

/// Whether `req`, a JoinGroup, SyncGroup, Heartbeat or LeaveGroup, is refused: `p` may not
/// read its group (other requests: `false`).
pub(super) fn membership_refused(ctx: &KafkaContext, p: &Principal, req: &Request) -> bool {
    let group = match req {
        Request::JoinGroup(r) => &r.group_id,
        Request::SyncGroup(r) => &r.group_id,
        Request::Heartbeat(r) => &r.group_id,
        Request::LeaveGroup(r) => &r.group_id,
        _ => return false,
    };
    ctx.broker.security().enabled() && !group_allowed(ctx, p, Operation::Read, group)
}

/// The topics of an OffsetCommit `p` may not read, taken out of `req` (every topic when the
/// group is refused), answered in a response to append to the coordinator's.
pub(super) fn split_commit(
    ctx: &KafkaContext,
    p: &Principal,
    req: &mut OffsetCommitRequest,
) -> Vec<OffsetCommitResponseTopic> {
    if !ctx.broker.security().enabled() {
        return Vec::new();
    }
    let group_ok = group_allowed(ctx, p, Operation::Read, &req.group_id);
    let (kept, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .map(|t| {
            let code = match group_ok {
                false => Some(group_denied()),
                true => (!check_topic(ctx, p, Operation::Read, &t.name)).then(topic_denied),
            };
            (t, code)
        })
        .partition(|(_, code)| code.is_none());
    req.topics = kept.into_iter().map(|(t, _)| t).collect();
    refused
        .into_iter()
        .map(|(t, code)| commit_refused(t, code.unwrap_or_default()))
        .collect()
}

/// A topic of an OffsetCommit answered with `code` on each of its partitions.
pub(super) fn commit_refused(t: OffsetCommitRequestTopic, code: i16) -> OffsetCommitResponseTopic {
    let mut out = OffsetCommitResponseTopic::default();
    out.name = t.name;
    out.topic_id = t.topic_id;
    out.partitions = t
        .partitions
        .iter()
        .map(|x| {
            let mut r = OffsetCommitResponsePartition::default();
            r.partition_index = x.partition_index;
            r.error_code = code;
            r
        })
        .collect();
    out
}

/// Whether an OffsetCommit was wholly refused (nothing left to hand to the coordinator).
pub(super) fn commit_refused_whole(req: &OffsetCommitRequest, refused: usize) -> bool {
    refused > 0 && req.topics.is_empty()
}

/// An OffsetCommit response of only the refused topics.
pub(super) fn commit_response(refused: Vec<OffsetCommitResponseTopic>) -> OffsetCommitResponse {
    let mut r = OffsetCommitResponse::default();
    r.topics = refused;
    r
}

/// Takes out of an OffsetFetch answer what `p` may not see: a refused group gets
/// GROUP_AUTHORIZATION_FAILED and no offsets; a topic `p` may not describe gets
/// TOPIC_AUTHORIZATION_FAILED on each partition (no offset shown).
pub(super) fn filter_fetch(
    ctx: &KafkaContext,
    p: &Principal,
    group_v7: &str,
    resp: &mut OffsetFetchResponse,
) {
    if !ctx.broker.security().enabled() {
        return;
    }
    if !resp.topics.is_empty() || resp.groups.is_empty() {
        if !group_allowed(ctx, p, Operation::Describe, group_v7) {
            resp.error_code = group_denied();
            for t in &mut resp.topics {
                for x in &mut t.partitions {
                    (x.committed_offset, x.metadata, x.error_code) = (-1, None, group_denied());
                }
            }
            return;
        }
        for t in &mut resp.topics {
            if !check_topic(ctx, p, Operation::Describe, &t.name) {
                for x in &mut t.partitions {
                    (x.committed_offset, x.metadata, x.error_code) = (-1, None, topic_denied());
                }
            }
        }
    }
    for g in &mut resp.groups {
        if !group_allowed(ctx, p, Operation::Describe, &g.group_id) {
            g.error_code = group_denied();
            g.topics.clear();
            continue;
        }
        for t in &mut g.topics {
            if !check_topic(ctx, p, Operation::Describe, &t.name) {
                for x in &mut t.partitions {
                    (x.committed_offset, x.metadata, x.error_code) = (-1, None, topic_denied());
                }
            }
        }
    }
}

/// Replaces the groups `p` may not describe by GROUP_AUTHORIZATION_FAILED.
pub(super) fn filter_describe(
    ctx: &KafkaContext,
    p: &Principal,
    resp: &mut DescribeGroupsResponse,
) {
    if !ctx.broker.security().enabled() {
        return;
    }
    for g in &mut resp.groups {
        if !group_allowed(ctx, p, Operation::Describe, &g.group_id) {
            let id = std::mem::take(&mut g.group_id);
            *g = Default::default();
            g.group_id = id;
            g.error_code = group_denied();
        }
    }
}

/// Leaves out the groups `p` may not describe.
pub(super) fn filter_list(ctx: &KafkaContext, p: &Principal, resp: &mut ListGroupsResponse) {
    resp.groups.retain(|g| visible_group(ctx, p, &g.group_id));
}

/// The groups of a DeleteGroups `p` may not delete, taken out of `req`, as results.
pub(super) fn split_delete(
    ctx: &KafkaContext,
    p: &Principal,
    req: &mut DeleteGroupsRequest,
) -> Vec<DeletableGroupResult> {
    if !ctx.broker.security().enabled() {
        return Vec::new();
    }
    let (kept, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut req.groups_names)
        .into_iter()
        .partition(|g| group_allowed(ctx, p, Operation::Delete, g));
    req.groups_names = kept;
    refused
        .into_iter()
        .map(|g| {
            let mut r = DeletableGroupResult::default();
            r.group_id = g;
            r.error_code = group_denied();
            r
        })
        .collect()
}

/// Appends `refused` to a DeleteGroups answer.
pub(super) fn merge_delete(resp: &mut DeleteGroupsResponse, refused: Vec<DeletableGroupResult>) {
    resp.results.extend(refused);
}
