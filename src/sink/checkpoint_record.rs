//! The record a connector keeps in the offsets topic (`walcast.offsets`, keyed by the
//! connector's name): where it stands, whose it is, and the incremental snapshot's
//! progress. Written by the run loop, read back on start (exactly-once reconciliation,
//! the lost-slot check) and by operators.

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, Position};
use crate::model::lsn::Lsn;

/// One checkpoint of one connector, as JSON in the offsets topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub connector: String,
    pub slot: String,
    /// The writer's identity (`reconcile::Origin::identity`): a restart trusts only its
    /// own records.
    pub source: String,
    /// Every event at or below this position is in Kafka.
    #[serde(with = "as_text")]
    pub position: Position,
    /// The LSN confirmed to PostgreSQL with it.
    #[serde(with = "as_text")]
    pub flush_lsn: Lsn,
    /// When it was written (milliseconds since the epoch).
    pub ts_ms: u64,
    /// The incremental snapshot's progress, once one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental_snapshot: Option<IncrementalProgress>,
}

/// How far the incremental snapshot got, as far as Kafka holds its rows: a restarted
/// connector continues from here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalProgress {
    /// The table being read, and the text of the last key Kafka holds from it.
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub last_key: Option<Vec<String>>,
    /// Tables queued after it.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Paused by a `pause-snapshot` signal.
    #[serde(default)]
    pub paused: bool,
}

impl CheckpointRecord {
    /// The record of `checkpoint` for connector `connector` reading `slot`, written now.
    pub fn new(
        connector: &str,
        slot: &str,
        source: &str,
        checkpoint: &Checkpoint,
        incremental_snapshot: Option<IncrementalProgress>,
    ) -> Self {
        Self {
            connector: connector.to_owned(),
            slot: slot.to_owned(),
            source: source.to_owned(),
            position: checkpoint.position,
            flush_lsn: checkpoint.flush_lsn,
            ts_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            incremental_snapshot,
        }
    }
}

/// Positions and LSNs as their text forms (`0/16B3748#3`, `0/16B3748`), as operators read
/// them.
mod as_text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_json_operators_read() {
        let checkpoint = Checkpoint {
            position: Position {
                commit_lsn: Lsn(0x16B_3748),
                index: 3,
            },
            flush_lsn: Lsn(0x16B_3790),
        };
        let record = CheckpointRecord::new(
            "shop",
            "walcast_shop",
            "shop@7301",
            &checkpoint,
            Some(IncrementalProgress {
                table: Some("public.orders".into()),
                last_key: Some(vec!["42".into()]),
                tables: vec!["public.items".into()],
                paused: false,
            }),
        );
        let text = serde_json::to_string(&record).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["position"], "0/16B3748#3");
        assert_eq!(json["flush_lsn"], "0/16B3790");
        assert_eq!(json["source"], "shop@7301");
        assert_eq!(
            serde_json::from_str::<CheckpointRecord>(&text).unwrap(),
            record
        );
    }

    #[test]
    fn no_incremental_snapshot_writes_no_field() {
        let record = CheckpointRecord::new("shop", "s", "shop@1", &Checkpoint::default(), None);
        let json = serde_json::to_value(&record).unwrap();
        assert!(json.get("incremental_snapshot").is_none());
    }

    #[test]
    fn a_malformed_position_is_an_error_not_a_zero() {
        let text = r#"{"connector":"a","slot":"s","source":"a@1","position":"garbage","flush_lsn":"0/1","ts_ms":0}"#;
        assert!(serde_json::from_str::<CheckpointRecord>(text).is_err());
    }

    #[test]
    fn progress_written_by_earlier_versions_reads_back() {
        // json!-built records: the same keys, `tables` empty when nothing runs.
        let text = r#"{"connector":"a","slot":"s","source":"a@1","position":"0/1#0","flush_lsn":"0/2","ts_ms":0,
            "incremental_snapshot":{"table":"public.t","last_key":["7","x"],"tables":[],"paused":true}}"#;
        let record: CheckpointRecord = serde_json::from_str(text).unwrap();
        let progress = record.incremental_snapshot.unwrap();
        assert_eq!(progress.table.as_deref(), Some("public.t"));
        assert_eq!(
            progress.last_key,
            Some(vec!["7".to_owned(), "x".to_owned()])
        );
        assert!(progress.paused);
        let idle = r#"{"tables":[]}"#;
        assert_eq!(
            serde_json::from_str::<IncrementalProgress>(idle).unwrap(),
            IncrementalProgress::default()
        );
    }
}
