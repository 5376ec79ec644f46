//! Admin calls: create, delete, list and describe topics and queues.

use super::{unexpected, Client, LogSettings, QueueInfo, QueueSettings, Result, TopicInfo};
use crate::protocol::{Reply, Request};

impl Client {
    /// Creates a topic.
    pub async fn create_topic(&self, name: &str, settings: LogSettings) -> Result<()> {
        self.expect_ok(Request::CreateTopic {
            name: name.into(),
            settings,
        })
        .await
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
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
}
