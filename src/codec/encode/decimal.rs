//! Decimals as Debezium's `decimal.handling.mode` writes them: Connect `Decimal` bytes at
//! the column's scale (rescaled, rounding as Java's `BigDecimal.setScale` does), the
//! variable-scale struct for numerics without a declared scale, a double or a string.

use super::{Conv, Unconvertible, MISMATCH};
use crate::codec::mapping::Kind;
use crate::codec::options::CodecOptions;
use crate::model::value::{Decimal, Numeric, Value};

/// numeric/money as `toPlainString`, or Debezium's names for the special values.
pub(super) fn decimal_string(v: &Value) -> Conv<String> {
    Ok(match v {
        Value::Numeric(Numeric::Finite(d)) | Value::Money(d) => d.to_string(),
        Value::Numeric(Numeric::NaN) => "NAN".into(),
        Value::Numeric(Numeric::PosInfinity) => "POSITIVE_INFINITY".into(),
        Value::Numeric(Numeric::NegInfinity) => "NEGATIVE_INFINITY".into(),
        _ => return Err(MISMATCH),
    })
}

/// numeric/money as a double (`BigDecimal.doubleValue`, NaN and infinities kept).
pub fn decimal_double(v: &Value) -> Conv<f64> {
    Ok(match v {
        Value::Numeric(Numeric::Finite(d)) | Value::Money(d) => d.to_f64(),
        Value::Numeric(Numeric::NaN) => f64::NAN,
        Value::Numeric(Numeric::PosInfinity) => f64::INFINITY,
        Value::Numeric(Numeric::NegInfinity) => f64::NEG_INFINITY,
        _ => return Err(MISMATCH),
    })
}

/// `d` at `scale` digits: exact when growing; when shrinking, rounded half up if
/// `round` (money) or else only if the dropped digits are zeros.
fn rescale(d: &Decimal, scale: u32, round: bool) -> Conv<Option<Decimal>> {
    use std::cmp::Ordering;
    match d.scale().cmp(&scale) {
        Ordering::Equal => Ok(None),
        Ordering::Less => {
            let mut digits = d.unscaled_digits().to_string();
            digits.extend(std::iter::repeat_n('0', (scale - d.scale()) as usize));
            Ok(Decimal::new(d.is_negative(), &digits, scale))
        }
        Ordering::Greater => {
            let drop = (d.scale() - scale) as usize;
            let digits = d.unscaled_digits();
            let (keep, dropped) = if drop >= digits.len() {
                ("0", digits)
            } else {
                digits.split_at(digits.len() - drop)
            };
            let dropped_is_zero = dropped.bytes().all(|b| b == b'0');
            // The first dropped digit (a dropped part shorter than `drop` is preceded
            // by zeros).
            let first_dropped = if dropped.len() == drop {
                dropped.as_bytes().first().copied().unwrap_or(b'0')
            } else {
                b'0'
            };
            if !round && !dropped_is_zero {
                return Err(Unconvertible("more fraction digits than the column scale"));
            }
            let mut keep = keep.as_bytes().to_vec();
            if round && first_dropped >= b'5' {
                // Add one to the kept magnitude.
                let mut i = keep.len();
                loop {
                    if i == 0 {
                        keep.insert(0, b'1');
                        break;
                    }
                    i -= 1;
                    if keep[i] == b'9' {
                        keep[i] = b'0';
                    } else {
                        keep[i] += 1;
                        break;
                    }
                }
            }
            let keep = String::from_utf8(keep).map_err(|_| MISMATCH)?;
            Ok(Decimal::new(d.is_negative(), &keep, scale))
        }
    }
}

/// The unscaled two's-complement bytes of a Decimal-kind value (numeric at its column
/// scale, money rounded half up to `money.fraction.digits`).
pub fn decimal_bytes(kind: &Kind, v: &Value, _opts: &CodecOptions) -> Conv<Vec<u8>> {
    let (d, scale, round) =
        match (kind, v) {
            (Kind::Decimal { scale }, Value::Numeric(Numeric::Finite(d))) => (d, *scale, false),
            (Kind::Decimal { .. }, Value::Numeric(_)) => return Err(Unconvertible(
                "NaN and infinity are not decimals; set decimal.handling.mode to string or double",
            )),
            (Kind::MoneyDecimal { scale }, Value::Money(d)) => (d, *scale, true),
            _ => return Err(MISMATCH),
        };
    Ok(match rescale(d, scale, round)? {
        Some(r) => r.unscaled_be_bytes(),
        None => d.unscaled_be_bytes(),
    })
}

/// `VariableScaleDecimal`: trailing fraction zeros stripped (never a negative scale).
pub(super) fn variable_scale(d: &Decimal) -> (u32, Vec<u8>) {
    let digits = d.unscaled_digits();
    let zeros = digits.bytes().rev().take_while(|b| *b == b'0').count();
    let strip = (zeros as u32).min(d.scale());
    if digits == "0" {
        return (0, vec![0]);
    }
    if strip == 0 {
        return (d.scale(), d.unscaled_be_bytes());
    }
    let kept = &digits[..digits.len() - strip as usize];
    match Decimal::new(d.is_negative(), kept, d.scale() - strip) {
        Some(r) => (r.scale(), r.unscaled_be_bytes()),
        None => (d.scale(), d.unscaled_be_bytes()),
    }
}
