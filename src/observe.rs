//! Prometheus metrics and the HTTP endpoints a deployment probes: `/metrics`,
//! `/healthz` (the process is up) and `/readyz` (every connector is streaming).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::sync::watch;
use tracing::info;

/// Every metric walcast exports, labelled by connector.
pub struct Metrics {
    registry: Registry,
    /// Records handed to Kafka, by connector and topic.
    pub records_sent: IntCounterVec,
    /// Records not sent again after a restart because their partition already held them.
    pub records_skipped: IntCounterVec,
    /// Committed source transactions processed.
    pub transactions: IntCounterVec,
    /// Kafka transactions committed (`[delivery] mode = "transactional"`).
    pub kafka_transactions: IntCounterVec,
    /// The flush LSN confirmed to PostgreSQL (bytes into the WAL).
    pub confirmed_lsn: IntGaugeVec,
    /// The end of the WAL the server has reported (minus confirmed = lag in bytes).
    pub server_wal_end: IntGaugeVec,
    /// Records handed to the producer and not yet acknowledged.
    pub in_flight: IntGaugeVec,
    /// Reconnections after transient failures, by component (postgres, kafka, registry).
    pub reconnects: IntCounterVec,
    /// 1 while the connector streams, 0 otherwise.
    pub streaming: IntGaugeVec,
    /// 1 while a component of the connector retries a failed call (registry).
    pub retrying: IntGaugeVec,
    /// Bytes of large streamed transactions held until their commit (memory and disk).
    pub spool_bytes: IntGaugeVec,
    /// WAL the slot keeps on the server (current WAL - restart_lsn).
    pub slot_retained_wal: IntGaugeVec,
    /// The slot's safe_wal_size (-1: unlimited or unknown).
    pub slot_safe_wal_size: IntGaugeVec,
    /// 1 for the slot's current wal_status, by status.
    pub slot_wal_status: IntGaugeVec,
    /// Bytes of large streamed transactions written to spill files.
    pub spool_spilled_bytes: IntCounterVec,
    ready: Mutex<BTreeMap<String, bool>>,
    /// (connector, component) pairs retrying now: none of their connectors is ready.
    retrying_now: Mutex<std::collections::BTreeSet<(String, &'static str)>>,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

/// The process-wide metrics (created on first use; names are fixed, so this can't fail
/// at run time).
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let registry = Registry::new();
        Metrics {
            records_sent: counter(
                &registry,
                "walcast_records_sent_total",
                "Records handed to Kafka",
                &["connector", "topic"],
            ),
            records_skipped: counter(
                &registry,
                "walcast_records_skipped_total",
                "Resent records skipped because their partition already holds them (exactly-once)",
                &["connector"],
            ),
            transactions: counter(
                &registry,
                "walcast_transactions_total",
                "Committed source transactions processed",
                &["connector"],
            ),
            kafka_transactions: counter(
                &registry,
                "walcast_kafka_transactions_total",
                "Kafka transactions committed (transactional delivery)",
                &["connector"],
            ),
            confirmed_lsn: gauge(
                &registry,
                "walcast_confirmed_flush_lsn",
                "Flush LSN confirmed to PostgreSQL (the checkpoint)",
                &["connector"],
            ),
            server_wal_end: gauge(
                &registry,
                "walcast_server_wal_end_lsn",
                "End of the WAL as the server last reported it",
                &["connector"],
            ),
            in_flight: gauge(
                &registry,
                "walcast_records_in_flight",
                "Records sent to Kafka and not yet acknowledged",
                &["connector"],
            ),
            reconnects: counter(
                &registry,
                "walcast_reconnects_total",
                "Reconnections after transient failures",
                &["connector", "component"],
            ),
            streaming: gauge(
                &registry,
                "walcast_streaming",
                "1 while the connector streams changes",
                &["connector"],
            ),
            retrying: gauge(
                &registry,
                "walcast_retrying",
                "1 while a component of the connector retries a failed call (the connector waits meanwhile)",
                &["connector", "component"],
            ),
            spool_bytes: gauge(
                &registry,
                "walcast_spool_bytes",
                "Bytes of large streamed transactions held until their commit (memory and disk)",
                &["connector"],
            ),
            slot_retained_wal: gauge(
                &registry,
                "walcast_slot_retained_wal_bytes",
                "WAL the replication slot keeps on the server (current WAL position - restart_lsn)",
                &["connector"],
            ),
            slot_safe_wal_size: gauge(
                &registry,
                "walcast_slot_safe_wal_size_bytes",
                "WAL that can still be written before the slot is at risk of invalidation (-1: unlimited)",
                &["connector"],
            ),
            slot_wal_status: gauge(
                &registry,
                "walcast_slot_wal_status",
                "1 for the slot's current wal_status (reserved, extended, unreserved, lost)",
                &["connector", "status"],
            ),
            spool_spilled_bytes: counter(
                &registry,
                "walcast_spool_spilled_bytes_total",
                "Bytes of large streamed transactions written to spill files in [source] spool_dir",
                &["connector"],
            ),
            ready: Mutex::new(BTreeMap::new()),
            retrying_now: Mutex::new(std::collections::BTreeSet::new()),
            registry,
        }
    })
}

impl Metrics {
    /// Marks a connector as streaming (ready) or not.
    pub fn set_streaming(&self, connector: &str, streaming: bool) {
        self.streaming
            .with_label_values(&[connector])
            .set(i64::from(streaming));
        if let Ok(mut ready) = self.ready.lock() {
            ready.insert(connector.to_owned(), streaming);
        }
    }

    /// A component of `connector` starts (`true`) or stops retrying a failed call: the
    /// connector is not ready meanwhile.
    pub fn set_retrying(&self, connector: &str, component: &'static str, retrying: bool) {
        self.retrying
            .with_label_values(&[connector, component])
            .set(i64::from(retrying));
        if let Ok(mut now) = self.retrying_now.lock() {
            let key = (connector.to_owned(), component);
            if retrying {
                now.insert(key);
            } else {
                now.remove(&key);
            }
        }
    }

    fn all_ready(&self) -> bool {
        if self.retrying_now.lock().map_or(true, |r| !r.is_empty()) {
            return false;
        }
        self.ready
            .lock()
            .map(|r| !r.is_empty() && r.values().all(|v| *v))
            .unwrap_or(false)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Serves the endpoints on `listen` until `shutdown` turns true.
pub async fn serve(listen: SocketAddr, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics().render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|| async {
                if metrics().all_ready() {
                    (StatusCode::OK, "ready\n").into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not streaming yet\n").into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    info!(address = %listener.local_addr()?, "metrics on /metrics, probes on /healthz and /readyz");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_the_text_format() {
        let m = metrics();
        m.records_sent
            .with_label_values(&["t", "topic.a"])
            .inc_by(3);
        m.set_streaming("t", true);
        let text = m.render();
        assert!(
            text.contains("walcast_records_sent_total{connector=\"t\",topic=\"topic.a\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("walcast_streaming{connector=\"t\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_retrying_component_makes_the_process_not_ready() {
        let m = metrics();
        m.set_streaming("r", true);
        m.set_retrying("r", "registry", true);
        assert!(!m.all_ready());
        assert!(m
            .render()
            .contains("walcast_retrying{component=\"registry\",connector=\"r\"} 1"));
        m.set_retrying("r", "registry", false);
        m.set_streaming("r", false);
        assert!(!m.all_ready(), "not streaming");
    }
}
