//! The outbox router's `table_expand_json_payload` (Debezium's
//! `table.expand.json.payload`): a JSON object in the payload column becomes a struct
//! whose Connect schema is inferred from that one document, as Debezium's
//! `JsonSchemaData` infers it, so consumers get typed Avro instead of a JSON string.
//!
//! The inference, per document: an object is an optional struct named by its path from
//! the payload column (`payload`, `payload.address`, …) with its members in document
//! order; a string, boolean, integer (int32 when it fits, else int64) or other number
//! (float64) is an optional field of that type; a null member is left out (or, with
//! `optional_bytes`, an optional bytes field holding null); an array is an optional
//! array of its first non-null element's type, all its non-null elements having that
//! type, an array of objects having the union of their members (the first type seen
//! wins); an empty array is left out. Every field is optional.
//!
//! A document this cannot type (not an object, not JSON, an array mixing types, an
//! array of nulls, an integer beyond 64 bits, arrays of arrays of objects) is not
//! expanded: the payload goes out as the column's own value, with a warning from the
//! caller. (Debezium passes some of these through the same way and fails the record
//! on the others; walcast never fails an outbox row for the shape of its JSON.)

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::connect::{field, ConnectSchema, ConnectType};
use super::encode::{put_bool, put_f64, put_int, put_long, put_str};

/// What a JSON `null` member becomes (Debezium's `table.json.payload.null.behavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NullBehavior {
    /// Left out of the struct.
    #[default]
    Ignore,
    /// An optional bytes field holding null.
    OptionalBytes,
}

/// Why a payload was not expanded (the caller's warning names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotExpanded(pub &'static str);

impl fmt::Display for NotExpanded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// An expanded payload: its schema (an optional struct) and its Avro datum (with the
/// union branch of the optional).
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    pub schema: ConnectSchema,
    pub datum: Vec<u8>,
}

/// Expands `text`, the payload column `column`'s JSON, into a struct named `column`.
pub fn expand(text: &str, column: &str, nulls: NullBehavior) -> Result<Expanded, NotExpanded> {
    if !text.starts_with('{') {
        return Err(NotExpanded("the payload is not a JSON object"));
    }
    let doc: Doc =
        serde_json::from_str(text).map_err(|_| NotExpanded("the payload is not valid JSON"))?;
    let schema = schema_of(&doc, Some(column), nulls)?
        .ok_or(NotExpanded("the payload is not a JSON object"))?;
    let mut datum = Vec::with_capacity(text.len());
    write(&doc, &schema, &mut datum)?;
    Ok(Expanded { schema, datum })
}

/// A JSON document with object members in document order (a repeated member keeps its
/// first place and its last value, as Jackson's tree does).
#[derive(Debug, Clone, PartialEq)]
enum Doc {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64, which Debezium cannot put into its struct either.
    BigInt,
    Float(f64),
    Str(String),
    Array(Vec<Doc>),
    Object(Vec<(String, Doc)>),
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Doc, D::Error> {
        deserializer.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Doc, E> {
        Ok(Doc::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Doc, E> {
        Ok(Doc::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Doc, E> {
        Ok(Doc::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Doc, E> {
        Ok(i64::try_from(v).map_or(Doc::BigInt, Doc::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Doc, E> {
        Ok(Doc::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Doc, E> {
        Ok(Doc::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Doc, E> {
        Ok(Doc::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Doc::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
        let mut members: Vec<(String, Doc)> = Vec::new();
        while let Some((name, value)) = map.next_entry::<String, Doc>()? {
            match members.iter_mut().find(|(n, _)| *n == name) {
                Some(member) => member.1 = value,
                None => members.push((name, value)),
            }
        }
        Ok(Doc::Object(members))
    }
}

/// The JSON kinds an array's non-null elements must share (numbers by the Connect
/// type they infer).
fn kind(doc: &Doc) -> &'static str {
    match doc {
        Doc::Null => "null",
        Doc::Bool(_) => "boolean",
        Doc::Int(v) if i32::try_from(*v).is_ok() => "int32",
        Doc::Int(_) => "int64",
        Doc::BigInt => "bigint",
        Doc::Float(_) => "float64",
        Doc::Str(_) => "string",
        Doc::Array(_) => "array",
        Doc::Object(_) => "object",
    }
}

/// The schema of `doc`, an object's struct named `key`; `None` for what is left out (a
/// null under `Ignore`, an empty array).
fn schema_of(
    doc: &Doc,
    key: Option<&str>,
    nulls: NullBehavior,
) -> Result<Option<ConnectSchema>, NotExpanded> {
    let schema = match doc {
        Doc::Null => match nulls {
            NullBehavior::Ignore => return Ok(None),
            NullBehavior::OptionalBytes => ConnectSchema::bytes(),
        },
        Doc::Bool(_) => ConnectSchema::boolean(),
        Doc::Int(v) if i32::try_from(*v).is_ok() => ConnectSchema::int32(),
        Doc::Int(_) => ConnectSchema::int64(),
        Doc::BigInt => return Err(NotExpanded("an integer is beyond 64 bits")),
        Doc::Float(_) => ConnectSchema::float64(),
        Doc::Str(_) => ConnectSchema::string(),
        Doc::Object(members) => {
            let name = key.ok_or(NotExpanded(
                "an array of arrays holds objects, which have no name",
            ))?;
            let mut fields = Vec::with_capacity(members.len());
            for (member, value) in members {
                let path = format!("{name}.{member}");
                if let Some(schema) = schema_of(value, Some(&path), nulls)? {
                    fields.push(field(member.clone(), schema));
                }
            }
            ConnectSchema::record(name, fields)
        }
        Doc::Array(items) => {
            let present: Vec<&Doc> = items.iter().filter(|d| **d != Doc::Null).collect();
            let Some(first) = present.first() else {
                return match (items.is_empty(), nulls) {
                    (true, _) => Ok(None),
                    (false, NullBehavior::OptionalBytes) => Ok(Some(
                        ConnectSchema::array(ConnectSchema::bytes().optional()).optional(),
                    )),
                    (false, NullBehavior::Ignore) => Err(NotExpanded("an array holds only nulls")),
                };
            };
            if present.iter().any(|d| kind(d) != kind(first)) {
                return Err(NotExpanded("an array mixes types"));
            }
            let element = if matches!(first, Doc::Object(_)) {
                let mut merged: Option<ConnectSchema> = None;
                for item in &present {
                    if let Some(schema) = schema_of(item, key, nulls)? {
                        merged = Some(match merged {
                            None => schema,
                            Some(into) => merge(into, schema),
                        });
                    }
                }
                merged
            } else {
                schema_of(first, None, nulls)?
            };
            let element = element.ok_or(NotExpanded("an array's elements have no type"))?;
            ConnectSchema::array(element)
        }
    };
    Ok(Some(schema.optional()))
}

/// Two element structs of one array as one: `into`'s fields, then `other`'s new ones;
/// a field in both keeps `into`'s type unless that is bytes (a null seen first).
fn merge(mut into: ConnectSchema, other: ConnectSchema) -> ConnectSchema {
    let ConnectType::Struct(extra) = other.ty else {
        return into;
    };
    if let ConnectType::Struct(fields) = &mut into.ty {
        for f in extra {
            match fields.iter_mut().find(|e| e.name == f.name) {
                Some(existing) if existing.schema.ty == ConnectType::Bytes => {
                    existing.schema = f.schema
                }
                Some(_) => {}
                None => fields.push(f),
            }
        }
    }
    into
}

/// Writes `doc` as the Avro datum of `schema` (optional: the union branch first); a
/// value that does not fit the schema inferred from another element fails.
fn write(doc: &Doc, schema: &ConnectSchema, out: &mut Vec<u8>) -> Result<(), NotExpanded> {
    if *doc == Doc::Null {
        put_long(out, 0);
        return Ok(());
    }
    put_long(out, 1);
    let mismatch = NotExpanded("array elements disagree on a member's type");
    match (&schema.ty, doc) {
        (ConnectType::Boolean, Doc::Bool(b)) => put_bool(out, *b),
        (ConnectType::Int32, Doc::Int(v)) => put_int(out, i32::try_from(*v).map_err(|_| mismatch)?),
        (ConnectType::Int64, Doc::Int(v)) => put_long(out, *v),
        (ConnectType::Float64, Doc::Float(v)) => put_f64(out, *v),
        (ConnectType::String, Doc::Str(s)) => put_str(out, s),
        (ConnectType::Array(element), Doc::Array(items)) => {
            if !items.is_empty() {
                put_long(out, items.len() as i64);
                for item in items {
                    write(item, element, out)?;
                }
            }
            put_long(out, 0);
        }
        (ConnectType::Struct(fields), Doc::Object(members)) => {
            for f in fields {
                match members.iter().find(|(name, _)| *name == f.name) {
                    Some((_, value)) => write(value, &f.schema, out)?,
                    None => put_long(out, 0),
                }
            }
        }
        _ => return Err(mismatch),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
