//! Whether and how a connector takes its initial snapshot (Debezium's `snapshot.mode`
//! names), and running it: the slot is created with an exported snapshot, the captured
//! tables are read inside it, and streaming starts at the slot's consistent point.
//!
//! Progress lives in `walcast.connector_state`: a slot that exists while its snapshot is
//! marked unfinished means the snapshot was interrupted (kill -9 mid-way), so the slot is
//! dropped and the snapshot taken again; rows already sent are sent again (the snapshot
//! phase is at-least-once; streaming stays exactly-once).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_postgres::Client;
use tracing::{info, warn};

use super::PipelineError;
use crate::config::{Connector, SnapshotMode};
use crate::postgres::{connect, resolve_tables, Catalog};
use crate::source::change::TxEvent;
use crate::source::lsn::Lsn;
use crate::source::relation::RelationCache;
use crate::source::replication::{CreatedSlot, ReplicationConnection};
use crate::source::snapshot;

/// A snapshot to take: the connection that exported it must stay open until imported.
pub struct SnapshotPlan {
    exporter: ReplicationConnection,
    slot: CreatedSlot,
}

fn setup_err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Setup(e.to_string())
}

async fn state(client: &Client, connector: &Connector) -> Result<Option<bool>, PipelineError> {
    let row = client
        .query_opt(
            "SELECT snapshot_completed FROM walcast.connector_state WHERE connector = $1",
            &[&connector.name],
        )
        .await
        .map_err(|e| {
            PipelineError::Setup(format!(
                "cannot read walcast.connector_state ({}); run walcast setup {}",
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
                connector.file.display()
            ))
        })?;
    Ok(row.and_then(|r| r.try_get(0).ok()))
}

/// Makes sure the slot exists, and decides whether a snapshot is due.
/// What a connector does before it streams.
pub enum Prepared {
    /// Take the initial snapshot in the slot's exported snapshot.
    Snapshot(SnapshotPlan),
    /// An initial snapshot was interrupted: finish it while streaming from the slot
    /// (whose confirmed position is still the snapshot's consistent point), skipping what
    /// Kafka holds.
    Resume { consistent_point: Lsn },
    /// Stream only.
    Stream,
}

/// Whether an interrupted initial snapshot can resume instead of starting over: Kafka
/// must tell what it holds (an exactly-once mode into Kafka), the mode must go on to
/// stream, and every captured table must be read in primary-key order.
async fn resumable(connector: &Connector, client: &Client) -> Result<bool, PipelineError> {
    if connector.delivery.mode == crate::config::DeliveryMode::AtLeastOnce
        || connector.sink != crate::config::SinkKind::Kafka
        || connector.source.snapshot_mode == SnapshotMode::InitialOnly
    {
        return Ok(false);
    }
    let catalog = Catalog::load(client).await.map_err(setup_err)?;
    let resolution = resolve_tables(connector, &catalog);
    Ok(resolution.captured.iter().all(|c| {
        !c.table.primary_key.is_empty()
            && c.table.replica_identity != crate::postgres::ReplicaIdentity::Full
            && c.rule.snapshot_condition().is_none()
    }))
}

pub async fn prepare(connector: &Connector) -> Result<Prepared, PipelineError> {
    let client = connect(&connector.source, None).await.map_err(setup_err)?;
    let slot = &connector.source.slot;
    let slot_exists = client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[slot],
        )
        .await
        .map_err(setup_err)?
        .is_some();
    let completed = state(&client, connector).await?;
    let mode = connector.source.snapshot_mode;
    let wants_snapshot = matches!(
        mode,
        SnapshotMode::Initial | SnapshotMode::InitialOnly | SnapshotMode::WhenNeeded
    );
    match (slot_exists, completed) {
        (true, Some(false)) if wants_snapshot && resumable(connector, &client).await? => {
            let lsn: String = client
                .query_one(
                    "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                    &[slot],
                )
                .await
                .map_err(setup_err)?
                .get(0);
            let consistent_point: Lsn = lsn.parse().map_err(setup_err)?;
            warn!(slot = %slot, consistent_point = %consistent_point, "the initial snapshot was interrupted; resuming it while streaming: rows Kafka already holds are skipped, the rest are read in key-ordered chunks (op r, source.snapshot incremental)");
            return Ok(Prepared::Resume { consistent_point });
        }
        (true, Some(false)) if wants_snapshot => {
            warn!(slot = %slot, "the initial snapshot was interrupted; dropping the slot and taking the snapshot again (rows already sent are sent again)");
            client
                .execute("SELECT pg_drop_replication_slot($1)", &[slot])
                .await
                .map_err(|e| {
                    setup_err(format!(
                        "cannot drop slot {slot} to restart the snapshot: {e}"
                    ))
                })?;
        }
        (true, _) => return Ok(Prepared::Stream),
        (false, Some(true))
            if mode == SnapshotMode::Initial || mode == SnapshotMode::InitialOnly =>
        {
            return Err(PipelineError::Setup(format!(
                "slot {slot} is gone after a completed snapshot, so changes since then are no longer in the WAL; set [source] snapshot_mode = \"when_needed\" to snapshot again, or \"never\" to stream from now on"
            )));
        }
        (false, Some(true)) if mode == SnapshotMode::WhenNeeded => {
            warn!(slot = %slot, "SLOT LOST: the slot is gone after a completed snapshot; taking a new snapshot (snapshot_mode = when_needed)");
        }
        _ => {}
    }
    let mut exporter = ReplicationConnection::connect(&connector.source)
        .await
        .map_err(setup_err)?;
    let created = exporter
        .create_slot(slot, false, wants_snapshot)
        .await
        .map_err(|e| setup_err(format!("cannot create replication slot {slot}: {e}")))?;
    info!(slot = %created.name, consistent_point = %created.consistent_point, "created the replication slot");
    if !wants_snapshot {
        let _ = exporter.stop().await;
        return Ok(Prepared::Stream);
    }
    client
        .execute(
            "INSERT INTO walcast.connector_state (connector, slot, snapshot_completed) VALUES ($1, $2, false)
             ON CONFLICT (connector) DO UPDATE SET slot = EXCLUDED.slot, snapshot_completed = false, updated_at = now()",
            &[&connector.name, slot],
        )
        .await
        .map_err(setup_err)?;
    Ok(Prepared::Snapshot(SnapshotPlan {
        exporter,
        slot: created,
    }))
}

/// Reads every captured table in the exported snapshot and sends its rows downstream.
pub async fn run(
    connector: &Connector,
    plan: SnapshotPlan,
    out: &mpsc::Sender<TxEvent>,
) -> Result<u64, PipelineError> {
    let name = plan
        .slot
        .snapshot_name
        .clone()
        .ok_or_else(|| setup_err("the slot was created without an exported snapshot"))?;
    // Every worker imports the snapshot while the exporting connection is open.
    let mut clients = Vec::with_capacity(connector.source.snapshot_workers);
    for _ in 0..connector.source.snapshot_workers {
        let client = connect(&connector.source, None).await.map_err(setup_err)?;
        snapshot::begin(&client, &name).await.map_err(setup_err)?;
        clients.push(client);
    }
    // Imported: the exporting connection may go.
    let _ = plan.exporter.stop().await;
    let client = &clients[0];
    let catalog = Catalog::load(client).await.map_err(setup_err)?;
    let resolution = resolve_tables(connector, &catalog);
    let mut cache = RelationCache::default();
    let mut tables = Vec::with_capacity(resolution.captured.len());
    for captured in &resolution.captured {
        let relation = snapshot::relation_for(captured.table, &mut cache, client)
            .await
            .map_err(setup_err)?;
        tables.push((relation, captured.rule.snapshot_condition()));
    }
    info!(tables = tables.len(), workers = clients.len(), consistent_point = %plan.slot.consistent_point, "initial snapshot started");
    let rows = snapshot::run(clients, &tables, plan.slot.consistent_point, out)
        .await
        .map_err(setup_err)?;
    info!(rows, "initial snapshot read; streaming follows");
    Ok(rows)
}

/// Records that the snapshot is in Kafka (all its records acknowledged).
pub async fn mark_completed(connector: Arc<Connector>) {
    let result = async {
        let client = connect(&connector.source, None).await.map_err(setup_err)?;
        client
            .execute(
                "UPDATE walcast.connector_state SET snapshot_completed = true, updated_at = now() WHERE connector = $1",
                &[&connector.name],
            )
            .await
            .map_err(setup_err)
    }
    .await;
    match result {
        Ok(_) => info!("initial snapshot complete: every row is acknowledged by Kafka"),
        Err(e) => {
            warn!(error = %e, "could not record the completed snapshot; it will be taken again on restart")
        }
    }
}
