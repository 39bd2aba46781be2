//! The SQL files of `migrations/`, compiled into the binary, and applying them once
//! each, in order, tracked in `walcast.schema_migrations`.

use tokio_postgres::Client;

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its path under `migrations/`, which is also its id in the tracking table.
    pub id: &'static str,
    pub sql: &'static str,
}

/// walcast's support objects, needed by every connector.
pub const SUPPORT: &[Migration] = &[
    Migration {
        id: "0001_walcast_schema.sql",
        sql: include_str!("../../../migrations/0001_walcast_schema.sql"),
    },
    Migration {
        id: "0002_connector_state.sql",
        sql: include_str!("../../../migrations/0002_connector_state.sql"),
    },
];

/// The demo inventory schema (`walcast setup --demo`).
pub const DEMO: &[Migration] = &[Migration {
    id: "demo/0001_inventory.sql",
    sql: include_str!("../../../migrations/demo/0001_inventory.sql"),
}];

/// What happened to one migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Now(&'static str),
    Already(&'static str),
}

/// A stable fingerprint of a file's text (FNV-1a, 64-bit): detects a migration edited
/// after it was applied, which would otherwise silently never run.
pub fn checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("migration {id} was changed after it was applied (checksum {applied} in the database, {now} now); restore the file, and put changes in a new migration")]
    Changed {
        id: &'static str,
        applied: String,
        now: String,
    },
    #[error("migration {id} failed: {message}")]
    Failed { id: &'static str, message: String },
    #[error("{0}")]
    Database(String),
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
}

/// Applies every not-yet-applied migration of `sets`, in one transaction under an
/// advisory lock, so concurrent `setup` runs don't race and a failure applies nothing.
pub async fn apply(
    client: &mut Client,
    sets: &[&[Migration]],
) -> Result<Vec<Applied>, MigrationError> {
    let db = |e: tokio_postgres::Error| MigrationError::Database(db_message(&e));
    let tx = client.transaction().await.map_err(db)?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(hashtext('walcast.setup'));
         CREATE SCHEMA IF NOT EXISTS walcast;
         CREATE TABLE IF NOT EXISTS walcast.schema_migrations (
             id         text PRIMARY KEY,
             checksum   text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await
    .map_err(db)?;
    let mut report = Vec::new();
    for migration in sets.iter().flat_map(|s| s.iter()) {
        let now = checksum(migration.sql);
        let row = tx
            .query_opt(
                "SELECT checksum FROM walcast.schema_migrations WHERE id = $1",
                &[&migration.id],
            )
            .await
            .map_err(db)?;
        match row {
            Some(row) => {
                let applied: String = row.try_get(0).map_err(db)?;
                if applied != now {
                    return Err(MigrationError::Changed {
                        id: migration.id,
                        applied,
                        now,
                    });
                }
                report.push(Applied::Already(migration.id));
            }
            None => {
                tx.batch_execute(migration.sql)
                    .await
                    .map_err(|e| MigrationError::Failed {
                        id: migration.id,
                        message: db_message(&e),
                    })?;
                tx.execute(
                    "INSERT INTO walcast.schema_migrations (id, checksum) VALUES ($1, $2)",
                    &[&migration.id, &now],
                )
                .await
                .map_err(db)?;
                report.push(Applied::Now(migration.id));
            }
        }
    }
    tx.commit().await.map_err(db)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_migrations_is_compiled_in() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut on_disk = Vec::new();
        for dir in [root.clone(), root.join("demo")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "sql") {
                    on_disk.push(
                        path.strip_prefix(&root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        on_disk.sort();
        let mut compiled: Vec<String> = SUPPORT
            .iter()
            .chain(DEMO)
            .map(|m| m.id.to_owned())
            .collect();
        compiled.sort();
        assert_eq!(
            on_disk, compiled,
            "list new migration files in src/setup/migrations.rs"
        );
    }

    #[test]
    fn checksums_are_stable_and_sensitive() {
        assert_eq!(checksum(""), "cbf29ce484222325");
        assert_ne!(checksum("a"), checksum("b"));
        assert_eq!(checksum(SUPPORT[0].sql), checksum(SUPPORT[0].sql));
    }
}
