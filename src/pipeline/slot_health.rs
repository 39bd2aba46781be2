//! Watches the connector's replication slot as an on-call engineer would: how much WAL
//! it holds back on the server (`pg_current_wal_lsn() - restart_lsn`), its `wal_status`
//! and `safe_wal_size` (PostgreSQL 13+), polled on a schedule and exported as metrics,
//! with a warning when the retained WAL passes `[source] retained_wal_warning` or the
//! slot becomes `unreserved`, and an error that stops the connector when it is `lost`.
//! The poll also keeps `walcast_server_wal_end_lsn` fresh under load (keepalives, which
//! carry the server's WAL end, only come between transactions).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::Client;
use tracing::{debug, warn};

use super::PipelineError;
use crate::config::Connector;
use crate::model::lsn::Lsn;

/// How often the slot is read.
pub const SLOT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// `wal_status` values, in PostgreSQL's order of worsening.
const WAL_STATUSES: [&str; 4] = ["reserved", "extended", "unreserved", "lost"];

/// One reading of the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotHealth {
    /// `None` before PostgreSQL 13.
    pub wal_status: Option<String>,
    /// Bytes of WAL the slot keeps on the server.
    pub retained_bytes: u64,
    /// Bytes that can still be written before the slot is at risk; `None` when
    /// `max_slot_wal_keep_size` is unlimited (or before PostgreSQL 13).
    pub safe_wal_size: Option<i64>,
    /// The server's WAL position now.
    pub wal_now: Lsn,
}

/// What has already been said, so each warning is logged once per crossing.
#[derive(Debug, Default)]
pub struct Alarms {
    retained: bool,
    unreserved: bool,
}

impl Alarms {
    /// The new warnings for `health` (each once until the condition clears), or the
    /// error for a lost slot.
    pub fn check(
        &mut self,
        slot: &str,
        health: &SlotHealth,
        bound: u64,
    ) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        match health.wal_status.as_deref() {
            Some("lost") => {
                return Err(format!(
                    "slot {slot} was invalidated (wal_status = lost: PostgreSQL removed WAL it still needed, e.g. past max_slot_wal_keep_size), so the changes since walcast's last checkpoint are gone; set [source] snapshot_mode = \"when_needed\" to take a new snapshot, or run once with walcast run --accept-slot-loss to accept the gap"
                ))
            }
            Some("unreserved") => {
                if !std::mem::replace(&mut self.unreserved, true) {
                    out.push(format!(
                        "slot {slot} is unreserved: it holds {} of WAL, past max_slot_wal_keep_size, and PostgreSQL will invalidate it at its next checkpoint unless walcast catches up; check that Kafka and the registry keep up, or raise max_slot_wal_keep_size",
                        human_bytes(health.retained_bytes)
                    ));
                }
            }
            _ => self.unreserved = false,
        }
        if health.retained_bytes > bound {
            if !std::mem::replace(&mut self.retained, true) {
                out.push(format!(
                    "slot {slot} holds {} of WAL on the server, more than [source] retained_wal_warning = {}{}; walcast is behind (see walcast_server_wal_end_lsn - walcast_confirmed_flush_lsn) or stopped confirming",
                    human_bytes(health.retained_bytes),
                    human_bytes(bound),
                    health
                        .safe_wal_size
                        .map(|s| format!(" (safe_wal_size: {} left before PostgreSQL may invalidate it)", human_bytes(s.max(0) as u64)))
                        .unwrap_or_default()
                ));
            }
        } else {
            self.retained = false;
        }
        Ok(out)
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size {
            return format!("{:.1} {unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes} B")
}

/// Reads the slot (`None` when it does not exist).
pub async fn read(
    client: &Client,
    slot: &str,
) -> Result<Option<SlotHealth>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "WITH now AS (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn)
             SELECT to_jsonb(s) ->> 'wal_status',
                    (to_jsonb(s) ->> 'safe_wal_size')::bigint,
                    greatest(coalesce(pg_wal_lsn_diff(now.lsn, s.restart_lsn), 0), 0)::bigint,
                    now.lsn::text
             FROM pg_replication_slots s, now WHERE s.slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|r| SlotHealth {
        wal_status: r.get(0),
        safe_wal_size: r.get(1),
        retained_bytes: r.get::<_, i64>(2).max(0) as u64,
        wal_now: r
            .get::<_, Option<String>>(3)
            .and_then(|l| l.parse().ok())
            .unwrap_or_default(),
    }))
}

/// Polls the slot every [`SLOT_CHECK_INTERVAL`] (the first time at once) until the
/// pipeline drops `fatal`; exports what it reads, logs warnings, and sends the error
/// that stops the connector when the slot is lost. A failed read is retried at the next
/// tick (the replication connection reports the outage itself).
pub async fn watch(connector: Arc<Connector>, fatal: mpsc::Sender<PipelineError>) {
    let metrics = crate::observe::metrics();
    let name = connector.name.as_str();
    let slot = connector.source.slot.as_str();
    let bound = connector.source.retained_wal_warning;
    let mut alarms = Alarms::default();
    let mut client: Option<Client> = None;
    let mut ticker = tokio::time::interval(SLOT_CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = fatal.closed() => return,
        }
        if client.is_none() {
            client = crate::postgres::connect(&connector.source, None).await.ok();
        }
        let Some(c) = &client else { continue };
        let health = match read(c, slot).await {
            Ok(Some(h)) => h,
            Ok(None) => continue,
            Err(e) => {
                debug!(error = %e, "cannot read the slot's health; trying again");
                client = None;
                continue;
            }
        };
        metrics
            .slot_retained_wal
            .with_label_values(&[name])
            .set(health.retained_bytes as i64);
        metrics
            .slot_safe_wal_size
            .with_label_values(&[name])
            .set(health.safe_wal_size.unwrap_or(-1));
        if let Some(status) = &health.wal_status {
            for s in WAL_STATUSES {
                metrics
                    .slot_wal_status
                    .with_label_values(&[name, s])
                    .set(i64::from(s == status));
            }
        }
        if health.wal_now > Lsn::ZERO {
            metrics.connector(name).set_server_wal_end(health.wal_now);
        }
        match alarms.check(slot, &health, bound) {
            Ok(warnings) => {
                for w in warnings {
                    warn!("{w}");
                }
            }
            Err(lost) => {
                let _ = fatal.send(PipelineError::SlotLost(lost)).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(status: &str, retained: u64) -> SlotHealth {
        SlotHealth {
            wal_status: Some(status.to_owned()),
            retained_bytes: retained,
            safe_wal_size: Some(1 << 20),
            wal_now: Lsn(1),
        }
    }

    #[test]
    fn warnings_come_once_per_crossing() {
        let mut alarms = Alarms::default();
        let bound = 1000;
        assert!(alarms
            .check("s", &health("reserved", 10), bound)
            .unwrap()
            .is_empty());
        let first = alarms.check("s", &health("reserved", 5000), bound).unwrap();
        assert_eq!(first.len(), 1);
        assert!(
            first[0].contains("slot s holds 4.9 KiB of WAL on the server, more than [source] retained_wal_warning = 1000 B (safe_wal_size: 1.0 MiB left"),
            "{}",
            first[0]
        );
        assert!(
            alarms
                .check("s", &health("reserved", 6000), bound)
                .unwrap()
                .is_empty(),
            "said once"
        );
        assert!(alarms
            .check("s", &health("reserved", 10), bound)
            .unwrap()
            .is_empty());
        assert_eq!(
            alarms
                .check("s", &health("extended", 5000), bound)
                .unwrap()
                .len(),
            1,
            "again after it cleared"
        );
    }

    #[test]
    fn an_unreserved_slot_warns_and_a_lost_one_stops() {
        let mut alarms = Alarms::default();
        let unreserved = alarms
            .check("s", &health("unreserved", 10), u64::MAX)
            .unwrap();
        assert_eq!(unreserved.len(), 1);
        assert!(
            unreserved[0].contains("slot s is unreserved"),
            "{}",
            unreserved[0]
        );
        assert!(alarms
            .check("s", &health("unreserved", 10), u64::MAX)
            .unwrap()
            .is_empty());
        let lost = alarms
            .check("s", &health("lost", 10), u64::MAX)
            .unwrap_err();
        assert!(
            lost.contains("wal_status = lost") && lost.contains("--accept-slot-loss"),
            "{lost}"
        );
        // PostgreSQL 12 has no wal_status: only the retained WAL is judged.
        let mut old = Alarms::default();
        let h = SlotHealth {
            wal_status: None,
            ..health("x", 10)
        };
        assert!(old.check("s", &h, 100).unwrap().is_empty());
    }
}
