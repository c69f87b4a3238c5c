//! Who leads what: the live brokers and, per partition, the leader Metadata shows (rendezvous
//! hashing over live brokers) and its replicas, one per rack. Any broker serves any partition;
//! this only spreads load, and lets a consumer read in its own rack (KIP-392).
//!
//! Rendezvous (highest random weight) hashing: every broker scores every partition and the top
//! score leads. When a broker leaves, only the partitions it led move (each to its own next
//! best), and every broker computes the same answer from the same live set, with no state.
//! Rack aware: each rack's own top scorer is the partition's replica in that rack, so leaders
//! spread over the racks as over the brokers, and every rack holds a replica of every partition.

/// The node id Metadata names as `topic`/`partition`'s leader among `live` node ids; `None`
/// when no broker is live.
pub fn leader(topic: &str, partition: i32, live: &[i32]) -> Option<i32> {
    let key = partition_key(topic, partition);
    live.iter()
        .copied()
        .max_by_key(|&node| (score(key, node), node))
}

/// A live broker as placement sees it: its node id and rack.
pub type Placed<'a> = (i32, Option<&'a str>);

/// The node ids Metadata lists as `topic`/`partition`'s replicas (and in-sync replicas): its
/// [`leader`] first, then the top scorer of every other rack with a live broker (brokers
/// without a rack count as one rack of their own). Empty when no broker is live.
pub fn replicas(topic: &str, partition: i32, live: &[Placed<'_>]) -> Vec<i32> {
    let key = partition_key(topic, partition);
    let mut best: Vec<(Option<&str>, (u64, i32))> = Vec::new();
    for &(node, rack) in live {
        let weight = (score(key, node), node);
        match best.iter_mut().find(|(r, _)| *r == rack) {
            Some((_, top)) if weight > *top => *top = weight,
            Some(_) => {}
            None => best.push((rack, weight)),
        }
    }
    // The overall top scorer (the leader) first; the other racks' in score order.
    best.sort_by_key(|b| std::cmp::Reverse(b.1));
    best.into_iter().map(|(_, (_, node))| node).collect()
}

/// The broker a consumer in `client_rack` should fetch `topic`/`partition` from (KIP-392): the
/// partition's replica in that rack, when one is live; `None` when its rack has no broker.
pub fn preferred_read_replica(
    topic: &str,
    partition: i32,
    live: &[Placed<'_>],
    client_rack: &str,
) -> Option<i32> {
    let key = partition_key(topic, partition);
    live.iter()
        .filter(|(_, rack)| *rack == Some(client_rack))
        .map(|&(node, _)| node)
        .max_by_key(|&node| (score(key, node), node))
}

/// The node id that coordinates consumer group `group` when no broker holds its lease (see
/// [`crate::cluster::groups`]); `None` when no broker is live. The same hashing as partitions,
/// over a key no topic-partition can have (a group id is not followed by a partition number).
pub fn group_coordinator(group: &str, live: &[i32]) -> Option<i32> {
    let key = group_key(group);
    live.iter()
        .copied()
        .max_by_key(|&node| (score(key, node), node))
}

/// FNV-1a of `group` after a tag byte, so a group and a topic of the same name hash apart.
fn group_key(group: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in [b'g'].into_iter().chain(group.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A stable 64-bit digest of the partition's name (FNV-1a). Stable across builds and
/// platforms — every broker of a cluster must agree, so `std`'s hasher (whose output may change
/// between Rust releases) will not do.
fn partition_key(topic: &str, partition: i32) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in topic.bytes().chain([0]).chain(partition.to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// The weight of `node` for the partition: SplitMix64's finalizer over both, which spreads
/// neighbouring node ids and partitions evenly.
fn score(key: u64, node: i32) -> u64 {
    let mut z = key ^ (u64::from(node as u32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_departing_broker_moves_only_the_groups_it_coordinated() {
        let mut per_node = [0usize; 4];
        for i in 0..3000 {
            let group = format!("group-{i}");
            let before = group_coordinator(&group, &[1, 2, 3]).unwrap_or(-1);
            let after = group_coordinator(&group, &[1, 3]).unwrap_or(-1);
            per_node[before as usize] += 1;
            if before != 2 {
                assert_eq!(before, after, "{group} moved though its broker stayed");
            }
        }
        for n in &per_node[1..] {
            assert!(
                (700..1300).contains(n),
                "groups spread over brokers: {per_node:?}"
            );
        }
        assert_eq!(group_coordinator("g", &[]), None);
    }

    use super::*;

    fn leaders(live: &[i32]) -> Vec<i32> {
        (0..600)
            .map(|p| leader("orders", p, live).unwrap_or(-1))
            .collect()
    }

    #[test]
    fn every_rack_holds_a_replica_led_by_the_partitions_leader() {
        let live = [
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
        ];
        let ids: Vec<i32> = live.iter().map(|(n, _)| *n).collect();
        let rack_of = |node: i32| live.iter().find(|(n, _)| *n == node).and_then(|(_, r)| *r);
        let mut led_per_rack = std::collections::HashMap::new();
        for p in 0..600 {
            let replicas = replicas("orders", p, &live);
            assert_eq!(replicas.first().copied(), leader("orders", p, &ids));
            let mut racks: Vec<_> = replicas.iter().map(|&n| rack_of(n)).collect();
            racks.sort();
            assert_eq!(racks, [Some("a"), Some("b"), Some("c")], "partition {p}");
            *led_per_rack.entry(rack_of(replicas[0])).or_insert(0) += 1;
            // A consumer in a rack is pointed at that rack's replica.
            for rack in ["a", "b", "c"] {
                let preferred = preferred_read_replica("orders", p, &live, rack).unwrap();
                assert_eq!(rack_of(preferred), Some(rack));
                assert!(replicas.contains(&preferred));
            }
        }
        // Leaders spread over racks as over brokers: 2/5, 2/5, 1/5 of 600.
        for (rack, want) in [(Some("a"), 240), (Some("b"), 240), (Some("c"), 120)] {
            let n = led_per_rack[&rack];
            assert!((want - 60..=want + 60).contains(&n), "{rack:?} leads {n}");
        }
        assert_eq!(
            preferred_read_replica("orders", 0, &live, "elsewhere"),
            None
        );
        assert!(replicas("orders", 0, &[]).is_empty());
        // Without racks: the leader alone.
        assert_eq!(replicas("t", 0, &[(1, None), (2, None)]).len(), 1);
    }

    #[test]
    fn no_live_broker_means_no_leader() {
        assert_eq!(leader("t", 0, &[]), None);
    }

    #[test]
    fn partitions_spread_evenly_over_live_brokers() {
        let live = [1, 2, 3];
        let led = leaders(&live);
        for node in live {
            let n = led.iter().filter(|&&l| l == node).count();
            // 200 each on average; rendezvous hashing keeps every share near it.
            assert!((140..=260).contains(&n), "node {node} leads {n} of 600");
        }
    }

    #[test]
    fn the_answer_does_not_depend_on_the_order_brokers_are_listed() {
        assert_eq!(leaders(&[1, 2, 3]), leaders(&[3, 1, 2]));
    }

    #[test]
    fn only_the_departed_brokers_partitions_move_when_one_leaves() {
        let before = leaders(&[1, 2, 3]);
        let after = leaders(&[1, 3]);
        for (p, (b, a)) in before.iter().zip(&after).enumerate() {
            if *b != 2 {
                assert_eq!(b, a, "partition {p} moved though its leader stayed");
            } else {
                assert!(*a == 1 || *a == 3);
            }
        }
        // And the departed broker's share is split between the others, not dumped on one.
        let moved: Vec<i32> = before
            .iter()
            .zip(&after)
            .filter(|(b, _)| **b == 2)
            .map(|(_, a)| *a)
            .collect();
        let to_one = moved.iter().filter(|&&a| a == 1).count();
        assert!(to_one > moved.len() / 4 && to_one < moved.len() * 3 / 4);
    }
}
