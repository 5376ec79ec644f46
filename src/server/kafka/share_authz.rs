//! Authorization of the share-group requests (KIP-932), before they reach `share/`:
//! ShareGroupHeartbeat, ShareFetch, ShareAcknowledge and AlterShareGroupOffsets need read on
//! the group and on every topic (or queue) they name; DeleteShareGroupOffsets delete on the
//! group and read on the topics; ShareGroupDescribe and DescribeShareGroupOffsets describe on
//! each group (a group refused gets GROUP_AUTHORIZATION_FAILED in the answer). A request that
//! names a topic the principal may not read is refused whole (TOPIC_AUTHORIZATION_FAILED at the
//! top of the answer): nothing of it is acquired, acknowledged or changed.

use kafka_protocol::messages::{
    DescribeShareGroupOffsetsResponse, ShareGroupDescribeResponse, TopicName,
};
use uuid::Uuid;

use super::authz::{check_topic, group_denied, topic_denied};
use super::codec::Request;
use super::group_authz::group_allowed;
use super::KafkaContext;
use crate::security::{Operation, Principal};

/// A topic of a share request: by id (fetch, acknowledge) or by name (offsets).
enum Named<'a> {
    Id(Uuid),
    Name(&'a TopicName),
}

/// The error code refusing `req` as a whole, or `None` when `p` may go on. Blocking (topic
/// ids are looked up).
pub(super) fn share_refusal(ctx: &KafkaContext, p: &Principal, req: &Request) -> Option<i16> {
    if !ctx.broker.security().enabled() {
        return None;
    }
    let read = Operation::Read;
    let (group, op, topics): (Option<&str>, Operation, Vec<Named<'_>>) = match req {
        Request::ShareGroupHeartbeat(r) => (Some(r.group_id.as_str()), read, Vec::new()),
        Request::ShareFetch(r) => {
            let ids = r.topics.iter().map(|t| Named::Id(t.topic_id)).collect();
            (r.group_id.as_ref().map(|g| g.as_str()), read, ids)
        }
        Request::ShareAcknowledge(r) => {
            let ids = r.topics.iter().map(|t| Named::Id(t.topic_id)).collect();
            (r.group_id.as_ref().map(|g| g.as_str()), read, ids)
        }
        Request::AlterShareGroupOffsets(r) => {
            let names = r
                .topics
                .iter()
                .map(|t| Named::Name(&t.topic_name))
                .collect();
            (Some(r.group_id.as_str()), read, names)
        }
        Request::DeleteShareGroupOffsets(r) => {
            let names = r
                .topics
                .iter()
                .map(|t| Named::Name(&t.topic_name))
                .collect();
            (Some(r.group_id.as_str()), Operation::Delete, names)
        }
        _ => return None,
    };
    if let Some(g) = group {
        if !group_allowed(ctx, p, op, g) {
            return Some(group_denied());
        }
    }
    let refused = topics.iter().any(|t| {
        let name = match t {
            Named::Id(id) => ctx.broker.topic_by_id(*id.as_bytes()),
            Named::Name(n) => Some(n.0.to_string()),
        };
        // An unknown id is answered by `share/` as it always is.
        name.is_some_and(|n| !check_topic(ctx, p, read, &n))
    });
    refused.then(topic_denied)
}

/// Replaces the groups `p` may not describe by GROUP_AUTHORIZATION_FAILED.
pub(super) fn filter_share_describe(
    ctx: &KafkaContext,
    p: &Principal,
    resp: &mut ShareGroupDescribeResponse,
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

/// Replaces the groups `p` may not describe by GROUP_AUTHORIZATION_FAILED.
pub(super) fn filter_share_offsets(
    ctx: &KafkaContext,
    p: &Principal,
    resp: &mut DescribeShareGroupOffsetsResponse,
) {
    if !ctx.broker.security().enabled() {
        return;
    }
    for g in &mut resp.groups {
        if !group_allowed(ctx, p, Operation::Describe, &g.group_id) {
            g.topics.clear();
            g.error_code = group_denied();
        }
    }
}
