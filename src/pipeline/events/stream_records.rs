//! Records of the stream besides row changes: TRUNCATE events (when
//! `skipped_operations` lets them through) and Debezium's heartbeat records.

use std::sync::Arc;

use super::*;

impl EventStage {
    /// `skipped_operations` names `op` (Debezium checks the source operation: an update
    /// that changes the key is skipped whole when updates are).
    pub(super) fn skipped_operation(&self, op: RowOp) -> bool {
        let skipped = &self.connector.events.skipped;
        match op {
            RowOp::Insert => skipped.creates,
            RowOp::Update => skipped.updates,
            RowOp::Delete => skipped.deletes,
        }
    }

    /// A TRUNCATE of `relation` (when `skipped_operations` lets truncates through): an
    /// `op = t` event with no before, no after and a null key on the table's topic,
    /// counted in the transaction's metadata. One per table of a TRUNCATE.
    pub async fn truncate(
        &mut self,
        relation: &Arc<RelationInfo>,
        tx: &TxContext,
        lsn: Lsn,
        out: &mut Vec<Encoded>,
    ) -> Result<(), EventError> {
        if self.skips(relation) || self.connector.events.skipped.truncates {
            return Ok(());
        }
        let metadata = self.connector.events.provide_transaction_metadata;
        if metadata {
            self.transaction_topic().await?;
        }
        let meta = self.meta.clone();
        self.table(relation).await?;
        let id = (relation.oid, relation.version);
        let Some(state) = self.tables.get(&id) else {
            return Err(EventError::Schema("table state vanished".into()));
        };
        let collection = state.projected.qualified();
        let records = TableRecords {
            state,
            tx_topic: self.transactions.as_ref().filter(|_| metadata),
            collection: &collection,
            lsn,
        };
        let source =
            SourceInfo::streaming(meta, tx.commit_time_us, tx.last_commit_lsn, lsn, tx.xid);
        let event = ChangeEvent::truncate(state.projected.clone(), source, now_ns(), None);
        records.push(&mut self.tx, event, false, Vec::new(), out)
    }

    /// A heartbeat record as Debezium writes it: key
    /// `io.debezium.connector.common.ServerNameKey {serverName}` = the topic prefix,
    /// value `io.debezium.connector.common.Heartbeat {ts_ms}` = now; `None` when
    /// `[heartbeat] emit_records` is off.
    pub async fn heartbeat(&mut self) -> Result<Option<Encoded>, EventError> {
        let Some(topic_name) = self.connector.heartbeat.records_topic.clone() else {
            return Ok(None);
        };
        if self.heartbeats.is_none() {
            use crate::codec::connect::field;
            let key_schema = ConnectSchema::record(
                "io.debezium.connector.common.ServerNameKey",
                vec![field("serverName", ConnectSchema::string())],
            )
            .version(1);
            let value_schema = ConnectSchema::record(
                "io.debezium.connector.common.Heartbeat",
                vec![field("ts_ms", ConnectSchema::int64())],
            )
            .version(1);
            let (key, value) = self
                .serializers_for(&topic_name, &key_schema, &value_schema)
                .await?;
            self.heartbeats = Some((topic_name.into(), key, value));
        }
        let Some((topic, key_serializer, value_serializer)) = &self.heartbeats else {
            return Ok(None);
        };
        let mut key = Vec::with_capacity(32);
        crate::codec::wire::start(&mut key, key_serializer.id());
        crate::codec::encode::put_str(&mut key, &self.connector.kafka.topic_prefix);
        let mut value = Vec::with_capacity(16);
        crate::codec::wire::start(&mut value, value_serializer.id());
        crate::codec::encode::put_long(&mut value, now_ns().div_euclid(1_000_000));
        Ok(Some(Encoded::new(
            topic.clone(),
            Some(key_serializer.finish(key, topic)?),
            Some(value_serializer.finish(value, topic)?),
        )))
    }
}
