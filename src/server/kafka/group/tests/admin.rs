//! DescribeGroups, ListGroups and DeleteGroups over groups in memory and groups known only by
//! their committed offsets.

use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::ResponseError;

use super::offsets::commit;
use super::*;
use crate::server::kafka::group::GroupOffsets;

fn describe(groups: &[&str]) -> DescribeGroupsRequest {
    DescribeGroupsRequest::default().with_groups(groups.iter().map(|g| gid(g)).collect())
}

#[tokio::test]
async fn describe_shows_state_protocol_members_metadata_and_assignments() {
    let fx = fixture();
    let (ids, _) = fx.stable_group(2);
    let reply = fx
        .coord
        .describe_groups(
            describe(&[GROUP]).with_include_authorized_operations(true),
            5,
        )
        .await;
    let g = &reply.groups[0];
    assert_eq!(g.error_code, 0);
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.protocol_type.as_str(), "consumer");
    assert_eq!(g.protocol_data.as_str(), "range");
    assert_ne!(g.authorized_operations, i32::MIN);
    assert_eq!(g.members.len(), 2);
    for m in &g.members {
        assert!(ids.iter().any(|id| id == m.member_id.as_str()));
        assert_eq!(m.member_metadata.as_ref(), b"meta");
        assert!(m.member_assignment.starts_with(b"a-"));
        assert_eq!(m.client_id.as_str(), "client");
        assert_eq!(m.client_host.as_str(), "/127.0.0.1");
    }

    // While rebalancing: no protocol, no metadata.
    let _parked = fx.start_join(join_req(&ids[0], RANGE), 9);
    let reply = fx.coord.describe_groups(describe(&[GROUP]), 5).await;
    let g = &reply.groups[0];
    assert_eq!(g.group_state.as_str(), "PreparingRebalance");
    assert_eq!(g.protocol_data.as_str(), "");
    assert!(g.members.iter().all(|m| m.member_metadata.is_empty()));
}

#[tokio::test]
async fn unknown_groups_are_dead_and_from_v6_not_found_and_offset_only_groups_are_empty() {
    let fx = fixture();
    let v5 = fx.coord.describe_groups(describe(&["nope"]), 5).await;
    assert_eq!(
        (v5.groups[0].error_code, v5.groups[0].group_state.as_str()),
        (0, "Dead")
    );
    let v6 = fx.coord.describe_groups(describe(&["nope"]), 6).await;
    assert_eq!(v6.groups[0].error_code, ec(ResponseError::GroupIdNotFound));
    assert_eq!(v6.groups[0].group_state.as_str(), "Dead");
    assert!(v6.groups[0].error_message.is_some());

    assert_eq!(commit(&fx, "", -1, "t", 0, 1, 8).await, vec![0]);
    let reply = fx.coord.describe_groups(describe(&[GROUP]), 6).await;
    assert_eq!(
        (
            reply.groups[0].error_code,
            reply.groups[0].group_state.as_str()
        ),
        (0, "Empty")
    );
    assert!(reply.groups[0].members.is_empty());
}

#[tokio::test]
async fn list_shows_groups_in_memory_and_with_offsets_filtered_by_state_and_type() {
    let fx = fixture();
    fx.stable_group(1);
    let offsets_only = fx.coord.offset_commit(
        super::offsets::commit_req("", -1, "t", &[(0, 1, None)]).with_group_id(gid("idle")),
        8,
    );
    assert_eq!(offsets_only.await.topics[0].partitions[0].error_code, 0);

    let all = fx.coord.list_groups(ListGroupsRequest::default(), 5).await;
    let listed: Vec<(String, String, String, String)> = all
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.protocol_type.to_string(),
                g.group_state.to_string(),
                g.group_type.to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                GROUP.into(),
                "consumer".into(),
                "Stable".into(),
                "classic".into()
            ),
            (
                "idle".into(),
                String::new(),
                "Empty".into(),
                "classic".into()
            ),
        ]
    );
    let empty_only = ListGroupsRequest::default().with_states_filter(vec![s(" EMPTY ")]);
    let reply = fx.coord.list_groups(empty_only, 4).await;
    assert_eq!(reply.groups.len(), 1);
    assert_eq!(reply.groups[0].group_id.as_str(), "idle");
    let consumer_type = ListGroupsRequest::default().with_types_filter(vec![s("consumer")]);
    assert!(fx
        .coord
        .list_groups(consumer_type, 5)
        .await
        .groups
        .is_empty());
    let classic_type = ListGroupsRequest::default().with_types_filter(vec![s("Classic")]);
    assert_eq!(fx.coord.list_groups(classic_type, 5).await.groups.len(), 2);
    // Before v4 the state filter does not exist.
    let v3 = fx.coord.list_groups(ListGroupsRequest::default(), 3).await;
    assert_eq!(v3.groups.len(), 2);
    assert!(v3.groups.iter().all(|g| g.group_state.is_empty()));
}

#[tokio::test]
async fn delete_refuses_groups_with_members_and_deletes_the_offsets_of_empty_ones() {
    let fx = fixture();
    let (ids, generation) = fx.stable_group(1);
    assert_eq!(
        commit(&fx, &ids[0], generation, "t", 0, 5, 8).await,
        vec![0]
    );
    let req =
        DeleteGroupsRequest::default().with_groups_names(vec![gid(GROUP), gid("nope"), gid(GROUP)]);
    let reply = fx.coord.delete_groups(req.clone(), 2).await;
    let results: Vec<(String, i16)> = reply
        .results
        .iter()
        .map(|r| (r.group_id.to_string(), r.error_code))
        .collect();
    assert_eq!(
        results,
        vec![
            (GROUP.into(), ec(ResponseError::NonEmptyGroup)),
            ("nope".into(), ec(ResponseError::GroupIdNotFound)),
        ]
    );
    assert!(fx.store.fetch(GROUP, "t", 0).expect("read").is_some());

    assert_eq!(fx.leave(&[&ids[0]]).await, vec![0]);
    let reply = fx.coord.delete_groups(req.clone(), 2).await;
    assert_eq!(reply.results[0].error_code, 0);
    assert!(
        fx.store.fetch(GROUP, "t", 0).expect("read").is_none(),
        "offsets deleted"
    );
    assert!(fx.store.groups().expect("list").is_empty());
    let again = fx.coord.delete_groups(req, 2).await;
    assert_eq!(
        again.results[0].error_code,
        ec(ResponseError::GroupIdNotFound)
    );
}
