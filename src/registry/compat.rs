//! Schema compatibility levels and the Avro compatibility check between versions; no I/O.
//!
//! BACKWARD means consumers using the new schema can read data written with the old one
//! (`can_read(writer = old, reader = new)`); FORWARD means consumers still on the old schema
//! can read data written with the new one; FULL is both. The plain levels compare with the
//! latest version only, the `_TRANSITIVE` ones with every (not deleted) version.

use std::fmt;
use std::str::FromStr;

use apache_avro::error::CompatibilityError;
use apache_avro::schema::SchemaKind;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A subject's (or the registry's global) compatibility level, as Confluent names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompatibilityLevel {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    pub const ALL: [CompatibilityLevel; 7] = [
        Self::None,
        Self::Backward,
        Self::BackwardTransitive,
        Self::Forward,
        Self::ForwardTransitive,
        Self::Full,
        Self::FullTransitive,
    ];

    /// Confluent's name: `NONE`, `BACKWARD`, `FULL_TRANSITIVE`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Parses a level name, ignoring case (Confluent accepts `backward` too).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether the check runs against every earlier version rather than the latest only.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s).ok_or_else(|| {
            format!(
                "unknown compatibility level \"{s}\"; use one of NONE, BACKWARD, \
                 BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE"
            )
        })
    }
}

impl Serialize for CompatibilityLevel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CompatibilityLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks `new` against `previous` (ascending by version; each with its version number) at
/// `level`. Returns one message per problem; empty means compatible.
pub fn check(level: CompatibilityLevel, new: &Schema, previous: &[(u32, &Schema)]) -> Vec<String> {
    let against: &[(u32, &Schema)] = if level.is_transitive() {
        previous
    } else {
        match previous.last() {
            Some(_) => &previous[previous.len() - 1..],
            None => &[],
        }
    };
    let mut problems = Vec::new();
    let new = &without_decimals(new);
    for (version, old) in against {
        let old = &without_decimals(old);
        if level.backward() {
            if let Err(e) = SchemaCompatibility::can_read(old, new) {
                problems.push(format!(
                    "the new schema cannot read data written with version {version} \
                     (backward check): {}",
                    explain(old, new, &e)
                ));
            }
        }
        if level.forward() {
            if let Err(e) = SchemaCompatibility::can_read(new, old) {
                problems.push(format!(
                    "version {version} cannot read data written with the new schema \
                     (forward check): {}",
                    explain(new, old, &e)
                ));
            }
        }
    }
    problems
}

/// `schema` with each decimal replaced by its underlying bytes or fixed type. Avro's
/// schema resolution (and so Confluent's check) ignores logical types, while
/// apache-avro 0.21 cannot compare two decimals at all and would call every schema with
/// a `numeric` column incompatible with its next version.
fn without_decimals(schema: &Schema) -> Schema {
    use apache_avro::schema::UnionSchema;
    match schema {
        Schema::Decimal(d) => without_decimals(&d.inner),
        Schema::BigDecimal => Schema::Bytes,
        Schema::Record(r) => {
            let mut r = r.clone();
            for field in &mut r.fields {
                field.schema = without_decimals(&field.schema);
            }
            Schema::Record(r)
        }
        Schema::Union(u) => UnionSchema::new(u.variants().iter().map(without_decimals).collect())
            .map_or_else(|_| schema.clone(), Schema::Union),
        Schema::Array(a) => {
            let mut a = a.clone();
            a.items = Box::new(without_decimals(&a.items));
            Schema::Array(a)
        }
        Schema::Map(m) => {
            let mut m = m.clone();
            m.types = Box::new(without_decimals(&m.types));
            Schema::Map(m)
        }
        other => other.clone(),
    }
}

/// Describes why `reader` cannot read `writer` data, going down through record fields and
/// union branches (apache-avro reports a change inside `["null", Record]` only as "all
/// elements in union must match", which hides the column that changed).
fn explain(writer: &Schema, reader: &Schema, error: &CompatibilityError) -> String {
    match (error, writer, reader) {
        (
            CompatibilityError::FieldTypeMismatch(field, inner),
            Schema::Record(w),
            Schema::Record(r),
        ) => {
            let pair = w
                .lookup
                .get(field)
                .zip(r.lookup.get(field))
                .and_then(|(&wi, &ri)| w.fields.get(wi).zip(r.fields.get(ri)));
            match (pair, inner.as_ref()) {
                (
                    Some((wf, rf)),
                    CompatibilityError::FieldTypeMismatch(..)
                    | CompatibilityError::MissingUnionElements
                    | CompatibilityError::MissingDefaultValue(_),
                ) => format!(
                    "field '{field}': {}",
                    explain(&wf.schema, &rf.schema, inner)
                ),
                (Some((wf, rf)), _) => format!(
                    "field '{field}' is {} in the writer's schema and {} in the reader's",
                    kind(&wf.schema),
                    kind(&rf.schema)
                ),
                (None, _) => describe(error),
            }
        }
        (CompatibilityError::MissingUnionElements, _, _) => {
            let readers = branches(reader);
            for w in branches(writer) {
                let same = |r: &&&Schema| {
                    SchemaKind::from(**r) == SchemaKind::from(w)
                        && r.name().map(|n| n.fullname(None)) == w.name().map(|n| n.fullname(None))
                };
                match readers.iter().find(same) {
                    Some(r) => {
                        if let Err(e) = SchemaCompatibility::can_read(w, r) {
                            return explain(w, r, &e);
                        }
                    }
                    None => {
                        let what = w
                            .name()
                            .map(|n| n.fullname(None))
                            .unwrap_or_else(|| format!("{:?}", SchemaKind::from(w)).to_lowercase());
                        return format!(
                            "the union branch {what} of the writer's schema is missing in the \
                             reader's"
                        );
                    }
                }
            }
            describe(error)
        }
        _ => describe(error),
    }
}

/// `long`, `string`, `[null, string]`, a named type's full name, ...
fn kind(schema: &Schema) -> String {
    match schema {
        Schema::Union(union) => {
            let names: Vec<String> = union.variants().iter().map(kind).collect();
            format!("[{}]", names.join(", "))
        }
        other => match other.name() {
            Some(name) => name.fullname(None),
            None => format!("{:?}", SchemaKind::from(other)).to_lowercase(),
        },
    }
}

fn branches(schema: &Schema) -> Vec<&Schema> {
    match schema {
        Schema::Union(union) => union.variants().iter().collect(),
        other => vec![other],
    }
}

/// A one-line description of a compatibility error, following nested field errors.
fn describe(error: &CompatibilityError) -> String {
    match error {
        CompatibilityError::FieldTypeMismatch(field, inner) => {
            format!("field '{field}' changed type: {}", describe(inner))
        }
        CompatibilityError::MissingDefaultValue(field) => format!(
            "field '{field}' is missing on the writer's side and has no default value in the \
             reader's schema"
        ),
        CompatibilityError::WrongType {
            writer_schema_type,
            reader_schema_type,
        } => format!(
            "writer type {} cannot be read as {}",
            short_kind(writer_schema_type),
            short_kind(reader_schema_type)
        ),
        other => other.to_string(),
    }
}

/// `Record(RecordSchema { ... })` → `Record`: the kind at the head of a `{:#?}` dump.
fn short_kind(debug: &str) -> &str {
    let end = debug
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(debug.len());
    if end == 0 {
        debug
    } else {
        &debug[..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"R","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn levels_parse_in_any_case() {
        assert_eq!(
            CompatibilityLevel::parse("full_transitive"),
            Some(CompatibilityLevel::FullTransitive)
        );
        assert_eq!(CompatibilityLevel::parse("nope"), None);
        assert_eq!(CompatibilityLevel::default().as_str(), "BACKWARD");
    }

    #[test]
    fn added_field_without_default_breaks_backward_only() {
        let v1 = schema(r#"{"name":"a","type":"long"}"#);
        let v2 = schema(r#"{"name":"a","type":"long"},{"name":"b","type":"string"}"#);
        let prev = [(1, &v1)];
        let backward = check(CompatibilityLevel::Backward, &v2, &prev);
        assert_eq!(backward.len(), 1, "{backward:?}");
        assert!(backward[0].contains("'b'"), "{backward:?}");
        assert!(check(CompatibilityLevel::Forward, &v2, &prev).is_empty());
        assert!(check(CompatibilityLevel::None, &v2, &prev).is_empty());
    }

    #[test]
    fn a_field_added_beside_a_decimal_is_backward_compatible() {
        let decimal = r#"{"name":"total","type":["null",{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}],"default":null}"#;
        let v1 = schema(decimal);
        let v2 = schema(&format!(
            r#"{decimal},{{"name":"note","type":["null","string"],"default":null}}"#
        ));
        assert!(check(CompatibilityLevel::Full, &v2, &[(1, &v1)]).is_empty());
        // A decimal that became a long still is not (bytes never resolve to long).
        let v3 = schema(r#"{"name":"total","type":["null","long"],"default":null}"#);
        assert!(!check(CompatibilityLevel::Backward, &v3, &[(1, &v1)]).is_empty());
    }

    #[test]
    fn transitive_levels_look_at_every_version() {
        let v1 = schema(r#"{"name":"a","type":"long"}"#);
        let v2 = schema(r#"{"name":"a","type":"long"},{"name":"b","type":"string","default":""}"#);
        // v3 drops the default of b: readable from v2 data, not from v1 data.
        let v3 = schema(r#"{"name":"a","type":"long"},{"name":"b","type":"string"}"#);
        let prev = [(1, &v1), (2, &v2)];
        assert!(check(CompatibilityLevel::Backward, &v3, &prev).is_empty());
        let transitive = check(CompatibilityLevel::BackwardTransitive, &v3, &prev);
        assert_eq!(transitive.len(), 1);
        assert!(transitive[0].contains("version 1"), "{transitive:?}");
    }

    #[test]
    fn a_change_inside_a_nullable_record_names_the_column() {
        let envelope = |value_fields: &str| {
            Schema::parse_str(&format!(
                r#"{{"type":"record","name":"Envelope","fields":[
                    {{"name":"after","type":["null",{{"type":"record","name":"Value","fields":[{value_fields}]}}],"default":null}},
                    {{"name":"op","type":"string"}}]}}"#
            ))
            .unwrap()
        };
        let v1 = envelope(r#"{"name":"id","type":"long"}"#);
        let v2 = envelope(r#"{"name":"id","type":"long"},{"name":"email","type":"string"}"#);
        let problems = check(CompatibilityLevel::Backward, &v2, &[(1, &v1)]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("field 'after': field 'email'"),
            "{problems:?}"
        );
        let v3 = envelope(r#"{"name":"id","type":"string"}"#);
        let problems = check(CompatibilityLevel::Backward, &v3, &[(1, &v1)]);
        assert!(
            problems[0].contains(
                "field 'after': field 'id' is long in the writer's schema and string in the reader's"
            ),
            "{problems:?}"
        );
    }

    #[test]
    fn type_change_names_the_field() {
        let v1 = schema(r#"{"name":"a","type":"long"}"#);
        let v2 = schema(r#"{"name":"a","type":"string"}"#);
        let problems = check(CompatibilityLevel::Full, &v2, &[(1, &v1)]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("field 'a' is long"), "{problems:?}");
        assert!(!problems[0].contains("RecordSchema"), "{problems:?}");
    }
}
