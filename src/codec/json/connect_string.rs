//! The text Kafka Connect's `SimpleHeaderConverter` writes for a datum (Debezium's
//! key-change headers), with Java's number and date formatting.

use std::fmt::Write as _;

use base64::Engine as _;

use super::{DatumError, Reader, Result};
use crate::codec::connect::{
    ConnectSchema, ConnectType, DATE_NAME, DECIMAL_NAME, TIMESTAMP_NAME, TIME_NAME,
};

/// The text Kafka Connect's default header converter (`SimpleHeaderConverter`, which
/// calls `Values.convertToString`) writes for an Avro datum of `schema`: a struct as
/// `{"name":value,...}` with strings quoted (only `\` and `"` escaped), numbers as
/// Java prints them (a Decimal as `BigDecimal.toString()`), bytes in base64, null as
/// `null`, Connect's Date/Time/Timestamp in its ISO formats (UTC).
pub fn datum_to_connect_string(schema: &ConnectSchema, datum: &[u8]) -> Result<String> {
    let mut r = Reader { buf: datum };
    let mut out = String::with_capacity(64);
    connect_value(&mut r, schema, false, &mut out)?;
    if !r.buf.is_empty() {
        return Err(DatumError("bytes left after the datum"));
    }
    Ok(out)
}

fn connect_quoted(out: &mut String, text: &str, embedded: bool) {
    if !embedded {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn connect_value(
    r: &mut Reader<'_>,
    s: &ConnectSchema,
    embedded: bool,
    out: &mut String,
) -> Result<()> {
    if r.is_null(s)? {
        out.push_str("null");
        return Ok(());
    }
    let name = s.name.as_deref().unwrap_or("");
    match &s.ty {
        ConnectType::Boolean => out.push_str(if r.boolean()? { "true" } else { "false" }),
        ConnectType::Int32 if name == DATE_NAME => {
            java_date(out, i64::from(r.long()? as i32) * MILLIS_PER_DAY)
        }
        ConnectType::Int32 if name == TIME_NAME => java_date(out, r.long()?),
        ConnectType::Int64 if name == TIMESTAMP_NAME => java_date(out, r.long()?),
        ConnectType::Int8 | ConnectType::Int16 | ConnectType::Int32 | ConnectType::Int64 => {
            let _ = write!(out, "{}", r.long()?);
        }
        ConnectType::Float32 => out.push_str(&crate::codec::java::float_to_string(r.f32()?)),
        ConnectType::Float64 => out.push_str(&crate::codec::java::double_to_string(r.f64()?)),
        ConnectType::String => {
            connect_quoted(out, &String::from_utf8_lossy(r.bytes()?), embedded);
        }
        ConnectType::Bytes if name == DECIMAL_NAME => {
            let scale = s
                .parameters
                .iter()
                .find(|(k, _)| k == "scale")
                .and_then(|(_, v)| v.parse::<i32>().ok())
                .unwrap_or(0);
            out.push_str(&big_decimal_string(r.bytes()?, scale));
        }
        ConnectType::Bytes => connect_quoted(
            out,
            &base64::engine::general_purpose::STANDARD.encode(r.bytes()?),
            embedded,
        ),
        ConnectType::Array(items) => {
            out.push('[');
            super::each_item(r, out, |r, out| connect_value(r, items, true, out))?;
            out.push(']');
        }
        ConnectType::Map(key, value) => {
            out.push('{');
            super::each_item(r, out, |r, out| {
                connect_value(r, key, true, out)?;
                out.push(':');
                connect_value(r, value, true, out)
            })?;
            out.push('}');
        }
        ConnectType::Struct(fields) => {
            out.push('{');
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                connect_quoted(out, &f.name, true);
                out.push(':');
                connect_value(r, &f.schema, true, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

pub(super) const MILLIS_PER_DAY: i64 = 86_400_000;

/// `Values.dateFormatFor(date).format(date)` in UTC: a time of day (`HH:mm:ss.SSS'Z'`)
/// below one day after the epoch, a date (`yyyy-MM-dd`) on a day boundary, else a
/// timestamp (`yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`).
pub(super) fn java_date(out: &mut String, millis: i64) {
    let day = millis.div_euclid(MILLIS_PER_DAY);
    let ms = millis.rem_euclid(MILLIS_PER_DAY);
    let time = |out: &mut String| {
        let _ = write!(
            out,
            "{:02}:{:02}:{:02}.{:03}Z",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        );
    };
    if millis < MILLIS_PER_DAY {
        time(out);
        return;
    }
    let (y, m, d) = civil_from_days(day);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}");
    if ms != 0 {
        out.push('T');
        time(out);
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Java's `BigDecimal.toString()` of the unscaled two's-complement big-endian `bytes`
/// at `scale`: plain digits, or scientific notation (`1E-7`, `1.23E+5`) when the scale
/// is negative or the adjusted exponent is below -6.
pub fn big_decimal_string(bytes: &[u8], scale: i32) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    // The magnitude: two's complement negated for a negative number.
    let mut mag: Vec<u8> = bytes.to_vec();
    if negative {
        for b in mag.iter_mut() {
            *b = !*b;
        }
        for b in mag.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
    }
    let digits = magnitude_digits(&mag);
    let mut out = String::with_capacity(digits.len() + 8);
    if negative && digits != "0" {
        out.push('-');
    }
    let len = digits.len() as i64;
    let adjusted = len - 1 - i64::from(scale);
    if scale == 0 {
        out.push_str(&digits);
    } else if scale > 0 && adjusted >= -6 {
        let scale = scale as usize;
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', scale - digits.len()));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        if adjusted != 0 {
            out.push('E');
            if adjusted > 0 {
                out.push('+');
            }
            let _ = write!(out, "{adjusted}");
        }
    }
    out
}

/// Decimal digits of an unsigned big-endian magnitude.
fn magnitude_digits(mag: &[u8]) -> String {
    let mut num: Vec<u8> = mag.iter().copied().skip_while(|b| *b == 0).collect();
    if num.is_empty() {
        return "0".into();
    }
    // Repeated division by 10^9, collecting 9-digit groups from the least significant.
    let mut groups: Vec<u32> = Vec::new();
    while !num.is_empty() {
        let mut rem: u64 = 0;
        let mut quotient = Vec::with_capacity(num.len());
        for &b in &num {
            let cur = (rem << 8) | u64::from(b);
            let q = cur / 1_000_000_000;
            rem = cur % 1_000_000_000;
            if !(quotient.is_empty() && q == 0) {
                quotient.push(q as u8);
            }
        }
        groups.push(rem as u32);
        num = quotient;
    }
    let mut s = String::with_capacity(groups.len() * 9);
    let _ = write!(s, "{}", groups[groups.len() - 1]);
    for g in groups.iter().rev().skip(1) {
        let _ = write!(s, "{g:09}");
    }
    s
}
