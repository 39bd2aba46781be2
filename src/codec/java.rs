//! Small emulations of Java library behaviour that shows in Debezium's output: how
//! `Float`/`Double.toString` print numbers, the iteration order of a `HashMap<String,
//! _>`, and `UUID.nameUUIDFromBytes`; pure, no I/O.

/// Java's `Double.toString` (JDK 19+ shortest-digit form): `1.0`, `0.001`, `1.0E7`,
/// `1.234E-5`, `NaN`, `Infinity`, `-0.0`.
pub fn double_to_string(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // `{:e}` gives the shortest digits that round-trip: `-1.2345e-7`.
    java_format(&format!("{d:e}"), d == 0.0, d.is_sign_negative(), d.abs())
}

/// Java's `Float.toString`, as [`double_to_string`] for an f32.
pub fn float_to_string(f: f32) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    java_format(
        &format!("{f:e}"),
        f == 0.0,
        f.is_sign_negative(),
        f64::from(f.abs()),
    )
}

fn java_format(sci: &str, zero: bool, negative: bool, magnitude: f64) -> String {
    let sign = if negative { "-" } else { "" };
    if zero {
        return format!("{sign}0.0");
    }
    let sci = sci.trim_start_matches('-');
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (1e-3..1e7).contains(&magnitude) {
        // Plain notation with at least one fraction digit.
        let point = exp + 1; // digits before the decimal point
        let (int, frac) = if point <= 0 {
            (
                "0".to_string(),
                format!("{}{}", "0".repeat((-point) as usize), digits),
            )
        } else if point as usize >= digits.len() {
            (
                format!("{}{}", digits, "0".repeat(point as usize - digits.len())),
                String::new(),
            )
        } else {
            (
                digits[..point as usize].to_string(),
                digits[point as usize..].to_string(),
            )
        };
        let frac = if frac.is_empty() {
            "0".to_string()
        } else {
            frac
        };
        format!("{sign}{int}.{frac}")
    } else {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        format!("{sign}{first}.{rest}E{exp}")
    }
}

/// Java's `String.hashCode` (over UTF-16 code units).
pub fn string_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    h
}

/// The order in which a `java.util.HashMap` filled with `keys` (in this order, all
/// distinct) iterates them: by bucket of the final table, then by insertion. The
/// table starts at 16 buckets and doubles when the size passes 3/4 of it, or when
/// a bucket would reach 9 entries while the table is below 64 buckets (where Java
/// would build a tree instead; tree bins, which need nine keys in one bucket of a
/// 64-bucket table, are not emulated).
pub fn hash_map_order(keys: &[&str]) -> Vec<usize> {
    let spread = |k: &str| {
        let h = string_hash(k) as u32;
        h ^ (h >> 16)
    };
    let hashes: Vec<u32> = keys.iter().map(|k| spread(k)).collect();
    let mut capacity: usize = 16;
    for n in 1..=hashes.len() {
        // The n-th insertion: a bucket that already holds 8 entries asks for a tree.
        let bucket = |cap: usize, h: u32| (h as usize) & (cap - 1);
        let b = bucket(capacity, hashes[n - 1]);
        let in_bucket = hashes[..n - 1]
            .iter()
            .filter(|h| bucket(capacity, **h) == b)
            .count();
        if in_bucket >= 8 && capacity < 64 {
            capacity *= 2;
        }
        if n > capacity * 3 / 4 {
            capacity *= 2;
        }
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| ((hashes[i] as usize) & (capacity - 1), i));
    order
}

/// `java.util.UUID.nameUUIDFromBytes`: an MD5-based (version 3) UUID, lower case.
pub fn name_uuid_from_bytes(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    let mut d = [0u8; 16];
    d.copy_from_slice(Md5::digest(bytes).as_slice());
    d[6] = (d[6] & 0x0f) | 0x30;
    d[8] = (d[8] & 0x3f) | 0x80;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        hex(&d[0..4]),
        hex(&d[4..6]),
        hex(&d[6..8]),
        hex(&d[8..10]),
        hex(&d[10..16])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_like_java() {
        assert_eq!(double_to_string(0.0), "0.0");
        assert_eq!(double_to_string(-0.0), "-0.0");
        assert_eq!(double_to_string(1.0), "1.0");
        assert_eq!(double_to_string(6.78), "6.78");
        assert_eq!(double_to_string(123456.5), "123456.5");
        assert_eq!(double_to_string(1e7), "1.0E7");
        assert_eq!(double_to_string(12345678.9), "1.23456789E7");
        assert_eq!(double_to_string(0.001), "0.001");
        assert_eq!(double_to_string(0.0001), "1.0E-4");
        assert_eq!(double_to_string(-2.5e-10), "-2.5E-10");
        assert_eq!(float_to_string(3.3), "3.3");
        assert_eq!(float_to_string(1.0e10), "1.0E10");
    }

    #[test]
    fn string_hash_matches_java() {
        assert_eq!(string_hash(""), 0);
        assert_eq!(string_hash("a"), 97);
        // "hello".hashCode() == 99162322
        assert_eq!(string_hash("hello"), 99_162_322);
        // Overflowing: "polygenelubricants".hashCode() == Integer.MIN_VALUE
        assert_eq!(string_hash("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn hash_map_order_matches_java() {
        // Java: new HashMap with key4, key5 inserted iterates key5 first (Debezium's
        // test expects {"key5":null,"key4":"val4"}).
        let keys = ["key4", "key5"];
        let order = hash_map_order(&keys);
        assert_eq!(order, vec![1, 0]);
        let keys = ["key1", "key2", "key3"];
        assert_eq!(hash_map_order(&keys), vec![0, 1, 2]);
        // "key_#1" and "key 2": Debezium's expected JSON lists key_#1 first.
        let keys = ["key 2", "key_#1"];
        assert_eq!(hash_map_order(&keys), vec![1, 0]);
    }

    #[test]
    fn name_uuid_is_version_3() {
        // UUID.nameUUIDFromBytes("".getBytes()) == d41d8cd9-8f00-3204-a980-0998ecf8427e
        assert_eq!(
            name_uuid_from_bytes(b""),
            "d41d8cd9-8f00-3204-a980-0998ecf8427e"
        );
    }
}
