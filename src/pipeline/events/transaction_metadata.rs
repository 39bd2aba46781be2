//! Debezium's transaction metadata (`provide_transaction_metadata`): the BEGIN and END
//! records on `<prefix>.transaction` and the `transaction` block in each event, with
//! Debezium's counting and ordering.

use std::sync::Arc;

use super::{Encoded, EventError, Serializer};
use crate::codec::{
    TransactionBlock, TransactionCodec, TransactionMetadataEvent, TransactionStatus,
};
use crate::model::lsn::Lsn;

/// The transaction topic's codec and serializers.
pub(super) struct TransactionTopic {
    pub(super) codec: TransactionCodec,
    pub(super) key: Serializer,
    pub(super) value: Serializer,
    pub(super) topic: Arc<str>,
}

impl TransactionTopic {
    pub(super) fn record(&self, event: &TransactionMetadataEvent) -> Result<Encoded, EventError> {
        let mut key = Vec::with_capacity(32);
        self.codec.encode_key(event, self.key.id(), &mut key);
        let mut value = Vec::with_capacity(128);
        self.codec.encode_value(event, self.value.id(), &mut value);
        Ok(Encoded::new(
            self.topic.clone(),
            Some(self.key.finish(key, &self.topic)?),
            Some(self.value.finish(value, &self.topic)?),
        ))
    }
}

/// Transaction metadata of the transaction being built (Debezium's
/// `TransactionContext`): whether its BEGIN record went out, and its event counts.
#[derive(Debug, Default)]
pub(super) struct TxMeta {
    pub(super) xid: u32,
    pub(super) commit_time_us: i64,
    /// The LSN of the commit record: BEGIN's id when nothing came before the commit.
    pub(super) commit_lsn: Lsn,
    pub(super) begun: bool,
    pub(super) total: i64,
    /// Events per data collection (`schema.table`), in order of first appearance.
    pub(super) collections: Vec<(String, i64)>,
}

impl TxMeta {
    /// BEGIN's or END's record.
    pub(super) fn boundary(&self, status: TransactionStatus, lsn: Lsn) -> TransactionMetadataEvent {
        let end = status == TransactionStatus::End;
        TransactionMetadataEvent {
            status,
            xid: i64::from(self.xid),
            lsn,
            ts_ms: self.commit_time_us.div_euclid(1000),
            event_count: end.then_some(self.total),
            data_collections: end.then(|| {
                // Debezium keeps the counts in a java.util.HashMap and lists them in its
                // iteration order.
                let names: Vec<&str> = self.collections.iter().map(|(n, _)| n.as_str()).collect();
                crate::codec::java::hash_map_order(&names)
                    .into_iter()
                    .map(|i| self.collections[i].clone())
                    .collect()
            }),
        }
    }

    /// Counts an event of `collection` at `lsn`, emitting BEGIN before the first one,
    /// and returns the event's `transaction` block (Debezium's `TransactionMonitor`).
    ///
    /// Debezium writes BEGIN when PostgreSQL's BEGIN message arrives, with the id
    /// `<xid>:<LSN of that message>`. Since PostgreSQL 15 pgoutput sends BEGIN just
    /// before the transaction's first change, so that LSN is the first event's: walcast
    /// writes BEGIN just before the first event with that LSN, which is the same record
    /// (before 15 the message carries the transaction's first WAL position, which the
    /// replication stream does not expose; walcast's id then differs in the LSN part).
    pub(super) fn event(
        &mut self,
        topic: &TransactionTopic,
        collection: &str,
        lsn: Lsn,
        out: &mut Vec<Encoded>,
    ) -> Result<TransactionBlock, EventError> {
        if !self.begun {
            out.push(topic.record(&self.boundary(TransactionStatus::Begin, lsn))?);
            self.begun = true;
        }
        self.total += 1;
        let order = match self.collections.iter_mut().find(|(n, _)| n == collection) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.collections.push((collection.to_string(), 1));
                1
            }
        };
        Ok(TransactionBlock {
            xid: i64::from(self.xid),
            lsn,
            total_order: self.total,
            data_collection_order: order,
        })
    }
}
