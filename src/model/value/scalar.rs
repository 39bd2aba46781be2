//! Parsers for the simple scalar types' text forms: bool, integers, floats, uuid,
//! bytea, network addresses, bit strings, pg_lsn, point and hstore.

use std::net::IpAddr;
use std::str::FromStr;

use super::Reason;

/// bool: PostgreSQL prints `t` / `f`; its input spellings are accepted too.
pub(super) fn parse_bool(text: &str) -> Result<bool, Reason> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Ok(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Ok(false),
        _ => Err("expected t or f".into()),
    }
}

/// int2 / int4 / int8 / oid in decimal.
pub(super) fn parse_int<T: FromStr<Err = std::num::ParseIntError>>(
    text: &str,
) -> Result<T, Reason> {
    text.parse::<T>().map_err(|e| e.to_string())
}

/// float8: `1.5`, `1e+300`, `NaN`, `Infinity`, `-Infinity`.
pub(super) fn parse_float8(text: &str) -> Result<f64, Reason> {
    match text {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => float_digits(text)?
            .parse::<f64>()
            .map_err(|e| e.to_string()),
    }
}

/// float4, as float8 (the text is rounded to f32 directly, not through f64).
pub(super) fn parse_float4(text: &str) -> Result<f32, Reason> {
    match text {
        "NaN" => Ok(f32::NAN),
        "Infinity" => Ok(f32::INFINITY),
        "-Infinity" => Ok(f32::NEG_INFINITY),
        _ => float_digits(text)?
            .parse::<f32>()
            .map_err(|e| e.to_string()),
    }
}

/// Rejects what Rust's float parser reads but PostgreSQL never prints (`inf`, `nan`
/// in other spellings): a finite float is digits, `.`, `e`, `+` and `-` only.
fn float_digits(text: &str) -> Result<&str, Reason> {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        Ok(text)
    } else {
        Err("expected a number, NaN, Infinity or -Infinity".into())
    }
}

/// uuid: normalised to lower-case `8-4-4-4-12`. PostgreSQL's input forms (braces,
/// upper case, hyphens after any group of 4 digits) are accepted.
pub(super) fn parse_uuid(text: &str) -> Result<String, Reason> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let mut hex = Vec::with_capacity(32);
    for b in inner.bytes() {
        match b {
            b'-' => {}
            _ if b.is_ascii_hexdigit() => hex.push(b.to_ascii_lowercase()),
            _ => return Err("expected 32 hex digits".into()),
        }
    }
    if hex.len() != 32 || inner.starts_with('-') || inner.ends_with('-') || inner.contains("--") {
        return Err("expected 32 hex digits".into());
    }
    let mut out = String::with_capacity(36);
    for (i, b) in hex.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(char::from(*b));
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// bytea: hex format `\x0a0b` (`bytea_output = hex`, the default), or the legacy
/// escape format (`\\` for a backslash, `\ooo` octal for other bytes).
pub(super) fn parse_bytea(text: &str) -> Result<Vec<u8>, Reason> {
    let b = text.as_bytes();
    if let Some(hex) = b.strip_prefix(b"\\x") {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut i = 0;
        while i < hex.len() {
            if hex[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let hi = hex_value(hex[i]);
            let lo = hex.get(i + 1).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(format!("invalid hex digit pair at byte {}", i + 2)),
            }
            i += 2;
        }
        return Ok(out);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1..i + 4) {
            Some([b'\\', ..]) => {
                out.push(b'\\');
                i += 2;
            }
            Some(&[d1 @ b'0'..=b'3', d2 @ b'0'..=b'7', d3 @ b'0'..=b'7']) => {
                out.push((d1 - b'0') << 6 | (d2 - b'0') << 3 | (d3 - b'0'));
                i += 4;
            }
            _ if b.get(i + 1) == Some(&b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            _ => return Err(format!("invalid escape at byte {i}")),
        }
    }
    Ok(out)
}

/// inet / cidr: `address[/prefix]`, checked and kept as printed (lower case).
pub(super) fn parse_inet(text: &str, cidr: bool) -> Result<String, Reason> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| "expected an IPv4 or IPv6 address".to_string())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if let Some(prefix) = prefix {
        let bits: u8 = prefix
            .parse()
            .map_err(|_| "expected a prefix length after '/'".to_string())?;
        if bits > max || prefix.starts_with('+') {
            return Err(format!("prefix length beyond {max}"));
        }
    } else if cidr {
        return Err("expected a prefix length: PostgreSQL prints cidr as address/bits".into());
    }
    Ok(text.to_ascii_lowercase())
}

/// macaddr (6 bytes) / macaddr8 (8 bytes): normalised to `08:00:2b:01:02:03`. The
/// input forms with `-`, `.` or no separators are accepted; a 6-byte address given
/// for macaddr8 becomes EUI-64 as PostgreSQL does it (`ff:fe` in the middle).
pub(super) fn parse_macaddr(text: &str, len: usize) -> Result<String, Reason> {
    let mut digits = Vec::with_capacity(16);
    for b in text.bytes() {
        match b {
            b':' | b'-' | b'.' => {}
            _ => match hex_value(b) {
                Some(v) => digits.push(v),
                None => return Err("expected hex digits separated by ':'".into()),
            },
        }
    }
    let mut bytes: Vec<u8> = digits
        .chunks(2)
        .map(|p| p[0] << 4 | p.get(1).copied().unwrap_or(0))
        .collect();
    if digits.len() == 12 && len == 8 {
        bytes.splice(3..3, [0xff, 0xfe]);
    } else if digits.len() != len * 2 {
        return Err(format!("expected {len} bytes"));
    }
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(parts.join(":"))
}

/// bit / varbit: `1010…` as (length in bits, bytes most significant bit first, the
/// last byte padded with zeros).
pub(super) fn parse_bits(text: &str) -> Result<(usize, Vec<u8>), Reason> {
    let mut bytes = vec![0u8; text.len().div_ceil(8)];
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'0' => {}
            b'1' => bytes[i / 8] |= 0x80 >> (i % 8),
            _ => return Err(format!("expected 0 or 1 at byte {i}")),
        }
    }
    Ok((text.len(), bytes))
}

/// pg_lsn: `16/B374D848`, two 32-bit halves in hex.
pub(super) fn parse_lsn(text: &str) -> Result<u64, Reason> {
    let bad = || "expected hex digits like 16/B374D848".to_string();
    let (hi, lo) = text.split_once('/').ok_or_else(bad)?;
    let half = |s: &str| {
        if (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            u32::from_str_radix(s, 16).map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    Ok(u64::from(half(hi)?) << 32 | u64::from(half(lo)?))
}

/// point: `(x,y)` with float8 coordinates.
pub(super) fn parse_point(text: &str) -> Result<(f64, f64), Reason> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or("expected (x,y)")?;
    let (x, y) = inner.split_once(',').ok_or("expected (x,y)")?;
    Ok((parse_float8(x.trim())?, parse_float8(y.trim())?))
}

/// hstore: `"a"=>"1", "b"=>NULL` (backslash escapes inside quotes). Unquoted keys
/// and values, as hstore's input accepts them, are read too.
pub(super) fn parse_hstore(text: &str) -> Result<Vec<(String, Option<String>)>, Reason> {
    let b = text.as_bytes();
    let mut pairs = Vec::new();
    let mut i = 0;
    loop {
        i = skip_space(b, i);
        if i >= b.len() {
            break;
        }
        if !pairs.is_empty() {
            if b[i] != b',' {
                return Err(format!("expected ',' between pairs at byte {i}"));
            }
            i = skip_space(b, i + 1);
        }
        let (key, quoted, next) = hstore_token(b, i, true)?;
        if !quoted && key.eq_ignore_ascii_case("NULL") {
            return Err("a key cannot be NULL".into());
        }
        i = skip_space(b, next);
        if b.get(i..i + 2) != Some(b"=>") {
            return Err(format!("expected '=>' at byte {i}"));
        }
        i = skip_space(b, i + 2);
        let (value, quoted, next) = hstore_token(b, i, false)?;
        i = next;
        let value = if !quoted && value.eq_ignore_ascii_case("NULL") {
            None
        } else {
            Some(value)
        };
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// One hstore key or value starting at `i`: (text, was it quoted, index after it).
fn hstore_token(b: &[u8], mut i: usize, is_key: bool) -> Result<(String, bool, usize), Reason> {
    let mut out = Vec::new();
    let quoted = b.get(i) == Some(&b'"');
    if quoted {
        (out, i) = super::array::read_quoted(b, i + 1, "unterminated quoted string")?;
    } else {
        while let Some(&c) = b.get(i) {
            let stop = c.is_ascii_whitespace()
                || c == b','
                || c == b'"'
                || (is_key && c == b'=' && b.get(i + 1) == Some(&b'>'));
            if stop {
                break;
            }
            if c == b'\\' {
                out.push(*b.get(i + 1).ok_or("a backslash at the end")?);
                i += 2;
            } else {
                out.push(c);
                i += 1;
            }
        }
        if out.is_empty() {
            return Err(format!("expected a key or value at byte {i}"));
        }
    }
    // Only ASCII bytes were dropped, so the rest is still UTF-8.
    let text = String::from_utf8(out).map_err(|_| "invalid UTF-8".to_string())?;
    Ok((text, quoted, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_and_ints() {
        assert_eq!(parse_bool("t"), Ok(true));
        assert_eq!(parse_bool("f"), Ok(false));
        assert!(parse_bool("maybe").is_err());
        assert_eq!(parse_int::<i16>("-32768"), Ok(i16::MIN));
        assert!(parse_int::<i16>("32768").is_err());
        assert_eq!(parse_int::<i64>("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_int::<u32>("4294967295"), Ok(u32::MAX));
        assert!(parse_int::<u32>("-1").is_err());
        assert!(parse_int::<i32>("").is_err());
        assert!(parse_int::<i32>("1.0").is_err());
    }

    #[test]
    fn floats() {
        assert!(parse_float8("NaN").unwrap().is_nan());
        assert_eq!(parse_float8("Infinity"), Ok(f64::INFINITY));
        assert_eq!(parse_float8("-Infinity"), Ok(f64::NEG_INFINITY));
        assert_eq!(parse_float8("1e+300"), Ok(1e300));
        assert_eq!(parse_float8("1.5e-07"), Ok(1.5e-7));
        assert_eq!(
            parse_float8("1.2345678901234568e+17"),
            Ok(123456789012345680.0)
        );
        let neg_zero = parse_float8("-0").unwrap();
        assert!(neg_zero == 0.0 && neg_zero.is_sign_negative());
        assert_eq!(parse_float4("0.1"), Ok(0.1f32));
        assert_eq!(parse_float4("3.4028235e+38"), Ok(f32::MAX));
        assert_eq!(parse_float4("1e+30"), Ok(1e30f32));
        assert!(parse_float4("NaN").unwrap().is_nan());
        assert_eq!(parse_float4("-Infinity"), Ok(f32::NEG_INFINITY));
        for bad in [
            "", "inf", "nan", "infinity", "1,5", "0x1p3", " 1", "abc", "1e", "--1",
        ] {
            assert!(parse_float8(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uuids() {
        let want = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for text in [
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        ] {
            assert_eq!(parse_uuid(text).as_deref(), Ok(want), "{text}");
        }
        for bad in [
            "",
            "a0eebc99",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
            "-a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0eebc99--9c0b4ef8bb6d6bb9bd380a11",
            "é0eebc999c0b4ef8bb6d6bb9bd380a1",
        ] {
            assert!(parse_uuid(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bytea_hex_and_escape() {
        assert_eq!(parse_bytea("\\x0a0bff"), Ok(vec![0x0a, 0x0b, 0xff]));
        assert_eq!(parse_bytea("\\x"), Ok(vec![]));
        assert_eq!(
            parse_bytea("\\xDEAD beef"),
            Ok(vec![0xde, 0xad, 0xbe, 0xef])
        );
        assert!(parse_bytea("\\x0").is_err());
        assert!(parse_bytea("\\x0g").is_err());
        assert!(parse_bytea("\\xé").is_err());
        // bytea_output = escape, as PostgreSQL 15 prints E'\\x0a5c27ff41'::bytea.
        assert_eq!(
            parse_bytea("\\012\\\\'\\377A"),
            Ok(vec![0x0a, b'\\', b'\'', 0xff, b'A'])
        );
        assert_eq!(parse_bytea(""), Ok(vec![]));
        assert_eq!(parse_bytea("é"), Ok("é".as_bytes().to_vec()));
        assert_eq!(parse_bytea("\\\\"), Ok(vec![b'\\']));
        for bad in ["\\", "\\4", "\\400", "\\08", "\\x1\\", "a\\b"] {
            assert!(parse_bytea(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn network() {
        assert_eq!(
            parse_inet("192.168.0.1/24", false).as_deref(),
            Ok("192.168.0.1/24")
        );
        assert_eq!(
            parse_inet("::ffff:1.2.3.4", false).as_deref(),
            Ok("::ffff:1.2.3.4")
        );
        assert_eq!(parse_inet("::1.2.3.4", false).as_deref(), Ok("::1.2.3.4"));
        assert_eq!(parse_inet("10.0.0.1", false).as_deref(), Ok("10.0.0.1"));
        assert_eq!(
            parse_inet("2001:db8::/64", true).as_deref(),
            Ok("2001:db8::/64")
        );
        assert_eq!(
            parse_inet("10.1.0.0/16", true).as_deref(),
            Ok("10.1.0.0/16")
        );
        assert_eq!(
            parse_inet("2001:DB8::1", false).as_deref(),
            Ok("2001:db8::1")
        );
        for bad in [
            "",
            "10.1",
            "10.0.0.1/33",
            "::1/129",
            "10.0.0.1/",
            "10.0.0.1/+8",
            "host",
            "10.0.0.1/24/8",
        ] {
            assert!(parse_inet(bad, false).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_macaddr("08:00:2b:01:02:03", 6).as_deref(),
            Ok("08:00:2b:01:02:03")
        );
        assert_eq!(
            parse_macaddr("08-00-2B-01-02-03", 6).as_deref(),
            Ok("08:00:2b:01:02:03")
        );
        assert_eq!(
            parse_macaddr("08:00:2b:01:02:03:04:05", 8).as_deref(),
            Ok("08:00:2b:01:02:03:04:05")
        );
        assert_eq!(
            parse_macaddr("08:00:2b:01:02:03", 8).as_deref(),
            Ok("08:00:2b:ff:fe:01:02:03")
        );
        for bad in [
            "",
            "08:00:2b:01:02",
            "08:00:2b:01:02:03:04",
            "08:00:2b:01:02:0g",
            "08:00:2b:01:02:03:04:05:06",
        ] {
            assert!(parse_macaddr(bad, 6).is_err(), "{bad:?}");
        }
        assert!(parse_macaddr("08:00:2b:01:02:03:04", 8).is_err());
    }

    #[test]
    fn bits() {
        assert_eq!(parse_bits(""), Ok((0, vec![])));
        assert_eq!(parse_bits("101"), Ok((3, vec![0b1010_0000])));
        assert_eq!(parse_bits("10101010"), Ok((8, vec![0b1010_1010])));
        assert_eq!(
            parse_bits("1010101011"),
            Ok((10, vec![0b1010_1010, 0b1100_0000]))
        );
        assert_eq!(
            parse_bits("00000000000000001"),
            Ok((17, vec![0, 0, 0b1000_0000]))
        );
        assert_eq!(parse_bits("1"), Ok((1, vec![0x80])));
        assert_eq!(
            parse_bits("0000000000000000100"),
            Ok((19, vec![0, 0, 0b1000_0000]))
        );
        assert_eq!(parse_bits("00011111"), Ok((8, vec![0x1f])));
        assert!(parse_bits("102").is_err());
        assert!(parse_bits("X1F").is_err());
    }

    #[test]
    fn lsn() {
        assert_eq!(parse_lsn("16/B374D848"), Ok(0x16_B374_D848));
        assert_eq!(parse_lsn("0/0"), Ok(0));
        assert_eq!(parse_lsn("FFFFFFFF/FFFFFFFF"), Ok(u64::MAX));
        assert_eq!(parse_lsn("0/1a"), Ok(0x1a));
        for bad in ["", "16", "16/", "/1", "100000000/0", "+1/0", "1/2/3", "g/0"] {
            assert!(parse_lsn(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn points() {
        assert_eq!(parse_point("(1.5,2)"), Ok((1.5, 2.0)));
        assert_eq!(
            parse_point("(1e+300,-Infinity)"),
            Ok((1e300, f64::NEG_INFINITY))
        );
        let (x, _) = parse_point("(NaN,0)").unwrap();
        assert!(x.is_nan());
        for bad in ["", "()", "(1)", "(1,2", "1,2", "(1,2,3)", "(a,b)"] {
            assert!(parse_point(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hstore() {
        let s = |v: &str| Some(v.to_string());
        // Printed by PostgreSQL 15 for
        // 'a=>1, b=>NULL, "c d"=>"x\"y", "e\\f"=>"", "NULL"=>"NULL", g=>null'::hstore.
        let text = r#""a"=>"1", "b"=>NULL, "g"=>NULL, "c d"=>"x\"y", "e\\f"=>"", "NULL"=>"NULL""#;
        assert_eq!(
            parse_hstore(text),
            Ok(vec![
                ("a".into(), s("1")),
                ("b".into(), None),
                ("g".into(), None),
                ("c d".into(), s("x\"y")),
                ("e\\f".into(), s("")),
                ("NULL".into(), s("NULL")),
            ])
        );
        assert_eq!(parse_hstore(""), Ok(vec![]));
        assert_eq!(
            parse_hstore("a=>1,b => null , \"é\"=>\"€\""),
            Ok(vec![
                ("a".into(), s("1")),
                ("b".into(), None),
                ("é".into(), s("€"))
            ])
        );
        for bad in [
            "\"a\"",
            "\"a\"=>",
            "\"a\"=>\"1",
            "\"a\"=>\"1\" \"b\"=>\"2\"",
            "=>\"1\"",
            "NULL=>1",
            "\"a\"=>\"1\",",
            "\"a\\",
            "a=>b\\",
        ] {
            assert!(parse_hstore(bad).is_err(), "{bad:?}");
        }
    }
}
