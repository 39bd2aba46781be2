//! Creates the connector's publication, or brings its table list (and row filters)
//! in line with the configured capture set, when `publication_mode = "managed"`.

use tokio_postgres::Client;

use crate::config::{Connector, PublicationMode};
use crate::postgres::{quote_ident, quote_table, resolve_tables, Catalog};

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

/// Makes the publication publish exactly the captured tables, with their filters.
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
    let list = resolution
        .captured
        .iter()
        .map(|c| {
            let name = quote_table(&c.table.schema, &c.table.name);
            match &c.rule.filter {
                Some(f) => format!("{name} WHERE ({f})"),
                None => name,
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let has_filters = resolution.captured.iter().any(|c| c.rule.filter.is_some());
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
                    &format!("CREATE PUBLICATION {name} FOR TABLE {list} WITH (publish = 'insert, update, delete, truncate')"),
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
            let mut have = published;
            wanted.sort_unstable();
            have.sort_unstable();
            // Row filters can't be compared as written (the catalog keeps them normalised),
            // so a filtered publication is always re-set; SET is idempotent.
            if wanted == have && !has_filters {
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
