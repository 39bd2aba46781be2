//! Debezium's events as Kafka Connect's `JsonConverter` writes them, and the string
//! form of a Connect value as Connect's default header converter
//! (`SimpleHeaderConverter`, i.e. `Values.convertToString`) writes it; pure, no I/O.
//!
//! Walcast has one value mapping: every record is first written as the Avro datum of
//! its Connect schema (the same bytes the Avro format sends after the wire header).
//! The JSON forms are rendered from that datum and the Connect schema, so the JSON
//! formats and the Avro format can never disagree on a value:
//!
//! - `json_with_schema` (`schemas.enable=true`): `{"schema":<S>,"payload":<P>}` where S
//!   is `JsonConverter.asJsonSchema` — keys in its order: `type`, then `fields` /
//!   `items` / `keys`+`values`, `optional`, `name`, `version`, `doc`, `parameters`,
//!   `default`, and `field` (a struct field's name) last.
//! - `json` (`schemas.enable=false`): the payload alone.
//! - Payload values as `JsonConverter.convertToJson` writes them: integers and
//!   booleans as JSON numbers and booleans, `float`/`double` as Java's
//!   `Float.toString` / `Double.toString` (NaN and the infinities as the strings Jackson
//!   writes, `"NaN"`, `"Infinity"`, `"-Infinity"`), bytes in standard base64 (so a
//!   Connect `Decimal` is the base64 of its unscaled two's-complement bytes, the
//!   converter's default `decimal.format=BASE64`; `decimal_handling_mode = "double"` or
//!   `"string"` change the schema and therefore the JSON), structs as objects in field
//!   order, maps with string keys as objects, arrays as arrays. Strings are escaped as
//!   Jackson escapes them. A null stays null (walcast does not replace it with the
//!   column default; see the README's "differs from Debezium on purpose").
//! - A tombstone is a null Kafka value, and a table without a key has a null Kafka key,
//!   in every format.

use std::fmt::Write as _;

use base64::Engine as _;

use super::connect::{write_json_string, ConnectSchema, ConnectType, Json};
use super::event::ChangeEvent;
use super::table::{EncodeError, EncodeStats, TableCodec};
use super::wire;
use crate::model::value::Value;

/// An Avro datum that does not match the schema it is read with (never happens for
/// walcast's own data; reported rather than panicking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Avro datum does not match its schema: {0}")]
pub struct DatumError(pub &'static str);

type Result<T> = std::result::Result<T, DatumError>;

// ---------------------------------------------------------------------------------
// Schemas

/// The schema JSON `JsonConverter` embeds with `schemas.enable=true`.
#[cfg(test)]
pub fn schema_json(schema: &ConnectSchema) -> String {
    let mut out = String::with_capacity(1024);
    write_schema(&mut out, schema, None);
    out
}

fn type_name(ty: &ConnectType) -> &'static str {
    match ty {
        ConnectType::Int8 => "int8",
        ConnectType::Int16 => "int16",
        ConnectType::Int32 => "int32",
        ConnectType::Int64 => "int64",
        ConnectType::Float32 => "float",
        ConnectType::Float64 => "double",
        ConnectType::Boolean => "boolean",
        ConnectType::String => "string",
        ConnectType::Bytes => "bytes",
        ConnectType::Array(_) => "array",
        ConnectType::Map(..) => "map",
        ConnectType::Struct(_) => "struct",
    }
}

fn write_schema(out: &mut String, s: &ConnectSchema, field: Option<&str>) {
    out.push_str("{\"type\":\"");
    out.push_str(type_name(&s.ty));
    out.push('"');
    match &s.ty {
        ConnectType::Struct(fields) => {
            out.push_str(",\"fields\":[");
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(out, &f.schema, Some(&f.name));
            }
            out.push(']');
        }
        ConnectType::Array(items) => {
            out.push_str(",\"items\":");
            write_schema(out, items, None);
        }
        ConnectType::Map(key, value) => {
            out.push_str(",\"keys\":");
            write_schema(out, key, None);
            out.push_str(",\"values\":");
            write_schema(out, value, None);
        }
        _ => {}
    }
    out.push_str(",\"optional\":");
    out.push_str(if s.optional { "true" } else { "false" });
    if let Some(name) = &s.name {
        out.push_str(",\"name\":");
        write_json_string(out, name);
    }
    if let Some(v) = s.version {
        let _ = write!(out, ",\"version\":{v}");
    }
    if let Some(doc) = &s.doc {
        out.push_str(",\"doc\":");
        write_json_string(out, doc);
    }
    if !s.parameters.is_empty() {
        out.push_str(",\"parameters\":{");
        for (i, (k, v)) in s.parameters.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(out, k);
            out.push(':');
            write_json_string(out, v);
        }
        out.push('}');
    }
    if let Some(d) = &s.default {
        out.push_str(",\"default\":");
        write_default(out, s, d);
    }
    if let Some(name) = field {
        out.push_str(",\"field\":");
        write_json_string(out, name);
    }
    out.push('}');
}

/// A default kept in its Avro JSON form (bytes as an ISO-8859-1 string) as
/// `JsonConverter` writes it: bytes (and Decimal) in base64.
fn write_default(out: &mut String, s: &ConnectSchema, d: &Json) {
    match (&s.ty, d) {
        (ConnectType::Bytes, Json::Str(latin1)) => {
            let bytes: Vec<u8> = latin1.chars().map(|c| c as u32 as u8).collect();
            write_json_string(
                out,
                &base64::engine::general_purpose::STANDARD.encode(bytes),
            );
        }
        (_, Json::Float(f)) if !f.is_finite() => {
            write_json_string(out, &super::java::float_to_string(*f))
        }
        (_, Json::Double(f)) if !f.is_finite() => {
            write_json_string(out, &super::java::double_to_string(*f))
        }
        (_, d) => d.write(out),
    }
}

// ---------------------------------------------------------------------------------
// Reading the datum

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn long(&mut self) -> Result<i64> {
        let mut n: u64 = 0;
        let mut shift = 0;
        loop {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or(DatumError("truncated varint"))?;
            self.buf = rest;
            if shift >= 64 {
                return Err(DatumError("varint too long"));
            }
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if self.buf.len() < len {
            return Err(DatumError("truncated value"));
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| DatumError("negative length"))?;
        self.take(len)
    }

    fn f32(&mut self) -> Result<f32> {
        let b = self.take(4)?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    fn boolean(&mut self) -> Result<bool> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DatumError("bad boolean")),
        }
    }

    /// The item count of the next array/map block (0 ends it).
    fn block(&mut self) -> Result<u64> {
        let n = self.long()?;
        if n < 0 {
            // A negative count is followed by the block's size in bytes.
            self.long()?;
        }
        Ok(n.unsigned_abs())
    }

    /// Reads a union branch when `s` is written as a union; true if the value is null.
    fn is_null(&mut self, s: &ConnectSchema) -> Result<bool> {
        if !s.optional {
            return Ok(false);
        }
        // The same layout `ConnectSchema::to_avro_json` gives: ["null", T], except
        // [T, "null"] for a non-struct schema with a default.
        let null_branch = match s.ty {
            ConnectType::Struct(_) => 0,
            _ if s.default.is_some() => 1,
            _ => 0,
        };
        match self.long()? {
            b if b == null_branch => Ok(true),
            0 | 1 => Ok(false),
            _ => Err(DatumError("bad union branch")),
        }
    }
}

fn non_finite(out: &mut String, text: &str) {
    write_json_string(out, text);
}

// ---------------------------------------------------------------------------------
// JsonConverter payloads

/// The payload JSON of an Avro datum of `schema` (`JsonConverter.convertToJson`).
pub fn datum_to_json(schema: &ConnectSchema, datum: &[u8], out: &mut String) -> Result<()> {
    let mut r = Reader { buf: datum };
    json_value(&mut r, schema, out)?;
    if !r.buf.is_empty() {
        return Err(DatumError("bytes left after the datum"));
    }
    Ok(())
}

/// Reads the blocks of an Avro array or map datum, calling `item` for each element
/// with a comma written before all but the first.
fn each_item<'a>(
    r: &mut Reader<'a>,
    out: &mut String,
    mut item: impl FnMut(&mut Reader<'a>, &mut String) -> Result<()>,
) -> Result<()> {
    let mut first = true;
    loop {
        let n = r.block()?;
        if n == 0 {
            return Ok(());
        }
        for _ in 0..n {
            if !first {
                out.push(',');
            }
            first = false;
            item(r, out)?;
        }
    }
}

fn json_value(r: &mut Reader<'_>, s: &ConnectSchema, out: &mut String) -> Result<()> {
    if r.is_null(s)? {
        out.push_str("null");
        return Ok(());
    }
    match &s.ty {
        ConnectType::Boolean => out.push_str(if r.boolean()? { "true" } else { "false" }),
        ConnectType::Int8 | ConnectType::Int16 | ConnectType::Int32 | ConnectType::Int64 => {
            let _ = write!(out, "{}", r.long()?);
        }
        ConnectType::Float32 => {
            let f = r.f32()?;
            let text = super::java::float_to_string(f);
            if f.is_finite() {
                out.push_str(&text);
            } else {
                non_finite(out, &text);
            }
        }
        ConnectType::Float64 => {
            let f = r.f64()?;
            let text = super::java::double_to_string(f);
            if f.is_finite() {
                out.push_str(&text);
            } else {
                non_finite(out, &text);
            }
        }
        ConnectType::String => {
            write_json_string(out, &String::from_utf8_lossy(r.bytes()?));
        }
        ConnectType::Bytes => {
            write_json_string(
                out,
                &base64::engine::general_purpose::STANDARD.encode(r.bytes()?),
            );
        }
        ConnectType::Array(items) => {
            out.push('[');
            each_item(r, out, |r, out| json_value(r, items, out))?;
            out.push(']');
        }
        ConnectType::Map(key, value) if key.ty != ConnectType::String => {
            // JsonConverter writes a map with other keys as an array of [key, value]
            // pairs (the datum is AvroData's array of MapEntry records).
            out.push('[');
            each_item(r, out, |r, out| {
                out.push('[');
                json_value(r, key, out)?;
                out.push(',');
                json_value(r, value, out)?;
                out.push(']');
                Ok(())
            })?;
            out.push(']');
        }
        ConnectType::Map(_, value) => {
            out.push('{');
            each_item(r, out, |r, out| {
                write_json_string(out, &String::from_utf8_lossy(r.bytes()?));
                out.push(':');
                json_value(r, value, out)
            })?;
            out.push('}');
        }
        ConnectType::Struct(fields) => {
            out.push('{');
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, &f.name);
                out.push(':');
                json_value(r, &f.schema, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Connect's string form (headers)

// ---------------------------------------------------------------------------------
// Records

/// One record shape (a key or a value schema) in a JSON format: the schema JSON is
/// rendered once; each record is the datum rendered as its payload.
#[derive(Debug, Clone)]
pub struct JsonRecord {
    schema: ConnectSchema,
    /// `{"schema":<S>,"payload":` for `json_with_schema`.
    prefix: Option<String>,
}

impl JsonRecord {
    pub fn new(schema: &ConnectSchema, with_schema: bool) -> Self {
        JsonRecord {
            prefix: with_schema.then(|| {
                let mut p = String::from("{\"schema\":");
                write_schema(&mut p, schema, None);
                p.push_str(",\"payload\":");
                p
            }),
            schema: schema.clone(),
        }
    }

    pub fn schema(&self) -> &ConnectSchema {
        &self.schema
    }

    /// `json_with_schema` (else `json`).
    pub fn with_schema(&self) -> bool {
        self.prefix.is_some()
    }

    /// The record for an Avro `datum` of the schema into `out` (cleared first).
    pub fn write(&self, datum: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let mut text = String::with_capacity(datum.len() * 2 + 16);
        if let Some(p) = &self.prefix {
            text.push_str(p);
        }
        datum_to_json(&self.schema, datum, &mut text)?;
        if self.prefix.is_some() {
            text.push('}');
        }
        out.clear();
        out.extend_from_slice(text.as_bytes());
        Ok(())
    }

    /// As [`JsonRecord::write`] for a record framed in the Confluent wire format (the
    /// schema id is ignored).
    pub fn write_framed(&self, framed: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let (_, datum) = wire::split(framed).ok_or(DatumError("not a framed record"))?;
        self.write(datum, out)
    }
}

/// A null payload as Kafka Connect's JsonConverter writes it for a null value that has
/// a schema: `null`, or with the schema `{"schema":<S>,"payload":null}`.
pub fn null_payload(schema: &ConnectSchema, with_schema: bool) -> Vec<u8> {
    if !with_schema {
        return b"null".to_vec();
    }
    let mut text = String::from("{\"schema\":");
    write_schema(&mut text, schema, None);
    text.push_str(",\"payload\":null}");
    text.into_bytes()
}

/// A table version's key and envelope in a JSON format, over its [`TableCodec`].
#[derive(Debug, Clone)]
pub struct JsonTableCodec {
    key: Option<JsonRecord>,
    value: JsonRecord,
}

impl JsonTableCodec {
    /// `with_schema`: `json_with_schema` (else `json`).
    pub fn new(codec: &TableCodec, with_schema: bool) -> Self {
        JsonTableCodec {
            key: codec
                .key_connect_schema()
                .map(|k| JsonRecord::new(k, with_schema)),
            value: JsonRecord::new(codec.envelope_connect_schema(), with_schema),
        }
    }

    /// The key of `row` into `out` (cleared first).
    pub fn encode_key(
        &self,
        codec: &TableCodec,
        row: &[Value],
        out: &mut Vec<u8>,
    ) -> std::result::Result<EncodeStats, EncodeError> {
        let mut avro = Vec::with_capacity(64);
        let stats = codec.encode_key(row, 0, &mut avro)?;
        let key = self.key.as_ref().ok_or_else(|| EncodeError::NoKey {
            table: codec.table().to_string(),
        })?;
        key.write_framed(&avro, out)
            .map_err(|e| transcode_error(codec, e))?;
        Ok(stats)
    }

    /// The envelope of `event` into `out` (cleared first).
    pub fn encode_envelope(
        &self,
        codec: &TableCodec,
        event: &ChangeEvent,
        out: &mut Vec<u8>,
    ) -> std::result::Result<EncodeStats, EncodeError> {
        let mut avro = Vec::with_capacity(256);
        let mut stats = EncodeStats::default();
        codec.write_envelope(event, &mut avro, &mut stats)?;
        self.value
            .write(&avro, out)
            .map_err(|e| transcode_error(codec, e))?;
        Ok(stats)
    }
}

fn transcode_error(codec: &TableCodec, e: DatumError) -> EncodeError {
    EncodeError::Transcode {
        table: codec.table().to_string(),
        reason: e.0,
    }
}

/// The key of `row` as Kafka Connect's default header converter writes it: the value
/// Debezium puts in its `__debezium.oldkey` / `__debezium.newkey` headers.
pub fn key_header_value(
    codec: &TableCodec,
    row: &[Value],
) -> std::result::Result<String, EncodeError> {
    let schema = codec
        .key_connect_schema()
        .ok_or_else(|| EncodeError::NoKey {
            table: codec.table().to_string(),
        })?;
    let mut avro = Vec::with_capacity(64);
    codec.encode_key(row, 0, &mut avro)?;
    let datum = &avro[wire::HEADER_LEN..];
    datum_to_connect_string(schema, datum).map_err(|e| transcode_error(codec, e))
}

mod connect_string;
#[cfg(test)]
mod tests;

pub(crate) use connect_string::datum_to_connect_string;
