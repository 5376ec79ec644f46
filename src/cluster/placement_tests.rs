//! Placement's choices: spreading leaders and replicas, evening them out.

use super::*;

#[test]
fn leaders_and_replicas_spread_evenly() {
    let mut load = Load::default();
    let placed = choose(&[1, 2, 3, 4], &[], &mut load, 8, 2);
    let mut leads = HashMap::new();
    let mut holds = HashMap::new();
    for p in &placed {
        assert_eq!(p.len(), 2);
        assert_ne!(p[0], p[1], "{placed:?}");
        *leads.entry(p[0]).or_insert(0) += 1;
        for n in p {
            *holds.entry(*n).or_insert(0) += 1;
        }
    }
    assert!(leads.values().all(|&l| l == 2), "{leads:?}");
    assert!(holds.values().all(|&h| h == 4), "{holds:?}");
}

#[test]
fn an_added_node_takes_replicas_from_the_fullest() {
    let g = |n: &str| GroupId(n.into());
    let place = |nodes: &[u64]| Placement {
        nodes: nodes.to_vec(),
        factor: nodes.len() as u32,
    };
    let groups = [g("t/a/0"), g("t/a/1"), g("t/a/2"), g("t/a/3"), g("q/x")];
    let placed = [
        place(&[1, 2, 3]),
        place(&[2, 3, 1]),
        place(&[3, 1, 2]),
        place(&[1, 2, 3]),
        place(&[1, 2, 3]),
    ];
    let all: BTreeMap<&GroupId, &Placement> = groups.iter().zip(placed.iter()).collect();
    // Node 4 holds nothing: partitions move to it before the queue does, and replicas
    // that are not their partition's preferred leader.
    let moves = balance(&[1, 2, 3, 4], &all, |_| true, 10);
    let mut holds: BTreeMap<u64, usize> = BTreeMap::new();
    let mut after: BTreeMap<String, Vec<u64>> = all
        .iter()
        .map(|(g, p)| (g.0.clone(), p.nodes.clone()))
        .collect();
    for (group, from, to) in &moves {
        assert!(group.starts_with("t/"), "{moves:?}");
        let off: Vec<&u64> = from.iter().filter(|n| !to.contains(n)).collect();
        assert_ne!(
            Some(off[0]),
            from.first(),
            "a preferred leader moved: {moves:?}"
        );
        assert_eq!(&after[group], from);
        assert_eq!(to.len(), from.len());
        after.insert(group.clone(), to.clone());
    }
    for nodes in after.values() {
        let distinct: std::collections::BTreeSet<_> = nodes.iter().collect();
        assert_eq!(distinct.len(), nodes.len(), "{after:?}");
        for n in nodes {
            *holds.entry(*n).or_default() += 1;
        }
    }
    let (most, fewest) = (holds.values().max(), holds.values().min());
    assert!(
        most.unwrap() - fewest.unwrap() <= 1,
        "{holds:?} after {moves:?}"
    );
    assert!(balance(&[1, 2, 3], &all, |_| true, 10).is_empty());
}

#[test]
fn a_factor_above_the_nodes_places_on_every_node() {
    let mut load = Load::default();
    assert_eq!(choose(&[1, 2], &[], &mut load, 1, 3), vec![vec![1, 2]]);
}

#[test]
fn later_groups_go_to_the_nodes_holding_fewest() {
    let mut load = Load::default();
    load.add(&[1, 2]);
    load.add(&[2, 1]);
    assert_eq!(choose(&[1, 2, 3], &[], &mut load, 1, 2), vec![vec![3, 1]]);
}

#[test]
fn nodes_that_are_down_get_replicas_only_when_the_others_are_too_few() {
    let mut load = Load::default();
    let placed = choose(&[1, 2, 3], &[2], &mut load, 4, 1);
    assert!(
        placed.iter().all(|p| p.len() == 1 && p[0] != 2),
        "{placed:?}"
    );
    let placed = choose(&[1, 2, 3], &[2], &mut load, 4, 2);
    assert!(placed.iter().all(|p| !p.contains(&2)), "{placed:?}");
    let placed = choose(&[1, 2, 3], &[2], &mut load, 2, 3);
    assert!(
        placed.iter().all(|p| p.len() == 3 && p[0] != 2),
        "{placed:?}"
    );
    let placed = choose(&[1, 2], &[1, 2], &mut load, 1, 2);
    assert_eq!(placed[0].len(), 2, "{placed:?}");
}

#[test]
fn replicas_added_or_replaced_go_to_nodes_that_are_up_first() {
    let placed = |nodes: &[u64], factor| Placement {
        nodes: nodes.to_vec(),
        factor,
    };
    let placements: HashMap<GroupId, Placement> = [
        // A factor raised from 1 to 2: node 2 holds fewest, but is down.
        (GroupId("t/a/0".into()), placed(&[1], 2)),
        // A replica on removed node 9: replaced on node 3, not on node 2.
        (GroupId("t/b/0".into()), placed(&[1, 9], 2)),
    ]
    .into_iter()
    .collect();
    let moves = replace(&[1, 2, 3], &[2], &placements);
    for (group, _, to) in &moves {
        assert!(!to.contains(&2), "{group}: {to:?}");
        assert_eq!(to.len(), 2, "{group}: {to:?}");
    }
    assert_eq!(moves.len(), 2, "{moves:?}");
    // With only node 2 left to take it, it takes it.
    let moves = replace(&[1, 2], &[2], &placements);
    assert!(
        moves.iter().all(|(_, _, to)| to == &vec![1, 2]),
        "{moves:?}"
    );
}
