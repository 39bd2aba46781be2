//! The initial snapshot's reading side: tables read with `COPY (SELECT …) TO STDOUT`
//! inside REPEATABLE READ transactions that import the slot's exported snapshot, so the
//! rows are exactly the data before the slot's consistent point, and streaming from
//! that point neither loses nor repeats a change.
//!
//! Several connections (workers) read a table's ranges in parallel; rows are emitted in
//! the order one reader would produce them: table by table, each in key order.

mod copy;
pub mod plan;
mod workers;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_postgres::Client;
use tracing::debug;

use super::relation::RelationCache;
use crate::model::change::RowMarker;
use crate::model::change::{Row, SnapshotRead, TxEvent};
use crate::model::lsn::Lsn;
use crate::model::relation::{ColumnInfo, RelationInfo};
use crate::postgres::CatalogTable;
pub use copy::{ordered_key, read_chunk, ChunkRow};
use workers::{Job, RangeMessage, RangeReceiver};

/// Rows per [`TxEvent::SnapshotRows`]: the events channel holds thousands of events,
/// so a small batch keeps the rows it buffers (and memory) bounded while still sparing
/// the event stage a wake-up per row.
const EVENT_ROWS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot of {table}: {message}")]
    Read { table: String, message: String },
    #[error("cannot import the slot's exported snapshot: {0}")]
    Import(String),
    #[error("the downstream stage stopped")]
    Downstream,
}

/// Opens the snapshot transaction on `client` (REPEATABLE READ, READ ONLY, the exported
/// snapshot). Must run while the connection that exported it is still open.
pub async fn begin(client: &Client, snapshot_name: &str) -> Result<(), SnapshotError> {
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
            crate::postgres::quote_literal(snapshot_name)
        ))
        .await
        .map_err(|e| {
            SnapshotError::Import(
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
            )
        })
}

/// Describes a captured table as the stream will (same columns, types and key flags),
/// so its snapshot rows and later changes share one schema version.
pub async fn relation_for(
    table: &CatalogTable,
    cache: &mut RelationCache,
    client: &Client,
) -> Result<Arc<RelationInfo>, SnapshotError> {
    let err = |message: String| SnapshotError::Read {
        table: table.qualified(),
        message,
    };
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid, a.atttypmod, a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
            &[&table.oid],
        )
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut columns = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get(0).map_err(|e| err(e.to_string()))?;
        let type_oid: u32 = row.try_get(1).map_err(|e| err(e.to_string()))?;
        let type_modifier: i32 = row.try_get(2).map_err(|e| err(e.to_string()))?;
        let not_null: bool = row.try_get(3).map_err(|e| err(e.to_string()))?;
        let default_expr: Option<String> = row.try_get(4).map_err(|e| err(e.to_string()))?;
        let type_info = cache
            .resolve(type_oid, client)
            .await
            .map_err(|e| err(e.to_string()))?;
        columns.push(ColumnInfo {
            is_key: table.primary_key.contains(&name),
            name,
            type_info,
            type_modifier,
            not_null,
            default_expr,
        });
    }
    let mut info = RelationInfo {
        oid: table.oid,
        schema: table.schema.clone(),
        table: table.name.clone(),
        replica_identity: table.replica_identity,
        columns,
        version: 0,
    };
    info.version = info.shape_version();
    Ok(Arc::new(info))
}

/// Reads every table with `clients.len()` workers (each connection already inside the
/// exported snapshot) and sends the rows downstream in batches of
/// [`TxEvent::SnapshotRows`], table by table, each table in key order (heap order
/// without a key), each row with its marker (one row of lookahead tells the last),
/// between [`TxEvent::SnapshotStarted`] and [`TxEvent::SnapshotCompleted`]. Returns the
/// row count.
pub async fn run(
    clients: Vec<Client>,
    tables: &[(Arc<RelationInfo>, Option<String>)],
    consistent_point: Lsn,
    out: &mpsc::Sender<TxEvent>,
) -> Result<u64, SnapshotError> {
    let Some(planner) = clients.first() else {
        return Err(SnapshotError::Import("no snapshot connection".into()));
    };
    let tid_range_scans = planner
        .query_one(
            "SELECT current_setting('server_version_num')::int >= 140000",
            &[],
        )
        .await
        .map(|row| row.get::<_, bool>(0))
        .unwrap_or(false);
    // Every table's ranges, in emission order, each with its channel.
    let mut jobs = Vec::new();
    let mut receivers: Vec<Vec<RangeReceiver>> = Vec::with_capacity(tables.len());
    for (relation, filter) in tables {
        let key: Arc<[usize]> = ordered_key(relation).into();
        let ranges =
            plan::ranges(planner, relation, filter.as_deref(), &key, tid_range_scans).await?;
        debug!(table = %relation.qualified(), ranges = ranges.len(), "snapshot ranges planned");
        let mut table_receivers = Vec::with_capacity(ranges.len());
        for range in ranges {
            let (job, rx) = Job::new(relation.clone(), filter.clone(), key.clone(), range);
            jobs.push(job);
            table_receivers.push(rx);
        }
        receivers.push(table_receivers);
    }
    let handles = workers::spawn(clients, jobs);
    let result = emit(tables, receivers, consistent_point, out).await;
    if result.is_err() {
        for handle in &handles {
            handle.abort();
        }
    }
    result
}

/// A row waiting for the next one, which tells whether it was its table's last.
struct Held {
    relation: Arc<RelationInfo>,
    row: Row,
    key: Option<Vec<u8>>,
    first_in_table: bool,
}

/// Collects marked rows into [`TxEvent::SnapshotRows`] batches of one table.
struct Batcher<'a> {
    out: &'a mpsc::Sender<TxEvent>,
    relation: Option<Arc<RelationInfo>>,
    rows: Vec<SnapshotRead>,
    total: u64,
}

impl Batcher<'_> {
    async fn push(
        &mut self,
        held: Held,
        last_in_table: bool,
        last: bool,
    ) -> Result<(), SnapshotError> {
        let same = self
            .relation
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &held.relation));
        if !same {
            self.flush().await?;
            self.relation = Some(held.relation.clone());
        }
        self.rows.push(SnapshotRead {
            row: held.row,
            marker: marker(self.total == 0, held.first_in_table, last_in_table, last),
            key: held.key,
        });
        self.total += 1;
        if self.rows.len() >= EVENT_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SnapshotError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let Some(relation) = self.relation.clone() else {
            return Ok(());
        };
        let rows = std::mem::replace(&mut self.rows, Vec::with_capacity(EVENT_ROWS));
        self.out
            .send(TxEvent::SnapshotRows { relation, rows })
            .await
            .map_err(|_| SnapshotError::Downstream)
    }
}

/// Drains the ranges' channels in order and sends the rows downstream.
async fn emit(
    tables: &[(Arc<RelationInfo>, Option<String>)],
    receivers: Vec<Vec<RangeReceiver>>,
    consistent_point: Lsn,
    out: &mpsc::Sender<TxEvent>,
) -> Result<u64, SnapshotError> {
    out.send(TxEvent::SnapshotStarted { consistent_point })
        .await
        .map_err(|_| SnapshotError::Downstream)?;
    let mut batcher = Batcher {
        out,
        relation: None,
        rows: Vec::with_capacity(EVENT_ROWS),
        total: 0,
    };
    let mut held: Option<Held> = None;
    let count = tables.len();
    for (table_index, ((relation, _), ranges)) in tables.iter().zip(receivers).enumerate() {
        let mut first_in_table = true;
        for mut rx in ranges {
            loop {
                match rx.recv().await {
                    Some(RangeMessage::Rows(rows)) => {
                        for (row, key) in rows {
                            if let Some(previous) = held.take() {
                                batcher.push(previous, false, false).await?;
                            }
                            held = Some(Held {
                                relation: relation.clone(),
                                row,
                                key,
                                first_in_table,
                            });
                            first_in_table = false;
                        }
                    }
                    Some(RangeMessage::Done) => break,
                    Some(RangeMessage::Failed(e)) => return Err(e),
                    None => {
                        return Err(SnapshotError::Read {
                            table: relation.qualified(),
                            message: "a snapshot worker stopped before finishing its range".into(),
                        })
                    }
                }
            }
        }
        // The table's last row: now known to be last in its table.
        if let Some(previous) = held.take() {
            if table_index + 1 == count {
                held = Some(previous);
            } else {
                batcher.push(previous, true, false).await?;
            }
        }
    }
    if let Some(previous) = held.take() {
        batcher.push(previous, true, true).await?;
    }
    batcher.flush().await?;
    out.send(TxEvent::SnapshotCompleted { consistent_point })
        .await
        .map_err(|_| SnapshotError::Downstream)?;
    Ok(batcher.total)
}

fn marker(
    first_overall: bool,
    first_in_table: bool,
    last_in_table: bool,
    last_overall: bool,
) -> RowMarker {
    if last_overall {
        RowMarker::Last
    } else if first_overall {
        RowMarker::First
    } else if last_in_table {
        RowMarker::LastInTable
    } else if first_in_table {
        RowMarker::FirstInTable
    } else {
        RowMarker::Middle
    }
}
