//! Admin requests: create, alter (add partitions), delete, list and describe topics and
//! queues; a topic's id and partition count; the cluster status of a cluster node.

use super::connection::Conn;
use super::End;
use crate::broker::Broker;
use crate::protocol::{
    ClusterNodeInfo, ClusterStatus, ErrorCode, FollowerState, GroupState, Reply, Request,
};
use crate::security::ResourceKind;

impl Conn {
    /// Runs an admin request on the blocking pool; its reply fills the request's slot.
    pub(super) async fn admin(&self, id: u32, req: Request) -> Result<(), End> {
        let tx = self.slot().await?;
        let broker = self.broker.clone();
        let principal = self.auth.principal.clone();
        let kind = match req {
            Request::ListQueues => ResourceKind::Queue,
            _ => ResourceKind::Topic,
        };
        self.spawn_reply(tx, id, move || {
            Ok(match admin(&broker, req)? {
                Reply::Names(names) => {
                    let sec = broker.security();
                    Reply::Names(super::auth::visible(sec, &principal, kind, names))
                }
                other => other,
            })
        });
        Ok(())
    }
}

impl Conn {
    /// `CLUSTER_STATUS`: this node's view of its cluster (already authorized).
    pub(super) fn cluster_status(&self) -> Reply {
        let Some(c) = self.broker.cluster() else {
            return Reply::error(
                ErrorCode::InvalidArgument,
                "this server is not a node of a cluster (started without --cluster)",
            );
        };
        Reply::ClusterStatus(cluster_status(c))
    }
}

/// The cluster of a cluster node; `InvalidArgument` on a single server.
fn cluster_of(b: &Broker) -> crate::broker::Result<&std::sync::Arc<crate::cluster::Cluster>> {
    b.cluster().ok_or_else(|| {
        crate::broker::BrokerError::new(
            crate::broker::ErrorKind::InvalidArgument,
            "this server is not a node of a cluster (started without --cluster)",
        )
    })
}

/// A cluster node's view as sent to a client.
fn cluster_status(c: &crate::cluster::Cluster) -> ClusterStatus {
    let nodes = c
        .nodes()
        .iter()
        .map(|(id, a)| ClusterNodeInfo {
            id: *id,
            cluster_addr: a.clone(),
        })
        .collect();
    let groups = c
        .status()
        .into_iter()
        .map(|g| GroupState {
            preferred: c.placement(&g.group).and_then(|p| p.nodes.first().copied()),
            group: g.group.0,
            term: g.term,
            leader: g.leader,
            last_index: g.last_index,
            applied_index: g.applied_index,
            // The leader's replication figures count the leader itself: not a follower.
            followers: g
                .followers
                .into_iter()
                .filter(|(node, _)| *node != g.node)
                .map(|(node, matched)| FollowerState { node, matched })
                .collect(),
            voters: g.voters.into_iter().collect(),
            learners: g.learners.into_iter().collect(),
        })
        .collect();
    ClusterStatus {
        node_id: c.node_id(),
        cluster_id: c.cluster_uuid(),
        nodes,
        groups,
        unreachable: c.unreachable_peers(),
    }
}

/// The broker call of an admin request, and its reply. Blocking.
fn admin(b: &Broker, req: Request) -> crate::broker::Result<Reply> {
    Ok(match req {
        Request::CreateTopic {
            name,
            settings,
            partitions,
        } => {
            b.create_topic(&name, &settings, partitions.unwrap_or(1))?;
            Reply::Ok
        }
        Request::AlterTopic { name, partitions } => {
            b.add_partitions(&name, partitions)?;
            Reply::Ok
        }
        Request::TopicMeta { name } => {
            let (id, partitions) = b.topic_meta(&name)?;
            Reply::TopicMeta {
                id: id.0,
                partitions,
            }
        }
        Request::DeleteTopic { name } => {
            b.delete_topic(&name)?;
            Reply::Ok
        }
        Request::ListTopics => Reply::Names(b.list_topics()),
        Request::DescribeTopic { name } => Reply::TopicInfo(b.topic_figures(name)?),
        Request::CreateQueue { name, settings } => {
            b.create_queue(&name, settings)?;
            Reply::Ok
        }
        Request::DeleteQueue { name } => {
            b.delete_queue(&name)?;
            Reply::Ok
        }
        Request::ListQueues => Reply::Names(b.list_queues()),
        Request::ClusterAddNode { id, addr } => {
            cluster_of(b)?.add_node_blocking(id, &addr)?;
            Reply::Ok
        }
        Request::ClusterRemoveNode { id } => {
            cluster_of(b)?.remove_node_blocking(id)?;
            Reply::Ok
        }
        Request::ClusterSetReplicas { target, replicas } => {
            cluster_of(b)?.set_replicas_blocking(&target, replicas)?;
            Reply::Ok
        }
        Request::DescribeQueue { name } => Reply::QueueInfo(b.queue_figures(name)?.info),
        other => unreachable!("not an admin request: {other:?}"),
    })
}
