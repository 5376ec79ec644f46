//! Acknowledgements, piggy-backed on ShareFetch or sent by ShareAcknowledge: batches of offset
//! ranges with one type each (or one per offset). ACCEPT acks (durably, in the round the
//! request commits), RELEASE returns the records for immediate redelivery, REJECT
//! dead-letters them at once (durably), GAP (an offset with no record) changes nothing.
//! Offsets the member does not hold (also: of a topic it never fetched from) change nothing
//! and make the partition's result INVALID_RECORD_STATE.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use sluice_storage::Offset;
use uuid::Uuid;

use super::{Member, ShareGroups};
use crate::broker::{blocking, ErrorKind, MessageId, Round};

/// Offsets one request may acknowledge in one partition at most; a request naming more gets
/// INVALID_REQUEST for that partition (a member holds at most `member_records_max`).
pub const ACK_OFFSETS_MAX: u64 = 100_000;

/// Acknowledge type GAP: no record at that offset.
const GAP: i8 = 0;
/// ACCEPT: processed.
const ACCEPT: i8 = 1;
/// RELEASE: back to the group for another delivery.
const RELEASE: i8 = 2;
/// REJECT: never to be delivered again (dead-lettered here).
const REJECT: i8 = 3;

/// One batch as both requests carry it.
pub(super) struct AckBatch {
    pub first_offset: i64,
    pub last_offset: i64,
    pub types: Vec<i8>,
}

/// A partition's acknowledgements sorted by type.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct PartitionAcks {
    pub accept: Vec<Offset>,
    pub release: Vec<Offset>,
    pub reject: Vec<Offset>,
}

/// Sorts a partition's batches by type; INVALID_REQUEST for a range out of order, a type
/// list of the wrong length, an unknown type, or more than [`ACK_OFFSETS_MAX`] offsets.
pub(super) fn sort_acks(batches: &[AckBatch]) -> Result<PartitionAcks, ResponseError> {
    let mut out = PartitionAcks::default();
    let mut total: u64 = 0;
    for b in batches {
        if b.first_offset < 0 || b.last_offset < b.first_offset {
            return Err(ResponseError::InvalidRequest);
        }
        let span = (b.last_offset - b.first_offset) as u64 + 1;
        total = total.saturating_add(span);
        if total > ACK_OFFSETS_MAX {
            return Err(ResponseError::InvalidRequest);
        }
        if b.types.len() != 1 && b.types.len() as u64 != span {
            return Err(ResponseError::InvalidRequest);
        }
        for k in 0..span {
            let t = if b.types.len() == 1 {
                b.types[0]
            } else {
                b.types[k as usize]
            };
            let o = Offset(b.first_offset as u64 + k);
            match t {
                GAP => {}
                ACCEPT => out.accept.push(o),
                RELEASE => out.release.push(o),
                REJECT => out.reject.push(o),
                _ => return Err(ResponseError::InvalidRequest),
            }
        }
    }
    Ok(out)
}

/// The acknowledgements of one request, by partition, and what became of each.
pub(super) struct Acks {
    /// (topic id, partition) -> the batches.
    pub parts: BTreeMap<(Uuid, i32), Vec<AckBatch>>,
}

impl Acks {
    /// Gathers `(topic id, partition, batches)` of a request (ShareFetch and ShareAcknowledge
    /// carry the same three fields in types of their own); a partition without batches is
    /// left out, one named twice gets both lists.
    pub(super) fn gather(items: impl IntoIterator<Item = (Uuid, i32, Vec<AckBatch>)>) -> Acks {
        let mut parts: BTreeMap<(Uuid, i32), Vec<AckBatch>> = BTreeMap::new();
        for (id, p, batches) in items {
            if !batches.is_empty() {
                parts.entry((id, p)).or_default().extend(batches);
            }
        }
        Acks { parts }
    }
}

/// The result of a request's acknowledgements: the accepts' round (to commit before the
/// response) and each partition's error code (0 when all went well).
pub(super) struct Acked {
    pub round: Round,
    pub results: Vec<((Uuid, i32), i16)>,
}

impl ShareGroups {
    /// Applies a request's acknowledgements for `member`: releases and rejects are done
    /// (rejects durably), accepts are journaled in the returned round.
    pub(super) async fn acknowledge(&self, member: &Arc<Member>, acks: Acks) -> Acked {
        let mut round = Round::default();
        let mut results = Vec::new();
        for ((id, p), batches) in acks.parts {
            let code = match self.acknowledge_partition(member, id, p, &batches).await {
                Ok(r) => {
                    round.extend(r);
                    0
                }
                Err((r, e)) => {
                    round.extend(r);
                    e.code()
                }
            };
            results.push(((id, p), code));
        }
        Acked { round, results }
    }

    /// One partition's acknowledgements; on an error, the accepts journaled before it.
    async fn acknowledge_partition(
        &self,
        member: &Arc<Member>,
        id: Uuid,
        p: i32,
        batches: &[AckBatch],
    ) -> Result<Round, (Round, ResponseError)> {
        let none = |e| (Round::default(), e);
        let sorted = sort_acks(batches).map_err(none)?;
        let topic = self
            .topic_name(id)
            .ok_or(none(ResponseError::UnknownTopicId))?;
        // Only a consumer the member already has can hold records: an acknowledgement opens
        // nothing (nor creates a group on the topic).
        let held = member.consumers.lock().unwrap().get(&topic).cloned();
        let tc = held.ok_or(none(ResponseError::InvalidRecordState))?;
        if p < 0 || p as usize >= tc.queues.len() {
            return Err(none(ResponseError::UnknownTopicOrPartition));
        }
        let ids = |offs: Vec<Offset>| -> Vec<MessageId> {
            offs.into_iter().map(|o| (p as u32, o)).collect()
        };
        let (accept, release, reject) =
            (ids(sorted.accept), ids(sorted.release), ids(sorted.reject));
        let c = tc.consumer.clone();
        let res = blocking(move || {
            let mut bad = false;
            let (round, not_held) = if accept.is_empty() {
                (Round::default(), Vec::new())
            } else {
                c.ack_pending(&accept)?
            };
            bad |= !not_held.is_empty();
            for (ids, reject) in [(release, false), (reject, true)] {
                if ids.is_empty() {
                    continue;
                }
                let r = if reject {
                    c.reject(&ids)
                } else {
                    c.nack(&ids, 0)
                };
                match r {
                    Ok(()) => {}
                    Err(e) if e.kind == ErrorKind::NotHeld => bad = true,
                    Err(e) => return Ok((round, Err(e))),
                }
            }
            Ok((round, Ok(bad)))
        })
        .await;
        match res {
            Ok((round, Ok(false))) => Ok(round),
            Ok((round, Ok(true))) => Err((round, ResponseError::InvalidRecordState)),
            Ok((round, Err(e))) => Err((round, storage_error(&e))),
            Err(e) => Err(none(storage_error(&e))),
        }
    }
}

/// The Kafka error of a failed acknowledgement.
fn storage_error(e: &crate::broker::BrokerError) -> ResponseError {
    match e.kind {
        ErrorKind::NotHeld => ResponseError::InvalidRecordState,
        ErrorKind::NotFound => ResponseError::UnknownTopicOrPartition,
        _ => ResponseError::KafkaStorageError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: i64, last: i64, types: &[i8]) -> AckBatch {
        AckBatch {
            first_offset: first,
            last_offset: last,
            types: types.to_vec(),
        }
    }

    #[test]
    fn batches_sort_by_type_one_type_or_one_per_offset() {
        let got = sort_acks(&[batch(3, 5, &[1]), batch(6, 9, &[0, 2, 3, 1])]).unwrap();
        assert_eq!(got.accept, vec![Offset(3), Offset(4), Offset(5), Offset(9)]);
        assert_eq!(got.release, vec![Offset(7)]);
        assert_eq!(got.reject, vec![Offset(8)]);
    }

    #[test]
    fn bad_batches_are_invalid_requests() {
        let bad = ResponseError::InvalidRequest;
        assert_eq!(sort_acks(&[batch(5, 3, &[1])]), Err(bad));
        assert_eq!(sort_acks(&[batch(-1, 3, &[1])]), Err(bad));
        assert_eq!(sort_acks(&[batch(0, 3, &[1, 1])]), Err(bad));
        assert_eq!(sort_acks(&[batch(0, 0, &[4])]), Err(bad));
        assert_eq!(sort_acks(&[batch(0, i64::MAX, &[1])]), Err(bad));
        let many = (ACK_OFFSETS_MAX / 2) as i64;
        assert_eq!(
            sort_acks(&[batch(0, many, &[1]), batch(0, many, &[1])]),
            Err(bad)
        );
    }
}
