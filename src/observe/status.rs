//! `/status`: each connector's state, positions, lag, counts, snapshot progress and last
//! error as one JSON document, joined from the board (states) and the metrics (counts).
//! The status page and `walcast status` render the same document.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::board::{board, Entry, TableProgress};
use super::metrics::metrics;
use crate::model::lsn::Lsn;

/// The whole process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub version: String,
    pub started_at: String,
    pub now: String,
    /// `/healthz`: no connector has failed for good.
    pub healthy: bool,
    /// `/readyz`: every connector streams or snapshots.
    pub ready: bool,
    pub connectors: Vec<ConnectorStatus>,
}

/// One connector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectorStatus {
    pub name: String,
    pub state: String,
    pub state_since: String,
    /// Components retrying a failed call (postgres, kafka, registry).
    pub retrying: Vec<String>,
    /// host:port/dbname (never a password).
    pub database: String,
    pub slot: String,
    pub publication: String,
    pub delivery: String,
    pub bootstrap_servers: String,
    /// The checkpoint confirmed to PostgreSQL, as PostgreSQL writes LSNs.
    pub confirmed_flush_lsn: Option<String>,
    pub server_wal_end_lsn: Option<String>,
    pub lag_bytes: i64,
    pub lag_seconds: f64,
    /// The source commit time of the newest event Kafka acknowledged.
    pub last_event_at: Option<String>,
    pub slot_retained_wal_bytes: Option<i64>,
    pub slot_wal_status: Option<String>,
    pub events_total: u64,
    /// Events by table, then by op (c, u, d, r, t, m).
    pub events: BTreeMap<String, BTreeMap<String, u64>>,
    pub transactions: u64,
    pub records_sent: u64,
    pub records_in_flight: i64,
    pub snapshot: Option<SnapshotStatus>,
    pub last_error: Option<ErrorStatus>,
}

/// The running (or last) snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotStatus {
    pub kind: String,
    pub started_at: String,
    pub running: bool,
    pub rows_read: u64,
    pub rows_estimated: Option<u64>,
    pub rows_per_second: f64,
    pub percent: Option<f64>,
    pub eta_seconds: Option<u64>,
    pub tables_done: usize,
    pub tables_total: usize,
    pub tables: Vec<TableStatus>,
}

/// One table of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableStatus {
    pub table: String,
    pub rows_read: u64,
    pub rows_estimated: Option<u64>,
    pub done: bool,
}

/// The connector's latest error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorStatus {
    pub message: String,
    pub at: String,
}

/// The process's status now.
pub fn current() -> ProcessStatus {
    let board = board();
    let families = metrics().gather();
    let connectors: Vec<ConnectorStatus> = board
        .entries()
        .into_iter()
        .map(|(name, entry)| connector_status(&name, &entry, &families))
        .collect();
    ProcessStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: rfc3339(board.started),
        now: rfc3339(SystemTime::now()),
        healthy: board.failed_connectors().is_empty(),
        ready: board.not_ready().is_empty(),
        connectors,
    }
}

fn connector_status(
    name: &str,
    entry: &Entry,
    families: &[prometheus::proto::MetricFamily],
) -> ConnectorStatus {
    let m = metrics().connector(name);
    let mut events: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (labels, value) in series(families, "walcast_events_total", name) {
        let table = labels.get("table").cloned().unwrap_or_default();
        let op = labels.get("op").cloned().unwrap_or_default();
        *events.entry(table).or_default().entry(op).or_default() += value as u64;
    }
    let records_sent = series(families, "walcast_records_sent_total", name)
        .iter()
        .map(|(_, v)| *v as u64)
        .sum();
    let slot_wal_status = series(families, "walcast_slot_wal_status", name)
        .into_iter()
        .find(|(_, v)| *v == 1.0)
        .and_then(|(labels, _)| labels.get("status").cloned());
    let retained = series(families, "walcast_slot_retained_wal_bytes", name)
        .first()
        .map(|(_, v)| *v as i64);
    let lsn = |v: i64| (v > 0).then(|| Lsn(v as u64).to_string());
    let last_event = m.last_event_timestamp.get();
    ConnectorStatus {
        name: name.to_owned(),
        state: entry.state().as_str().to_owned(),
        state_since: rfc3339(entry.since),
        retrying: entry.retrying.iter().map(|c| (*c).to_owned()).collect(),
        database: entry.info.database.clone(),
        slot: entry.info.slot.clone(),
        publication: entry.info.publication.clone(),
        delivery: entry.info.delivery.clone(),
        bootstrap_servers: entry.info.bootstrap_servers.clone(),
        confirmed_flush_lsn: lsn(m.confirmed_lsn.get()),
        server_wal_end_lsn: lsn(m.server_wal_end.get()),
        lag_bytes: m.lag_bytes.get(),
        lag_seconds: m.lag_seconds.get(),
        last_event_at: (last_event > 0.0)
            .then(|| rfc3339(UNIX_EPOCH + std::time::Duration::from_secs_f64(last_event))),
        slot_retained_wal_bytes: retained,
        slot_wal_status,
        events_total: events.values().flat_map(|ops| ops.values()).sum(),
        events,
        transactions: m.transactions.get(),
        records_sent,
        records_in_flight: m.in_flight.get(),
        snapshot: entry.snapshot.as_ref().map(|s| {
            let f = s.figures();
            SnapshotStatus {
                kind: match s.kind {
                    super::board::SnapshotKind::Initial => "initial",
                    super::board::SnapshotKind::Incremental => "incremental",
                }
                .to_owned(),
                started_at: rfc3339(s.started),
                running: f.running,
                rows_read: f.rows_read,
                rows_estimated: f.rows_estimated,
                rows_per_second: f.rows_per_second,
                percent: f.percent,
                eta_seconds: f.eta_seconds,
                tables_done: f.tables_done,
                tables_total: f.tables_total,
                tables: s.tables.iter().map(table_status).collect(),
            }
        }),
        last_error: entry.last_error.as_ref().map(|(message, at)| ErrorStatus {
            message: message.clone(),
            at: rfc3339(*at),
        }),
    }
}

fn table_status(t: &TableProgress) -> TableStatus {
    TableStatus {
        table: t.table.clone(),
        rows_read: t.rows_read,
        rows_estimated: t.rows_estimated,
        done: t.done,
    }
}

/// The samples of the family `name` that belong to `connector`: their labels and value.
fn series(
    families: &[prometheus::proto::MetricFamily],
    name: &str,
    connector: &str,
) -> Vec<(BTreeMap<String, String>, f64)> {
    let Some(family) = families.iter().find(|f| f.name() == name) else {
        return Vec::new();
    };
    family
        .get_metric()
        .iter()
        .filter_map(|metric| {
            let labels: BTreeMap<String, String> = metric
                .get_label()
                .iter()
                .map(|l| (l.name().to_owned(), l.value().to_owned()))
                .collect();
            if labels.get("connector").map(String::as_str) != Some(connector) {
                return None;
            }
            let value = match family.get_field_type() {
                prometheus::proto::MetricType::COUNTER => metric.get_counter().get_value(),
                _ => metric.get_gauge().get_value(),
            };
            Some((labels, value))
        })
        .collect()
}

/// `2026-12-07T15:04:05Z` (UTC, whole seconds).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, mo, d) = crate::model::value::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::board::{ConnectorInfo, ConnectorState, SnapshotKind};

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_796_655_845);
        assert_eq!(rfc3339(t), "2026-12-07T15:04:05Z");
    }

    #[test]
    fn the_status_joins_states_and_counts_per_connector() {
        board().register(
            "status-a",
            ConnectorInfo {
                database: "db:5432/app".into(),
                slot: "walcast_a".into(),
                ..ConnectorInfo::default()
            },
        );
        board().set_state("status-a", ConnectorState::Streaming);
        let c = metrics().connector("status-a");
        c.events("public.orders", 'c').inc_by(5);
        c.events("public.orders", 'u').inc_by(2);
        c.events("public.items", 'r').inc_by(7);
        c.set_server_wal_end(Lsn(0x1_0000_0100));
        c.set_confirmed(Lsn(0x1_0000_0000));
        board().snapshot_started(
            "status-a",
            SnapshotKind::Incremental,
            vec![("public.items".into(), Some(14))],
        );
        board().snapshot_rows("status-a", "public.items", 7, false);
        board().note_error("status-a", "PostgreSQL went away");
        let status = current();
        let a = status
            .connectors
            .iter()
            .find(|c| c.name == "status-a")
            .expect("listed");
        assert_eq!(a.state, "streaming");
        assert_eq!(a.events_total, 14);
        assert_eq!(a.events["public.orders"]["c"], 5);
        assert_eq!(a.confirmed_flush_lsn.as_deref(), Some("1/0"));
        assert_eq!(a.lag_bytes, 256);
        let snapshot = a.snapshot.as_ref().expect("snapshot");
        assert_eq!(
            (snapshot.kind.as_str(), snapshot.percent),
            ("incremental", Some(50.0))
        );
        assert_eq!(
            a.last_error.as_ref().unwrap().message,
            "PostgreSQL went away"
        );
        let json = serde_json::to_string(&status).unwrap();
        let back: ProcessStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(back.connectors.len(), status.connectors.len());
        assert!(!json.contains("password"));
    }
}
