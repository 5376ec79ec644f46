//! ShareAcknowledge (version 1): acknowledgements outside a fetch, in the member's share
//! session (epoch -1 closes it after them, releasing what the member still holds). Accepts are
//! durable before the response.

use kafka_protocol::messages::share_acknowledge_response::{
    LeaderIdAndEpoch, PartitionData, ShareAcknowledgeTopicResponse,
};
use kafka_protocol::messages::{ShareAcknowledgeRequest, ShareAcknowledgeResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::ack::{AckBatch, Acks};
use super::session::{self, Step};
use super::{request_ids, ShareGroups};
use crate::broker::blocking;
use crate::server::kafka::{error_code, LEADER_EPOCH, NODE_ID};

impl ShareGroups {
    /// Serves one ShareAcknowledge.
    pub async fn share_acknowledge(
        &self,
        req: ShareAcknowledgeRequest,
    ) -> ShareAcknowledgeResponse {
        let fail = |e: ResponseError, why: &str| {
            ShareAcknowledgeResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(why.to_string())))
        };
        let (group, member_id) = match request_ids(&req.group_id, &req.member_id) {
            Ok(ids) => ids,
            Err((e, why)) => return fail(e, why),
        };
        let Some(member) = self.known_member(group, member_id) else {
            return fail(ResponseError::ShareSessionNotFound, "no share session");
        };
        let step = {
            let mut st = member.lock();
            st.last_seen = tokio::time::Instant::now().into_std();
            match session::step(&mut st.session, req.share_session_epoch, false) {
                Ok(s) => s,
                Err(e) => return fail(e, "share session"),
            }
        };
        let acks = Acks::gather(req.topics.iter().flat_map(|t| {
            t.partitions.iter().map(|p| {
                let batches = p.acknowledgement_batches.iter().map(|b| AckBatch {
                    first_offset: b.first_offset,
                    last_offset: b.last_offset,
                    types: b.acknowledge_types.clone(),
                });
                (t.topic_id, p.partition_index, batches.collect())
            })
        }));
        let acked = self.acknowledge(&member, acks).await;
        let round = acked.round;
        let committed = blocking(move || round.commit()).await;
        if step == Step::Close {
            member.lock().session = None;
            self.session_closed(&member);
        }
        let mut topics: Vec<ShareAcknowledgeTopicResponse> = Vec::new();
        for ((id, p), code) in acked.results {
            let code = match (&committed, code) {
                (Err(e), 0) => error_code(e),
                _ => code,
            };
            let data = PartitionData::default()
                .with_partition_index(p)
                .with_error_code(code)
                .with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(NODE_ID)
                        .with_leader_epoch(LEADER_EPOCH),
                );
            match topics.last_mut() {
                Some(t) if t.topic_id == id => t.partitions.push(data),
                _ => topics.push(
                    ShareAcknowledgeTopicResponse::default()
                        .with_topic_id(id)
                        .with_partitions(vec![data]),
                ),
            }
        }
        ShareAcknowledgeResponse::default().with_responses(topics)
    }
}
