//! Debezium's outbox EventRouter, for tables configured with `outbox`: services publish
//! domain events by inserting rows into an outbox table in the same transaction as
//! their state change, and each insert (or snapshot read) becomes one event on the
//! topic its route column names: key = the aggregate id column, value = the payload
//! column as it is, the event id as the `id` header and placed columns as headers.
//! Updates are dropped with a warning and deletes silently, as Debezium does (services
//! usually delete outbox rows right after inserting them).

use std::sync::Arc;

use tracing::warn;

use super::*;
use crate::config::Outbox;

impl EventStage {
    /// The outbox rule of `relation`'s table, if it has one.
    pub(super) fn outbox_of(&self, relation: &RelationInfo) -> Option<Arc<Outbox>> {
        self.rule_for(relation).and_then(|r| r.outbox.clone())
    }

    /// One change of an outbox table: an insert becomes its event (counted in the
    /// transaction's metadata, as Debezium counts before its transforms run).
    pub(super) async fn outbox_change(
        &mut self,
        outbox: &Outbox,
        change: RowChange,
        out: &mut Vec<Encoded>,
    ) -> Result<(), EventError> {
        match change.op {
            RowOp::Insert => {}
            RowOp::Update => {
                warn!(table = %change.relation.qualified(), "an UPDATE of an outbox table is ignored (outbox rows are inserted, then deleted or left)");
                return Ok(());
            }
            RowOp::Delete => return Ok(()),
        }
        let Some(row) = change.new else {
            return Ok(());
        };
        if self.connector.events.provide_transaction_metadata {
            self.transaction_topic().await?;
            if let Some(topic) = &self.transactions {
                let collection = change.relation.qualified();
                self.tx.event(topic, &collection, change.lsn, out)?;
            }
        }
        self.outbox_event(outbox, &change.relation, row, out).await
    }

    /// The event of one outbox row (an insert, or a snapshot read).
    pub(super) async fn outbox_event(
        &mut self,
        outbox: &Outbox,
        relation: &Arc<RelationInfo>,
        row: Vec<Value>,
        out: &mut Vec<Encoded>,
    ) -> Result<(), EventError> {
        let prefix = self.connector.kafka.topic_prefix.clone();
        let state = self.table(relation).await?;
        let row = match &state.projection {
            Some(keep) => keep.iter().map(|&i| row[i].clone()).collect(),
            None => row,
        };
        let row = apply_masks(row, &state.masks);
        let table = state.projected.qualified();
        let column_value = |name: &str| -> Result<&Value, EventError> {
            let i = state
                .projected
                .columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| EventError::Encode {
                    table: table.clone(),
                    message: format!("the outbox has no captured column {name}; capture it or set the outbox's column options"),
                })?;
            Ok(&row[i])
        };
        let column_text = |name: &str| column_value(name).map(header_text);
        let partition = match &outbox.partition {
            Some(column) => partition_of(column, column_value(column)?, &table)?,
            None => None,
        };
        let timestamp_ms = match &outbox.timestamp {
            Some(column) => timestamp_of(column, column_value(column)?, &table)?,
            None => None,
        };
        let payload_text = match column_value(&outbox.payload)? {
            Value::Json(s) | Value::Text(s) if outbox.expand_json.is_some() => Some(s.clone()),
            _ => None,
        };
        let route = column_text(&outbox.route_by)?.ok_or_else(|| EventError::Encode {
            table: table.clone(),
            message: format!(
                "an outbox row has a null {}, so it has no topic",
                outbox.route_by
            ),
        })?;
        let topic: Arc<str> = outbox.topic(&route, &prefix).into();
        let mut headers = Vec::with_capacity(1 + outbox.headers.len());
        if let Some(id) = column_text(&outbox.event_id)? {
            headers.push(("id", id.into_bytes()));
        }
        for (column, name) in &outbox.headers {
            if let Some(v) = column_text(column)? {
                headers.push((*name, v.into_bytes()));
            }
        }
        let counter = state.counters.of(crate::codec::Op::Create);
        let id = (relation.oid, relation.version);
        let expanded = match (payload_text, outbox.expand_json) {
            (Some(text), Some(nulls)) => {
                match crate::codec::json_payload::expand(&text, &outbox.payload, nulls) {
                    Ok(expanded) => Some(expanded),
                    Err(why) => {
                        warn!(table = %table, topic = %topic, "outbox payload not expanded ({why}); sent as the column's value");
                        None
                    }
                }
            }
            _ => None,
        };
        let key_serializer = self
            .outbox_serializer(&topic, &route, id, outbox, SubjectKind::Key)
            .await?;
        // The column's own value schema is registered only when it is used: an
        // expanded payload registers its own, and the two shapes are not compatible.
        let value_serializer = match expanded {
            Some(_) => None,
            None => Some(
                self.outbox_serializer(&topic, &route, id, outbox, SubjectKind::Value)
                    .await?,
            ),
        };
        let codec = &self
            .tables
            .get(&id)
            .ok_or_else(|| EventError::Schema("table state vanished".into()))?
            .codec;
        let encode = |column: &str, serializer: &Serializer| -> Result<Vec<u8>, EventError> {
            let mut buf = Vec::with_capacity(64);
            codec
                .encode_column(column, &row, serializer.id(), &mut buf)
                .map_err(|e| EventError::Encode {
                    table: table.clone(),
                    message: e.to_string(),
                })?;
            serializer.finish(buf, &topic)
        };
        let key = encode(&outbox.event_key, &key_serializer)?;
        let payload_is_null = codec
            .column_index(&outbox.payload)
            .is_some_and(|i| matches!(row[i], Value::Null));
        // A NULL payload: the Avro converter writes a null value as a real null, the
        // JSON converter as `null` (or the schema with a null payload).
        // An expanded payload: the struct inferred from its JSON (its schema registered
        // with each new shape), alone or first in the envelope.
        let value = if let Some(expanded) = expanded {
            let schema = if outbox.envelope.is_empty() {
                expanded.schema
            } else {
                envelope_schema(codec, &route, outbox, expanded.schema)?
            };
            let serializer = self
                .serializer(&topic, SubjectKind::Value, &schema, &schema.to_avro_json())
                .await?;
            let mut buf = Vec::with_capacity(expanded.datum.len() + 64);
            crate::codec::wire::start(&mut buf, serializer.id());
            buf.extend_from_slice(&expanded.datum);
            let envelope: Vec<&str> = outbox.envelope.iter().map(|(c, _)| c.as_str()).collect();
            codec
                .write_columns(&envelope, &row, &mut buf)
                .map_err(|e| EventError::Encode {
                    table: table.clone(),
                    message: e.to_string(),
                })?;
            Some(serializer.finish(buf, &topic)?)
        } else {
            let value_serializer = value_serializer
                .ok_or_else(|| EventError::Schema("no outbox value serializer".into()))?;
            match (&value_serializer, payload_is_null) {
                // With envelope placements the value is `{payload, <fields>}`.
                _ if !outbox.envelope.is_empty() => {
                    let mut columns = vec![outbox.payload.as_str()];
                    columns.extend(outbox.envelope.iter().map(|(c, _)| c.as_str()));
                    let mut buf = Vec::with_capacity(128);
                    codec
                        .encode_columns(&columns, &row, value_serializer.id(), &mut buf)
                        .map_err(|e| EventError::Encode {
                            table: table.clone(),
                            message: e.to_string(),
                        })?;
                    Some(value_serializer.finish(buf, &topic)?)
                }
                (Serializer::Avro(_), true) => None,
                (Serializer::Json(record), true) => Some(crate::codec::json::null_payload(
                    record.schema(),
                    record.with_schema(),
                )),
                (_, false) => Some(encode(&outbox.payload, &value_serializer)?),
            }
        };
        out.push(Encoded {
            topic: topic.clone(),
            key: Some(key),
            value,
            headers,
            counter,
            context: true,
            partition,
            timestamp_ms,
        });
        Ok(())
    }

    /// The key or value serializer of an outbox route's topic: the aggregate id's or
    /// the payload column's schema (or the envelope's), registered under the route
    /// topic's subject of that kind.
    async fn outbox_serializer(
        &mut self,
        topic: &str,
        route: &str,
        table: (u32, u64),
        outbox: &Outbox,
        kind: SubjectKind,
    ) -> Result<Serializer, EventError> {
        let cache_key = (topic.to_owned(), table, kind);
        if let Some(found) = self.outbox_topics.get(&cache_key) {
            return Ok(found.clone());
        }
        let codec = &self
            .tables
            .get(&table)
            .ok_or_else(|| EventError::Schema("table state vanished".into()))?
            .codec;
        let schema_of = |column: &str| {
            codec.column_schema(column).ok_or_else(|| EventError::Schema(format!(
                "outbox table {}: column {column} is not captured (or has a type walcast leaves out)",
                codec.table()
            )))
        };
        let schema = match kind {
            SubjectKind::Key => schema_of(&outbox.event_key)?,
            SubjectKind::Value if outbox.envelope.is_empty() => schema_of(&outbox.payload)?,
            SubjectKind::Value => {
                envelope_schema(codec, route, outbox, schema_of(&outbox.payload)?)?
            }
        };
        let serializer = self
            .serializer(topic, kind, &schema, &schema.to_avro_json())
            .await?;
        self.outbox_topics.insert(cache_key, serializer.clone());
        Ok(serializer)
    }
}

/// The value of an outbox with envelope placements: `{payload, <fields>}`, named as
/// Debezium names it, after the row record with the route value inserted before
/// `.Value` (e.g. `shop.public.outbox.order.Value`).
fn envelope_schema(
    codec: &TableCodec,
    route: &str,
    outbox: &Outbox,
    payload: ConnectSchema,
) -> Result<ConnectSchema, EventError> {
    let row_name = codec.row_schema_name();
    let name = match row_name.rsplit_once('.') {
        Some((head, last)) => format!("{head}.{route}.{last}"),
        None => format!("{route}.{row_name}"),
    };
    let mut fields = vec![crate::codec::connect::field("payload", payload)];
    for (column, alias) in &outbox.envelope {
        let schema = codec.column_schema(column).ok_or_else(|| {
            EventError::Schema(format!(
                "outbox table {}: column {column} is not captured (or has a type walcast leaves out)",
                codec.table()
            ))
        })?;
        fields.push(crate::codec::connect::field(alias.clone(), schema));
    }
    Ok(ConnectSchema::record(
        crate::codec::avro_full_name(&[&name]),
        fields,
    ))
}

/// The partition an outbox row names in its `column:partition` column (an integer, as
/// Debezium reads an INT32; NULL: by key).
fn partition_of(column: &str, value: &Value, table: &str) -> Result<Option<i32>, EventError> {
    match value {
        Value::Null => Ok(None),
        Value::Int2(n) => Ok(Some(i32::from(*n))),
        Value::Int4(n) => Ok(Some(*n)),
        _ => Err(EventError::Encode {
            table: table.to_owned(),
            message: format!("the outbox partition column {column} must be smallint or integer"),
        }),
    }
}

/// The Kafka timestamp (ms) an outbox row's `table_field_event_timestamp` column gives:
/// a `timestamp` (Debezium's MicroTimestamp, divided by 1,000 as Java divides) or
/// `timestamptz` column; NULL, ±infinity or a time before 1970 (which Kafka cannot
/// hold) leave the producer's time.
fn timestamp_of(column: &str, value: &Value, table: &str) -> Result<Option<i64>, EventError> {
    use crate::model::value::TimestampValue;
    match value {
        Value::Null => Ok(None),
        Value::Timestamp(t) | Value::TimestampTz(t) => Ok(match t {
            TimestampValue::Finite(micros) if *micros >= 0 => Some(micros / 1000),
            _ => {
                warn!(table = %table, column = %column, "an outbox row's timestamp is before 1970 or infinite; the record gets the producer's time");
                None
            }
        }),
        _ => Err(EventError::Encode {
            table: table.to_owned(),
            message: format!(
                "the outbox timestamp column {column} must be timestamp or timestamptz"
            ),
        }),
    }
}

/// A column value as Kafka Connect's SimpleHeaderConverter writes a primitive: text as
/// it is, numbers in decimal; `None` for NULL.
fn header_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null | Value::UnchangedToast => return None,
        Value::Text(s) | Value::Enum(s) | Value::Json(s) | Value::Xml(s) | Value::Uuid(s) => {
            s.clone()
        }
        Value::Bool(b) => b.to_string(),
        Value::Int2(n) => n.to_string(),
        Value::Int4(n) => n.to_string(),
        Value::Int8(n) => n.to_string(),
        Value::Oid(n) => n.to_string(),
        other => format!("{other:?}"),
    })
}
