//! One table version's Avro schemas (key, envelope) and its encoder: derived once from
//! the relation, the catalog facts the Relation message lacks ([`TableSpec`]) and the
//! options; then every event of that version is encoded into a reused buffer with
//! the Confluent wire header; pure, no I/O.

use std::collections::HashSet;

use super::connect::{field, ConnectSchema};
use super::encode::{put_long, put_str, write_fallback, write_toast_placeholder, write_value};
use super::event::ChangeEvent;
use super::mapping::{avro_full_name, map_column, ColumnSpec, Kind};
use super::options::CodecOptions;
use super::schemas;
use super::wire;
use crate::model::relation::RelationInfo;
use crate::model::value::Value;

/// What the catalog knows about a table that pgoutput's Relation message does not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableSpec {
    /// Per column, in the relation's column order.
    pub columns: Vec<ColumnSpec>,
    /// The key columns (indexes into the relation's columns), in key order: the
    /// primary key (or `message.key.columns`); empty for a table without a key (null
    /// Kafka keys).
    pub key: Vec<usize>,
    /// The unwrap transform: the value is the row, not the envelope.
    pub unwrap: Option<std::sync::Arc<super::unwrap::Unwrap>>,
    /// Topic routing (Debezium's ByLogicalTableRouter): the topic the table's events go
    /// to instead, which also names the schemas.
    pub route: Option<TableRoute>,
}

/// Where a routed table's events go, and the field that keeps its rows distinct there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRoute {
    pub topic: String,
    /// (field name, value) appended to the key: by default
    /// `__dbz__physicalTableIdentifier` = the table's original topic.
    pub key_field: Option<(String, String)>,
}

impl TableSpec {
    /// From the relation alone: key = the replica identity columns (none for REPLICA
    /// IDENTITY FULL, where pgoutput flags every column), a column optional unless it
    /// is NOT NULL or a key column, no defaults.
    pub fn from_relation(relation: &RelationInfo) -> Self {
        // With REPLICA IDENTITY FULL, the primary key (none: a null key).
        let key: Vec<usize> = (0..relation.columns.len())
            .filter(|&i| relation.columns[i].is_key)
            .collect();
        let columns = (0..relation.columns.len())
            .map(|i| ColumnSpec {
                optional: !(relation.columns[i].not_null || key.contains(&i)),
                default: None,
            })
            .collect();
        TableSpec {
            columns,
            key,
            unwrap: None,
            route: None,
        }
    }
}

/// Why a table's schemas cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("table {table}: the table spec has {spec} columns but the relation has {relation}; build the TableSpec from the same table version")]
    ColumnCount {
        table: String,
        spec: usize,
        relation: usize,
    },
    #[error("table {table}: key column index {index} is out of range")]
    KeyColumn { table: String, index: usize },
    #[error("table {table}: key column {column} has type {ty}, which Debezium cannot represent; choose other key columns or set include.unknown.datatypes")]
    UnmappedKeyColumn {
        table: String,
        column: String,
        ty: String,
    },
    #[error("table {table}: columns {first:?} and {second:?} both become Avro field {field:?}; rename one of them")]
    DuplicateField {
        table: String,
        first: String,
        second: String,
        field: String,
    },
}

/// Why an event cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("table {table}: the row has {got} values but the table version has {expected} columns; the event belongs to another table version")]
    RowLength {
        table: String,
        expected: usize,
        got: usize,
    },
    #[error("table {table}: NOT NULL column {column}: {reason}")]
    Unconvertible {
        table: String,
        column: String,
        reason: &'static str,
    },
    #[error("table {table} has no key columns: its events have a null Kafka key")]
    NoKey { table: String },
    #[error("table {table} has no captured column {column}")]
    NoColumn { table: String, column: String },
    #[error("table {table}: the JSON form of an event could not be written: {reason}")]
    Transcode { table: String, reason: &'static str },
}

/// How an encode went: values Debezium would also have turned into null
/// (`event.converting.failure.handling.mode=warn`), for a metric or a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeStats {
    pub nulled_values: u32,
}

/// A field of the key or value record.
#[derive(Debug, Clone, PartialEq)]
struct FieldPlan {
    /// Index of the column in the row.
    index: usize,
    column: String,
    kind: Kind,
    optional: bool,
    /// The union is `[T, "null"]` (optional with a default) rather than `["null", T]`.
    value_first: bool,
    default: Option<Value>,
}

/// A table version's schemas and encoder.
#[derive(Debug, Clone)]
pub struct TableCodec {
    table: String,
    column_count: usize,
    schema_name: String,
    table_name: String,
    key_fields: Option<Vec<FieldPlan>>,
    value_fields: Vec<FieldPlan>,
    key_schema: Option<ConnectSchema>,
    envelope_schema: ConnectSchema,
    key_json: Option<String>,
    envelope_json: String,
    opts: CodecOptions,
    /// With the unwrap transform: the transform, and the row record (`.Value`) the
    /// unwrapped value extends.
    unwrap: Option<(std::sync::Arc<super::unwrap::Unwrap>, ConnectSchema)>,
    /// The row record `<prefix>.<schema>.<table>.Value`, its fields in `value_fields`'
    /// order.
    row_schema: ConnectSchema,
    /// A routed table's identifier, written after the key's columns.
    route_key: Option<String>,
}

impl TableCodec {
    /// Derives the schemas of `relation` (its current version) under `topic_prefix`:
    /// `<prefix>.<schema>.<table>.Key`, `.Value` and `.Envelope`.
    pub fn new(
        relation: &RelationInfo,
        spec: &TableSpec,
        topic_prefix: &str,
        opts: &CodecOptions,
    ) -> Result<TableCodec, SchemaError> {
        let table = relation.qualified();
        if spec.columns.len() != relation.columns.len() {
            return Err(SchemaError::ColumnCount {
                table,
                spec: spec.columns.len(),
                relation: relation.columns.len(),
            });
        }
        let routed;
        let base: &[&str] = match &spec.route {
            Some(route) => {
                routed = [route.topic.as_str()];
                &routed
            }
            None => &[topic_prefix, &relation.schema, &relation.table],
        };
        let name = |last: &str| {
            let mut parts = base.to_vec();
            parts.push(last);
            avro_full_name(&parts)
        };
        let mut value_fields = Vec::new();
        let mut value_schema_fields = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut first_of: Vec<(String, String)> = Vec::new();
        for (i, column) in relation.columns.iter().enumerate() {
            let Some(m) = map_column(column, &spec.columns[i], opts) else {
                continue;
            };
            if !seen.insert(m.field_name.clone()) {
                let first = first_of
                    .iter()
                    .find(|(f, _)| *f == m.field_name)
                    .map(|(_, c)| c.clone())
                    .unwrap_or_default();
                return Err(SchemaError::DuplicateField {
                    table,
                    first,
                    second: column.name.clone(),
                    field: m.field_name,
                });
            }
            first_of.push((m.field_name.clone(), column.name.clone()));
            value_fields.push(plan(i, &column.name, &m.kind, &m.schema, &spec.columns[i]));
            value_schema_fields.push(field(m.field_name, m.schema));
        }
        let value_schema = ConnectSchema::record(name("Value"), value_schema_fields);

        let (key_schema, key_fields) = if spec.key.is_empty() {
            (None, None)
        } else {
            let mut plans = Vec::new();
            let mut fields = Vec::new();
            for &i in &spec.key {
                let column = relation
                    .columns
                    .get(i)
                    .ok_or_else(|| SchemaError::KeyColumn {
                        table: table.clone(),
                        index: i,
                    })?;
                let m = map_column(column, &spec.columns[i], opts).ok_or_else(|| {
                    SchemaError::UnmappedKeyColumn {
                        table: table.clone(),
                        column: column.name.clone(),
                        ty: column.type_info.pg_type.to_string(),
                    }
                })?;
                plans.push(plan(i, &column.name, &m.kind, &m.schema, &spec.columns[i]));
                fields.push(field(m.field_name, m.schema));
            }
            if let Some((field_name, _)) = spec.route.as_ref().and_then(|r| r.key_field.as_ref()) {
                fields.push(field(field_name.clone(), ConnectSchema::string()));
            }
            (
                Some(ConnectSchema::record(name("Key"), fields)),
                Some(plans),
            )
        };
        let unwrap = spec.unwrap.clone().map(|u| (u, value_schema.clone()));
        let row_schema = value_schema.clone();
        let envelope_schema = match &unwrap {
            Some((u, row)) => u.value_schema(row),
            None => schemas::envelope_schema(name("Envelope"), value_schema),
        };
        Ok(TableCodec {
            table,
            column_count: relation.columns.len(),
            schema_name: relation.schema.clone(),
            table_name: relation.table.clone(),
            key_json: key_schema.as_ref().map(ConnectSchema::to_avro_json),
            envelope_json: envelope_schema.to_avro_json(),
            key_schema,
            envelope_schema,
            key_fields,
            value_fields,
            opts: opts.clone(),
            unwrap,
            row_schema,
            route_key: spec
                .route
                .as_ref()
                .and_then(|r| r.key_field.as_ref())
                .map(|(_, v)| v.clone()),
        })
    }

    /// The unwrap transform, and the row record its value extends.
    pub fn unwrap_transform(&self) -> Option<(&super::unwrap::Unwrap, &ConnectSchema)> {
        self.unwrap.as_ref().map(|(u, row)| (&**u, row))
    }

    /// The schema of the field of `column` in the row record (optional when the column
    /// is nullable), e.g. an outbox payload's; `None` when the column is not captured.
    pub fn column_schema(&self, column: &str) -> Option<ConnectSchema> {
        let i = self.value_fields.iter().position(|f| f.column == column)?;
        self.row_schema.fields().get(i).map(|f| f.schema.clone())
    }

    /// Encodes the record of `columns` of `row` (a struct whose fields are those
    /// columns' fields, in that order), framed with `schema_id`.
    pub fn encode_columns(
        &self,
        columns: &[&str],
        row: &[Value],
        schema_id: u32,
        out: &mut Vec<u8>,
    ) -> Result<EncodeStats, EncodeError> {
        wire::start(out, schema_id);
        self.write_columns(columns, row, out)
    }

    /// [`Self::encode_columns`] without the wire header: the columns' datums appended
    /// to `out` (after a field written by the caller).
    pub fn write_columns(
        &self,
        columns: &[&str],
        row: &[Value],
        out: &mut Vec<u8>,
    ) -> Result<EncodeStats, EncodeError> {
        self.check_row(row)?;
        let mut stats = EncodeStats::default();
        for column in columns {
            let f = self
                .value_fields
                .iter()
                .find(|f| f.column == *column)
                .ok_or_else(|| EncodeError::NoColumn {
                    table: self.table.clone(),
                    column: (*column).to_owned(),
                })?;
            self.write_field(f, &row[f.index], out, &mut stats)?;
        }
        Ok(stats)
    }

    /// The name of the row record (`<prefix>.<schema>.<table>.Value`).
    pub fn row_schema_name(&self) -> &str {
        self.row_schema.name.as_deref().unwrap_or_default()
    }

    /// The row index of `column`, if it is captured.
    pub fn column_index(&self, column: &str) -> Option<usize> {
        self.value_fields
            .iter()
            .find(|f| f.column == column)
            .map(|f| f.index)
    }

    /// Encodes `row`'s value of `column` alone, as a datum of [`Self::column_schema`],
    /// framed with `schema_id`.
    pub fn encode_column(
        &self,
        column: &str,
        row: &[Value],
        schema_id: u32,
        out: &mut Vec<u8>,
    ) -> Result<EncodeStats, EncodeError> {
        self.check_row(row)?;
        let f = self
            .value_fields
            .iter()
            .find(|f| f.column == column)
            .ok_or_else(|| EncodeError::NoColumn {
                table: self.table.clone(),
                column: column.to_owned(),
            })?;
        wire::start(out, schema_id);
        let mut stats = EncodeStats::default();
        self.write_field(f, &row[f.index], out, &mut stats)?;
        Ok(stats)
    }

    /// The table, `schema.table`.
    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn has_key(&self) -> bool {
        self.key_fields.is_some()
    }

    /// The key schema as the Connect schema Debezium builds (for a JSON codec).
    pub fn key_connect_schema(&self) -> Option<&ConnectSchema> {
        self.key_schema.as_ref()
    }

    /// The envelope as a Connect schema.
    pub fn envelope_connect_schema(&self) -> &ConnectSchema {
        &self.envelope_schema
    }

    /// The key's Avro schema JSON (to register under `<topic>-key`); `None` for a table
    /// without key columns.
    pub fn key_schema_json(&self) -> Option<&str> {
        self.key_json.as_deref()
    }

    /// The envelope's Avro schema JSON (to register under `<topic>-value`).
    pub fn envelope_schema_json(&self) -> &str {
        &self.envelope_json
    }

    /// Encodes the key of `row` into `out` (cleared first), framed with `schema_id`.
    pub fn encode_key(
        &self,
        row: &[Value],
        schema_id: u32,
        out: &mut Vec<u8>,
    ) -> Result<EncodeStats, EncodeError> {
        let fields = self.key_fields.as_ref().ok_or_else(|| EncodeError::NoKey {
            table: self.table.clone(),
        })?;
        self.check_row(row)?;
        wire::start(out, schema_id);
        let mut stats = EncodeStats::default();
        self.write_record(fields, row, out, &mut stats)?;
        if let Some(identifier) = &self.route_key {
            put_str(out, identifier);
        }
        Ok(stats)
    }

    /// Encodes the envelope of `event` into `out` (cleared first), framed with
    /// `schema_id`.
    pub fn encode_envelope(
        &self,
        event: &ChangeEvent,
        schema_id: u32,
        out: &mut Vec<u8>,
    ) -> Result<EncodeStats, EncodeError> {
        wire::start(out, schema_id);
        let mut stats = EncodeStats::default();
        self.write_envelope(event, out, &mut stats)?;
        Ok(stats)
    }

    /// The envelope datum alone (no wire header), appended to `out`.
    pub fn write_envelope(
        &self,
        event: &ChangeEvent,
        out: &mut Vec<u8>,
        stats: &mut EncodeStats,
    ) -> Result<(), EncodeError> {
        if let Some((unwrap, _)) = &self.unwrap {
            // The row after the change; a rewritten delete's row before it.
            let row = match event.op {
                super::event::Op::Delete => event.before.as_ref(),
                _ => event.after.as_ref(),
            };
            let row = row.ok_or_else(|| EncodeError::RowLength {
                table: self.table.clone(),
                expected: self.column_count,
                got: 0,
            })?;
            self.check_row(row)?;
            self.write_record(&self.value_fields, row, out, stats)?;
            unwrap.write_tail(event, &self.schema_name, &self.table_name, out);
            return Ok(());
        }
        for row in [&event.before, &event.after] {
            match row {
                Some(row) => {
                    self.check_row(row)?;
                    put_long(out, 1);
                    self.write_record(&self.value_fields, row, out, stats)?;
                }
                None => put_long(out, 0),
            }
        }
        schemas::write_source(out, &event.source, &self.schema_name, &self.table_name);
        schemas::write_transaction_block(out, event.transaction.as_ref());
        put_str(out, event.op.code());
        schemas::write_envelope_times(out, event.ts_ns);
        Ok(())
    }

    fn check_row(&self, row: &[Value]) -> Result<(), EncodeError> {
        if row.len() != self.column_count {
            return Err(EncodeError::RowLength {
                table: self.table.clone(),
                expected: self.column_count,
                got: row.len(),
            });
        }
        Ok(())
    }

    fn write_record(
        &self,
        fields: &[FieldPlan],
        row: &[Value],
        out: &mut Vec<u8>,
        stats: &mut EncodeStats,
    ) -> Result<(), EncodeError> {
        for f in fields {
            self.write_field(f, &row[f.index], out, stats)?;
        }
        Ok(())
    }

    fn write_field(
        &self,
        f: &FieldPlan,
        v: &Value,
        out: &mut Vec<u8>,
        stats: &mut EncodeStats,
    ) -> Result<(), EncodeError> {
        let (value_branch, null_branch) = if f.value_first { (0, 1) } else { (1, 0) };
        if v.is_null() {
            if f.optional {
                put_long(out, null_branch);
            } else {
                self.write_missing(f, out, stats)?;
            }
            return Ok(());
        }
        let mark = out.len();
        if f.optional {
            put_long(out, value_branch);
        }
        let written = match v {
            Value::UnchangedToast => write_toast_placeholder(&f.kind, &self.opts, out),
            v => write_value(&f.kind, v, &self.opts, out),
        };
        if let Err(e) = written {
            out.truncate(mark);
            if !f.optional {
                return Err(EncodeError::Unconvertible {
                    table: self.table.clone(),
                    column: f.column.clone(),
                    reason: e.0,
                });
            }
            stats.nulled_values += 1;
            put_long(out, null_branch);
        }
        Ok(())
    }

    /// A NOT NULL column without a value (the other columns of a key-only old row):
    /// its default, else Debezium's fallback for the type.
    fn write_missing(
        &self,
        f: &FieldPlan,
        out: &mut Vec<u8>,
        stats: &mut EncodeStats,
    ) -> Result<(), EncodeError> {
        if let Some(d) = &f.default {
            let mark = out.len();
            if write_value(&f.kind, d, &self.opts, out).is_ok() {
                return Ok(());
            }
            out.truncate(mark);
            stats.nulled_values += 1;
        }
        write_fallback(&f.kind, &self.opts, out);
        Ok(())
    }
}

fn plan(
    index: usize,
    column: &str,
    kind: &Kind,
    schema: &ConnectSchema,
    spec: &ColumnSpec,
) -> FieldPlan {
    FieldPlan {
        index,
        column: column.to_string(),
        kind: kind.clone(),
        optional: schema.optional,
        value_first: schema.optional && schema.default.is_some(),
        // Only a default that made it into the schema is written for a missing value.
        default: spec.default.clone().filter(|_| schema.default.is_some()),
    }
}
