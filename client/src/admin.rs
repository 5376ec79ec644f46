//! Admin calls: create (with partitions), alter (add partitions), delete, list and describe
//! topics and queues; a topic's id and partition count; the cluster status; adding and
//! removing a cluster's nodes.

use super::{unexpected, Client, LogSettings, QueueInfo, QueueSettings, Result, TopicInfo};
use crate::protocol::{ClusterStatus, Reply, Request, Target};
use sluice_format::TopicId;

impl Client {
    /// Creates a topic of one partition.
    pub async fn create_topic(&self, name: &str, settings: LogSettings) -> Result<()> {
        self.create_topic_with_partitions(name, settings, 1).await
    }

    /// Creates a topic of `partitions` partitions.
    pub async fn create_topic_with_partitions(
        &self,
        name: &str,
        settings: LogSettings,
        partitions: u32,
    ) -> Result<()> {
        self.expect_ok(Request::CreateTopic {
            name: name.into(),
            settings,
            partitions: Some(partitions),
        })
        .await
    }

    /// Grows topic `name` to `partitions` partitions (partitions are only added).
    pub async fn add_partitions(&self, name: &str, partitions: u32) -> Result<()> {
        self.inner.partitions.lock().unwrap().remove(name);
        self.expect_ok(Request::AlterTopic {
            name: name.into(),
            partitions,
        })
        .await
    }

    /// A topic's id and partition count (also refreshing the partition count the client
    /// caches for keyed publishes).
    pub async fn topic_meta(&self, name: &str) -> Result<(TopicId, u32)> {
        match self
            .request(Request::TopicMeta { name: name.into() })
            .await?
        {
            Reply::TopicMeta { id, partitions } => {
                self.inner
                    .partitions
                    .lock()
                    .unwrap()
                    .insert(name.to_string(), partitions);
                Ok((TopicId(id), partitions))
            }
            r => Err(unexpected(r)),
        }
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.inner.partitions.lock().unwrap().remove(name);
        self.expect_ok(Request::DeleteTopic { name: name.into() })
            .await
    }

    /// Names of all topics.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        match self.request(Request::ListTopics).await? {
            Reply::Names(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    /// Figures of a topic.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        match self
            .request(Request::DescribeTopic { name: name.into() })
            .await?
        {
            Reply::TopicInfo(t) => Ok(t),
            r => Err(unexpected(r)),
        }
    }

    /// Creates a queue and its dead-letter queue.
    pub async fn create_queue(&self, name: &str, settings: QueueSettings) -> Result<()> {
        self.expect_ok(Request::CreateQueue {
            name: name.into(),
            settings,
        })
        .await
    }

    /// Deletes a queue and its data (not its dead-letter queue).
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        self.expect_ok(Request::DeleteQueue { name: name.into() })
            .await
    }

    /// Names of all queues.
    pub async fn list_queues(&self) -> Result<Vec<String>> {
        match self.request(Request::ListQueues).await? {
            Reply::Names(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    /// Figures of a queue.
    pub async fn describe_queue(&self, name: &str) -> Result<QueueInfo> {
        match self
            .request(Request::DescribeQueue { name: name.into() })
            .await?
        {
            Reply::QueueInfo(q) => Ok(q),
            r => Err(unexpected(r)),
        }
    }

    /// The answering node's view of its cluster: its id, the nodes, and each replicated group
    /// (leader, term, indexes, and, for the groups it leads, its followers' replication).
    /// `InvalidArgument` from a server that is not a node of a cluster; needs `describe` on the
    /// cluster when the server has users.
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        match self.request(Request::ClusterStatus).await? {
            Reply::ClusterStatus(s) => Ok(s),
            r => Err(unexpected(r)),
        }
    }

    /// Adds node `id`, whose cluster listener is `addr`, to the cluster; answers once the
    /// change is committed. Every group then gains a replica on it, in the background
    /// (`cluster_status` shows each group's voters and learners).
    pub async fn cluster_add_node(&self, id: u64, addr: &str) -> Result<()> {
        self.expect_ok(Request::ClusterAddNode {
            id,
            addr: addr.to_string(),
        })
        .await
    }

    /// Removes node `id` from the cluster; answers once the change is committed. Every group
    /// then drops its replica there, in the background.
    pub async fn cluster_remove_node(&self, id: u64) -> Result<()> {
        self.expect_ok(Request::ClusterRemoveNode { id }).await
    }

    /// Sets the replication factor of every partition of a topic (`Target::Topic`) or of a
    /// queue (`Target::Queue`): answered once the cluster's metadata has it; the replicas
    /// then move in the background (watch `cluster_status`).
    pub async fn cluster_set_replicas(&self, target: Target, replicas: u32) -> Result<()> {
        self.expect_ok(Request::ClusterSetReplicas { target, replicas })
            .await
    }
}
