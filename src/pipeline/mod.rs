//! One connector, end to end: replication reader → event stage → sink, with the
//! checkpoint in between. Stages are joined by bounded channels, so a slow broker or
//! registry slows the reader and memory stays bounded. The flush LSN confirmed to
//! PostgreSQL is the checkpoint and never runs ahead of what Kafka acknowledged.
//!
//! Where things happen: `run` (here) sets a connector up and wires its tasks;
//! `run_loop` is the loop's state and its wait for inputs; `inputs` handles each source
//! event (a change enters there and becomes records through `events`); `delivery` sends
//! records to the sink and moves the checkpoint as they are acknowledged.
//!
//! Exactly-once (the default): on start, for each topic it writes, the loop reads the
//! position in the last record of every partition; a resent event whose position is
//! at or below its partition's is skipped. Positions in a partition only grow, so a
//! change is neither lost (the slot resends everything after the confirmed position)
//! nor repeated.

pub mod context_headers;
mod dedup;
mod delivery;
pub mod events;
pub mod incremental;
pub mod initial_snapshot;
mod inputs;
mod reporting;
mod run_loop;
pub mod slot_health;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::config::{Connector, SinkKind};
use crate::model::change::TxEvent;
use crate::model::lsn::Lsn;
use crate::registry::client::{RegistryClient, RegistryClientConfig};
use crate::sink::discard::DiscardSink;
use crate::sink::kafka::KafkaSink;
use crate::sink::{DeliveryReport, RecordSink};
use crate::source::reader::{stream_with_reconnect, ReaderConfig};
use crate::source::spool::{SpoolConfig, SpoolMetrics};
use dedup::Dedup;
use events::EventStage;
use incremental::Incremental;
use run_loop::{Inputs, Outputs, Pipeline};

/// Why a connector stopped. Each variant keeps its cause (`source()`), so a log or a
/// caller can tell a connection failure from a refused command from a policy stop.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A setting or state the connector cannot go on with (the message names the fix).
    #[error("{0}")]
    Setup(String),
    /// The slot can no longer give the changes since the last checkpoint, and nothing
    /// allowed the gap (`snapshot_mode = "when_needed"`, `--accept-slot-loss`).
    #[error("{0}")]
    SlotLost(String),
    /// A PostgreSQL connection could not be made.
    #[error("{0}")]
    Connect(#[from] crate::postgres::ConnectError),
    /// A SQL command failed.
    #[error("{doing}: {source}")]
    Sql {
        doing: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A replication-protocol command failed (creating the slot, identifying the
    /// system).
    #[error("{doing}: {source}")]
    Replication {
        doing: String,
        #[source]
        source: crate::source::replication::ReplicationError,
    },
    /// Reading the initial snapshot failed.
    #[error("{0}")]
    Snapshot(#[from] crate::source::table_read::SnapshotError),
    /// One of the connector's tasks panicked or was cancelled.
    #[error("{what} ended abnormally: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("{0}")]
    Source(#[from] crate::source::reader::ReaderError),
    #[error("{0}")]
    Events(#[from] events::EventError),
    #[error("{0}")]
    Sink(#[from] crate::sink::SinkError),
    #[error("{0}")]
    Position(#[from] crate::checkpoint::PositionOverflow),
}

impl PipelineError {
    /// Wraps a failed SQL command with what walcast was doing.
    pub(crate) fn sql(doing: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| Self::Sql { doing, source }
    }
}

/// Runs `connector` until `shutdown` turns true or a fatal error.
pub async fn run(
    connector: Connector,
    shutdown: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let connector = Arc::new(connector);
    // Kafka first: a wrong address or password should stop the connector before it
    // creates a slot or starts a snapshot.
    if connector.sink == SinkKind::Discard {
        warn!("[sink] kind = \"discard\": events are encoded and dropped, nothing reaches Kafka (a benchmarking aid)");
        let (sink, reports) = DiscardSink::new(connector.kafka.partitions);
        return run_with(connector, sink, reports, shutdown).await;
    }
    let client_id = crate::sink::reconcile::Origin::client_id(&connector.name);
    let (mut sink, reports) =
        KafkaSink::new(&connector.kafka, connector.delivery.mode, &client_id)?;
    sink.check_connection()?;
    sink.init_transactions()?;
    let dedup = Dedup::load(&connector).await?;
    sink.stamp(&dedup.origin.identity);
    run_started(connector, sink, reports, dedup, shutdown).await
}

/// [`run`] with a sink that needs no connection check.
async fn run_with<S: RecordSink>(
    connector: Arc<Connector>,
    sink: S,
    reports: mpsc::UnboundedReceiver<DeliveryReport>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let dedup = Dedup::load(&connector).await?;
    run_started(connector, sink, reports, dedup, shutdown).await
}

/// Prepares the slot and any snapshot, starts the reader and the watchers, then runs
/// the loop until shutdown or an error, and drains it.
async fn run_started<S: RecordSink>(
    connector: Arc<Connector>,
    mut sink: S,
    reports: mpsc::UnboundedReceiver<DeliveryReport>,
    dedup: Dedup,
    shutdown: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    sink.set_context_headers(context_headers::for_run(&connector));
    let (incremental, plan) = prepare_snapshots(&connector, &dedup).await?;
    let stage = EventStage::new(connector.clone(), registry_client(&connector)?);

    let (events_tx, events) = mpsc::channel::<TxEvent>(4096);
    let (flushed, flushed_rx) = watch::channel(Lsn::ZERO);
    let (stop_source_tx, stop_source_rx) = watch::channel(false);
    prepare_spool_dir(&connector)?;
    let reader_config = reader_config(&connector);
    let source_task = {
        let connector = connector.clone();
        let snapshot_only =
            connector.source.snapshot_mode == crate::config::SnapshotMode::InitialOnly;
        tokio::spawn(async move {
            if let Some(plan) = plan {
                crate::observe::board().set_state(
                    &connector.name,
                    crate::observe::ConnectorState::Snapshotting,
                );
                initial_snapshot::run(&connector, plan, &events_tx).await?;
                if snapshot_only {
                    return Ok(());
                }
            }
            stream_with_reconnect(
                &connector.source,
                &reader_config,
                events_tx,
                flushed_rx,
                stop_source_rx,
            )
            .await
            .map_err(PipelineError::from)
        })
    };
    // The slot exists now (prepare made it): watch its health until the pipeline ends.
    let (slot_lost_tx, slot_lost) = mpsc::channel::<PipelineError>(1);
    let health_task = tokio::spawn(slot_health::watch(connector.clone(), slot_lost_tx));
    let heartbeat_task = connector.heartbeat.action_query.clone().map(|query| {
        let connector = connector.clone();
        tokio::spawn(async move { heartbeat(connector, query).await })
    });
    let (snapshot_done, marker_task) = spawn_snapshot_marker(&connector);

    let out = Outputs {
        flushed,
        snapshot_done,
    };
    let mut pipeline = Pipeline::new(connector.clone(), sink, stage, dedup, incremental, out);
    let mut inputs = Inputs {
        events,
        reports,
        shutdown,
        slot_lost,
    };
    let result = pipeline.run_active(&mut inputs).await;
    let flushed = pipeline.drain(&result, &mut inputs.reports).await;
    drop(pipeline);
    let _ = marker_task.await;

    let _ = stop_source_tx.send(true);
    health_task.abort();
    if let Some(task) = heartbeat_task {
        task.abort();
    }
    let source_result = wait_for_source(source_task, &mut inputs.events).await;
    if let Err(e) = flushed {
        warn!(error = %e, "not every record was acknowledged before the grace period ended; they are resent on restart");
    }
    result?;
    source_result
}

/// Records snapshots complete as the loop reports them (every row acknowledged), one at
/// a time; ends when the loop's sender is dropped.
fn spawn_snapshot_marker(
    connector: &Arc<Connector>,
) -> (mpsc::UnboundedSender<()>, tokio::task::JoinHandle<()>) {
    let (snapshot_done, mut done_rx) = mpsc::unbounded_channel::<()>();
    let connector = connector.clone();
    let task = tokio::spawn(async move {
        while done_rx.recv().await.is_some() {
            initial_snapshot::mark_completed(connector.clone()).await;
        }
    });
    (snapshot_done, task)
}

/// The slot, an initial snapshot to take (its plan) or to finish, and the incremental
/// snapshot recorded with the checkpoint, ready to go on.
async fn prepare_snapshots(
    connector: &Arc<Connector>,
    dedup: &Dedup,
) -> Result<(Incremental, Option<initial_snapshot::SnapshotPlan>), PipelineError> {
    let mut incremental = Incremental::new(connector.clone());
    incremental.resume(&dedup.recorded_incremental);
    let plan = match initial_snapshot::prepare(connector, dedup.recorded_flush_lsn).await? {
        initial_snapshot::Prepared::Snapshot(plan) => Some(plan),
        initial_snapshot::Prepared::Resume { consistent_point } => {
            incremental
                .resume_initial(consistent_point, &dedup.origin)
                .await?;
            None
        }
        initial_snapshot::Prepared::Stream => None,
    };
    // After the slot exists: the watermarks must come through its stream.
    if incremental.active() {
        incremental.next_window().await?;
    }
    if incremental.take_initial_finished() {
        // Nothing was left to read: Kafka held the whole snapshot.
        initial_snapshot::mark_completed(connector.clone()).await;
    }
    Ok((incremental, plan))
}

/// Waits for the reader while draining what it still hands over: a reader blocked on
/// a full channel would never see the stop signal. The drained events are past the
/// checkpoint, so PostgreSQL sends them again after a restart.
async fn wait_for_source(
    mut source_task: tokio::task::JoinHandle<Result<(), PipelineError>>,
    events: &mut mpsc::Receiver<TxEvent>,
) -> Result<(), PipelineError> {
    let result = loop {
        tokio::select! {
            result = &mut source_task => break result,
            _ = events.recv() => {}
        }
    };
    result.unwrap_or_else(|source| {
        Err(PipelineError::Task {
            what: "the reader task",
            source,
        })
    })
}

/// The schema registry client (the JSON formats use none).
fn registry_client(connector: &Arc<Connector>) -> Result<Option<RegistryClient>, PipelineError> {
    if !connector.events.format.uses_registry() {
        return Ok(None);
    }
    RegistryClient::new(RegistryClientConfig {
        connector: Some(connector.name.clone()),
        ..RegistryClientConfig::from_connector(&connector.registry)
    })
    .map(Some)
    .map_err(|e| PipelineError::Setup(e.to_string()))
}

/// How the reader streams: the slot, the publication, keepalives and the spool for
/// large transactions.
fn reader_config(connector: &Connector) -> ReaderConfig {
    let metrics = crate::observe::metrics();
    ReaderConfig {
        connector: connector.name.clone(),
        slot: connector.source.slot.clone(),
        publication: connector.source.publication.clone(),
        start_lsn: Lsn::ZERO,
        status_interval: connector.heartbeat.interval.min(Duration::from_secs(10)),
        spool: SpoolConfig {
            metrics: Some(SpoolMetrics {
                held: metrics.spool_bytes.with_label_values(&[&connector.name]),
                spilled: metrics
                    .spool_spilled_bytes
                    .with_label_values(&[&connector.name]),
            }),
            ..SpoolConfig::new(
                connector.source.spool_dir.clone(),
                connector.source.spool_max_bytes,
            )
        },
    }
}

/// Creates `[source] spool_dir` when missing and checks that a spill file can be made
/// there, so a bad folder stops the connector at start, not in the middle of its first
/// large transaction.
fn prepare_spool_dir(connector: &Connector) -> Result<(), PipelineError> {
    let dir = &connector.source.spool_dir;
    std::fs::create_dir_all(dir)
        .and_then(|()| tempfile::tempfile_in(dir).map(drop))
        .map_err(|e| {
            PipelineError::Setup(format!(
                "cannot use [source] spool_dir {} for large streamed transactions: {e}; create it writable for walcast, or point spool_dir at another folder (not a tmpfs)",
                dir.display()
            ))
        })
}

/// Runs `[heartbeat] action_query` every interval (errors are logged, never fatal).
async fn heartbeat(connector: Arc<Connector>, query: String) {
    let mut ticker = tokio::time::interval(connector.heartbeat.interval);
    let mut client = None;
    loop {
        ticker.tick().await;
        if client.is_none() {
            client = crate::postgres::connect(&connector.source, None).await.ok();
        }
        if let Some(c) = &client {
            if let Err(e) = c.batch_execute(&query).await {
                warn!(error = %e, "heartbeat action_query failed");
                client = None;
            }
        }
    }
}
