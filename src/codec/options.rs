//! The connector options that change how column values are represented, named and
//! defaulted as Debezium's PostgreSQL connector names them; pure data.

use std::fmt;
use std::str::FromStr;

/// Debezium's default `unavailable.value.placeholder`.
pub const DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER: &str = "__debezium_unavailable_value";

/// `decimal.handling.mode`: numeric, decimal and money columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecimalHandling {
    /// Connect `Decimal` bytes (`VariableScaleDecimal` for numeric without scale).
    #[default]
    Precise,
    Double,
    String,
}

/// `time.precision.mode`: date, time and timestamp columns (timestamptz and timetz are
/// ISO strings in every mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimePrecision {
    /// `io.debezium.time.*`: milliseconds for precision 0–3, microseconds above.
    #[default]
    Adaptive,
    /// As adaptive, but time columns are always `MicroTime`.
    AdaptiveTimeMicroseconds,
    /// Kafka Connect's `Date`, `Time`, `Timestamp` (milliseconds).
    Connect,
}

/// `binary.handling.mode`: bytea columns (and unknown types when included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BinaryHandling {
    #[default]
    Bytes,
    Base64,
    Base64UrlSafe,
    Hex,
}

/// `hstore.handling.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HstoreHandling {
    /// A JSON object string (`io.debezium.data.Json`).
    #[default]
    Json,
    /// An Avro map of optional strings.
    Map,
}

/// `interval.handling.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntervalHandling {
    /// `io.debezium.time.MicroDuration`: microseconds, a month counted as 30.4375 days.
    #[default]
    Numeric,
    /// `io.debezium.time.Interval`: `P1Y2M3DT4H5M6.78S`.
    String,
}

/// `[events] format`: how keys and values are serialized (Kafka Connect's converter a
/// Debezium deployment would use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventFormat {
    /// Confluent's AvroConverter: Avro with the registry's wire header.
    #[default]
    Avro,
    /// Kafka Connect's JsonConverter with `schemas.enable=false`: the payload alone.
    Json,
    /// JsonConverter with `schemas.enable=true`: `{"schema": ..., "payload": ...}`.
    JsonWithSchema,
}

impl EventFormat {
    /// Whether records are registered with (and framed for) a schema registry.
    pub fn uses_registry(self) -> bool {
        self == EventFormat::Avro
    }
}

/// Everything that changes the schema or the encoding of column values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecOptions {
    pub decimal_handling: DecimalHandling,
    pub time_precision: TimePrecision,
    pub binary_handling: BinaryHandling,
    pub hstore_handling: HstoreHandling,
    pub interval_handling: IntervalHandling,
    /// `unavailable.value.placeholder` as bytes (see `parse_placeholder`).
    pub unavailable_value_placeholder: Vec<u8>,
    /// `money.fraction.digits`: the scale of money values.
    pub money_fraction_digits: u32,
    /// `include.unknown.datatypes`: columns of types Debezium has no mapping for
    /// (geometric types other than point, composites, pg_lsn, tsquery, multiranges,
    /// user-defined base types) are left out of events unless this is set; then they
    /// carry their text form in the binary representation.
    pub include_unknown_datatypes: bool,
}

impl Default for CodecOptions {
    fn default() -> Self {
        CodecOptions {
            decimal_handling: DecimalHandling::default(),
            time_precision: TimePrecision::default(),
            binary_handling: BinaryHandling::default(),
            hstore_handling: HstoreHandling::default(),
            interval_handling: IntervalHandling::default(),
            unavailable_value_placeholder: DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER
                .as_bytes()
                .to_vec(),
            money_fraction_digits: 2,
            include_unknown_datatypes: false,
        }
    }
}

/// An option value that is not one of the names Debezium accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {option}; use one of: {allowed}")]
pub struct OptionError {
    pub option: &'static str,
    pub value: String,
    pub allowed: &'static str,
}

macro_rules! named_option {
    ($ty:ident, $option:literal, [$(($name:literal, $variant:ident)),+ $(,)?]) => {
        impl FromStr for $ty {
            type Err = OptionError;
            fn from_str(s: &str) -> Result<Self, OptionError> {
                match s.trim().to_ascii_lowercase().as_str() {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(OptionError {
                        option: $option,
                        value: s.to_string(),
                        allowed: concat!($($name, " "),+),
                    }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($ty::$variant => $name,)+ })
            }
        }
    };
}

named_option!(
    EventFormat,
    "format",
    [
        ("avro", Avro),
        ("json", Json),
        ("json_with_schema", JsonWithSchema),
    ]
);
named_option!(
    DecimalHandling,
    "decimal.handling.mode",
    [("precise", Precise), ("double", Double), ("string", String),]
);
named_option!(
    TimePrecision,
    "time.precision.mode",
    [
        ("adaptive", Adaptive),
        ("adaptive_time_microseconds", AdaptiveTimeMicroseconds),
        ("connect", Connect),
    ]
);
named_option!(
    BinaryHandling,
    "binary.handling.mode",
    [
        ("bytes", Bytes),
        ("base64", Base64),
        ("base64-url-safe", Base64UrlSafe),
        ("hex", Hex),
    ]
);
named_option!(
    HstoreHandling,
    "hstore.handling.mode",
    [("json", Json), ("map", Map)]
);
named_option!(
    IntervalHandling,
    "interval.handling.mode",
    [("numeric", Numeric), ("string", String),]
);

/// `unavailable.value.placeholder` as Debezium reads it: `hex:` followed by hex digits
/// gives those bytes, anything else its UTF-8 bytes.
pub fn parse_placeholder(text: &str) -> Result<Vec<u8>, OptionError> {
    let Some(hex) = text.strip_prefix("hex:") else {
        return Ok(text.as_bytes().to_vec());
    };
    let bad = || OptionError {
        option: "unavailable.value.placeholder",
        value: text.to_string(),
        allowed: "any text, or hex: followed by an even number of hex digits",
    };
    if hex.len() % 2 != 0 {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_debezium_spells_them() {
        assert_eq!("precise".parse(), Ok(DecimalHandling::Precise));
        assert_eq!("base64-url-safe".parse(), Ok(BinaryHandling::Base64UrlSafe));
        assert_eq!(
            "ADAPTIVE_TIME_MICROSECONDS".parse(),
            Ok(TimePrecision::AdaptiveTimeMicroseconds)
        );
        let err = "nanos".parse::<TimePrecision>().unwrap_err();
        assert!(err.to_string().contains("time.precision.mode"), "{err}");
        assert_eq!(TimePrecision::Connect.to_string(), "connect");
    }

    #[test]
    fn placeholders_parse() {
        assert_eq!(parse_placeholder("x").unwrap(), b"x");
        assert_eq!(parse_placeholder("hex:00ff").unwrap(), vec![0, 255]);
        assert!(parse_placeholder("hex:0").is_err());
        assert!(parse_placeholder("hex:zz").is_err());
    }
}
