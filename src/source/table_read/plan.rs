//! Splitting a table into ranges the snapshot workers read in parallel.
//!
//! A table with a primary key is split at keys taken from a small page sample
//! (`TABLESAMPLE SYSTEM`, inside the snapshot), so every range is read in key order and
//! the ranges, emitted one after another, keep the whole table in key order: what an
//! interrupted snapshot needs to resume. A table without a usable key is split into heap
//! block ranges (TID range scans, PostgreSQL 14 and later). Small tables are one range.

use tokio_postgres::Client;

use super::copy::Range;
use super::SnapshotError;
use crate::model::relation::RelationInfo;
use crate::postgres::{quote_ident, quote_table};

/// Rows one range aims at: large enough that a range's query cost is negligible, small
/// enough that several workers share a table of a few hundred thousand rows.
pub const RANGE_ROWS: u64 = 50_000;

/// Tables below this many heap blocks (2 MiB) are read as one range, unsampled.
const MIN_SPLIT_BLOCKS: u64 = 256;

/// Heap blocks sampled per range planned: enough keys per boundary that ranges come
/// out roughly even, few enough that sampling a large table costs milliseconds.
const SAMPLE_BLOCKS_PER_RANGE: u64 = 8;

/// The ranges `relation` (rows matching `filter`) is read in, ordered by `key` when
/// it has one.
pub async fn ranges(
    client: &Client,
    relation: &RelationInfo,
    filter: Option<&str>,
    key: &[usize],
    tid_range_scans: bool,
) -> Result<Vec<Range>, SnapshotError> {
    let err = |e: tokio_postgres::Error| SnapshotError::Read {
        table: relation.qualified(),
        message: e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
    };
    let table = quote_table(&relation.schema, &relation.table);
    let blocks: i64 = client
        .query_one(
            "SELECT (pg_relation_size($1::oid::regclass) / current_setting('block_size')::bigint)::bigint",
            &[&relation.oid],
        )
        .await
        .map_err(err)?
        .get(0);
    let blocks = u64::try_from(blocks).unwrap_or(0);
    if blocks < MIN_SPLIT_BLOCKS || (key.is_empty() && !tid_range_scans) {
        return Ok(vec![Range::All]);
    }
    // Rows per block first, from a sample, to know how many ranges to aim at.
    let percent = |sample_blocks: u64| (sample_blocks as f64 * 100.0 / blocks as f64).min(100.0);
    let where_filter = filter.map(|f| format!(" WHERE ({f})")).unwrap_or_default();
    let probe_blocks = 64.min(blocks);
    let probe: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {table} TABLESAMPLE SYSTEM ({}) REPEATABLE (7){where_filter}",
                percent(probe_blocks)
            ),
            &[],
        )
        .await
        .map_err(err)?
        .get(0);
    let rows_per_block = (probe.max(1) as f64 / probe_blocks as f64).max(1.0 / 64.0);
    let estimated_rows = (rows_per_block * blocks as f64) as u64;
    let wanted = estimated_rows.div_ceil(RANGE_ROWS);
    if wanted < 2 {
        return Ok(vec![Range::All]);
    }
    if key.is_empty() {
        let step = blocks.div_ceil(wanted);
        let mut out = Vec::new();
        let mut from = 0;
        while from < blocks {
            let to = from + step;
            // The last range is open: blocks added since the size was read hold no row
            // the snapshot sees, but reading them costs nothing and proves it.
            out.push(Range::Blocks {
                from,
                to: (to < blocks).then_some(to),
            });
            from = to;
        }
        return Ok(out);
    }
    let names: Vec<String> = key
        .iter()
        .map(|&i| quote_ident(&relation.columns[i].name))
        .collect();
    // Sorted by the key columns themselves (aliased, so an output column of the same
    // name, which is text, cannot be what ORDER BY picks).
    let inner: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n} AS k{i}"))
        .collect();
    let texts: Vec<String> = (0..names.len()).map(|i| format!("s.k{i}::text")).collect();
    let order: Vec<String> = (0..names.len()).map(|i| format!("s.k{i}")).collect();
    let sample = client
        .query(
            &format!(
                "SELECT {} FROM (SELECT {} FROM {table} TABLESAMPLE SYSTEM ({}) REPEATABLE (11){where_filter}) s ORDER BY {}",
                texts.join(", "),
                inner.join(", "),
                percent(wanted * SAMPLE_BLOCKS_PER_RANGE),
                order.join(", ")
            ),
            &[],
        )
        .await
        .map_err(err)?;
    let mut keys = Vec::with_capacity(sample.len());
    for row in &sample {
        let mut k = Vec::with_capacity(key.len());
        for i in 0..key.len() {
            // A NULL cannot be in a primary key; a sample that has one is not split.
            let Some(text) = row.try_get::<_, Option<String>>(i).map_err(err)? else {
                return Ok(vec![Range::All]);
            };
            k.push(text);
        }
        keys.push(k);
    }
    Ok(key_ranges(&keys, wanted as usize))
}

/// Ranges split at `parts - 1` evenly spaced keys of a sorted sample (repeated keys
/// collapse, so no range is empty by construction); the first and last ranges are open.
pub fn key_ranges(sorted_sample: &[Vec<String>], parts: usize) -> Vec<Range> {
    let mut bounds: Vec<&Vec<String>> = Vec::new();
    if parts >= 2 && !sorted_sample.is_empty() {
        for i in 1..parts {
            let at = i * sorted_sample.len() / parts;
            let candidate = &sorted_sample[at.min(sorted_sample.len() - 1)];
            if bounds.last().is_none_or(|last| *last != candidate) {
                bounds.push(candidate);
            }
        }
    }
    let mut out = Vec::with_capacity(bounds.len() + 1);
    let mut after: Option<Vec<String>> = None;
    for bound in bounds {
        out.push(Range::Keys {
            after: after.take(),
            through: Some(bound.clone()),
        });
        after = Some(bound.clone());
    }
    out.push(Range::Keys {
        after,
        through: None,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(values: &[i64]) -> Vec<Vec<String>> {
        values.iter().map(|v| vec![v.to_string()]).collect()
    }

    #[test]
    fn key_ranges_cover_everything_once_in_order() {
        let ranges = key_ranges(&keys(&(1..=100).collect::<Vec<_>>()), 4);
        assert_eq!(ranges.len(), 4);
        assert_eq!(
            ranges[0],
            Range::Keys {
                after: None,
                through: Some(vec!["26".into()])
            }
        );
        assert_eq!(
            ranges[1],
            Range::Keys {
                after: Some(vec!["26".into()]),
                through: Some(vec!["51".into()])
            }
        );
        assert_eq!(
            ranges[3],
            Range::Keys {
                after: Some(vec!["76".into()]),
                through: None
            }
        );
    }

    #[test]
    fn repeated_or_scarce_sample_keys_never_make_empty_ranges() {
        // A sample of the same key twice over: one split point.
        let ranges = key_ranges(&keys(&[5, 5, 5, 5, 9, 9]), 6);
        let bounds: Vec<_> = ranges
            .iter()
            .map(|r| match r {
                Range::Keys { through, .. } => through.clone(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            bounds,
            vec![Some(vec!["5".into()]), Some(vec!["9".into()]), None]
        );
        assert_eq!(
            key_ranges(&[], 5),
            vec![Range::Keys {
                after: None,
                through: None
            }]
        );
        assert_eq!(key_ranges(&keys(&[1, 2, 3]), 1).len(), 1);
    }
}
