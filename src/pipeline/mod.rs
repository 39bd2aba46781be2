//! One connector, end to end: replication reader → event stage → Kafka sink, with the
//! checkpoint in between. Stages are joined by bounded channels, so a slow broker or
//! registry slows the reader and memory stays bounded. The flush LSN confirmed to
//! PostgreSQL is the checkpoint and never runs ahead of what Kafka acknowledged.
//!
//! Exactly-once (the default): on start, for each topic it writes, the stage reads the
//! position in the last record of every partition; a resent event whose position is
//! at or below its partition's is skipped. Positions in a partition only grow, so a
//! change is neither lost (the slot resends everything after the confirmed position)
//! nor repeated.

pub mod events;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::checkpoint::{AckTracker, Position};
use crate::config::{Connector, DeliveryMode};
use crate::registry::client::{RegistryClient, RegistryClientConfig};
use crate::sink::kafka::{last_positions, KafkaSink, OutRecord};
use crate::source::change::TxEvent;
use crate::source::lsn::Lsn;
use crate::source::reader::{stream_with_reconnect, ReaderConfig};
use crate::source::spool::SpoolConfig;
use events::{EventStage, TxContext};

/// Why a connector stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Source(#[from] crate::source::reader::ReaderError),
    #[error("{0}")]
    Events(#[from] events::EventError),
    #[error("{0}")]
    Sink(#[from] crate::sink::kafka::SinkError),
}

/// Runs `connector` until `shutdown` turns true or a fatal error.
pub async fn run(
    connector: Connector,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    if connector.delivery.mode == DeliveryMode::Transactional {
        return Err(PipelineError::Setup(format!(
            "{}: [delivery] mode = \"transactional\" (Kafka transactions) is not available in this version; use \"exactly_once\" (the default: no change lost or repeated, without transactions)",
            connector.file.display()
        )));
    }
    let connector = Arc::new(connector);
    // Kafka first: a wrong address or password should stop the connector before it
    // creates a slot or starts a snapshot.
    let client_id = format!("walcast-{}", connector.name);
    let (mut sink, mut reports) =
        KafkaSink::new(&connector.kafka, connector.delivery.mode, &client_id)?;
    sink.check_connection()?;
    let plan = snapshot::prepare(&connector).await?;
    let snapshot_only = connector.source.snapshot_mode == crate::config::SnapshotMode::InitialOnly;
    // The JSON formats use no schema registry.
    let registry = if connector.events.format.uses_registry() {
        Some(
            RegistryClient::new(RegistryClientConfig::from_connector(&connector.registry))
                .map_err(|e| PipelineError::Setup(e.to_string()))?,
        )
    } else {
        None
    };
    let mut stage = EventStage::new(connector.clone(), registry);

    let (events_tx, mut events_rx) = mpsc::channel::<TxEvent>(4096);
    let (flushed_tx, flushed_rx) = watch::channel(Lsn::ZERO);
    let (stop_source_tx, stop_source_rx) = watch::channel(false);
    let reader_config = ReaderConfig {
        slot: connector.source.slot.clone(),
        publication: connector.source.publication.clone(),
        start_lsn: Lsn::ZERO,
        status_interval: connector.heartbeat.interval.min(Duration::from_secs(10)),
        spool: SpoolConfig::default(),
    };
    let metrics = crate::observe::metrics();
    metrics.set_streaming(&connector.name, true);
    let source_task = {
        let connector = connector.clone();
        tokio::spawn(async move {
            if let Some(plan) = plan {
                snapshot::run(&connector, plan, &events_tx).await?;
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
    let heartbeat_task = connector.heartbeat.action_query.clone().map(|query| {
        let connector = connector.clone();
        tokio::spawn(async move { heartbeat(connector, query).await })
    });

    let mut tracker = AckTracker::new();
    let mut tx = TxContext {
        xid: 0,
        commit_time_us: 0,
        last_commit_lsn: None,
    };
    let mut commit_lsn = Lsn::ZERO;
    let mut index: u32 = 0;
    let mut records = Vec::new();
    // Exactly-once: the last position already in each partition, loaded per topic.
    let mut present: HashMap<Arc<str>, HashMap<i32, Position>> = HashMap::new();
    let mut skipped: u64 = 0;
    // The consistent point of a snapshot being sent, and of one waiting for its acks.
    let mut snapshot_point: Option<Lsn> = None;
    let mut snapshot_pending: Option<Lsn> = None;
    let mut last_recorded = std::time::Instant::now();
    let result: Result<(), PipelineError> = loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break Ok(()),
            Some(report) = reports.recv() => {
                if report.commit_lsn == Lsn::ZERO {
                    // A checkpoint record: informative, never part of the guarantee.
                    if let Some(error) = report.error {
                        warn!(error = %error, "could not record the checkpoint in {}", crate::sink::kafka::OFFSETS_TOPIC);
                    }
                    continue;
                }
                if let Some(error) = report.error {
                    break Err(crate::sink::kafka::SinkError::Delivery { commit_lsn: report.commit_lsn, message: error }.into());
                }
                tracker.acked(report.commit_lsn);
                if let Some(checkpoint) = tracker.advance() {
                    let _ = flushed_tx.send(checkpoint.flush_lsn);
                    metrics.confirmed_lsn.with_label_values(&[&connector.name]).set(checkpoint.flush_lsn.0 as i64);
                    if snapshot_pending.is_some_and(|cp| checkpoint.flush_lsn >= cp) {
                        snapshot_pending = None;
                        tokio::spawn(snapshot::mark_completed(connector.clone()));
                    }
                    if last_recorded.elapsed() >= Duration::from_secs(1) {
                        last_recorded = std::time::Instant::now();
                        if let Err(e) = sink.write_checkpoint(&connector.name, &connector.source.slot, &checkpoint).await {
                            warn!(error = %e, "could not record the checkpoint");
                        }
                    }
                }
            }
            event = events_rx.recv() => {
                let Some(event) = event else {
                    // The source ended (initial_only done, or an error the source task reports).
                    break Ok(());
                };
                match event {
                    TxEvent::Begin { xid, commit_lsn: lsn, commit_time_us } => {
                        tx.xid = xid;
                        tx.commit_time_us = commit_time_us;
                        commit_lsn = lsn;
                        index = 0;
                        tracker.begin(lsn);
                        stage.begin_transaction(&tx, lsn);
                    }
                    TxEvent::Change(change) => {
                        records.clear();
                        if let Err(e) = stage.change(change, &tx, &mut records).await {
                            break Err(e.into());
                        }
                        if let Err(e) = send_all(&mut sink, &connector, &client_id, &mut present, &mut records, &mut tracker, commit_lsn, &mut index, tx.xid, &mut skipped).await {
                            break Err(e);
                        }
                    }
                    TxEvent::Message { transactional, lsn, prefix, content } => {
                        if !transactional {
                            tracker.begin(lsn);
                            commit_lsn = lsn;
                            index = 0;
                        }
                        records.clear();
                        if let Err(e) = stage.message(prefix, content, lsn, transactional, &tx, &mut records).await {
                            break Err(e.into());
                        }
                        if let Err(e) = send_all(&mut sink, &connector, &client_id, &mut present, &mut records, &mut tracker, commit_lsn, &mut index, tx.xid, &mut skipped).await {
                            break Err(e);
                        }
                        if !transactional {
                            tracker.commit(lsn);
                        }
                    }
                    TxEvent::SnapshotStarted { consistent_point } => {
                        // Snapshot rows sort before every change streamed after the
                        // consistent point, and after anything an earlier attempt sent.
                        commit_lsn = Lsn(consistent_point.0.saturating_sub(1));
                        index = 0;
                        tx.xid = 0;
                        tracker.begin(commit_lsn);
                        snapshot_point = Some(consistent_point);
                    }
                    TxEvent::SnapshotRow { relation, row, marker } => {
                        records.clear();
                        if let Err(e) = stage.snapshot_row(relation, row, marker, snapshot_point.unwrap_or_default(), &mut records).await {
                            break Err(e.into());
                        }
                        if let Err(e) = send_all(&mut sink, &connector, &client_id, &mut present, &mut records, &mut tracker, commit_lsn, &mut index, 0, &mut skipped).await {
                            break Err(e);
                        }
                    }
                    TxEvent::SnapshotCompleted { consistent_point } => {
                        tracker.commit(consistent_point);
                        snapshot_pending = Some(consistent_point);
                    }
                    TxEvent::Truncate { relations, .. } => {
                        debug!(tables = relations.len(), "truncate skipped (Debezium's default skipped.operations=t)");
                    }
                    TxEvent::RelationChanged(relation) => {
                        info!(table = %relation.qualified(), version = relation.version, "table changed shape; the next event registers a new schema");
                    }
                    TxEvent::Restarted => {
                        tracker.drop_uncommitted();
                        metrics.reconnects.with_label_values(&[&connector.name, "postgres"]).inc();
                    }
                    TxEvent::Idle { wal_end } => {
                        metrics.server_wal_end.with_label_values(&[&connector.name]).set(wal_end.0 as i64);
                        if let Some(checkpoint) = tracker.idle(wal_end) {
                            let _ = flushed_tx.send(checkpoint.flush_lsn);
                    metrics.confirmed_lsn.with_label_values(&[&connector.name]).set(checkpoint.flush_lsn.0 as i64);
                        }
                    }
                    TxEvent::Commit { end_lsn, .. } => {
                        // Transaction metadata (END, or BEGIN and END) belongs to the
                        // transaction: same positions, same checkpoint.
                        records.clear();
                        if let Err(e) = stage.commit_transaction(end_lsn, &mut records).await {
                            break Err(e.into());
                        }
                        if let Err(e) = send_all(&mut sink, &connector, &client_id, &mut present, &mut records, &mut tracker, commit_lsn, &mut index, tx.xid, &mut skipped).await {
                            break Err(e);
                        }
                        tracker.commit(end_lsn);
                        metrics.transactions.with_label_values(&[&connector.name]).inc();
                        metrics.in_flight.with_label_values(&[&connector.name]).set(tracker.in_flight() as i64);
                        tx.last_commit_lsn = Some(end_lsn);
                    }
                }
                if let Some(checkpoint) = tracker.advance() {
                    let _ = flushed_tx.send(checkpoint.flush_lsn);
                    metrics.confirmed_lsn.with_label_values(&[&connector.name]).set(checkpoint.flush_lsn.0 as i64);
                    if snapshot_pending.is_some_and(|cp| checkpoint.flush_lsn >= cp) {
                        snapshot_pending = None;
                        tokio::spawn(snapshot::mark_completed(connector.clone()));
                    }
                }
                if let Some(fatal) = sink.fatal_error() {
                    break Err(crate::sink::kafka::SinkError::Delivery { commit_lsn, message: fatal }.into());
                }
            }
            else => break Ok(()),
        }
    };

    // Drain: everything handed to the producer is acknowledged (or the grace period
    // ends), the checkpoint moves as far as the acks allow, then the reader confirms it
    // and stops.
    let grace = connector.delivery.shutdown_grace;
    let flushed = tokio::task::block_in_place(|| sink.flush(grace));
    while let Ok(report) = reports.try_recv() {
        if report.error.is_none() {
            tracker.acked(report.commit_lsn);
        }
    }
    if let Some(checkpoint) = tracker.advance() {
        let _ = flushed_tx.send(checkpoint.flush_lsn);
        metrics
            .confirmed_lsn
            .with_label_values(&[&connector.name])
            .set(checkpoint.flush_lsn.0 as i64);
    }
    if let (Some(cp), Some(checkpoint)) = (snapshot_pending, tracker.checkpoint()) {
        if checkpoint.flush_lsn >= cp {
            snapshot::mark_completed(connector.clone()).await;
        }
    }
    if let Some(checkpoint) = tracker.checkpoint() {
        if sink
            .write_checkpoint(&connector.name, &connector.source.slot, &checkpoint)
            .await
            .is_ok()
        {
            let _ = tokio::task::block_in_place(|| sink.flush(Duration::from_secs(5)));
        }
        info!(position = %checkpoint.position, flush_lsn = %checkpoint.flush_lsn, in_flight = tracker.in_flight(), skipped_as_already_present = skipped, "stopping; checkpoint confirmed");
    }
    metrics.set_streaming(&connector.name, false);
    let _ = stop_source_tx.send(true);
    if let Some(task) = heartbeat_task {
        task.abort();
    }
    let source_result = source_task.await;
    if let Err(e) = flushed {
        warn!(error = %e, "not every record was acknowledged before the grace period ended; they are resent on restart");
    }
    result?;
    match source_result {
        Ok(r) => r,
        Err(e) => Err(PipelineError::Setup(format!(
            "the reader task ended abnormally: {e}"
        ))),
    }
}

/// Assigns positions and hands `records` to the producer, skipping (exactly-once)
/// those already in their partition.
#[allow(clippy::too_many_arguments)]
async fn send_all(
    sink: &mut KafkaSink,
    connector: &Connector,
    client_id: &str,
    present: &mut HashMap<Arc<str>, HashMap<i32, Position>>,
    records: &mut Vec<events::Encoded>,
    tracker: &mut AckTracker,
    commit_lsn: Lsn,
    index: &mut u32,
    txid: u32,
    skipped: &mut u64,
) -> Result<(), PipelineError> {
    for encoded in records.drain(..) {
        let position = Position {
            commit_lsn,
            index: *index,
        };
        *index += 1;
        sink.ensure_topic(&encoded.topic).await?;
        let partition = sink.partition_of(&encoded.topic, encoded.key.as_deref());
        if connector.delivery.mode == DeliveryMode::ExactlyOnce {
            if !present.contains_key(&encoded.topic) {
                let settings = connector.kafka.clone();
                let topic = encoded.topic.to_string();
                let id = client_id.to_owned();
                let last =
                    tokio::task::spawn_blocking(move || last_positions(&settings, &topic, &id))
                        .await
                        .map_err(|e| PipelineError::Setup(e.to_string()))??;
                if !last.is_empty() {
                    info!(topic = %encoded.topic, partitions = last.len(), "exactly-once: resent events at or below each partition's last position are skipped");
                }
                present.insert(encoded.topic.clone(), last);
            }
            if present[&encoded.topic]
                .get(&partition)
                .is_some_and(|last| position <= *last)
            {
                *skipped += 1;
                crate::observe::metrics()
                    .records_skipped
                    .with_label_values(&[&connector.name])
                    .inc();
                continue;
            }
        }
        let record = OutRecord {
            topic: encoded.topic,
            key: encoded.key,
            value: encoded.value,
            headers: encoded.headers,
            position,
            txid,
        };
        sink.send(&record, partition).await?;
        crate::observe::metrics()
            .records_sent
            .with_label_values(&[connector.name.as_str(), &*record.topic])
            .inc();
        tracker.sent(position.index);
        if connector.delivery.mode == DeliveryMode::ExactlyOnce {
            // What this process sent also counts as present: after a reconnect the
            // server resends from the confirmed position, which may lag behind it (a
            // sent record is acknowledged eventually or stops the connector).
            if let Some(partitions) = present.get_mut(&record.topic) {
                partitions.insert(partition, position);
            }
        }
    }
    Ok(())
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
