//! A chunk's window between its two watermarks: the chunk's rows by key, so a change
//! streamed inside the window drops the stale copy (Debezium's DBLog-style
//! deduplication), and the texts that carry keys and "already in Kafka" flags.

use std::collections::HashMap;

use super::SnapshotRow;
use crate::model::relation::RelationInfo;
use crate::model::value::Value;

/// A chunk between its watermarks.
pub(super) struct Window {
    pub(super) id: String,
    /// The low watermark has come through the stream.
    pub(super) open: bool,
    pub(super) rows: Vec<Option<SnapshotRow>>,
    pub(super) by_key: HashMap<String, usize>,
    /// The key text of the chunk's last row (where the next chunk starts).
    pub(super) last_key: Option<Vec<String>>,
}

impl Window {
    /// The window of a chunk just read, between its two watermarks: its rows by key,
    /// so a streamed change to one of them drops the stale copy.
    pub(super) fn of_chunk(
        id: String,
        relation: &RelationInfo,
        key_names: &[String],
        rows: Vec<crate::source::table_read::ChunkRow>,
        last_key: Option<Vec<String>>,
    ) -> Self {
        let mut by_key = HashMap::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            if let Some(k) = key_of(relation, &row.values, key_names) {
                by_key.insert(k, i);
            }
        }
        Window {
            id,
            open: false,
            rows: rows
                .into_iter()
                .map(|row| {
                    Some(SnapshotRow {
                        values: row.values,
                        present: row.extra.map(|f| parse_bool_array(&f)),
                        key: row.key,
                    })
                })
                .collect(),
            by_key,
            last_key,
        }
    }
}

/// The SQL that tells, for each (partition, key) of `present`, whether a row's key sorts
/// at or below it (PostgreSQL's own ordering, the one the snapshot was read in).
pub(super) fn present_flags(
    relation: &RelationInfo,
    key: &[usize],
    present: &[(i32, Vec<String>)],
) -> Option<String> {
    if present.is_empty() {
        return None;
    }
    let columns = key
        .iter()
        .map(|&i| crate::postgres::quote_ident(&relation.columns[i].name))
        .collect::<Vec<_>>()
        .join(", ");
    let tests = present
        .iter()
        .map(|(_, values)| {
            let literals = values
                .iter()
                .map(|v| crate::postgres::quote_literal(v))
                .collect::<Vec<_>>()
                .join(", ");
            format!("(({columns}) <= ({literals}))")
        })
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!("ARRAY[{tests}]"))
}

/// A PostgreSQL boolean array's text (`{t,f,NULL}`); NULL counts as false.
fn parse_bool_array(text: &str) -> Vec<bool> {
    text.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .map(|v| v.trim() == "t")
        .collect()
}

/// The key of `row` (columns named `names`) as a comparable string; `None` when a key
/// column is missing or unchanged-TOAST.
pub(super) fn key_of(relation: &RelationInfo, row: &[Value], names: &[String]) -> Option<String> {
    let mut out = String::new();
    for name in names {
        let i = relation.columns.iter().position(|c| &c.name == name)?;
        let value = row.get(i)?;
        if matches!(value, Value::UnchangedToast) {
            return None;
        }
        out.push_str(&format!("{value:?}\u{1f}"));
    }
    Some(out)
}
