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
use crate::model::change::TxEvent;
use crate::model::lsn::Lsn;
use crate::postgres::{connect, resolve_tables, Catalog};
use crate::source::relation::RelationCache;
use crate::source::replication::{CreatedSlot, ReplicationConnection};
use crate::source::table_read;

/// A snapshot to take: the connection that exported it must stay open until imported.
pub struct SnapshotPlan {
    exporter: ReplicationConnection,
    slot: CreatedSlot,
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
    let catalog = Catalog::load(client)
        .await
        .map_err(PipelineError::sql("reading the catalog"))?;
    let resolution = resolve_tables(connector, &catalog);
    Ok(resolution.captured.iter().all(|c| {
        !c.table.primary_key.is_empty()
            && c.table.replica_identity != crate::model::relation::ReplicaIdentity::Full
            && c.rule.snapshot_condition().is_none()
    }))
}

/// The replication slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Missing,
    /// Invalidated (`wal_status = lost`, PostgreSQL 13+): it exists but the WAL it
    /// needs is gone, so it can never stream again.
    Lost,
    Usable,
}

impl SlotState {
    fn describe(self) -> &'static str {
        match self {
            SlotState::Missing => "is gone",
            SlotState::Lost => "was invalidated (wal_status = lost: PostgreSQL removed WAL it still needed, e.g. past max_slot_wal_keep_size)",
            SlotState::Usable => "exists",
        }
    }
}

async fn slot_state(client: &Client, slot: &str) -> Result<SlotState, PipelineError> {
    // to_jsonb: wal_status exists from PostgreSQL 13 on; before, a slot is never lost.
    let row = client
        .query_opt(
            "SELECT to_jsonb(s) ->> 'wal_status' FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(PipelineError::sql("reading pg_replication_slots"))?;
    Ok(match row {
        None => SlotState::Missing,
        Some(r) if r.get::<_, Option<String>>(0).as_deref() == Some("lost") => SlotState::Lost,
        Some(_) => SlotState::Usable,
    })
}

/// A slot that cannot stream, after a checkpoint was recorded: the changes after that
/// checkpoint are no longer in the WAL. Stops the connector (one line naming the gap and
/// the ways out) unless `--accept-slot-loss` accepts it.
async fn refuse_gap(
    connector: &Connector,
    state: SlotState,
    checkpoint: Lsn,
) -> Result<(), PipelineError> {
    let slot = &connector.source.slot;
    let wal_now = super::dedup::current_wal_lsn(connector).await?;
    if connector.accept_slot_loss {
        warn!(slot = %slot, last_checkpoint = %checkpoint, server_wal = %wal_now, "SLOT LOST: slot {slot} {}; --accept-slot-loss: creating a new slot and streaming from it, so the changes between the last checkpoint {checkpoint} and the new slot's start are not captured", state.describe());
        return Ok(());
    }
    Err(PipelineError::SlotLost(format!(
        "slot {slot} {} after the checkpoint recorded in {}, so the changes between {checkpoint} (the last checkpoint) and {wal_now} (where a new slot would start) are no longer in the WAL; set [source] snapshot_mode = \"when_needed\" to take a new snapshot, or run once with walcast run --accept-slot-loss to accept the gap and stream from now on",
        state.describe(),
        crate::sink::kafka::OFFSETS_TOPIC,
    )))
}

/// Makes sure the slot exists, and decides whether a snapshot is due. `recorded` is the
/// flush LSN of the checkpoint recorded for the connector in Kafka, if any: a slot
/// missing or invalidated after it means lost changes, which is never silent.
pub async fn prepare(
    connector: &Connector,
    recorded: Option<Lsn>,
) -> Result<Prepared, PipelineError> {
    let client = connect(&connector.source, None).await?;
    let slot = &connector.source.slot;
    let state_of_slot = slot_state(&client, slot).await?;
    let slot_exists = state_of_slot == SlotState::Usable;
    let completed = state(&client, connector).await?;
    let mode = connector.source.snapshot_mode;
    let mut wants_snapshot = matches!(
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
                .map_err(PipelineError::sql("reading the slot's confirmed position"))?
                .get(0);
            let consistent_point: Lsn = lsn.parse().map_err(PipelineError::Setup)?;
            warn!(slot = %slot, consistent_point = %consistent_point, "the initial snapshot was interrupted; resuming it while streaming: rows Kafka already holds are skipped, the rest are read in key-ordered chunks (op r, source.snapshot incremental)");
            return Ok(Prepared::Resume { consistent_point });
        }
        (true, Some(false)) if wants_snapshot => {
            warn!(slot = %slot, "the initial snapshot was interrupted; dropping the slot and taking the snapshot again (rows already sent are sent again)");
            drop_slot(&client, slot, "restart the snapshot").await?;
        }
        (true, _) => return Ok(Prepared::Stream),
        // A snapshot interrupted before its slot was lost is simply taken again.
        (false, Some(false)) if wants_snapshot => {}
        (false, _) if mode == SnapshotMode::WhenNeeded => {
            if completed == Some(true) || recorded.is_some() {
                warn!(slot = %slot, "SLOT LOST: slot {slot} {} after a completed snapshot or a recorded checkpoint; taking a new snapshot (snapshot_mode = when_needed)", state_of_slot.describe());
            }
        }
        (false, Some(true)) if wants_snapshot => {
            if !connector.accept_slot_loss {
                return Err(PipelineError::SlotLost(format!(
                    "slot {slot} {} after a completed snapshot, so changes since then are no longer in the WAL; set [source] snapshot_mode = \"when_needed\" to snapshot again, or run once with walcast run --accept-slot-loss to stream from now on",
                    state_of_slot.describe()
                )));
            }
            warn!(slot = %slot, "SLOT LOST: slot {slot} {} after a completed snapshot; --accept-slot-loss: creating a new slot and streaming from it without a snapshot, so the changes in between are not captured", state_of_slot.describe());
            wants_snapshot = false;
        }
        // A first start that snapshots: the snapshot covers whatever came before.
        (false, _) if wants_snapshot => {}
        // never / no_data: nothing re-reads the tables, so a checkpoint recorded before
        // the slot went means a gap.
        (false, _) => {
            if let Some(checkpoint) = recorded {
                refuse_gap(connector, state_of_slot, checkpoint).await?;
            }
        }
    }
    create_slot(connector, &client, state_of_slot, recorded, wants_snapshot).await
}

/// Creates the slot (replacing an invalidated one), with an exported snapshot when one
/// is to be taken, and records the snapshot as begun.
async fn create_slot(
    connector: &Connector,
    client: &Client,
    state_of_slot: SlotState,
    recorded: Option<Lsn>,
    wants_snapshot: bool,
) -> Result<Prepared, PipelineError> {
    let slot = &connector.source.slot;
    if state_of_slot == SlotState::Lost {
        drop_slot(client, slot, "replace the invalidated slot").await?;
    }
    let mut exporter = ReplicationConnection::connect(&connector.source)
        .await
        .map_err(|source| PipelineError::Replication {
            doing: format!("cannot connect to create replication slot {slot}"),
            source,
        })?;
    let created = exporter
        .create_slot(slot, false, wants_snapshot)
        .await
        .map_err(|source| PipelineError::Replication {
            doing: format!("cannot create replication slot {slot}"),
            source,
        })?;
    info!(slot = %created.name, consistent_point = %created.consistent_point, "created the replication slot");
    if let (Some(checkpoint), true) = (recorded, connector.accept_slot_loss) {
        if !wants_snapshot {
            warn!(slot = %created.name, last_checkpoint = %checkpoint, new_slot_start = %created.consistent_point, "SLOT LOST: changes between the last checkpoint and the new slot's start are not captured (accepted with --accept-slot-loss)");
        }
    }
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
        .map_err(PipelineError::sql("recording the snapshot in walcast.connector_state"))?;
    Ok(Prepared::Snapshot(SnapshotPlan {
        exporter,
        slot: created,
    }))
}

async fn drop_slot(client: &Client, slot: &str, why: &str) -> Result<(), PipelineError> {
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .map(|_| ())
        .map_err(|e| PipelineError::Setup(format!("cannot drop slot {slot} to {why}: {e}")))
}

/// Reads every captured table in the exported snapshot and sends its rows downstream.
pub async fn run(
    connector: &Connector,
    plan: SnapshotPlan,
    out: &mpsc::Sender<TxEvent>,
) -> Result<u64, PipelineError> {
    let name = plan.slot.snapshot_name.clone().ok_or_else(|| {
        PipelineError::Setup("the slot was created without an exported snapshot".into())
    })?;
    // Every worker imports the snapshot while the exporting connection is open.
    let mut clients = Vec::with_capacity(connector.source.snapshot_workers);
    for _ in 0..connector.source.snapshot_workers {
        let client = connect(&connector.source, None).await?;
        table_read::begin(&client, &name).await?;
        clients.push(client);
    }
    // Imported: the exporting connection may go.
    let _ = plan.exporter.stop().await;
    let client = &clients[0];
    let catalog = Catalog::load(client)
        .await
        .map_err(PipelineError::sql("reading the catalog"))?;
    let resolution = resolve_tables(connector, &catalog);
    let mut cache = RelationCache::default();
    let mut tables = Vec::with_capacity(resolution.captured.len());
    for captured in &resolution.captured {
        let relation = table_read::relation_for(captured.table, &mut cache, client).await?;
        tables.push((relation, captured.rule.snapshot_condition()));
    }
    let mut estimates = Vec::with_capacity(tables.len());
    for (relation, _) in &tables {
        estimates.push((
            relation.qualified(),
            estimated_rows(client, relation.oid).await,
        ));
    }
    crate::observe::board().snapshot_started(
        &connector.name,
        crate::observe::SnapshotKind::Initial,
        estimates,
    );
    info!(tables = tables.len(), workers = clients.len(), consistent_point = %plan.slot.consistent_point, "initial snapshot started");
    let rows = table_read::run(clients, &tables, plan.slot.consistent_point, out).await?;
    info!(rows, "initial snapshot read; streaming follows");
    Ok(rows)
}

/// PostgreSQL's estimate of a table's rows (`pg_class.reltuples`, kept by ANALYZE and
/// autovacuum), for snapshot progress; `None` when the table was never analyzed.
pub(crate) async fn estimated_rows(client: &tokio_postgres::Client, oid: u32) -> Option<u64> {
    let row = client
        .query_opt(
            "SELECT reltuples::float8 FROM pg_class WHERE oid = $1",
            &[&oid],
        )
        .await
        .ok()??;
    let estimate: f64 = row.get(0);
    // -1 (PostgreSQL 14+) and 0 with pages (older): never analyzed.
    (estimate > 0.0).then_some(estimate as u64)
}

/// Records that the snapshot is in Kafka (all its records acknowledged).
pub async fn mark_completed(connector: Arc<Connector>) {
    let result = async {
        let client = connect(&connector.source, None).await?;
        client
            .execute(
                "UPDATE walcast.connector_state SET snapshot_completed = true, updated_at = now() WHERE connector = $1",
                &[&connector.name],
            )
            .await
            .map_err(PipelineError::sql("recording the snapshot complete"))
    }
    .await;
    match result {
        Ok(_) => info!("initial snapshot complete: every row is acknowledged by Kafka"),
        Err(e) => {
            warn!(error = %e, "could not record the completed snapshot; it will be taken again on restart")
        }
    }
}
