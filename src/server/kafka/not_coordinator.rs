//! NOT_COORDINATOR answers: a consumer-group request that reached a cluster node which does not
//! coordinate groups (only the cluster metadata's leader does, see `cluster`). Kafka clients
//! then ask FindCoordinator again and go to the node it names. A new metadata leader that has
//! not yet applied its predecessors' entries answers COORDINATOR_LOAD_IN_PROGRESS the same
//! way, and clients retry it.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsResponse, DescribeGroupsResponse, HeartbeatResponse, JoinGroupResponse,
    LeaveGroupResponse, OffsetCommitResponse, OffsetFetchResponse, SyncGroupResponse,
};

use super::codec::{Header, Request};
use super::connection::{Conn, Slot};

impl Conn {
    /// Answers `req`, a group request other than ListGroups, with error `c` (NOT_COORDINATOR
    /// or COORDINATOR_LOAD_IN_PROGRESS) on every group, topic and partition it names.
    pub(super) fn refuse_not_coordinator(&self, tx: Slot, h: Header, req: Request, c: i16) {
        match req {
            Request::JoinGroup(_) => {
                self.refuse(tx, h, JoinGroupResponse::default().with_error_code(c))
            }
            Request::SyncGroup(_) => {
                self.refuse(tx, h, SyncGroupResponse::default().with_error_code(c))
            }
            Request::Heartbeat(_) => {
                self.refuse(tx, h, HeartbeatResponse::default().with_error_code(c))
            }
            Request::LeaveGroup(_) => {
                self.refuse(tx, h, LeaveGroupResponse::default().with_error_code(c))
            }
            Request::OffsetCommit(r) => {
                let mut resp = OffsetCommitResponse::default();
                resp.topics = r
                    .topics
                    .into_iter()
                    .map(|t| super::group_authz::commit_refused(t, c))
                    .collect();
                self.refuse(tx, h, resp)
            }
            Request::OffsetFetch(r) => {
                let mut resp = OffsetFetchResponse::default();
                resp.error_code = c;
                resp.topics = r
                    .topics
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| {
                        let mut out = OffsetFetchResponseTopic::default();
                        out.name = t.name;
                        out.partitions = t
                            .partition_indexes
                            .iter()
                            .map(|&i| {
                                let mut x = OffsetFetchResponsePartition::default();
                                x.partition_index = i;
                                x.committed_offset = -1;
                                x.error_code = c;
                                x
                            })
                            .collect();
                        out
                    })
                    .collect();
                resp.groups = r
                    .groups
                    .into_iter()
                    .map(|g| {
                        let mut out = OffsetFetchResponseGroup::default();
                        out.group_id = g.group_id;
                        out.error_code = c;
                        out
                    })
                    .collect();
                self.refuse(tx, h, resp)
            }
            Request::DescribeGroups(r) => {
                let mut resp = DescribeGroupsResponse::default();
                resp.groups = r
                    .groups
                    .into_iter()
                    .map(|g| {
                        let mut out = DescribedGroup::default();
                        out.group_id = g;
                        out.error_code = c;
                        out
                    })
                    .collect();
                self.refuse(tx, h, resp)
            }
            Request::DeleteGroups(r) => {
                let mut resp = DeleteGroupsResponse::default();
                resp.results = r
                    .groups_names
                    .into_iter()
                    .map(|g| {
                        let mut out = DeletableGroupResult::default();
                        out.group_id = g;
                        out.error_code = c;
                        out
                    })
                    .collect();
                self.refuse(tx, h, resp)
            }
            other => {
                tracing::error!(?other, "not a group request");
                let _ = tx.send(None);
            }
        }
    }
}
