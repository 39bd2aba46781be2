//! Debezium-compatible change events and their Avro encoding, as Debezium 3.x's
//! PostgreSQL connector with Confluent's AvroConverter produces them; pure, no I/O.
//!
//! - `event`: the event model (envelope, `source`, `transaction`, messages, BEGIN/END).
//! - `options`: `decimal.handling.mode`, `time.precision.mode`, ... as Debezium names them.
//! - `mapping`: PostgreSQL column → Connect schema and value representation.
//! - `connect`: Connect schemas and their Avro JSON as the AvroConverter writes it.
//! - `table`: one table version's key/envelope schemas and encoder ([`TableCodec`]).
//! - `records`: message and transaction-metadata records.
//! - `wire`: the Confluent framing (magic byte, schema id).
//! - `json`: the same records as Kafka Connect's JsonConverter writes them (with or
//!   without the embedded schema), and the Connect string form Debezium's key-change
//!   headers carry.
//!
//! Typical use: build a [`TableCodec`] when a table version first appears, register
//! [`TableCodec::key_schema_json`] and [`TableCodec::envelope_schema_json`], then
//! encode each [`ChangeEvent`] with the ids the registry returned into a reused buffer.

pub(crate) mod connect;
pub(crate) mod encode;
pub(crate) mod event;
pub(crate) mod java;
pub(crate) mod json;
pub(crate) mod mapping;
pub(crate) mod options;
pub(crate) mod records;
pub(crate) mod schemas;
pub(crate) mod table;
pub(crate) mod temporal;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

pub use event::{
    ChangeEvent, ConnectorMeta, MessageEvent, Op, SnapshotRecord, SourceInfo, TransactionBlock,
    TransactionMetadataEvent, TransactionStatus,
};
pub use json::{JsonRecord, JsonTableCodec};
pub use mapping::{avro_full_name, parse_default_expression, ColumnSpec};
pub use options::{CodecOptions, EventFormat};
pub use records::{MessageCodec, TransactionCodec};
mod geometry;
pub mod json_payload;
pub mod unwrap;
mod vector;
pub use table::{EncodeError, EncodeStats, SchemaError, TableCodec, TableRoute, TableSpec};
