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

mod dedup;
pub mod events;
pub mod incremental;
pub mod slot_health;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::checkpoint::{AckTracker, Checkpoint, Position, Ticket};
use crate::config::{Connector, SinkKind};
use crate::registry::client::{RegistryClient, RegistryClientConfig};
use crate::sink::kafka::{KafkaSink, OutRecord};
use crate::source::change::TxEvent;
use crate::source::lsn::Lsn;
use crate::source::reader::{stream_with_reconnect, ReaderConfig};
use crate::source::snapshot::RowMarker;
use crate::source::spool::{SpoolConfig, SpoolMetrics};
use dedup::Dedup;
use events::{EventStage, TxContext};
use incremental::Incremental;

/// Events handled back to back before the loop looks at acks, timers and shutdown.
const EVENT_DRAIN_BUDGET: usize = 256;
/// Delivery reports taken from their channel at once (librdkafka reports a whole
/// produce request's records together).
const REPORT_DRAIN_BUDGET: usize = 1024;

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
    #[error("{0}")]
    Position(#[from] crate::checkpoint::PositionOverflow),
}

/// Runs `connector` until `shutdown` turns true or a fatal error.
pub async fn run(
    connector: Connector,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let connector = Arc::new(connector);
    // Kafka first: a wrong address or password should stop the connector before it
    // creates a slot or starts a snapshot.
    let client_id = crate::sink::reconcile::Origin::client_id(&connector.name);
    let (mut sink, mut reports) = if connector.sink == SinkKind::Discard {
        warn!("[sink] kind = \"discard\": events are encoded and dropped, nothing reaches Kafka (a benchmarking aid)");
        KafkaSink::discarding(&connector.kafka, &client_id)?
    } else {
        KafkaSink::new(&connector.kafka, connector.delivery.mode, &client_id)?
    };
    sink.check_connection()?;
    sink.init_transactions()?;
    let mut dedup = Dedup::load(&connector).await?;
    sink.stamp(&dedup.origin.identity);
    let mut incremental = Incremental::new(connector.clone());
    incremental.resume(&dedup.recorded_incremental);
    let prepared = snapshot::prepare(&connector, dedup.recorded_flush_lsn).await?;
    let resume_point = match &prepared {
        snapshot::Prepared::Resume { consistent_point } => Some(*consistent_point),
        _ => None,
    };
    let plan = match prepared {
        snapshot::Prepared::Snapshot(plan) => Some(plan),
        _ => None,
    };
    if let Some(consistent_point) = resume_point {
        incremental
            .resume_initial(consistent_point, &dedup.origin)
            .await?;
    }
    // After the slot exists: the watermarks must come through its stream.
    if incremental.active() {
        incremental.next_window().await?;
    }
    if incremental.take_initial_finished() {
        // Nothing was left to read: Kafka held the whole snapshot.
        snapshot::mark_completed(connector.clone()).await;
    }
    let snapshot_only = connector.source.snapshot_mode == crate::config::SnapshotMode::InitialOnly;
    // The JSON formats use no schema registry.
    let registry = if connector.events.format.uses_registry() {
        Some(
            RegistryClient::new(RegistryClientConfig {
                connector: Some(connector.name.clone()),
                ..RegistryClientConfig::from_connector(&connector.registry)
            })
            .map_err(|e| PipelineError::Setup(e.to_string()))?,
        )
    } else {
        None
    };
    let mut stage = EventStage::new(connector.clone(), registry);

    let (events_tx, mut events_rx) = mpsc::channel::<TxEvent>(4096);
    let (flushed_tx, flushed_rx) = watch::channel(Lsn::ZERO);
    let (stop_source_tx, stop_source_rx) = watch::channel(false);
    let metrics = crate::observe::metrics();
    prepare_spool_dir(&connector)?;
    let reader_config = ReaderConfig {
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
    };
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
    // The slot exists now (prepare made it): watch its health until the pipeline ends.
    let (slot_lost_tx, mut slot_lost) = mpsc::channel::<PipelineError>(1);
    let health_task = tokio::spawn(slot_health::watch(connector.clone(), slot_lost_tx));
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
    let mut index: u64 = 0;
    let mut records = Vec::new();
    let mut inbox: Vec<TxEvent> = Vec::with_capacity(EVENT_DRAIN_BUDGET);
    let mut acks = Vec::with_capacity(REPORT_DRAIN_BUDGET);
    let mut reports_closed = false;
    let mut failed: Option<PipelineError> = None;
    // The consistent point of a snapshot being sent, and of one waiting for its acks.
    let mut snapshot_point: Option<Lsn> = None;
    let mut snapshot_pending: Option<Lsn> = None;
    let mut last_recorded = std::time::Instant::now();
    let mut batch_timer = tokio::time::interval(MAX_TRANSACTION_AGE);
    batch_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result: Result<(), PipelineError> = 'run: loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break 'run Ok(()),
            Some(e) = slot_lost.recv() => break 'run Err(e),
            // Transactional mode: a Kafka transaction left open at a source-transaction
            // boundary (more was queued when it ended) is committed once it is old enough.
            _ = batch_timer.tick(), if sink.in_transaction() && !tracker.mid_transaction() => {
                if let Err(e) = commit_batch(&mut sink, &connector, &mut incremental, &mut tracker, &flushed_tx, &mut snapshot_pending, false, false).await {
                    break 'run Err(e);
                }
            }
            received = reports.recv_many(&mut acks, REPORT_DRAIN_BUDGET), if !reports_closed => {
                if received == 0 {
                    reports_closed = true;
                    continue;
                }
                // Every report already queued at once, and the checkpoint moved once.
                for report in acks.drain(..) {
                    if report.ticket == Ticket::NONE {
                        // A checkpoint record: informative, never part of the guarantee.
                        if let Some(error) = report.error {
                            warn!(error = %error, "could not record the checkpoint in {}", crate::sink::kafka::OFFSETS_TOPIC);
                        }
                        continue;
                    }
                    if let Some(error) = report.error {
                        let commit_lsn = tracker.commit_lsn_of(report.ticket).unwrap_or_default();
                        break 'run Err(crate::sink::kafka::SinkError::Delivery { commit_lsn, message: error }.into());
                    }
                    // Transactional: acknowledged is not yet committed; the Kafka
                    // transaction's commit acknowledges its records.
                    if !sink.is_transactional() {
                        tracker.acked(report.ticket);
                    }
                }
                if sink.is_transactional() {
                    continue;
                }
                if let Some(checkpoint) = tracker.advance() {
                    crate::failpoint::hit("before_confirm");
                    confirm(&connector, &flushed_tx, &mut snapshot_pending, &checkpoint);
                    if last_recorded.elapsed() >= Duration::from_secs(1) {
                        last_recorded = std::time::Instant::now();
                        if let Err(e) = sink.write_checkpoint(&connector.name, &connector.source.slot, &checkpoint, &incremental.recorded_state(checkpoint.position)).await {
                            warn!(error = %e, "could not record the checkpoint");
                        }
                    }
                }
            }
            received = events_rx.recv_many(&mut inbox, EVENT_DRAIN_BUDGET) => {
                if received == 0 {
                    // The source ended (initial_only done, or an error the source task reports).
                    break 'run Ok(());
                }
                // Events already queued are handled back to back, without a trip
                // through select! each; the budget keeps acks and shutdown checked.
                // Reversed, so that popping takes them in order.
                inbox.reverse();
                while let Some(event) = inbox.pop() {
                    match event {
                        TxEvent::Begin { xid, commit_lsn: lsn, commit_time_us } => {
                            tx.xid = xid;
                            tx.commit_time_us = commit_time_us;
                            commit_lsn = lsn;
                            index = 0;
                            tracker.begin(lsn);
                            stage.begin_transaction(&tx, lsn);
                        }
                        TxEvent::Change(change) if Incremental::is_signal_table(&change.relation) => {
                            // Signals steer the connector; they are never events.
                            let chunk = match incremental.on_signal(&change).await {
                                Ok(chunk) => chunk,
                                Err(e) => break 'run Err(e),
                            };
                            if let Some(mut chunk) = chunk {
                                let table = chunk.relation.qualified();
                                let rows = std::mem::take(&mut chunk.rows);
                                let count = rows.len();
                                let mut already = 0usize;
                                for row in rows {
                                    records.clear();
                                    if let Err(e) = stage.snapshot_row(chunk.relation.clone(), row.values, RowMarker::Incremental, change.lsn, &mut records).await {
                                        failed = Some(e.into());
                                        break;
                                    }
                                    if chunk.initial {
                                        attach_snapshot_key(&mut records, serde_json::to_vec(&row.key).unwrap_or_default());
                                    }
                                    if let Some(flags) = &row.present {
                                        // Resuming an initial snapshot: drop what Kafka holds.
                                        let mut kept = Vec::with_capacity(records.len());
                                        for record in records.drain(..) {
                                            if let Err(e) = sink.ensure_topic(&record.topic).await {
                                                failed = Some(e.into());
                                                break;
                                            }
                                            let partition = sink.partition_of(&record.topic, record.key.as_deref());
                                            if chunk.present(flags, partition) {
                                                already += 1;
                                            } else {
                                                kept.push(record);
                                            }
                                        }
                                        records = kept;
                                        if failed.is_some() {
                                            break;
                                        }
                                    }
                                    if let Err(e) = send_all(&mut sink, &connector, &mut dedup, &mut records, &mut tracker, commit_lsn, &mut index, tx.xid).await {
                                        failed = Some(e);
                                        break;
                                    }
                                }
                                if let Some(e) = failed.take() {
                                    break 'run Err(e);
                                }
                                debug!(table = %table, rows = count, skipped_as_in_kafka = already, "incremental snapshot chunk emitted");
                                incremental.emitted(Position { commit_lsn, index: index.saturating_sub(1) });
                            }
                            if let Err(e) = incremental.next_window().await {
                                break 'run Err(e);
                            }
                            if incremental.take_initial_finished() {
                                // Complete once Kafka holds everything sent so far.
                                snapshot_pending = Some(Lsn(commit_lsn.0.saturating_add(1)));
                            }
                        }
                        TxEvent::Change(change) => {
                            incremental.on_change(&change);
                            records.clear();
                            if let Err(e) = stage.change(change, &tx, &mut records).await {
                                break 'run Err(e.into());
                            }
                            if let Err(e) = send_all(&mut sink, &connector, &mut dedup, &mut records, &mut tracker, commit_lsn, &mut index, tx.xid).await {
                                break 'run Err(e);
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
                                break 'run Err(e.into());
                            }
                            if let Err(e) = send_all(&mut sink, &connector, &mut dedup, &mut records, &mut tracker, commit_lsn, &mut index, tx.xid).await {
                                break 'run Err(e);
                            }
                            if !transactional {
                                tracker.commit(lsn);
                                if let Err(e) = commit_batch(&mut sink, &connector, &mut incremental, &mut tracker, &flushed_tx, &mut snapshot_pending, inbox.is_empty() && events_rx.is_empty(), false).await {
                                    break 'run Err(e);
                                }
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
                        TxEvent::SnapshotRows { relation, rows } => {
                            let mut failure = None;
                            for read in rows {
                                records.clear();
                                if let Err(e) = stage.snapshot_row(relation.clone(), read.row, read.marker, snapshot_point.unwrap_or_default(), &mut records).await {
                                    failure = Some(e.into());
                                    break;
                                }
                                if let Some(key) = read.key {
                                    attach_snapshot_key(&mut records, key);
                                }
                                if let Err(e) = send_all(&mut sink, &connector, &mut dedup, &mut records, &mut tracker, commit_lsn, &mut index, 0).await {
                                    failure = Some(e);
                                    break;
                                }
                                // A snapshot is no source transaction: commit it in batches.
                                if let Err(e) = commit_batch(&mut sink, &connector, &mut incremental, &mut tracker, &flushed_tx, &mut snapshot_pending, false, true).await {
                                    failure = Some(e);
                                    break;
                                }
                            }
                            if let Some(e) = failure {
                                break 'run Err(e);
                            }
                        }
                        TxEvent::SnapshotCompleted { consistent_point } => {
                            tracker.commit(consistent_point);
                            snapshot_pending = Some(consistent_point);
                            if let Err(e) = commit_batch(&mut sink, &connector, &mut incremental, &mut tracker, &flushed_tx, &mut snapshot_pending, inbox.is_empty() && events_rx.is_empty(), false).await {
                                break 'run Err(e);
                            }
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
                                break 'run Err(e.into());
                            }
                            if let Err(e) = send_all(&mut sink, &connector, &mut dedup, &mut records, &mut tracker, commit_lsn, &mut index, tx.xid).await {
                                break 'run Err(e);
                            }
                            tracker.commit(end_lsn);
                            if let Err(e) = commit_batch(&mut sink, &connector, &mut incremental, &mut tracker, &flushed_tx, &mut snapshot_pending, inbox.is_empty() && events_rx.is_empty(), false).await {
                                break 'run Err(e);
                            }
                            metrics.transactions.with_label_values(&[&connector.name]).inc();
                            metrics.in_flight.with_label_values(&[&connector.name]).set(tracker.in_flight() as i64);
                            tx.last_commit_lsn = Some(end_lsn);
                        }
                    }
                    if let Some(checkpoint) = tracker.advance() {
                        crate::failpoint::hit("before_confirm");
                        confirm(&connector, &flushed_tx, &mut snapshot_pending, &checkpoint);
                    }
                    if let Some(fatal) = sink.fatal_error() {
                        break 'run Err(crate::sink::kafka::SinkError::Delivery { commit_lsn, message: fatal }.into());
                    }
                }
            }
            else => break 'run Ok(()),
        }
    };

    // Drain: everything handed to the producer is acknowledged (or the grace period
    // ends), the checkpoint moves as far as the acks allow, then the reader confirms it
    // and stops.
    let grace = connector.delivery.shutdown_grace;
    let flushed = if sink.is_transactional() {
        // A Kafka transaction that ends inside a source transaction, or after an error,
        // is aborted: its records come again after the restart.
        if result.is_ok() && !tracker.mid_transaction() {
            commit_batch(
                &mut sink,
                &connector,
                &mut incremental,
                &mut tracker,
                &flushed_tx,
                &mut snapshot_pending,
                true,
                false,
            )
            .await
            .map_err(|e| crate::sink::kafka::SinkError::Transaction(e.to_string()))
        } else {
            sink.abort_transaction()
        }
    } else {
        let flushed = tokio::task::block_in_place(|| sink.flush(grace));
        while let Ok(report) = reports.try_recv() {
            if report.error.is_none() {
                tracker.acked(report.ticket);
            }
        }
        flushed
    };
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
        // Transactional mode recorded it inside its last Kafka transaction.
        if !sink.is_transactional()
            && sink
                .write_checkpoint(
                    &connector.name,
                    &connector.source.slot,
                    &checkpoint,
                    &incremental.recorded_state(checkpoint.position),
                )
                .await
                .is_ok()
        {
            let _ = tokio::task::block_in_place(|| sink.flush(Duration::from_secs(5)));
        }
        info!(position = %checkpoint.position, flush_lsn = %checkpoint.flush_lsn, in_flight = tracker.in_flight(), skipped_as_already_present = dedup.skipped, "stopping; checkpoint confirmed");
    }
    metrics.set_streaming(&connector.name, false);
    let _ = stop_source_tx.send(true);
    health_task.abort();
    if let Some(task) = heartbeat_task {
        task.abort();
    }
    // Wait for the reader while draining what it still hands over: a reader blocked on
    // a full channel would never see the stop signal. The drained events are past the
    // checkpoint, so PostgreSQL sends them again after a restart.
    let mut source_task = source_task;
    let source_result = loop {
        tokio::select! {
            result = &mut source_task => break result,
            _ = events_rx.recv() => {}
        }
    };
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

/// How many records one Kafka transaction holds at most before walcast commits it at
/// the next source-transaction boundary (a snapshot is committed every this many rows).
const MAX_TRANSACTION_RECORDS: usize = 50_000;
/// How long one Kafka transaction stays open at most (if a boundary comes).
const MAX_TRANSACTION_AGE: Duration = Duration::from_millis(100);

/// Assigns positions and hands `records` to the producer, skipping (exactly-once)
/// those already in their partition.
#[allow(clippy::too_many_arguments)]
async fn send_all(
    sink: &mut KafkaSink,
    connector: &Connector,
    dedup: &mut Dedup,
    records: &mut Vec<events::Encoded>,
    tracker: &mut AckTracker,
    commit_lsn: Lsn,
    index: &mut u64,
    txid: u32,
) -> Result<(), PipelineError> {
    for encoded in records.drain(..) {
        let position = crate::checkpoint::next_position(commit_lsn, index)?;
        sink.ensure_topic(&encoded.topic).await?;
        let partition = sink.partition_of(&encoded.topic, encoded.key.as_deref());
        if dedup
            .already_present(connector, &encoded.topic, partition, position)
            .await?
        {
            dedup.skipped += 1;
            crate::observe::metrics()
                .records_skipped
                .with_label_values(&[&connector.name])
                .inc();
            continue;
        }
        sink.ensure_transaction()?;
        let record = OutRecord {
            topic: encoded.topic,
            key: encoded.key,
            value: encoded.value,
            headers: encoded.headers,
            position,
            txid,
            ticket: tracker.sent(position.index),
        };
        sink.send(&record, partition).await?;
        crate::failpoint::hit("after_send");
        dedup
            .sent_counters
            .entry(record.topic.clone())
            .or_insert_with(|| {
                crate::observe::metrics()
                    .records_sent
                    .with_label_values(&[connector.name.as_str(), &*record.topic])
            })
            .inc();
        dedup.sent(&record.topic, partition, position);
    }
    Ok(())
}

/// Gives a snapshot row's records the row's key (a JSON array of key texts) in the
/// `walcast.snapshot.key` header: where an interrupted initial snapshot resumes (see
/// `snapshot::prepare`).
fn attach_snapshot_key(records: &mut [events::Encoded], key: Vec<u8>) {
    if let Some((last, others)) = records.split_last_mut() {
        for record in others {
            record
                .headers
                .push((crate::sink::kafka::HEADER_SNAPSHOT_KEY, key.clone()));
        }
        last.headers
            .push((crate::sink::kafka::HEADER_SNAPSHOT_KEY, key));
    }
}

/// Transactional mode: commits the open Kafka transaction, with the connector's
/// checkpoint record inside it, when it is due: at a source-transaction boundary
/// (`boundary`) once nothing more is queued (`queue_empty`), it is old or large, or —
/// for a snapshot, which is no source transaction — whenever it is large. Its commit
/// acknowledges every record in it at once.
#[allow(clippy::too_many_arguments)]
async fn commit_batch(
    sink: &mut KafkaSink,
    connector: &Arc<Connector>,
    incremental: &mut Incremental,
    tracker: &mut AckTracker,
    flushed_tx: &watch::Sender<Lsn>,
    snapshot_pending: &mut Option<Lsn>,
    queue_empty: bool,
    snapshot_row: bool,
) -> Result<(), PipelineError> {
    if !sink.in_transaction() {
        return Ok(());
    }
    let (records, age) = sink.transaction_size();
    let due = if snapshot_row {
        records >= MAX_TRANSACTION_RECORDS
    } else {
        queue_empty || records >= MAX_TRANSACTION_RECORDS || age >= MAX_TRANSACTION_AGE
    };
    if !due {
        return Ok(());
    }
    let recorded = Checkpoint {
        position: sink.transaction_last_position(),
        flush_lsn: tracker.checkpoint().map_or(Lsn::ZERO, |c| c.flush_lsn),
    };
    let state = incremental.recorded_state(recorded.position);
    sink.write_checkpoint(&connector.name, &connector.source.slot, &recorded, &state)
        .await?;
    crate::failpoint::hit("before_kafka_commit");
    sink.commit_transaction()?;
    crate::observe::metrics()
        .kafka_transactions
        .with_label_values(&[&connector.name])
        .inc();
    tracker.acked_all_sent();
    if let Some(checkpoint) = tracker.advance() {
        confirm(connector, flushed_tx, snapshot_pending, &checkpoint);
    }
    Ok(())
}

/// The checkpoint moved: PostgreSQL may release WAL up to it, and a snapshot it covers
/// is complete.
fn confirm(
    connector: &Arc<Connector>,
    flushed_tx: &watch::Sender<Lsn>,
    snapshot_pending: &mut Option<Lsn>,
    checkpoint: &Checkpoint,
) {
    let _ = flushed_tx.send(checkpoint.flush_lsn);
    crate::observe::metrics()
        .confirmed_lsn
        .with_label_values(&[&connector.name])
        .set(checkpoint.flush_lsn.0 as i64);
    if snapshot_pending.is_some_and(|cp| checkpoint.flush_lsn >= cp) {
        *snapshot_pending = None;
        tokio::spawn(snapshot::mark_completed(connector.clone()));
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
