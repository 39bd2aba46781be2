//! The initial snapshot's reading side: a table's rows read with
//! `COPY (SELECT …) TO STDOUT` inside a REPEATABLE READ transaction that imports the
//! slot's exported snapshot, so the rows are exactly the data before the slot's
//! consistent point, and streaming from that point neither loses nor repeats a change.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::change::TxEvent;
use super::lsn::Lsn;
use super::relation::{ColumnInfo, RelationCache, RelationInfo};
use super::value::{parse_text, Value};
use crate::postgres::{quote_ident, quote_table, CatalogTable, ReplicaIdentity};

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
    let full = table.replica_identity == ReplicaIdentity::Full;
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
            is_key: full || table.primary_key.contains(&name),
            name,
            type_info,
            type_modifier,
            not_null,
            default_expr,
        });
    }
    Ok(Arc::new(RelationInfo {
        oid: table.oid,
        schema: table.schema.clone(),
        table: table.name.clone(),
        replica_identity: table.replica_identity,
        columns,
        version: 1,
    }))
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

/// Reads every table in order and sends its rows downstream as
/// [`TxEvent::SnapshotRow`]s, each with its marker (one row of lookahead), between
/// [`TxEvent::SnapshotStarted`] and [`TxEvent::SnapshotCompleted`]. Returns the row count.
pub async fn run(
    client: &Client,
    tables: &[(Arc<RelationInfo>, Option<String>)],
    consistent_point: Lsn,
    out: &mpsc::Sender<TxEvent>,
) -> Result<u64, SnapshotError> {
    let send = |event: TxEvent| async move {
        out.send(event).await.map_err(|_| SnapshotError::Downstream)
    };
    send(TxEvent::SnapshotStarted { consistent_point }).await?;
    // A row is sent once the next is read (one row of lookahead tells the last).
    type Held = (Arc<RelationInfo>, Vec<Value>, bool, Option<Vec<String>>); // (relation, row, first in table, key)
    let mut held: Option<Held> = None;
    let mut total = 0u64;
    for (table_index, (relation, filter)) in tables.iter().enumerate() {
        let mut first_in_table = true;
        let key = ordered_key(relation);
        let mut rows = read_rows(client, relation, filter.as_deref(), None, &key).await?;
        while let Some(row) = rows.next_row().await? {
            if let Some((r, previous, first, key)) = held.take() {
                let marker = marker(total == 0, first, false, false);
                send(TxEvent::SnapshotRow {
                    relation: r,
                    row: previous,
                    marker,
                    key,
                })
                .await?;
                total += 1;
            }
            let row_key = (!key.is_empty()).then(|| rows.last_key.clone());
            held = Some((relation.clone(), row, first_in_table, row_key));
            first_in_table = false;
        }
        // The table's last row: now known to be last in its table.
        if let Some((r, previous, first, key)) = held.take() {
            if table_index + 1 == tables.len() {
                held = Some((r, previous, first, key));
            } else {
                let marker = marker(total == 0, first, true, false);
                send(TxEvent::SnapshotRow {
                    relation: r,
                    row: previous,
                    marker,
                    key,
                })
                .await?;
                total += 1;
            }
        }
    }
    if let Some((r, previous, first, key)) = held.take() {
        let marker = marker(total == 0, first, true, true);
        send(TxEvent::SnapshotRow {
            relation: r,
            row: previous,
            marker,
            key,
        })
        .await?;
        total += 1;
    }
    send(TxEvent::SnapshotCompleted { consistent_point }).await?;
    Ok(total)
}

/// The primary key columns a table's snapshot is ordered by (none for REPLICA IDENTITY
/// FULL tables, whose "key" is every column, and tables without a key).
pub fn ordered_key(relation: &RelationInfo) -> Vec<usize> {
    if relation.replica_identity == ReplicaIdentity::Full {
        return Vec::new();
    }
    relation
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_key)
        .map(|(i, _)| i)
        .collect()
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

/// A table's rows as COPY sends them, parsed one line at a time.
struct Rows<'a> {
    stream: std::pin::Pin<Box<tokio_postgres::CopyOutStream>>,
    relation: &'a RelationInfo,
    pending: Vec<u8>,
    start: usize,
    /// Columns whose text the last row's [`Rows::last_key`] keeps (chunked reads).
    key: &'a [usize],
    last_key: Vec<String>,
    /// The query selects one more column after the table's (see [`Chunk::extra`]); its
    /// text for the last row is kept in `last_extra`.
    extra: bool,
    last_extra: Option<String>,
}

impl Rows<'_> {
    async fn next_row(&mut self) -> Result<Option<Vec<Value>>, SnapshotError> {
        let table = self.relation.qualified();
        loop {
            if let Some(end) = self.pending[self.start..].iter().position(|&b| b == b'\n') {
                let mut line = &self.pending[self.start..self.start + end];
                if self.extra {
                    let split = line.iter().rposition(|&b| b == b'\t').unwrap_or(0);
                    let field = &line[(split + 1).min(line.len())..];
                    self.last_extra = (field != b"\\N")
                        .then(|| String::from_utf8_lossy(&unescape(field)).into_owned());
                    line = &line[..split];
                }
                if !self.key.is_empty() {
                    let fields: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
                    self.last_key.clear();
                    for &i in self.key {
                        let text = fields.get(i).map(|f| unescape(f)).unwrap_or_default();
                        self.last_key
                            .push(String::from_utf8_lossy(&text).into_owned());
                    }
                }
                let row = parse_copy_line(line, &self.relation.columns).map_err(|message| {
                    SnapshotError::Read {
                        table: table.clone(),
                        message,
                    }
                })?;
                self.start += end + 1;
                return Ok(Some(row));
            }
            self.pending.drain(..self.start);
            self.start = 0;
            match self.stream.next().await {
                Some(chunk) => {
                    let chunk: Bytes = chunk.map_err(|e| SnapshotError::Read {
                        table: table.clone(),
                        message: e.to_string(),
                    })?;
                    self.pending.extend_from_slice(&chunk);
                }
                None => return Ok(None),
            }
        }
    }
}

/// Where a chunked read starts and how many rows it takes.
struct Chunk<'a> {
    /// Key column indices, in key order.
    key: &'a [usize],
    /// The text of the previous chunk's last key (none: from the start).
    after: Option<&'a [String]>,
    limit: usize,
    /// One more expression to select after the table's columns (its text per row is
    /// returned beside the row).
    extra: Option<&'a str>,
}

/// Starts `COPY (SELECT … [WHERE filter] [ORDER BY key]) TO STDOUT` for a table, or one
/// chunk of it.
async fn read_rows<'a>(
    client: &Client,
    relation: &'a RelationInfo,
    filter: Option<&str>,
    chunk: Option<Chunk<'a>>,
    capture_key: &'a [usize],
) -> Result<Rows<'a>, SnapshotError> {
    let columns = relation
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let keys: Vec<String> = relation
        .columns
        .iter()
        .filter(|c| c.is_key)
        .map(|c| quote_ident(&c.name))
        .collect();
    let extra = chunk.as_ref().and_then(|c| c.extra);
    let mut sql = format!(
        "COPY (SELECT {columns}{} FROM {}",
        extra.map(|e| format!(", {e}")).unwrap_or_default(),
        quote_table(&relation.schema, &relation.table)
    );
    let mut conditions = Vec::new();
    if let Some(f) = filter {
        conditions.push(format!("({f})"));
    }
    let (order, limit, key_indices) = match &chunk {
        Some(chunk) => {
            let names: Vec<String> = chunk
                .key
                .iter()
                .map(|&i| quote_ident(&relation.columns[i].name))
                .collect();
            if let Some(after) = chunk.after {
                // Untyped literals take the key columns' types.
                let values: Vec<String> = after
                    .iter()
                    .map(|v| crate::postgres::quote_literal(v))
                    .collect();
                conditions.push(format!("({}) > ({})", names.join(", "), values.join(", ")));
            }
            (names, Some(chunk.limit), chunk.key)
        }
        None if !keys.is_empty() && relation.replica_identity != ReplicaIdentity::Full => {
            (keys, None, &[][..])
        }
        None => (Vec::new(), None, &[][..]),
    };
    if !conditions.is_empty() {
        sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    if !order.is_empty() {
        sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
    }
    if let Some(limit) = limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    sql.push_str(") TO STDOUT");
    let stream = client
        .copy_out(sql.as_str())
        .await
        .map_err(|e| SnapshotError::Read {
            table: relation.qualified(),
            message: e.to_string(),
        })?;
    Ok(Rows {
        stream: Box::pin(stream),
        relation,
        pending: Vec::new(),
        start: 0,
        key: if key_indices.is_empty() {
            capture_key
        } else {
            key_indices
        },
        last_key: Vec::new(),
        extra: extra.is_some(),
        last_extra: None,
    })
}

/// A row of a chunk: its values, the text of the chunk's extra expression for it, and
/// the text of its key.
#[derive(Debug, Clone)]
pub struct ChunkRow {
    pub values: Vec<Value>,
    pub extra: Option<String>,
    pub key: Vec<String>,
}

/// One chunk of an incremental snapshot: up to `limit` rows of `relation` (matching
/// `filter`) whose key (columns `key`, in key order) sorts after `after`, in key order,
/// read by one statement in its own transaction. Each row comes with the text of
/// `extra`, when given, evaluated for it. Returns the rows and the text of the last
/// row's key, where the next chunk starts.
pub async fn read_chunk(
    client: &Client,
    relation: &RelationInfo,
    filter: Option<&str>,
    key: &[usize],
    after: Option<&[String]>,
    limit: usize,
    extra: Option<&str>,
) -> Result<(Vec<ChunkRow>, Option<Vec<String>>), SnapshotError> {
    let chunk = Chunk {
        key,
        after,
        limit,
        extra,
    };
    let mut rows = read_rows(client, relation, filter, Some(chunk), &[]).await?;
    let mut out = Vec::new();
    while let Some(values) = rows.next_row().await? {
        out.push(ChunkRow {
            values,
            extra: rows.last_extra.take(),
            key: rows.last_key.clone(),
        });
    }
    let last = (!out.is_empty()).then(|| std::mem::take(&mut rows.last_key));
    Ok((out, last))
}

/// One line of COPY's text format: tab-separated fields, `\N` for NULL, backslash
/// escapes.
pub fn parse_copy_line(line: &[u8], columns: &[ColumnInfo]) -> Result<Vec<Value>, String> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
    if fields.len() != columns.len() {
        return Err(format!(
            "a COPY row has {} fields, the table {} columns",
            fields.len(),
            columns.len()
        ));
    }
    let mut row = Vec::with_capacity(columns.len());
    for (field, column) in fields.into_iter().zip(columns) {
        if field == b"\\N" {
            row.push(Value::Null);
            continue;
        }
        let text = unescape(field);
        let text =
            std::str::from_utf8(&text).map_err(|_| format!("column {}: not UTF-8", column.name))?;
        row.push(
            parse_text(&column.type_info.pg_type, text)
                .map_err(|e| format!("column {}: {e}", column.name))?,
        );
    }
    Ok(row)
}

fn unescape(field: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !field.contains(&b'\\') {
        return std::borrow::Cow::Borrowed(field);
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b != b'\\' || i + 1 >= field.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = field[i + 1];
        i += 2;
        match next {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                let mut digits = 1;
                while digits < 3 && i < field.len() && (b'0'..=b'7').contains(&field[i]) {
                    value = value * 8 + u32::from(field[i] - b'0');
                    i += 1;
                    digits += 1;
                }
                out.push((value & 0xff) as u8);
            }
            b'x' => {
                let mut value = 0u32;
                let mut digits = 0;
                while digits < 2 && i < field.len() && field[i].is_ascii_hexdigit() {
                    value = value * 16 + (field[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    digits += 1;
                }
                if digits == 0 {
                    out.push(b'x');
                } else {
                    out.push((value & 0xff) as u8);
                }
            }
            other => out.push(other),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::relation::TypeInfo;
    use crate::source::types::builtin;

    fn column(name: &str, oid: u32) -> ColumnInfo {
        let pg_type = builtin(oid).unwrap();
        ColumnInfo {
            name: name.into(),
            type_info: Arc::new(TypeInfo {
                oid,
                name: pg_type.name().into(),
                pg_type,
                enum_labels: None,
            }),
            type_modifier: -1,
            is_key: false,
            not_null: false,
            default_expr: None,
        }
    }

    #[test]
    fn copy_text_lines_parse_with_escapes_and_nulls() {
        let columns = [column("id", 23), column("note", 25), column("tags", 1009)];
        let row = parse_copy_line(b"7\ta\\tb\\nc\\\\d\\101\\x42\t{x,\"y z\"}", &columns).unwrap();
        assert_eq!(row[0], Value::Int4(7));
        assert_eq!(row[1], Value::Text("a\tb\nc\\dAB".into()));
        assert!(matches!(row[2], Value::Array(_)));
        let nulls = parse_copy_line(b"8\t\\N\t\\N", &columns).unwrap();
        assert_eq!(nulls[1], Value::Null);
        assert!(parse_copy_line(b"1\t2", &columns).is_err());
    }
}
