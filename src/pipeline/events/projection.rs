//! Which columns of a table its `[tables]` rule keeps, and which are its key.

use std::sync::Arc;

use super::EventError;
use crate::config::{ColumnSelection, TableRule};
use crate::model::relation::RelationInfo;

/// The columns of `relation` its rule keeps (when the publication could not leave the
/// others out): the keep list, `None` when all are kept, and the table as projected.
pub(super) fn project(
    relation: &Arc<RelationInfo>,
    rule: Option<&TableRule>,
) -> (Option<Vec<usize>>, Arc<RelationInfo>) {
    let keep: Vec<usize> = (0..relation.columns.len())
        .filter(|&i| {
            let c = &relation.columns[i];
            let configured_key = rule
                .and_then(|r| r.key.as_ref())
                .is_some_and(|k| k.contains(&c.name));
            c.is_key
                || configured_key
                || match rule.map(|r| &r.columns) {
                    Some(ColumnSelection::Include(list)) => list.contains(&c.name),
                    Some(ColumnSelection::Exclude(list)) => !list.contains(&c.name),
                    _ => true,
                }
        })
        .collect();
    if keep.len() == relation.columns.len() {
        (None, relation.clone())
    } else {
        let mut p = (**relation).clone();
        p.columns = keep.iter().map(|&i| relation.columns[i].clone()).collect();
        (Some(keep), Arc::new(p))
    }
}

/// The key columns of the projected table: the rule's `key`, else the replica
/// identity's (none under REPLICA IDENTITY FULL).
pub(super) fn key_columns(
    projected: &RelationInfo,
    rule: Option<&TableRule>,
) -> Result<Vec<usize>, EventError> {
    Ok(match rule.and_then(|r| r.key.as_ref()) {
        Some(names) => names
            .iter()
            .map(|n| {
                projected
                    .columns
                    .iter()
                    .position(|c| &c.name == n)
                    .ok_or_else(|| {
                        EventError::Schema(format!(
                        "table {}: key column `{n}` is not in the stream; check its [tables] entry",
                        projected.qualified()
                    ))
                    })
            })
            .collect::<Result<_, _>>()?,
        None => (0..projected.columns.len())
            .filter(|&i| projected.columns[i].is_key)
            .collect(),
    })
}
