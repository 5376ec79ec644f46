//! DescribeLogDirs (`kafka-log-dirs`, and Kafka's reassignment tool, which asks it of every
//! node before a move): the node's one log directory, its data directory, with the size of
//! each partition replica it holds (on a cluster node, the partitions placed on it) and the
//! file system's total and usable bytes.

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_replication::GroupId;

use super::authz;
use super::codec::Header;
use super::connection::{Conn, Slot};
use super::dispatch::respond;
use super::KafkaContext;
use crate::broker::spawn_blocking;
use crate::security::{Operation, Resource};

/// The partitions of `name` this node holds, each with its size in bytes. Blocking.
fn held(ctx: &KafkaContext, name: &str, only: Option<&[i32]>) -> Vec<DescribeLogDirsPartition> {
    let Ok(info) = ctx.broker.describe_topic(name.to_string()) else {
        return Vec::new();
    };
    let cluster = ctx.broker.cluster();
    info.partitions
        .iter()
        .filter(|p| only.map_or(true, |o| o.contains(&(p.partition as i32))))
        .filter(|p| {
            let group = GroupId(format!("t/{name}/{}", p.partition));
            cluster.map_or(true, |c| c.is_placed_here(&group))
        })
        .map(|p| {
            let mut d = DescribeLogDirsPartition::default();
            d.partition_index = p.partition as i32;
            d.partition_size = i64::try_from(p.size_bytes).unwrap_or(i64::MAX);
            d
        })
        .collect()
}

/// Answers DescribeLogDirs. Blocking.
fn describe(
    ctx: &KafkaContext,
    allowed: bool,
    req: &DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let mut resp = DescribeLogDirsResponse::default();
    if !allowed {
        resp.error_code = authz::cluster_denied();
        return resp;
    }
    let asked: Vec<(String, Option<Vec<i32>>)> = match &req.topics {
        None => ctx
            .broker
            .list_topics()
            .into_iter()
            .map(|t| (t, None))
            .collect(),
        Some(ts) => ts
            .iter()
            .map(|t| (t.topic.0.to_string(), Some(t.partitions.clone())))
            .collect(),
    };
    let root = ctx.broker.store().root().to_path_buf();
    let mut dir = DescribeLogDirsResult::default();
    dir.log_dir = StrBytes::from_string(root.display().to_string());
    let (usable, total) = crate::metrics::disk_space(&root).unwrap_or((0, 0));
    dir.total_bytes = i64::try_from(total).unwrap_or(i64::MAX);
    dir.usable_bytes = i64::try_from(usable).unwrap_or(i64::MAX);
    for (name, only) in asked {
        let partitions = held(ctx, &name, only.as_deref());
        if !partitions.is_empty() {
            let mut t = DescribeLogDirsTopic::default();
            t.name = TopicName(StrBytes::from_string(name));
            t.partitions = partitions;
            dir.topics.push(t);
        }
    }
    resp.results.push(dir);
    resp
}

impl Conn {
    pub(super) fn describe_log_dirs(&self, tx: Slot, h: Header, req: DescribeLogDirsRequest) {
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        spawn_blocking(move || {
            let allowed = authz::check(&ctx, &p, Operation::Describe, Resource::cluster());
            let resp = describe(&ctx, allowed, &req);
            respond(ctx.broker.metrics(), tx, &h, &resp);
        });
    }
}
