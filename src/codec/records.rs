//! Encoders for the records that are not table rows: logical decoding messages
//! (`<prefix>.message`, Debezium's `LogicalDecodingMessageMonitor`) and transaction
//! boundaries (`<prefix>.transaction`, `TransactionMonitor`); pure, no I/O.

use base64::Engine as _;

use super::connect::ConnectSchema;
use super::encode::{put_bytes, put_long, put_str};
use super::event::{MessageEvent, TransactionMetadataEvent};
use super::options::{BinaryHandling, CodecOptions};
use super::schemas;
use super::wire;

/// The key and value schemas of a topic whose records have one fixed shape: as Connect
/// schemas (for the JSON formats) and as Avro JSON (registered for Avro). The codecs
/// below dereference to theirs.
#[derive(Debug, Clone)]
pub struct FixedSchemas {
    key_schema: ConnectSchema,
    value_schema: ConnectSchema,
    key_json: String,
    value_json: String,
}

impl FixedSchemas {
    fn new(key_schema: ConnectSchema, value_schema: ConnectSchema) -> Self {
        Self {
            key_json: key_schema.to_avro_json(),
            value_json: value_schema.to_avro_json(),
            key_schema,
            value_schema,
        }
    }

    /// The key as a Connect schema (for the JSON formats).
    pub fn key_connect_schema(&self) -> &ConnectSchema {
        &self.key_schema
    }

    /// The value as a Connect schema (for the JSON formats).
    pub fn value_connect_schema(&self) -> &ConnectSchema {
        &self.value_schema
    }

    pub fn key_schema_json(&self) -> &str {
        &self.key_json
    }

    pub fn value_schema_json(&self) -> &str {
        &self.value_json
    }
}

impl std::ops::Deref for MessageCodec {
    type Target = FixedSchemas;

    fn deref(&self) -> &FixedSchemas {
        &self.schemas
    }
}

impl std::ops::Deref for TransactionCodec {
    type Target = FixedSchemas;

    fn deref(&self) -> &FixedSchemas {
        &self.schemas
    }
}

/// Schemas and encoder of the logical-decoding message topic.
#[derive(Debug, Clone)]
pub struct MessageCodec {
    binary: BinaryHandling,
    schemas: FixedSchemas,
}

impl MessageCodec {
    pub fn new(opts: &CodecOptions) -> Self {
        let content = match opts.binary_handling {
            BinaryHandling::Bytes => ConnectSchema::bytes(),
            _ => ConnectSchema::string(),
        };
        let key_schema = schemas::message_key_schema();
        let value_schema = schemas::message_value_schema(content);
        MessageCodec {
            binary: opts.binary_handling,
            schemas: FixedSchemas::new(key_schema, value_schema),
        }
    }

    /// The key `{prefix}` into `out` (cleared first), framed with `schema_id`.
    pub fn encode_key(&self, event: &MessageEvent, schema_id: u32, out: &mut Vec<u8>) {
        wire::start(out, schema_id);
        put_long(out, 1);
        put_str(out, &event.prefix);
    }

    /// The value `{op: "m", ts_ms, source, transaction, message}` into `out`.
    pub fn encode_value(&self, event: &MessageEvent, schema_id: u32, out: &mut Vec<u8>) {
        wire::start(out, schema_id);
        put_str(out, "m");
        put_long(out, 1);
        put_long(out, event.ts_ns.div_euclid(1_000_000));
        schemas::write_source(out, &event.source, "", "");
        schemas::write_transaction_block(out, event.transaction.as_ref());
        put_long(out, 1);
        put_str(out, &event.prefix);
        put_long(out, 1);
        let content = &event.content[..];
        match self.binary {
            BinaryHandling::Bytes => put_bytes(out, content),
            BinaryHandling::Base64 => put_str(
                out,
                &base64::engine::general_purpose::STANDARD.encode(content),
            ),
            BinaryHandling::Base64UrlSafe => put_str(
                out,
                &base64::engine::general_purpose::URL_SAFE.encode(content),
            ),
            BinaryHandling::Hex => {
                let hex: String = content.iter().map(|b| format!("{b:02x}")).collect();
                put_str(out, &hex)
            }
        }
    }
}

/// Schemas and encoder of the transaction metadata topic.
#[derive(Debug, Clone)]
pub struct TransactionCodec {
    schemas: FixedSchemas,
}

impl Default for TransactionCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl TransactionCodec {
    pub fn new() -> Self {
        let key_schema = schemas::transaction_key_schema();
        let value_schema = schemas::transaction_value_schema();
        TransactionCodec {
            schemas: FixedSchemas::new(key_schema, value_schema),
        }
    }

    /// The key `{id}` into `out` (cleared first), framed with `schema_id`.
    pub fn encode_key(&self, event: &TransactionMetadataEvent, schema_id: u32, out: &mut Vec<u8>) {
        wire::start(out, schema_id);
        put_str(out, &event.id());
    }

    /// The value `{status, id, event_count, data_collections, ts_ms}` into `out`.
    pub fn encode_value(
        &self,
        event: &TransactionMetadataEvent,
        schema_id: u32,
        out: &mut Vec<u8>,
    ) {
        wire::start(out, schema_id);
        put_str(out, event.status.as_str());
        put_str(out, &event.id());
        match event.event_count {
            Some(n) => {
                put_long(out, 1);
                put_long(out, n);
            }
            None => put_long(out, 0),
        }
        match &event.data_collections {
            Some(tables) => {
                put_long(out, 1);
                if !tables.is_empty() {
                    put_long(out, tables.len() as i64);
                    for (name, count) in tables {
                        put_long(out, 1);
                        put_str(out, name);
                        put_long(out, *count);
                    }
                }
                put_long(out, 0);
            }
            None => put_long(out, 0),
        }
        put_long(out, event.ts_ms);
    }
}
