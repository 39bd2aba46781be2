//! What the replication reader hands downstream: committed transactions as a
//! sequence of typed events, in commit order.

use std::sync::Arc;

use super::lsn::Lsn;
use super::relation::RelationInfo;
use super::value::Value;

/// A row's values, in the relation's column order.
pub type Row = Vec<Value>;

/// One row of the initial snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRead {
    pub row: Row,
    pub marker: RowMarker,
    /// The row's primary key texts as a JSON array, for tables read in key order:
    /// recorded with the record, so an interrupted snapshot can resume after it.
    pub key: Option<Vec<u8>>,
}

/// The old row of an update or delete, as PostgreSQL sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum OldRow {
    /// Only the replica identity key columns carry values (the others are Null).
    Key(Row),
    /// The whole row (REPLICA IDENTITY FULL).
    Full(Row),
}

impl OldRow {
    pub fn values(&self) -> &Row {
        match self {
            Self::Key(r) | Self::Full(r) => r,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOp {
    Insert,
    Update,
    Delete,
}

/// One row change.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub relation: Arc<RelationInfo>,
    pub op: RowOp,
    /// Updates: present when the key changed or the table is REPLICA IDENTITY FULL.
    /// Deletes: always present.
    pub old: Option<OldRow>,
    /// Inserts and updates.
    pub new: Option<Row>,
    /// The WAL position of the change itself (Debezium's `source.lsn`).
    pub lsn: Lsn,
}

/// A transaction's boundary or content, or a message outside any transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TxEvent {
    Begin {
        xid: u32,
        /// The LSN of the commit record: with the index of an event inside the
        /// transaction, it orders every event totally.
        commit_lsn: Lsn,
        /// µs since the Unix epoch.
        commit_time_us: i64,
    },
    Change(RowChange),
    Truncate {
        relations: Vec<Arc<RelationInfo>>,
        /// Where the TRUNCATE is in the WAL (`source.lsn` of its events).
        lsn: Lsn,
        cascade: bool,
        restart_identity: bool,
    },
    /// `pg_logical_emit_message`: inside a transaction when transactional, else alone.
    Message {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: bytes::Bytes,
    },
    /// A table's shape changed (a new version) inside this transaction.
    RelationChanged(Arc<RelationInfo>),
    /// The connection was lost and re-established: PostgreSQL resends every
    /// transaction after the slot's confirmed position, so a transaction that had begun
    /// and not committed must be dropped; already committed ones come again (the
    /// checkpoint skips them).
    Restarted,
    /// A keepalive outside any transaction: every change before `wal_end` has been
    /// sent, so once everything handed downstream is acknowledged the slot may advance
    /// here (this keeps WAL from piling up while captured tables are idle).
    Idle {
        wal_end: Lsn,
    },
    /// The initial snapshot begins: its rows are the data as of `consistent_point`, where
    /// streaming starts.
    SnapshotStarted {
        consistent_point: Lsn,
    },
    /// Rows of the initial snapshot (Debezium's `op = r`), all of one table, in order.
    SnapshotRows {
        relation: Arc<RelationInfo>,
        rows: Vec<SnapshotRead>,
    },
    /// Every snapshot row has been handed over.
    SnapshotCompleted {
        consistent_point: Lsn,
    },
    Commit {
        xid: u32,
        commit_lsn: Lsn,
        /// Where the transaction's WAL ends: confirming this LSN releases it.
        end_lsn: Lsn,
        commit_time_us: i64,
    },
}

/// Where each snapshot row sits in the snapshot (Debezium's `source.snapshot` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowMarker {
    /// The very first row of the snapshot.
    First,
    /// The first row of a later table.
    FirstInTable,
    /// The last row of a table (not the last table).
    LastInTable,
    /// The very last row of the snapshot.
    Last,
    /// A row of an incremental snapshot (read while streaming).
    Incremental,
    /// Any other row.
    Middle,
}
