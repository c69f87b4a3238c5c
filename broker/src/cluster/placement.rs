//! Who leads what: the live brokers and, per partition, the leader Metadata shows (rendezvous
//! hashing over live brokers). Any broker serves any partition; this only spreads load.

use crate::cluster::types::BrokerInfo;

/// The broker `key` (a group id, or a topic-partition) goes to: the one scoring highest for it
/// (rendezvous hashing), so a broker joining or leaving moves only the keys it wins or held.
/// `None` when there is no live broker.
pub fn rendezvous<'a>(key: &str, brokers: &'a [BrokerInfo]) -> Option<&'a BrokerInfo> {
    brokers
        .iter()
        .max_by_key(|b| (score(key, b.node_id), b.node_id))
}

/// A stable 64-bit score of `(key, node)`: FNV-1a over both, then a 64-bit finalizer so nearby
/// node ids do not score alike. Stable across processes and versions (every broker must agree).
fn score(key: &str, node_id: i32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes().chain(node_id.to_be_bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: &[i32]) -> Vec<BrokerInfo> {
        ids.iter()
            .map(|&node_id| BrokerInfo {
                node_id,
                host: "127.0.0.1".into(),
                port: 9000 + node_id,
                rack: None,
            })
            .collect()
    }

    #[test]
    fn a_departing_broker_moves_only_the_keys_it_held() {
        let all = brokers(&[1, 2, 3]);
        let without_two = brokers(&[1, 3]);
        let mut per_broker = [0usize; 4];
        for i in 0..3000 {
            let key = format!("group-{i}");
            let before = rendezvous(&key, &all).unwrap().node_id;
            let after = rendezvous(&key, &without_two).unwrap().node_id;
            per_broker[before as usize] += 1;
            if before != 2 {
                assert_eq!(before, after, "{key} moved though its broker stayed");
            }
        }
        for n in &per_broker[1..] {
            assert!(
                (700..1300).contains(n),
                "keys spread over the brokers: {per_broker:?}"
            );
        }
        assert!(rendezvous("g", &[]).is_none());
    }
}
