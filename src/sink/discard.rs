//! `[sink] kind = "discard"`: every record is encoded, counted and dropped, and
//! acknowledged at once. Nothing reaches Kafka and no topic is created; it measures
//! walcast's own cost (decoding, encoding, checkpointing) without a broker's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::checkpoint_record::CheckpointRecord;
use super::partition::partition_for_key;
use super::reconcile::Origin;
use super::{DeliveryReport, OutRecord, RecordSink, SinkError};
use crate::checkpoint::Position;

/// Drops records, acknowledging each as it is sent.
pub struct DiscardSink {
    reports: mpsc::UnboundedSender<DeliveryReport>,
    /// `[kafka] partitions` (1 when unset), so keys spread as they would on new topics.
    partitions: i32,
}

impl DiscardSink {
    /// The sink and the receiving end of its (immediate) delivery reports.
    pub fn new(partitions: Option<i32>) -> (Self, mpsc::UnboundedReceiver<DeliveryReport>) {
        let (reports, rx) = mpsc::unbounded_channel();
        (
            Self {
                reports,
                partitions: partitions.unwrap_or(1).max(1),
            },
            rx,
        )
    }
}

impl RecordSink for DiscardSink {
    fn is_transactional(&self) -> bool {
        false
    }

    fn begin_transaction(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn commit_transaction(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn abort_transaction(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn ensure_topic(&mut self, _topic: &Arc<str>) -> Result<i32, SinkError> {
        Ok(self.partitions)
    }

    fn partition_of(&self, _topic: &str, key: Option<&[u8]>) -> i32 {
        key.map_or(0, |k| partition_for_key(k, self.partitions))
    }

    async fn send(&mut self, record: &OutRecord, _partition: i32) -> Result<(), SinkError> {
        let _ = self.reports.send(DeliveryReport {
            ticket: record.ticket,
            error: None,
        });
        Ok(())
    }

    async fn write_checkpoint(&mut self, _record: &CheckpointRecord) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&self, _timeout: Duration) -> Result<(), SinkError> {
        Ok(())
    }

    fn fatal_error(&self) -> Option<String> {
        None
    }

    async fn last_positions(
        &self,
        _topic: &str,
        _origin: &Origin,
    ) -> Result<HashMap<i32, Position>, SinkError> {
        Ok(HashMap::new())
    }
}
