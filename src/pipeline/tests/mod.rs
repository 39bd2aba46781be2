//! The run loop without PostgreSQL or Kafka: source events go in by hand (or through
//! the loop's channel), records land in the in-memory sink, and the test decides when
//! Kafka "acknowledges" them. Tokio's clock is paused where time matters.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::dedup::Dedup;
use super::events::EventStage;
use super::incremental::Incremental;
use super::run_loop::{
    Inputs, Outputs, Pipeline, ACK_STALL_WARNING, MAX_TRANSACTION_AGE, MAX_TRANSACTION_RECORDS,
};
use super::PipelineError;
use crate::checkpoint::Position;
use crate::model::change::RowMarker;
use crate::model::change::{RowChange, RowOp, SnapshotRead, TxEvent};
use crate::model::lsn::Lsn;
use crate::model::relation::ReplicaIdentity;
use crate::model::relation::{ColumnInfo, RelationInfo};
use crate::model::value::Value;
use crate::sink::memory::{MemoryHandle, MemorySink};
use crate::sink::reconcile::Origin;
use crate::sink::{DeliveryReport, SinkError};

/// A loop over an in-memory sink, with everything the test watches.
struct Harness {
    pipeline: Pipeline<MemorySink>,
    sink: MemoryHandle,
    reports: mpsc::UnboundedReceiver<DeliveryReport>,
    flushed: watch::Receiver<Lsn>,
    snapshot_done: mpsc::UnboundedReceiver<()>,
}

fn connector(mode: &str) -> Arc<crate::config::Connector> {
    connector_named(mode, "shop")
}

fn connector_named(mode: &str, name: &str) -> Arc<crate::config::Connector> {
    connector_with(mode, name, "")
}

/// A connector with more `[events]` settings.
fn connector_with(mode: &str, name: &str, events: &str) -> Arc<crate::config::Connector> {
    let text = format!(
        r#"name = "{name}"
[source]
dbname = "shopdb"
user = "walcast"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
[delivery]
mode = "{mode}"
[events]
format = "json"
{events}
[tables."public.*"]
"#
    );
    Arc::new(crate::config::parse_connector(std::path::Path::new("shop.toml"), &text).unwrap())
}

fn harness(mode: &str) -> Harness {
    let (sink, handle, reports) = MemorySink::new(mode == "transactional", 3);
    harness_over(connector(mode), sink, handle, reports)
}

/// A loop over `sink` (e.g. reopened over what an earlier instance left in "Kafka").
fn harness_over(
    connector: Arc<crate::config::Connector>,
    sink: MemorySink,
    handle: MemoryHandle,
    reports: mpsc::UnboundedReceiver<DeliveryReport>,
) -> Harness {
    let (flushed_tx, flushed) = watch::channel(Lsn::ZERO);
    let (done_tx, snapshot_done) = mpsc::unbounded_channel();
    let dedup = Dedup::starting(
        connector.delivery.mode,
        Origin::new("shop", "7301"),
        Lsn(u64::MAX),
    );
    let pipeline = Pipeline::new(
        connector.clone(),
        sink,
        EventStage::new(connector.clone(), None),
        dedup,
        Incremental::new(connector),
        Outputs {
            flushed: flushed_tx,
            snapshot_done: done_tx,
        },
    );
    Harness {
        pipeline,
        sink: handle,
        reports,
        flushed,
        snapshot_done,
    }
}

impl Harness {
    /// Hands `events` to the loop one by one, the last with nothing queued behind it.
    async fn feed(&mut self, events: Vec<TxEvent>) -> Result<(), PipelineError> {
        let n = events.len();
        for (i, event) in events.into_iter().enumerate() {
            self.pipeline.on_event(event, i + 1 < n).await?;
        }
        Ok(())
    }

    /// Passes every delivery report the sink made so far to the loop.
    async fn deliver_reports(&mut self) -> Result<(), PipelineError> {
        let mut reports = Vec::new();
        while let Ok(r) = self.reports.try_recv() {
            reports.push(r);
        }
        self.pipeline.on_reports(reports.into_iter()).await
    }

    fn flushed(&self) -> Lsn {
        *self.flushed.borrow()
    }

    /// (commit LSN, index) of every record a read_committed consumer sees, in order.
    fn visible(&self) -> Vec<(u64, u64)> {
        self.sink
            .lock()
            .visible
            .iter()
            .map(|s| (s.record.position.commit_lsn.0, s.record.position.index))
            .collect()
    }
}

fn relation() -> Arc<RelationInfo> {
    let column = |name: &str, oid: u32, key: bool| ColumnInfo {
        is_key: key,
        not_null: key,
        ..ColumnInfo::of_builtin(name, oid).unwrap()
    };
    Arc::new(RelationInfo {
        oid: 16_600,
        schema: "public".into(),
        table: "orders".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![column("id", 23, true), column("note", 25, false)],
        version: 1,
    })
}

fn insert(id: i32, lsn: u64) -> TxEvent {
    TxEvent::Change(RowChange {
        relation: relation(),
        op: RowOp::Insert,
        old: None,
        new: Some(vec![Value::Int4(id), Value::Text(format!("n{id}"))]),
        lsn: Lsn(lsn),
    })
}

/// A whole source transaction of inserts `ids`, committing at `commit` (its WAL ends 8
/// bytes later).
fn transaction(xid: u32, commit: u64, ids: &[i32]) -> Vec<TxEvent> {
    let inserts = ids.iter().map(|&id| insert(id, commit - 10)).collect();
    in_transaction(xid, commit, inserts)
}

/// `middle` between the BEGIN and COMMIT of transaction `xid` committing at `commit`.
fn in_transaction(xid: u32, commit: u64, middle: Vec<TxEvent>) -> Vec<TxEvent> {
    let mut events = vec![TxEvent::Begin {
        xid,
        commit_lsn: Lsn(commit),
        commit_time_us: 1_700_000_000_000_000,
    }];
    events.extend(middle);
    events.push(TxEvent::Commit {
        xid,
        commit_lsn: Lsn(commit),
        end_lsn: Lsn(commit + 8),
        commit_time_us: 1_700_000_000_000_000,
    });
    events
}

#[tokio::test]
async fn acknowledgements_out_of_order_move_the_checkpoint_only_past_whole_transactions() {
    let mut h = harness("exactly_once");
    h.sink.hold_reports();
    let mut events = transaction(1, 1_000, &[1, 2]);
    events.extend(transaction(2, 2_000, &[3]));
    h.feed(events).await.unwrap();
    assert_eq!(h.sink.unreported(), 3);

    // The second transaction's record, then the first's second: nothing whole yet.
    h.sink.release(&[2, 1], &[]);
    h.deliver_reports().await.unwrap();
    assert_eq!(
        h.flushed(),
        Lsn::ZERO,
        "transaction 1 is not acknowledged whole"
    );

    h.sink.release_all();
    h.deliver_reports().await.unwrap();
    assert_eq!(h.flushed(), Lsn(2_008), "both transactions acknowledged");
    assert_eq!(
        h.pipeline.tracker.checkpoint().unwrap().position,
        Position {
            commit_lsn: Lsn(2_000),
            index: 0
        }
    );
}

#[tokio::test]
async fn a_rejected_record_stops_the_connector_naming_its_transaction() {
    let mut h = harness("exactly_once");
    h.sink.hold_reports();
    let mut events = transaction(1, 1_000, &[1]);
    events.extend(transaction(2, 2_000, &[2]));
    h.feed(events).await.unwrap();
    h.sink.release(&[0, 1], &[1]);
    let err = h.deliver_reports().await.unwrap_err();
    match err {
        PipelineError::Sink(SinkError::Delivery { commit_lsn, .. }) => {
            assert_eq!(commit_lsn, Lsn(2_000))
        }
        other => panic!("unexpected error {other}"),
    }
    // The loop stops on the failed report, before it moves the checkpoint: PostgreSQL
    // sends both transactions again after the restart.
    assert_eq!(h.flushed(), Lsn::ZERO);
}

#[tokio::test]
async fn a_restart_skips_what_kafka_already_holds_and_sends_the_rest_once() {
    let mut h = harness("exactly_once");
    let mut first = transaction(1, 1_000, &[1, 2]);
    first.extend(transaction(2, 2_000, &[3]));
    h.feed(first.clone()).await.unwrap();
    // Killed before it could confirm anything: PostgreSQL resends from the start.
    let (sink, reports) = h.pipeline.sink.reopen();
    let handle = sink.handle();
    let mut again = harness_over(connector("exactly_once"), sink, handle, reports);
    let mut resent = first;
    resent.extend(transaction(3, 3_000, &[4]));
    again.feed(resent).await.unwrap();
    again.deliver_reports().await.unwrap();

    assert_eq!(
        again.visible(),
        vec![(1_000, 0), (1_000, 1), (2_000, 0), (3_000, 0)],
        "every change once, in order"
    );
    assert_eq!(again.pipeline.dedup.skipped, 3);
    assert_eq!(again.flushed(), Lsn(3_008));
}

#[tokio::test]
async fn a_reconnect_mid_transaction_sends_the_transaction_once() {
    let mut h = harness("exactly_once");
    let whole = transaction(1, 1_000, &[1, 2, 3]);
    // Two changes, the connection drops, the server sends the transaction again.
    let mut events = whole[..3].to_vec();
    events.push(TxEvent::Restarted);
    events.extend(whole.clone());
    h.feed(events).await.unwrap();
    h.deliver_reports().await.unwrap();
    assert_eq!(h.visible(), vec![(1_000, 0), (1_000, 1), (1_000, 2)]);
    assert_eq!(h.flushed(), Lsn(1_008));

    // At least once, the resent changes may repeat, but none is lost and the
    // checkpoint still moves.
    let mut h = harness("at_least_once");
    let mut events = whole[..3].to_vec();
    events.push(TxEvent::Restarted);
    events.extend(whole);
    h.feed(events).await.unwrap();
    h.deliver_reports().await.unwrap();
    let seen = h.visible();
    for index in 0..3 {
        assert!(seen.contains(&(1_000, index)), "{seen:?}");
    }
    assert_eq!(h.flushed(), Lsn(1_008));
}

#[tokio::test]
async fn a_snapshot_hands_over_to_the_stream_and_completes_once_acknowledged() {
    let mut h = harness("exactly_once");
    h.sink.hold_reports();
    let rows = (1..=2)
        .map(|id| SnapshotRead {
            row: vec![Value::Int4(id), Value::Text("s".into())],
            marker: RowMarker::Middle,
            key: Some(format!("[\"{id}\"]").into_bytes()),
        })
        .collect();
    let mut events = vec![
        TxEvent::SnapshotStarted {
            consistent_point: Lsn(500),
        },
        TxEvent::SnapshotRows {
            relation: relation(),
            rows,
        },
        TxEvent::SnapshotCompleted {
            consistent_point: Lsn(500),
        },
    ];
    events.extend(transaction(7, 900, &[10]));
    h.feed(events).await.unwrap();
    assert!(h.snapshot_done.try_recv().is_err(), "not acknowledged yet");

    h.sink.release_all();
    h.deliver_reports().await.unwrap();
    // Snapshot rows sort before the stream: at the consistent point minus one.
    assert_eq!(h.visible(), vec![(499, 0), (499, 1), (900, 0)]);
    assert!(
        h.snapshot_done.try_recv().is_ok(),
        "snapshot recorded complete"
    );
    assert!(h.snapshot_done.try_recv().is_err(), "once");
    assert_eq!(h.flushed(), Lsn(908));
    let keys: Vec<bool> = h
        .sink
        .lock()
        .visible
        .iter()
        .map(|s| {
            s.record
                .headers
                .iter()
                .any(|(k, _)| *k == crate::sink::kafka::HEADER_SNAPSHOT_KEY)
        })
        .collect();
    assert_eq!(
        keys,
        vec![true, true, false],
        "snapshot rows carry their key"
    );
}

#[tokio::test(start_paused = true)]
async fn a_kafka_transaction_is_committed_at_a_quiet_boundary_or_when_old() {
    let mut h = harness("transactional");
    // More queued behind the first transaction: its Kafka transaction stays open.
    for event in transaction(1, 1_000, &[1]) {
        h.pipeline.on_event(event, true).await.unwrap();
    }
    assert_eq!(h.sink.lock().commits, 0);
    assert!(
        h.visible().is_empty(),
        "read_committed sees nothing before the commit"
    );
    // Not yet old: the timer's commit waits.
    h.pipeline.commit_batch(false, false).await.unwrap();
    assert_eq!(h.sink.lock().commits, 0);
    tokio::time::advance(MAX_TRANSACTION_AGE).await;
    h.pipeline.commit_batch(false, false).await.unwrap();
    assert_eq!(h.sink.lock().commits, 1, "committed once old");
    assert_eq!(h.flushed(), Lsn(1_008));
    // Nothing queued behind transaction 2's commit: committed at once.
    h.feed(transaction(2, 2_000, &[2])).await.unwrap();
    assert_eq!(h.sink.lock().commits, 2);
    assert_eq!(h.visible(), vec![(1_000, 0), (2_000, 0)]);
    let checkpoints = h.sink.lock().checkpoints.clone();
    assert_eq!(
        checkpoints.iter().map(|c| c.position).collect::<Vec<_>>(),
        vec![
            Position {
                commit_lsn: Lsn(1_000),
                index: 0
            },
            Position {
                commit_lsn: Lsn(2_000),
                index: 0
            }
        ],
        "each commit holds the checkpoint record of its last record"
    );
    assert_eq!(h.flushed(), Lsn(2_008));
}

#[tokio::test]
async fn a_snapshot_in_transactional_mode_commits_every_50000_rows() {
    let mut h = harness("transactional");
    let rows: Vec<SnapshotRead> = (0..MAX_TRANSACTION_RECORDS as i32 + 1)
        .map(|id| SnapshotRead {
            row: vec![Value::Int4(id), Value::Null],
            marker: RowMarker::Middle,
            key: None,
        })
        .collect();
    h.feed(vec![
        TxEvent::SnapshotStarted {
            consistent_point: Lsn(500),
        },
        TxEvent::SnapshotRows {
            relation: relation(),
            rows,
        },
    ])
    .await
    .unwrap();
    assert_eq!(h.sink.lock().commits, 1, "one full batch committed");
    assert_eq!(h.sink.lock().visible.len(), MAX_TRANSACTION_RECORDS);
    // A snapshot commits no checkpoint past its rows until it is complete.
    assert_eq!(h.flushed(), Lsn::ZERO);
    h.feed(vec![TxEvent::SnapshotCompleted {
        consistent_point: Lsn(500),
    }])
    .await
    .unwrap();
    assert_eq!(h.sink.lock().commits, 2);
    assert_eq!(h.flushed(), Lsn(500));
}

#[tokio::test]
async fn a_failed_kafka_commit_confirms_nothing_it_held() {
    let mut h = harness("transactional");
    h.sink
        .fail_next_commit("Broker: Transaction coordinator fenced");
    let err = h.feed(transaction(1, 1_000, &[1, 2])).await.unwrap_err();
    assert!(err.to_string().contains("fenced"), "{err}");
    assert!(h.visible().is_empty());
    assert_eq!(h.sink.lock().aborts, 1);
    assert_eq!(h.flushed(), Lsn::ZERO);
}

/// The loop itself, through its channels: events, reports, the batch timer, shutdown,
/// and the drain after it.
struct Running {
    events: mpsc::Sender<TxEvent>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Stopped>,
    sink: MemoryHandle,
    flushed: watch::Receiver<Lsn>,
}

/// The harness after the loop, with the loop's result and the drain's.
type Stopped = (Harness, Result<(), PipelineError>, Result<(), SinkError>);

fn start(mut h: Harness) -> Running {
    let (events_tx, events) = mpsc::channel(64);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (_slot_lost_tx, slot_lost) = mpsc::channel(1);
    let sink = h.sink.clone();
    let flushed = h.flushed.clone();
    let task = tokio::spawn(async move {
        let reports = std::mem::replace(&mut h.reports, mpsc::unbounded_channel().1);
        let mut inputs = Inputs {
            events,
            reports,
            shutdown,
            slot_lost,
        };
        let _keep = _slot_lost_tx;
        let result = h.pipeline.run_active(&mut inputs).await;
        let drained = h.pipeline.drain(&result, &mut inputs.reports).await;
        (h, result, drained)
    });
    Running {
        events: events_tx,
        shutdown: shutdown_tx,
        task,
        sink,
        flushed,
    }
}

#[tokio::test(start_paused = true)]
async fn the_batch_timer_commits_a_kafka_transaction_left_open_at_a_boundary() {
    let running = start(harness("transactional"));
    // An Idle queued behind the commit keeps the Kafka transaction open at the boundary.
    let mut events = transaction(1, 1_000, &[1]);
    events.push(TxEvent::Idle {
        wal_end: Lsn(1_008),
    });
    for event in events {
        running.events.send(event).await.unwrap();
    }
    let mut flushed = running.flushed.clone();
    tokio::time::timeout(
        MAX_TRANSACTION_AGE * 3,
        flushed.wait_for(|l| *l == Lsn(1_008)),
    )
    .await
    .expect("committed by the timer")
    .unwrap();
    assert_eq!(running.sink.lock().commits, 1);
    running.shutdown.send(true).unwrap();
    let (_, result, drained) = running.task.await.unwrap();
    assert!(result.is_ok() && drained.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn shutdown_drains_what_was_sent_and_records_the_checkpoint() {
    let h = harness("exactly_once");
    h.sink.hold_reports();
    let running = start(h);
    for event in transaction(1, 1_000, &[1, 2]) {
        running.events.send(event).await.unwrap();
    }
    while running.sink.unreported() < 2 {
        tokio::task::yield_now().await;
    }
    // Kafka acknowledges; the loop stops (shutdown wins the loop's next turn) and
    // drains.
    running.sink.release_all();
    running.shutdown.send(true).unwrap();
    let (h, result, drained) = running.task.await.unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(drained.is_ok(), "{drained:?}");
    assert_eq!(h.flushed(), Lsn(1_008));
    let checkpoints = h.sink.lock().checkpoints.clone();
    assert_eq!(
        checkpoints.last().map(|c| (c.position, c.flush_lsn)),
        Some((
            Position {
                commit_lsn: Lsn(1_000),
                index: 1
            },
            Lsn(1_008)
        )),
        "the final checkpoint is recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn shutdown_mid_transaction_aborts_the_kafka_transaction_and_confirms_nothing() {
    let running = start(harness("transactional"));
    let whole = transaction(1, 1_000, &[1, 2]);
    for event in whole[..2].iter().cloned() {
        running.events.send(event).await.unwrap();
    }
    while running.events.capacity() < 64 {
        tokio::task::yield_now().await;
    }
    running.shutdown.send(true).unwrap();
    let (h, result, drained) = running.task.await.unwrap();
    assert!(result.is_ok() && drained.is_ok());
    assert!(
        h.visible().is_empty(),
        "the half transaction never becomes visible"
    );
    assert_eq!(h.flushed(), Lsn::ZERO);
    assert!(h.sink.lock().commits == 0);
}

#[tokio::test(start_paused = true)]
async fn records_unacknowledged_for_30_s_are_reported_every_30_s() {
    let mut h = harness("exactly_once");
    h.sink.hold_reports();
    h.feed(transaction(1, 1_000, &[1])).await.unwrap();
    assert!(!h.pipeline.check_stall(), "just sent");
    tokio::time::advance(ACK_STALL_WARNING).await;
    assert!(h.pipeline.check_stall(), "30 s without an acknowledgement");
    tokio::time::advance(ACK_STALL_WARNING / 6).await;
    assert!(!h.pipeline.check_stall(), "not again at once");
    tokio::time::advance(ACK_STALL_WARNING).await;
    assert!(h.pipeline.check_stall(), "again 30 s later");
    h.sink.release_all();
    h.deliver_reports().await.unwrap();
    tokio::time::advance(ACK_STALL_WARNING * 2).await;
    assert!(!h.pipeline.check_stall(), "nothing in flight");
}

#[tokio::test]
async fn the_loop_counts_events_by_table_and_op_and_measures_commit_to_ack() {
    // A connector name of its own: the metrics are process-wide.
    let (sink, handle, reports) = MemorySink::new(false, 3);
    let mut h = harness_over(
        connector_named("exactly_once", "counted"),
        sink,
        handle,
        reports,
    );
    let m = h.pipeline.metrics.clone();
    let events = m.events("public.orders", 'c');
    let (before, latencies) = (events.get(), m.commit_to_ack.get_sample_count());
    h.sink.hold_reports();
    let mut batch = transaction(1, 1_000, &[1, 2]);
    batch.extend(transaction(2, 2_000, &[3]));
    h.feed(batch).await.unwrap();
    assert_eq!(events.get() - before, 3, "counted as they are sent");
    assert_eq!(h.pipeline.watch.awaiting_ack.len(), 2);
    // The commits are long past: while they wait, the lag is their age.
    h.pipeline.observe();
    assert!(m.lag_seconds.get() > 1_000_000.0, "{}", m.lag_seconds.get());

    h.sink.release_all();
    h.deliver_reports().await.unwrap();
    assert!(h.pipeline.watch.awaiting_ack.is_empty());
    assert_eq!(m.commit_to_ack.get_sample_count() - latencies, 2);
    assert_eq!(m.last_event_timestamp.get(), 1_700_000_000.0);
    assert_eq!(m.confirmed_lsn.get(), 2_008);
}

mod event_shapes;
