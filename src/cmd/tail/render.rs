//! Avro values as JSON for `walcast tail`, the way a person reading a topic wants them
//! (and close to what Confluent's Python `AvroDeserializer` gives): records become
//! objects in field order, unions their inner value (untagged), bytes base64,
//! `decimal` (Connect Decimal) and `io.debezium.data.VariableScaleDecimal` the exact
//! decimal number as a string with its scale ("12.50"), enums strings, arrays and maps
//! arrays and objects; ints and longs (also those with a date or time logical type) stay
//! numbers, as they are on the wire. Pure.

use std::collections::HashMap;

use apache_avro::schema::{Name, RecordSchema, Schema};
use apache_avro::types::Value;
use base64::Engine;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// The `connect.name` of Debezium's numeric without a fixed scale.
const VARIABLE_SCALE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";

/// A JSON value whose objects keep their keys in the order given (serde_json's own
/// `Value` sorts them, which would scramble a record's columns).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    /// Written with the shortest text that reads back as the same `f32`.
    Float(f32),
    Double(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn str(text: impl Into<String>) -> Self {
        Self::Str(text.into())
    }

    /// One line of JSON text.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "null".to_owned())
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Int(i) => s.serialize_i64(*i),
            // JSON has no NaN or infinity: those are written as strings.
            Json::Float(f) if !f.is_finite() => s.serialize_str(&non_finite(f64::from(*f))),
            Json::Float(f) => s.serialize_f32(*f),
            Json::Double(d) if !d.is_finite() => s.serialize_str(&non_finite(*d)),
            Json::Double(d) => s.serialize_f64(*d),
            Json::Str(text) => s.serialize_str(text),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

fn non_finite(d: f64) -> String {
    if d.is_nan() {
        "NaN".to_owned()
    } else if d > 0.0 {
        "Infinity".to_owned()
    } else {
        "-Infinity".to_owned()
    }
}

/// The named types of a schema, to follow references (`"type": "SomeRecord"`).
pub type Names = HashMap<Name, Schema>;

/// The named types defined in `schema`.
pub fn names_of(schema: &Schema) -> Names {
    match apache_avro::schema::ResolvedSchema::try_from(schema) {
        Ok(resolved) => resolved
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect(),
        Err(_) => Names::new(),
    }
}

/// `value` (decoded with `schema`) as JSON.
pub fn render(value: &Value, schema: &Schema, names: &Names) -> Json {
    let schema = resolve(schema, names);
    match (value, schema) {
        (Value::Union(index, inner), Schema::Union(union)) => {
            match union.variants().get(*index as usize) {
                Some(branch) => render(inner, branch, names),
                None => plain(inner),
            }
        }
        (Value::Union(_, inner), _) => plain(inner),
        (Value::Record(fields), Schema::Record(record)) => {
            if let Some(decimal) = variable_scale_decimal(fields, record) {
                return decimal;
            }
            Json::Object(
                fields
                    .iter()
                    .map(|(name, v)| {
                        let rendered = match record.lookup.get(name) {
                            Some(&i) => render(v, &record.fields[i].schema, names),
                            None => plain(v),
                        };
                        (name.clone(), rendered)
                    })
                    .collect(),
            )
        }
        (Value::Decimal(d), Schema::Decimal(decimal)) => match <Vec<u8>>::try_from(d) {
            Ok(bytes) => Json::Str(decimal_string(&bytes, decimal.scale)),
            Err(_) => Json::Null,
        },
        (Value::Array(items), Schema::Array(array)) => Json::Array(
            items
                .iter()
                .map(|v| render(v, &array.items, names))
                .collect(),
        ),
        (Value::Map(entries), Schema::Map(map)) => {
            let mut sorted: Vec<(&String, &Value)> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Json::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k.clone(), render(v, &map.types, names)))
                    .collect(),
            )
        }
        _ => plain(value),
    }
}

/// Follows a reference to a named type (a few hops at most).
fn resolve<'a>(mut schema: &'a Schema, names: &'a Names) -> &'a Schema {
    for _ in 0..16 {
        match schema {
            Schema::Ref { name } => match names
                .get(name)
                .or_else(|| names.iter().find(|(n, _)| n.name == name.name).map(|e| e.1))
            {
                Some(target) => schema = target,
                None => return schema,
            },
            _ => return schema,
        }
    }
    schema
}

/// Debezium's `VariableScaleDecimal` (a record of `scale` and `value` bytes) as the
/// decimal it stands for.
fn variable_scale_decimal(fields: &[(String, Value)], record: &RecordSchema) -> Option<Json> {
    let connect_name = record
        .attributes
        .get("connect.name")
        .and_then(|v| v.as_str());
    if record.name.name != "VariableScaleDecimal" && connect_name != Some(VARIABLE_SCALE_DECIMAL) {
        return None;
    }
    let mut scale = None;
    let mut unscaled = None;
    for (name, value) in fields {
        match (name.as_str(), value) {
            ("scale", Value::Int(s)) => scale = usize::try_from(*s).ok(),
            ("value", Value::Bytes(b)) => unscaled = Some(b),
            _ => {}
        }
    }
    Some(Json::Str(decimal_string(unscaled?, scale?)))
}

/// Renders without schema help (scalars, and anything the schema does not explain).
fn plain(value: &Value) -> Json {
    let b64 = |bytes: &[u8]| Json::Str(base64::engine::general_purpose::STANDARD.encode(bytes));
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => Json::Int(i64::from(*i)),
        Value::Long(i)
        | Value::TimeMicros(i)
        | Value::TimestampMillis(i)
        | Value::TimestampMicros(i)
        | Value::TimestampNanos(i)
        | Value::LocalTimestampMillis(i)
        | Value::LocalTimestampMicros(i)
        | Value::LocalTimestampNanos(i) => Json::Int(*i),
        Value::Float(f) => Json::Float(*f),
        Value::Double(d) => Json::Double(*d),
        Value::Bytes(bytes) | Value::Fixed(_, bytes) => b64(bytes),
        Value::String(s) | Value::Enum(_, s) => Json::Str(s.clone()),
        Value::Union(_, inner) => plain(inner),
        Value::Array(items) => Json::Array(items.iter().map(plain).collect()),
        Value::Map(entries) => {
            let mut sorted: Vec<(&String, &Value)> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Json::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k.clone(), plain(v)))
                    .collect(),
            )
        }
        Value::Record(fields) => {
            Json::Object(fields.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
        }
        Value::Decimal(d) => match <Vec<u8>>::try_from(d) {
            Ok(bytes) => Json::Str(decimal_string(&bytes, 0)),
            Err(_) => Json::Null,
        },
        Value::BigDecimal(d) => Json::Str(d.to_string()),
        Value::Duration(d) => Json::Object(vec![
            (
                "months".to_owned(),
                Json::Int(i64::from(u32::from(d.months()))),
            ),
            ("days".to_owned(), Json::Int(i64::from(u32::from(d.days())))),
            (
                "millis".to_owned(),
                Json::Int(i64::from(u32::from(d.millis()))),
            ),
        ]),
        Value::Uuid(u) => Json::Str(u.to_string()),
    }
}

/// A two's-complement big-endian unscaled integer with `scale` as decimal text:
/// `([0x04, 0xe2], 2)` → `"12.50"`, `([0xff], 1)` → `"-0.1"`. Any length.
pub fn decimal_string(unscaled: &[u8], scale: usize) -> String {
    let negative = unscaled.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude: Vec<u8> = unscaled.to_vec();
    if negative {
        // Two's complement: invert and add one.
        for b in magnitude.iter_mut() {
            *b = !*b;
        }
        for b in magnitude.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
    }
    let mut digits = to_decimal_digits(magnitude);
    if scale > 0 {
        if digits.len() <= scale {
            digits = format!("{}{digits}", "0".repeat(scale + 1 - digits.len()));
        }
        digits.insert(digits.len() - scale, '.');
    }
    if negative && digits.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        digits.insert(0, '-');
    }
    digits
}

/// An unsigned big-endian integer of any length in decimal digits.
fn to_decimal_digits(mut number: Vec<u8>) -> String {
    const CHUNK: u32 = 1_000_000_000;
    let mut chunks: Vec<u32> = Vec::new(); // base 10^9, least significant first
    loop {
        while number.first() == Some(&0) {
            number.remove(0);
        }
        if number.is_empty() {
            break;
        }
        // number /= 10^9, collecting the remainder.
        let mut remainder: u64 = 0;
        for b in number.iter_mut() {
            let current = (remainder << 8) | u64::from(*b);
            *b = (current / u64::from(CHUNK)) as u8;
            remainder = current % u64::from(CHUNK);
        }
        chunks.push(remainder as u32);
    }
    let Some((most, rest)) = chunks.split_last() else {
        return "0".to_owned();
    };
    let mut text = most.to_string();
    for chunk in rest.iter().rev() {
        text.push_str(&format!("{chunk:09}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> Schema {
        Schema::parse_str(text).unwrap()
    }

    #[test]
    fn decimals_keep_their_scale() {
        assert_eq!(decimal_string(&[0x04, 0xe2], 2), "12.50");
        assert_eq!(decimal_string(&[0x05, 0x14], 2), "13.00");
        assert_eq!(decimal_string(&[0xff], 1), "-0.1");
        assert_eq!(decimal_string(&[0xfb, 0x1e], 2), "-12.50");
        assert_eq!(decimal_string(&[0x00], 3), "0.000");
        assert_eq!(decimal_string(&[], 2), "0.00");
        assert_eq!(decimal_string(&[0x07], 0), "7");
        assert_eq!(decimal_string(&[0x80], 0), "-128");
        // 2^80 = 1208925819614629174706176, beyond any machine integer.
        let mut big = vec![0x01];
        big.extend([0u8; 10]);
        assert_eq!(decimal_string(&big, 4), "120892581961462917470.6176");
        let mut negative_big = vec![0xff];
        negative_big.extend([0u8; 10]);
        assert_eq!(
            decimal_string(&negative_big, 0),
            "-1208925819614629174706176"
        );
    }

    #[test]
    fn a_debezium_row_renders_in_field_order_with_unions_unwrapped() {
        let s = schema(
            r#"{"type":"record","name":"Envelope","namespace":"db.public.items","fields":[
              {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
                {"name":"id","type":"int"},
                {"name":"price","type":["null",{"type":"bytes","scale":2,"precision":10,
                  "connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}],"default":null},
                {"name":"n","type":["null",{"type":"record","name":"VariableScaleDecimal",
                  "namespace":"io.debezium.data","fields":[{"name":"scale","type":"int"},
                  {"name":"value","type":"bytes"}],"connect.name":"io.debezium.data.VariableScaleDecimal"}],"default":null},
                {"name":"tags","type":["null",{"type":"array","items":["null","string"]}],"default":null},
                {"name":"attrs","type":{"type":"map","values":"long"}},
                {"name":"raw","type":"bytes"},
                {"name":"ratio","type":"double"},
                {"name":"mood","type":{"type":"enum","name":"Mood","symbols":["sad","happy"]}}
              ]}],"default":null},
              {"name":"after","type":["null","Value"],"default":null},
              {"name":"op","type":"string"}]}"#,
        );
        let names = names_of(&s);
        let row = Value::Record(vec![
            ("id".into(), Value::Int(1)),
            (
                "price".into(),
                Value::Union(1, Box::new(Value::Decimal(vec![0x04, 0xe2].into()))),
            ),
            (
                "n".into(),
                Value::Union(
                    1,
                    Box::new(Value::Record(vec![
                        ("scale".into(), Value::Int(3)),
                        ("value".into(), Value::Bytes(vec![0x30, 0x39])),
                    ])),
                ),
            ),
            (
                "tags".into(),
                Value::Union(
                    1,
                    Box::new(Value::Array(vec![
                        Value::Union(1, Box::new(Value::String("a".into()))),
                        Value::Union(0, Box::new(Value::Null)),
                    ])),
                ),
            ),
            (
                "attrs".into(),
                Value::Map(HashMap::from([
                    ("b".to_owned(), Value::Long(2)),
                    ("a".to_owned(), Value::Long(1)),
                ])),
            ),
            ("raw".into(), Value::Bytes(vec![0xde, 0xad])),
            ("ratio".into(), Value::Double(f64::NAN)),
            ("mood".into(), Value::Enum(1, "happy".into())),
        ]);
        let value = Value::Record(vec![
            ("before".into(), Value::Union(0, Box::new(Value::Null))),
            ("after".into(), Value::Union(1, Box::new(row))),
            ("op".into(), Value::String("c".into())),
        ]);
        // The datum round-trips through apache-avro's own encoder and decoder.
        let bytes = apache_avro::to_avro_datum(&s, value).unwrap();
        let decoded = apache_avro::from_avro_datum(&s, &mut &bytes[..], None).unwrap();
        assert_eq!(
            render(&decoded, &s, &names).to_line(),
            r#"{"before":null,"after":{"id":1,"price":"12.50","n":"12.345","tags":["a",null],"attrs":{"a":1,"b":2},"raw":"3q0=","ratio":"NaN","mood":"happy"},"op":"c"}"#
        );
    }

    #[test]
    fn floats_print_shortest() {
        assert_eq!(Json::Float(0.1).to_line(), "0.1");
        assert_eq!(Json::Double(2.5).to_line(), "2.5");
        assert_eq!(Json::Double(f64::NEG_INFINITY).to_line(), "\"-Infinity\"");
    }
}
