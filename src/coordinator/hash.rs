//! Which `__consumer_offsets` partition owns a group (reference §7): Kafka's
//! `Utils.abs(groupId.hashCode) % offsets.topic.num.partitions`, with Java's `String.hashCode`.
//! Every broker and every client that computes this must agree bit for bit, so the hash runs over
//! UTF-16 code units (not bytes, not chars) and wraps at 32 bits like Java's `int`.

/// Java's `String.hashCode`: Σ s[i]·31^(n−1−i) over the UTF-16 code units, wrapping.
pub fn java_string_hash_code(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Kafka's `Utils.abs`: like `Math.abs`, except that `Integer.MIN_VALUE` maps to 0 instead of
/// staying negative.
pub fn kafka_abs(n: i32) -> i32 {
    if n == i32::MIN {
        0
    } else {
        n.abs()
    }
}

/// The offsets-topic partition that stores `group_id` (Kafka's `GroupMetadataManager.partitionFor`).
pub fn partition_for(group_id: &str, num_partitions: i32) -> i32 {
    kafka_abs(java_string_hash_code(group_id)) % num_partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (text, Java `hashCode`, partition of 50), printed by a JDK 17 program running
    /// `s.hashCode()` and `Utils.abs(h) % 50` on the same strings.
    const JAVA_VECTORS: &[(&str, i32, i32)] = &[
        ("", 0, 0),
        ("a", 97, 47),
        ("hello", 99162322, 22),
        ("console-consumer-12345", 158455506, 6),
        ("polygenelubricants", i32::MIN, 0),
        ("Grüße", 69215351, 1),
        ("日本語のグループ", -935085811, 11),
        // U+1F600 is a surrogate pair in UTF-16: two code units enter the hash.
        ("emoji-\u{1F600}-group", -1581567172, 22),
        ("my-group", -1906497762, 12),
    ];

    #[test]
    fn matches_java_string_hash_code() {
        for (s, hash, partition) in JAVA_VECTORS {
            assert_eq!(java_string_hash_code(s), *hash, "hashCode of {s:?}");
            assert_eq!(partition_for(s, 50), *partition, "partition of {s:?}");
        }
    }

    #[test]
    fn min_value_hash_maps_to_partition_zero() {
        assert_eq!(java_string_hash_code("polygenelubricants"), i32::MIN);
        assert_eq!(kafka_abs(i32::MIN), 0);
        assert_eq!(partition_for("polygenelubricants", 7), 0);
        assert_eq!(kafka_abs(-5), 5);
    }

    #[test]
    fn partition_is_always_in_range() {
        for i in 0..2000 {
            let g = format!("group-{i}-\u{e9}");
            let p = partition_for(&g, 50);
            assert!((0..50).contains(&p), "{g} -> {p}");
        }
    }
}
