//! Acquired records as a ShareFetch response carries them: the records of one partition as
//! Kafka record batches (uncompressed, magic 2) at their own offsets, with gaps where the
//! offsets between were not acquired (acked, held by another member), and the acquired
//! ranges with their delivery counts.

use bytes::Bytes;
use kafka_protocol::messages::share_fetch_response::AcquiredRecords;
use sluice_storage::format::BatchBuilder;
use sluice_storage::store::Delivery;

/// The records of one partition's deliveries (sorted here by offset): the batches and the
/// acquired ranges (consecutive offsets of one delivery count each).
pub(super) fn partition_records(mut ds: Vec<Delivery>) -> (Bytes, Vec<AcquiredRecords>) {
    ds.sort_unstable_by_key(|d| d.offset);
    let mut out = Vec::new();
    let mut ranges: Vec<AcquiredRecords> = Vec::new();
    let mut batch: Option<(u64, BatchBuilder)> = None;
    for d in &ds {
        let o = d.offset.0;
        let count = i16::try_from(d.attempt).unwrap_or(i16::MAX);
        match ranges.last_mut() {
            Some(r) if r.last_offset + 1 == o as i64 && r.delivery_count == count => {
                r.last_offset = o as i64;
            }
            _ => ranges.push(
                AcquiredRecords::default()
                    .with_first_offset(o as i64)
                    .with_last_offset(o as i64)
                    .with_delivery_count(count),
            ),
        }
        // A batch's offset deltas are i32: a record too far from the base starts a new one.
        if let Some((base, b)) = batch.take_if(|(base, _)| o - *base > i32::MAX as u64) {
            out.extend_from_slice(&b.finish_kafka(base as i64));
        }
        let (base, b) = batch.get_or_insert_with(|| (o, BatchBuilder::new()));
        let r = &d.record;
        b.push_at_delta(
            (o - *base) as i32,
            r.timestamp_ms.unwrap_or(0),
            r.key.as_deref(),
            &r.headers,
            &r.value,
        );
    }
    if let Some((base, b)) = batch {
        out.extend_from_slice(&b.finish_kafka(base as i64));
    }
    (Bytes::from(out), ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;
    use sluice_storage::{Offset, Record};

    fn d(offset: u64, attempt: u32) -> Delivery {
        Delivery {
            partition: 0,
            offset: Offset(offset),
            attempt,
            record: Record {
                timestamp_ms: Some(1_000 + offset as i64),
                ..Record::from_value(format!("v{offset}"))
            },
        }
    }

    #[test]
    fn ranges_merge_consecutive_offsets_of_one_count() {
        let (bytes, ranges) = partition_records(vec![d(7, 1), d(3, 1), d(4, 1), d(5, 2), d(6, 2)]);
        let r: Vec<(i64, i64, i16)> = ranges
            .iter()
            .map(|r| (r.first_offset, r.last_offset, r.delivery_count))
            .collect();
        assert_eq!(r, vec![(3, 4, 1), (5, 6, 2), (7, 7, 1)]);
        let sets = RecordBatchDecoder::decode_all(&mut bytes.clone()).unwrap();
        let offsets: Vec<i64> = sets
            .iter()
            .flat_map(|s| s.records.iter().map(|r| r.offset))
            .collect();
        assert_eq!(offsets, vec![3, 4, 5, 6, 7]);
    }

    #[test]
    fn records_far_apart_go_in_separate_batches() {
        let far = 5 + i32::MAX as u64 + 10;
        let (bytes, ranges) = partition_records(vec![d(5, 1), d(far, 1)]);
        assert_eq!(ranges.len(), 2);
        let sets = RecordBatchDecoder::decode_all(&mut bytes.clone()).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[1].records[0].offset, far as i64);
        assert_eq!(
            sets[1].records[0].value.as_deref(),
            Some(&format!("v{far}").into_bytes()[..])
        );
    }
}
