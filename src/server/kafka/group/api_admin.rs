//! DescribeGroups, ListGroups and DeleteGroups. Groups with members are in memory; a group
//! known only by its committed offsets (after its members left, or after a restart) is
//! described and listed as Empty, and DeleteGroups deletes its offsets.

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::GroupId;
use kafka_protocol::ResponseError;

use super::api_offsets::store_error_code;
use super::state::{code, str_bytes, GroupState};
use super::{lock, version_served, GroupCoordinator, NoGroup};

const DESCRIBE_GROUPS: i16 = 15;
const LIST_GROUPS: i16 = 16;
const DELETE_GROUPS: i16 = 42;

/// The operations a client may do on a group (no ACLs: all of Kafka's group operations):
/// READ (3), DELETE (6), DESCRIBE (8), DESCRIBE_CONFIGS (10), ALTER_CONFIGS (11).
const GROUP_OPERATIONS_ALL: i32 = (1 << 3) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 11);

/// Kafka's group type of every group served here (ListGroups v5).
const GROUP_TYPE_CLASSIC: &str = "classic";

impl GroupCoordinator {
    /// DescribeGroups (versions 0-6): state, protocol type, the chosen protocol and members
    /// with their metadata when Stable, and assignments. An unknown group is Dead (from v6
    /// with GROUP_ID_NOT_FOUND).
    pub async fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        let mut groups = Vec::with_capacity(req.groups.len());
        for group_id in &req.groups {
            let mut described = if !version_served(DESCRIBE_GROUPS, version) {
                DescribedGroup::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(code(ResponseError::UnsupportedVersion))
            } else {
                self.describe_one(group_id, version).await
            };
            if version >= 3 && req.include_authorized_operations && described.error_code == 0 {
                described.authorized_operations = GROUP_OPERATIONS_ALL;
            }
            if version < 6 {
                described.error_message = None;
            }
            if version < 4 {
                for m in &mut described.members {
                    m.group_instance_id = None;
                }
            }
            groups.push(described);
        }
        DescribeGroupsResponse::default().with_groups(groups)
    }

    async fn describe_one(&self, group_id: &GroupId, version: i16) -> DescribedGroup {
        let base = DescribedGroup::default().with_group_id(group_id.clone());
        let in_memory = self.with_group(group_id, false, |g, _| {
            let stable = g.state == GroupState::Stable;
            let protocol = g.protocol_name.clone().filter(|_| stable);
            let members = g
                .members
                .values()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(str_bytes(&m.id))
                        .with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                        .with_client_id(str_bytes(&m.client_id))
                        .with_client_host(str_bytes(&m.client_host))
                        .with_member_metadata(if stable {
                            m.metadata(protocol.as_deref())
                        } else {
                            Default::default()
                        })
                        .with_member_assignment(m.assignment.clone())
                })
                .collect();
            base.clone()
                .with_group_state(str_bytes(g.state.name()))
                .with_protocol_type(str_bytes(g.protocol_type.as_deref().unwrap_or("")))
                .with_protocol_data(str_bytes(protocol.as_deref().unwrap_or("")))
                .with_members(members)
        });
        if let Ok(described) = in_memory {
            return described;
        }
        let group = group_id.as_str().to_string();
        match self.store_call(move |s| s.has_group(&group)).await {
            Ok(true) => base.with_group_state(str_bytes(GroupState::Empty.name())),
            Ok(false) if version >= 6 => base
                .with_group_state(str_bytes(GroupState::Dead.name()))
                .with_error_code(code(ResponseError::GroupIdNotFound))
                .with_error_message(Some(str_bytes(&format!(
                    "Group {} not found.",
                    group_id.as_str()
                )))),
            Ok(false) => base.with_group_state(str_bytes(GroupState::Dead.name())),
            Err(e) => base.with_error_code(store_error_code(&e)),
        }
    }

    /// ListGroups (versions 0-5; state filter from v4, type filter from v5, both
    /// case-insensitive).
    pub async fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        if !version_served(LIST_GROUPS, version) {
            return ListGroupsResponse::default()
                .with_error_code(code(ResponseError::UnsupportedVersion));
        }
        // Group id -> (protocol type, state).
        let mut listed: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
        for arc in self.groups_in_memory() {
            let g = lock(&arc);
            if g.state != GroupState::Dead {
                let protocol_type = g.protocol_type.clone().unwrap_or_default();
                listed.insert(g.id.clone(), (protocol_type, g.state.name()));
            }
        }
        match self.store_call(|s| s.groups()).await {
            Ok(stored) => {
                for id in stored {
                    listed
                        .entry(id)
                        .or_insert((String::new(), GroupState::Empty.name()));
                }
            }
            Err(e) => return ListGroupsResponse::default().with_error_code(store_error_code(&e)),
        }
        let states: Vec<String> = req
            .states_filter
            .iter()
            .map(|s| s.trim().to_lowercase())
            .collect();
        let types: Vec<String> = req
            .types_filter
            .iter()
            .map(|s| s.trim().to_lowercase())
            .collect();
        let groups = listed
            .into_iter()
            .filter(|(_, (_, state))| {
                version < 4 || states.is_empty() || states.contains(&state.to_lowercase())
            })
            .filter(|_| {
                version < 5 || types.is_empty() || types.iter().any(|t| t == GROUP_TYPE_CLASSIC)
            })
            .map(|(id, (protocol_type, state))| {
                let mut g = ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(&id)))
                    .with_protocol_type(str_bytes(&protocol_type));
                if version >= 4 {
                    g.group_state = str_bytes(state);
                }
                if version >= 5 {
                    g.group_type = str_bytes(GROUP_TYPE_CLASSIC);
                }
                g
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }

    /// DeleteGroups (versions 0-2): an Empty group's committed offsets are deleted (durably);
    /// a group with members gets NON_EMPTY_GROUP, an unknown one GROUP_ID_NOT_FOUND.
    pub async fn delete_groups(
        &self,
        req: DeleteGroupsRequest,
        version: i16,
    ) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(req.groups_names.len());
        let mut seen = std::collections::BTreeSet::new();
        for group_id in &req.groups_names {
            if !seen.insert(group_id.as_str().to_string()) {
                continue;
            }
            let error_code = if version_served(DELETE_GROUPS, version) {
                self.delete_one(group_id).await
            } else {
                code(ResponseError::UnsupportedVersion)
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(error_code),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }

    async fn delete_one(&self, group_id: &GroupId) -> i16 {
        let was_in_memory = match self.remove_if_empty(group_id) {
            Ok(false) => return code(ResponseError::NonEmptyGroup),
            Ok(true) => true,
            Err(NoGroup::NotFound | NoGroup::TooMany) => false,
        };
        let group = group_id.as_str().to_string();
        let deleted = self
            .store_call(move |s| {
                let had_offsets = s.has_group(&group)?;
                if had_offsets {
                    s.delete_group(&group)?;
                }
                Ok(had_offsets)
            })
            .await;
        match deleted {
            Ok(had_offsets) if had_offsets || was_in_memory => 0,
            Ok(_) => code(ResponseError::GroupIdNotFound),
            Err(e) => store_error_code(&e),
        }
    }
}
