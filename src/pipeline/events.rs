//! The event stage: turns the reader's transactions into Kafka records, the way
//! Debezium's PostgreSQL connector would: one envelope per row change on the table's
//! topic, a tombstone after each delete, a primary-key change as delete + tombstone +
//! create, logical decoding messages on `<prefix>.message`, truncates skipped (Debezium's
//! default `skipped.operations=t`). Columns the rule excludes are dropped, masks applied,
//! schemas registered once per table version (the hot path does no HTTP).

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256, Sha512};

use crate::codec::{
    ChangeEvent, CodecOptions, ColumnSpec, ConnectorMeta, MessageCodec, MessageEvent, SourceInfo,
    TableCodec, TableSpec,
};
use crate::config::{ColumnSelection, Connector, HashAlgorithm, Mask, TableRule};
use crate::postgres::ReplicaIdentity;
use crate::registry::client::RegistryClient;
use crate::source::change::{OldRow, RowChange, RowOp};
use crate::source::lsn::Lsn;
use crate::source::relation::RelationInfo;
use crate::source::value::Value;

/// One record ready for the sink (position assigned by the caller, in order).
#[derive(Debug, Clone)]
pub struct Encoded {
    pub topic: Arc<str>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

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

/// What a table version needs to produce records.
struct TableState {
    codec: TableCodec,
    topic: Arc<str>,
    key_id: Option<u32>,
    value_id: u32,
    /// Indexes of the relation's columns that are captured (all when `None`).
    projection: Option<Vec<usize>>,
    projected: Arc<RelationInfo>,
    /// Per captured column, its mask.
    masks: Vec<Option<Mask>>,
    tombstones: bool,
    /// Indexes (into the projected row) of the key columns.
    key_columns: Vec<usize>,
}

pub struct EventStage {
    connector: Arc<Connector>,
    meta: Arc<ConnectorMeta>,
    options: CodecOptions,
    registry: RegistryClient,
    tables: HashMap<(u32, u32), TableState>,
    messages: Option<(MessageCodec, u32, u32, Arc<str>)>,
}

impl EventStage {
    pub fn new(connector: Arc<Connector>, registry: RegistryClient) -> Self {
        let meta = Arc::new(ConnectorMeta::new(
            connector.kafka.topic_prefix.clone(),
            connector.source.dbname.clone(),
        ));
        Self {
            connector,
            meta,
            options: CodecOptions::default(),
            registry,
            tables: HashMap::new(),
            messages: None,
        }
    }

    fn rule_for(&self, relation: &RelationInfo) -> Option<&TableRule> {
        self.connector
            .tables
            .iter()
            .find(|r| r.applies_to(&relation.schema, &relation.table))
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
        let table = relation.qualified();
        // Projection: columns the rule leaves out (when the publication could not).
        let keep: Vec<usize> = (0..relation.columns.len())
            .filter(|&i| {
                let c = &relation.columns[i];
                let configured_key = rule
                    .as_ref()
                    .and_then(|r| r.key.as_ref())
                    .is_some_and(|k| k.contains(&c.name));
                c.is_key && relation.replica_identity != ReplicaIdentity::Full
                    || configured_key
                    || match rule.as_ref().map(|r| &r.columns) {
                        Some(ColumnSelection::Include(list)) => list.contains(&c.name),
                        Some(ColumnSelection::Exclude(list)) => !list.contains(&c.name),
                        _ => true,
                    }
            })
            .collect();
        let (projection, projected) = if keep.len() == relation.columns.len() {
            (None, relation.clone())
        } else {
            let mut p = (**relation).clone();
            p.columns = keep.iter().map(|&i| relation.columns[i].clone()).collect();
            (Some(keep), Arc::new(p))
        };
        let key_columns: Vec<usize> = match rule.as_ref().and_then(|r| r.key.as_ref()) {
            Some(names) => names
                .iter()
                .map(|n| {
                    projected.columns.iter().position(|c| &c.name == n).ok_or_else(|| {
                        EventError::Schema(format!("table {table}: key column `{n}` is not in the stream; check its [tables] entry"))
                    })
                })
                .collect::<Result<_, _>>()?,
            None if projected.replica_identity == ReplicaIdentity::Full => Vec::new(),
            None => (0..projected.columns.len()).filter(|&i| projected.columns[i].is_key).collect(),
        };
        let spec = TableSpec {
            columns: projected
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| ColumnSpec {
                    optional: !(c.not_null || key_columns.contains(&i)),
                    default: None,
                })
                .collect(),
            key: key_columns.clone(),
        };
        let codec = TableCodec::new(
            &projected,
            &spec,
            &self.connector.kafka.topic_prefix,
            &self.options,
        )
        .map_err(|e| EventError::Schema(e.to_string()))?;
        let topic: Arc<str> = match rule.as_ref().and_then(|r| r.topic.clone()) {
            Some(t) => t.into(),
            None => format!(
                "{}.{}.{}",
                self.connector.kafka.topic_prefix, projected.schema, projected.table
            )
            .into(),
        };
        let masks = projected
            .columns
            .iter()
            .map(|c| {
                rule.as_ref()
                    .and_then(|r| r.masks.iter().find(|m| m.column == c.name))
                    .map(|m| m.mask.clone())
            })
            .collect();
        let key_id = match codec.key_schema_json() {
            Some(schema) => Some(
                self.registry
                    .register(&format!("{topic}-key"), schema)
                    .await
                    .map_err(|e| EventError::Registry(e.to_string()))?,
            ),
            None => None,
        };
        let value_id = self
            .registry
            .register(&format!("{topic}-value"), codec.envelope_schema_json())
            .await
            .map_err(|e| EventError::Registry(e.to_string()))?;
        Ok(TableState {
            codec,
            topic,
            key_id,
            value_id,
            projection,
            projected,
            masks,
            tombstones: rule.as_ref().is_none_or(|r| r.tombstones),
            key_columns,
        })
    }

    /// The records of one row change, in the order Debezium emits them.
    pub async fn change(
        &mut self,
        change: RowChange,
        tx: &TxContext,
        out: &mut Vec<Encoded>,
    ) -> Result<(), EventError> {
        let meta = self.meta.clone();
        let state = self.table(&change.relation).await?;
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
        let projected = state.projected.clone();
        let table = projected.qualified();
        let encode_err = |e: crate::codec::EncodeError| EventError::Encode {
            table: table.clone(),
            message: e.to_string(),
        };

        // A key change: delete (+ tombstone) of the old key, then a create.
        let key_changed = change.op == RowOp::Update
            && !state.key_columns.is_empty()
            && matches!((&old, &new), (Some(o), Some(n)) if state.key_columns.iter().any(|&i| !o[i].is_null() && o[i] != n[i]));
        let emit = |event: ChangeEvent,
                    tombstone: bool,
                    out: &mut Vec<Encoded>|
         -> Result<(), EventError> {
            let key = match (state.key_id, event.key_row()) {
                (Some(id), Some(row)) => {
                    let mut buf = Vec::new();
                    state
                        .codec
                        .encode_key(row, id, &mut buf)
                        .map_err(encode_err)?;
                    Some(buf)
                }
                _ => None,
            };
            let mut value = Vec::with_capacity(256);
            state
                .codec
                .encode_envelope(&event, state.value_id, &mut value)
                .map_err(encode_err)?;
            out.push(Encoded {
                topic: state.topic.clone(),
                key: key.clone(),
                value: Some(value),
            });
            if tombstone && state.tombstones && key.is_some() {
                out.push(Encoded {
                    topic: state.topic.clone(),
                    key,
                    value: None,
                });
            }
            Ok(())
        };
        let make = |op: RowOp, before: Option<Vec<Value>>, after: Option<Vec<Value>>| {
            ChangeEvent::from_row_change(
                RowChange {
                    relation: projected.clone(),
                    op,
                    old: before.map(OldRow::Full),
                    new: after,
                    lsn: change.lsn,
                },
                source.clone(),
                now_ns,
                None,
            )
        };
        match change.op {
            RowOp::Update if key_changed => {
                emit(make(RowOp::Delete, old, None), true, out)?;
                emit(make(RowOp::Insert, None, new), false, out)?;
            }
            RowOp::Delete => emit(make(RowOp::Delete, old, None), true, out)?,
            op => emit(make(op, old, new), false, out)?,
        }
        Ok(())
    }

    /// A logical decoding message, on `<prefix>.message`.
    pub async fn message(
        &mut self,
        prefix: String,
        content: bytes::Bytes,
        lsn: Lsn,
        tx: &TxContext,
        out: &mut Vec<Encoded>,
    ) -> Result<(), EventError> {
        if self.messages.is_none() {
            let codec = MessageCodec::new(&self.options);
            let topic: Arc<str> = format!("{}.message", self.connector.kafka.topic_prefix).into();
            let key_id = self
                .registry
                .register(&format!("{topic}-key"), codec.key_schema_json())
                .await
                .map_err(|e| EventError::Registry(e.to_string()))?;
            let value_id = self
                .registry
                .register(&format!("{topic}-value"), codec.value_schema_json())
                .await
                .map_err(|e| EventError::Registry(e.to_string()))?;
            self.messages = Some((codec, key_id, value_id, topic));
        }
        let Some((codec, key_id, value_id, topic)) = &self.messages else {
            return Ok(());
        };
        let event = MessageEvent {
            prefix,
            content,
            source: SourceInfo::streaming(
                self.meta.clone(),
                tx.commit_time_us,
                tx.last_commit_lsn,
                lsn,
                tx.xid,
            ),
            ts_ns: now_ns(),
            transaction: None,
        };
        let mut key = Vec::new();
        codec.encode_key(&event, *key_id, &mut key);
        let mut value = Vec::new();
        codec.encode_value(&event, *value_id, &mut value);
        out.push(Encoded {
            topic: topic.clone(),
            key: Some(key),
            value: Some(value),
        });
        Ok(())
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Masks text values: a salted hash (hex), a fixed text, or the first N characters.
/// Masks only apply to text columns (the config check rejects others); NULLs stay NULL.
pub fn apply_masks(mut row: Vec<Value>, masks: &[Option<Mask>]) -> Vec<Value> {
    for (value, mask) in row.iter_mut().zip(masks) {
        let (Some(mask), Value::Text(text)) = (mask, &*value) else {
            continue;
        };
        let masked = match mask {
            Mask::Hash { algorithm, salt } => {
                let bytes: Vec<u8> = match algorithm {
                    HashAlgorithm::Sha256 => Sha256::new()
                        .chain_update(salt.expose())
                        .chain_update(text)
                        .finalize()
                        .to_vec(),
                    HashAlgorithm::Sha512 => Sha512::new()
                        .chain_update(salt.expose())
                        .chain_update(text)
                        .finalize()
                        .to_vec(),
                };
                bytes.iter().map(|b| format!("{b:02x}")).collect()
            }
            Mask::Fixed(fixed) => fixed.clone(),
            Mask::Truncate(n) => text.chars().take(*n).collect(),
        };
        *value = Value::Text(masked);
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn masks_hash_fix_and_truncate_text_only() {
        let row = vec![
            Value::Text("ann@example.com".into()),
            Value::Text("555-1234".into()),
            Value::Text("long notes".into()),
            Value::Int4(1),
            Value::Null,
        ];
        let masks = vec![
            Some(Mask::Hash {
                algorithm: HashAlgorithm::Sha256,
                salt: Secret::new("s"),
            }),
            Some(Mask::Fixed("****".into())),
            Some(Mask::Truncate(4)),
            Some(Mask::Fixed("x".into())),
            Some(Mask::Fixed("x".into())),
        ];
        let out = apply_masks(row, &masks);
        // sha256("s" + "ann@example.com")
        let expected: String = Sha256::digest(b"sann@example.com")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(out[0], Value::Text(expected));
        assert_eq!(out[1], Value::Text("****".into()));
        assert_eq!(out[2], Value::Text("long".into()));
        assert_eq!(out[3], Value::Int4(1));
        assert_eq!(out[4], Value::Null);
    }
}
