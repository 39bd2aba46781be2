//! Avro schema text → the canonical text Confluent's registry stores and compares; no I/O.
//!
//! Confluent keeps `AvroSchema.canonicalString()`, which is Avro Java's
//! `Schema.toString()`: compact JSON, reserved keys in a fixed order (`type`, `name`,
//! `namespace`, `doc`, `fields`/`symbols`/`size`/`items`/`values`, then every other
//! property in the order it was written, then `aliases`), a primitive without properties
//! collapsed to its name (`{"type":"string"}` → `"string"`), namespaces written only where
//! they differ from the enclosing one, and a named type that is used a second time written
//! as its (relative) name. Two texts that differ only in whitespace, key order of the
//! reserved keys or redundant namespaces therefore get the same canonical text, and so the
//! same schema id. Unlike Avro's "Parsing Canonical Form", this keeps docs, defaults and
//! custom properties (`connect.name`, `connect.parameters`, `logicalType`, ...), which
//! Debezium-aware consumers need.
//!
//! The text is then parsed with apache-avro, so a schema that Avro rejects is an error here.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A JSON value that keeps object keys in the order they were written (Avro Java keeps
/// custom properties in insertion order, and so must the canonical text).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn text(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Json::String(s)) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(self) {
            Ok(s) => f.write_str(&s),
            Err(_) => f.write_str("<unprintable JSON>"),
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
                serde_json::Number::from_f64(v)
                    .map(Json::Number)
                    .ok_or_else(|| E::custom("a number that is not finite"))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::String(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Json, E> {
                Ok(Json::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries: Vec<(String, Json)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Json>()? {
                    // A repeated key keeps its first position and its last value, as
                    // Jackson's ObjectNode does.
                    match entries.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = value,
                        None => entries.push((key, value)),
                    }
                }
                Ok(Json::Object(entries))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::Number(n) => n.serialize(serializer),
            Json::String(s) => serializer.serialize_str(s),
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];
/// Names of Avro Java's `Schema.Type`s: a named type called one of these is always written
/// with its namespace.
const TYPE_NAMES: [&str; 14] = [
    "record", "enum", "array", "map", "union", "fixed", "string", "bytes", "int", "long", "float",
    "double", "boolean", "null",
];
const SCHEMA_RESERVED: [&str; 10] = [
    "doc",
    "fields",
    "items",
    "name",
    "namespace",
    "size",
    "symbols",
    "values",
    "type",
    "aliases",
];
const FIELD_RESERVED: [&str; 6] = ["default", "doc", "name", "order", "type", "aliases"];

/// The canonical text of an Avro schema (see the module docs), or why it is not a valid
/// schema.
pub fn canonical_form(text: &str) -> Result<String, String> {
    let json: Json =
        serde_json::from_str(text).map_err(|e| format!("the schema is not valid JSON: {e}"))?;
    let mut writer = Writer {
        known: HashSet::new(),
        out: String::with_capacity(text.len()),
    };
    writer.schema(&json, None)?;
    let canonical = writer.out;
    apache_avro::Schema::parse_str(&canonical).map_err(|e| e.to_string())?;
    Ok(canonical)
}

/// A full Avro name split into its namespace and simple name.
struct Name {
    space: Option<String>,
    name: String,
}

impl Name {
    fn new(name: &str, space: Option<&str>) -> Name {
        let (space, name) = match name.rfind('.') {
            Some(dot) => (Some(&name[..dot]), &name[dot + 1..]),
            None => (space, name),
        };
        Name {
            space: space.filter(|s| !s.is_empty()).map(str::to_owned),
            name: name.to_owned(),
        }
    }

    fn full(&self) -> String {
        match &self.space {
            Some(space) => format!("{space}.{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The name as Avro Java writes a reference to it from inside `current`.
    fn qualified(&self, current: Option<&str>) -> String {
        if self.space.as_deref() == current
            && self.space.is_some()
            && !TYPE_NAMES.contains(&self.name.as_str())
        {
            self.name.clone()
        } else {
            self.full()
        }
    }
}

struct Writer {
    known: HashSet<String>,
    out: String,
}

impl Writer {
    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn string(&mut self, s: &str) {
        // Serializing a &str cannot fail.
        self.out
            .push_str(&serde_json::to_string(s).unwrap_or_default());
    }

    fn key(&mut self, key: &str) {
        if !self.out.ends_with('{') {
            self.out.push(',');
        }
        self.string(key);
        self.out.push(':');
    }

    fn value(&mut self, value: &Json) {
        self.out.push_str(&value.to_string());
    }

    fn props(&mut self, node: &Json, reserved: &[&str]) {
        if let Json::Object(entries) = node {
            for (k, v) in entries {
                if !reserved.contains(&k.as_str()) {
                    self.key(k);
                    self.value(v);
                }
            }
        }
    }

    fn schema(&mut self, node: &Json, namespace: Option<&str>) -> Result<(), String> {
        match node {
            Json::String(name) => self.reference(name, namespace),
            Json::Array(branches) => {
                self.raw("[");
                for (i, branch) in branches.iter().enumerate() {
                    if i > 0 {
                        self.raw(",");
                    }
                    self.schema(branch, namespace)?;
                }
                self.raw("]");
                Ok(())
            }
            Json::Object(_) => self.object(node, namespace),
            other => Err(format!("Schema not yet supported: {other}")),
        }
    }

    fn reference(&mut self, name: &str, namespace: Option<&str>) -> Result<(), String> {
        if PRIMITIVES.contains(&name) {
            self.string(name);
            return Ok(());
        }
        let resolved = match namespace {
            Some(ns) if !name.contains('.') => format!("{ns}.{name}"),
            _ => name.to_owned(),
        };
        let full = if self.known.contains(&resolved) {
            resolved
        } else if self.known.contains(name) {
            name.to_owned()
        } else {
            return Err(format!(
                "\"{name}\" is not a defined name. The type of a field must be a primitive \
                 type, a named type defined earlier in the schema, or a type definition"
            ));
        };
        let qualified = Name::new(&full, None).qualified(namespace);
        self.string(&qualified);
        Ok(())
    }

    fn object(&mut self, node: &Json, namespace: Option<&str>) -> Result<(), String> {
        let Some(ty) = node.text("type") else {
            return Err(format!("No type: {node}"));
        };
        match ty {
            t if PRIMITIVES.contains(&t) => {
                let has_props = matches!(node, Json::Object(entries)
                    if entries.iter().any(|(k, _)| !SCHEMA_RESERVED.contains(&k.as_str())));
                if has_props {
                    self.raw("{");
                    self.key("type");
                    self.string(t);
                    self.props(node, &SCHEMA_RESERVED);
                    self.raw("}");
                } else {
                    self.string(t);
                }
                Ok(())
            }
            "record" | "error" => self.record(node, ty, namespace),
            "enum" => self.enumeration(node, namespace),
            "fixed" => self.fixed(node, namespace),
            "array" | "map" => {
                let child = if ty == "array" { "items" } else { "values" };
                let Some(inner) = node.get(child) else {
                    return Err(format!(
                        "{} has no {child} type: {node}",
                        if ty == "array" { "Array" } else { "Map" }
                    ));
                };
                self.raw("{");
                self.key("type");
                self.string(ty);
                self.key(child);
                self.schema(inner, namespace)?;
                self.props(node, &SCHEMA_RESERVED);
                self.raw("}");
                Ok(())
            }
            _ => Err(format!(
                "A schema \"type\" MUST be a primitive type or one of \"enum\", \"fixed\", \
                 \"record\", \"error\", \"array\" or \"map\"; found \"{ty}\""
            )),
        }
    }

    /// Writes `"name"`, `"namespace"` (where it differs from the enclosing one) and `"doc"`,
    /// and registers the name; a name defined twice is an error, as in Avro Java.
    fn define(&mut self, node: &Json, namespace: Option<&str>) -> Result<Name, String> {
        let Some(raw) = node.text("name") else {
            return Err(format!("No name in schema: {node}"));
        };
        let space = node.text("namespace").or(namespace);
        let name = Name::new(raw, space);
        let full = name.full();
        if !self.known.insert(full.clone()) {
            return Err(format!("Can't redefine: {full}"));
        }
        self.key("name");
        self.string(&name.name);
        match (&name.space, namespace) {
            (Some(space), current) if Some(space.as_str()) != current => {
                self.key("namespace");
                self.string(space);
            }
            (None, Some(_)) => {
                self.key("namespace");
                self.string("");
            }
            _ => {}
        }
        if let Some(doc) = node.text("doc") {
            self.key("doc");
            self.string(doc);
        }
        Ok(name)
    }

    fn aliases(&mut self, node: &Json, owner: &Name) -> Result<(), String> {
        let aliases = alias_list(node)?;
        if aliases.is_empty() {
            return Ok(());
        }
        self.key("aliases");
        self.raw("[");
        for (i, alias) in aliases.iter().enumerate() {
            if i > 0 {
                self.raw(",");
            }
            let alias = Name::new(alias, owner.space.as_deref());
            self.string(&alias.qualified(owner.space.as_deref()));
        }
        self.raw("]");
        Ok(())
    }

    fn record(&mut self, node: &Json, ty: &str, namespace: Option<&str>) -> Result<(), String> {
        self.raw("{");
        self.key("type");
        self.string(ty);
        let name = self.define(node, namespace)?;
        let Some(Json::Array(fields)) = node.get("fields") else {
            return Err(format!("Record has no fields: {node}"));
        };
        self.key("fields");
        self.raw("[");
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                self.raw(",");
            }
            self.field(field, name.space.as_deref())?;
        }
        self.raw("]");
        self.props(node, &SCHEMA_RESERVED);
        self.aliases(node, &name)?;
        self.raw("}");
        Ok(())
    }

    fn field(&mut self, field: &Json, namespace: Option<&str>) -> Result<(), String> {
        if !matches!(field, Json::Object(_)) {
            return Err(format!("A record field must be a JSON object: {field}"));
        }
        let Some(name) = field.text("name") else {
            return Err(format!("No field name: {field}"));
        };
        let Some(ty) = field.get("type") else {
            return Err(format!("No field type: {field}"));
        };
        self.raw("{");
        self.key("name");
        self.string(name);
        self.key("type");
        self.schema(ty, namespace)?;
        if let Some(doc) = field.text("doc") {
            self.key("doc");
            self.string(doc);
        }
        if let Some(default) = field.get("default") {
            self.key("default");
            // Avro Java turns a string default of a float/double field into a number.
            let floating = match ty {
                Json::String(t) => t == "float" || t == "double",
                Json::Object(_) => matches!(ty.text("type"), Some("float" | "double")),
                _ => false,
            };
            let converted = match default {
                Json::String(s) if floating => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Json::Number),
                _ => None,
            };
            self.value(converted.as_ref().unwrap_or(default));
        }
        if let Some(order) = field.get("order") {
            let order = match order {
                Json::String(s) => s.to_ascii_lowercase(),
                other => return Err(format!("Invalid field order {other} in field {name}")),
            };
            match order.as_str() {
                "ascending" => {}
                "descending" | "ignore" => {
                    self.key("order");
                    self.string(&order);
                }
                _ => return Err(format!("Invalid field order \"{order}\" in field {name}")),
            }
        }
        let aliases = alias_list(field)?;
        if !aliases.is_empty() {
            self.key("aliases");
            self.value(&Json::Array(
                aliases.into_iter().map(Json::String).collect(),
            ));
        }
        self.props(field, &FIELD_RESERVED);
        self.raw("}");
        Ok(())
    }

    fn enumeration(&mut self, node: &Json, namespace: Option<&str>) -> Result<(), String> {
        self.raw("{");
        self.key("type");
        self.string("enum");
        let name = self.define(node, namespace)?;
        let Some(Json::Array(symbols)) = node.get("symbols") else {
            return Err(format!("Enum has no symbols: {node}"));
        };
        self.key("symbols");
        self.raw("[");
        for (i, symbol) in symbols.iter().enumerate() {
            let Json::String(symbol) = symbol else {
                return Err(format!("Enum symbols must be strings: {node}"));
            };
            if i > 0 {
                self.raw(",");
            }
            self.string(symbol);
        }
        self.raw("]");
        if let Some(default) = node.text("default") {
            self.key("default");
            self.string(default);
        }
        let mut reserved = SCHEMA_RESERVED.to_vec();
        reserved.push("default");
        self.props(node, &reserved);
        self.aliases(node, &name)?;
        self.raw("}");
        Ok(())
    }

    fn fixed(&mut self, node: &Json, namespace: Option<&str>) -> Result<(), String> {
        self.raw("{");
        self.key("type");
        self.string("fixed");
        let name = self.define(node, namespace)?;
        let size = match node.get("size") {
            Some(Json::Number(n)) => n.as_u64().filter(|s| *s <= i32::MAX as u64),
            _ => None,
        };
        let Some(size) = size else {
            return Err(format!("Invalid or no size: {node}"));
        };
        self.key("size");
        self.raw(&size.to_string());
        self.props(node, &SCHEMA_RESERVED);
        self.aliases(node, &name)?;
        self.raw("}");
        Ok(())
    }
}

/// The `aliases` of a named type or field, de-duplicated in order.
fn alias_list(node: &Json) -> Result<Vec<String>, String> {
    match node.get("aliases") {
        None => Ok(Vec::new()),
        Some(Json::Array(items)) => {
            let mut out: Vec<String> = Vec::new();
            for item in items {
                let Json::String(alias) = item else {
                    return Err(format!("alias not a string: {item}"));
                };
                if !out.contains(alias) {
                    out.push(alias.clone());
                }
            }
            Ok(out)
        }
        Some(other) => Err(format!("aliases not an array: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_form;

    #[test]
    fn primitive_without_properties_collapses() {
        assert_eq!(
            canonical_form(r#"{"type": "string"}"#).unwrap(),
            r#""string""#
        );
        assert_eq!(canonical_form(r#" "long" "#).unwrap(), r#""long""#);
        assert_eq!(
            canonical_form(
                r#"{"connect.name": "io.debezium.time.MicroTimestamp", "type": "long"}"#
            )
            .unwrap(),
            r#"{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}"#
        );
    }

    #[test]
    fn record_keys_are_ordered_like_avro_java() {
        let text = r#"{
            "fields": [
                {"default": null, "type": ["null", {"type": "string"}], "name": "b", "doc": "d"},
                {"name": "a", "type": "int", "order": "DESCENDING", "x-prop": 1, "aliases": ["a0"]}
            ],
            "connect.name": "x.y.Value",
            "namespace": "x.y", "name": "Value", "type": "record", "doc": "the doc",
            "aliases": ["Old", "x.y.Older"]
        }"#;
        assert_eq!(
            canonical_form(text).unwrap(),
            r#"{"type":"record","name":"Value","namespace":"x.y","doc":"the doc","fields":[{"name":"b","type":["null","string"],"doc":"d","default":null},{"name":"a","type":"int","order":"descending","aliases":["a0"],"x-prop":1}],"connect.name":"x.y.Value","aliases":["Old","Older"]}"#
        );
    }

    #[test]
    fn namespaces_are_written_only_where_they_change() {
        let text = r#"{"type":"record","name":"a.b.Outer","fields":[
            {"name":"i","type":{"type":"record","name":"Inner","namespace":"a.b","fields":[]}},
            {"name":"j","type":"a.b.Inner"},
            {"name":"k","type":"Inner"},
            {"name":"e","type":{"type":"enum","name":"c.E","symbols":["X","Y"],"default":"X"}},
            {"name":"f","type":{"type":"fixed","name":"F","size":16}},
            {"name":"g","type":"c.E"}
        ]}"#;
        assert_eq!(
            canonical_form(text).unwrap(),
            r#"{"type":"record","name":"Outer","namespace":"a.b","fields":[{"name":"i","type":{"type":"record","name":"Inner","fields":[]}},{"name":"j","type":"Inner"},{"name":"k","type":"Inner"},{"name":"e","type":{"type":"enum","name":"E","namespace":"c","symbols":["X","Y"],"default":"X"}},{"name":"f","type":{"type":"fixed","name":"F","size":16}},{"name":"g","type":"c.E"}]}"#
        );
    }

    #[test]
    fn equivalent_texts_have_one_canonical_form() {
        let a = r#"{"type":"record","name":"R","fields":[{"name":"x","type":"long"}]}"#;
        let b = "{ \"name\" : \"R\",\n \"fields\" : [ { \"type\" : {\"type\":\"long\"}, \"name\" : \"x\" } ],\n \"type\" : \"record\" }";
        assert_eq!(canonical_form(a).unwrap(), canonical_form(b).unwrap());
        let c = r#"{"type":"record","name":"R","fields":[{"name":"x","type":"long","default":0}]}"#;
        assert_ne!(canonical_form(a).unwrap(), canonical_form(c).unwrap());
    }

    #[test]
    fn invalid_schemas_are_refused() {
        for bad in [
            "not json",
            r#"{"type":"record","name":"R"}"#,
            r#"{"type":"nope"}"#,
            r#"{"type":"record","name":"R","fields":[{"name":"x","type":"Missing"}]}"#,
            r#"{"type":"fixed","name":"F"}"#,
            r#"{"type":"enum","name":"E"}"#,
            r#"42"#,
        ] {
            assert!(canonical_form(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn string_default_of_a_double_becomes_a_number() {
        let text = r#"{"type":"record","name":"R","fields":[{"name":"d","type":"double","default":"1.5"}]}"#;
        assert!(canonical_form(text).unwrap().contains(r#""default":1.5"#));
    }
}
