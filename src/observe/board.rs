//! What each connector of the process is doing now: its state, the components retrying,
//! its last error and the progress of a snapshot. The probes, `/status` and the status
//! page read it; the connector's tasks write it as things happen. Counters live in the
//! metrics (see `status.rs`, which joins both).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::metrics::metrics;

/// A connector's state, as `walcast_connector_state{state}` and `/status` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorState {
    /// Connecting, checking, preparing the slot.
    Starting,
    /// Reading the initial snapshot.
    Snapshotting,
    /// Streaming changes (an incremental snapshot may run alongside).
    Streaming,
    /// A component (postgres, kafka, registry) retries a failed call; the connector
    /// waits meanwhile and loses nothing.
    Retrying,
    /// Stopped cleanly (shutdown, or `snapshot_mode = "initial_only"` done).
    Stopped,
    /// Stopped by an error it cannot get past; the process exits non-zero once every
    /// connector has stopped.
    Failed,
}

impl ConnectorState {
    pub const ALL: [ConnectorState; 6] = [
        Self::Starting,
        Self::Snapshotting,
        Self::Streaming,
        Self::Retrying,
        Self::Stopped,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Snapshotting => "snapshotting",
            Self::Streaming => "streaming",
            Self::Retrying => "retrying",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }

    /// Serving its purpose: `/readyz` is ready only while every connector is.
    pub fn is_ready(self) -> bool {
        matches!(self, Self::Snapshotting | Self::Streaming)
    }
}

/// Where a connector reads from and writes to (no password, no full connection string).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectorInfo {
    /// host:port/dbname.
    pub database: String,
    pub slot: String,
    pub publication: String,
    pub delivery: String,
    pub bootstrap_servers: String,
}

/// One table of a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct TableProgress {
    pub table: String,
    pub rows_read: u64,
    /// PostgreSQL's estimate (`pg_class.reltuples`); `None` when never analyzed.
    pub rows_estimated: Option<u64>,
    pub done: bool,
}

/// The kind of snapshot running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    Initial,
    Incremental,
}

/// A snapshot's progress (the running one, or the last until the next starts).
#[derive(Debug, Clone)]
pub struct SnapshotProgress {
    pub kind: SnapshotKind,
    pub started: SystemTime,
    started_at: Instant,
    finished: Option<Duration>,
    pub tables: Vec<TableProgress>,
}

/// A snapshot's progress in figures a person reads.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressFigures {
    pub rows_read: u64,
    pub rows_estimated: Option<u64>,
    pub rows_per_second: f64,
    /// Rows read / estimated, capped at 99.9 until every table is done.
    pub percent: Option<f64>,
    pub eta_seconds: Option<u64>,
    pub elapsed_seconds: f64,
    pub tables_done: usize,
    pub tables_total: usize,
    pub running: bool,
}

impl SnapshotProgress {
    /// The figures now.
    pub fn figures(&self) -> ProgressFigures {
        let rows_read: u64 = self.tables.iter().map(|t| t.rows_read).sum();
        let tables_done = self.tables.iter().filter(|t| t.done).count();
        let all_done = tables_done == self.tables.len();
        // Done tables count with what they held, the others with their estimate.
        let estimated: Option<u64> = self
            .tables
            .iter()
            .map(|t| {
                if t.done {
                    Some(t.rows_read)
                } else {
                    t.rows_estimated.map(|e| e.max(t.rows_read))
                }
            })
            .sum();
        let elapsed = self
            .finished
            .unwrap_or_else(|| self.started_at.elapsed())
            .as_secs_f64();
        let rate = if elapsed > 0.0 {
            rows_read as f64 / elapsed
        } else {
            0.0
        };
        let percent = if all_done {
            Some(100.0)
        } else {
            estimated.map(|e| {
                if e == 0 {
                    0.0
                } else {
                    (rows_read as f64 * 100.0 / e as f64).min(99.9)
                }
            })
        };
        let eta = match (estimated, all_done) {
            (_, true) => Some(0),
            (Some(e), false) if rate > 0.0 => {
                Some((e.saturating_sub(rows_read) as f64 / rate).ceil() as u64)
            }
            _ => None,
        };
        ProgressFigures {
            rows_read,
            rows_estimated: estimated,
            rows_per_second: rate,
            percent,
            eta_seconds: eta,
            elapsed_seconds: elapsed,
            tables_done,
            tables_total: self.tables.len(),
            running: self.finished.is_none(),
        }
    }
}

/// One connector's entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The state before retrying is taken into account.
    base: ConnectorState,
    pub since: SystemTime,
    pub retrying: BTreeSet<&'static str>,
    pub last_error: Option<(String, SystemTime)>,
    pub info: ConnectorInfo,
    pub snapshot: Option<SnapshotProgress>,
}

impl Entry {
    /// The state as reported: retrying overrides starting, snapshotting and streaming.
    pub fn state(&self) -> ConnectorState {
        if !self.retrying.is_empty()
            && !matches!(self.base, ConnectorState::Stopped | ConnectorState::Failed)
        {
            ConnectorState::Retrying
        } else {
            self.base
        }
    }
}

/// Every connector of the process.
pub struct Board {
    entries: Mutex<BTreeMap<String, Entry>>,
    pub started: SystemTime,
}

/// The process's board.
pub fn board() -> &'static Board {
    static BOARD: OnceLock<Board> = OnceLock::new();
    BOARD.get_or_init(|| Board {
        entries: Mutex::new(BTreeMap::new()),
        started: SystemTime::now(),
    })
}

impl Board {
    fn with<R>(&self, name: &str, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries.entry(name.to_owned()).or_insert_with(|| Entry {
            base: ConnectorState::Starting,
            since: SystemTime::now(),
            retrying: BTreeSet::new(),
            last_error: None,
            info: ConnectorInfo::default(),
            snapshot: None,
        });
        let before = entry.state();
        let result = f(entry);
        let after = entry.state();
        if before != after {
            entry.since = SystemTime::now();
        }
        publish_state(name, after);
        result
    }

    /// A connector of this process, starting.
    pub fn register(&self, name: &str, info: ConnectorInfo) {
        // Its series exist from the start.
        metrics().connector(name);
        self.with(name, |e| {
            e.info = info;
            e.base = ConnectorState::Starting;
        });
    }

    /// The connector moved to `state` (retrying is said with [`Board::set_retrying`]).
    pub fn set_state(&self, name: &str, state: ConnectorState) {
        self.with(name, |e| {
            e.base = state;
            if matches!(state, ConnectorState::Stopped | ConnectorState::Failed) {
                e.retrying.clear();
            }
        });
    }

    /// A component of `name` starts (`true`) or stops retrying a failed call.
    pub fn set_retrying(&self, name: &str, component: &'static str, retrying: bool) {
        metrics()
            .retrying
            .with_label_values(&[name, component])
            .set(i64::from(retrying));
        self.with(name, |e| {
            if retrying {
                e.retrying.insert(component);
            } else {
                e.retrying.remove(component);
            }
        });
    }

    /// Remembers the connector's latest error (shown with its time on `/status`).
    pub fn note_error(&self, name: &str, message: impl Into<String>) {
        let message = message.into();
        self.with(name, |e| e.last_error = Some((message, SystemTime::now())));
    }

    /// The connector failed for good with `message`.
    pub fn failed(&self, name: &str, message: impl Into<String>) {
        self.note_error(name, message);
        self.set_state(name, ConnectorState::Failed);
    }

    /// A snapshot of `tables` (name, estimated rows) starts.
    pub fn snapshot_started(
        &self,
        name: &str,
        kind: SnapshotKind,
        tables: Vec<(String, Option<u64>)>,
    ) {
        let m = metrics();
        m.snapshot_tables
            .with_label_values(&[name])
            .set(tables.len() as i64);
        m.snapshot_tables_done.with_label_values(&[name]).set(0);
        for (table, estimate) in &tables {
            m.snapshot_rows_read
                .with_label_values(&[name, table])
                .set(0);
            m.snapshot_rows_estimated
                .with_label_values(&[name, table])
                .set(estimate.map_or(-1, |e| e as i64));
        }
        self.with(name, |e| {
            e.snapshot = Some(SnapshotProgress {
                kind,
                started: SystemTime::now(),
                started_at: Instant::now(),
                finished: None,
                tables: tables
                    .into_iter()
                    .map(|(table, rows_estimated)| TableProgress {
                        table,
                        rows_read: 0,
                        rows_estimated,
                        done: false,
                    })
                    .collect(),
            });
        });
    }

    /// Tables queued for an incremental snapshot: added to the running one, or the start
    /// of a new one (estimates follow as each table starts, [`Board::snapshot_estimate`]).
    pub fn snapshot_queued(&self, name: &str, tables: &[String]) {
        let running = self.with(name, |e| {
            e.snapshot
                .as_ref()
                .is_some_and(|s| s.kind == SnapshotKind::Incremental && s.finished.is_none())
        });
        if !running {
            let tables = tables.iter().map(|t| (t.clone(), None)).collect();
            self.snapshot_started(name, SnapshotKind::Incremental, tables);
            return;
        }
        let m = metrics();
        self.with(name, |e| {
            let Some(snapshot) = &mut e.snapshot else {
                return;
            };
            for table in tables {
                if !snapshot.tables.iter().any(|t| &t.table == table) {
                    m.snapshot_rows_read
                        .with_label_values(&[name, table])
                        .set(0);
                    m.snapshot_rows_estimated
                        .with_label_values(&[name, table])
                        .set(-1);
                    snapshot.tables.push(TableProgress {
                        table: table.clone(),
                        rows_read: 0,
                        rows_estimated: None,
                        done: false,
                    });
                }
            }
            m.snapshot_tables
                .with_label_values(&[name])
                .set(snapshot.tables.len() as i64);
        });
    }

    /// PostgreSQL's estimate of `table`'s rows, known once its snapshot starts.
    pub fn snapshot_estimate(&self, name: &str, table: &str, estimate: Option<u64>) {
        metrics()
            .snapshot_rows_estimated
            .with_label_values(&[name, table])
            .set(estimate.map_or(-1, |e| e as i64));
        self.with(name, |e| {
            if let Some(t) = e
                .snapshot
                .as_mut()
                .and_then(|s| s.tables.iter_mut().find(|t| t.table == table))
            {
                t.rows_estimated = estimate;
            }
        });
    }

    /// `rows` more rows of `table` were read; `table_done`: that was its last.
    pub fn snapshot_rows(&self, name: &str, table: &str, rows: u64, table_done: bool) {
        let m = metrics();
        self.with(name, |e| {
            let Some(snapshot) = &mut e.snapshot else {
                return;
            };
            let Some(t) = snapshot.tables.iter_mut().find(|t| t.table == table) else {
                return;
            };
            t.rows_read += rows;
            m.snapshot_rows_read
                .with_label_values(&[name, table])
                .set(t.rows_read as i64);
            if table_done && !t.done {
                t.done = true;
                let done = snapshot.tables.iter().filter(|t| t.done).count();
                m.snapshot_tables_done
                    .with_label_values(&[name])
                    .set(done as i64);
            }
        });
    }

    /// The snapshot of `kind` has read everything (tables without rows are done too).
    pub fn snapshot_finished(&self, name: &str, kind: SnapshotKind) {
        let m = metrics();
        self.with(name, |e| {
            let Some(snapshot) = e.snapshot.as_mut().filter(|s| s.kind == kind) else {
                return;
            };
            for t in &mut snapshot.tables {
                t.done = true;
            }
            if snapshot.finished.is_none() {
                snapshot.finished = Some(snapshot.started_at.elapsed());
            }
            m.snapshot_tables_done
                .with_label_values(&[name])
                .set(snapshot.tables.len() as i64);
        });
    }

    /// The figures of the connector's snapshot, if one ran.
    pub fn snapshot_figures(&self, name: &str) -> Option<ProgressFigures> {
        self.entry(name)?.snapshot.map(|s| s.figures())
    }

    /// A copy of one connector's entry.
    pub fn entry(&self, name: &str) -> Option<Entry> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(name).cloned()
    }

    /// Copies of every entry, by name.
    pub fn entries(&self) -> Vec<(String, Entry)> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The connectors that failed for good (empty: healthy).
    pub fn failed_connectors(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|(_, e)| e.state() == ConnectorState::Failed)
            .map(|(name, _)| name)
            .collect()
    }

    /// The connectors not ready, with their state (empty and at least one connector:
    /// ready).
    pub fn not_ready(&self) -> Vec<(String, ConnectorState)> {
        let entries = self.entries();
        if entries.is_empty() {
            return vec![("(none)".into(), ConnectorState::Starting)];
        }
        entries
            .into_iter()
            .map(|(name, e)| (name, e.state()))
            .filter(|(_, s)| !s.is_ready())
            .collect()
    }
}

/// `walcast_connector_state` (1 for the current state) and `walcast_streaming`.
fn publish_state(name: &str, state: ConnectorState) {
    let m = metrics();
    for s in ConnectorState::ALL {
        m.connector_state
            .with_label_values(&[name, s.as_str()])
            .set(i64::from(s == state));
    }
    m.streaming
        .with_label_values(&[name])
        .set(i64::from(state == ConnectorState::Streaming));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retrying_overrides_streaming_and_readiness_follows() {
        let b = board();
        b.register("board-r", ConnectorInfo::default());
        assert_eq!(
            b.entry("board-r").unwrap().state(),
            ConnectorState::Starting
        );
        assert!(b.not_ready().iter().any(|(n, _)| n == "board-r"));
        b.set_state("board-r", ConnectorState::Streaming);
        assert!(!b.not_ready().iter().any(|(n, _)| n == "board-r"));
        b.set_retrying("board-r", "postgres", true);
        assert_eq!(
            b.entry("board-r").unwrap().state(),
            ConnectorState::Retrying
        );
        assert!(b.not_ready().iter().any(|(n, _)| n == "board-r"));
        let text = metrics().render();
        assert!(
            text.contains("walcast_connector_state{connector=\"board-r\",state=\"retrying\"} 1")
        );
        assert!(
            text.contains("walcast_connector_state{connector=\"board-r\",state=\"streaming\"} 0")
        );
        b.set_retrying("board-r", "postgres", false);
        assert_eq!(
            b.entry("board-r").unwrap().state(),
            ConnectorState::Streaming
        );
        b.failed("board-r", "boom");
        assert!(b.failed_connectors().contains(&"board-r".to_owned()));
        assert_eq!(b.entry("board-r").unwrap().last_error.unwrap().0, "boom");
    }

    #[test]
    fn snapshot_progress_counts_rows_and_estimates_the_rest() {
        let b = board();
        b.register("board-s", ConnectorInfo::default());
        b.snapshot_started(
            "board-s",
            SnapshotKind::Initial,
            vec![
                ("a.one".into(), Some(100)),
                ("a.two".into(), Some(300)),
                ("a.empty".into(), None),
            ],
        );
        b.snapshot_rows("board-s", "a.one", 100, true);
        b.snapshot_rows("board-s", "a.two", 100, false);
        let f = b.snapshot_figures("board-s").unwrap();
        assert_eq!(f.rows_read, 200);
        assert_eq!(f.tables_done, 1);
        assert_eq!(f.tables_total, 3);
        assert_eq!(f.rows_estimated, None, "one table was never analyzed");
        assert_eq!(f.percent, None);
        b.snapshot_started(
            "board-s",
            SnapshotKind::Initial,
            vec![("a.one".into(), Some(100)), ("a.two".into(), Some(300))],
        );
        b.snapshot_rows("board-s", "a.one", 100, true);
        b.snapshot_rows("board-s", "a.two", 100, false);
        let f = b.snapshot_figures("board-s").unwrap();
        assert_eq!(f.rows_estimated, Some(400));
        assert_eq!(f.percent, Some(50.0));
        // More rows than estimated: never past 99.9 until done.
        b.snapshot_rows("board-s", "a.two", 400, false);
        assert_eq!(b.snapshot_figures("board-s").unwrap().percent, Some(99.9));
        b.snapshot_finished("board-s", SnapshotKind::Initial);
        let f = b.snapshot_figures("board-s").unwrap();
        assert_eq!(
            (f.percent, f.tables_done, f.eta_seconds, f.running),
            (Some(100.0), 2, Some(0), false)
        );
        assert!(metrics()
            .render()
            .contains("walcast_snapshot_tables_done{connector=\"board-s\"} 2"));
    }
}
