//! Maps keyed by topic name, looked up several times per record (partition count,
//! what Kafka already holds, the sent counter). FNV-1a hashes a short topic name in a
//! few nanoseconds where the standard library's SipHash takes several times that; topic
//! names come from the connector file, so hash flooding is no concern here.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A map from topic name to `V` with the FNV-1a hasher.
pub type TopicMap<V> = HashMap<Arc<str>, V, BuildHasherDefault<Fnv1a>>;

/// 64-bit FNV-1a.
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        let hash = |s: &[u8]| {
            let mut h = Fnv1a::default();
            h.write(s);
            h.finish()
        };
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn topic_maps_find_what_they_hold() {
        let mut map: TopicMap<i32> = TopicMap::default();
        map.insert("shop.public.orders".into(), 3);
        map.insert("shop.public.items".into(), 6);
        assert_eq!(map.get("shop.public.orders"), Some(&3));
        assert_eq!(map.get("shop.public.items"), Some(&6));
        assert_eq!(map.get("shop.public.other"), None);
    }
}
