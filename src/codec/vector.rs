//! pgvector's `vector`, `halfvec` and `sparsevec` as Debezium (3.0.8+) maps them:
//! `io.debezium.data.DoubleVector` (array of float64), `io.debezium.data.FloatVector`
//! (array of float32) and `io.debezium.data.SparseDoubleVector` (`{dimensions: int16,
//! vector: map<int16, float64>}`, indices 1-based as pgvector writes them), each
//! version 1. pgoutput sends these types in their text form (`[1,2.5]`,
//! `{1:1.5,3:2}/5`), which is parsed here as Debezium's `Vectors` parses it: text it
//! cannot read (a sparse index or dimension beyond int16, which Debezium's
//! `Short.parseShort` refuses too) makes the column null, as Debezium's default
//! `event.converting.failure.handling.mode = warn` does.
//!
//! Debezium keeps a sparse vector in a `java.util.HashMap<Short, Double>` and Connect
//! writes a map in that map's iteration order, so the entries are written in the order
//! such a `HashMap` iterates them (see [`java_hash_map_order`]).

use super::connect::{field, ConnectSchema};
use super::encode::{put_f32, put_f64, put_int, put_long};

/// `vector`: `io.debezium.data.DoubleVector`.
pub(super) fn double_vector_schema() -> ConnectSchema {
    ConnectSchema::array(ConnectSchema::float64())
        .named("io.debezium.data.DoubleVector")
        .version(1)
}

/// `halfvec`: `io.debezium.data.FloatVector`.
pub(super) fn float_vector_schema() -> ConnectSchema {
    ConnectSchema::array(ConnectSchema::float32())
        .named("io.debezium.data.FloatVector")
        .version(1)
}

/// `sparsevec`: `io.debezium.data.SparseDoubleVector`. Its map has int16 keys, so the
/// Avro form is an array of `io.confluent.connect.avro.MapEntry {key, value}` records,
/// as Confluent's `AvroData` writes maps whose keys are not strings.
pub(super) fn sparse_vector_schema() -> ConnectSchema {
    ConnectSchema::record(
        "io.debezium.data.SparseDoubleVector",
        vec![
            field("dimensions", ConnectSchema::int16()),
            field(
                "vector",
                ConnectSchema::map(ConnectSchema::int16(), ConnectSchema::float64()),
            ),
        ],
    )
    .version(1)
    .doc("Sparse double vector")
}

/// The elements of a dense vector's text (`[1,2.5,-3e-07]`), or `None` when it is not
/// one (no brackets, an element that is not a number; an empty `[]` too, which pgvector
/// never writes and Debezium's parser refuses).
fn parse_dense<T: std::str::FromStr>(text: &str) -> Option<Vec<T>> {
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
    inner.split(',').map(|e| e.trim().parse().ok()).collect()
}

/// A sparse vector's text (`{1:1.5,3:2}/5`) as its dimensions and `(index, value)`
/// entries in the text's order, or `None` when it cannot be read.
fn parse_sparse(text: &str) -> Option<(i16, Vec<(i16, f64)>)> {
    let (entries, dimensions) = text.trim().split_once('/')?;
    if dimensions.contains('/') {
        return None;
    }
    let dimensions: i16 = dimensions.trim().parse().ok()?;
    let inner = entries.trim().strip_prefix('{')?.strip_suffix('}')?;
    if inner.trim().is_empty() {
        return Some((dimensions, Vec::new()));
    }
    let entries = inner
        .split(',')
        .map(|entry| {
            let (index, value) = entry.split_once(':')?;
            if value.contains(':') {
                return None;
            }
            Some((index.trim().parse().ok()?, value.trim().parse().ok()?))
        })
        .collect::<Option<Vec<(i16, f64)>>>()?;
    Some((dimensions, entries))
}

/// `entries` in the order a `java.util.HashMap<Short, Double>` filled with them by
/// `put` iterates: by bucket (`hash & (capacity - 1)`, a `Short`'s hash being its
/// value, spread by `h ^ (h >>> 16)`), then by insertion within a bucket. The capacity
/// starts at 16 and doubles when the map grows past three quarters of it, or when a
/// bucket reaches 9 entries while the capacity is below 64. A repeated index keeps its
/// first place and takes the later value. (A bucket of 9 or more at capacity 64 and
/// above becomes a tree in Java, whose order is not emulated: that needs 9 indices
/// equal modulo the capacity among at most 3/4 of it.)
pub(super) fn java_hash_map_order(entries: &[(i16, f64)]) -> Vec<(i16, f64)> {
    let hash = |k: i16| {
        let h = k as i32 as u32;
        (h ^ (h >> 16)) as usize
    };
    let mut capacity = 16usize;
    let mut buckets: Vec<Vec<(i16, f64)>> = vec![Vec::new(); capacity];
    let mut size = 0usize;
    let grow = |buckets: &mut Vec<Vec<(i16, f64)>>, capacity: &mut usize| {
        *capacity *= 2;
        let mut grown = vec![Vec::new(); *capacity];
        for (k, v) in buckets.iter().flatten() {
            grown[hash(*k) & (*capacity - 1)].push((*k, *v));
        }
        *buckets = grown;
    };
    for &(k, v) in entries {
        let bucket = &mut buckets[hash(k) & (capacity - 1)];
        if let Some(existing) = bucket.iter_mut().find(|(key, _)| *key == k) {
            existing.1 = v;
            continue;
        }
        bucket.push((k, v));
        if bucket.len() > 8 && capacity < 64 {
            grow(&mut buckets, &mut capacity);
        }
        size += 1;
        if size > capacity * 3 / 4 {
            grow(&mut buckets, &mut capacity);
        }
    }
    buckets.into_iter().flatten().collect()
}

/// Writes a `vector`'s Avro datum (an array of doubles); `false` if the text is not a
/// vector.
pub(super) fn put_double_vector(out: &mut Vec<u8>, text: &str) -> bool {
    put_dense(out, text, put_f64)
}

/// Writes a `halfvec`'s Avro datum (an array of floats: pgvector writes each half as
/// the shortest text of its float value, read back exactly).
pub(super) fn put_float_vector(out: &mut Vec<u8>, text: &str) -> bool {
    put_dense(out, text, put_f32)
}

/// A dense vector's elements as one Avro array block, each written by `put`.
fn put_dense<T: std::str::FromStr>(
    out: &mut Vec<u8>,
    text: &str,
    put: fn(&mut Vec<u8>, T),
) -> bool {
    let Some(elements) = parse_dense::<T>(text) else {
        return false;
    };
    put_long(out, elements.len() as i64);
    for e in elements {
        put(out, e);
    }
    put_long(out, 0);
    true
}

/// Writes a `sparsevec`'s Avro datum: the dimensions, then the entries as
/// `MapEntry {key, value}` records in Java's `HashMap` order.
pub(super) fn put_sparse_vector(out: &mut Vec<u8>, text: &str) -> bool {
    let Some((dimensions, entries)) = parse_sparse(text) else {
        return false;
    };
    put_int(out, i32::from(dimensions));
    let entries = java_hash_map_order(&entries);
    if !entries.is_empty() {
        put_long(out, entries.len() as i64);
        for (k, v) in entries {
            put_int(out, i32::from(k));
            put_f64(out, v);
        }
    }
    put_long(out, 0);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_vectors_parse_as_debeziums_parser_reads_pgvectors_text() {
        assert_eq!(
            parse_dense::<f64>("[1,2.5,-3e-07,1e+20]"),
            Some(vec![1.0, 2.5, -3e-7, 1e20])
        );
        assert_eq!(parse_dense::<f64>(" [ 1 , 2 ] "), Some(vec![1.0, 2.0]));
        assert_eq!(
            parse_dense::<f32>("[1.5,2,0.099975586]"),
            Some(vec![1.5, 2.0, 0.099_975_586])
        );
        for bad in [
            "1,2",
            "[1,2",
            "[]",
            "[1,,2]",
            "[a]",
            "__debezium_unavailable_value",
        ] {
            assert_eq!(parse_dense::<f64>(bad), None, "{bad}");
        }
    }

    #[test]
    fn sparse_vectors_keep_pgvectors_one_based_indices_and_refuse_what_short_cannot_hold() {
        assert_eq!(
            parse_sparse("{1:1.5,3:2,9:-0.25}/40"),
            Some((40, vec![(1, 1.5), (3, 2.0), (9, -0.25)]))
        );
        assert_eq!(parse_sparse("{}/5"), Some((5, vec![])));
        assert_eq!(parse_sparse(" { 2 : 1 } / 3 "), Some((3, vec![(2, 1.0)])));
        for bad in [
            "{1:1}/40000",
            "{40000:1}/5",
            "{1:1}",
            "1:1/5",
            "{1:1}/5/6",
            "{1:1:1}/5",
            "{1}/5",
            "{1:x}/5",
        ] {
            assert_eq!(parse_sparse(bad), None, "{bad}");
        }
    }

    #[test]
    fn sparse_entries_come_in_java_hash_map_order() {
        let keys = |entries: &[(i16, f64)]| -> Vec<i16> {
            java_hash_map_order(entries).iter().map(|e| e.0).collect()
        };
        let e = |ks: &[i16]| ks.iter().map(|k| (*k, 1.0)).collect::<Vec<_>>();
        // Below the capacity: ascending, whatever the insertion order.
        assert_eq!(keys(&e(&[9, 1, 3])), vec![1, 3, 9]);
        // Capacity 16: 17 and 33 share bucket 1 with 1, in insertion order.
        assert_eq!(keys(&e(&[33, 2, 1, 17])), vec![33, 1, 17, 2]);
        // 13 entries pass 12 = 16 * 3/4: capacity 32, so 17 leaves bucket 1.
        let many: Vec<i16> = (1..=12).chain([33]).collect();
        assert_eq!(
            keys(&e(&many)),
            vec![1, 33, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        );
        // Nine in one bucket below capacity 64 grows the table (Java's treeifyBin).
        let crowded: Vec<i16> = (0..9).map(|i| 1 + 16 * i).collect();
        assert_eq!(
            keys(&e(&crowded)),
            vec![1, 33, 65, 97, 129, 17, 49, 81, 113]
        );
        // -1 hashes to 0xFFFF_FFFF, spread to 0xFFFF_0000: bucket 0, after 0 if later.
        assert_eq!(keys(&e(&[-1, 0])), vec![-1, 0]);
        assert_eq!(keys(&e(&[0, -1])), vec![0, -1]);
        // A repeated index keeps its place and takes the last value.
        assert_eq!(
            java_hash_map_order(&[(2, 1.0), (1, 1.0), (2, 5.0)]),
            vec![(1, 1.0), (2, 5.0)]
        );
    }

    #[test]
    fn datums_are_arrays_and_map_entry_records() {
        let mut out = Vec::new();
        assert!(put_double_vector(&mut out, "[1,2]"));
        let mut want = vec![4u8]; // 2 items, zigzag
        want.extend(1f64.to_le_bytes());
        want.extend(2f64.to_le_bytes());
        want.push(0);
        assert_eq!(out, want);

        out.clear();
        assert!(put_sparse_vector(&mut out, "{3:0.5}/4"));
        let mut want = vec![8u8, 2, 6]; // dimensions 4, 1 entry, key 3
        want.extend(0.5f64.to_le_bytes());
        want.push(0);
        assert_eq!(out, want);

        out.clear();
        assert!(put_sparse_vector(&mut out, "{}/4"));
        assert_eq!(out, vec![8u8, 0]);
        assert!(!put_sparse_vector(&mut out, "{1:1}/99999"));
    }
}
