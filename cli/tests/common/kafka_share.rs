//! A share-group member spoken to in the raw Kafka protocol (version 1 of the share APIs):
//! heartbeats, share sessions with their epochs, fetches and acknowledgements.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use uuid::Uuid;

use super::kafka_raw::Raw;

/// ACCEPT, RELEASE, REJECT as acknowledgement types.
pub const ACCEPT: i8 = 1;
pub const RELEASE: i8 = 2;
pub const REJECT: i8 = 3;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// One member: its connection, group, id and session epoch.
pub struct Member {
    pub c: Raw,
    pub group: String,
    pub id: String,
    /// The epoch its next share request carries.
    pub epoch: i32,
    pub topic_id: Uuid,
    pub partitions: Vec<i32>,
}

/// What one ShareFetch acquired: (offset, value, delivery count) in offset order.
pub type Acquired = Vec<(i64, String, i16)>;

impl Member {
    /// Joins `group` on `topic` (which must exist) as `id`: its assignment is every partition.
    pub fn join(addr: &str, group: &str, id: &str, topic: &str) -> Member {
        let mut c = Raw::connect(addr);
        let req = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(id))
            .with_member_epoch(0)
            .with_subscribed_topic_names(Some(vec![TopicName(s(topic))]));
        let r: ShareGroupHeartbeatResponse = c.call(ApiKey::ShareGroupHeartbeat, 1, &req);
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        assert!(r.member_epoch >= 1);
        let a = r.assignment.expect("the join carries the assignment");
        assert_eq!(a.topic_partitions.len(), 1, "one topic assigned");
        let tp = &a.topic_partitions[0];
        Member {
            c,
            group: group.to_string(),
            id: id.to_string(),
            epoch: 0,
            topic_id: tp.topic_id,
            partitions: tp.partitions.clone(),
        }
    }

    /// A ShareFetch request of this member with `acks` ((first, last, type) ranges of
    /// partition 0), carrying `epoch`.
    pub fn fetch_req(
        &self,
        epoch: i32,
        acks: &[(i64, i64, i8)],
        wait_ms: i32,
    ) -> ShareFetchRequest {
        let batches = acks
            .iter()
            .map(|&(f, l, t)| {
                share_fetch_request::AcknowledgementBatch::default()
                    .with_first_offset(f)
                    .with_last_offset(l)
                    .with_acknowledge_types(vec![t])
            })
            .collect::<Vec<_>>();
        let parts = self
            .partitions
            .iter()
            .map(|&p| {
                let mut fp = share_fetch_request::FetchPartition::default().with_partition_index(p);
                if p == 0 {
                    fp = fp.with_acknowledgement_batches(batches.clone());
                }
                fp
            })
            .collect();
        ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s(&self.group))))
            .with_member_id(Some(s(&self.id)))
            .with_share_session_epoch(epoch)
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_max_records(500)
            .with_batch_size(500)
            .with_topics(vec![share_fetch_request::FetchTopic::default()
                .with_topic_id(self.topic_id)
                .with_partitions(parts)])
    }

    /// Sends a ShareFetch with the member's epoch (then advanced) and returns the response.
    pub fn fetch_raw(&mut self, acks: &[(i64, i64, i8)], wait_ms: i32) -> ShareFetchResponse {
        let req = self.fetch_req(self.epoch, acks, wait_ms);
        let r: ShareFetchResponse = self.c.call(ApiKey::ShareFetch, 1, &req);
        if r.error_code == 0 {
            self.epoch += 1;
        }
        r
    }

    /// Fetches (acknowledging `acks` in the same request): what was acquired, and the
    /// acknowledgement error code of partition 0 (0 when none).
    pub fn fetch(&mut self, acks: &[(i64, i64, i8)], wait_ms: i32) -> (Acquired, i16) {
        let r = self.fetch_raw(acks, wait_ms);
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        acquired(&r)
    }

    /// Acknowledges with ShareAcknowledge: the partition's error code.
    pub fn acknowledge(&mut self, acks: &[(i64, i64, i8)]) -> i16 {
        let batches = acks
            .iter()
            .map(|&(f, l, t)| {
                share_acknowledge_request::AcknowledgementBatch::default()
                    .with_first_offset(f)
                    .with_last_offset(l)
                    .with_acknowledge_types(vec![t])
            })
            .collect();
        let req = ShareAcknowledgeRequest::default()
            .with_group_id(Some(GroupId(s(&self.group))))
            .with_member_id(Some(s(&self.id)))
            .with_share_session_epoch(self.epoch)
            .with_topics(vec![share_acknowledge_request::AcknowledgeTopic::default()
                .with_topic_id(self.topic_id)
                .with_partitions(vec![
                    share_acknowledge_request::AcknowledgePartition::default()
                        .with_partition_index(0)
                        .with_acknowledgement_batches(batches),
                ])]);
        let r: ShareAcknowledgeResponse = self.c.call(ApiKey::ShareAcknowledge, 1, &req);
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        if self.epoch > 0 {
            self.epoch += 1;
        }
        r.responses[0].partitions[0].error_code
    }

    /// Leaves the group (heartbeat with epoch -1).
    pub fn leave(&mut self) {
        let req = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_member_id(s(&self.id))
            .with_member_epoch(-1);
        let r: ShareGroupHeartbeatResponse = self.c.call(ApiKey::ShareGroupHeartbeat, 1, &req);
        assert_eq!(r.error_code, 0);
        assert_eq!(r.member_epoch, -1);
    }
}

/// The records and acquired ranges of a response (every partition), and partition 0's
/// acknowledgement error.
pub fn acquired(r: &ShareFetchResponse) -> (Acquired, i16) {
    let mut out = Vec::new();
    let mut ack_error = 0;
    for t in &r.responses {
        for p in &t.partitions {
            assert_eq!(
                p.error_code, 0,
                "partition {}: {:?}",
                p.partition_index, p.error_message
            );
            if p.partition_index == 0 {
                ack_error = p.acknowledge_error_code;
            }
            let records = p.records.as_ref().expect("records are never null");
            let sets = RecordBatchDecoder::decode_all(&mut Bytes::clone(records)).unwrap();
            for set in sets {
                for rec in set.records {
                    let count = p
                        .acquired_records
                        .iter()
                        .find(|a| a.first_offset <= rec.offset && rec.offset <= a.last_offset)
                        .map(|a| a.delivery_count)
                        .expect("every record sent is acquired");
                    let v = String::from_utf8(rec.value.unwrap().to_vec()).unwrap();
                    out.push((rec.offset, v, count));
                }
            }
        }
    }
    out.sort();
    (out, ack_error)
}
