//! Parses PostgreSQL's text output form of a datum (what pgoutput sends in a TupleData
//! 't' column) into a typed [`Value`]; pure, no I/O.
//!
//! The text forms are the ones PostgreSQL prints with its default output settings,
//! which the replication connection must keep: `DateStyle = ISO`, `IntervalStyle =
//! postgres`, `bytea_output = hex` (the legacy escape format is accepted too), and
//! for money an `lc_monetary` like C or en_US (`$1,234.56`, `-$5.00`; see
//! [`parse_text`]). Any input, however malformed, gives a value or a [`ValueError`],
//! never a panic. A type walcast has no parser for keeps its text ([`Value::Unknown`],
//! [`Value::Composite`], [`Value::Geometric`], ...).
//!
//! Timestamps are microseconds since 1970 in an i64: PostgreSQL's range (4713 BC to
//! 294276 AD) fits except its last 30 years (after 294247-01-10 04:00:54.775807 UTC),
//! which are an error here.

mod array;
mod datetime;
mod numeric;
mod scalar;
#[cfg(test)]
mod tests;

use super::types::PgType;

pub use array::Array;
pub use datetime::{civil_from_days, days_from_civil, DateValue, TimestampValue};
pub use numeric::{Decimal, Numeric};

/// One column's value, typed by its [`PgType`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An unchanged TOASTed value that PostgreSQL did not send (TupleData 'u'): not
    /// NULL, just unknown to this event.
    UnchangedToast,
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Oid(u32),
    /// float4, NaN and ±Infinity kept.
    Float4(f32),
    /// float8, NaN and ±Infinity kept.
    Float8(f64),
    Numeric(Numeric),
    /// money, as a decimal with (at least) 2 fractional digits.
    Money(Decimal),
    /// text, varchar, name, citext, char(n) (with its padding), `"char"`.
    Text(String),
    /// An enum's label.
    Enum(String),
    /// json or jsonb, as PostgreSQL printed it.
    Json(String),
    Xml(String),
    /// Lower-case `8-4-4-4-12` form.
    Uuid(String),
    Bytea(Vec<u8>),
    Date(DateValue),
    /// Microseconds since midnight, `0..=86_400_000_000` (`24:00:00` is allowed).
    Time(i64),
    /// Local time of day in microseconds (as [`Value::Time`]) and the UTC offset in
    /// seconds, east of Greenwich positive (`+05:30` is 19800).
    TimeTz {
        micros: i64,
        offset_seconds: i32,
    },
    /// A timestamp without time zone: microseconds since 1970-01-01 00:00:00 of the
    /// same (unspecified) clock.
    Timestamp(TimestampValue),
    /// A timestamp with time zone: microseconds since 1970-01-01 00:00:00 UTC.
    TimestampTz(TimestampValue),
    /// PostgreSQL keeps the three parts separately (a month is not a fixed number of
    /// days, nor a day of microseconds, across DST changes).
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    /// inet, as PostgreSQL prints it (`192.168.0.1/24`, `::1`), lower case.
    Inet(String),
    /// cidr, as PostgreSQL prints it (`10.1.0.0/16`), lower case.
    Cidr(String),
    /// macaddr as `08:00:2b:01:02:03`.
    MacAddr(String),
    /// macaddr8 as `08:00:2b:01:02:03:04:05`.
    MacAddr8(String),
    /// bit(n) or varbit: `len` bits, most significant bit first, the last byte padded
    /// with zero bits at the end.
    Bits {
        len: usize,
        bytes: Vec<u8>,
    },
    PgLsn(u64),
    Point {
        x: f64,
        y: f64,
    },
    /// line, lseg, box, path, polygon or circle, as PostgreSQL printed it.
    Geometric(String),
    /// A range (`[1,5)`, `empty`), as PostgreSQL printed it.
    Range(String),
    /// A multirange (`{[1,3),[5,7)}`), as PostgreSQL printed it.
    Multirange(String),
    /// tsvector or tsquery, as PostgreSQL printed it.
    TextSearch(String),
    /// hstore pairs in the order PostgreSQL printed them; `None` is a NULL value.
    Hstore(Vec<(String, Option<String>)>),
    Array(Array),
    /// A composite (row) value, as PostgreSQL printed it.
    Composite(String),
    /// A type walcast has no parser for, as PostgreSQL printed it.
    Unknown(String),
}

/// A column's text that does not parse as its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {ty} value {text:?}: {reason}")]
pub struct ValueError {
    /// The type, as [`PgType`]'s `Display` names it (`int4`, `numeric[]`).
    pub ty: String,
    /// The text (its first 64 characters when longer, with the length).
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ValueError {
    fn new(ty: &PgType, text: &str, reason: String) -> Self {
        Self {
            ty: ty.to_string(),
            text: truncate(text, 64),
            reason,
        }
    }
}

/// The first `max` characters of `text`, with a marker and the full length when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
    }
}

/// Why an inner parser failed; wrapped into a [`ValueError`] by [`parse_text`].
type Reason = String;

/// Parses the text form of a value of type `ty`, as PostgreSQL's output function
/// printed it (see the module notes for the settings assumed).
///
/// Money: PostgreSQL prints money in `lc_monetary`'s format; walcast reads the formats
/// of C, POSIX and en_US-like locales: `.` as the decimal point, `,` between digit
/// groups, a currency symbol before or after the digits (ignored), a leading `-` or
/// parentheses for negatives. The value has 2 fractional digits (more if printed).
pub fn parse_text(ty: &PgType, text: &str) -> Result<Value, ValueError> {
    parse_inner(ty, text).map_err(|reason| ValueError::new(ty, text, reason))
}

fn parse_inner(ty: &PgType, text: &str) -> Result<Value, Reason> {
    let owned = || text.to_string();
    Ok(match ty {
        PgType::Bool => Value::Bool(scalar::parse_bool(text)?),
        PgType::Int2 => Value::Int2(scalar::parse_int(text)?),
        PgType::Int4 => Value::Int4(scalar::parse_int(text)?),
        PgType::Int8 => Value::Int8(scalar::parse_int(text)?),
        PgType::Oid => Value::Oid(scalar::parse_int(text)?),
        PgType::Float4 => Value::Float4(scalar::parse_float4(text)?),
        PgType::Float8 => Value::Float8(scalar::parse_float8(text)?),
        PgType::Numeric => Value::Numeric(numeric::parse_numeric(text)?),
        PgType::Money => Value::Money(numeric::parse_money(text)?),
        PgType::Text | PgType::Bpchar | PgType::Char => Value::Text(owned()),
        PgType::Enum => Value::Enum(owned()),
        PgType::Json | PgType::Jsonb => Value::Json(owned()),
        PgType::Xml => Value::Xml(owned()),
        PgType::Uuid => Value::Uuid(scalar::parse_uuid(text)?),
        PgType::Bytea => Value::Bytea(scalar::parse_bytea(text)?),
        PgType::Date => Value::Date(datetime::parse_date(text)?),
        PgType::Time => Value::Time(datetime::parse_time(text)?),
        PgType::TimeTz => {
            let (micros, offset_seconds) = datetime::parse_timetz(text)?;
            Value::TimeTz {
                micros,
                offset_seconds,
            }
        }
        PgType::Timestamp => Value::Timestamp(datetime::parse_timestamp(text, false)?),
        PgType::TimestampTz => Value::TimestampTz(datetime::parse_timestamp(text, true)?),
        PgType::Interval => {
            let (months, days, micros) = datetime::parse_interval(text)?;
            Value::Interval {
                months,
                days,
                micros,
            }
        }
        PgType::Inet => Value::Inet(scalar::parse_inet(text, false)?),
        PgType::Cidr => Value::Cidr(scalar::parse_inet(text, true)?),
        PgType::MacAddr => Value::MacAddr(scalar::parse_macaddr(text, 6)?),
        PgType::MacAddr8 => Value::MacAddr8(scalar::parse_macaddr(text, 8)?),
        PgType::Bit | PgType::VarBit => {
            let (len, bytes) = scalar::parse_bits(text)?;
            Value::Bits { len, bytes }
        }
        PgType::PgLsn => Value::PgLsn(scalar::parse_lsn(text)?),
        PgType::Point => {
            let (x, y) = scalar::parse_point(text)?;
            Value::Point { x, y }
        }
        PgType::Line
        | PgType::Lseg
        | PgType::Box
        | PgType::Path
        | PgType::Polygon
        | PgType::Circle => Value::Geometric(owned()),
        PgType::TsVector | PgType::TsQuery => Value::TextSearch(owned()),
        PgType::Hstore => Value::Hstore(scalar::parse_hstore(text)?),
        PgType::Range(_) => Value::Range(owned()),
        PgType::Multirange(_) => Value::Multirange(owned()),
        PgType::Array(elem) => Value::Array(array::parse_array(elem, text)?),
        PgType::Composite => Value::Composite(owned()),
        PgType::Unknown => Value::Unknown(owned()),
    })
}

impl Value {
    /// True for SQL NULL (not for [`Value::UnchangedToast`]).
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}
