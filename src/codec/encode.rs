//! Avro binary encoding of column values, one [`Kind`] at a time, into a caller's
//! buffer; values converted the way Debezium's `PostgresValueConverter` converts them
//! (including its unchanged-TOAST placeholders and its fallbacks for a missing value
//! in a NOT NULL column); pure, no I/O.
//!
//! Avro binary: int and long are zig-zag varints, float and double little-endian IEEE,
//! bytes and string a long length then the bytes, a union the branch index (a long)
//! then the value, an array or map one block (item count, items) then a zero count
//! (an empty one is just the zero), a record its fields in order. These are the bytes
//! Avro Java's `GenericDatumWriter` produces for the same datum.

use std::fmt::Write as _;

use base64::Engine as _;

use super::mapping::{ArrayToast, Kind};
use super::options::{BinaryHandling, CodecOptions};
use super::temporal::{
    interval_iso, interval_micros, write_zoned_time, write_zoned_timestamp, StackStr,
    DATE_NEGATIVE_INFINITY_DAYS, DATE_POSITIVE_INFINITY_DAYS, TIMESTAMP_NEGATIVE_INFINITY_MICROS,
    TIMESTAMP_POSITIVE_INFINITY_MICROS,
};
use crate::model::value::{DateValue, Numeric, TimestampValue, Value};

mod decimal;

pub use decimal::{decimal_bytes, decimal_double};
use decimal::{decimal_string, variable_scale};

/// A value Debezium cannot convert for its column (its default
/// `event.converting.failure.handling.mode=warn` leaves the field null).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unconvertible(pub &'static str);

type Conv<T> = Result<T, Unconvertible>;

const MISMATCH: Unconvertible = Unconvertible("the value does not have the column's type");

#[inline]
pub fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[inline]
pub fn put_int(out: &mut Vec<u8>, v: i32) {
    put_long(out, i64::from(v));
}

#[inline]
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

#[inline]
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

#[inline]
pub fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

#[inline]
pub fn put_f32(out: &mut Vec<u8>, f: f32) {
    out.extend_from_slice(&f.to_le_bytes());
}

#[inline]
pub fn put_f64(out: &mut Vec<u8>, f: f64) {
    out.extend_from_slice(&f.to_le_bytes());
}

/// The text a string-typed value carries.
fn text_of(v: &Value) -> Conv<&str> {
    Ok(match v {
        Value::Text(s)
        | Value::Enum(s)
        | Value::Json(s)
        | Value::Xml(s)
        | Value::Uuid(s)
        | Value::Inet(s)
        | Value::Cidr(s)
        | Value::MacAddr(s)
        | Value::MacAddr8(s)
        | Value::Geometric(s)
        | Value::Range(s)
        | Value::Multirange(s)
        | Value::TextSearch(s)
        | Value::Composite(s)
        | Value::Unknown(s) => s,
        _ => return Err(MISMATCH),
    })
}

/// The text of a value written as a string (`String`, `NumericString`, `MoneyString`,
/// `ZonedTimestamp`, `ZonedTime`, `IntervalString`); for defaults.
pub fn value_text(kind: &Kind, v: &Value) -> Conv<String> {
    let mut buf = StackStr::new();
    Ok(match kind {
        Kind::String => text_of(v)?.to_string(),
        Kind::NumericString | Kind::MoneyString => decimal_string(v)?,
        Kind::ZonedTimestamp { fraction } => match v {
            Value::TimestampTz(t) => zoned_timestamp_text(t, *fraction, &mut buf)?.to_string(),
            _ => return Err(MISMATCH),
        },
        Kind::ZonedTime => match v {
            Value::TimeTz {
                micros,
                offset_seconds,
            } => {
                write_zoned_time(&mut buf, *micros, *offset_seconds).map_err(|_| MISMATCH)?;
                buf.as_str().to_string()
            }
            _ => return Err(MISMATCH),
        },
        Kind::IntervalString => match v {
            Value::Interval {
                months,
                days,
                micros,
            } => interval_iso(*months, *days, *micros),
            _ => return Err(MISMATCH),
        },
        _ => return Err(MISMATCH),
    })
}

fn zoned_timestamp_text<'a>(
    t: &TimestampValue,
    fraction: i32,
    buf: &'a mut StackStr,
) -> Conv<&'a str> {
    match t {
        TimestampValue::PosInfinity => Ok("infinity"),
        TimestampValue::NegInfinity => Ok("-infinity"),
        TimestampValue::Finite(us) => {
            write_zoned_timestamp(buf, *us, fraction)
                .map_err(|_| Unconvertible("timestamp out of range"))?;
            Ok(buf.as_str())
        }
    }
}

/// Debezium's bytes for bit(n)/varbit: the bit string read as a binary number (first
/// bit most significant), little-endian, as short as the highest set bit allows
/// (`BitSet.toByteArray`; empty for zero).
pub fn debezium_bits(len: usize, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; len.div_ceil(8)];
    for i in 0..len {
        let set = bytes.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0);
        if set {
            let k = len - 1 - i;
            out[k / 8] |= 1 << (k % 8);
        }
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    out
}

/// Days, ms or µs of a temporal-number kind.
pub fn temporal_number(kind: &Kind, v: &Value) -> Conv<i64> {
    Ok(match (kind, v) {
        (Kind::Date, Value::Date(d)) => i64::from(match d {
            DateValue::Finite(days) => *days,
            DateValue::PosInfinity => DATE_POSITIVE_INFINITY_DAYS,
            DateValue::NegInfinity => DATE_NEGATIVE_INFINITY_DAYS,
        }),
        (Kind::TimeMillis, Value::Time(us)) => us.div_euclid(1000),
        (Kind::TimeMicros, Value::Time(us)) => *us,
        (Kind::TimestampMillis | Kind::TimestampMicros, Value::Timestamp(t)) => {
            let us = match t {
                TimestampValue::Finite(us) => *us,
                TimestampValue::PosInfinity => TIMESTAMP_POSITIVE_INFINITY_MICROS,
                TimestampValue::NegInfinity => TIMESTAMP_NEGATIVE_INFINITY_MICROS,
            };
            if *kind == Kind::TimestampMillis {
                us.div_euclid(1000)
            } else {
                us
            }
        }
        (
            Kind::IntervalMicros,
            Value::Interval {
                months,
                days,
                micros,
            },
        ) => interval_micros(*months, *days, *micros),
        _ => return Err(MISMATCH),
    })
}

fn put_binary(out: &mut Vec<u8>, mode: BinaryHandling, bytes: &[u8]) {
    match mode {
        BinaryHandling::Bytes => put_bytes(out, bytes),
        BinaryHandling::Base64 => put_str(
            out,
            &base64::engine::general_purpose::STANDARD.encode(bytes),
        ),
        BinaryHandling::Base64UrlSafe => put_str(
            out,
            &base64::engine::general_purpose::URL_SAFE.encode(bytes),
        ),
        BinaryHandling::Hex => {
            put_long(out, bytes.len() as i64 * 2);
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for b in bytes {
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0f)]);
            }
        }
    }
}

/// hstore as the JSON object Debezium writes (Jackson, `HashMap` iteration order).
fn hstore_json(pairs: &[(String, Option<String>)]) -> String {
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    let mut s = String::with_capacity(2 + pairs.len() * 16);
    s.push('{');
    for (n, i) in super::java::hash_map_order(&keys).into_iter().enumerate() {
        if n > 0 {
            s.push(',');
        }
        let (k, v) = &pairs[i];
        super::connect::write_json_string(&mut s, k);
        s.push(':');
        match v {
            Some(v) => super::connect::write_json_string(&mut s, v),
            None => s.push_str("null"),
        }
    }
    s.push('}');
    s
}

fn put_hstore_map(out: &mut Vec<u8>, pairs: &[(String, Option<String>)]) {
    if !pairs.is_empty() {
        put_long(out, pairs.len() as i64);
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        for i in super::java::hash_map_order(&keys) {
            let (k, v) = &pairs[i];
            put_str(out, k);
            match v {
                Some(v) => {
                    put_long(out, 1);
                    put_str(out, v);
                }
                None => put_long(out, 0),
            }
        }
    }
    put_long(out, 0);
}

/// Writes `v` (not Null, not UnchangedToast) as `kind`.
pub fn write_value(kind: &Kind, v: &Value, opts: &CodecOptions, out: &mut Vec<u8>) -> Conv<()> {
    match kind {
        Kind::Boolean => match v {
            Value::Bool(b) => put_bool(out, *b),
            _ => return Err(MISMATCH),
        },
        Kind::BitBoolean => match v {
            Value::Bits { len, bytes } if *len > 0 => put_bool(out, bytes.iter().any(|b| *b != 0)),
            Value::Bool(b) => put_bool(out, *b),
            _ => return Err(MISMATCH),
        },
        Kind::Int16 => match v {
            Value::Int2(i) => put_int(out, i32::from(*i)),
            _ => return Err(MISMATCH),
        },
        Kind::Int32 => match v {
            Value::Int4(i) => put_int(out, *i),
            _ => return Err(MISMATCH),
        },
        Kind::Int64 => match v {
            Value::Int8(i) => put_long(out, *i),
            Value::Oid(i) => put_long(out, i64::from(*i)),
            _ => return Err(MISMATCH),
        },
        Kind::Float32 => match v {
            Value::Float4(f) => put_f32(out, *f),
            _ => return Err(MISMATCH),
        },
        Kind::Float64 => match v {
            Value::Float8(f) => put_f64(out, *f),
            _ => return Err(MISMATCH),
        },
        Kind::Decimal { .. } | Kind::MoneyDecimal { .. } => {
            put_bytes(out, &decimal_bytes(kind, v, opts)?)
        }
        Kind::VariableScaleDecimal => match v {
            Value::Numeric(Numeric::Finite(d)) => {
                let (scale, bytes) = variable_scale(d);
                put_int(out, scale as i32);
                put_bytes(out, &bytes);
            }
            Value::Numeric(_) => return Err(Unconvertible(
                "NaN and infinity are not decimals; set decimal.handling.mode to string or double",
            )),
            _ => return Err(MISMATCH),
        },
        Kind::NumericDouble | Kind::MoneyDouble => put_f64(out, decimal_double(v)?),
        Kind::NumericString | Kind::MoneyString => put_str(out, &decimal_string(v)?),
        Kind::String => put_str(out, text_of(v)?),
        Kind::Binary(mode) => match v {
            Value::Bytea(b) => put_binary(out, *mode, b),
            _ => return Err(MISMATCH),
        },
        Kind::UnknownText(mode) => put_binary(out, *mode, text_of(v)?.as_bytes()),
        Kind::Date | Kind::TimeMillis => put_int(out, temporal_number(kind, v)? as i32),
        Kind::TimeMicros | Kind::TimestampMillis | Kind::TimestampMicros | Kind::IntervalMicros => {
            put_long(out, temporal_number(kind, v)?)
        }
        Kind::ZonedTimestamp { fraction } => match v {
            Value::TimestampTz(t) => {
                let mut buf = StackStr::new();
                put_str(out, zoned_timestamp_text(t, *fraction, &mut buf)?);
            }
            _ => return Err(MISMATCH),
        },
        Kind::ZonedTime | Kind::IntervalString => put_str(out, &value_text(kind, v)?),
        Kind::Bits => match v {
            Value::Bits { len, bytes } => put_bytes(out, &debezium_bits(*len, bytes)),
            _ => return Err(MISMATCH),
        },
        Kind::Point => match v {
            Value::Point { x, y } => super::geometry::put_point(out, *x, *y),
            _ => return Err(MISMATCH),
        },
        Kind::Geometry => match v {
            Value::Unknown(hex) => super::geometry::put_geometry(out, hex),
            _ => return Err(MISMATCH),
        },
        Kind::DoubleVector | Kind::FloatVector | Kind::SparseVector => {
            let Value::Unknown(text) = v else {
                return Err(MISMATCH);
            };
            let written = match kind {
                Kind::DoubleVector => super::vector::put_double_vector(out, text),
                Kind::FloatVector => super::vector::put_float_vector(out, text),
                _ => super::vector::put_sparse_vector(out, text),
            };
            if !written {
                return Err(Unconvertible("not pgvector's text form of the type"));
            }
        }
        Kind::HstoreJson => match v {
            Value::Hstore(pairs) => put_str(out, &hstore_json(pairs)),
            _ => return Err(MISMATCH),
        },
        Kind::HstoreMap => match v {
            Value::Hstore(pairs) => put_hstore_map(out, pairs),
            _ => return Err(MISMATCH),
        },
        Kind::Array {
            elem,
            elem_optional,
            ..
        } => {
            let Value::Array(a) = v else {
                return Err(MISMATCH);
            };
            if a.dims.len() > 1 {
                // pgjdbc hands nested arrays to the element converter, which gives up:
                // each outer element is null.
                if !*elem_optional {
                    return Err(Unconvertible("multi-dimensional array"));
                }
                let outer = a.dims[0];
                if outer > 0 {
                    put_long(out, outer as i64);
                    for _ in 0..outer {
                        put_long(out, 0);
                    }
                }
                put_long(out, 0);
                return Ok(());
            }
            if !a.elements.is_empty() {
                put_long(out, a.elements.len() as i64);
                for e in &a.elements {
                    if *elem_optional {
                        if e.is_null() {
                            put_long(out, 0);
                            continue;
                        }
                        put_long(out, 1);
                    } else if e.is_null() {
                        return Err(Unconvertible(
                            "NULL element in an array of non-optional elements",
                        ));
                    }
                    write_value(elem, e, opts, out)?;
                }
            }
            put_long(out, 0);
        }
    }
    Ok(())
}

/// Writes Debezium's placeholder for an unchanged TOASTed value of this kind.
pub fn write_toast_placeholder(kind: &Kind, opts: &CodecOptions, out: &mut Vec<u8>) -> Conv<()> {
    let bytes = &opts.unavailable_value_placeholder;
    let text = String::from_utf8_lossy(bytes);
    let cannot = Unconvertible("Debezium has no unavailable-value placeholder for this type");
    match kind {
        Kind::String => put_str(out, &text),
        Kind::Binary(BinaryHandling::Bytes) | Kind::UnknownText(BinaryHandling::Bytes) => {
            put_bytes(out, bytes)
        }
        Kind::Binary(_) | Kind::UnknownText(_) => put_str(out, &text),
        Kind::HstoreJson => put_str(
            out,
            &hstore_json(&[(text.to_string(), Some(text.to_string()))]),
        ),
        Kind::HstoreMap => put_hstore_map(out, &[(text.to_string(), Some(text.to_string()))]),
        Kind::Array {
            elem,
            elem_optional,
            toast,
        } => {
            let branch = |out: &mut Vec<u8>| {
                if *elem_optional {
                    put_long(out, 1);
                }
            };
            match (toast, elem.as_ref()) {
                (ArrayToast::Strings, Kind::String) => {
                    put_long(out, 1);
                    branch(out);
                    put_str(out, &text);
                }
                (ArrayToast::Bytes, Kind::Binary(BinaryHandling::Bytes)) => {
                    put_long(out, 1);
                    branch(out);
                    put_bytes(out, bytes);
                }
                (ArrayToast::Uuids, Kind::String) => {
                    put_long(out, 1);
                    branch(out);
                    put_str(out, &super::java::name_uuid_from_bytes(bytes));
                }
                (ArrayToast::Ints, Kind::Int32 | Kind::Date) | (ArrayToast::Longs, Kind::Int64) => {
                    if !bytes.is_empty() {
                        put_long(out, bytes.len() as i64);
                        for b in bytes.iter() {
                            branch(out);
                            put_long(out, i64::from(*b as i8));
                        }
                    }
                }
                _ => return Err(cannot),
            }
            put_long(out, 0);
        }
        _ => return Err(cannot),
    }
    Ok(())
}

/// What Debezium writes for a NOT NULL column that came without a value and has no
/// default (`convertValue`'s fallbacks: zero, false, empty, the epoch).
pub fn write_fallback(kind: &Kind, opts: &CodecOptions, out: &mut Vec<u8>) {
    match kind {
        Kind::Boolean | Kind::BitBoolean => put_bool(out, false),
        Kind::Int16 | Kind::Int32 | Kind::Date | Kind::TimeMillis => put_int(out, 0),
        Kind::Int64
        | Kind::TimeMicros
        | Kind::TimestampMillis
        | Kind::TimestampMicros
        | Kind::IntervalMicros => put_long(out, 0),
        Kind::Float32 => put_f32(out, 0.0),
        Kind::Float64 | Kind::NumericDouble | Kind::MoneyDouble => put_f64(out, 0.0),
        Kind::Decimal { .. } | Kind::MoneyDecimal { .. } => put_bytes(out, &[0]),
        Kind::VariableScaleDecimal => {
            put_int(out, 0);
            put_bytes(out, &[0]);
        }
        Kind::NumericString => put_str(out, "0"),
        Kind::MoneyString => {
            let mut s = String::from("0");
            if opts.money_fraction_digits > 0 {
                s.push('.');
                s.extend(std::iter::repeat_n(
                    '0',
                    opts.money_fraction_digits as usize,
                ));
            }
            put_str(out, &s);
        }
        Kind::String => put_str(out, ""),
        Kind::Binary(mode) | Kind::UnknownText(mode) => put_binary(out, *mode, &[]),
        Kind::ZonedTimestamp { .. } => put_str(out, "1970-01-01T00:00:00Z"),
        Kind::ZonedTime => put_str(out, "00:00:00Z"),
        Kind::IntervalString => put_str(out, "P0Y0M0DT0H0M0S"),
        Kind::Bits => put_bytes(out, &[]),
        Kind::Point => super::geometry::put_point(out, 0.0, 0.0),
        Kind::Geometry => super::geometry::put_empty_geometry(out),
        Kind::DoubleVector | Kind::FloatVector => put_long(out, 0),
        Kind::SparseVector => {
            put_int(out, 0);
            put_long(out, 0);
        }
        Kind::HstoreJson => put_str(out, "{}"),
        Kind::HstoreMap | Kind::Array { .. } => put_long(out, 0),
    }
}

/// Writes a sequence string (`["a","b"]`) without allocating.
pub fn put_sequence(out: &mut Vec<u8>, last_commit: Option<u64>, lsn: Option<u64>) {
    let mut s = StackStr::new();
    let _ = s.write_char('[');
    for (i, l) in [last_commit, lsn].into_iter().enumerate() {
        if i > 0 {
            let _ = s.write_char(',');
        }
        let _ = match l {
            Some(l) => s
                .write_char('"')
                .and_then(|()| super::temporal::write_padded(&mut s, l, 1))
                .and_then(|()| s.write_char('"')),
            None => s.write_str("null"),
        };
    }
    let _ = s.write_char(']');
    put_bytes(out, s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::value::Decimal;

    #[test]
    fn varints_are_zigzag() {
        let enc = |v: i64| {
            let mut o = Vec::new();
            put_long(&mut o, v);
            o
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(-1), [1]);
        assert_eq!(enc(1), [2]);
        assert_eq!(enc(-64), [0x7f]);
        assert_eq!(enc(64), [0x80, 0x01]);
        assert_eq!(
            enc(i64::MIN),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    fn bits(s: &str) -> Vec<u8> {
        let len = s.len();
        let mut bytes = vec![0u8; len.div_ceil(8)];
        for (i, c) in s.chars().enumerate() {
            if c == '1' {
                bytes[i / 8] |= 0x80 >> (i % 8);
            }
        }
        debezium_bits(len, &bytes)
    }

    #[test]
    fn bits_match_debeziums_tests() {
        // AbstractRecordsProducerTest.schemaAndValuesForBinTypes
        assert_eq!(bits("11"), [3]);
        assert_eq!(bits("1000000"), [64]);
        assert_eq!(bits("00"), [] as [u8; 0]);
        assert_eq!(bits("000000110000001000000001"), [1, 2, 3]);
        let mut long = "1".to_string();
        long.push_str(&"0".repeat(63));
        assert_eq!(bits(&long), [0, 0, 0, 0, 0, 0, 0, 0x80]);
        assert_eq!(bits("101"), [5]);
        assert_eq!(
            bits("111011010001000110000001000000001"),
            [1, 2, 35, 0xda, 1]
        );
    }

    #[test]
    fn decimals_rescale() {
        let d = |neg, digits: &str, scale| Decimal::new(neg, digits, scale).unwrap();
        let kind = Kind::Decimal { scale: 2 };
        let opts = CodecOptions::default();
        let v = Value::Numeric(Numeric::Finite(d(false, "11", 1)));
        assert_eq!(decimal_bytes(&kind, &v, &opts).unwrap(), vec![110]); // 1.10
        let money = Kind::MoneyDecimal { scale: 2 };
        let v = Value::Money(d(true, "123415", 3)); // -123.415 → -123.42
        assert_eq!(
            decimal_bytes(&money, &v, &opts).unwrap(),
            d(true, "12342", 2).unscaled_be_bytes()
        );
        let v = Value::Money(d(false, "9995", 3)); // 9.995 → 10.00
        assert_eq!(
            decimal_bytes(&money, &v, &opts).unwrap(),
            d(false, "1000", 2).unscaled_be_bytes()
        );
        assert_eq!(
            variable_scale(&d(false, "222200", 4)),
            (2, d(false, "2222", 2).unscaled_be_bytes())
        );
        assert_eq!(variable_scale(&d(false, "100", 0)), (0, vec![100]));
        assert_eq!(variable_scale(&d(false, "0", 3)), (0, vec![0]));
    }
}
