//! The schemas every Debezium PostgreSQL record shares, with their encoders next to
//! them so the two cannot drift; pure. Sources: the `source` block is
//! `io.debezium.connector.postgresql.Source` (`SchemaFactory.sourceInfoSchemaBuilder`
//! plus `PostgresSourceInfoStructMaker`), the `transaction` block is `event.block`,
//! the envelope's fields follow `SchemaFactory.datatypeEnvelopeSchema` (`Envelope`
//! version 2), the logical-decoding message records `PostgresSchemaFactory`, and the
//! transaction topic records `SchemaFactory.transactionKeySchema` /
//! `transactionValueSchema`.

use super::connect::{field, ConnectField, ConnectSchema};
use super::encode::{put_long, put_sequence, put_str};
use super::event::{SnapshotRecord, SourceInfo, TransactionBlock};

pub const SOURCE_SCHEMA_NAME: &str = "io.debezium.connector.postgresql.Source";
pub const TRANSACTION_BLOCK_NAME: &str = "event.block";
pub const ENVELOPE_VERSION: i32 = 2;

/// `source.snapshot`: an optional `io.debezium.data.Enum` defaulting to `"false"`.
fn snapshot_schema() -> ConnectSchema {
    let allowed: Vec<&str> = SnapshotRecord::ALL.iter().map(|s| s.as_str()).collect();
    ConnectSchema::string()
        .named("io.debezium.data.Enum")
        .version(1)
        .param("allowed", allowed.join(","))
        .with_default(super::connect::Json::Str("false".into()))
        .optional()
}

/// `io.debezium.connector.postgresql.Source` (Debezium 3.5+: with origin fields).
pub fn source_schema() -> ConnectSchema {
    ConnectSchema::record(
        SOURCE_SCHEMA_NAME,
        vec![
            field("version", ConnectSchema::string()),
            field("connector", ConnectSchema::string()),
            field("name", ConnectSchema::string()),
            field("ts_ms", ConnectSchema::int64()),
            field("snapshot", snapshot_schema()),
            field("db", ConnectSchema::string()),
            field("sequence", ConnectSchema::string().optional()),
            field("ts_us", ConnectSchema::int64().optional()),
            field("ts_ns", ConnectSchema::int64().optional()),
            field("schema", ConnectSchema::string()),
            field("table", ConnectSchema::string()),
            field("txId", ConnectSchema::int64().optional()),
            field("lsn", ConnectSchema::int64().optional()),
            field("xmin", ConnectSchema::int64().optional()),
            field("origin", ConnectSchema::string().optional()),
            field("origin_lsn", ConnectSchema::int64().optional()),
        ],
    )
    .version(1)
}

/// The optional `transaction` block.
pub fn transaction_block_schema() -> ConnectSchema {
    ConnectSchema::record(
        TRANSACTION_BLOCK_NAME,
        vec![
            field("id", ConnectSchema::string()),
            field("total_order", ConnectSchema::int64()),
            field("data_collection_order", ConnectSchema::int64()),
        ],
    )
    .version(1)
    .optional()
}

/// `<prefix>.<schema>.<table>.Envelope`: before, after (the optional row record),
/// source, transaction, op, ts_ms, ts_us, ts_ns.
pub fn envelope_schema(name: String, value: ConnectSchema) -> ConnectSchema {
    let value = value.optional();
    ConnectSchema::record(
        name,
        vec![
            field("before", value.clone()),
            field("after", value),
            field("source", source_schema()),
            field("transaction", transaction_block_schema()),
            field("op", ConnectSchema::string()),
            field("ts_ms", ConnectSchema::int64().optional()),
            field("ts_us", ConnectSchema::int64().optional()),
            field("ts_ns", ConnectSchema::int64().optional()),
        ],
    )
    .version(ENVELOPE_VERSION)
}

#[inline]
fn put_opt_long(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => {
            put_long(out, 1);
            put_long(out, v);
        }
        None => put_long(out, 0),
    }
}

/// Writes a `source` record; `schema` and `table` are the event's (empty for
/// messages).
pub fn write_source(out: &mut Vec<u8>, s: &SourceInfo, schema: &str, table: &str) {
    let c = &s.connector;
    put_str(out, &c.version);
    put_str(out, "postgresql");
    put_str(out, &c.name);
    put_long(out, s.ts_ms());
    // [Enum string, "null"]: branch 0.
    put_long(out, 0);
    put_str(out, s.snapshot.as_str());
    put_str(out, &c.db);
    put_long(out, 1);
    put_sequence(out, s.last_commit_lsn.map(|l| l.0), s.lsn.map(|l| l.0));
    put_opt_long(out, Some(s.ts_us));
    put_opt_long(out, Some(s.ts_ns()));
    put_str(out, schema);
    put_str(out, table);
    let positions = s.has_position_fields();
    put_opt_long(out, s.tx_id.filter(|_| positions));
    put_opt_long(out, s.lsn.filter(|_| positions).map(|l| l.0 as i64));
    put_opt_long(out, s.xmin.filter(|_| positions));
    match &s.origin {
        Some(o) => {
            put_long(out, 1);
            put_str(out, o);
        }
        None => put_long(out, 0),
    }
    put_opt_long(out, s.origin_lsn.map(|l| l.0 as i64));
}

/// Writes the optional `transaction` field.
pub fn write_transaction_block(out: &mut Vec<u8>, t: Option<&TransactionBlock>) {
    match t {
        Some(t) => {
            put_long(out, 1);
            let mut id = super::temporal::StackStr::new();
            let _ = std::fmt::Write::write_fmt(&mut id, format_args!("{}:{}", t.xid, t.lsn.0));
            super::encode::put_bytes(out, id.as_bytes());
            put_long(out, t.total_order);
            put_long(out, t.data_collection_order);
        }
        None => put_long(out, 0),
    }
}

/// Writes the envelope's `ts_ms`, `ts_us`, `ts_ns` from a time in ns.
pub fn write_envelope_times(out: &mut Vec<u8>, ts_ns: i64) {
    put_opt_long(out, Some(ts_ns.div_euclid(1_000_000)));
    put_opt_long(out, Some(ts_ns.div_euclid(1_000)));
    put_opt_long(out, Some(ts_ns));
}

/// `io.debezium.connector.postgresql.MessageKey`.
pub fn message_key_schema() -> ConnectSchema {
    ConnectSchema::record(
        "io.debezium.connector.postgresql.MessageKey",
        vec![field("prefix", ConnectSchema::string().optional())],
    )
    .version(1)
}

/// `io.debezium.connector.postgresql.MessageValue`: op, ts_ms, source, transaction,
/// message {prefix, content}; content is bytes or a string by `binary.handling.mode`.
pub fn message_value_schema(content: ConnectSchema) -> ConnectSchema {
    let block = ConnectSchema::record(
        "io.debezium.connector.postgresql.Message",
        vec![
            field("prefix", ConnectSchema::string().optional()),
            field("content", content.optional()),
        ],
    )
    .version(1);
    ConnectSchema::record(
        "io.debezium.connector.postgresql.MessageValue",
        vec![
            field("op", ConnectSchema::string()),
            field("ts_ms", ConnectSchema::int64().optional()),
            field("source", source_schema()),
            field("transaction", transaction_block_schema()),
            field("message", block),
        ],
    )
    .version(1)
}

/// `io.debezium.connector.common.TransactionMetadataKey`.
pub fn transaction_key_schema() -> ConnectSchema {
    ConnectSchema::record(
        "io.debezium.connector.common.TransactionMetadataKey",
        vec![field("id", ConnectSchema::string())],
    )
    .version(1)
}

/// `io.debezium.connector.common.TransactionMetadataValue`.
pub fn transaction_value_schema() -> ConnectSchema {
    let per_table: Vec<ConnectField> = vec![
        field("data_collection", ConnectSchema::string()),
        field("event_count", ConnectSchema::int64()),
    ];
    let collection = ConnectSchema::record("event.collection", per_table)
        .version(1)
        .optional();
    ConnectSchema::record(
        "io.debezium.connector.common.TransactionMetadataValue",
        vec![
            field("status", ConnectSchema::string()),
            field("id", ConnectSchema::string()),
            field("event_count", ConnectSchema::int64().optional()),
            field(
                "data_collections",
                ConnectSchema::array(collection).optional(),
            ),
            field("ts_ms", ConnectSchema::int64()),
        ],
    )
    .version(1)
}
