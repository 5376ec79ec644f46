//! The replica APIs at each served version, on a single node: DescribeLogDirs lists its data
//! directory with every partition of topic `v`; a reassignment is refused per partition (one
//! node holds every partition), and none is listed as under way.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::common::kafka_raw::Raw;

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.into()))
}

pub fn check_describe_log_dirs(c: &mut Raw, v: i16, partitions: usize) {
    // No topic list (null): every topic.
    let all = DescribeLogDirsRequest::default().with_topics(None);
    let r: DescribeLogDirsResponse = c.call(ApiKey::DescribeLogDirs, v, &all);
    assert_eq!((r.error_code, r.results.len()), (0, 1), "v{v}");
    let dir = &r.results[0];
    assert_eq!(dir.error_code, 0, "v{v}");
    assert!(!dir.log_dir.is_empty(), "v{v}");
    let t = dir.topics.iter().find(|t| t.name.0.as_str() == "v");
    let held = t.map_or(0, |t| t.partitions.len());
    assert_eq!(held, partitions, "v{v}: the partitions of topic v");
    if v >= 4 {
        assert!(
            dir.total_bytes > 0 && dir.usable_bytes <= dir.total_bytes,
            "v{v}"
        );
    }
    // One topic asked for by name: only its partition 0.
    let one = describe_log_dirs_request::DescribableLogDirTopic::default()
        .with_topic(topic("v"))
        .with_partitions(vec![0]);
    let req = DescribeLogDirsRequest::default().with_topics(Some(vec![one]));
    let r: DescribeLogDirsResponse = c.call(ApiKey::DescribeLogDirs, v, &req);
    let parts = &r.results[0].topics[0].partitions;
    assert_eq!(parts.len(), 1, "v{v}");
    assert_eq!(parts[0].partition_index, 0, "v{v}");
}

pub fn check_alter_reassignments(c: &mut Raw, v: i16) {
    let p = alter_partition_reassignments_request::ReassignablePartition::default()
        .with_partition_index(0)
        .with_replicas(Some(vec![BrokerId(0)]));
    let t = alter_partition_reassignments_request::ReassignableTopic::default()
        .with_name(topic("v"))
        .with_partitions(vec![p]);
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![t]);
    let r: AlterPartitionReassignmentsResponse =
        c.call(ApiKey::AlterPartitionReassignments, v, &req);
    assert_eq!(r.error_code, 0, "v{v}");
    let code = r.responses[0].partitions[0].error_code;
    assert_eq!(code, 39, "v{v}: INVALID_REPLICA_ASSIGNMENT on one node");
}

pub fn check_list_reassignments(c: &mut Raw, v: i16) {
    let req = ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000);
    let r: ListPartitionReassignmentsResponse = c.call(ApiKey::ListPartitionReassignments, v, &req);
    assert_eq!(r.error_code, 0, "v{v}");
    assert!(r.topics.is_empty(), "v{v}: {:?}", r.topics);
}
