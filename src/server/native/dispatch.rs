//! Routes each decoded request to the handler of its family.

use super::connection::Conn;
use super::subscribe::Commit;
use super::End;
use crate::protocol::{ErrorCode, Reply, Request};

impl Conn {
    /// Handles one request; an `Err` ends the connection.
    pub(super) async fn dispatch(&mut self, id: u32, req: Request) -> Result<(), End> {
        self.reap();
        if !matches!(req, Request::Credit { .. }) {
            if let Some(refused) = self.check(&req)? {
                return self.reply(id, refused).await;
            }
        }
        match req {
            Request::Hello { .. } => {
                let refused = Reply::error(ErrorCode::InvalidArgument, "already greeted");
                self.reply(id, refused).await
            }
            Request::Ping => self.reply(id, Reply::Pong).await,
            Request::Publish {
                target,
                route,
                batch,
            } => self.publish(id, target, route, batch).await,
            Request::Subscribe {
                topic,
                name,
                partitions,
                start,
                credit,
            } => {
                self.subscribe(id, topic, name, partitions, start, credit)
                    .await
            }
            Request::Credit { id: target, credit } => {
                self.credit(target, credit);
                Ok(())
            }
            Request::Cancel { id: target } => self.cancel(id, target).await,
            Request::Commit {
                topic,
                name,
                partition,
                next,
                metadata,
            } => {
                let c = Commit {
                    topic,
                    name,
                    partition,
                    next,
                    metadata,
                };
                self.commit(id, c).await
            }
            Request::Consume { source, prefetch } => self.consume(id, source, prefetch).await,
            Request::Ack {
                id: target,
                offsets,
            } => self.ack(id, target, offsets).await,
            Request::Nack {
                id: target,
                delay_ms,
                offsets,
            } => self.nack(id, target, delay_ms, offsets).await,
            Request::CreateTopic { .. }
            | Request::DeleteTopic { .. }
            | Request::ListTopics
            | Request::DescribeTopic { .. }
            | Request::AlterTopic { .. }
            | Request::TopicMeta { .. }
            | Request::CreateQueue { .. }
            | Request::DeleteQueue { .. }
            | Request::ListQueues
            | Request::DescribeQueue { .. }
            | Request::ClusterAddNode { .. }
            | Request::ClusterRemoveNode { .. }
            | Request::ClusterSetReplicas { .. } => self.admin(id, req).await,
            Request::ClusterStatus => {
                let reply = self.cluster_status();
                self.reply(id, reply).await
            }
            Request::Security(s) => self.security_request(id, s).await,
        }
    }
}
