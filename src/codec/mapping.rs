//! How each PostgreSQL column maps to a Connect schema and to a value representation,
//! following Debezium's `PostgresValueConverter.schemaBuilder` /
//! `JdbcValueConverters.schemaBuilder` with pgjdbc's length and scale rules
//! (`TypeInfoCache.getPrecision` / `getScale`); pure, no I/O.
//!
//! Debezium reads a column's length and scale from `atttypmod` the way pgjdbc does:
//! numeric(p,s) has length p and scale s, numeric without a modifier length 131089 and
//! scale 0 (a variable-scale decimal); time, timetz, timestamp and timestamptz have
//! scale p, or 6 without a modifier; bit(n) and varbit(n) have length n, varbit
//! without a modifier 2147483647.
//!
//! Columns of types Debezium cannot represent are left out of the schema and the
//! events (as Debezium does unless `include.unknown.datatypes` is set): geometric
//! types other than point, composites, pg_lsn, tsquery, multiranges, user-defined
//! ranges and base types, and arrays of money, name, interval, bit, varbit, xml,
//! point or of unmapped types.

use std::borrow::Cow;

use super::connect::{ConnectSchema, Json, DECIMAL_NAME, DECIMAL_PRECISION_PARAM};
use super::options::{
    BinaryHandling, CodecOptions, DecimalHandling, HstoreHandling, IntervalHandling, TimePrecision,
};
use crate::model::relation::ColumnInfo;
use crate::model::types::PgType;
use crate::model::value::{parse_text, Value};

/// Debezium's length for numeric without a modifier (pgjdbc's display size).
pub const VARIABLE_SCALE_DECIMAL_LENGTH: i32 = 131_089;

/// What the catalog says about a column beyond the Relation message. The default is
/// a nullable column without a default.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    /// The column accepts NULL (no `NOT NULL`): its field is `["null", T]`.
    pub optional: bool,
    /// The column default as Debezium propagates it (see [`parse_default_expression`]):
    /// it becomes the field's Avro default and `connect.default`, and the value written
    /// when a non-optional column comes without a value.
    pub default: Option<Value>,
}

impl Default for ColumnSpec {
    fn default() -> Self {
        ColumnSpec {
            optional: true,
            default: None,
        }
    }
}

/// How a value is written; derived once per column.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Boolean,
    /// bit(1) / varbit(1): a boolean.
    BitBoolean,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// numeric(p,s), precise: Connect Decimal bytes at scale s.
    Decimal {
        scale: u32,
    },
    /// numeric without scale, precise: `{scale, value}` with trailing zeros stripped.
    VariableScaleDecimal,
    NumericDouble,
    NumericString,
    /// money, precise: Decimal bytes at `money.fraction.digits` (rounded half up).
    MoneyDecimal {
        scale: u32,
    },
    MoneyDouble,
    MoneyString,
    /// Any value written as its text: text, char(n), enums, json, xml, uuid, network
    /// addresses, ranges, tsvector, ltree.
    String,
    /// bytea.
    Binary(BinaryHandling),
    /// An unmapped type's text form, written as bytea would be.
    UnknownText(BinaryHandling),
    /// Days since the epoch.
    Date,
    TimeMillis,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
    /// ISO-8601 in UTC with `fraction` fixed fraction digits (1–9), or Java's
    /// `ISO_OFFSET_DATE_TIME` (shortest fraction) otherwise.
    ZonedTimestamp {
        fraction: i32,
    },
    ZonedTime,
    IntervalMicros,
    IntervalString,
    /// bit(n>1) / varbit: little-endian bytes of the bit string's value.
    Bits,
    Point,
    /// PostGIS geometry / geography: the EWKB as received, and its SRID.
    Geometry,
    /// pgvector `vector` / `halfvec`: arrays of float64 / float32.
    DoubleVector,
    FloatVector,
    /// pgvector `sparsevec`: `{dimensions, vector: map<int16, float64>}`.
    SparseVector,
    HstoreJson,
    HstoreMap,
    Array {
        elem: Box<Kind>,
        elem_optional: bool,
        toast: ArrayToast,
    },
}

/// The placeholder Debezium puts in an unchanged TOASTed array column
/// (`UnchangedToastedReplicationMessageColumn`), by array type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayToast {
    /// text[], varchar[], char(n)[], json[], jsonb[]: `[placeholder]`.
    Strings,
    /// bytea[]: `[placeholder bytes]`.
    Bytes,
    /// int4[], date[]: the placeholder's bytes as numbers.
    Ints,
    /// int8[]: the placeholder's bytes as numbers.
    Longs,
    /// uuid[]: `[UUID.nameUUIDFromBytes(placeholder)]`.
    Uuids,
    /// Any other array: Debezium cannot convert the placeholder (the value is null).
    Unsupported,
}

/// One mapped column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMapping {
    /// The Avro field name (the column name, made a valid Avro name if it was not).
    pub field_name: String,
    pub schema: ConnectSchema,
    pub kind: Kind,
}

/// Replaces what Avro does not allow in a name (`[A-Za-z_][A-Za-z0-9_]*`) by `_`, as
/// Debezium's `avro` name adjustment does. Valid names are unchanged.
pub fn avro_name(name: &str) -> Cow<'_, str> {
    let valid_first = |c: char| c.is_ascii_alphabetic() || c == '_';
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = name.chars().next().is_some_and(valid_first) && name.chars().all(valid);
    if ok {
        return Cow::Borrowed(name);
    }
    if name.is_empty() {
        return Cow::Owned("_".into());
    }
    Cow::Owned(
        name.chars()
            .enumerate()
            .map(|(i, c)| {
                if (i == 0 && valid_first(c)) || (i > 0 && valid(c)) {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
    )
}

/// A dotted full name with each part made a valid Avro name.
pub fn avro_full_name(parts: &[&str]) -> String {
    parts
        .iter()
        .flat_map(|p| p.split('.'))
        .map(avro_name)
        .collect::<Vec<_>>()
        .join(".")
}

/// The bare type name of a user or extension type (`public.hstore` → `hstore`).
fn bare_name(type_name: &str) -> &str {
    type_name.rsplit('.').next().unwrap_or(type_name)
}

/// Built-in range OIDs Debezium maps to strings (int4range, numrange, tsrange,
/// tstzrange, daterange, int8range) and their arrays.
const STRING_RANGES: &[u32] = &[3904, 3906, 3908, 3910, 3912, 3926];
const STRING_RANGE_ARRAYS: &[u32] = &[3905, 3907, 3909, 3911, 3913, 3927];
const NAME_ARRAY_OID: u32 = 1003;

fn time_scale(typmod: i32) -> i32 {
    if typmod == -1 {
        6
    } else {
        typmod
    }
}

/// (length, scale) of a numeric column as pgjdbc reports them.
fn numeric_length_scale(typmod: i32) -> (i32, i32) {
    if typmod == -1 {
        (VARIABLE_SCALE_DECIMAL_LENGTH, 0)
    } else {
        let t = typmod.wrapping_sub(4);
        ((t >> 16) & 0xffff, t & 0xffff)
    }
}

fn binary_schema(mode: BinaryHandling) -> ConnectSchema {
    match mode {
        BinaryHandling::Bytes => ConnectSchema::bytes(),
        _ => ConnectSchema::string(),
    }
}

fn named(base: ConnectSchema, name: &str) -> ConnectSchema {
    base.named(name).version(1)
}

fn variable_scale_decimal_schema() -> ConnectSchema {
    use super::connect::field;
    ConnectSchema::record(
        "io.debezium.data.VariableScaleDecimal",
        vec![
            field("scale", ConnectSchema::int32()),
            field("value", ConnectSchema::bytes()),
        ],
    )
    .version(1)
    .doc("Variable scaled decimal")
}

fn decimal_schema(scale: i32) -> ConnectSchema {
    ConnectSchema::bytes()
        .named(DECIMAL_NAME)
        .param("scale", scale.to_string())
        .version(1)
}

/// numeric's schema and kind for a column of this modifier.
fn numeric(typmod: i32, opts: &CodecOptions) -> (ConnectSchema, Kind) {
    let (length, scale) = numeric_length_scale(typmod);
    let variable = (length == 0 || length == VARIABLE_SCALE_DECIMAL_LENGTH) && scale == 0;
    match opts.decimal_handling {
        DecimalHandling::Precise if variable => {
            (variable_scale_decimal_schema(), Kind::VariableScaleDecimal)
        }
        DecimalHandling::Precise => (
            decimal_schema(scale).param(DECIMAL_PRECISION_PARAM, length.to_string()),
            Kind::Decimal {
                scale: scale.max(0) as u32,
            },
        ),
        DecimalHandling::Double => (ConnectSchema::float64(), Kind::NumericDouble),
        DecimalHandling::String => (ConnectSchema::string(), Kind::NumericString),
    }
}

fn date(opts: &CodecOptions) -> (ConnectSchema, Kind) {
    match opts.time_precision {
        TimePrecision::Connect => (
            named(ConnectSchema::int32(), super::connect::DATE_NAME),
            Kind::Date,
        ),
        _ => (
            named(ConnectSchema::int32(), "io.debezium.time.Date"),
            Kind::Date,
        ),
    }
}

fn time(typmod: i32, opts: &CodecOptions) -> (ConnectSchema, Kind) {
    let p = time_scale(typmod);
    match opts.time_precision {
        TimePrecision::Connect => (
            named(ConnectSchema::int32(), super::connect::TIME_NAME),
            Kind::TimeMillis,
        ),
        TimePrecision::Adaptive if p <= 3 => (
            named(ConnectSchema::int32(), "io.debezium.time.Time"),
            Kind::TimeMillis,
        ),
        _ => (
            named(ConnectSchema::int64(), "io.debezium.time.MicroTime"),
            Kind::TimeMicros,
        ),
    }
}

fn timestamp(typmod: i32, opts: &CodecOptions) -> (ConnectSchema, Kind) {
    let p = time_scale(typmod);
    match opts.time_precision {
        TimePrecision::Connect => (
            named(ConnectSchema::int64(), super::connect::TIMESTAMP_NAME),
            Kind::TimestampMillis,
        ),
        _ if p <= 3 => (
            named(ConnectSchema::int64(), "io.debezium.time.Timestamp"),
            Kind::TimestampMillis,
        ),
        _ => (
            named(ConnectSchema::int64(), "io.debezium.time.MicroTimestamp"),
            Kind::TimestampMicros,
        ),
    }
}

fn zoned_timestamp(typmod: i32) -> (ConnectSchema, Kind) {
    (
        named(ConnectSchema::string(), "io.debezium.time.ZonedTimestamp"),
        Kind::ZonedTimestamp {
            fraction: time_scale(typmod),
        },
    )
}

fn zoned_time() -> (ConnectSchema, Kind) {
    (
        named(ConnectSchema::string(), "io.debezium.time.ZonedTime"),
        Kind::ZonedTime,
    )
}

fn hstore(opts: &CodecOptions) -> (ConnectSchema, Kind) {
    match opts.hstore_handling {
        HstoreHandling::Json => (
            named(ConnectSchema::string(), "io.debezium.data.Json"),
            Kind::HstoreJson,
        ),
        HstoreHandling::Map => (
            ConnectSchema::map(ConnectSchema::string(), ConnectSchema::string().optional()),
            Kind::HstoreMap,
        ),
    }
}

fn enum_schema(labels: Option<&[String]>) -> ConnectSchema {
    named(ConnectSchema::string(), "io.debezium.data.Enum")
        .param("allowed", labels.map(|l| l.join(",")).unwrap_or_default())
}

fn string(name: &str) -> (ConnectSchema, Kind) {
    (named(ConnectSchema::string(), name), Kind::String)
}

/// The scalar mapping of a (non-array) type; `None` for a type Debezium leaves out.
fn scalar(
    ty: &PgType,
    oid: u32,
    type_name: &str,
    enum_labels: Option<&[String]>,
    typmod: i32,
    opts: &CodecOptions,
) -> Option<(ConnectSchema, Kind)> {
    Some(match ty {
        PgType::Bool => (ConnectSchema::boolean(), Kind::Boolean),
        PgType::Int2 => (ConnectSchema::int16(), Kind::Int16),
        PgType::Int4 => (ConnectSchema::int32(), Kind::Int32),
        PgType::Int8 | PgType::Oid => (ConnectSchema::int64(), Kind::Int64),
        PgType::Float4 => (ConnectSchema::float32(), Kind::Float32),
        PgType::Float8 => (ConnectSchema::float64(), Kind::Float64),
        PgType::Numeric => numeric(typmod, opts),
        PgType::Money => match opts.decimal_handling {
            DecimalHandling::Precise => (
                decimal_schema(opts.money_fraction_digits as i32),
                Kind::MoneyDecimal {
                    scale: opts.money_fraction_digits,
                },
            ),
            DecimalHandling::Double => (ConnectSchema::float64(), Kind::MoneyDouble),
            DecimalHandling::String => (ConnectSchema::string(), Kind::MoneyString),
        },
        PgType::Text | PgType::Bpchar | PgType::Char => match bare_name(type_name) {
            "ltree" => string("io.debezium.data.Ltree"),
            _ => (ConnectSchema::string(), Kind::String),
        },
        PgType::Bytea => (
            binary_schema(opts.binary_handling),
            Kind::Binary(opts.binary_handling),
        ),
        PgType::Date => date(opts),
        PgType::Time => time(typmod, opts),
        PgType::TimeTz => zoned_time(),
        PgType::Timestamp => timestamp(typmod, opts),
        PgType::TimestampTz => zoned_timestamp(typmod),
        PgType::Interval => match opts.interval_handling {
            IntervalHandling::Numeric => (
                named(ConnectSchema::int64(), "io.debezium.time.MicroDuration"),
                Kind::IntervalMicros,
            ),
            IntervalHandling::String => (
                named(ConnectSchema::string(), "io.debezium.time.Interval"),
                Kind::IntervalString,
            ),
        },
        PgType::Uuid => string("io.debezium.data.Uuid"),
        PgType::Json | PgType::Jsonb => string("io.debezium.data.Json"),
        PgType::Xml => string("io.debezium.data.Xml"),
        PgType::Inet | PgType::Cidr | PgType::MacAddr | PgType::MacAddr8 => {
            (ConnectSchema::string(), Kind::String)
        }
        PgType::Bit | PgType::VarBit => {
            let length = match (ty, typmod) {
                (PgType::VarBit, -1) => i32::MAX,
                _ => typmod,
            };
            if length > 1 {
                (
                    named(ConnectSchema::bytes(), "io.debezium.data.Bits")
                        .param("length", length.to_string()),
                    Kind::Bits,
                )
            } else {
                (ConnectSchema::boolean(), Kind::BitBoolean)
            }
        }
        PgType::Point => (super::geometry::point_schema(), Kind::Point),
        PgType::TsVector => string("io.debezium.data.Tsvector"),
        PgType::Hstore => hstore(opts),
        PgType::Enum => (enum_schema(enum_labels), Kind::String),
        PgType::Range(_) if STRING_RANGES.contains(&oid) => (ConnectSchema::string(), Kind::String),
        PgType::Unknown if bare_name(type_name) == "ltree" => string("io.debezium.data.Ltree"),
        PgType::Unknown if bare_name(type_name) == "geometry" => {
            (super::geometry::geometry_schema(false), Kind::Geometry)
        }
        PgType::Unknown if bare_name(type_name) == "geography" => {
            (super::geometry::geometry_schema(true), Kind::Geometry)
        }
        PgType::Unknown if bare_name(type_name) == "vector" => {
            (super::vector::double_vector_schema(), Kind::DoubleVector)
        }
        PgType::Unknown if bare_name(type_name) == "halfvec" => {
            (super::vector::float_vector_schema(), Kind::FloatVector)
        }
        PgType::Unknown if bare_name(type_name) == "sparsevec" => {
            (super::vector::sparse_vector_schema(), Kind::SparseVector)
        }
        PgType::Unknown if bare_name(type_name) == "isbn" => {
            (ConnectSchema::string(), Kind::String)
        }
        PgType::PgLsn
        | PgType::Line
        | PgType::Lseg
        | PgType::Box
        | PgType::Path
        | PgType::Polygon
        | PgType::Circle
        | PgType::TsQuery
        | PgType::Range(_)
        | PgType::Multirange(_)
        | PgType::Composite
        | PgType::Unknown
        | PgType::Array(_) => {
            if !opts.include_unknown_datatypes {
                return None;
            }
            (
                binary_schema(opts.binary_handling),
                Kind::UnknownText(opts.binary_handling),
            )
        }
    })
}

/// The mapping of an array column; `None` for arrays Debezium leaves out.
fn array(
    elem: &PgType,
    oid: u32,
    type_name: &str,
    enum_labels: Option<&[String]>,
    typmod: i32,
    opts: &CodecOptions,
) -> Option<(ConnectSchema, Kind)> {
    // Element types Debezium maps with optional elements (its explicit array cases).
    let toast = match elem {
        PgType::Text | PgType::Bpchar | PgType::Json | PgType::Jsonb
            if bare_name(type_name) != "_citext" =>
        {
            ArrayToast::Strings
        }
        PgType::Bytea => ArrayToast::Bytes,
        PgType::Int4 | PgType::Date => ArrayToast::Ints,
        PgType::Int8 => ArrayToast::Longs,
        PgType::Uuid => ArrayToast::Uuids,
        _ => ArrayToast::Unsupported,
    };
    let optional_elements = match elem {
        PgType::Int2
        | PgType::Int4
        | PgType::Int8
        | PgType::Oid
        | PgType::Text
        | PgType::Bpchar
        | PgType::Char
        | PgType::Inet
        | PgType::Cidr
        | PgType::MacAddr
        | PgType::MacAddr8
        | PgType::Numeric
        | PgType::Float4
        | PgType::Float8
        | PgType::Bool
        | PgType::Date
        | PgType::Uuid
        | PgType::Json
        | PgType::Jsonb
        | PgType::Time
        | PgType::TimeTz
        | PgType::Timestamp
        | PgType::TimestampTz
        | PgType::Bytea
        | PgType::Hstore => true,
        PgType::Range(_) if STRING_RANGE_ARRAYS.contains(&oid) => true,
        PgType::Enum | PgType::TsVector => false,
        PgType::Unknown if bare_name(type_name) == "_ltree" => true,
        _ => return None,
    };
    if oid == NAME_ARRAY_OID {
        return None;
    }
    let (elem_schema, elem_kind) = match elem {
        PgType::Range(_) => (ConnectSchema::string(), Kind::String),
        PgType::Unknown => string("io.debezium.data.Ltree"),
        other => scalar(other, 0, "", enum_labels, typmod, opts)?,
    };
    Some((
        ConnectSchema::array(elem_schema.optional_if(optional_elements)),
        Kind::Array {
            elem: Box::new(elem_kind),
            elem_optional: optional_elements,
            toast,
        },
    ))
}

/// Maps one column; `None` when Debezium leaves the column out of events.
pub fn map_column(
    column: &ColumnInfo,
    spec: &ColumnSpec,
    opts: &CodecOptions,
) -> Option<ColumnMapping> {
    let ti = &column.type_info;
    let labels = ti.enum_labels.as_deref();
    let (schema, kind) = match &ti.pg_type {
        PgType::Array(elem) => array(elem, ti.oid, &ti.name, labels, column.type_modifier, opts)?,
        other => scalar(other, ti.oid, &ti.name, labels, column.type_modifier, opts)?,
    };
    // Debezium's Geometry schema is optional even for a NOT NULL column.
    let optional = spec.optional || schema.optional;
    let mut schema = schema.optional_if(optional);
    if let Some(d) = &spec.default {
        schema.default = default_json(&kind, d, opts);
    }
    Some(ColumnMapping {
        field_name: avro_name(&column.name).into_owned(),
        schema,
        kind,
    })
}

/// The Avro JSON of a default value (AvroData's `defaultValueFromConnect`), for the
/// kinds Debezium propagates defaults of; `None` otherwise (structs, maps, arrays,
/// binary).
pub fn default_json(kind: &Kind, value: &Value, opts: &CodecOptions) -> Option<Json> {
    use super::encode::{decimal_bytes, value_text};
    let latin1 = |bytes: &[u8]| Json::Str(bytes.iter().map(|b| char::from(*b)).collect());
    Some(match (kind, value) {
        (Kind::Boolean, Value::Bool(b)) => Json::Bool(*b),
        (Kind::BitBoolean, Value::Bits { bytes, .. }) => Json::Bool(bytes.iter().any(|b| *b != 0)),
        (Kind::BitBoolean, Value::Bool(b)) => Json::Bool(*b),
        (Kind::Int16, Value::Int2(i)) => Json::Int(i64::from(*i)),
        (Kind::Int32, Value::Int4(i)) => Json::Int(i64::from(*i)),
        (Kind::Int64, Value::Int8(i)) => Json::Int(*i),
        (Kind::Int64, Value::Oid(i)) => Json::Int(i64::from(*i)),
        (Kind::Float32, Value::Float4(f)) => Json::Float(*f),
        (Kind::Float64, Value::Float8(f)) => Json::Double(*f),
        (Kind::Decimal { .. } | Kind::MoneyDecimal { .. }, v) => {
            latin1(&decimal_bytes(kind, v, opts).ok()?)
        }
        (Kind::Bits, Value::Bits { len, bytes }) => {
            latin1(&super::encode::debezium_bits(*len, bytes))
        }
        (
            Kind::String
            | Kind::NumericString
            | Kind::MoneyString
            | Kind::ZonedTimestamp { .. }
            | Kind::ZonedTime
            | Kind::IntervalString,
            v,
        ) => Json::Str(value_text(kind, v).ok()?),
        (Kind::NumericDouble | Kind::MoneyDouble, v) => {
            Json::Double(super::encode::decimal_double(v).ok()?)
        }
        (
            Kind::Date
            | Kind::TimeMillis
            | Kind::TimeMicros
            | Kind::TimestampMillis
            | Kind::TimestampMicros
            | Kind::IntervalMicros,
            v,
        ) => Json::Int(super::encode::temporal_number(kind, v).ok()?),
        _ => return None,
    })
}

/// The default Debezium derives from a column's default expression
/// (`pg_get_expr(adbin, adrelid)`), following `PostgresDefaultValueConverter`: a
/// literal (`'abc'::text`, `42`, `'2020-01-01'::date`) is parsed as the column type; a
/// function call (`nextval('t_id_seq'::regclass)`, `now()`) or `CURRENT_TIMESTAMP`
/// and the like give the type's zero (`0`, `''`, `1970-01-01`, `00:00`, ...); `NULL`
/// gives none. Only the types Debezium has a default mapper for get one (not bytea,
/// arrays, domains, extension types, numeric without scale, ...).
pub fn parse_default_expression(column: &ColumnInfo, expression: &str) -> Option<Value> {
    let ti = &column.type_info;
    // Debezium looks mappers up by the type's own name: domains and extension types
    // (qualified names here) have none, enums one each.
    let is_user_type = ti.name.contains('.');
    let placeholder = match &ti.pg_type {
        PgType::Enum => None,
        _ if is_user_type => return None,
        PgType::Bit => Some("00"),
        PgType::VarBit => Some("0"),
        PgType::Bool => Some("false"),
        PgType::Text | PgType::Bpchar => Some(""),
        // (numeric without scale is a struct in precise mode: `default_json` drops it)
        PgType::Numeric => Some("0.0"),
        PgType::Float4 | PgType::Float8 => Some("0.0"),
        PgType::Int2 | PgType::Int4 | PgType::Int8 => Some("0"),
        PgType::Json | PgType::Jsonb => Some("{}"),
        PgType::Xml => Some(""),
        PgType::Uuid => Some("00000000-0000-0000-0000-000000000000"),
        PgType::Date | PgType::Timestamp | PgType::TimestampTz => Some("1970-01-01"),
        PgType::Time => Some("00:00:00"),
        PgType::Interval => Some("00:00:00"),
        _ => return None,
    };
    let expr = expression.trim();
    if expr.starts_with("NULL::") || expr.eq_ignore_ascii_case("null") {
        return None;
    }
    let literal: String = match placeholder {
        None => {
            // An enum: `'label'::schema.type`.
            let (value, _cast) = expr.rsplit_once("::")?;
            value.strip_prefix('\'')?.strip_suffix('\'')?.to_string()
        }
        Some(zero) => {
            if is_function_call(expr) {
                zero.to_string()
            } else if let Some(start) = expr.find('\'') {
                let rest = &expr[start + 1..];
                rest[..rest.find('\'')?].to_string()
            } else {
                expr.to_string()
            }
        }
    };
    let literal = literal.trim();
    let parsed = match parse_text(&ti.pg_type, literal) {
        Ok(v) => v,
        // A timestamp default may be a bare date (the zero placeholder is one).
        Err(_) if matches!(ti.pg_type, PgType::Timestamp | PgType::TimestampTz) => {
            let zone = if ti.pg_type == PgType::TimestampTz {
                "+00"
            } else {
                ""
            };
            parse_text(&ti.pg_type, &format!("{literal} 00:00:00{zone}")).ok()?
        }
        Err(_) => return None,
    };
    Some(match (parsed, &ti.pg_type) {
        (Value::Bits { len: 1, bytes }, PgType::Bit) => {
            Value::Bool(bytes.first().is_some_and(|b| b & 0x80 != 0))
        }
        (v, _) => v,
    })
}

/// `^[(]?[A-Za-z0-9_.]+\((...)?\)` or one of SQL's current date/time keywords.
fn is_function_call(expr: &str) -> bool {
    let lower = expr.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "current_timestamp" | "current_time" | "current_date" | "localtime" | "localtimestamp"
    ) {
        return true;
    }
    let e = expr.strip_prefix('(').unwrap_or(expr);
    let name_len = e
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .count();
    name_len > 0 && e[name_len..].starts_with('(') && e.contains(')')
}
