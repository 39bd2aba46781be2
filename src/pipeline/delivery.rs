//! The run loop's sending and acknowledging side: records get their positions and go
//! to the sink (skipping, in the exactly-once modes, what Kafka already holds); delivery
//! reports and Kafka transaction commits acknowledge them; the checkpoint moves and is
//! confirmed to PostgreSQL.

use tokio::time::Instant;
use tracing::warn;

use super::events::{Encoded, EventError};
use super::run_loop::{
    Batch, Pipeline, CHECKPOINT_RECORD_INTERVAL, MAX_TRANSACTION_AGE, MAX_TRANSACTION_RECORDS,
};
use super::PipelineError;
use crate::checkpoint::{Checkpoint, Ticket};
use crate::model::lsn::Lsn;
use crate::sink::{DeliveryReport, OutRecord, RecordSink, SinkError};

impl<S: RecordSink> Pipeline<S> {
    /// Assigns positions to the records in `self.records` and hands them to the sink,
    /// skipping (exactly-once) those already in their partition.
    pub(super) async fn send_records(&mut self, txid: u32) -> Result<(), PipelineError> {
        let mut records = std::mem::take(&mut self.records);
        for encoded in records.drain(..) {
            let position = crate::checkpoint::next_position(self.commit_lsn, &mut self.index)?;
            let partition = self.partition_for(&encoded).await?;
            if self
                .dedup
                .already_present(&self.sink, &encoded.topic, partition, position)
                .await?
            {
                self.dedup.skipped += 1;
                self.metrics.records_skipped.inc();
                continue;
            }
            if self.sink.is_transactional() && self.batch.is_none() {
                self.sink.begin_transaction()?;
                self.batch = Some(Batch {
                    records: 0,
                    started: Instant::now(),
                    last: position,
                });
            }
            if let Some(counter) = &encoded.counter {
                counter.inc();
            }
            self.metrics.bytes_produced.inc_by(encoded.size() as u64);
            let record = OutRecord {
                topic: encoded.topic,
                key: encoded.key,
                value: encoded.value,
                headers: encoded.headers,
                context: encoded.context,
                timestamp_ms: encoded.timestamp_ms,
                position,
                txid,
                ticket: self.tracker.sent(position.index),
            };
            self.sink.send(&record, partition).await?;
            crate::failpoint::hit("after_send");
            if let Some(batch) = &mut self.batch {
                batch.records += 1;
                batch.last = position;
            }
            self.dedup
                .count_sent(&self.connector.name, &record.topic, partition, position);
        }
        // The buffer goes back, empty, for the next change.
        self.records = records;
        Ok(())
    }

    /// The partition `encoded` goes to (creating its topic if missing): the one it
    /// names (the outbox router's `column:partition`), which must exist, else its key's.
    pub(super) async fn partition_for(&mut self, encoded: &Encoded) -> Result<i32, PipelineError> {
        let partitions = self.sink.ensure_topic(&encoded.topic).await?;
        match encoded.partition {
            None => Ok(self
                .sink
                .partition_of(&encoded.topic, encoded.key.as_deref())),
            Some(p) if (0..partitions).contains(&p) => Ok(p),
            Some(p) => Err(PipelineError::Events(EventError::Encode {
                table: encoded.topic.to_string(),
                message: format!(
                    "an outbox row's partition column names partition {p}, but topic {} has partitions 0 to {}; the row is in the WAL, so add partitions to the topic (kafka-topics.sh --alter --partitions) and start walcast again",
                    encoded.topic,
                    partitions - 1
                ),
            })),
        }
    }

    /// Delivery reports: each credits the tracker entry its ticket names (outside
    /// transactions); a rejected record stops the connector.
    pub(super) async fn on_reports(
        &mut self,
        reports: impl Iterator<Item = DeliveryReport>,
    ) -> Result<(), PipelineError> {
        let mut acknowledged = 0u64;
        for report in reports {
            if report.ticket == Ticket::NONE {
                // A checkpoint record: informative, never part of the guarantee.
                if let Some(error) = report.error {
                    warn!(error = %error, "could not record the checkpoint in {}", crate::sink::kafka::OFFSETS_TOPIC);
                }
                continue;
            }
            if let Some(error) = report.error {
                self.count_delivery_error(&error);
                let commit_lsn = self
                    .tracker
                    .commit_lsn_of(report.ticket)
                    .unwrap_or_default();
                return Err(SinkError::Delivery {
                    commit_lsn,
                    message: error,
                }
                .into());
            }
            // Transactional: acknowledged is not yet committed; the Kafka transaction's
            // commit acknowledges its records.
            if !self.sink.is_transactional() {
                self.tracker.acked(report.ticket);
                acknowledged += 1;
            }
        }
        if self.sink.is_transactional() {
            return Ok(());
        }
        if acknowledged > 0 {
            self.last_ack = Instant::now();
            self.metrics.batch_records.observe(acknowledged as f64);
        }
        if let Some(checkpoint) = self.tracker.advance() {
            crate::failpoint::hit("before_confirm");
            self.confirm(&checkpoint);
            if self.last_recorded.elapsed() >= CHECKPOINT_RECORD_INTERVAL {
                self.last_recorded = Instant::now();
                let record = self.checkpoint_record(&checkpoint);
                if let Err(e) = self.sink.write_checkpoint(&record).await {
                    warn!(error = %e, "could not record the checkpoint");
                }
            }
        }
        Ok(())
    }

    /// Transactional mode: commits the open Kafka transaction, with the connector's
    /// checkpoint record inside it, when it is due: at a source-transaction boundary
    /// (`boundary`) once nothing more is queued (`queue_empty`), it is old or large, or —
    /// for a snapshot, which is no source transaction — whenever it is large. Its commit
    /// acknowledges every record in it at once.
    pub(super) async fn commit_batch(
        &mut self,
        queue_empty: bool,
        snapshot_row: bool,
    ) -> Result<(), PipelineError> {
        let Some(batch) = self.batch else {
            return Ok(());
        };
        let large = batch.records >= MAX_TRANSACTION_RECORDS;
        let due = if snapshot_row {
            large
        } else {
            queue_empty || large || batch.started.elapsed() >= MAX_TRANSACTION_AGE
        };
        if !due {
            return Ok(());
        }
        let recorded = Checkpoint {
            position: batch.last,
            flush_lsn: self.tracker.checkpoint().map_or(Lsn::ZERO, |c| c.flush_lsn),
        };
        let record = self.checkpoint_record(&recorded);
        self.sink.write_checkpoint(&record).await?;
        crate::failpoint::hit("before_kafka_commit");
        self.batch = None;
        let committing = Instant::now();
        if let Err(e) = self.sink.commit_transaction() {
            crate::observe::metrics()
                .delivery_errors
                .with_label_values(&[&self.connector.name, "transaction"])
                .inc();
            return Err(e.into());
        }
        self.metrics.kafka_transactions.inc();
        self.metrics.batch_records.observe(batch.records as f64);
        tracing::debug!(
            records = batch.records,
            open_ms = batch.started.elapsed().as_millis() as u64,
            commit_ms = committing.elapsed().as_millis() as u64,
            "Kafka transaction committed"
        );
        self.tracker.acked_all_sent();
        if let Some(checkpoint) = self.tracker.advance() {
            self.confirm(&checkpoint);
        }
        Ok(())
    }

    /// The checkpoint moved: PostgreSQL may release WAL up to it, and a snapshot it
    /// covers is complete.
    pub(super) fn confirm(&mut self, checkpoint: &Checkpoint) {
        self.publish(checkpoint);
        self.note_acknowledged(checkpoint.flush_lsn);
        self.settle_snapshot(checkpoint);
    }

    /// Writes a heartbeat record (`[heartbeat] emit_records`): inside the open Kafka
    /// transaction if there is one, in one of its own in transactional mode otherwise. A
    /// failed write is a warning; a failed Kafka commit stops the connector, as any.
    pub(super) async fn emit_heartbeat(&mut self) -> Result<(), PipelineError> {
        let Some(record) = self.stage.heartbeat().await? else {
            return Ok(());
        };
        let (Some(key), Some(value)) = (&record.key, &record.value) else {
            return Ok(());
        };
        let own_transaction = self.sink.is_transactional() && self.batch.is_none();
        if own_transaction {
            self.sink.begin_transaction()?;
        }
        if let Err(e) = self.sink.write_heartbeat(&record.topic, key, value).await {
            warn!(error = %e, "could not write a heartbeat record");
        }
        if own_transaction {
            self.sink.commit_transaction()?;
        }
        Ok(())
    }

    /// `walcast_delivery_errors_total` by what the producer said.
    fn count_delivery_error(&self, error: &str) {
        let lower = error.to_ascii_lowercase();
        let kind = if lower.contains("timed out") || lower.contains("timeout") {
            "timeout"
        } else {
            "rejected"
        };
        crate::observe::metrics()
            .delivery_errors
            .with_label_values(&[&self.connector.name, kind])
            .inc();
    }

    /// Hands the checkpoint's flush LSN to the reader (which confirms it to PostgreSQL)
    /// and to `walcast_confirmed_lsn`.
    pub(super) fn publish(&self, checkpoint: &Checkpoint) {
        let _ = self.out.flushed.send(checkpoint.flush_lsn);
        self.metrics.set_confirmed(checkpoint.flush_lsn);
    }

    /// A snapshot waiting for its acknowledgements is complete once the checkpoint
    /// covers its consistent point.
    pub(super) fn settle_snapshot(&mut self, checkpoint: &Checkpoint) {
        if self
            .snapshot_pending
            .is_some_and(|cp| checkpoint.flush_lsn >= cp)
        {
            self.snapshot_pending = None;
            let _ = self.out.snapshot_done.send(());
        }
    }
}
