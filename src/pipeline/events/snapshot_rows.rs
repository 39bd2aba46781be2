//! The event stage's snapshot rows.

use std::sync::Arc;

use super::*;

/// The initial snapshot's rows (`op = r`).
impl EventStage {
    /// The record of one snapshot row: no `before`, the row as `after`, and
    /// `source.snapshot` saying where the row sits in the snapshot.
    pub async fn snapshot_row(
        &mut self,
        relation: Arc<RelationInfo>,
        row: Vec<Value>,
        marker: crate::model::change::RowMarker,
        consistent_point: Lsn,
        out: &mut Vec<Encoded>,
    ) -> Result<(), EventError> {
        use crate::codec::{Op, SnapshotRecord};
        use crate::model::change::RowMarker;
        if let Some(outbox) = self.outbox_of(&relation) {
            return self.outbox_event(&outbox, &relation, row, out).await;
        }
        let meta = self.meta.clone();
        let state = self.table(&relation).await?;
        let row = match &state.projection {
            Some(keep) => keep.iter().map(|&i| row[i].clone()).collect(),
            None => row,
        };
        let row = apply_masks(row, &state.masks);
        let now = now_ns();
        let source = SourceInfo {
            connector: meta,
            ts_us: now.div_euclid(1000),
            snapshot: match marker {
                RowMarker::First => SnapshotRecord::First,
                RowMarker::FirstInTable => SnapshotRecord::FirstInDataCollection,
                RowMarker::LastInTable => SnapshotRecord::LastInDataCollection,
                RowMarker::Last => SnapshotRecord::Last,
                RowMarker::Middle => SnapshotRecord::True,
                RowMarker::Incremental => SnapshotRecord::Incremental,
            },
            last_commit_lsn: None,
            lsn: Some(consistent_point),
            tx_id: None,
            xmin: None,
            origin: None,
            origin_lsn: None,
        };
        let event = ChangeEvent {
            op: Op::Read,
            relation: state.projected.clone(),
            before: None,
            after: Some(row),
            source,
            ts_ns: now,
            transaction: None,
        };
        let key = match event.key_row() {
            Some(row) => state.encode_key(row)?,
            None => None,
        };
        let value = state.encode_value(&event)?;
        let mut record = Encoded::new(state.topic.clone(), key, Some(value));
        record.counter = state.counters.of(Op::Read);
        record.context = true;
        if let Some((unwrap, _)) = state.codec.unwrap_transform() {
            record.headers = unwrap.headers(
                Some(&event),
                &state.projected.schema,
                &state.projected.table,
            );
        }
        out.push(record);
        Ok(())
    }
}
