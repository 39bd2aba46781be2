//! `walcast slots` lists the replication slots of a connector's database, as an
//! operator looking at WAL retention needs them; `walcast teardown` removes what a
//! connector holds in PostgreSQL (its slot, a publication walcast manages, its state
//! row), refusing a slot in use unless forced, and says what it leaves.

use std::time::Duration;

use tokio_postgres::Client;

use crate::config::{Connector, PublicationMode};
use crate::postgres::{connect, quote_ident};

/// One row of `pg_replication_slots`.
#[derive(Debug, Clone)]
pub struct SlotRow {
    pub name: String,
    pub plugin: Option<String>,
    pub kind: String,
    pub database: Option<String>,
    pub active: bool,
    pub active_pid: Option<i32>,
    pub confirmed_flush_lsn: Option<String>,
    /// WAL kept on the server for the slot (current WAL position - restart_lsn).
    pub retained_bytes: Option<i64>,
    /// `None` before PostgreSQL 13.
    pub wal_status: Option<String>,
}

/// Every replication slot of the server, by name.
pub async fn list(client: &Client) -> Result<Vec<SlotRow>, tokio_postgres::Error> {
    // to_jsonb: wal_status exists from PostgreSQL 13 on.
    let rows = client
        .query(
            "SELECT slot_name::text, plugin::text, slot_type::text, database::text, active, active_pid,
                    confirmed_flush_lsn::text,
                    (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END
                       - restart_lsn)::int8,
                    to_jsonb(s) ->> 'wal_status'
             FROM pg_replication_slots s ORDER BY slot_name",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SlotRow {
                name: r.try_get(0)?,
                plugin: r.try_get(1)?,
                kind: r.try_get(2)?,
                database: r.try_get(3)?,
                active: r.try_get(4)?,
                active_pid: r.try_get(5)?,
                confirmed_flush_lsn: r.try_get(6)?,
                retained_bytes: r.try_get(7)?,
                wal_status: r.try_get(8)?,
            })
        })
        .collect()
}

/// `walcast slots`: the table printed, the connector's own slot marked.
pub async fn print(connector: &Connector) -> Result<(), String> {
    let client = connect(&connector.source, None)
        .await
        .map_err(|e| e.to_string())?;
    let slots = list(&client)
        .await
        .map_err(|e| format!("cannot read pg_replication_slots: {e}"))?;
    println!(
        "{:<32} {:<10} {:<9} {:<14} {:<8} {:<14} {:>12} {:<10}",
        "SLOT", "PLUGIN", "TYPE", "DATABASE", "PID", "CONFIRMED", "RETAINED", "WAL_STATUS"
    );
    for s in &slots {
        let mark = if s.name == connector.source.slot {
            format!("  <- connector {}", connector.name)
        } else {
            String::new()
        };
        println!(
            "{:<32} {:<10} {:<9} {:<14} {:<8} {:<14} {:>12} {:<10}{mark}",
            s.name,
            s.plugin.as_deref().unwrap_or("-"),
            s.kind,
            s.database.as_deref().unwrap_or("-"),
            match (s.active, s.active_pid) {
                (true, Some(pid)) => pid.to_string(),
                (true, None) => "active".to_owned(),
                (false, _) => "-".to_owned(),
            },
            s.confirmed_flush_lsn.as_deref().unwrap_or("-"),
            s.retained_bytes
                .map_or_else(|| "-".to_owned(), crate::observe::page::bytes),
            s.wal_status.as_deref().unwrap_or("-"),
        );
    }
    if !slots.iter().any(|s| s.name == connector.source.slot) {
        println!(
            "(connector {}'s slot {} does not exist yet: walcast run creates it)",
            connector.name, connector.source.slot
        );
    }
    Ok(())
}

/// What `teardown` did, one line each.
pub async fn teardown(connector: &Connector, force: bool) -> Result<Vec<String>, String> {
    let client = connect(&connector.source, None)
        .await
        .map_err(|e| e.to_string())?;
    let slot = &connector.source.slot;
    let sql = |doing: &'static str| {
        move |e: tokio_postgres::Error| format!("{doing}: {}", db_message(&e))
    };
    let mut done = Vec::new();
    let row = client
        .query_opt(
            "SELECT active, active_pid, plugin::text, database::text FROM pg_replication_slots WHERE slot_name = $1",
            &[slot],
        )
        .await
        .map_err(sql("reading pg_replication_slots"))?;
    match row {
        None => done.push(format!("slot {slot} does not exist; nothing to drop")),
        Some(row) => {
            let active: bool = row.get(0);
            let pid: Option<i32> = row.get(1);
            let database: Option<String> = row.get(3);
            if database.as_deref() != Some(connector.source.dbname.as_str()) {
                return Err(format!(
                    "slot {slot} belongs to database {}, not this connector's {}; refusing to drop it",
                    database.as_deref().unwrap_or("(none: a physical slot)"),
                    connector.source.dbname
                ));
            }
            if active && !force {
                return Err(format!(
                    "slot {slot} is in use by the process with pid {} (a running walcast?); stop that connector first, or pass --force to end its connection and drop the slot",
                    pid.map_or_else(|| "?".to_owned(), |p| p.to_string())
                ));
            }
            if active {
                if let Some(pid) = pid {
                    client
                        .execute("SELECT pg_terminate_backend($1)", &[&pid])
                        .await
                        .map_err(sql("ending the slot's connection"))?;
                    done.push(format!(
                        "ended the connection using slot {slot} (pid {pid})"
                    ));
                }
                wait_until_inactive(&client, slot).await?;
            }
            client
                .execute("SELECT pg_drop_replication_slot($1)", &[slot])
                .await
                .map_err(sql("dropping the slot"))?;
            done.push(format!(
                "dropped slot {slot}: PostgreSQL no longer keeps WAL for this connector"
            ));
        }
    }
    let publication = &connector.source.publication;
    if connector.source.publication_mode == PublicationMode::Managed {
        client
            .execute(
                &format!("DROP PUBLICATION IF EXISTS {}", quote_ident(publication)),
                &[],
            )
            .await
            .map_err(sql("dropping the publication"))?;
        done.push(format!(
            "dropped publication {publication} (walcast managed it)"
        ));
    } else {
        done.push(format!(
            "left publication {publication}: publication_mode = \"existing\", it is not walcast's"
        ));
    }
    let state_table: Option<String> = client
        .query_one("SELECT to_regclass('walcast.connector_state')::text", &[])
        .await
        .map_err(sql("looking for walcast.connector_state"))?
        .get(0);
    if state_table.is_some() {
        let rows = client
            .execute(
                "DELETE FROM walcast.connector_state WHERE connector = $1",
                &[&connector.name],
            )
            .await
            .map_err(sql("deleting the connector's state"))?;
        if rows > 0 {
            done.push(format!(
                "deleted connector {}'s row in walcast.connector_state (a connector started again under this name takes a new snapshot)",
                connector.name
            ));
        }
    }
    done.push(format!(
        "left the topics {prefix}.* and their records, and the connector's checkpoints in Kafka's walcast.offsets topic (started again with snapshot_mode = \"never\" or \"no_data\", it stops and names the gap since its last checkpoint); delete topics with kafka-topics.sh --delete if no consumer needs them",
        prefix = connector.kafka.topic_prefix
    ));
    Ok(done)
}

/// After `pg_terminate_backend`, the walsender takes a moment to release the slot.
async fn wait_until_inactive(client: &Client, slot: &str) -> Result<(), String> {
    for _ in 0..100 {
        let active: Option<bool> = client
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(|e| db_message(&e))?
            .map(|r| r.get(0));
        if active != Some(true) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "slot {slot} was still in use 10 s after its connection was ended (is the client reconnecting? stop it first)"
    ))
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
}
