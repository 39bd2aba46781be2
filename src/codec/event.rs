//! The change-event model, field for field what Debezium 3.x's PostgreSQL connector
//! puts in a record (`io.debezium.data.Envelope`, `PostgresSourceInfoStructMaker`,
//! `DefaultTransactionStructMaker`, `PostgresTransactionMonitor`,
//! `LogicalDecodingMessageMonitor`); pure data, no I/O.
//!
//! What Debezium derives and how walcast fills it:
//! - `source.ts_ms/ts_us/ts_ns`: the commit time of the transaction (PostgreSQL gives
//!   microseconds, so `ts_ns` is `ts_us * 1000`); `ts_ms` is floored.
//! - `source.sequence`: the JSON array `["<last commit LSN>","<event LSN>"]`, both as
//!   decimal strings, `null` for an unknown one. The last commit LSN is the end LSN of
//!   the previous transaction's commit (what Debezium stores as `lsn_commit`).
//! - `source.snapshot`: `"false"` while streaming (Debezium leaves it unset and the
//!   converter writes the field default `"false"`, which is the same bytes).
//! - `source.txId`, `lsn`, `xmin` are left null for incremental-snapshot rows, as
//!   Debezium does. `xmin` is null unless `xmin.fetch.interval.ms` is set.
//! - envelope `ts_ms/ts_us/ts_ns`: when walcast processed the event.
//! - `transaction.id`: `"<xid>:<lsn>"` where the LSN is the event's own (Debezium's
//!   `PostgresTransactionMonitor` appends the offset's last seen LSN, so the id differs
//!   between the events of one transaction; walcast copies that).

use std::sync::Arc;

use crate::model::change::{RowChange, RowOp};
use crate::model::lsn::Lsn;
use crate::model::relation::RelationInfo;
use crate::model::value::Value;

/// Debezium's `op` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A snapshot read, `r`.
    Read,
    /// `c`
    Create,
    /// `u`
    Update,
    /// `d`
    Delete,
    /// `t`
    Truncate,
    /// A logical decoding message, `m`.
    Message,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
            Op::Message => "m",
        }
    }
}

/// `source.snapshot`: Debezium's `SnapshotRecord`, encoded lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SnapshotRecord {
    True,
    First,
    FirstInDataCollection,
    LastInDataCollection,
    Last,
    /// Streaming.
    #[default]
    False,
    Incremental,
}

impl SnapshotRecord {
    /// Every value, in Debezium's declaration order (the Enum schema's `allowed`).
    pub const ALL: [SnapshotRecord; 7] = [
        SnapshotRecord::True,
        SnapshotRecord::First,
        SnapshotRecord::FirstInDataCollection,
        SnapshotRecord::LastInDataCollection,
        SnapshotRecord::Last,
        SnapshotRecord::False,
        SnapshotRecord::Incremental,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotRecord::True => "true",
            SnapshotRecord::First => "first",
            SnapshotRecord::FirstInDataCollection => "first_in_data_collection",
            SnapshotRecord::LastInDataCollection => "last_in_data_collection",
            SnapshotRecord::Last => "last",
            SnapshotRecord::False => "false",
            SnapshotRecord::Incremental => "incremental",
        }
    }
}

/// What stays the same for every event of one connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorMeta {
    /// `source.version` (Debezium writes its own version, e.g. `3.6.1.Final`).
    pub version: String,
    /// `source.name`: the logical server name, `topic.prefix`.
    pub name: String,
    /// `source.db`: the database name.
    pub db: String,
}

impl ConnectorMeta {
    /// With walcast's version as `source.version`.
    pub fn new(name: impl Into<String>, db: impl Into<String>) -> Self {
        ConnectorMeta {
            version: env!("CARGO_PKG_VERSION").to_string(),
            name: name.into(),
            db: db.into(),
        }
    }
}

/// The `source` block (`io.debezium.connector.postgresql.Source`). The schema and
/// table come from the event's relation.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    pub connector: Arc<ConnectorMeta>,
    /// Commit time of the transaction, µs since the Unix epoch (for snapshot rows: when
    /// the row was read).
    pub ts_us: i64,
    pub snapshot: SnapshotRecord,
    /// The end LSN of the last transaction committed before this event.
    pub last_commit_lsn: Option<Lsn>,
    /// The event's LSN.
    pub lsn: Option<Lsn>,
    pub tx_id: Option<i64>,
    pub xmin: Option<i64>,
    /// Replication origin name (Debezium 3.5+), when the transaction carried one.
    pub origin: Option<Arc<str>>,
    pub origin_lsn: Option<Lsn>,
}

impl SourceInfo {
    /// A streaming event's source: commit time, LSNs and xid.
    pub fn streaming(
        connector: Arc<ConnectorMeta>,
        commit_time_us: i64,
        last_commit_lsn: Option<Lsn>,
        lsn: Lsn,
        xid: u32,
    ) -> Self {
        SourceInfo {
            connector,
            ts_us: commit_time_us,
            snapshot: SnapshotRecord::False,
            last_commit_lsn,
            lsn: Some(lsn),
            tx_id: Some(i64::from(xid)),
            xmin: None,
            origin: None,
            origin_lsn: None,
        }
    }

    /// `source.ts_ms` (floored, as `Instant.toEpochMilli`).
    pub fn ts_ms(&self) -> i64 {
        self.ts_us.div_euclid(1000)
    }

    /// `source.ts_ns`.
    pub fn ts_ns(&self) -> i64 {
        self.ts_us.saturating_mul(1000)
    }

    /// `source.sequence`, e.g. `["24023928","24023952"]` or `[null,"24023952"]`.
    pub fn sequence(&self) -> String {
        let mut s = String::with_capacity(48);
        write_sequence(&mut s, self.last_commit_lsn, self.lsn);
        s
    }

    /// Whether txId, lsn and xmin are written (not for incremental snapshot rows).
    pub fn has_position_fields(&self) -> bool {
        self.snapshot != SnapshotRecord::Incremental
    }
}

fn write_sequence(s: &mut String, a: Option<Lsn>, b: Option<Lsn>) {
    use std::fmt::Write;
    s.push('[');
    for (i, lsn) in [a, b].into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match lsn {
            Some(l) => {
                let _ = write!(s, "\"{}\"", l.0);
            }
            None => s.push_str("null"),
        }
    }
    s.push(']');
}

/// The `transaction` block (`event.block`), present with `provide.transaction.metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionBlock {
    pub xid: i64,
    /// The LSN written after the xid in `id` (the event's own LSN, as Debezium does).
    pub lsn: Lsn,
    /// 1-based position of the event in its transaction.
    pub total_order: i64,
    /// 1-based position of the event among its table's events in the transaction.
    pub data_collection_order: i64,
}

impl TransactionBlock {
    /// `"<xid>:<lsn>"`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.xid, self.lsn.0)
    }
}

/// A row change (or truncate) as one Debezium envelope on the table's topic.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub op: Op,
    pub relation: Arc<RelationInfo>,
    /// The old row (updates with a key change or REPLICA IDENTITY FULL, deletes); a
    /// key-only old row has NULL in the other columns.
    pub before: Option<Vec<Value>>,
    /// The new row (reads, creates, updates).
    pub after: Option<Vec<Value>>,
    pub source: SourceInfo,
    /// When walcast processed the event, ns since the Unix epoch (envelope `ts_ms`,
    /// `ts_us`, `ts_ns`).
    pub ts_ns: i64,
    pub transaction: Option<TransactionBlock>,
}

impl ChangeEvent {
    /// The event for a decoded row change (insert → `c`, update → `u`, delete → `d`).
    pub fn from_row_change(
        change: RowChange,
        source: SourceInfo,
        ts_ns: i64,
        transaction: Option<TransactionBlock>,
    ) -> Self {
        let op = match change.op {
            RowOp::Insert => Op::Create,
            RowOp::Update => Op::Update,
            RowOp::Delete => Op::Delete,
        };
        let before = change.old.map(|old| match old {
            crate::model::change::OldRow::Key(r) | crate::model::change::OldRow::Full(r) => r,
        });
        ChangeEvent {
            op,
            relation: change.relation,
            before,
            after: change.new,
            source,
            ts_ns,
            transaction,
        }
    }

    /// A truncate of one table (`t`: no before, no after, null Kafka key).
    pub fn truncate(
        relation: Arc<RelationInfo>,
        source: SourceInfo,
        ts_ns: i64,
        transaction: Option<TransactionBlock>,
    ) -> Self {
        ChangeEvent {
            op: Op::Truncate,
            relation,
            before: None,
            after: None,
            source,
            ts_ns,
            transaction,
        }
    }

    /// The row the Kafka key is taken from: after, else before.
    pub fn key_row(&self) -> Option<&[Value]> {
        self.after.as_deref().or(self.before.as_deref())
    }
}

/// A logical decoding message (`pg_logical_emit_message`) on the `<prefix>.message`
/// topic: key `io.debezium.connector.postgresql.MessageKey`, value
/// `io.debezium.connector.postgresql.MessageValue` with op `m`. Its source has empty
/// schema and table.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageEvent {
    pub prefix: String,
    pub content: bytes::Bytes,
    pub source: SourceInfo,
    /// When walcast processed it, ns since the Unix epoch (only `ts_ms` is written).
    pub ts_ns: i64,
    pub transaction: Option<TransactionBlock>,
}

/// BEGIN or END on the transaction topic (`<prefix>.transaction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    Begin,
    End,
}

impl TransactionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionStatus::Begin => "BEGIN",
            TransactionStatus::End => "END",
        }
    }
}

/// A transaction boundary record (`io.debezium.connector.common.TransactionMetadataKey`
/// / `...TransactionMetadataValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionMetadataEvent {
    pub status: TransactionStatus,
    pub xid: i64,
    /// The LSN in the id: BEGIN's for BEGIN, COMMIT's for END.
    pub lsn: Lsn,
    /// Commit time, ms since the Unix epoch.
    pub ts_ms: i64,
    /// END only: the number of events, and per table (`schema.table`) how many.
    pub event_count: Option<i64>,
    pub data_collections: Option<Vec<(String, i64)>>,
}

impl TransactionMetadataEvent {
    /// `"<xid>:<lsn>"`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.xid, self.lsn.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_is_debeziums_json_array() {
        let meta = Arc::new(ConnectorMeta::new("dbserver1", "postgres"));
        let mut s = SourceInfo::streaming(meta, 1_559_033_904_863_852, None, Lsn(46523128), 556);
        assert_eq!(s.sequence(), "[null,\"46523128\"]");
        s.last_commit_lsn = Some(Lsn(46523000));
        assert_eq!(s.sequence(), "[\"46523000\",\"46523128\"]");
        assert_eq!(s.ts_ms(), 1_559_033_904_863);
        assert_eq!(s.ts_ns(), 1_559_033_904_863_852_000);
        let before_epoch = SourceInfo { ts_us: -1, ..s };
        assert_eq!(before_epoch.ts_ms(), -1);
    }

    #[test]
    fn ids_join_xid_and_lsn() {
        let t = TransactionBlock {
            xid: 571,
            lsn: Lsn(53195832),
            total_order: 1,
            data_collection_order: 1,
        };
        assert_eq!(t.id(), "571:53195832");
    }
}
