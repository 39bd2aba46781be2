//! Incremental snapshots while streaming: the watermark algorithm of Netflix's DBLog,
//! as Debezium runs it.
//!
//! A snapshot is asked for with a row in `walcast.signal`
//! (`execute-snapshot`, Debezium's layout) or `walcast snapshot --table`. Tables are
//! read in key-ordered chunks. For each chunk walcast inserts a low watermark row into
//! the signal table, reads the chunk, and inserts a high watermark row. Both arrive
//! through the stream like any change. Between them, every streamed change of the
//! table removes its key from the chunk in memory (the stream's version is as new or
//! newer); at the high watermark the rows left are emitted as `op = r` events. So a
//! snapshot row never overtakes a newer change of its key, and the stream never stops.
//!
//! Progress (tables left, last key emitted) travels with the checkpoint in
//! `walcast.offsets`, recorded only once Kafka holds the chunk, so a restarted
//! connector continues with the next chunk.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio_postgres::Client;
use tracing::{info, warn};

use super::PipelineError;
use crate::checkpoint::Position;
use crate::config::Connector;
use crate::model::change::{RowChange, RowOp};
use crate::model::relation::RelationInfo;
use crate::model::value::Value;
use crate::postgres::{connect, resolve_tables, Catalog};
use crate::sink::checkpoint_record::IncrementalProgress;
use crate::source::relation::RelationCache;
use crate::source::table_read::{read_chunk, relation_for};

mod watermark;
mod window;

use watermark::{insert_signal, wait_for_commits_in_flight};
use window::{key_of, present_flags, Window};

/// Signal types walcast acts on (Debezium's names, and its watermark rows).
const EXECUTE: &str = "execute-snapshot";
const STOP: &str = "stop-snapshot";
const PAUSE: &str = "pause-snapshot";
const RESUME: &str = "resume-snapshot";
const WINDOW_OPEN: &str = "snapshot-window-open";
const WINDOW_CLOSE: &str = "snapshot-window-close";

fn setup_err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Setup(format!("incremental snapshot: {e}"))
}

/// The table being read.
struct Current {
    name: String,
    relation: Arc<RelationInfo>,
    /// The table's row filter and snapshot filter (`[tables.…] filter`, `snapshot_filter`).
    filter: Option<String>,
    /// Resuming an interrupted initial snapshot: per partition of the table's topic, the
    /// key of the last snapshot row Kafka holds there (rows at or below it are skipped).
    present: Vec<(i32, Vec<String>)>,
    /// Primary key columns of `relation`, in key order.
    key: Vec<usize>,
    /// The primary key column names, to find the key in streamed rows.
    key_names: Vec<String>,
    /// Text of the last key read; the next chunk starts after it.
    last_key: Option<Vec<String>>,
    rows: u64,
}

/// What taking the next queued table came to.
enum NextTable {
    Started,
    /// No longer captured or gone: skipped.
    Skipped,
    NoneLeft,
}

/// Rows to emit when a window closes, and where they sit.
pub struct ChunkRows {
    pub relation: Arc<RelationInfo>,
    pub rows: Vec<SnapshotRow>,
    pub partitions: Vec<i32>,
    /// The rows finish an interrupted initial snapshot (their records carry their key,
    /// like the initial snapshot's, so a further interruption resumes after them).
    pub initial: bool,
}

/// One row of a chunk to emit.
pub struct SnapshotRow {
    pub values: Vec<Value>,
    /// Resuming an initial snapshot: one flag per entry of [`ChunkRows::partitions`],
    /// true when Kafka already holds the row if it goes to that partition.
    pub present: Option<Vec<bool>>,
    /// The text of the row's primary key.
    pub key: Vec<String>,
}

impl ChunkRows {
    /// Whether a row with these `flags`, going to `partition`, is already in Kafka.
    pub fn present(&self, flags: &[bool], partition: i32) -> bool {
        self.partitions
            .iter()
            .position(|p| *p == partition)
            .and_then(|i| flags.get(i).copied())
            .unwrap_or(false)
    }
}

/// Finishing an interrupted initial snapshot: what identifies its records in Kafka.
struct ResumeInitial {
    /// The position LSN of the interrupted snapshot's records.
    snapshot_lsn: crate::model::lsn::Lsn,
    origin: crate::sink::reconcile::Origin,
}

/// The incremental snapshot state of one connector.
pub struct Incremental {
    connector: Arc<Connector>,
    client: Option<Client>,
    queue: VecDeque<String>,
    current: Option<Current>,
    window: Option<Window>,
    paused: bool,
    sequence: u64,
    /// Progress after each emitted chunk, by the position of its last record: recorded
    /// with the checkpoint once the checkpoint reaches that position.
    progress: VecDeque<(Position, IncrementalProgress)>,
    recorded: Option<IncrementalProgress>,
    /// The last key of a resumed table, used when its first chunk is read.
    pending_resume: Option<Vec<String>>,
    resume_initial: Option<ResumeInitial>,
    /// Set when a resumed initial snapshot has read its last table.
    initial_finished: bool,
}

impl Incremental {
    pub fn new(connector: Arc<Connector>) -> Self {
        Self {
            connector,
            client: None,
            queue: VecDeque::new(),
            current: None,
            window: None,
            paused: false,
            sequence: 0,
            progress: VecDeque::new(),
            recorded: None,
            pending_resume: None,
            resume_initial: None,
            initial_finished: false,
        }
    }

    /// Continues a snapshot recorded with the checkpoint (`state` from
    /// [`Incremental::recorded_state`]).
    pub fn resume(&mut self, state: &Option<IncrementalProgress>) {
        let Some(state) = state else {
            return;
        };
        self.queue = state.tables.iter().cloned().collect();
        self.recorded = Some(state.clone());
        if let Some(name) = &state.table {
            self.queue.push_front(name.clone());
            // Resolved (relation, key) on the first chunk.
            self.pending_resume = state.last_key.clone();
        }
        self.paused = state.paused;
        if !self.queue.is_empty() {
            info!(tables = ?self.queue, "continuing the incremental snapshot recorded with the checkpoint");
            self.show_queued();
        }
    }

    /// Finishes an interrupted initial snapshot whose records sit at `consistent_point`
    /// − 1: every captured table is read again in chunks while streaming, and rows Kafka
    /// already holds are skipped. Unless progress recorded with the checkpoint says how
    /// far a previous resume got ([`Incremental::resume`]).
    pub async fn resume_initial(
        &mut self,
        consistent_point: crate::model::lsn::Lsn,
        origin: &crate::sink::reconcile::Origin,
    ) -> Result<(), PipelineError> {
        self.resume_initial = Some(ResumeInitial {
            snapshot_lsn: crate::model::lsn::Lsn(consistent_point.0.saturating_sub(1)),
            origin: origin.clone(),
        });
        if self.active() {
            // Continuing a resume that recorded its progress.
            return Ok(());
        }
        let tables = self.captured_tables().await?;
        self.queue = tables.into();
        self.show_queued();
        Ok(())
    }

    /// The queued tables (and the one being read) on the status board.
    fn show_queued(&self) {
        let mut tables: Vec<String> = self.current.iter().map(|c| c.name.clone()).collect();
        tables.extend(self.queue.iter().cloned());
        crate::observe::board().snapshot_queued(&self.connector.name, &tables);
    }

    /// True once, after a resumed initial snapshot read its last table.
    pub fn take_initial_finished(&mut self) -> bool {
        std::mem::take(&mut self.initial_finished)
    }

    /// Whether `relation` is walcast's signal table.
    pub fn is_signal_table(relation: &RelationInfo) -> bool {
        relation.schema == "walcast" && relation.table == "signal"
    }

    /// Whether a snapshot is under way (tables queued or being read).
    pub fn active(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty()
    }

    /// A change of a captured table streamed: inside an open window it makes the
    /// chunk's copy of that key stale.
    pub fn on_change(&mut self, change: &RowChange) {
        let (Some(window), Some(current)) = (&mut self.window, &self.current) else {
            return;
        };
        if !window.open || change.relation.oid != current.relation.oid {
            return;
        }
        let mut keys = Vec::with_capacity(2);
        if let Some(new) = &change.new {
            keys.extend(key_of(&change.relation, new, &current.key_names));
        }
        if let Some(old) = &change.old {
            keys.extend(key_of(&change.relation, old.values(), &current.key_names));
        } else if change.op == RowOp::Delete {
            return;
        }
        for key in keys {
            if let Some(i) = window.by_key.remove(&key) {
                window.rows[i] = None;
            }
        }
    }

    /// A row inserted into the signal table. Returns chunk rows to emit (at a high
    /// watermark).
    pub async fn on_signal(
        &mut self,
        change: &RowChange,
    ) -> Result<Option<ChunkRows>, PipelineError> {
        if change.op != RowOp::Insert {
            return Ok(None);
        }
        let Some(row) = &change.new else {
            return Ok(None);
        };
        let column = |name: &str| {
            change
                .relation
                .columns
                .iter()
                .position(|c| c.name == name)
                .and_then(|i| match row.get(i) {
                    Some(Value::Text(t)) => Some(t.clone()),
                    _ => None,
                })
        };
        let (Some(id), Some(kind)) = (column("id"), column("type")) else {
            return Ok(None);
        };
        let data = column("data").unwrap_or_default();
        match kind.as_str() {
            EXECUTE => self.execute(&id, &data).await?,
            STOP => {
                info!(signal = %id, "incremental snapshot stopped by signal");
                self.queue.clear();
                self.current = None;
                self.window = None;
            }
            PAUSE => {
                info!(signal = %id, "incremental snapshot paused by signal");
                self.paused = true;
            }
            RESUME => {
                info!(signal = %id, "incremental snapshot resumed by signal");
                self.paused = false;
                self.next_window().await?;
            }
            WINDOW_OPEN => {
                if let Some(window) = &mut self.window {
                    if window.id == id.trim_end_matches("-open") {
                        window.open = true;
                    }
                }
            }
            WINDOW_CLOSE => return self.close(id.trim_end_matches("-close")).await,
            other => warn!(signal = %id, kind = other, "unknown signal type ignored"),
        }
        Ok(None)
    }

    async fn execute(&mut self, id: &str, data: &str) -> Result<(), PipelineError> {
        let parsed: serde_json::Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                warn!(signal = %id, error = %e, "execute-snapshot signal ignored: data is not JSON such as {{\"data-collections\":[\"public.orders\"]}}");
                return Ok(());
            }
        };
        if parsed["type"]
            .as_str()
            .is_some_and(|t| !t.eq_ignore_ascii_case("incremental"))
        {
            warn!(signal = %id, kind = %parsed["type"], "only incremental snapshots can be signalled; ignored");
            return Ok(());
        }
        let tables: Vec<String> = parsed["data-collections"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if tables.is_empty() {
            warn!(signal = %id, "execute-snapshot signal names no data-collections; ignored");
            return Ok(());
        }
        let captured = self.captured_tables().await?;
        for table in tables {
            let name = if table.contains('.') {
                table
            } else {
                format!("public.{table}")
            };
            if !captured.contains(&name) {
                warn!(signal = %id, table = %name, "not a captured table of this connector; skipped");
                continue;
            }
            if !self.queue.contains(&name) && self.current.as_ref().is_none_or(|c| c.name != name) {
                self.queue.push_back(name);
            }
        }
        info!(signal = %id, tables = ?self.queue, "incremental snapshot requested");
        self.show_queued();
        if self.window.is_none() {
            self.next_window().await?;
        }
        Ok(())
    }

    async fn client(&mut self) -> Result<&Client, PipelineError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.connector.source, None).await?);
        }
        self.client
            .as_ref()
            .ok_or_else(|| setup_err("no connection to the source database"))
    }

    async fn captured_tables(&mut self) -> Result<Vec<String>, PipelineError> {
        let connector = self.connector.clone();
        let client = self.client().await?;
        let catalog = Catalog::load(client).await.map_err(PipelineError::sql(
            "incremental snapshot: reading the catalog",
        ))?;
        Ok(resolve_tables(&connector, &catalog)
            .captured
            .iter()
            .map(|c| c.table.qualified())
            .collect())
    }

    /// Starts the next chunk unless paused or one is in flight: the low watermark, the
    /// chunk read, the high watermark (each its own transaction).
    pub async fn next_window(&mut self) -> Result<(), PipelineError> {
        loop {
            if self.paused || self.window.is_some() {
                return Ok(());
            }
            if self.current.is_none() {
                match self.next_table().await? {
                    NextTable::Started => {}
                    NextTable::Skipped => continue,
                    NextTable::NoneLeft => return Ok(()),
                }
            }
            self.sequence += 1;
            let id = format!(
                "walcast-{}-{}-{}",
                self.connector.name,
                std::process::id(),
                self.sequence
            );
            let limit = self.connector.source.snapshot_chunk_size;
            let Some(current) = self.current.as_ref() else {
                continue;
            };
            let (relation, key, after, filter) = (
                current.relation.clone(),
                current.key.clone(),
                current.last_key.clone(),
                current.filter.clone(),
            );
            let extra = present_flags(&current.relation, &current.key, &current.present);
            let client = self.client().await?;
            insert_signal(client, &format!("{id}-open"), WINDOW_OPEN).await?;
            wait_for_commits_in_flight(client).await?;
            let (rows, last_key) = read_chunk(
                client,
                &relation,
                filter.as_deref(),
                &key,
                after.as_deref(),
                limit,
                extra.as_deref(),
            )
            .await?;
            if rows.is_empty() {
                let done = self.current.take();
                if let Some(done) = done {
                    info!(table = %done.name, rows = done.rows, "incremental snapshot of the table complete");
                    crate::observe::board().snapshot_rows(
                        &self.connector.name,
                        &done.name,
                        0,
                        true,
                    );
                }
                continue;
            }
            insert_signal(client, &format!("{id}-close"), WINDOW_CLOSE).await?;
            let key_names = self
                .current
                .as_ref()
                .map(|c| c.key_names.clone())
                .unwrap_or_default();
            self.window = Some(Window::of_chunk(id, &relation, &key_names, rows, last_key));
            return Ok(());
        }
    }

    /// Takes the next queued table (or says the queue is empty, finishing a resumed
    /// initial snapshot).
    async fn next_table(&mut self) -> Result<NextTable, PipelineError> {
        let Some(name) = self.queue.pop_front() else {
            if self.resume_initial.take().is_some() {
                info!("the interrupted initial snapshot is complete");
                self.initial_finished = true;
            }
            crate::observe::board().snapshot_finished(
                &self.connector.name,
                crate::observe::SnapshotKind::Incremental,
            );
            return Ok(NextTable::NoneLeft);
        };
        let last_key = self.pending_resume.take();
        Ok(match self.describe(&name).await? {
            Some(mut current) => {
                info!(table = %name, skipping_present = !current.present.is_empty(), "incremental snapshot of the table started");
                let oid = current.relation.oid;
                let estimate = match self.client().await {
                    Ok(client) => super::initial_snapshot::estimated_rows(client, oid).await,
                    Err(_) => None,
                };
                crate::observe::board().snapshot_estimate(&self.connector.name, &name, estimate);
                current.last_key = last_key;
                self.current = Some(current);
                NextTable::Started
            }
            None => {
                crate::observe::board().snapshot_rows(&self.connector.name, &name, 0, true);
                NextTable::Skipped
            }
        })
    }

    /// The high watermark: the chunk's rows still fresh are emitted, and the next
    /// chunk starts.
    async fn close(&mut self, id: &str) -> Result<Option<ChunkRows>, PipelineError> {
        if self.window.as_ref().is_none_or(|w| w.id != id || !w.open) {
            // A watermark of an earlier process (replayed after a restart) or of
            // another connector: nothing of it is in memory.
            return Ok(None);
        }
        let Some(window) = self.window.take() else {
            return Ok(None);
        };
        let Some(current) = self.current.as_mut() else {
            return Ok(None);
        };
        current.last_key = window.last_key;
        let rows: Vec<SnapshotRow> = window.rows.into_iter().flatten().collect();
        current.rows += rows.len() as u64;
        let relation = current.relation.clone();
        let partitions = current.present.iter().map(|(p, _)| *p).collect();
        Ok(Some(ChunkRows {
            relation,
            rows,
            partitions,
            initial: self.resume_initial.is_some(),
        }))
    }

    /// After a chunk's records were handed over, the last at `position`: what to record
    /// with the checkpoint once Kafka holds them.
    pub fn emitted(&mut self, position: Position) {
        let state = self.state();
        self.progress.push_back((position, state));
    }

    fn state(&self) -> IncrementalProgress {
        if !self.active() {
            return IncrementalProgress::default();
        }
        IncrementalProgress {
            table: self.current.as_ref().map(|c| c.name.clone()),
            last_key: self.current.as_ref().and_then(|c| c.last_key.clone()),
            tables: self.queue.iter().cloned().collect(),
            paused: self.paused,
        }
    }

    /// The progress to record with a checkpoint at `position`: the newest state whose
    /// chunk Kafka holds entirely (null when no snapshot ever ran).
    pub fn recorded_state(&mut self, position: Position) -> Option<IncrementalProgress> {
        while self.progress.front().is_some_and(|(p, _)| *p <= position) {
            if let Some((_, state)) = self.progress.pop_front() {
                self.recorded = Some(state);
            }
        }
        if self.progress.is_empty() && self.window.is_none() && self.recorded.is_some() {
            // Requests and pauses that emitted nothing yet are still worth keeping.
            self.recorded = Some(self.state());
        }
        self.recorded.clone()
    }

    async fn describe(&mut self, name: &str) -> Result<Option<Current>, PipelineError> {
        let connector = self.connector.clone();
        let client = self.client().await?;
        let catalog = Catalog::load(client).await.map_err(PipelineError::sql(
            "incremental snapshot: reading the catalog",
        ))?;
        let resolution = resolve_tables(&connector, &catalog);
        let Some(captured) = resolution
            .captured
            .iter()
            .find(|c| c.table.qualified() == name)
        else {
            warn!(table = %name, "no longer a captured table; its incremental snapshot is skipped");
            return Ok(None);
        };
        if captured.table.primary_key.is_empty() {
            warn!(table = %name, "an incremental snapshot needs a primary key to read in chunks; skipped");
            return Ok(None);
        }
        let mut cache = RelationCache::default();
        let relation = relation_for(captured.table, &mut cache, client).await?;
        let key_names = captured.table.primary_key.clone();
        let key = key_names
            .iter()
            .filter_map(|k| relation.columns.iter().position(|c| &c.name == k))
            .collect();
        let filter = captured.rule.snapshot_condition();
        let topic = captured.rule.topic.clone().unwrap_or_else(|| {
            format!(
                "{}.{}.{}",
                connector.kafka.topic_prefix, relation.schema, relation.table
            )
        });
        let present = match &self.resume_initial {
            Some(resume) => {
                let settings = connector.kafka.clone();
                let origin = resume.origin.clone();
                let lsn = resume.snapshot_lsn;
                let name_of_topic = topic.clone();
                let mut keys: Vec<(i32, Vec<String>)> = tokio::task::spawn_blocking(move || {
                    crate::sink::reconcile::last_snapshot_keys(
                        &settings,
                        &name_of_topic,
                        &origin,
                        lsn,
                        100_000,
                    )
                })
                .await
                .map_err(|source| PipelineError::Task {
                    what: "reading the keys Kafka holds",
                    source,
                })??
                .into_iter()
                .collect();
                keys.sort();
                info!(table = %name, topic = %topic, partitions_with_rows = keys.len(), "resuming the table's snapshot: rows at or below each partition's last snapshot key are skipped");
                keys
            }
            None => Vec::new(),
        };
        Ok(Some(Current {
            name: name.to_owned(),
            relation,
            filter,
            present,
            key,
            key_names,
            last_key: None,
            rows: 0,
        }))
    }
}
