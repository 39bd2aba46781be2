//! Kafka Connect schemas as Debezium builds them, and their Avro JSON exactly as
//! Confluent's AvroConverter (`io.confluent.connect.avro.AvroData`, default settings)
//! and Avro Java's `Schema.toString()` print it; pure, no I/O.
//!
//! Walcast derives every schema in Connect terms first (the same types, names,
//! versions, parameters and defaults Debezium's builders produce) and renders Avro
//! from that in one place, so the rules below are applied uniformly:
//!
//! - An optional schema becomes the union `["null", T]` and its field gets
//!   `"default": null`; an optional schema *with* a default becomes `[T, "null"]` and
//!   the field default is that value (Avro requires the default to match the first
//!   branch). An optional struct is always `["null", record]`.
//! - Metadata becomes properties on the non-union schema, in this order: (Decimal's
//!   `scale` and `precision`), `connect.doc`, `connect.version`, `connect.parameters`,
//!   `connect.default`, `connect.name`, `connect.type` (`int8`/`int16`, which Avro has
//!   no type for), then `logicalType` for the four Connect logical types (Decimal →
//!   `decimal`, Date → `date`, Time → `time-millis`, Timestamp → `timestamp-millis`).
//!   A Decimal without `connect.decimal.precision` gets Avro precision 64.
//! - A struct becomes a record named by splitting its Connect name at the last dot
//!   (namespace, name). A record whose full name was already written in the same
//!   document is referenced by name (relative to the enclosing namespace), as Avro
//!   Java does for a named type it has seen; a namespace equal to the enclosing one is
//!   not repeated.
//! - JSON is compact, keys in the order above, strings escaped as Jackson does.

use std::collections::HashSet;
use std::fmt::Write as _;

pub const DECIMAL_NAME: &str = "org.apache.kafka.connect.data.Decimal";
pub const DATE_NAME: &str = "org.apache.kafka.connect.data.Date";
pub const TIME_NAME: &str = "org.apache.kafka.connect.data.Time";
pub const TIMESTAMP_NAME: &str = "org.apache.kafka.connect.data.Timestamp";
/// Confluent AvroData's precision for a Decimal without `connect.decimal.precision`.
pub const DEFAULT_DECIMAL_PRECISION: i64 = 64;
/// The parameter Debezium puts the column precision in.
pub const DECIMAL_PRECISION_PARAM: &str = "connect.decimal.precision";

/// A JSON value in the order it is to be written (defaults, parameters).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    /// Printed as Java's `Float.toString` would.
    Float(f32),
    /// Printed as Java's `Double.toString` would.
    Double(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Float(f) => out.push_str(&crate::codec::java::float_to_string(*f)),
            Json::Double(d) => out.push_str(&crate::codec::java::double_to_string(*d)),
            Json::Str(s) => write_json_string(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    pub fn to_json_string(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
}

/// Appends `s` as a JSON string the way Jackson escapes it: `"` and `\`, the short
/// escapes for backspace, tab, newline, form feed and carriage return, `\u00XX`
/// (upper-case hex) for other control characters; everything else as is.
pub fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A Connect schema type.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectType {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
    Bytes,
    Array(Box<ConnectSchema>),
    /// Key and value schemas (Debezium's maps have non-optional string keys).
    Map(Box<ConnectSchema>, Box<ConnectSchema>),
    Struct(Vec<ConnectField>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConnectField {
    pub name: String,
    pub schema: ConnectSchema,
}

/// A Connect schema: type plus Connect metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectSchema {
    pub ty: ConnectType,
    pub optional: bool,
    pub name: Option<String>,
    pub version: Option<i32>,
    pub doc: Option<String>,
    /// In insertion order (Connect keeps a `LinkedHashMap`).
    pub parameters: Vec<(String, String)>,
    /// The default in the Avro JSON form AvroData gives it (numbers, strings, bytes
    /// as an ISO-8859-1 string).
    pub default: Option<Json>,
}

impl ConnectSchema {
    pub fn new(ty: ConnectType) -> Self {
        ConnectSchema {
            ty,
            optional: false,
            name: None,
            version: None,
            doc: None,
            parameters: Vec::new(),
            default: None,
        }
    }

    pub fn int16() -> Self {
        Self::new(ConnectType::Int16)
    }
    pub fn int32() -> Self {
        Self::new(ConnectType::Int32)
    }
    pub fn int64() -> Self {
        Self::new(ConnectType::Int64)
    }
    pub fn float32() -> Self {
        Self::new(ConnectType::Float32)
    }
    pub fn float64() -> Self {
        Self::new(ConnectType::Float64)
    }
    pub fn boolean() -> Self {
        Self::new(ConnectType::Boolean)
    }
    pub fn string() -> Self {
        Self::new(ConnectType::String)
    }
    pub fn bytes() -> Self {
        Self::new(ConnectType::Bytes)
    }
    pub fn array(items: ConnectSchema) -> Self {
        Self::new(ConnectType::Array(Box::new(items)))
    }
    pub fn map(key: ConnectSchema, value: ConnectSchema) -> Self {
        Self::new(ConnectType::Map(Box::new(key), Box::new(value)))
    }
    pub fn record(name: impl Into<String>, fields: Vec<ConnectField>) -> Self {
        Self::new(ConnectType::Struct(fields)).named(name)
    }

    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
    pub fn optional_if(mut self, optional: bool) -> Self {
        self.optional = optional;
        self
    }
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    pub fn version(mut self, version: i32) -> Self {
        self.version = Some(version);
        self
    }
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        self.doc = Some(doc.into());
        self
    }
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.parameters.push((key.into(), value.into()));
        self
    }
    pub fn with_default(mut self, default: Json) -> Self {
        self.default = Some(default);
        self
    }

    /// The fields of a struct schema (empty for other types).
    pub fn fields(&self) -> &[ConnectField] {
        match &self.ty {
            ConnectType::Struct(fields) => fields,
            _ => &[],
        }
    }

    /// This schema as the Avro schema JSON Confluent's AvroConverter registers.
    pub fn to_avro_json(&self) -> String {
        let mut w = AvroWriter {
            out: String::with_capacity(1024),
            defined: HashSet::new(),
            space: None,
        };
        w.schema(self);
        w.out
    }
}

pub fn field(name: impl Into<String>, schema: ConnectSchema) -> ConnectField {
    ConnectField {
        name: name.into(),
        schema,
    }
}

/// Splits a full name at its last dot: (namespace, name).
fn split_name(full: &str) -> (Option<&str>, &str) {
    match full.rfind('.') {
        Some(i) => (Some(&full[..i]), &full[i + 1..]),
        None => (None, full),
    }
}

const AVRO_PRIMITIVES: &[&str] = &[
    "null", "boolean", "int", "long", "float", "double", "bytes", "string", "record", "enum",
    "array", "map", "union", "fixed",
];

struct AvroWriter {
    out: String,
    /// Full names of records already written in this document.
    defined: HashSet<String>,
    /// The enclosing namespace (Avro Java's `names.space()`).
    space: Option<String>,
}

impl AvroWriter {
    fn schema(&mut self, s: &ConnectSchema) {
        if let ConnectType::Struct(_) = s.ty {
            if s.optional {
                self.out.push_str("[\"null\",");
                self.record(s);
                self.out.push(']');
            } else {
                self.record(s);
            }
            return;
        }
        if !s.optional {
            self.base(s);
        } else if s.default.is_some() {
            self.out.push('[');
            self.base(s);
            self.out.push_str(",\"null\"]");
        } else {
            self.out.push_str("[\"null\",");
            self.base(s);
            self.out.push(']');
        }
    }

    /// Connect metadata as Avro properties, in AvroData's order.
    fn props(&self, s: &ConnectSchema) -> Vec<(&'static str, Json)> {
        let mut props = Vec::new();
        let name = s.name.as_deref();
        let is_decimal = name.is_some_and(|n| n.eq_ignore_ascii_case(DECIMAL_NAME));
        if is_decimal && s.ty == ConnectType::Bytes {
            let param = |key: &str| {
                s.parameters
                    .iter()
                    .find(|(k, _)| k == key)
                    .and_then(|(_, v)| v.parse::<i64>().ok())
            };
            props.push(("scale", Json::Int(param("scale").unwrap_or(0))));
            props.push((
                "precision",
                Json::Int(param(DECIMAL_PRECISION_PARAM).unwrap_or(DEFAULT_DECIMAL_PRECISION)),
            ));
        }
        if let Some(doc) = &s.doc {
            props.push(("connect.doc", Json::Str(doc.clone())));
        }
        if let Some(v) = s.version {
            props.push(("connect.version", Json::Int(i64::from(v))));
        }
        if !s.parameters.is_empty() {
            props.push((
                "connect.parameters",
                Json::Object(
                    s.parameters
                        .iter()
                        .map(|(k, v)| (k.clone(), Json::Str(v.clone())))
                        .collect(),
                ),
            ));
        }
        if let Some(d) = &s.default {
            props.push(("connect.default", d.clone()));
        }
        if let Some(n) = name {
            props.push(("connect.name", Json::Str(n.to_string())));
        }
        match s.ty {
            ConnectType::Int8 => props.push(("connect.type", Json::Str("int8".into()))),
            ConnectType::Int16 => props.push(("connect.type", Json::Str("int16".into()))),
            _ => {}
        }
        if let Some(n) = name {
            let logical = if is_decimal {
                Some("decimal")
            } else if n.eq_ignore_ascii_case(DATE_NAME) {
                Some("date")
            } else if n.eq_ignore_ascii_case(TIME_NAME) {
                Some("time-millis")
            } else if n.eq_ignore_ascii_case(TIMESTAMP_NAME) {
                Some("timestamp-millis")
            } else {
                None
            };
            if let Some(l) = logical {
                props.push(("logicalType", Json::Str(l.into())));
            }
        }
        props
    }

    fn write_props(&mut self, props: &[(&'static str, Json)]) {
        for (k, v) in props {
            self.out.push(',');
            write_json_string(&mut self.out, k);
            self.out.push(':');
            v.write(&mut self.out);
        }
    }

    /// A non-struct schema without its optional union.
    fn base(&mut self, s: &ConnectSchema) {
        let props = self.props(s);
        let primitive = match &s.ty {
            ConnectType::Int8 | ConnectType::Int16 | ConnectType::Int32 => Some("int"),
            ConnectType::Int64 => Some("long"),
            ConnectType::Float32 => Some("float"),
            ConnectType::Float64 => Some("double"),
            ConnectType::Boolean => Some("boolean"),
            ConnectType::String => Some("string"),
            ConnectType::Bytes => Some("bytes"),
            _ => None,
        };
        if let Some(p) = primitive {
            if props.is_empty() {
                write_json_string(&mut self.out, p);
            } else {
                self.out.push_str("{\"type\":");
                write_json_string(&mut self.out, p);
                self.write_props(&props);
                self.out.push('}');
            }
            return;
        }
        match &s.ty {
            ConnectType::Array(items) => {
                self.out.push_str("{\"type\":\"array\",\"items\":");
                self.schema(items);
                self.write_props(&props);
                self.out.push('}');
            }
            ConnectType::Map(key, value) if key.ty == ConnectType::String && !key.optional => {
                self.out.push_str("{\"type\":\"map\",\"values\":");
                self.schema(value);
                self.write_props(&props);
                self.out.push('}');
            }
            ConnectType::Map(key, value) => {
                // Avro maps have string keys: AvroData writes any other map as an array
                // of `MapEntry {key, value}` records (named after the map if it has a
                // name; walcast's only such map, sparsevec's, has none).
                let entry = ConnectSchema::record(
                    "io.confluent.connect.avro.MapEntry",
                    vec![
                        field("key", key.as_ref().clone()),
                        field("value", value.as_ref().clone()),
                    ],
                );
                self.out.push_str("{\"type\":\"array\",\"items\":");
                self.record_with_props(&entry, false);
                self.write_props(&props);
                self.out.push('}');
            }
            _ => unreachable!("structs are written by record()"),
        }
    }

    fn record(&mut self, s: &ConnectSchema) {
        self.record_with_props(s, true);
    }

    /// A record, with its `connect.*` properties unless `with_props` is false (the
    /// `MapEntry` records AvroData creates directly carry none).
    fn record_with_props(&mut self, s: &ConnectSchema, with_props: bool) {
        let full = s
            .name
            .clone()
            .unwrap_or_else(|| "io.confluent.connect.avro.ConnectDefault".to_string());
        let (space, name) = split_name(&full);
        if self.defined.contains(&full) {
            // A reference, relative to the enclosing namespace.
            let short_ok = space.is_some()
                && space == self.space.as_deref()
                && !AVRO_PRIMITIVES.contains(&name);
            write_json_string(&mut self.out, if short_ok { name } else { &full });
            return;
        }
        self.defined.insert(full.clone());
        self.out.push_str("{\"type\":\"record\",\"name\":");
        write_json_string(&mut self.out, name);
        match space {
            Some(ns) if Some(ns) != self.space.as_deref() => {
                self.out.push_str(",\"namespace\":");
                write_json_string(&mut self.out, ns);
            }
            None if self.space.is_some() => self.out.push_str(",\"namespace\":\"\""),
            _ => {}
        }
        let saved = std::mem::replace(&mut self.space, space.map(str::to_string));
        self.out.push_str(",\"fields\":[");
        for (i, f) in s.fields().iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str("{\"name\":");
            write_json_string(&mut self.out, &f.name);
            self.out.push_str(",\"type\":");
            self.schema(&f.schema);
            if let Some(d) = &f.schema.default {
                self.out.push_str(",\"default\":");
                d.write(&mut self.out);
            } else if f.schema.optional {
                self.out.push_str(",\"default\":null");
            }
            self.out.push('}');
        }
        self.out.push(']');
        if with_props {
            let props = self.props(s);
            self.write_props(&props);
        }
        self.out.push('}');
        self.space = saved;
    }
}
