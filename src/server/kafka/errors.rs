//! The error codes a Kafka response carries, counted in
//! `sluice_errors_total{protocol="kafka",code}` as each response goes out: the top-level code
//! and every per-topic, per-partition, per-group or per-member one (zero, no error, is not
//! counted). Kafka's `-1` (UNKNOWN_SERVER_ERROR) is counted under [`UNKNOWN_SERVER_ERROR`].

use kafka_protocol::messages::*;

use crate::metrics::{Metrics, Protocol};

/// The counter slot of Kafka's code `-1`, the one negative code.
pub const UNKNOWN_SERVER_ERROR: usize = crate::metrics::ERROR_CODES_MAX - 1;

/// A response whose error codes can be listed.
pub(super) trait ErrorCodes {
    /// Calls `f` with every error code in the response, zeros included.
    fn each_code(&self, f: &mut dyn FnMut(i16));
}

/// Counts the non-zero codes of `body`.
pub(super) fn count(metrics: &Metrics, body: &dyn ErrorCodes) {
    body.each_code(&mut |c| match c {
        0 => {}
        c if c < 0 => metrics.error(Protocol::Kafka, UNKNOWN_SERVER_ERROR),
        c => metrics.error(Protocol::Kafka, c as usize),
    });
}

macro_rules! codes {
    ($($t:ty => |$r:ident, $f:ident| $body:expr;)*) => {$(
        impl ErrorCodes for $t {
            fn each_code(&self, $f: &mut dyn FnMut(i16)) {
                let $r = self;
                $body
            }
        }
    )*};
}

codes! {
    ApiVersionsResponse => |r, f| f(r.error_code);
    MetadataResponse => |r, f| for t in &r.topics {
        f(t.error_code);
        t.partitions.iter().for_each(|p| f(p.error_code));
    };
    ProduceResponse => |r, f| for t in &r.responses {
        t.partition_responses.iter().for_each(|p| f(p.error_code));
    };
    FetchResponse => |r, f| {
        f(r.error_code);
        for t in &r.responses {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    };
    ListOffsetsResponse => |r, f| for t in &r.topics {
        t.partitions.iter().for_each(|p| f(p.error_code));
    };
    FindCoordinatorResponse => |r, f| {
        f(r.error_code);
        r.coordinators.iter().for_each(|c| f(c.error_code));
    };
    InitProducerIdResponse => |r, f| f(r.error_code);
    CreateTopicsResponse => |r, f| r.topics.iter().for_each(|t| f(t.error_code));
    CreatePartitionsResponse => |r, f| r.results.iter().for_each(|t| f(t.error_code));
    AlterPartitionReassignmentsResponse => |r, f| {
        f(r.error_code);
        for t in &r.responses {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    };
    ListPartitionReassignmentsResponse => |r, f| f(r.error_code);
    DescribeLogDirsResponse => |r, f| {
        f(r.error_code);
        r.results.iter().for_each(|d| f(d.error_code));
    };
    DeleteTopicsResponse => |r, f| r.responses.iter().for_each(|t| f(t.error_code));
    DescribeConfigsResponse => |r, f| r.results.iter().for_each(|t| f(t.error_code));
    AlterConfigsResponse => |r, f| r.responses.iter().for_each(|t| f(t.error_code));
    IncrementalAlterConfigsResponse => |r, f| r.responses.iter().for_each(|t| f(t.error_code));
    OffsetCommitResponse => |r, f| for t in &r.topics {
        t.partitions.iter().for_each(|p| f(p.error_code));
    };
    OffsetFetchResponse => |r, f| {
        f(r.error_code);
        for t in &r.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
        for g in &r.groups {
            f(g.error_code);
            for t in &g.topics {
                t.partitions.iter().for_each(|p| f(p.error_code));
            }
        }
    };
    JoinGroupResponse => |r, f| f(r.error_code);
    HeartbeatResponse => |r, f| f(r.error_code);
    SyncGroupResponse => |r, f| f(r.error_code);
    LeaveGroupResponse => |r, f| {
        f(r.error_code);
        r.members.iter().for_each(|m| f(m.error_code));
    };
    DescribeGroupsResponse => |r, f| r.groups.iter().for_each(|g| f(g.error_code));
    ListGroupsResponse => |r, f| f(r.error_code);
    DeleteGroupsResponse => |r, f| r.results.iter().for_each(|g| f(g.error_code));
    ShareGroupHeartbeatResponse => |r, f| f(r.error_code);
    ShareGroupDescribeResponse => |r, f| r.groups.iter().for_each(|g| f(g.error_code));
    ShareFetchResponse => |r, f| {
        f(r.error_code);
        for t in &r.responses {
            for p in &t.partitions {
                f(p.error_code);
                f(p.acknowledge_error_code);
            }
        }
    };
    ShareAcknowledgeResponse => |r, f| {
        f(r.error_code);
        for t in &r.responses {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    };
    DescribeShareGroupOffsetsResponse => |r, f| for g in &r.groups {
        f(g.error_code);
        for t in &g.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    };
    AlterShareGroupOffsetsResponse => |r, f| {
        f(r.error_code);
        for t in &r.responses {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    };
    DeleteShareGroupOffsetsResponse => |r, f| {
        f(r.error_code);
        r.responses.iter().for_each(|t| f(t.error_code));
    };
    SaslHandshakeResponse => |r, f| f(r.error_code);
    SaslAuthenticateResponse => |r, f| f(r.error_code);
    DescribeAclsResponse => |r, f| f(r.error_code);
    CreateAclsResponse => |r, f| r.results.iter().for_each(|x| f(x.error_code));
    DeleteAclsResponse => |r, f| for x in &r.filter_results {
        f(x.error_code);
        x.matching_acls.iter().for_each(|m| f(m.error_code));
    };
}
