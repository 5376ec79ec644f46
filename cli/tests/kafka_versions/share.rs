//! The share-group APIs at each version: a member joins and leaves, fetches and acknowledges;
//! groups are described, their start offsets described and deleted.

use kafka_protocol::messages::*;

use kafka_protocol::records::Compression;

use super::common::kafka_raw::{batch, metadata, produce, Raw};
use super::common::kafka_share::{Member, ACCEPT};
use super::{s, topic};

/// Joins group `g` on a new topic `share-<g>` of one partition holding two records.
fn join(addr: &str, g: &str, member: &str) -> Member {
    let t = format!("share-{g}");
    let mut c = Raw::connect(addr);
    metadata(&mut c, &t);
    assert_eq!(
        produce(&mut c, &t, batch(&["a", "b"], Compression::None)).0,
        0
    );
    Member::join(addr, g, member, &t)
}

const GROUP_ID_NOT_FOUND: i16 = 69;
const NON_EMPTY_GROUP: i16 = 68;

pub fn check_heartbeat(addr: &str, v: i16) {
    assert_eq!(v, 1);
    let mut m = join(addr, "vh", "m1");
    assert_eq!(m.partitions, vec![0]);
    m.leave();
}

pub fn check_share_fetch(addr: &str, v: i16) {
    assert_eq!(v, 1);
    let mut m = join(addr, "vf", "m1");
    let (got, _) = m.fetch(&[], 500);
    assert_eq!(got.len(), 2, "{got:?}");
    let (none, code) = m.fetch(&[(0, 1, ACCEPT)], 0);
    assert_eq!((none.len(), code), (0, 0));
    m.leave();
}

pub fn check_share_acknowledge(addr: &str, v: i16) {
    assert_eq!(v, 1);
    let mut m = join(addr, "va", "m1");
    let (got, _) = m.fetch(&[], 500);
    assert_eq!(got.len(), 2);
    assert_eq!(m.acknowledge(&[(0, 1, ACCEPT)]), 0);
    m.leave();
}

pub fn check_describe(addr: &str, v: i16) {
    assert_eq!(v, 1);
    let mut m = join(addr, "vd", "m1");
    let req = ShareGroupDescribeRequest::default()
        .with_group_ids(vec![GroupId(s("vd")), GroupId(s("nobody"))]);
    let r: ShareGroupDescribeResponse = m.c.call(ApiKey::ShareGroupDescribe, v, &req);
    let g = &r.groups[0];
    assert_eq!(g.error_code, 0);
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.members.len(), 1);
    assert_eq!(g.members[0].member_id.as_str(), "m1");
    assert_eq!(g.members[0].subscribed_topic_names, vec![topic("share-vd")]);
    assert_eq!(r.groups[1].error_code, GROUP_ID_NOT_FOUND);
    m.leave();
}

pub fn check_describe_offsets(addr: &str, v: i16) {
    let mut m = join(addr, "vo", "m1");
    let (got, _) = m.fetch(&[], 500);
    assert_eq!(got.len(), 2);
    assert_eq!(m.acknowledge(&[(0, 0, ACCEPT)]), 0);
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(GroupId(s("vo")))
            .with_topics(None),
    ]);
    let r: DescribeShareGroupOffsetsResponse = m.c.call(ApiKey::DescribeShareGroupOffsets, v, &req);
    let t = &r.groups[0].topics[0];
    assert_eq!(t.topic_name, topic("share-vo"));
    assert_eq!(
        t.partitions[0].start_offset, 1,
        "the first record not accepted"
    );
    m.leave();
}

pub fn check_delete_offsets(addr: &str, v: i16) {
    let mut m = join(addr, "vx", "m1");
    let (got, _) = m.fetch(&[], 500);
    assert_eq!(got.len(), 2);
    let req = DeleteShareGroupOffsetsRequest::default()
        .with_group_id(GroupId(s("vx")))
        .with_topics(vec![
            delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic::default()
                .with_topic_name(topic("share-vx")),
        ]);
    let r: DeleteShareGroupOffsetsResponse = m.c.call(ApiKey::DeleteShareGroupOffsets, v, &req);
    assert_eq!(
        r.error_code, NON_EMPTY_GROUP,
        "a group with members keeps its state"
    );
    m.leave();
    let mut c = Raw::connect(addr);
    let r: DeleteShareGroupOffsetsResponse = c.call(ApiKey::DeleteShareGroupOffsets, v, &req);
    assert_eq!(r.error_code, 0);
    assert_eq!(r.responses[0].error_code, 0);
    // Gone: a new member starts over and gets both records again, first delivery.
    let mut m = Member::join(addr, "vx", "m2", "share-vx");
    let (got, _) = m.fetch(&[], 500);
    assert_eq!(
        got.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>(),
        vec![(0, 1), (1, 1)]
    );
    m.leave();
}

pub fn check_alter_offsets(addr: &str, v: i16) {
    let mut m = join(addr, "vz", "m1");
    let (got, _) = m.fetch(&[], 500);
    assert_eq!(got.len(), 2);
    let req = AlterShareGroupOffsetsRequest::default()
        .with_group_id(GroupId(s("vz")))
        .with_topics(vec![
            alter_share_group_offsets_request::AlterShareGroupOffsetsRequestTopic::default()
                .with_topic_name(topic("share-vz"))
                .with_partitions(vec![
                    alter_share_group_offsets_request::AlterShareGroupOffsetsRequestPartition::default()
                        .with_partition_index(0)
                        .with_start_offset(1),
                ]),
        ]);
    let r: AlterShareGroupOffsetsResponse = m.c.call(ApiKey::AlterShareGroupOffsets, v, &req);
    assert_eq!(
        r.error_code, NON_EMPTY_GROUP,
        "a group with members keeps its offsets"
    );
    m.leave();
    let r = m.fetch_req(-1, &[], 0);
    let r: ShareFetchResponse = m.c.call(ApiKey::ShareFetch, 1, &r);
    assert_eq!(r.error_code, 0);
    let mut c = Raw::connect(addr);
    let r: AlterShareGroupOffsetsResponse = c.call(ApiKey::AlterShareGroupOffsets, v, &req);
    assert_eq!(r.error_code, 0);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    // From offset 1 on, as a first delivery.
    let mut m = Member::join(addr, "vz", "m2", "share-vz");
    let (got, _) = m.fetch(&[], 500);
    assert_eq!(
        got.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>(),
        vec![(1, 1)]
    );
    m.leave();
}
