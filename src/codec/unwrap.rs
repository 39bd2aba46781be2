//! Debezium's ExtractNewRecordState ("unwrap"), done in the codec: a table topic's value
//! is the row after the change instead of the envelope, with Debezium's delete
//! handling and the envelope fields named in `add_fields` (as `__op`, `__table`, …)
//! appended. The schema registered for the topic is the unwrapped shape: the row record
//! `<topic>.Value` (required, as the transform's rebuilt struct is), `__deleted`
//! (optional string, rewrite modes) after the columns, then the added fields, each the
//! envelope field's schema made optional.

use super::connect::{field, ConnectField, ConnectSchema, ConnectType};
use super::encode::{put_long, put_str};
use super::event::{ChangeEvent, Op};
use super::schemas::{source_schema, transaction_block_schema};

/// Debezium's `delete.tombstone.handling.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeleteHandling {
    /// Deletes and their tombstones are dropped.
    Drop,
    /// A delete leaves only a tombstone (the default).
    #[default]
    Tombstone,
    /// A delete is the row before it with `__deleted = "true"`; tombstones dropped.
    Rewrite,
    /// As `Rewrite`, and the tombstone follows.
    RewriteWithTombstone,
    /// A delete becomes a tombstone (key kept, value null).
    DeleteToTombstone,
}

impl DeleteHandling {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "drop" => Self::Drop,
            "tombstone" => Self::Tombstone,
            "rewrite" => Self::Rewrite,
            "rewrite-with-tombstone" => Self::RewriteWithTombstone,
            "delete-to-tombstone" => Self::DeleteToTombstone,
            other => {
                return Err(format!(
                    "`{other}` is not a mode; use drop, tombstone, rewrite, rewrite-with-tombstone or delete-to-tombstone"
                ))
            }
        })
    }

    /// The rewrite modes add `__deleted`.
    pub fn rewrites(self) -> bool {
        matches!(self, Self::Rewrite | Self::RewriteWithTombstone)
    }
}

/// Where an added field or header takes its value from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Struct {
    /// The envelope itself: op, ts_ms, ts_us, ts_ns.
    Envelope,
    Source,
    Transaction,
}

/// One `add_fields` / `add_headers` entry: the envelope field and its new name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub within: Struct,
    pub field: String,
    /// The outgoing name, e.g. `__op`, `__source_ts_ms` (made once per connector file
    /// and kept for the process, as header names are).
    pub name: &'static str,
}

impl Reference {
    /// Parses Debezium's list syntax: `path[:alias]` items separated by commas, where
    /// path is `field` or `struct.field`; the new name is `prefix + field`, `prefix +
    /// struct + "_" + field`, or `prefix + alias`. Unknown fields are errors here
    /// (Debezium skips them silently).
    pub fn parse_list(text: &str, prefix: &str) -> Result<Vec<Reference>, String> {
        let mut out = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (path, alias) = match item.split_once(':') {
                Some((p, a)) => (p.trim(), Some(a.trim())),
                None => (item, None),
            };
            let (within, field_name, qualified) = match path.split_once('.') {
                Some(("source", f)) => (Struct::Source, f, true),
                Some(("transaction", f)) => (Struct::Transaction, f, true),
                Some((s, _)) => return Err(format!("`{item}`: {s} is not source or transaction")),
                None => (default_struct(path), path, false),
            };
            let reference = Reference {
                within,
                field: field_name.to_owned(),
                name: Box::leak(
                    match (alias, qualified) {
                        (Some(a), _) => format!("{prefix}{a}"),
                        (None, false) => format!("{prefix}{field_name}"),
                        (None, true) => format!(
                            "{prefix}{}_{field_name}",
                            path.split('.').next().unwrap_or_default()
                        ),
                    }
                    .into_boxed_str(),
                ),
            };
            if reference.schema().is_none() {
                return Err(format!("`{item}`: the envelope has no such field"));
            }
            out.push(reference);
        }
        Ok(out)
    }

    /// The field's schema in the envelope, made optional.
    pub fn schema(&self) -> Option<ConnectSchema> {
        let fields: Vec<ConnectField> = match self.within {
            Struct::Envelope => vec![
                field("op", ConnectSchema::string()),
                field("ts_ms", ConnectSchema::int64()),
                field("ts_us", ConnectSchema::int64()),
                field("ts_ns", ConnectSchema::int64()),
            ],
            Struct::Source => source_schema().fields().to_vec(),
            Struct::Transaction => transaction_block_schema().fields().to_vec(),
        };
        let found = fields.into_iter().find(|f| f.name == self.field)?;
        let mut schema = found.schema;
        schema.default = None;
        Some(schema.optional())
    }

    /// The value in `event`, as text (a header) or a number.
    pub fn value(&self, event: &ChangeEvent, schema: &str, table: &str) -> Added {
        let s = &event.source;
        match (self.within, self.field.as_str()) {
            (Struct::Envelope, "op") => Added::Text(event.op.code().to_owned()),
            (Struct::Envelope, "ts_ms") => Added::Long(event.ts_ns.div_euclid(1_000_000)),
            (Struct::Envelope, "ts_us") => Added::Long(event.ts_ns.div_euclid(1_000)),
            (Struct::Envelope, "ts_ns") => Added::Long(event.ts_ns),
            (Struct::Source, "version") => Added::Text(s.connector.version.clone()),
            (Struct::Source, "connector") => Added::Text("postgresql".to_owned()),
            (Struct::Source, "name") => Added::Text(s.connector.name.clone()),
            (Struct::Source, "ts_ms") => Added::Long(s.ts_ms()),
            (Struct::Source, "snapshot") => Added::Text(s.snapshot.as_str().to_owned()),
            (Struct::Source, "db") => Added::Text(s.connector.db.clone()),
            (Struct::Source, "sequence") => Added::Text(s.sequence()),
            (Struct::Source, "ts_us") => Added::Long(s.ts_us),
            (Struct::Source, "ts_ns") => Added::Long(s.ts_ns()),
            (Struct::Source, "schema") => Added::Text(schema.to_owned()),
            (Struct::Source, "table") => Added::Text(table.to_owned()),
            (Struct::Source, "txId") => s
                .tx_id
                .filter(|_| s.has_position_fields())
                .map_or(Added::Null, Added::Long),
            (Struct::Source, "lsn") => s
                .lsn
                .filter(|_| s.has_position_fields())
                .map_or(Added::Null, |l| Added::Long(l.0 as i64)),
            (Struct::Source, "xmin") => s
                .xmin
                .filter(|_| s.has_position_fields())
                .map_or(Added::Null, Added::Long),
            (Struct::Source, "origin") => s
                .origin
                .as_ref()
                .map_or(Added::Null, |o| Added::Text(o.to_string())),
            (Struct::Source, "origin_lsn") => s
                .origin_lsn
                .map_or(Added::Null, |l| Added::Long(l.0 as i64)),
            (Struct::Transaction, f) => match &event.transaction {
                None => Added::Null,
                Some(t) => match f {
                    "id" => Added::Text(format!("{}:{}", t.xid, t.lsn.0)),
                    "total_order" => Added::Long(t.total_order),
                    "data_collection_order" => Added::Long(t.data_collection_order),
                    _ => Added::Null,
                },
            },
            _ => Added::Null,
        }
    }
}

/// An added field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    Null,
    Text(String),
    Long(i64),
}

impl Added {
    /// As Kafka Connect's SimpleHeaderConverter writes it (strings as they are, numbers
    /// in decimal); `None` for null.
    pub fn header_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Added::Null => None,
            Added::Text(t) => Some(t.clone().into_bytes()),
            Added::Long(n) => Some(n.to_string().into_bytes()),
        }
    }

    /// The optional (`["null", T]`) Avro datum.
    fn write_avro(&self, out: &mut Vec<u8>) {
        match self {
            Added::Null => put_long(out, 0),
            Added::Text(t) => {
                put_long(out, 1);
                put_str(out, t);
            }
            Added::Long(n) => {
                put_long(out, 1);
                put_long(out, *n);
            }
        }
    }
}

/// Debezium's default struct of an unqualified name.
fn default_struct(name: &str) -> Struct {
    match name {
        "id" | "total_order" | "data_collection_order" => Struct::Transaction,
        "op" | "ts_ms" | "ts_us" | "ts_ns" => Struct::Envelope,
        _ => Struct::Source,
    }
}

/// The unwrap transform of a table: how deletes are handled, what is added.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unwrap {
    pub delete_handling: DeleteHandling,
    pub add_fields: Vec<Reference>,
    pub add_headers: Vec<Reference>,
}

impl Unwrap {
    /// The unwrapped value schema: the row record `row` (its name kept, required), then
    /// `__deleted`, then the added fields.
    pub fn value_schema(&self, row: &ConnectSchema) -> ConnectSchema {
        let mut fields = row.fields().to_vec();
        if self.delete_handling.rewrites() {
            fields.push(field("__deleted", ConnectSchema::string().optional()));
        }
        for r in &self.add_fields {
            if let Some(schema) = r.schema() {
                fields.push(field(r.name, schema));
            }
        }
        let mut schema = row.clone();
        schema.optional = false;
        schema.ty = ConnectType::Struct(fields);
        schema
    }

    /// Writes what follows the row's columns: `__deleted` and the added fields.
    pub fn write_tail(&self, event: &ChangeEvent, schema: &str, table: &str, out: &mut Vec<u8>) {
        if self.delete_handling.rewrites() {
            let deleted = if event.op == Op::Delete {
                "true"
            } else {
                "false"
            };
            Added::Text(deleted.to_owned()).write_avro(out);
        }
        for r in &self.add_fields {
            r.value(event, schema, table).write_avro(out);
        }
    }

    /// The headers `add_headers` names for `event` (for a tombstone, Debezium adds only
    /// the op, as `d`).
    pub fn headers(
        &self,
        event: Option<&ChangeEvent>,
        schema: &str,
        table: &str,
    ) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = Vec::new();
        for r in &self.add_headers {
            let value = match event {
                Some(e) => r.value(e, schema, table).header_bytes(),
                None if r.within == Struct::Envelope && r.field == "op" => Some(b"d".to_vec()),
                None => continue,
            };
            if let Some(v) = value {
                out.push((r.name, v));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_debeziums_field_reference_rules() {
        let refs = Reference::parse_list(
            "op, table,lsn,source.ts_ms, ts_ms,transaction.id,source.db:DB, txId",
            "__",
        )
        .unwrap();
        let names: Vec<&str> = refs.iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            [
                "__op",
                "__table",
                "__lsn",
                "__source_ts_ms",
                "__ts_ms",
                "__transaction_id",
                "__DB",
                "__txId"
            ]
        );
        assert_eq!(refs[1].within, Struct::Source);
        assert_eq!(refs[4].within, Struct::Envelope);
        assert!(Reference::parse_list("nosuch", "__")
            .unwrap_err()
            .contains("no such field"));
        assert!(Reference::parse_list("after.id", "__")
            .unwrap_err()
            .contains("not source or transaction"));
        let lsn = &refs[2].schema().unwrap();
        assert!(lsn.optional);
    }

    #[test]
    fn delete_modes_parse_as_debezium_spells_them() {
        assert_eq!(
            DeleteHandling::parse(" Rewrite-With-Tombstone ").unwrap(),
            DeleteHandling::RewriteWithTombstone
        );
        assert_eq!(DeleteHandling::default(), DeleteHandling::Tombstone);
        assert!(DeleteHandling::parse("none").is_err());
    }
}
