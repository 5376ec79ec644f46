//! The partition of a keyed record, as Kafka's default partitioner chooses it:
//! `(murmur2(key) & 0x7fffffff) % partitions`, with Kafka's murmur2 (`Utils.murmur2`, seed
//! `0x9747b28c`), so a key lands on the same partition from a sluice client and from a Kafka
//! client.

/// Kafka's murmur2 of `data` (MurmurHash2, 32-bit, seed `0x9747b28c`, little-endian blocks), as
/// `org.apache.kafka.common.utils.Utils.murmur2` computes it.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions` (at least 1): Kafka's
/// `Utils.toPositive(Utils.murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0);
    ((murmur2(key) as u32) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2` vectors, and values computed with Kafka 4.4.0's
    /// `Utils.murmur2` and `Utils.toPositive` (kafka-clients jar).
    #[test]
    fn matches_kafka() {
        let cases: [(&str, i32, u32, u32); 9] = [
            ("21", -973932308, 0, 0),
            ("foobar", -790332482, 0, 0),
            ("a-little-bit-long-string", -985981536, 2, 2),
            ("a-little-bit-longer-string", -1486304829, 5, 2),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
                5,
                2,
            ),
            ("abc", 479470107, 3, 0),
            ("", 275646681, 3, 0),
            ("order-1", 1221710326, 4, 1),
            ("customer-7", -1283830537, 1, 1),
        ];
        for (key, hash, of6, of3) in cases {
            assert_eq!(murmur2(key.as_bytes()), hash, "{key:?}");
            assert_eq!(partition_for_key(key.as_bytes(), 6), of6, "{key:?}");
            assert_eq!(partition_for_key(key.as_bytes(), 3), of3, "{key:?}");
            assert_eq!(partition_for_key(key.as_bytes(), 1), 0);
        }
    }
}
