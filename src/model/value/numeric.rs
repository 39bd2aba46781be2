//! Exact decimals: numeric (any precision, NaN, ±Infinity) and money, kept digit for
//! digit, with the two's-complement bytes Avro's and Kafka Connect's Decimal want.

use std::fmt;

use super::Reason;

/// A numeric value: PostgreSQL's numeric also holds NaN and (from 14 on) ±Infinity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Numeric {
    NaN,
    PosInfinity,
    NegInfinity,
    Finite(Decimal),
}

/// An exact decimal of any precision: `(-1)^negative × digits × 10^-scale`.
///
/// The scale is the one PostgreSQL printed (`1.50` has scale 2, unscaled 150), so the
/// value goes out with the column's scale, as Debezium sends it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// False for zero.
    negative: bool,
    /// ASCII digits of the unscaled magnitude without leading zeros; "0" for zero.
    digits: String,
    scale: u32,
}

impl Decimal {
    /// A decimal from the ASCII digits of its unscaled magnitude (leading zeros are
    /// dropped; an empty string is zero); `None` if `digits` holds anything else.
    pub fn new(negative: bool, digits: &str, scale: u32) -> Option<Decimal> {
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = digits.trim_start_matches('0');
        let (negative, digits) = if digits.is_empty() {
            (false, "0")
        } else {
            (negative, digits)
        };
        Some(Decimal {
            negative,
            digits: digits.to_string(),
            scale,
        })
    }

    /// True below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The digits of the unscaled magnitude, without leading zeros ("0" for zero).
    pub fn unscaled_digits(&self) -> &str {
        &self.digits
    }

    /// Digits after the decimal point.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// The number of digits of the unscaled value (1 for zero).
    pub fn precision(&self) -> usize {
        self.digits.len()
    }

    /// The unscaled value as a big-endian two's-complement integer in the fewest bytes
    /// (Java's `BigInteger.toByteArray()`): what Avro's `decimal` logical type and
    /// Kafka Connect's `Decimal` carry. Zero is `[0]`.
    pub fn unscaled_be_bytes(&self) -> Vec<u8> {
        let magnitude = magnitude_be(&self.digits);
        if !self.negative {
            let mut out = Vec::with_capacity(magnitude.len() + 1);
            if magnitude.first().is_none_or(|b| b & 0x80 != 0) {
                out.push(0);
            }
            out.extend_from_slice(&magnitude);
            return out;
        }
        // 2^(8n) - magnitude: invert every bit, then add one.
        let mut out: Vec<u8> = magnitude.iter().map(|b| !b).collect();
        for byte in out.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        if out.first().is_none_or(|b| b & 0x80 == 0) {
            out.insert(0, 0xff);
        }
        out
    }

    /// The nearest f64 (for `decimal.handling.mode = double`).
    pub fn to_f64(&self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }
}

/// The big-endian magnitude of a string of ASCII digits, without leading zero bytes
/// (empty for zero).
fn magnitude_be(digits: &str) -> Vec<u8> {
    // Little-endian base-2^32 limbs; 9 decimal digits at a time.
    let mut limbs: Vec<u32> = Vec::with_capacity(digits.len() / 9 + 1);
    for chunk in digits.as_bytes().chunks(9) {
        let mut mul: u64 = 1;
        let mut carry: u64 = 0;
        for &d in chunk {
            mul *= 10;
            carry = carry * 10 + u64::from(d.wrapping_sub(b'0') % 10);
        }
        for limb in limbs.iter_mut() {
            let t = u64::from(*limb) * mul + carry;
            *limb = t as u32;
            carry = t >> 32;
        }
        if carry != 0 {
            limbs.push(carry as u32);
        }
    }
    let mut out: Vec<u8> = limbs.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
    let zeros = out.iter().take_while(|b| **b == 0).count();
    out.drain(..zeros);
    out
}

impl fmt::Display for Decimal {
    /// PostgreSQL's form: `-123.4500`, `0.00012`, `0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        let scale = self.scale as usize;
        if scale == 0 {
            return f.write_str(&self.digits);
        }
        if self.digits.len() > scale {
            let (int, frac) = self.digits.split_at(self.digits.len() - scale);
            write!(f, "{int}.{frac}")
        } else {
            f.write_str("0.")?;
            for _ in 0..scale - self.digits.len() {
                f.write_str("0")?;
            }
            f.write_str(&self.digits)
        }
    }
}

impl fmt::Display for Numeric {
    /// PostgreSQL's form: `NaN`, `Infinity`, `-Infinity`, or the decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Numeric::NaN => f.write_str("NaN"),
            Numeric::PosInfinity => f.write_str("Infinity"),
            Numeric::NegInfinity => f.write_str("-Infinity"),
            Numeric::Finite(d) => d.fmt(f),
        }
    }
}

/// PostgreSQL's numeric input accepts exponents up to this size (NUMERIC_MAX_PRECISION);
/// its output never prints one, but `1e5` is read the way PostgreSQL would read it.
const MAX_EXPONENT: i64 = 1000;

/// numeric's text: `-123.45`, `NaN`, `Infinity`, `-Infinity` (also `1.5e3`).
pub(super) fn parse_numeric(text: &str) -> Result<Numeric, Reason> {
    let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let lower = t.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "nan" => Numeric::NaN,
        "infinity" | "+infinity" | "inf" | "+inf" => Numeric::PosInfinity,
        "-infinity" | "-inf" => Numeric::NegInfinity,
        _ => Numeric::Finite(parse_decimal(t)?),
    })
}

/// A plain decimal: optional sign, digits with an optional `.`, optional exponent.
fn parse_decimal(t: &str) -> Result<Decimal, Reason> {
    let b = t.as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_part = &t[int_start..i];
    let mut frac_part = "";
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_part = &t[frac_start..i];
    }
    if int_part.is_empty() && frac_part.is_empty() {
        return Err("expected digits".into());
    }
    let mut exponent: i64 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let exp_negative = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            exponent = exponent
                .saturating_mul(10)
                .saturating_add(i64::from(b[i] - b'0'));
            i += 1;
        }
        if i == exp_start {
            return Err("expected digits after the exponent mark".into());
        }
        if exponent > MAX_EXPONENT {
            return Err(format!("exponent beyond ±{MAX_EXPONENT}"));
        }
        if exp_negative {
            exponent = -exponent;
        }
    }
    if i != b.len() {
        return Err("unexpected characters after the number".into());
    }
    let mut digits = String::with_capacity(int_part.len() + frac_part.len());
    digits.push_str(int_part);
    digits.push_str(frac_part);
    let frac_len = i64::try_from(frac_part.len()).map_err(|_| "number too long")?;
    let mut scale = frac_len - exponent;
    if scale < 0 {
        for _ in 0..-scale {
            digits.push('0');
        }
        scale = 0;
    }
    let scale = u32::try_from(scale).map_err(|_| "scale too large")?;
    Decimal::new(negative, &digits, scale).ok_or_else(|| "expected digits".into())
}

/// money's text in a C / en_US-like `lc_monetary`: `$1,234.56`, `-$5.00`, `($5.00)`,
/// `1234.56 €`. The result has scale 2, or more if more fractional digits were printed.
pub(super) fn parse_money(text: &str) -> Result<Decimal, Reason> {
    let t = text.trim_matches(|c: char| c.is_whitespace());
    let mut negative = false;
    let mut open_paren = false;
    let mut close_paren = false;
    let mut int_digits = String::new();
    let mut frac_digits = String::new();
    let mut seen_point = false;
    let mut seen_digit = false;
    let mut after_number = false;
    for c in t.chars() {
        match c {
            '0'..='9' => {
                if after_number {
                    return Err("digits after the end of the amount".into());
                }
                seen_digit = true;
                if seen_point {
                    frac_digits.push(c);
                } else {
                    int_digits.push(c);
                }
            }
            '.' if seen_digit && !seen_point && !after_number => seen_point = true,
            ',' if seen_digit && !seen_point && !after_number => {}
            '-' if !negative && !open_paren => negative = true,
            '+' if !negative && !seen_digit => {}
            '(' if !open_paren && !negative && !seen_digit => open_paren = true,
            ')' if open_paren && !close_paren && seen_digit => {
                close_paren = true;
                after_number = true;
            }
            _ => {
                // A currency symbol or a space, before or after the digits only.
                if seen_digit {
                    after_number = true;
                }
                if close_paren || c.is_ascii_digit() || ".,-+()".contains(c) {
                    return Err(format!("unexpected {c:?}"));
                }
            }
        }
    }
    if !seen_digit {
        return Err("expected digits".into());
    }
    if open_paren != close_paren {
        return Err("unbalanced parentheses".into());
    }
    while frac_digits.len() < 2 {
        frac_digits.push('0');
    }
    let scale = u32::try_from(frac_digits.len()).map_err(|_| "too many digits")?;
    int_digits.push_str(&frac_digits);
    Decimal::new(negative || open_paren, &int_digits, scale).ok_or_else(|| "expected digits".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        match parse_numeric(text) {
            Ok(Numeric::Finite(d)) => d,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn parts(d: &Decimal) -> (bool, &str, u32) {
        (d.is_negative(), d.unscaled_digits(), d.scale())
    }

    #[test]
    fn specials() {
        assert_eq!(parse_numeric("NaN"), Ok(Numeric::NaN));
        assert_eq!(parse_numeric("Infinity"), Ok(Numeric::PosInfinity));
        assert_eq!(parse_numeric("-Infinity"), Ok(Numeric::NegInfinity));
        assert_eq!(parse_numeric("nan"), Ok(Numeric::NaN));
        assert_eq!(parse_numeric("inf"), Ok(Numeric::PosInfinity));
    }

    #[test]
    fn finite_forms_postgres_prints() {
        assert_eq!(parts(&dec("123.456")), (false, "123456", 3));
        assert_eq!(parts(&dec("-0.00012")), (true, "12", 5));
        assert_eq!(parts(&dec("1.50")), (false, "150", 2));
        assert_eq!(parts(&dec("0")), (false, "0", 0));
        assert_eq!(parts(&dec("0.000")), (false, "0", 3));
        assert_eq!(parts(&dec("-0.00")), (false, "0", 2));
        assert_eq!(parts(&dec("100000")), (false, "100000", 0));
        assert_eq!(parts(&dec("0.00000000000000000001")), (false, "1", 20));
        let long = "12345678901234567890123456789012345678901234567890.123";
        assert_eq!(
            parts(&dec(long)),
            (
                false,
                "12345678901234567890123456789012345678901234567890123",
                3
            )
        );
        assert_eq!(dec(long).to_string(), long);
        assert_eq!(dec(long).precision(), 53);
        for text in ["-0.00012", "1.50", "0", "0.000", "-123.4500", "7"] {
            assert_eq!(dec(text).to_string(), text);
        }
    }

    #[test]
    fn exponent_forms() {
        assert_eq!(parts(&dec("1e5")), (false, "100000", 0));
        assert_eq!(parts(&dec("1.5E-3")), (false, "15", 4));
        assert_eq!(parts(&dec("-2.50e1")), (true, "250", 1));
        assert!(parse_numeric("1e1001").is_err());
        assert!(parse_numeric("1e99999999999999999999999").is_err());
        assert_eq!(parts(&dec("1e-1000")), (false, "1", 1000));
    }

    #[test]
    fn bad_numerics() {
        for text in [
            "", "-", ".", "1.2.3", "abc", "1e", "1e+", "--1", "1 2", "0x10", "١٢",
        ] {
            assert!(parse_numeric(text).is_err(), "{text:?}");
        }
    }

    /// The fewest two's-complement bytes of an i128, the way Java's BigInteger prints.
    fn minimal_i128(v: i128) -> Vec<u8> {
        let bytes = v.to_be_bytes();
        let mut start = 0;
        while start < 15 {
            let (b, next) = (bytes[start], bytes[start + 1]);
            if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
                start += 1;
            } else {
                break;
            }
        }
        bytes[start..].to_vec()
    }

    #[test]
    fn unscaled_bytes_match_twos_complement() {
        let mut values: Vec<i128> = vec![
            0,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            255,
            256,
            -256,
            -257,
            32767,
            32768,
            -32768,
            -32769,
            i64::MAX as i128,
            i64::MIN as i128,
            i128::MAX,
            i128::MIN + 1,
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = ((x as i128) << 64 | (x.rotate_left(29) as i128)) >> (x % 120);
            values.push(v);
        }
        for v in values {
            let d = Decimal::new(v < 0, &v.unsigned_abs().to_string(), 3).unwrap();
            assert_eq!(d.unscaled_be_bytes(), minimal_i128(v), "{v}");
        }
    }

    #[test]
    fn unscaled_bytes_of_long_numbers() {
        // Expected bytes from Python: n.to_bytes((n + (n < 0)).bit_length() // 8 + 1,
        // "big", signed=True), which equals Java's BigInteger.toByteArray().
        let d = dec("12345678901234567890123456789012345678901234567890.123");
        assert_eq!(
            d.unscaled_be_bytes(),
            hex("20ff419c54c3d9acd6211637005bcd07b515a64244cb")
        );
        let d = dec("-12345678901234567890123456789012345678901234567890.123");
        assert_eq!(
            d.unscaled_be_bytes(),
            hex("df00be63ab3c265329dee9c8ffa432f84aea59bdbb35")
        );
        // 2^128 and -2^128: one past i128.
        let d = dec("340282366920938463463374607431768211456");
        assert_eq!(
            d.unscaled_be_bytes(),
            hex("0100000000000000000000000000000000")
        );
        let d = dec("-340282366920938463463374607431768211456");
        assert_eq!(
            d.unscaled_be_bytes(),
            hex("ff00000000000000000000000000000000")
        );
        assert_eq!(dec("0.000").unscaled_be_bytes(), vec![0]);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn to_f64() {
        assert_eq!(dec("-0.00012").to_f64(), -0.00012);
        assert_eq!(dec("1e300").to_f64(), 1e300);
    }

    #[test]
    fn money_c_locale() {
        let m = |t: &str| {
            parse_money(t).map(|d| (d.is_negative(), d.unscaled_digits().to_string(), d.scale()))
        };
        assert_eq!(m("$1,234.56"), Ok((false, "123456".into(), 2)));
        assert_eq!(m("-$5.00"), Ok((true, "500".into(), 2)));
        assert_eq!(m("($5.00)"), Ok((true, "500".into(), 2)));
        assert_eq!(m("$0.00"), Ok((false, "0".into(), 2)));
        assert_eq!(
            m("-$92,233,720,368,547,758.08"),
            Ok((true, "9223372036854775808".into(), 2))
        );
        assert_eq!(
            m("$92,233,720,368,547,758.07"),
            Ok((false, "9223372036854775807".into(), 2))
        );
        assert_eq!(m("1234.5 €"), Ok((false, "123450".into(), 2)));
        assert_eq!(m("EUR 7"), Ok((false, "700".into(), 2)));
        assert_eq!(m("$1.234"), Ok((false, "1234".into(), 3)));
        assert_eq!(parse_money("-$5.00").unwrap().to_string(), "-5.00");
        for bad in [
            "", "$", "abc", "1a2", "($5.00", "$5.00)", "1..2", "--5", "$5)(", "(-5)", ",5",
        ] {
            assert!(parse_money(bad).is_err(), "{bad:?}");
        }
    }
}
