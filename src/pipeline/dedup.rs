//! The exactly-once reconciliation state: what Kafka already holds when a connector
//! starts (the position recorded in the offsets topic, and the last position in each
//! partition of the topics it writes), so events PostgreSQL sends again are skipped.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{info, warn};

use super::PipelineError;
use crate::checkpoint::Position;
use crate::config::{Connector, DeliveryMode, SinkKind};
use crate::model::lsn::Lsn;
use crate::sink::checkpoint_record::IncrementalProgress;
use crate::sink::reconcile::Origin;
use crate::sink::topic_map::TopicMap;
use crate::sink::RecordSink;

/// The exactly-once reconciliation state: what Kafka already holds.
pub(super) struct Dedup {
    pub(super) mode: DeliveryMode,
    /// Whose records in Kafka count as this connector's.
    pub(super) origin: Origin,
    /// The server's WAL position at start: recorded positions beyond it are foreign.
    pub(super) wal_now: Lsn,
    /// The incremental snapshot progress recorded with the checkpoint.
    pub(super) recorded_incremental: Option<IncrementalProgress>,
    /// The flush LSN of the checkpoint recorded for this connector in the offsets topic
    /// (in every delivery mode; `None` when there is none, or it is foreign): a slot
    /// lost after it leaves a gap.
    pub(super) recorded_flush_lsn: Option<Lsn>,
    /// Every event at or below this position is in Kafka (the connector's committed
    /// record in the offsets topic).
    pub(super) floor: Option<Position>,
    /// The last position already in each partition, loaded per topic on first use.
    pub(super) present: TopicMap<HashMap<i32, Position>>,
    pub(super) skipped: u64,
    /// Each topic's `walcast_records_sent_total` counter, looked up once (a labelled
    /// lookup per record costs more than the count).
    pub(super) sent_counters: TopicMap<prometheus::IntCounter>,
}

impl Dedup {
    pub(super) async fn load(connector: &Connector) -> Result<Self, PipelineError> {
        let mode = connector.delivery.mode;
        let origin = Origin::new(&connector.name, &system_id(connector).await?);
        if connector.sink == SinkKind::Discard {
            return Ok(Self::starting(
                DeliveryMode::AtLeastOnce,
                origin,
                Lsn(u64::MAX),
            ));
        }
        let record = {
            let settings = connector.kafka.clone();
            let name = connector.name.clone();
            let slot = connector.source.slot.clone();
            let origin = origin.clone();
            tokio::task::spawn_blocking(move || {
                crate::sink::reconcile::committed_position(&settings, &name, &slot, &origin)
            })
            .await
            .map_err(|source| PipelineError::Task {
                what: "reading the recorded checkpoint",
                source,
            })??
        };
        let recorded: Option<Position> = record.as_ref().map(|r| r.position);
        // Positions are LSNs of one PostgreSQL history: a recorded position beyond the
        // server's WAL comes from another cluster (a re-created database, a restore)
        // and must not hide new events.
        let wal_now = current_wal_lsn(connector).await?;
        let foreign = recorded.is_some_and(|p| p.commit_lsn > wal_now);
        if let (true, Some(p)) = (foreign, recorded) {
            warn!(recorded = %p, server_wal = %wal_now, "the offsets topic records a position beyond this server's WAL (another database history under the same connector name?); ignoring it");
        }
        let recorded_incremental = match &record {
            Some(r) if !foreign => r.incremental_snapshot.clone(),
            _ => None,
        };
        let recorded_flush_lsn = record.as_ref().map(|r| r.flush_lsn).filter(|_| !foreign);
        let floor = recorded.filter(|_| !foreign && mode != DeliveryMode::AtLeastOnce);
        if let Some(floor) = floor {
            info!(position = %floor, "resuming: events at or below the recorded position are already in Kafka and are skipped");
        }
        Ok(Self {
            recorded_incremental,
            recorded_flush_lsn,
            floor,
            ..Self::starting(mode, origin, wal_now)
        })
    }

    /// Nothing recorded in the offsets topic: an event is skipped only when its
    /// partition's last record (read on first use) is at or past it.
    pub(super) fn starting(mode: DeliveryMode, origin: Origin, wal_now: Lsn) -> Self {
        Self {
            mode,
            origin,
            wal_now,
            recorded_incremental: None,
            recorded_flush_lsn: None,
            floor: None,
            present: TopicMap::default(),
            skipped: 0,
            sent_counters: TopicMap::default(),
        }
    }

    /// Whether the event at `position` for `partition` of `topic` is already in Kafka.
    pub(super) async fn already_present<S: RecordSink>(
        &mut self,
        sink: &S,
        topic: &Arc<str>,
        partition: i32,
        position: Position,
    ) -> Result<bool, PipelineError> {
        if self.mode == DeliveryMode::AtLeastOnce {
            return Ok(false);
        }
        if self.floor.is_some_and(|floor| position <= floor) {
            return Ok(true);
        }
        if !self.present.contains_key(topic) {
            let mut last = sink.last_positions(topic, &self.origin).await?;
            let wal_now = self.wal_now;
            last.retain(|partition, p| {
                let ours = p.commit_lsn <= wal_now;
                if !ours {
                    warn!(topic = %topic, partition, recorded = %p, server_wal = %wal_now, "the partition's last record is beyond this server's WAL (written from another database history); not using it to skip events");
                }
                ours
            });
            if !last.is_empty() {
                info!(topic = %topic, partitions = last.len(), "exactly-once: resent events at or below each partition's last position are skipped");
            }
            self.present.insert(topic.clone(), last);
        }
        Ok(self.present[topic]
            .get(&partition)
            .is_some_and(|last| position <= *last))
    }

    /// What this process sent also counts as present: after a reconnect the server
    /// resends from the confirmed position, which may lag behind it (a sent record is
    /// acknowledged eventually or stops the connector). Also counts it in
    /// `walcast_records_sent_total`.
    pub(super) fn count_sent(
        &mut self,
        connector: &str,
        topic: &Arc<str>,
        partition: i32,
        position: Position,
    ) {
        if let Some(partitions) = self.present.get_mut(topic) {
            partitions.insert(partition, position);
        }
        self.sent_counters
            .entry(topic.clone())
            .or_insert_with(|| {
                crate::observe::metrics()
                    .records_sent
                    .with_label_values(&[connector, topic])
            })
            .inc();
    }
}

/// The database cluster's system identifier (`IDENTIFY_SYSTEM`, which the replication
/// privilege walcast needs anyway allows).
async fn system_id(connector: &Connector) -> Result<String, PipelineError> {
    let why = |source| PipelineError::Replication {
        doing: "cannot identify the database system".into(),
        source,
    };
    let mut conn = crate::source::replication::ReplicationConnection::connect(&connector.source)
        .await
        .map_err(why)?;
    let identity = conn.identify_system().await.map_err(why)?;
    let _ = conn.stop().await;
    if identity.system_id.is_empty() {
        return Err(PipelineError::Setup(
            "cannot identify the database system: IDENTIFY_SYSTEM returned no systemid".into(),
        ));
    }
    Ok(identity.system_id)
}

/// The server's current WAL position (its replay position on a standby).
pub(super) async fn current_wal_lsn(connector: &Connector) -> Result<Lsn, PipelineError> {
    let client = crate::postgres::connect(&connector.source, None).await?;
    let text: String = client
        .query_one(
            "SELECT COALESCE(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, '0/0')::text",
            &[],
        )
        .await
        .map_err(PipelineError::sql("cannot read the server's WAL position"))?
        .get(0);
    text.parse()
        .map_err(|e: String| PipelineError::Setup(format!("unexpected WAL position {text}: {e}")))
}
