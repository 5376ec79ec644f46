//! Tests of the ack set, the run records and their replay.

use super::*;
use crate::journal::encode_record;
use proptest::prelude::*;
use std::collections::BTreeSet;

#[test]
fn floor_advances_over_runs_and_memory_follows_the_window() {
    let mut a = AckSet::new(0);
    for o in (1..1000).rev() {
        assert!(a.insert(o));
    }
    assert_eq!(a.floor(), 0);
    assert_eq!(a.above(), 999);
    assert!(a.insert(0));
    assert_eq!(a.floor(), 1000);
    assert_eq!(a.above(), 0);
    assert!(a.words() <= 1);
    assert!(!a.insert(5));
    a.insert(1100);
    assert_eq!(a.acked_above(), vec![1100]);
    a.raise_floor(1050);
    assert_eq!(a.floor(), 1050);
    a.clamp(1080);
    assert_eq!(a.above(), 0);
    a.clamp(10);
    assert_eq!(a.floor(), 10);
}

proptest! {
    #[test]
    fn ackset_matches_a_set(ops in proptest::collection::vec((0u64..300, 0u8..12), 1..200)) {
        let mut a = AckSet::new(0);
        let mut model = BTreeSet::new();
        let mut floor = 0u64;
        for (o, op) in ops {
            if op == 0 {
                a.raise_floor(o);
                if o > floor { floor = o; }
            } else if op == 1 {
                // The log lost everything from `o` on.
                a.clamp(o);
                model.retain(|&x| x < o);
                if floor > o { floor = o; }
            } else {
                a.insert(o);
                model.insert(o);
            }
            while model.contains(&floor) { floor += 1; }
            prop_assert_eq!(a.floor(), floor);
            let above: Vec<u64> = model.iter().copied().filter(|&x| x >= floor).collect();
            prop_assert_eq!(a.acked_above(), above.clone());
            prop_assert_eq!(a.above(), above.len() as u64);
            // The snapshot roundtrips.
            let st = AckState { acks: a.clone(), cursor: 300, ..AckState::default() };
            let back = AckState::from_snapshot(st.to_snapshot()).unwrap();
            prop_assert_eq!(back.acks.acked_above(), above);
            prop_assert_eq!(back.acks.floor(), floor);
        }
    }
}

#[test]
fn runs_are_compact_and_replay_like_single_offsets() {
    // The same history in version-1 records (one entry per offset) and in runs.
    let deliveries: Vec<(u64, u32)> = (10..1010).map(|o| (o, 1)).chain([(1010, 2)]).collect();
    let acks: Vec<u64> = (10..500).chain(600..700).collect();
    let mut v1 = Vec::new();
    let mut p = (deliveries.len() as u32).to_le_bytes().to_vec();
    for (o, a) in &deliveries {
        p.extend_from_slice(&o.to_le_bytes());
        p.extend_from_slice(&a.to_le_bytes());
    }
    encode_record(&mut v1, REC_DELIVER, &p);
    let mut p = (acks.len() as u32).to_le_bytes().to_vec();
    for o in &acks {
        p.extend_from_slice(&o.to_le_bytes());
    }
    encode_record(&mut v1, REC_ACK, &p);
    let mut v2 = Vec::new();
    encode_deliver(&mut v2, &deliveries);
    encode_offsets(&mut v2, REC_ACK, &acks);
    assert!(
        v2.len() < 100,
        "two runs of deliveries, two of acks: {} bytes",
        v2.len()
    );
    let replay = |b: &[u8]| {
        let mut st = AckState::new(10);
        for (k, p) in crate::journal::decode_records(b).0 {
            st.apply(k, &p).unwrap();
        }
        st
    };
    let (a, b) = (replay(&v1), replay(&v2));
    assert_eq!(a, b);
    assert_eq!((b.acks.floor(), b.cursor, b.counts.len()), (500, 1011, 411));
    assert_eq!(b.counts.get(&1010), Some(&2));
    // A run longer than the limit is split; a bad run read back is an error, not a panic.
    let long: Vec<u64> = (0..RUN_LEN_MAX as u64 + 5).collect();
    let mut b = Vec::new();
    encode_offsets(&mut b, REC_DEAD, &long);
    let recs = crate::journal::decode_records(&b).0;
    assert_eq!(recs[0].0, REC_DEAD_RUNS);
    assert_eq!(u32::from_le_bytes(recs[0].1[..4].try_into().unwrap()), 2);
    let mut st = AckState::new(0);
    st.apply(recs[0].0, &recs[0].1).unwrap();
    assert_eq!(
        (st.acks.floor(), st.dead_lettered),
        (long.len() as u64, long.len() as u64)
    );
    for bad in [(5u64, 0u32), (5, RUN_LEN_MAX + 1), (u64::MAX - 1, 3)] {
        let mut p = 1u32.to_le_bytes().to_vec();
        p.extend_from_slice(&bad.0.to_le_bytes());
        p.extend_from_slice(&bad.1.to_le_bytes());
        assert!(AckState::new(0).apply(REC_ACK_RUNS, &p).is_err(), "{bad:?}");
    }
    assert!(AckState::new(0)
        .apply(REC_DELIVER_RUNS, &[1, 0, 0, 0, 9])
        .is_err());
}

#[test]
fn records_apply() {
    let mut st = AckState::new(0);
    let mut b = Vec::new();
    encode_deliver(&mut b, &[(0, 1), (1, 1), (2, 1)]);
    encode_offsets(&mut b, REC_ACK, &[1]);
    encode_offsets(&mut b, REC_DEAD, &[0]);
    encode_deliver(&mut b, &[(2, 2)]);
    let (recs, _) = crate::journal::decode_records(&b);
    for (k, p) in &recs {
        st.apply(*k, p).unwrap();
    }
    assert_eq!(st.acks.floor(), 2);
    assert_eq!(st.cursor, 3);
    assert_eq!(st.dead_lettered, 1);
    assert_eq!(st.counts.get(&2), Some(&2));
    assert!(st.clamp(2));
    assert_eq!(st.cursor, 2);
    assert!(st.counts.is_empty());
}

#[test]
fn a_reset_record_starts_the_state_over_and_replays_the_same_from_any_point() {
    let mut recs = Vec::new();
    encode_deliver(&mut recs, &[(10, 1), (11, 1), (12, 2)]);
    encode_offsets(&mut recs, REC_ACK, &[10]);
    encode_offsets(&mut recs, REC_DEAD, &[11]);
    encode_reset(&mut recs, 40);
    encode_deliver(&mut recs, &[(40, 1)]);
    encode_offsets(&mut recs, REC_ACK, &[41]);
    let (list, used) = crate::journal::decode_records(&recs);
    assert_eq!(used, recs.len());
    let replay = |from: usize, mut st: AckState| {
        for (kind, p) in &list[from..] {
            st.apply(*kind, p).unwrap();
        }
        st
    };
    let whole = replay(0, AckState::new(10));
    assert_eq!((whole.acks.floor(), whole.cursor), (40, 41));
    assert_eq!(whole.dead_lettered, 0, "a reset forgets what went before");
    assert_eq!(whole.counts.get(&40), Some(&1));
    assert!(whole.acks.contains(41) && !whole.acks.contains(40));
    // Applied again over the state it left (a replicated queue's restart applies every entry
    // after its last compaction over its journal), from any record: the same state.
    for from in 0..list.len() {
        let again = replay(from, whole.clone());
        assert_eq!(
            again.encode_snapshot(),
            whole.encode_snapshot(),
            "from {from}"
        );
    }
    let mut short = Vec::new();
    encode_record(&mut short, REC_RESET, &[1, 2, 3]);
    let (bad, _) = crate::journal::decode_records(&short);
    assert!(AckState::new(0).apply(bad[0].0, &bad[0].1).is_err());
}
