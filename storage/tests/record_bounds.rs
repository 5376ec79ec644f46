//! Bounds on what one record and one delivery round may hold: the header cap of a published
//! record (with room for the headers dead-lettering adds) and byte-bounded deliveries.

use std::sync::Arc;

use sluice_storage::format::{self, RECORD_HEADERS_MAX, STORED_RECORD_HEADERS_MAX};
use sluice_storage::fs::sim::SimFs;
use sluice_storage::{
    ConsumerId, Error, FsRef, Header, ManualClock, Offset, QueueConfig, Record, Store, StoreConfig,
};

fn open(sim: &SimFs, clock: &Arc<ManualClock>) -> Store {
    let fs: FsRef = Arc::new(sim.clone());
    Store::open_with_clock(fs, "/data", StoreConfig::default(), clock.clone()).unwrap()
}

fn with_headers(n: usize) -> Record {
    Record {
        headers: (0..n).map(|i| Header::new(format!("h{i}"), "v")).collect(),
        ..Record::from_value("x")
    }
}

#[test]
fn a_record_over_the_header_cap_is_refused_on_every_append_path() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let t = s.create_topic("t", None).unwrap();
    let over = [with_headers(RECORD_HEADERS_MAX + 1)];
    assert!(matches!(t.publish(&over), Err(Error::InvalidBatch(_))));
    let batch = format::encode_batch(&over, 0);
    assert!(format::validate_batch(&batch, u32::MAX).is_err());
    assert!(matches!(
        t.log().append_unsynced(batch.clone()),
        Err(Error::InvalidBatch(_))
    ));
    // What a stored record may hold is checked by the general form.
    assert!(format::validate_batch_within(&batch, u32::MAX, STORED_RECORD_HEADERS_MAX).is_ok());
    assert_eq!(t.log().visible_end(), Offset(0));
    t.publish(&[with_headers(RECORD_HEADERS_MAX)]).unwrap();
    assert_eq!(t.log().visible_end(), Offset(1));
}

/// A message at the cap still goes to the dead-letter queue whole, with the broker's headers
/// added past the cap.
#[test]
fn a_message_at_the_header_cap_is_dead_lettered_with_every_header() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let cfg = QueueConfig {
        max_deliveries: 1,
        ..QueueConfig::default()
    };
    let q = s.create_queue("q", cfg).unwrap();
    let rec = with_headers(RECORD_HEADERS_MAX);
    q.publish(std::slice::from_ref(&rec)).unwrap();
    let c = ConsumerId(1);
    assert_eq!(q.deliver(c, 1).unwrap().len(), 1);
    q.nack(c, &[Offset(0)], 0).unwrap();
    assert_eq!(q.stats().dead_lettered, 1);
    let dlq = s.queue("q.dlq").unwrap();
    let d = dlq.deliver(c, 1).unwrap();
    assert_eq!(d.len(), 1);
    let h = &d[0].record.headers;
    assert_eq!(h.len(), RECORD_HEADERS_MAX + 4);
    assert_eq!(h[..RECORD_HEADERS_MAX], rec.headers[..]);
}

/// A byte-bounded round takes messages until their bytes reach the bound (at least one, however
/// large), leaves the rest to the next round, and every message is delivered once.
#[test]
fn byte_bounded_rounds_deliver_everything_once() {
    let sim = SimFs::new();
    let clock = Arc::new(ManualClock::new(0));
    let s = open(&sim, &clock);
    let q = s.create_queue("q", QueueConfig::default()).unwrap();
    let recs: Vec<Record> = (0..20)
        .map(|i| Record {
            key: Some(vec![i as u8; 500]),
            headers: vec![Header::new("h", vec![i as u8; 400])],
            ..Record::from_value(vec![i as u8; 100])
        })
        .collect();
    let each = sluice_storage::store::delivery_bytes(&recs[0]);
    q.publish(&recs[..10]).unwrap();
    let c = ConsumerId(1);
    // One message is returned (nacked) so that rounds mix redeliveries and new ones.
    let (first, p) = q.deliver_pending_within(c, 100, 1).unwrap();
    q.commit(p).unwrap();
    assert_eq!(
        first.len(),
        1,
        "at least one message, however small the bound"
    );
    q.nack(c, &[first[0].offset], 0).unwrap();
    q.publish(&recs[10..]).unwrap();
    let mut seen = Vec::new();
    loop {
        let (ds, p) = q.deliver_pending_within(c, 100, 3 * each).unwrap();
        q.commit(p).unwrap();
        if ds.is_empty() {
            break;
        }
        assert!(
            ds.len() <= 3,
            "a round of {} messages over 3 messages' bytes",
            ds.len()
        );
        for d in &ds {
            assert_eq!(d.record, {
                let mut r = recs[d.offset.0 as usize].clone();
                r.timestamp_ms = d.record.timestamp_ms;
                r
            });
            seen.push(d.offset.0);
        }
        let offs: Vec<Offset> = ds.iter().map(|d| d.offset).collect();
        q.ack(c, &offs).unwrap();
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..20).collect::<Vec<u64>>());
}
