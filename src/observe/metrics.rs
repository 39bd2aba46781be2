//! The Prometheus series walcast exports, every one labelled by connector (except
//! `walcast_build_info` and the process collector's `process_*`). The hot paths use a
//! [`ConnectorMetrics`]: one connector's handles, looked up once, so counting an event
//! is an atomic add and no label hashing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::model::lsn::Lsn;

/// Every metric walcast exports.
pub struct Metrics {
    registry: Registry,
    /// Data events handed to Kafka, by connector, table and op (c, u, d, r, t, m).
    pub events: IntCounterVec,
    /// Records handed to Kafka, by connector and topic.
    pub records_sent: IntCounterVec,
    /// Bytes of keys, values and headers handed to Kafka.
    pub bytes_produced: IntCounterVec,
    /// Records not sent again after a restart because their partition already held them.
    pub records_skipped: IntCounterVec,
    /// Committed source transactions processed.
    pub transactions: IntCounterVec,
    /// Kafka transactions committed (`[delivery] mode = "transactional"`).
    pub kafka_transactions: IntCounterVec,
    /// The flush LSN confirmed to PostgreSQL (bytes into the WAL).
    pub confirmed_lsn: IntGaugeVec,
    /// The end of the WAL the server has reported.
    pub server_wal_end: IntGaugeVec,
    /// Server WAL end - confirmed flush LSN.
    pub lag_bytes: IntGaugeVec,
    /// Now - commit time of the newest acknowledged change (0 when caught up).
    pub lag_seconds: GaugeVec,
    /// Unix time of the source commit of the newest acknowledged event.
    pub last_event_timestamp: GaugeVec,
    /// Records handed to the producer and not yet acknowledged.
    pub in_flight: IntGaugeVec,
    /// Messages in librdkafka's producer queue (queued or in flight to the broker).
    pub producer_queue: IntGaugeVec,
    /// Source commit → Kafka acknowledgement of the transaction's last record.
    pub commit_to_ack: HistogramVec,
    /// Records per delivery batch: a Kafka transaction (transactional mode) or the
    /// records one drain of delivery reports acknowledges.
    pub batch_records: HistogramVec,
    /// Row changes per source transaction.
    pub transaction_changes: HistogramVec,
    /// Failed deliveries, by kind.
    pub delivery_errors: IntCounterVec,
    /// Reconnections and retries after transient failures, by component.
    pub reconnects: IntCounterVec,
    /// 1 while the connector streams, 0 otherwise (`walcast_connector_state` says more).
    pub streaming: IntGaugeVec,
    /// 1 while a component of the connector retries a failed call.
    pub retrying: IntGaugeVec,
    /// 1 for the connector's current state.
    pub connector_state: IntGaugeVec,
    /// Schema registry requests, by kind (register, lookup).
    pub registry_requests: IntCounterVec,
    /// Schema registry requests that failed, by kind.
    pub registry_errors: IntCounterVec,
    /// Schema ids served from the client's cache.
    pub registry_cache_hits: IntCounterVec,
    /// Bytes of large streamed transactions held until their commit (memory and disk).
    pub spool_bytes: IntGaugeVec,
    /// Bytes of large streamed transactions written to spill files.
    pub spool_spilled_bytes: IntCounterVec,
    /// WAL the slot keeps on the server (current WAL - restart_lsn).
    pub slot_retained_wal: IntGaugeVec,
    /// The slot's safe_wal_size (-1: unlimited or unknown).
    pub slot_safe_wal_size: IntGaugeVec,
    /// 1 for the slot's current wal_status, by status.
    pub slot_wal_status: IntGaugeVec,
    /// Rows read by the running (or last) snapshot, by table.
    pub snapshot_rows_read: IntGaugeVec,
    /// PostgreSQL's estimate of each snapshotted table's rows.
    pub snapshot_rows_estimated: IntGaugeVec,
    /// Tables in the running (or last) snapshot, and of those the ones read completely.
    pub snapshot_tables: IntGaugeVec,
    pub snapshot_tables_done: IntGaugeVec,
    connectors: Mutex<HashMap<String, Arc<ConnectorMetrics>>>,
}

struct Builder<'a>(&'a Registry);

impl Builder<'_> {
    fn register<M: prometheus::core::Collector + Clone + 'static>(&self, name: &str, m: M) -> M {
        self.0
            .register(Box::new(m.clone()))
            .unwrap_or_else(|e| panic!("metric {name}: {e}"));
        m
    }

    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let c = IntCounterVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|e| panic!("metric {name}: {e}"));
        self.register(name, c)
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let g = IntGaugeVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|e| panic!("metric {name}: {e}"));
        self.register(name, g)
    }

    fn float_gauge(&self, name: &str, help: &str) -> GaugeVec {
        let g = GaugeVec::new(Opts::new(name, help), &["connector"])
            .unwrap_or_else(|e| panic!("metric {name}: {e}"));
        self.register(name, g)
    }

    fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> HistogramVec {
        let h = HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets),
            &["connector"],
        )
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
        self.register(name, h)
    }
}

/// The process-wide metrics (created on first use; names are fixed, so this can't fail
/// at run time).
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let registry = Registry::new();
        let b = Builder(&registry);
        let c = &["connector"];
        let build_info = b.gauge(
            "walcast_build_info",
            "Always 1; the version of the running walcast",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            let _ = registry.register(Box::new(process));
        }
        let sizes = prometheus::exponential_buckets(1.0, 4.0, 10).unwrap_or_default();
        Metrics {
            events: b.counter(
                "walcast_events_total",
                "Data events handed to Kafka, by table and op (c, u, d, r, t; m for logical decoding messages, table \"\")",
                &["connector", "table", "op"],
            ),
            records_sent: b.counter(
                "walcast_records_sent_total",
                "Records handed to Kafka (events, tombstones, transaction metadata)",
                &["connector", "topic"],
            ),
            bytes_produced: b.counter(
                "walcast_bytes_produced_total",
                "Bytes of keys, values and headers handed to Kafka",
                c,
            ),
            records_skipped: b.counter(
                "walcast_records_skipped_total",
                "Resent records skipped because their partition already holds them (exactly-once)",
                c,
            ),
            transactions: b.counter(
                "walcast_transactions_total",
                "Committed source transactions processed",
                c,
            ),
            kafka_transactions: b.counter(
                "walcast_kafka_transactions_total",
                "Kafka transactions committed (transactional delivery)",
                c,
            ),
            confirmed_lsn: b.gauge(
                "walcast_confirmed_flush_lsn",
                "Flush LSN confirmed to PostgreSQL (the checkpoint)",
                c,
            ),
            server_wal_end: b.gauge(
                "walcast_server_wal_end_lsn",
                "End of the WAL as the server last reported it (polled every few seconds)",
                c,
            ),
            lag_bytes: b.gauge(
                "walcast_lag_bytes",
                "Server WAL end - confirmed flush LSN",
                c,
            ),
            lag_seconds: b.float_gauge(
                "walcast_lag_seconds",
                "Now - source commit time of the newest change Kafka acknowledged; rises while changes wait, 0 when caught up",
            ),
            last_event_timestamp: b.float_gauge(
                "walcast_last_event_timestamp_seconds",
                "Unix time of the source commit of the newest event Kafka acknowledged",
            ),
            in_flight: b.gauge(
                "walcast_records_in_flight",
                "Records sent to Kafka and not yet acknowledged",
                c,
            ),
            producer_queue: b.gauge(
                "walcast_producer_queue_messages",
                "Messages in the Kafka producer's queue (waiting or in flight to the broker)",
                c,
            ),
            commit_to_ack: b.histogram(
                "walcast_commit_to_ack_seconds",
                "Source commit to Kafka's acknowledgement of the transaction's last record",
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0, 300.0,
                ],
            ),
            batch_records: b.histogram(
                "walcast_batch_records",
                "Records per delivery batch (a Kafka transaction, or one drain of delivery reports)",
                sizes.clone(),
            ),
            transaction_changes: b.histogram(
                "walcast_transaction_changes",
                "Row changes per source transaction",
                sizes,
            ),
            delivery_errors: b.counter(
                "walcast_delivery_errors_total",
                "Failed deliveries to Kafka, by kind (rejected, timeout, transaction)",
                &["connector", "kind"],
            ),
            reconnects: b.counter(
                "walcast_reconnects_total",
                "Reconnections and retries after transient failures, by component",
                &["connector", "component"],
            ),
            streaming: b.gauge(
                "walcast_streaming",
                "1 while the connector streams changes",
                c,
            ),
            retrying: b.gauge(
                "walcast_retrying",
                "1 while a component of the connector retries a failed call (the connector waits meanwhile)",
                &["connector", "component"],
            ),
            connector_state: b.gauge(
                "walcast_connector_state",
                "1 for the connector's current state (starting, snapshotting, streaming, retrying, stopped, failed)",
                &["connector", "state"],
            ),
            registry_requests: b.counter(
                "walcast_registry_requests_total",
                "HTTP requests to the schema registry, by kind (register, lookup)",
                &["connector", "kind"],
            ),
            registry_errors: b.counter(
                "walcast_registry_errors_total",
                "Schema registry requests that failed (after their retries), by kind",
                &["connector", "kind"],
            ),
            registry_cache_hits: b.counter(
                "walcast_registry_cache_hits_total",
                "Schema ids served from the registry client's cache",
                c,
            ),
            spool_bytes: b.gauge(
                "walcast_spool_bytes",
                "Bytes of large streamed transactions held until their commit (memory and disk)",
                c,
            ),
            spool_spilled_bytes: b.counter(
                "walcast_spool_spilled_bytes_total",
                "Bytes of large streamed transactions written to spill files in [source] spool_dir",
                c,
            ),
            slot_retained_wal: b.gauge(
                "walcast_slot_retained_wal_bytes",
                "WAL the replication slot keeps on the server (current WAL position - restart_lsn)",
                c,
            ),
            slot_safe_wal_size: b.gauge(
                "walcast_slot_safe_wal_size_bytes",
                "WAL that can still be written before the slot is at risk of invalidation (-1: unlimited)",
                c,
            ),
            slot_wal_status: b.gauge(
                "walcast_slot_wal_status",
                "1 for the slot's current wal_status (reserved, extended, unreserved, lost)",
                &["connector", "status"],
            ),
            snapshot_rows_read: b.gauge(
                "walcast_snapshot_rows_read",
                "Rows read by the running (or last) snapshot, by table",
                &["connector", "table"],
            ),
            snapshot_rows_estimated: b.gauge(
                "walcast_snapshot_rows_estimated",
                "PostgreSQL's estimate of the rows of each table being snapshotted (pg_class.reltuples; -1 unknown)",
                &["connector", "table"],
            ),
            snapshot_tables: b.gauge(
                "walcast_snapshot_tables",
                "Tables in the running (or last) snapshot",
                c,
            ),
            snapshot_tables_done: b.gauge(
                "walcast_snapshot_tables_done",
                "Tables of the running (or last) snapshot read completely",
                c,
            ),
            connectors: Mutex::new(HashMap::new()),
            registry,
        }
    })
}

impl Metrics {
    /// One connector's handles (the same `Arc` for every caller).
    pub fn connector(&self, name: &str) -> Arc<ConnectorMetrics> {
        let mut all = self
            .connectors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.entry(name.to_owned())
            .or_insert_with(|| Arc::new(ConnectorMetrics::new(self, name)))
            .clone()
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Every series now, for `/status`.
    pub(crate) fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }
}

/// One connector's series, resolved once.
pub struct ConnectorMetrics {
    name: String,
    pub transactions: IntCounter,
    pub records_skipped: IntCounter,
    pub kafka_transactions: IntCounter,
    pub bytes_produced: IntCounter,
    pub confirmed_lsn: IntGauge,
    pub server_wal_end: IntGauge,
    pub lag_bytes: IntGauge,
    pub lag_seconds: Gauge,
    pub last_event_timestamp: Gauge,
    pub in_flight: IntGauge,
    pub producer_queue: IntGauge,
    pub commit_to_ack: Histogram,
    pub batch_records: Histogram,
    pub transaction_changes: Histogram,
    events: Mutex<HashMap<(String, char), IntCounter>>,
}

impl ConnectorMetrics {
    fn new(m: &Metrics, name: &str) -> Self {
        let l = &[name];
        // Series that count failures exist at 0 from the start, so a rate or an alert
        // over them has a value before the first failure.
        for kind in ["rejected", "timeout", "transaction"] {
            m.delivery_errors.with_label_values(&[name, kind]);
        }
        for component in ["postgres", "kafka", "registry"] {
            m.reconnects.with_label_values(&[name, component]);
            m.retrying.with_label_values(&[name, component]);
        }
        Self {
            name: name.to_owned(),
            transactions: m.transactions.with_label_values(l),
            records_skipped: m.records_skipped.with_label_values(l),
            kafka_transactions: m.kafka_transactions.with_label_values(l),
            bytes_produced: m.bytes_produced.with_label_values(l),
            confirmed_lsn: m.confirmed_lsn.with_label_values(l),
            server_wal_end: m.server_wal_end.with_label_values(l),
            lag_bytes: m.lag_bytes.with_label_values(l),
            lag_seconds: m.lag_seconds.with_label_values(l),
            last_event_timestamp: m.last_event_timestamp.with_label_values(l),
            in_flight: m.in_flight.with_label_values(l),
            producer_queue: m.producer_queue.with_label_values(l),
            commit_to_ack: m.commit_to_ack.with_label_values(l),
            batch_records: m.batch_records.with_label_values(l),
            transaction_changes: m.transaction_changes.with_label_values(l),
            events: Mutex::new(HashMap::new()),
        }
    }

    /// The counter of `op` events on `table` (looked up once per table and op by the
    /// event stage, which keeps it with the table's state).
    pub fn events(&self, table: &str, op: char) -> IntCounter {
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        events
            .entry((table.to_owned(), op))
            .or_insert_with(|| {
                metrics().events.with_label_values(&[
                    &self.name,
                    table,
                    op.encode_utf8(&mut [0; 4]),
                ])
            })
            .clone()
    }

    /// The checkpoint confirmed to PostgreSQL moved.
    pub fn set_confirmed(&self, lsn: Lsn) {
        self.confirmed_lsn.set(lsn.0 as i64);
        self.update_lag_bytes();
    }

    /// The server reported (or a poll read) the end of its WAL.
    pub fn set_server_wal_end(&self, lsn: Lsn) {
        self.server_wal_end.set(lsn.0 as i64);
        self.update_lag_bytes();
    }

    fn update_lag_bytes(&self) {
        let (end, confirmed) = (self.server_wal_end.get(), self.confirmed_lsn.get());
        if end > 0 && confirmed > 0 {
            self.lag_bytes.set((end - confirmed).max(0));
        }
    }
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
        m.connector("t").events("public.orders", 'c').inc_by(2);
        let text = m.render();
        assert!(
            text.contains("walcast_records_sent_total{connector=\"t\",topic=\"topic.a\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "walcast_events_total{connector=\"t\",op=\"c\",table=\"public.orders\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("walcast_build_info{version=\""), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    #[test]
    fn lag_bytes_follow_the_server_end_and_the_checkpoint() {
        let c = metrics().connector("lag-bytes");
        c.set_server_wal_end(Lsn(1_000));
        assert_eq!(
            c.lag_bytes.get(),
            0,
            "nothing confirmed yet: unknown, not 1000"
        );
        c.set_confirmed(Lsn(400));
        assert_eq!(c.lag_bytes.get(), 600);
        c.set_server_wal_end(Lsn(1_500));
        assert_eq!(c.lag_bytes.get(), 1_100);
        c.set_confirmed(Lsn(1_600));
        assert_eq!(c.lag_bytes.get(), 0, "confirmed past an older server end");
    }
}
