//! Creates the connector's publication, or brings its table list (and row filters)
//! in line with the configured capture set, when `publication_mode = "managed"`.

use tokio_postgres::Client;

use crate::config::ColumnSelection;
use crate::config::{Connector, PublicationMode};
use crate::model::relation::ReplicaIdentity;
use crate::postgres::{quote_ident, quote_table, resolve_tables, CapturedTable, Catalog};

/// What the sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicationSync {
    Created {
        tables: usize,
    },
    Updated {
        tables: usize,
    },
    UpToDate {
        tables: usize,
    },
    /// `publication_mode = "existing"`: left alone.
    NotManaged,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PublicationError(pub String);

/// The table whose inserted rows signal a running connector (never captured as events).
pub const SIGNAL_TABLE: &str = "walcast.signal";

/// Makes the publication publish exactly the captured tables (and walcast's signal
/// table), with their filters.
pub async fn sync(
    connector: &Connector,
    client: &Client,
) -> Result<PublicationSync, PublicationError> {
    let db = |e: tokio_postgres::Error| {
        PublicationError(
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
        )
    };
    let source = &connector.source;
    if source.publication_mode == PublicationMode::Existing {
        return Ok(PublicationSync::NotManaged);
    }
    let catalog = Catalog::load(client).await.map_err(db)?;
    let resolution = resolve_tables(connector, &catalog);
    if let Some(rule) = resolution.unmatched.first() {
        return Err(PublicationError(format!(
            "{} {} ({}) matches no table in database {}; fix it, then run walcast check",
            if rule.selector.is_exact() {
                "table"
            } else {
                "pattern"
            },
            rule.selector,
            rule.location,
            source.dbname
        )));
    }
    let tables = resolution.captured.len();
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    // walcast's signal table rides along: rows inserted there (incremental snapshot
    // requests and their watermarks) reach the connector through the stream.
    let signal: Option<u32> = client
        .query_one("SELECT to_regclass('walcast.signal')::oid", &[])
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    let mut entries: Vec<String> = resolution
        .captured
        .iter()
        .map(|c| publication_entry(c, version))
        .collect();
    if signal.is_some() {
        entries.push(SIGNAL_TABLE.to_owned());
    }
    let list = entries.join(", ");
    // Filters and column lists can't be compared with the catalog's normalised form,
    // so a publication that has them is always re-set (SET is idempotent).
    let has_extras = list.contains(" WHERE (")
        || resolution
            .captured
            .iter()
            .any(|c| column_list(c, version).is_some());
    let via_root = version >= 130000 && resolution.captured.iter().any(|c| c.table.is_partitioned);
    let publish = format!(
        "publish = 'insert, update, delete, truncate'{}",
        if via_root {
            ", publish_via_partition_root = true"
        } else {
            ""
        }
    );
    let name = quote_ident(&source.publication);

    let exists = client
        .query_opt(
            "SELECT puballtables FROM pg_publication WHERE pubname = $1",
            &[&source.publication],
        )
        .await
        .map_err(db)?;
    let explain = |e: tokio_postgres::Error, what: &str| {
        PublicationError(format!(
            "cannot {what} publication {}: {}; run walcast setup --admin-user <owner>, or create it yourself and set publication_mode = \"existing\"",
            source.publication,
            e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned())
        ))
    };
    match exists {
        None => {
            // Prepared statements carry exactly one command, so a filter can't smuggle a second.
            client
                .execute(
                    &format!("CREATE PUBLICATION {name} FOR TABLE {list} WITH ({publish})"),
                    &[],
                )
                .await
                .map_err(|e| explain(e, "create"))?;
            Ok(PublicationSync::Created { tables })
        }
        Some(row) => {
            let all_tables: bool = row.try_get(0).map_err(db)?;
            if all_tables {
                return Err(PublicationError(format!(
                    "publication {} is FOR ALL TABLES, which walcast can't narrow to the captured set; drop it, name another publication, or set publication_mode = \"existing\"",
                    source.publication
                )));
            }
            let published: Vec<u32> = client
                .query(
                    "SELECT c.oid FROM pg_publication_tables p
                     JOIN pg_namespace n ON n.nspname = p.schemaname
                     JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
                     WHERE p.pubname = $1",
                    &[&source.publication],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()
                .map_err(db)?;
            let mut wanted: Vec<u32> = resolution.captured.iter().map(|c| c.table.oid).collect();
            wanted.extend(signal);
            let mut have = published;
            wanted.sort_unstable();
            have.sort_unstable();
            if wanted == have && !has_extras {
                return Ok(PublicationSync::UpToDate { tables });
            }
            for statement in [
                format!("ALTER PUBLICATION {name} SET TABLE {list}"),
                format!(
                    "ALTER PUBLICATION {name} SET (publish = 'insert, update, delete, truncate')"
                ),
            ] {
                client
                    .execute(&statement, &[])
                    .await
                    .map_err(|e| explain(e, "update"))?;
            }
            Ok(PublicationSync::Updated { tables })
        }
    }
}

/// One `FOR TABLE` entry: the table, its column list (PG 15+) and its row filter.
pub(crate) fn publication_entry(captured: &CapturedTable<'_>, version: i32) -> String {
    let mut entry = quote_table(&captured.table.schema, &captured.table.name);
    if let Some(columns) = column_list(captured, version) {
        entry.push_str(" (");
        entry.push_str(
            &columns
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", "),
        );
        entry.push(')');
    }
    if let Some(filter) = &captured.rule.filter {
        entry.push_str(&format!(" WHERE ({filter})"));
    }
    entry
}

/// The columns to publish when the rule narrows them, so unwanted data never leaves
/// the server. Only on PostgreSQL 15+, and only for tables whose replica identity is a
/// key: PostgreSQL requires a column list to cover the replica identity, which for
/// REPLICA IDENTITY FULL is every column (tables with another identity than their
/// primary key are narrowed by walcast instead).
/// Key columns are always kept.
pub fn column_list(captured: &CapturedTable<'_>, version: i32) -> Option<Vec<String>> {
    let table = captured.table;
    if version < 150000
        || table.replica_identity != ReplicaIdentity::Default
        || table.primary_key.is_empty()
    {
        return None;
    }
    let keep: Vec<String> = match &captured.rule.columns {
        ColumnSelection::All => return None,
        ColumnSelection::Include(include) => table
            .columns
            .iter()
            .filter(|c| {
                include.contains(c)
                    || table.primary_key.contains(c)
                    || captured.rule.key.as_ref().is_some_and(|k| k.contains(c))
            })
            .cloned()
            .collect(),
        ColumnSelection::Exclude(exclude) => table
            .columns
            .iter()
            .filter(|c| !exclude.contains(c) || table.primary_key.contains(c))
            .cloned()
            .collect(),
    };
    (keep.len() < table.columns.len()).then_some(keep)
}
