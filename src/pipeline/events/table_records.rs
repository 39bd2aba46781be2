//! One change event's records on its table's topic: the record, Debezium's tombstone
//! after a delete, and the event's place in its transaction's metadata.

use super::{Encoded, EventError, TableState, TransactionTopic, TxMeta};
use crate::codec::unwrap::{DeleteHandling, Unwrap};
use crate::codec::{ChangeEvent, Op, SourceInfo};
use crate::model::change::{OldRow, RowChange, RowOp};
use crate::model::lsn::Lsn;
use crate::model::value::Value;

/// Where one change's records go: its table's topic and codecs, and the transaction
/// metadata it counts in (when that is on).
pub(super) struct TableRecords<'a> {
    pub(super) state: &'a TableState,
    pub(super) tx_topic: Option<&'a TransactionTopic>,
    pub(super) collection: &'a str,
    pub(super) lsn: Lsn,
}

impl TableRecords<'_> {
    /// The change event of the projected row(s), as of `source`.
    pub(super) fn event(
        &self,
        op: RowOp,
        before: Option<Vec<Value>>,
        after: Option<Vec<Value>>,
        source: &SourceInfo,
        ts_ns: i64,
    ) -> ChangeEvent {
        ChangeEvent::from_row_change(
            RowChange {
                relation: self.state.projected.clone(),
                op,
                old: before.map(OldRow::Full),
                new: after,
                lsn: self.lsn,
            },
            source.clone(),
            ts_ns,
            None,
        )
    }

    /// Pushes one change event's record and, for a delete, its tombstone; counts the
    /// event in the transaction's metadata first (BEGIN goes out before the first).
    pub(super) fn push(
        &self,
        tx_meta: &mut TxMeta,
        mut event: ChangeEvent,
        tombstone: bool,
        headers: Vec<(&'static str, Vec<u8>)>,
        out: &mut Vec<Encoded>,
    ) -> Result<(), EventError> {
        let state = self.state;
        if let Some(topic) = self.tx_topic {
            event.transaction = Some(tx_meta.event(topic, self.collection, self.lsn, out)?);
        }
        let key = match event.key_row() {
            Some(row) => state.encode_key(row)?,
            None => None,
        };
        if let Some((unwrap, _)) = state.codec.unwrap_transform() {
            return self.push_unwrapped(unwrap, &event, tombstone, key, headers, out);
        }
        let value = state.encode_value(&event)?;
        out.push(Encoded {
            topic: state.topic.clone(),
            key: key.clone(),
            value: Some(value),
            headers: headers.clone(),
            counter: state.counters.of(event.op),
            context: true,
            partition: None,
            timestamp_ms: None,
        });
        // Also after a delete without a key (REPLICA IDENTITY FULL, no primary key): a
        // tombstone with a null key, as Debezium emits it.
        if tombstone && state.tombstones {
            // Debezium's tombstone is a copy of the delete record (its headers too)
            // without the value.
            out.push(Encoded {
                topic: state.topic.clone(),
                key,
                value: None,
                headers,
                counter: None,
                context: true,
                partition: None,
                timestamp_ms: None,
            });
        }
        Ok(())
    }

    /// The records of `event` after Debezium's ExtractNewRecordState: the row as the
    /// value, deletes as `delete_tombstone_handling_mode` says, truncates dropped (they
    /// were counted in the transaction's metadata already, as Debezium counts before its
    /// transforms run), `add_headers` after the event's own headers.
    fn push_unwrapped(
        &self,
        unwrap: &Unwrap,
        event: &ChangeEvent,
        tombstone: bool,
        key: Option<Vec<u8>>,
        mut headers: Vec<(&'static str, Vec<u8>)>,
        out: &mut Vec<Encoded>,
    ) -> Result<(), EventError> {
        let state = self.state;
        let (schema, table) = (&state.projected.schema, &state.projected.table);
        let tombstone_headers = {
            let mut h = headers.clone();
            h.extend(unwrap.headers(None, schema, table));
            h
        };
        headers.extend(unwrap.headers(Some(event), schema, table));
        let record = |value: Option<Vec<u8>>, headers| Encoded {
            topic: state.topic.clone(),
            key: key.clone(),
            value,
            headers,
            counter: state.counters.of(event.op),
            context: true,
            partition: None,
            timestamp_ms: None,
        };
        match (event.op, unwrap.delete_handling) {
            (Op::Truncate, _) | (Op::Delete, DeleteHandling::Drop) => {}
            (Op::Delete, DeleteHandling::Tombstone) => {
                out.push(record(state.unwrapped_null(), headers));
            }
            (Op::Delete, DeleteHandling::DeleteToTombstone) => out.push(record(None, headers)),
            (Op::Delete, mode) => {
                out.push(record(Some(state.encode_value(event)?), headers));
                if mode == DeleteHandling::RewriteWithTombstone && tombstone && state.tombstones {
                    let mut t = record(None, tombstone_headers);
                    t.counter = None;
                    out.push(t);
                }
            }
            _ => out.push(record(Some(state.encode_value(event)?), headers)),
        }
        Ok(())
    }
}

/// One table's event counters.
pub(super) struct OpCounters([prometheus::IntCounter; 4]);

impl OpCounters {
    pub(super) fn new(connector: &str, table: &str) -> Self {
        let m = crate::observe::metrics().connector(connector);
        Self(['c', 'u', 'd', 'r'].map(|op| m.events(table, op)))
    }

    /// The counter of `op` (truncates and messages are counted elsewhere).
    pub(super) fn of(&self, op: crate::codec::Op) -> Option<prometheus::IntCounter> {
        use crate::codec::Op;
        let i = match op {
            Op::Create => 0,
            Op::Update => 1,
            Op::Delete => 2,
            Op::Read => 3,
            _ => return None,
        };
        Some(self.0[i].clone())
    }
}
