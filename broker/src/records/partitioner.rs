//! Kafka's default partitioner: murmur2 of the key, as the Java client hashes it, so a record
//! written by the broker lands where a Java producer would have put it.

/// Kafka's murmur2 (`Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record among `count` partitions (Kafka's `toPositive(murmur2) % n`).
pub fn partition_for_key(key: &[u8], count: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % count.max(1)
}

/// Where a record derived from one in `source_partition` goes among `count` partitions: the same
/// index when it exists, else by key, else by the source partition.
pub fn follow_partition(source_partition: i32, key: Option<&[u8]>, count: i32) -> i32 {
    let count = count.max(1);
    if source_partition < count {
        return source_partition;
    }
    match key {
        Some(k) => partition_for_key(k, count),
        None => source_partition % count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's own partitioner tests (Utils.murmur2).
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn outputs_follow_the_source_partition_or_the_key() {
        assert_eq!(follow_partition(2, None, 4), 2);
        assert_eq!(follow_partition(5, None, 4), 1);
        let by_key = follow_partition(5, Some(b"foobar"), 3);
        assert_eq!(by_key, ((-790332482i32) & 0x7fff_ffff) % 3);
    }
}
