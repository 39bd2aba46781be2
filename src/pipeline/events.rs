//! The event stage: turns the reader's transactions into Kafka records, the way
//! Debezium's PostgreSQL connector would: one envelope per row change on the table's
//! topic, a tombstone after each delete, a primary-key change as delete + tombstone +
//! create (with Debezium's `__debezium.newkey` / `__debezium.oldkey` headers), logical
//! decoding messages on `<prefix>.message`, truncates skipped (Debezium's default
//! `skipped.operations=t`), and with `[events] provide_transaction_metadata` BEGIN/END
//! records on `<prefix>.transaction` and a `transaction` block in every event. Columns
//! the rule excludes are dropped, masks applied, schemas registered once per table
//! version (the hot path does no HTTP). Records are Avro (Confluent wire format) or, with
//! a JSON `[events] format`, Kafka Connect's JsonConverter JSON (no registry).

use std::collections::HashMap;
use std::sync::Arc;

use crate::codec::connect::ConnectSchema;
use crate::codec::records::FixedSchemas;
use crate::codec::{
    ChangeEvent, CodecOptions, ColumnSpec, ConnectorMeta, EventFormat, JsonRecord, MessageCodec,
    MessageEvent, SourceInfo, TableCodec, TableSpec, TransactionCodec, TransactionStatus,
};
use crate::config::{Connector, Mask, TableRule};
use crate::model::change::{OldRow, RowChange, RowOp};
use crate::model::lsn::Lsn;
use crate::model::relation::RelationInfo;
use crate::model::value::Value;
use crate::registry::client::RegistryClient;
use crate::registry::SubjectKind;

/// Debezium's header on the delete (and its tombstone) of a key change: the new key.
pub const HEADER_NEW_KEY: &str = "__debezium.newkey";
/// Debezium's header on the create of a key change: the old key.
pub const HEADER_OLD_KEY: &str = "__debezium.oldkey";
/// The data collection Debezium counts logical decoding messages under in transaction
/// metadata (`LogicalDecodingMessageMonitor.LogicalDecodingMessageId.identifier()`).
pub const MESSAGE_DATA_COLLECTION: &str = "LOGICAL_DECODING_MESSAGE";

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{0}")]
    Schema(String),
    #[error("schema registry: {0}")]
    Registry(String),
    #[error("cannot encode a change of {table}: {message}")]
    Encode { table: String, message: String },
}

/// The transaction whose events are being built.
#[derive(Debug, Clone, Copy)]
pub struct TxContext {
    pub xid: u32,
    pub commit_time_us: i64,
    /// The end LSN of the previous committed transaction (`source.sequence`'s first half).
    pub last_commit_lsn: Option<Lsn>,
}

/// How one record shape (a key or a value schema) is serialized. Every codec writes
/// the Avro datum framed with a schema id; JSON renders that datum (the id is unused).
#[derive(Debug, Clone)]
enum Serializer {
    /// Confluent's wire format under this registered schema id.
    Avro(u32),
    /// Kafka Connect's JsonConverter (with or without the schema).
    Json(JsonRecord),
}

impl Serializer {
    fn id(&self) -> u32 {
        match self {
            Serializer::Avro(id) => *id,
            Serializer::Json(_) => 0,
        }
    }

    /// The record bytes from a framed Avro datum.
    fn finish(&self, framed: Vec<u8>, what: &str) -> Result<Vec<u8>, EventError> {
        match self {
            Serializer::Avro(_) => Ok(framed),
            Serializer::Json(record) => {
                let mut out = Vec::with_capacity(framed.len() * 2 + 16);
                record
                    .write_framed(&framed, &mut out)
                    .map_err(|e| EventError::Encode {
                        table: what.to_string(),
                        message: e.to_string(),
                    })?;
                Ok(out)
            }
        }
    }
}

/// What a table version needs to produce records.
struct TableState {
    codec: TableCodec,
    topic: Arc<str>,
    key: Option<Serializer>,
    value: Serializer,
    /// Indexes of the relation's columns that are captured (all when `None`).
    projection: Option<Vec<usize>>,
    projected: Arc<RelationInfo>,
    /// Per captured column, its mask.
    masks: Vec<Option<Mask>>,
    tombstones: bool,
    /// Indexes (into the projected row) of the key columns.
    key_columns: Vec<usize>,
    /// The table's `walcast_events_total` series, by op.
    counters: OpCounters,
}

impl TableState {
    fn encode_error(&self, e: crate::codec::EncodeError) -> EventError {
        EventError::Encode {
            table: self.projected.qualified(),
            message: e.to_string(),
        }
    }

    /// The Kafka key of `row` (`None` for a table without key columns).
    fn encode_key(&self, row: &[Value]) -> Result<Option<Vec<u8>>, EventError> {
        let Some(serializer) = &self.key else {
            return Ok(None);
        };
        let mut buf = Vec::with_capacity(32);
        self.codec
            .encode_key(row, serializer.id(), &mut buf)
            .map_err(|e| self.encode_error(e))?;
        serializer.finish(buf, self.codec.table()).map(Some)
    }

    /// The value of an unwrapped delete in `tombstone` mode: Debezium's transform leaves
    /// a null value with the row's (optional) schema, which the Avro converter writes as
    /// a real null and the JSON converter as `null` or `{"schema":…,"payload":null}`.
    fn unwrapped_null(&self) -> Option<Vec<u8>> {
        let (Serializer::Json(record), Some((_, row))) =
            (&self.value, self.codec.unwrap_transform())
        else {
            return None;
        };
        Some(crate::codec::json::null_payload(
            &row.clone().optional(),
            record.with_schema(),
        ))
    }

    /// The Kafka value of `event`.
    fn encode_value(&self, event: &ChangeEvent) -> Result<Vec<u8>, EventError> {
        let mut buf = Vec::with_capacity(256);
        self.codec
            .encode_envelope(event, self.value.id(), &mut buf)
            .map_err(|e| self.encode_error(e))?;
        self.value.finish(buf, self.codec.table())
    }

    /// The value of Debezium's `__debezium.oldkey` / `__debezium.newkey` header for the
    /// key of `row`.
    ///
    /// Debezium adds the key `Struct` as a Connect header; the Kafka Connect worker
    /// serializes headers with its `header.converter`, whose default is
    /// `SimpleHeaderConverter` whatever the key and value converters are (Avro or
    /// JSON). That converter writes `Values.convertToString(schema, key)` as UTF-8: for
    /// a struct `{"id":1}`, strings quoted with only `\` and `"` escaped, numbers as
    /// Java prints them (a Decimal as `BigDecimal.toString()`), bytes in base64. This is
    /// what a consumer of Debezium's topics receives, so walcast writes exactly that
    /// text (in every `[events] format`), not the Avro-encoded key.
    fn key_header(&self, row: &[Value]) -> Result<Vec<u8>, EventError> {
        crate::codec::json::key_header_value(&self.codec, row)
            .map(String::into_bytes)
            .map_err(|e| self.encode_error(e))
    }
}

pub struct EventStage {
    connector: Arc<Connector>,
    meta: Arc<ConnectorMeta>,
    options: CodecOptions,
    /// `None` with a JSON format (no registry).
    registry: Option<RegistryClient>,
    tables: HashMap<(u32, u64), TableState>,
    /// Tables in the publication that no `[tables]` rule captures (someone changed the
    /// publication by hand): their changes are skipped, with one warning each.
    uncaptured: std::collections::HashSet<u32>,
    messages: Option<(MessageCodec, Serializer, Serializer, Arc<str>)>,
    transactions: Option<TransactionTopic>,
    tx: TxMeta,
    /// The heartbeat records' topic and serializers, once the first is written.
    heartbeats: Option<(Arc<str>, Serializer, Serializer)>,
    /// The serializers of each outbox route topic (and table version) seen so far.
    outbox_topics: HashMap<(String, (u32, u64), SubjectKind), Serializer>,
}

impl EventStage {
    /// `registry` is needed by the Avro format only.
    pub fn new(connector: Arc<Connector>, registry: Option<RegistryClient>) -> Self {
        let meta = Arc::new(ConnectorMeta::new(
            connector.kafka.topic_prefix.clone(),
            connector.source.dbname.clone(),
        ));
        Self {
            options: connector.events.codec.clone(),
            connector,
            meta,
            registry,
            tables: HashMap::new(),
            uncaptured: std::collections::HashSet::new(),
            messages: None,
            transactions: None,
            tx: TxMeta::default(),
            outbox_topics: HashMap::new(),
            heartbeats: None,
        }
    }

    /// Whether changes of `relation` are skipped because no rule captures it (decided
    /// once per table).
    fn skips(&mut self, relation: &RelationInfo) -> bool {
        if self.uncaptured.contains(&relation.oid) {
            return true;
        }
        if self.tables.contains_key(&(relation.oid, relation.version))
            || self.rule_for(relation).is_some()
        {
            return false;
        }
        tracing::warn!(
            table = %relation.qualified(),
            "the publication sends changes of a table this connector does not capture (was it added by hand?); they are skipped. Add a [tables] rule to capture it, or run walcast setup to bring the publication back to the captured set"
        );
        self.uncaptured.insert(relation.oid);
        true
    }

    fn rule_for(&self, relation: &RelationInfo) -> Option<&TableRule> {
        self.connector
            .tables
            .iter()
            .find(|r| r.applies_to(&relation.schema, &relation.table))
    }

    /// How a record shape of `subject` is serialized in the connector's format:
    /// registered (once; the client caches) for Avro, rendered for JSON.
    async fn serializer(
        &self,
        topic: &str,
        kind: SubjectKind,
        schema: &ConnectSchema,
        avro_json: &str,
    ) -> Result<Serializer, EventError> {
        match self.connector.events.format {
            EventFormat::Avro => {
                let subject = self.connector.registry.subject_name_strategy.subject(
                    topic,
                    kind,
                    &record_full_name(avro_json),
                );
                let subject = subject.as_str();
                let registry = self.registry.as_ref().ok_or_else(|| {
                    EventError::Registry(
                        "the Avro format needs a schema registry; set [registry] url".into(),
                    )
                })?;
                let id = registry
                    .register(subject, avro_json)
                    .await
                    .map_err(|e| EventError::Registry(e.to_string()))?;
                Ok(Serializer::Avro(id))
            }
            EventFormat::Json => Ok(Serializer::Json(JsonRecord::new(schema, false))),
            EventFormat::JsonWithSchema => Ok(Serializer::Json(JsonRecord::new(schema, true))),
        }
    }

    async fn table(&mut self, relation: &Arc<RelationInfo>) -> Result<&TableState, EventError> {
        let id = (relation.oid, relation.version);
        if !self.tables.contains_key(&id) {
            let state = self.build_table(relation).await?;
            self.tables.insert(id, state);
        }
        self.tables
            .get(&id)
            .ok_or_else(|| EventError::Schema("table state vanished".into()))
    }

    async fn build_table(&self, relation: &Arc<RelationInfo>) -> Result<TableState, EventError> {
        let rule = self.rule_for(relation).cloned();
        let (projection, projected) = project(relation, rule.as_ref());
        let key_columns = key_columns(&projected, rule.as_ref())?;
        let spec = TableSpec {
            columns: projected
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| ColumnSpec {
                    optional: !(c.not_null || key_columns.contains(&i)),
                    // As Debezium: the column default becomes the field's default.
                    default: c
                        .default_expr
                        .as_deref()
                        .and_then(|e| crate::codec::parse_default_expression(c, e)),
                })
                .collect(),
            key: key_columns.clone(),
            unwrap: match rule.as_ref().and_then(|r| r.unwrap) {
                Some(false) => None,
                Some(true) => Some(self.connector.events.unwrap.clone().unwrap_or_default()),
                None => self.connector.events.unwrap.clone(),
            },
            route: None,
        };
        let own_topic = match rule.as_ref().and_then(|r| r.topic.clone()) {
            Some(t) => t,
            None => format!(
                "{}.{}.{}",
                self.connector.kafka.topic_prefix, projected.schema, projected.table
            ),
        };
        let route = self
            .connector
            .events
            .route
            .as_ref()
            .and_then(|r| r.apply(&own_topic));
        let topic: Arc<str> = route
            .as_ref()
            .map_or(own_topic.as_str(), |r| r.topic.as_str())
            .into();
        let spec = TableSpec { route, ..spec };
        let codec = TableCodec::new(
            &projected,
            &spec,
            &self.connector.kafka.topic_prefix,
            &self.options,
        )
        .map_err(|e| EventError::Schema(e.to_string()))?;
        let masks = projected
            .columns
            .iter()
            .map(|c| {
                rule.as_ref()
                    .and_then(|r| r.masks.iter().find(|m| m.column == c.name))
                    .map(|m| m.mask.clone())
            })
            .collect();
        let key = match (codec.key_connect_schema(), codec.key_schema_json()) {
            (Some(schema), Some(avro)) => Some(
                self.serializer(&topic, SubjectKind::Key, schema, avro)
                    .await?,
            ),
            _ => None,
        };
        let value = self
            .serializer(
                &topic,
                SubjectKind::Value,
                codec.envelope_connect_schema(),
                codec.envelope_schema_json(),
            )
            .await?;
        let counters = OpCounters::new(&self.connector.name, &projected.qualified());
        Ok(TableState {
            codec,
            topic,
            key,
            value,
            projection,
            projected,
            masks,
            tombstones: rule.as_ref().is_none_or(|r| r.tombstones),
            key_columns,
            counters,
        })
    }

    /// The key and value serializers of a fixed-shape topic (messages, transactions).
    async fn fixed_serializers(
        &self,
        topic: &str,
        schemas: &FixedSchemas,
    ) -> Result<(Serializer, Serializer), EventError> {
        let key = self
            .serializer(
                topic,
                SubjectKind::Key,
                schemas.key_connect_schema(),
                schemas.key_schema_json(),
            )
            .await?;
        let value = self
            .serializer(
                topic,
                SubjectKind::Value,
                schemas.value_connect_schema(),
                schemas.value_schema_json(),
            )
            .await?;
        Ok((key, value))
    }

    /// Makes sure the transaction topic's schemas are ready (registered for Avro).
    /// The key and value serializers of `topic` for schemas built here (outbox routes,
    /// heartbeats).
    async fn serializers_for(
        &self,
        topic: &str,
        key: &ConnectSchema,
        value: &ConnectSchema,
    ) -> Result<(Serializer, Serializer), EventError> {
        let key = self
            .serializer(topic, SubjectKind::Key, key, &key.to_avro_json())
            .await?;
        let value = self
            .serializer(topic, SubjectKind::Value, value, &value.to_avro_json())
            .await?;
        Ok((key, value))
    }

    pub(super) async fn transaction_topic(&mut self) -> Result<(), EventError> {
        if self.transactions.is_some() {
            return Ok(());
        }
        let codec = TransactionCodec::new();
        let topic: Arc<str> = format!("{}.transaction", self.connector.kafka.topic_prefix).into();
        let (key, value) = self.fixed_serializers(&topic, &codec).await?;
        self.transactions = Some(TransactionTopic {
            codec,
            key,
            value,
            topic,
        });
        Ok(())
    }

    /// A transaction begins (PostgreSQL's BEGIN): its metadata starts afresh. With
    /// `provide_transaction_metadata` its BEGIN record is written before its first event
    /// (see `TxMeta::event`), or at its commit when it has none.
    pub fn begin_transaction(&mut self, tx: &TxContext, commit_lsn: Lsn) {
        self.tx = TxMeta {
            xid: tx.xid,
            commit_time_us: tx.commit_time_us,
            commit_lsn,
            ..TxMeta::default()
        };
    }

    /// The transaction commits; its WAL ends at `end_lsn`. With
    /// `provide_transaction_metadata`: its END record (`<xid>:<end_lsn>`, as Debezium's
    /// id carries the LSN of the COMMIT message, which is the end of the commit record),
    /// preceded by its BEGIN when no event wrote one (a transaction with nothing
    /// captured in it: Debezium writes both then too).
    pub async fn commit_transaction(
        &mut self,
        end_lsn: Lsn,
        out: &mut Vec<Encoded>,
    ) -> Result<(), EventError> {
        if !self.connector.events.provide_transaction_metadata {
            return Ok(());
        }
        self.transaction_topic().await?;
        let Some(topic) = &self.transactions else {
            return Ok(());
        };
        if !self.tx.begun {
            out.push(
                topic.record(
                    &self
                        .tx
                        .boundary(TransactionStatus::Begin, self.tx.commit_lsn),
                )?,
            );
            self.tx.begun = true;
        }
        out.push(topic.record(&self.tx.boundary(TransactionStatus::End, end_lsn))?);
        self.tx = TxMeta::default();
        Ok(())
    }

    /// The records of one row change, in the order Debezium emits them.
    pub async fn change(
        &mut self,
        change: RowChange,
        tx: &TxContext,
        out: &mut Vec<Encoded>,
    ) -> Result<(), EventError> {
        if self.skips(&change.relation) || self.skipped_operation(change.op) {
            return Ok(());
        }
        if let Some(outbox) = self.outbox_of(&change.relation) {
            return self.outbox_change(&outbox, change, out).await;
        }
        let metadata = self.connector.events.provide_transaction_metadata;
        if metadata {
            self.transaction_topic().await?;
        }
        let key_headers = self.connector.events.emit_key_change_headers;
        let meta = self.meta.clone();
        self.table(&change.relation).await?;
        let id = (change.relation.oid, change.relation.version);
        let Some(state) = self.tables.get(&id) else {
            return Err(EventError::Schema("table state vanished".into()));
        };
        let tx_meta = &mut self.tx;
        let tx_topic = self.transactions.as_ref().filter(|_| metadata);
        let project = |row: Vec<Value>| -> Vec<Value> {
            let row = match &state.projection {
                Some(keep) => keep.iter().map(|&i| row[i].clone()).collect(),
                None => row,
            };
            apply_masks(row, &state.masks)
        };
        let old = change.old.map(|o| match o {
            OldRow::Key(r) | OldRow::Full(r) => project(r),
        });
        let new = change.new.map(project);
        let source = SourceInfo::streaming(
            meta,
            tx.commit_time_us,
            tx.last_commit_lsn,
            change.lsn,
            tx.xid,
        );
        let now_ns = now_ns();
        let collection = state.projected.qualified();

        // A key change: delete (+ tombstone) of the old key, then a create.
        let key_changed = change.op == RowOp::Update
            && !state.key_columns.is_empty()
            && matches!((&old, &new), (Some(o), Some(n)) if state.key_columns.iter().any(|&i| !o[i].is_null() && o[i] != n[i]));
        let records = TableRecords {
            state,
            tx_topic,
            collection: &collection,
            lsn: change.lsn,
        };
        let mut emit = |event: ChangeEvent,
                        tombstone: bool,
                        headers: Vec<(&'static str, Vec<u8>)>,
                        out: &mut Vec<Encoded>| {
            records.push(tx_meta, event, tombstone, headers, out)
        };
        let make = |op: RowOp, before: Option<Vec<Value>>, after: Option<Vec<Value>>| {
            records.event(op, before, after, &source, now_ns)
        };
        match change.op {
            RowOp::Update if key_changed => {
                let (mut new_key, mut old_key) = (Vec::new(), Vec::new());
                if key_headers {
                    if let (Some(o), Some(n)) = (&old, &new) {
                        new_key.push((HEADER_NEW_KEY, state.key_header(n)?));
                        old_key.push((HEADER_OLD_KEY, state.key_header(o)?));
                    }
                }
                emit(make(RowOp::Delete, old, None), true, new_key, out)?;
                emit(make(RowOp::Insert, None, new), false, old_key, out)?;
            }
            RowOp::Delete => emit(make(RowOp::Delete, old, None), true, Vec::new(), out)?,
            op => emit(make(op, old, new), false, Vec::new(), out)?,
        }
        Ok(())
    }

    /// A logical decoding message, on `<prefix>.message`. A transactional one is an
    /// event of its transaction (counted in its metadata, with a `transaction` block);
    /// a non-transactional one stands alone.
    pub async fn message(
        &mut self,
        prefix: String,
        content: bytes::Bytes,
        lsn: Lsn,
        transactional: bool,
        tx: &TxContext,
        out: &mut Vec<Encoded>,
    ) -> Result<(), EventError> {
        // Filtered out: no event, and not counted in the transaction's metadata.
        if !self.connector.events.messages.emits(&prefix) {
            return Ok(());
        }
        if self.messages.is_none() {
            let codec = MessageCodec::new(&self.options);
            let topic: Arc<str> = format!("{}.message", self.connector.kafka.topic_prefix).into();
            let (key, value) = self.fixed_serializers(&topic, &codec).await?;
            self.messages = Some((codec, key, value, topic));
        }
        let metadata = self.connector.events.provide_transaction_metadata && transactional;
        if metadata {
            self.transaction_topic().await?;
        }
        let transaction = match (&self.transactions, metadata) {
            (Some(topic), true) => Some(self.tx.event(topic, MESSAGE_DATA_COLLECTION, lsn, out)?),
            _ => None,
        };
        let Some((codec, key_serializer, value_serializer, topic)) = &self.messages else {
            return Ok(());
        };
        let mut source = SourceInfo::streaming(
            self.meta.clone(),
            tx.commit_time_us,
            tx.last_commit_lsn,
            lsn,
            tx.xid,
        );
        if !transactional {
            // pgoutput sends no xid with a non-transactional message, and Debezium keeps
            // the previous event's commit time (the message has none of its own).
            source.tx_id = None;
        }
        let event = MessageEvent {
            prefix,
            content,
            source,
            ts_ns: now_ns(),
            transaction,
        };
        let mut key = Vec::new();
        codec.encode_key(&event, key_serializer.id(), &mut key);
        let mut value = Vec::new();
        codec.encode_value(&event, value_serializer.id(), &mut value);
        let mut record = Encoded::new(
            topic.clone(),
            Some(key_serializer.finish(key, topic)?),
            Some(value_serializer.finish(value, topic)?),
        );
        record.counter = Some(
            crate::observe::metrics()
                .connector(&self.connector.name)
                .events("", 'm'),
        );
        out.push(record);
        Ok(())
    }
}

/// `namespace.name` of an Avro record schema (for the record-name subject strategies).
fn record_full_name(avro_json: &str) -> String {
    let parsed: serde_json::Value = serde_json::from_str(avro_json).unwrap_or_default();
    // An optional record at the top (an expanded outbox payload) is `["null", {…}]`.
    let parsed = match parsed {
        serde_json::Value::Array(branches) => branches
            .into_iter()
            .find(serde_json::Value::is_object)
            .unwrap_or_default(),
        record => record,
    };
    match (parsed["namespace"].as_str(), parsed["name"].as_str()) {
        (Some(ns), Some(name)) if !ns.is_empty() => format!("{ns}.{name}"),
        (_, Some(name)) => name.to_owned(),
        _ => String::new(),
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

mod encoded;
mod masks;
mod outbox;
mod projection;
mod snapshot_rows;
mod stream_records;
mod table_records;
#[cfg(test)]
mod tests;
mod transaction_metadata;

pub use encoded::Encoded;
pub use masks::apply_masks;
use projection::{key_columns, project};
use table_records::{OpCounters, TableRecords};
use transaction_metadata::{TransactionTopic, TxMeta};
