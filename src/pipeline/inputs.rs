//! The run loop's handlers, one per kind of source event: where a change enters the
//! loop, becomes records (through the event stage) and is handed to the sink.

use tracing::{debug, info};

use super::events;
use super::incremental::Incremental;
use super::run_loop::Pipeline;
use super::PipelineError;
use crate::checkpoint::Position;
use crate::model::change::RowMarker;
use crate::model::change::{RowChange, TxEvent};
use crate::model::lsn::Lsn;
use crate::model::relation::RelationInfo;
use crate::sink::{RecordSink, SinkError};

impl<S: RecordSink> Pipeline<S> {
    /// Handles one source event; `more_queued`: more events wait behind it (a Kafka
    /// transaction is then left open at a boundary, to batch them).
    pub(super) async fn on_event(
        &mut self,
        event: TxEvent,
        more_queued: bool,
    ) -> Result<(), PipelineError> {
        match event {
            TxEvent::Begin {
                xid,
                commit_lsn,
                commit_time_us,
            } => self.on_begin(xid, commit_lsn, commit_time_us),
            TxEvent::Change(change) if Incremental::is_signal_table(&change.relation) => {
                self.on_signal(&change).await?
            }
            TxEvent::Change(change) => self.on_change(change).await?,
            TxEvent::Message {
                transactional,
                lsn,
                prefix,
                content,
            } => {
                self.on_message(transactional, lsn, prefix, content, more_queued)
                    .await?
            }
            TxEvent::Commit { end_lsn, .. } => self.on_commit(end_lsn, more_queued).await?,
            TxEvent::SnapshotStarted { consistent_point } => {
                self.on_snapshot_started(consistent_point)
            }
            TxEvent::SnapshotRows { relation, rows } => {
                self.on_snapshot_rows(relation, rows).await?
            }
            TxEvent::SnapshotCompleted { consistent_point } => {
                self.on_snapshot_completed(consistent_point, more_queued)
                    .await?
            }
            TxEvent::Truncate { relations, lsn, .. } => self.on_truncate(relations, lsn).await?,
            TxEvent::RelationChanged(relation) => {
                info!(table = %relation.qualified(), version = relation.version, "table changed shape; the next event registers a new schema");
            }
            TxEvent::Restarted => self.on_restarted(),
            TxEvent::Idle { wal_end } => self.on_idle(wal_end),
        }
        if let Some(checkpoint) = self.tracker.advance() {
            crate::failpoint::hit("before_confirm");
            self.confirm(&checkpoint);
        }
        if let Some(fatal) = self.sink.fatal_error() {
            return Err(SinkError::Delivery {
                commit_lsn: self.commit_lsn,
                message: fatal,
            }
            .into());
        }
        Ok(())
    }

    fn on_begin(&mut self, xid: u32, commit_lsn: Lsn, commit_time_us: i64) {
        self.tx.xid = xid;
        self.tx.commit_time_us = commit_time_us;
        self.commit_lsn = commit_lsn;
        self.index = 0;
        self.tracker.begin(commit_lsn);
        self.stage.begin_transaction(&self.tx, commit_lsn);
    }

    async fn on_change(&mut self, change: RowChange) -> Result<(), PipelineError> {
        self.incremental.on_change(&change);
        self.watch.tx_changes += 1;
        self.records.clear();
        self.stage
            .change(change, &self.tx, &mut self.records)
            .await?;
        self.send_records(self.tx.xid).await
    }

    /// A TRUNCATE: one `op = t` event per table, unless `skipped_operations` skips
    /// truncates (Debezium's default).
    async fn on_truncate(
        &mut self,
        relations: Vec<std::sync::Arc<RelationInfo>>,
        lsn: Lsn,
    ) -> Result<(), PipelineError> {
        if self.connector.events.skipped.truncates {
            debug!(
                tables = relations.len(),
                "truncate skipped (skipped_operations includes t, Debezium's default)"
            );
            return Ok(());
        }
        for relation in &relations {
            self.records.clear();
            self.stage
                .truncate(relation, &self.tx, lsn, &mut self.records)
                .await?;
            for record in &mut self.records {
                if record.value.is_some() && record.counter.is_none() {
                    record.counter = Some(self.metrics.events(&relation.qualified(), 't'));
                }
            }
            self.send_records(self.tx.xid).await?;
        }
        Ok(())
    }

    /// A row of the signal table: it steers the incremental snapshot and is never an
    /// event. A chunk it completes is sent in the signalling transaction.
    async fn on_signal(&mut self, change: &RowChange) -> Result<(), PipelineError> {
        if let Some(mut chunk) = self.incremental.on_signal(change).await? {
            let table = chunk.relation.qualified();
            let rows = std::mem::take(&mut chunk.rows);
            let count = rows.len();
            let mut already = 0usize;
            for row in rows {
                self.records.clear();
                self.stage
                    .snapshot_row(
                        chunk.relation.clone(),
                        row.values,
                        RowMarker::Incremental,
                        change.lsn,
                        &mut self.records,
                    )
                    .await?;
                if chunk.initial {
                    attach_snapshot_key(
                        &mut self.records,
                        serde_json::to_vec(&row.key).unwrap_or_default(),
                    );
                }
                if let Some(flags) = &row.present {
                    // Resuming an initial snapshot: drop what Kafka holds.
                    let mut kept = Vec::with_capacity(self.records.len());
                    for record in std::mem::take(&mut self.records) {
                        let partition = self.partition_for(&record).await?;
                        if chunk.present(flags, partition) {
                            already += 1;
                        } else {
                            kept.push(record);
                        }
                    }
                    self.records = kept;
                }
                self.send_records(self.tx.xid).await?;
            }
            debug!(table = %table, rows = count, skipped_as_in_kafka = already, "incremental snapshot chunk emitted");
            self.note_snapshot_rows(&table, count as u64, false);
            self.incremental.emitted(Position {
                commit_lsn: self.commit_lsn,
                index: self.index.saturating_sub(1),
            });
        }
        self.incremental.next_window().await?;
        if self.incremental.take_initial_finished() {
            // Complete once Kafka holds everything sent so far.
            self.snapshot_pending = Some(Lsn(self.commit_lsn.0.saturating_add(1)));
        }
        Ok(())
    }

    /// A logical decoding message; a non-transactional one is a transaction of its own.
    async fn on_message(
        &mut self,
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: bytes::Bytes,
        more_queued: bool,
    ) -> Result<(), PipelineError> {
        if !transactional {
            self.tracker.begin(lsn);
            self.commit_lsn = lsn;
            self.index = 0;
        }
        self.records.clear();
        self.stage
            .message(
                prefix,
                content,
                lsn,
                transactional,
                &self.tx,
                &mut self.records,
            )
            .await?;
        self.send_records(self.tx.xid).await?;
        if !transactional {
            self.tracker.commit(lsn);
            self.commit_batch(!more_queued, false).await?;
        }
        Ok(())
    }

    async fn on_commit(&mut self, end_lsn: Lsn, more_queued: bool) -> Result<(), PipelineError> {
        // Transaction metadata (END, or BEGIN and END) belongs to the transaction: same
        // positions, same checkpoint.
        self.records.clear();
        self.stage
            .commit_transaction(end_lsn, &mut self.records)
            .await?;
        self.send_records(self.tx.xid).await?;
        self.tracker.commit(end_lsn);
        self.note_committed(end_lsn, self.tx.commit_time_us);
        self.commit_batch(!more_queued, false).await?;
        self.tx.last_commit_lsn = Some(end_lsn);
        Ok(())
    }

    fn on_snapshot_started(&mut self, consistent_point: Lsn) {
        // Snapshot rows sort before every change streamed after the consistent point,
        // and after anything an earlier attempt sent.
        self.commit_lsn = Lsn(consistent_point.0.saturating_sub(1));
        self.index = 0;
        self.tx.xid = 0;
        self.tracker.begin(self.commit_lsn);
        self.snapshot_point = Some(consistent_point);
    }

    async fn on_snapshot_rows(
        &mut self,
        relation: std::sync::Arc<RelationInfo>,
        rows: Vec<crate::model::change::SnapshotRead>,
    ) -> Result<(), PipelineError> {
        let at = self.snapshot_point.unwrap_or_default();
        let table = relation.qualified();
        let count = rows.len() as u64;
        let table_done = rows
            .last()
            .is_some_and(|r| matches!(r.marker, RowMarker::LastInTable | RowMarker::Last));
        for read in rows {
            self.records.clear();
            self.stage
                .snapshot_row(
                    relation.clone(),
                    read.row,
                    read.marker,
                    at,
                    &mut self.records,
                )
                .await?;
            if let Some(key) = read.key {
                attach_snapshot_key(&mut self.records, key);
            }
            self.send_records(0).await?;
            // A snapshot is no source transaction: commit it in batches.
            self.commit_batch(false, true).await?;
        }
        self.note_snapshot_rows(&table, count, table_done);
        Ok(())
    }

    async fn on_snapshot_completed(
        &mut self,
        consistent_point: Lsn,
        more_queued: bool,
    ) -> Result<(), PipelineError> {
        self.tracker.commit(consistent_point);
        self.snapshot_pending = Some(consistent_point);
        crate::observe::board()
            .snapshot_finished(&self.connector.name, crate::observe::SnapshotKind::Initial);
        super::reporting::log_snapshot_progress(&self.connector.name);
        self.commit_batch(!more_queued, false).await
    }

    /// The replication connection was made again: the server resends from the slot's
    /// confirmed position.
    fn on_restarted(&mut self) {
        self.tracker.drop_uncommitted();
        crate::observe::metrics()
            .reconnects
            .with_label_values(&[&self.connector.name, "postgres"])
            .inc();
    }

    /// A keepalive while nothing is in flight: the idle slot may advance to the WAL's end.
    fn on_idle(&mut self, wal_end: Lsn) {
        self.metrics.set_server_wal_end(wal_end);
        if let Some(checkpoint) = self.tracker.idle(wal_end) {
            self.publish(&checkpoint);
        }
    }
}

/// Gives a snapshot row's records the row's key (a JSON array of key texts) in the
/// `walcast.snapshot.key` header: where an interrupted initial snapshot resumes (see
/// `initial_snapshot::prepare`).
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
