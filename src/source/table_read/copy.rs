//! Reading rows with `COPY (SELECT …) TO STDOUT` (text format) and parsing its lines.

use bytes::Bytes;
use futures_util::StreamExt;
use tokio_postgres::Client;

use super::SnapshotError;
use crate::model::relation::{ColumnInfo, RelationInfo};
use crate::model::value::{parse_text, Value};
use crate::postgres::{quote_ident, quote_table};

/// A table's rows as COPY sends them, parsed one line at a time.
pub struct Rows<'a> {
    stream: std::pin::Pin<Box<tokio_postgres::CopyOutStream>>,
    relation: &'a RelationInfo,
    pending: Vec<u8>,
    start: usize,
    /// Columns whose text the last row's [`Rows::last_key`] keeps (chunked reads).
    key: &'a [usize],
    pub last_key: Vec<String>,
    /// The query selects one more column after the table's (see [`Query::extra`]); its
    /// text for the last row is kept in `last_extra`.
    extra: bool,
    last_extra: Option<String>,
}

impl Rows<'_> {
    pub async fn next_row(&mut self) -> Result<Option<Vec<Value>>, SnapshotError> {
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
                        table: self.relation.qualified(),
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
                        table: self.relation.qualified(),
                        message: e.to_string(),
                    })?;
                    self.pending.extend_from_slice(&chunk);
                }
                None => return Ok(None),
            }
        }
    }
}

/// Which rows of a table one read takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Range {
    /// Every row.
    All,
    /// Rows whose key sorts after `after` (exclusive) and up to `through` (inclusive);
    /// an open end takes everything on that side. The texts are the key columns' output
    /// form, compared in PostgreSQL's own ordering of the column types.
    Keys {
        after: Option<Vec<String>>,
        through: Option<Vec<String>>,
    },
    /// Rows stored in heap blocks `from..to` (to the end when `to` is open): for tables
    /// without a key to order by.
    Blocks { from: u64, to: Option<u64> },
}

/// One `COPY (SELECT …) TO STDOUT` over a table.
pub struct Query<'a> {
    /// The table's row filter (its snapshot filter or rule filter).
    pub filter: Option<&'a str>,
    /// Key columns (indices, in key order) the rows are ordered by; each row's key text
    /// is kept (`Rows::last_key`). Empty: heap order.
    pub key: &'a [usize],
    pub range: &'a Range,
    pub limit: Option<usize>,
    /// One more expression to select after the table's columns (its text per row is
    /// kept in `Rows::last_extra`).
    pub extra: Option<&'a str>,
}

/// A row-value comparison of `names` with untyped literals of `values` (which take the
/// key columns' types).
fn compare(names: &[String], op: &str, values: &[String]) -> String {
    let values: Vec<String> = values
        .iter()
        .map(|v| crate::postgres::quote_literal(v))
        .collect();
    format!("({}) {op} ({})", names.join(", "), values.join(", "))
}

/// The statement that reads `query`'s rows of `relation`.
pub fn copy_statement(relation: &RelationInfo, query: &Query<'_>) -> String {
    let columns = relation
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!(
        "COPY (SELECT {columns}{} FROM {}",
        query.extra.map(|e| format!(", {e}")).unwrap_or_default(),
        quote_table(&relation.schema, &relation.table)
    );
    let names: Vec<String> = query
        .key
        .iter()
        .map(|&i| quote_ident(&relation.columns[i].name))
        .collect();
    let mut conditions = Vec::new();
    if let Some(f) = query.filter {
        conditions.push(format!("({f})"));
    }
    match query.range {
        Range::All => {}
        Range::Keys { after, through } => {
            if let Some(after) = after {
                conditions.push(compare(&names, ">", after));
            }
            if let Some(through) = through {
                conditions.push(compare(&names, "<=", through));
            }
        }
        Range::Blocks { from, to } => {
            conditions.push(format!("ctid >= '({from},0)'::tid"));
            if let Some(to) = to {
                conditions.push(format!("ctid < '({to},0)'::tid"));
            }
        }
    }
    if !conditions.is_empty() {
        sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    if !names.is_empty() {
        sql.push_str(&format!(" ORDER BY {}", names.join(", ")));
    }
    if let Some(limit) = query.limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    sql.push_str(") TO STDOUT");
    sql
}

/// Starts reading `query`'s rows of `relation`.
pub async fn read_rows<'a>(
    client: &Client,
    relation: &'a RelationInfo,
    query: Query<'a>,
) -> Result<Rows<'a>, SnapshotError> {
    let sql = copy_statement(relation, &query);
    tracing::debug!(statement = %sql, "snapshot read");
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
        key: query.key,
        last_key: Vec::new(),
        extra: query.extra.is_some(),
        last_extra: None,
    })
}

/// The primary key columns a table is read in order of (none for a table without a
/// key).
pub fn ordered_key(relation: &RelationInfo) -> Vec<usize> {
    relation
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_key)
        .map(|(i, _)| i)
        .collect()
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
    let range = Range::Keys {
        after: after.map(<[String]>::to_vec),
        through: None,
    };
    let query = Query {
        filter,
        key,
        range: &range,
        limit: Some(limit),
        extra,
    };
    let mut rows = read_rows(client, relation, query).await?;
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

    fn column(name: &str, oid: u32) -> ColumnInfo {
        ColumnInfo::of_builtin(name, oid).unwrap()
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
