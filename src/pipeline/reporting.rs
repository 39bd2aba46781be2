//! What the run loop reports besides records: lag in seconds, commit→ack latency,
//! snapshot progress (logged every few seconds and shown on `/status`), a broker that
//! stopped acknowledging (the connector then shows as retrying Kafka), and a backlog
//! being caught up.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use tracing::info;

use super::run_loop::{
    Pipeline, CATCHING_UP_LAG, KAFKA_RETRYING_AFTER, OBSERVE_INTERVAL, PROGRESS_LOG_INTERVAL,
};
use crate::model::lsn::Lsn;
use crate::observe::board;
use crate::sink::RecordSink;

/// What the loop keeps to report lag, latency, progress and a stalled broker.
pub(super) struct Watch {
    /// Committed source transactions not yet confirmed: end LSN and commit time (µs
    /// since the Unix epoch), oldest first.
    pub awaiting_ack: std::collections::VecDeque<(Lsn, i64)>,
    /// Row changes in the open source transaction.
    pub tx_changes: u64,
    /// When the loop last received a source event.
    pub last_event: Instant,
    /// Records waited [`KAFKA_RETRYING_AFTER`] without an acknowledgement: the
    /// connector shows as retrying Kafka.
    pub kafka_stalled: bool,
    /// When snapshot progress and catching-up lag were last logged.
    pub progress_logged: Instant,
    pub lag_logged: Option<Instant>,
}

impl Watch {
    pub(super) fn new() -> Self {
        Self {
            awaiting_ack: std::collections::VecDeque::new(),
            tx_changes: 0,
            last_event: Instant::now(),
            kafka_stalled: false,
            progress_logged: Instant::now(),
            lag_logged: None,
        }
    }
}

/// Now, in µs since the Unix epoch.
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Seconds from a commit time (µs since the Unix epoch) to now; never negative (the
/// server's clock may be ahead of this machine's).
fn seconds_since(commit_time_us: i64) -> f64 {
    (now_us().saturating_sub(commit_time_us)).max(0) as f64 / 1e6
}

impl<S: RecordSink> Pipeline<S> {
    /// A source transaction committed and its records were handed over.
    pub(super) fn note_committed(&mut self, end_lsn: Lsn, commit_time_us: i64) {
        self.metrics.transactions.inc();
        self.metrics
            .transaction_changes
            .observe(std::mem::take(&mut self.watch.tx_changes) as f64);
        self.metrics.in_flight.set(self.tracker.in_flight() as i64);
        self.watch.awaiting_ack.push_back((end_lsn, commit_time_us));
    }

    /// The checkpoint reached `flush_lsn`: every transaction up to it is acknowledged.
    pub(super) fn note_acknowledged(&mut self, flush_lsn: Lsn) {
        let mut newest = None;
        while let Some(&(end, time)) = self.watch.awaiting_ack.front() {
            if end > flush_lsn {
                break;
            }
            self.watch.awaiting_ack.pop_front();
            self.metrics.commit_to_ack.observe(seconds_since(time));
            newest = Some(time);
        }
        if let Some(time) = newest {
            self.metrics.last_event_timestamp.set(time as f64 / 1e6);
            self.metrics.lag_seconds.set(seconds_since(time));
        }
        if self.watch.kafka_stalled {
            self.watch.kafka_stalled = false;
            board().set_retrying(&self.connector.name, "kafka", false);
        }
    }

    /// Every [`OBSERVE_INTERVAL`]: the gauges that change without an event (lag while
    /// changes wait, records in flight, the producer's queue), a broker that stopped
    /// acknowledging, and a backlog being caught up.
    pub(super) fn observe(&mut self) {
        let in_flight = self.tracker.in_flight();
        self.metrics.in_flight.set(in_flight as i64);
        self.metrics
            .producer_queue
            .set(self.sink.queue_depth() as i64);
        match self.watch.awaiting_ack.front() {
            // Changes wait: the lag is at least the oldest one's age.
            Some(&(_, time)) => self.metrics.lag_seconds.set(seconds_since(time)),
            None if self.watch.last_event.elapsed() >= OBSERVE_INTERVAL => {
                self.metrics.lag_seconds.set(0.0)
            }
            None => {}
        }
        let stalled = in_flight > 0
            && !self.sink.is_transactional()
            && self.last_ack.elapsed() >= KAFKA_RETRYING_AFTER;
        if stalled && !self.watch.kafka_stalled {
            self.watch.kafka_stalled = true;
            let board = board();
            board.set_retrying(&self.connector.name, "kafka", true);
            board.note_error(
                &self.connector.name,
                format!(
                    "Kafka has acknowledged none of {in_flight} records for {} s",
                    self.last_ack.elapsed().as_secs()
                ),
            );
        }
        self.log_lag();
    }

    /// While the lag is above [`CATCHING_UP_LAG`], says every few seconds how far behind
    /// the connector is; says once when it has caught up.
    fn log_lag(&mut self) {
        let lag = self.metrics.lag_seconds.get();
        let behind = lag >= CATCHING_UP_LAG.as_secs_f64();
        match self.watch.lag_logged {
            Some(at) if behind && at.elapsed() < PROGRESS_LOG_INTERVAL => {}
            _ if behind => {
                self.watch.lag_logged = Some(Instant::now());
                info!(
                    lag_s = format!("{lag:.1}"),
                    lag_bytes = self.metrics.lag_bytes.get(),
                    in_flight = self.tracker.in_flight(),
                    "catching up: {lag:.1} s behind the source"
                );
            }
            Some(_) => {
                self.watch.lag_logged = None;
                info!(lag_s = format!("{lag:.3}"), "caught up with the source");
            }
            None => {}
        }
    }

    /// `rows` snapshot rows of `table` were read (`table_done`: its last among them).
    pub(super) fn note_snapshot_rows(&mut self, table: &str, rows: u64, table_done: bool) {
        board().snapshot_rows(&self.connector.name, table, rows, table_done);
        if self.watch.progress_logged.elapsed() >= PROGRESS_LOG_INTERVAL {
            self.watch.progress_logged = Instant::now();
            log_snapshot_progress(&self.connector.name);
        }
    }
}

/// One line of a snapshot's progress: rows, rate, percent and time left.
pub(super) fn log_snapshot_progress(connector: &str) {
    let Some(f) = board().snapshot_figures(connector) else {
        return;
    };
    let percent = f
        .percent
        .map_or_else(|| "?".to_owned(), |p| format!("{p:.1}"));
    let eta = f.eta_seconds.map_or_else(
        || "unknown".to_owned(),
        |s| format_duration(Duration::from_secs(s)),
    );
    info!(
        rows = f.rows_read,
        rows_per_s = f.rows_per_second as u64,
        percent = %percent,
        eta = %eta,
        tables_done = f.tables_done,
        tables = f.tables_total,
        "snapshot progress: {} rows, {} rows/s, {percent}%, about {eta} left",
        f.rows_read,
        f.rows_per_second as u64
    );
}

/// `1h02m03s`, `4m05s`, `6s`.
fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_hours_minutes_seconds() {
        assert_eq!(format_duration(Duration::from_secs(6)), "6s");
        assert_eq!(format_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(format_duration(Duration::from_secs(3723)), "1h02m03s");
    }

    #[test]
    fn a_commit_in_the_future_is_no_negative_lag() {
        assert_eq!(seconds_since(now_us() + 5_000_000), 0.0);
        assert!(seconds_since(now_us() - 2_000_000) >= 2.0);
    }
}
