//! The run loop of one connector as a state machine: [`Pipeline`] owns everything the
//! loop changes (the acknowledgement tracker, the position counter, exactly-once
//! reconciliation, snapshot and incremental-snapshot state, the open Kafka
//! transaction) and has one method per input (`inputs.rs`: a source event; `delivery.rs`:
//! delivery reports, the batch timer). [`Pipeline::run_active`] waits for inputs until
//! shutdown or an error; [`Pipeline::drain`] then settles what was sent. The sink is a
//! [`RecordSink`], so the loop runs in unit tests on an in-memory sink.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::dedup::Dedup;
use super::events::{Encoded, EventStage, TxContext};
use super::incremental::Incremental;
use super::reporting::Watch;
use super::PipelineError;
use crate::checkpoint::{AckTracker, Position};
use crate::config::Connector;
use crate::model::change::TxEvent;
use crate::model::lsn::Lsn;
use crate::sink::checkpoint_record::CheckpointRecord;
use crate::sink::{DeliveryReport, RecordSink, SinkError};

/// Events handled back to back before the loop looks at acks, timers and shutdown.
const EVENT_DRAIN_BUDGET: usize = 256;
/// Delivery reports taken from their channel at once (librdkafka reports a whole
/// produce request's records together).
const REPORT_DRAIN_BUDGET: usize = 1024;
/// How many records one Kafka transaction holds at most before walcast commits it at
/// the next source-transaction boundary (a snapshot is committed every this many rows).
pub(super) const MAX_TRANSACTION_RECORDS: usize = 50_000;
/// How long one Kafka transaction stays open at most (if a boundary comes). Each commit
/// stops producing for its round trip (about 10–30 ms here), so a backlog is committed
/// in transactions of this age; an idle one commits within `TRANSACTION_CHECK_INTERVAL`.
pub(super) const MAX_TRANSACTION_AGE: Duration = Duration::from_millis(250);
/// How often an open Kafka transaction is looked at: committed when nothing more is
/// queued (at a source-transaction boundary), or once it is `MAX_TRANSACTION_AGE` old.
const TRANSACTION_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// Outside transactions, how often the checkpoint record is written at most.
pub(super) const CHECKPOINT_RECORD_INTERVAL: Duration = Duration::from_secs(1);
/// How often the loop updates its gauges (lag, in flight, producer queue).
pub(super) const OBSERVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long records may wait without any acknowledgement before the connector shows
/// as retrying Kafka (not ready).
pub(super) const KAFKA_RETRYING_AFTER: Duration = Duration::from_secs(10);
/// How often snapshot progress and a falling lag are logged at most.
pub(super) const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// Lag above which the loop logs that it is catching up.
pub(super) const CATCHING_UP_LAG: Duration = Duration::from_secs(10);
/// How long records may wait in flight without any acknowledgement before the loop
/// warns (and again after as long).
pub(super) const ACK_STALL_WARNING: Duration = Duration::from_secs(30);

/// What the loop waits on, apart from its own state.
pub(super) struct Inputs {
    /// The source's transactions (snapshot rows first, then the stream).
    pub events: mpsc::Receiver<TxEvent>,
    /// The sink's delivery reports.
    pub reports: mpsc::UnboundedReceiver<DeliveryReport>,
    /// Turns true on SIGTERM / SIGINT.
    pub shutdown: watch::Receiver<bool>,
    /// The slot health watcher's fatal finding (the slot was lost).
    pub slot_lost: mpsc::Receiver<PipelineError>,
}

/// Where the loop's decisions go besides the sink.
pub(super) struct Outputs {
    /// The confirmed flush LSN, which the reader reports to PostgreSQL.
    pub flushed: watch::Sender<Lsn>,
    /// One message per initial snapshot whose every row Kafka acknowledged (the
    /// connector's state then records it complete).
    pub snapshot_done: mpsc::UnboundedSender<()>,
}

/// The open Kafka transaction (transactional mode).
#[derive(Debug, Clone, Copy)]
pub(super) struct Batch {
    pub records: usize,
    pub started: Instant,
    /// The position of its last record: the checkpoint record committed with it.
    pub last: Position,
}

/// One connector's loop state.
pub(super) struct Pipeline<S: RecordSink> {
    pub(super) connector: Arc<Connector>,
    pub(super) sink: S,
    pub(super) stage: EventStage,
    pub(super) dedup: Dedup,
    pub(super) incremental: Incremental,
    pub(super) tracker: AckTracker,
    pub(super) out: Outputs,
    /// The source transaction being handled, and the position counter within it.
    pub(super) tx: TxContext,
    pub(super) commit_lsn: Lsn,
    pub(super) index: u64,
    /// Scratch space for one change's records.
    pub(super) records: Vec<Encoded>,
    /// The consistent point of the snapshot being sent, and of one waiting for its acks.
    pub(super) snapshot_point: Option<Lsn>,
    pub(super) snapshot_pending: Option<Lsn>,
    pub(super) batch: Option<Batch>,
    /// When the checkpoint record was last written (outside transactions).
    pub(super) last_recorded: Instant,
    /// When an acknowledgement last came, or nothing was in flight; and when the loop
    /// last warned about a stall.
    pub(super) last_ack: Instant,
    pub(super) stall_warned: Option<Instant>,
    /// The connector's metric handles and what the loop measures for them.
    pub(super) metrics: Arc<crate::observe::ConnectorMetrics>,
    pub(super) watch: Watch,
}

impl<S: RecordSink> Pipeline<S> {
    pub(super) fn new(
        connector: Arc<Connector>,
        sink: S,
        stage: EventStage,
        dedup: Dedup,
        incremental: Incremental,
        out: Outputs,
    ) -> Self {
        let metrics = crate::observe::metrics().connector(&connector.name);
        Self {
            connector,
            sink,
            stage,
            dedup,
            incremental,
            tracker: AckTracker::new(),
            out,
            tx: TxContext {
                xid: 0,
                commit_time_us: 0,
                last_commit_lsn: None,
            },
            commit_lsn: Lsn::ZERO,
            index: 0,
            records: Vec::new(),
            snapshot_point: None,
            snapshot_pending: None,
            batch: None,
            last_recorded: Instant::now(),
            last_ack: Instant::now(),
            stall_warned: None,
            metrics,
            watch: Watch::new(),
        }
    }

    /// Handles inputs until shutdown, the end of the source, or an error.
    pub(super) async fn run_active(&mut self, inputs: &mut Inputs) -> Result<(), PipelineError> {
        let mut inbox: Vec<TxEvent> = Vec::with_capacity(EVENT_DRAIN_BUDGET);
        let mut acks = Vec::with_capacity(REPORT_DRAIN_BUDGET);
        let mut reports_closed = false;
        let mut batch_timer = tokio::time::interval(TRANSACTION_CHECK_INTERVAL);
        batch_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let emit_heartbeats = self.connector.heartbeat.records_topic.is_some();
        let mut heartbeats = tokio::time::interval_at(
            Instant::now() + self.connector.heartbeat.interval,
            self.connector.heartbeat.interval,
        );
        heartbeats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watchdog = tokio::time::interval(OBSERVE_INTERVAL);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = inputs.shutdown.changed() => return Ok(()),
                Some(e) = inputs.slot_lost.recv() => return Err(e),
                // Transactional mode: a Kafka transaction left open at a source-transaction
                // boundary (more was queued when it ended) is committed once nothing more
                // is queued, or once it is old enough.
                _ = batch_timer.tick(), if self.batch.is_some() && !self.tracker.mid_transaction() => {
                    self.commit_batch(inputs.events.is_empty(), false).await?;
                }
                received = inputs.reports.recv_many(&mut acks, REPORT_DRAIN_BUDGET), if !reports_closed => {
                    if received == 0 {
                        reports_closed = true;
                        continue;
                    }
                    self.on_reports(acks.drain(..)).await?;
                }
                received = inputs.events.recv_many(&mut inbox, EVENT_DRAIN_BUDGET) => {
                    if received == 0 {
                        // The source ended (initial_only done, or an error the source task reports).
                        return Ok(());
                    }
                    // Events already queued are handled back to back, without a trip
                    // through select! each; the budget keeps acks and shutdown checked.
                    let count = inbox.len();
                    self.watch.last_event = Instant::now();
                    for (i, event) in inbox.drain(..).enumerate() {
                        let more_queued = i + 1 < count || !inputs.events.is_empty();
                        self.on_event(event, more_queued).await?;
                    }
                }
                _ = heartbeats.tick(), if emit_heartbeats && !self.tracker.mid_transaction() => {
                    self.emit_heartbeat().await?;
                }
                _ = watchdog.tick() => {
                    self.check_stall();
                    self.observe();
                }
            }
        }
    }

    /// After the loop: everything handed to the sink is acknowledged (or the grace period
    /// ends), the checkpoint moves as far as the acks allow, and is recorded. Returns
    /// whether the sink settled everything.
    pub(super) async fn drain(
        &mut self,
        result: &Result<(), PipelineError>,
        reports: &mut mpsc::UnboundedReceiver<DeliveryReport>,
    ) -> Result<(), SinkError> {
        let grace = self.connector.delivery.shutdown_grace;
        let flushed = if self.sink.is_transactional() {
            // A Kafka transaction that ends inside a source transaction, or after an
            // error, is aborted: its records come again after the restart.
            if result.is_ok() && !self.tracker.mid_transaction() {
                self.commit_batch(true, false)
                    .await
                    .map_err(|e| SinkError::Transaction(e.to_string()))
            } else {
                self.batch = None;
                self.sink.abort_transaction()
            }
        } else {
            let flushed = tokio::task::block_in_place(|| self.sink.flush(grace));
            while let Ok(report) = reports.try_recv() {
                if report.error.is_none() {
                    self.tracker.acked(report.ticket);
                }
            }
            flushed
        };
        if let Some(checkpoint) = self.tracker.advance() {
            self.confirm(&checkpoint);
        }
        if let Some(checkpoint) = self.tracker.checkpoint() {
            self.settle_snapshot(&checkpoint);
            // Transactional mode recorded it inside its last Kafka transaction.
            if !self.sink.is_transactional() {
                let record = self.checkpoint_record(&checkpoint);
                if self.sink.write_checkpoint(&record).await.is_ok() {
                    let _ = tokio::task::block_in_place(|| self.sink.flush(Duration::from_secs(5)));
                }
            }
            info!(position = %checkpoint.position, flush_lsn = %checkpoint.flush_lsn, in_flight = self.tracker.in_flight(), skipped_as_already_present = self.dedup.skipped, "stopping; checkpoint confirmed");
        }
        flushed
    }

    /// The record of `checkpoint` for the offsets topic, with the incremental snapshot's
    /// progress that Kafka holds at it.
    pub(super) fn checkpoint_record(
        &mut self,
        checkpoint: &crate::checkpoint::Checkpoint,
    ) -> CheckpointRecord {
        CheckpointRecord::new(
            &self.connector.name,
            &self.connector.source.slot,
            &self.dedup.origin.identity,
            checkpoint,
            self.incremental.recorded_state(checkpoint.position),
        )
    }

    /// Records in flight and no acknowledgement for [`ACK_STALL_WARNING`]: says so (the
    /// broker is unreachable or overloaded; nothing past the checkpoint is confirmed
    /// meanwhile). Returns whether it warned.
    pub(super) fn check_stall(&mut self) -> bool {
        let in_flight = self.tracker.in_flight();
        if in_flight == 0 || self.sink.is_transactional() {
            self.last_ack = Instant::now();
            return false;
        }
        let waited = self.last_ack.elapsed();
        let due = self
            .stall_warned
            .is_none_or(|at| at.elapsed() >= ACK_STALL_WARNING);
        if waited >= ACK_STALL_WARNING && due {
            self.stall_warned = Some(Instant::now());
            warn!(
                in_flight,
                waited_s = waited.as_secs(),
                checkpoint = ?self.tracker.checkpoint().map(|c| c.position.to_string()),
                "Kafka has acknowledged none of the records in flight for {} s; the checkpoint waits (check the brokers' health and walcast's connection to them)",
                waited.as_secs()
            );
            return true;
        }
        false
    }
}
