//! An in-memory sink for the run loop's unit tests: it keeps what a read_committed
//! consumer would see, and the test decides when (and in what order, and whether)
//! deliveries are reported, and whether a Kafka transaction's commit fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;

use super::checkpoint_record::CheckpointRecord;
use super::partition::partition_for_key;
use super::reconcile::Origin;
use super::{DeliveryReport, OutRecord, RecordSink, SinkError};
use crate::checkpoint::{Position, Ticket};

/// A record the sink took, with its partition.
#[derive(Debug, Clone)]
pub struct Stored {
    pub record: OutRecord,
    pub partition: i32,
}

/// What the sink holds; shared by the sink and the test's [`MemoryHandle`].
#[derive(Debug, Default)]
pub struct Held {
    /// What a read_committed consumer sees, in the order it was written.
    pub visible: Vec<Stored>,
    /// Checkpoint records written (committed ones, in transactional mode).
    pub checkpoints: Vec<CheckpointRecord>,
    /// Kafka transactions committed and aborted.
    pub commits: usize,
    pub aborts: usize,
    /// Sent, delivery not yet reported (while reports are held).
    unreported: Vec<Stored>,
    /// The open transaction's records and checkpoint.
    open: Vec<Stored>,
    open_checkpoint: Option<CheckpointRecord>,
    hold_reports: bool,
    fail_next_commit: Option<String>,
}

/// The test's side of a [`MemorySink`].
#[derive(Clone)]
pub struct MemoryHandle {
    held: Arc<Mutex<Held>>,
    reports: mpsc::UnboundedSender<DeliveryReport>,
}

impl MemoryHandle {
    pub fn lock(&self) -> MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// From now on deliveries are reported only when the test releases them.
    pub fn hold_reports(&self) {
        self.lock().hold_reports = true;
    }

    /// Records sent whose delivery is not reported yet.
    pub fn unreported(&self) -> usize {
        self.lock().unreported.len()
    }

    /// Reports the delivery of the unreported records in the order `order` gives
    /// (indexes into the unreported records, oldest first); `failed` ones are reported as
    /// rejected and stay out of the topic.
    pub fn release(&self, order: &[usize], failed: &[usize]) {
        let mut held = self.lock();
        let pending = std::mem::take(&mut held.unreported);
        for &i in order {
            let stored = &pending[i];
            let error = failed
                .contains(&i)
                .then(|| "Broker: Message size too large".to_owned());
            if error.is_none() {
                held.visible.push(stored.clone());
            }
            let _ = self.reports.send(DeliveryReport {
                ticket: stored.record.ticket,
                error,
            });
        }
        held.unreported = pending
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !order.contains(i))
            .map(|(_, s)| s)
            .collect();
    }

    /// Reports every unreported delivery, oldest first.
    pub fn release_all(&self) {
        let n = self.unreported();
        self.release(&(0..n).collect::<Vec<_>>(), &[]);
    }

    /// The next Kafka transaction commit fails with `message` (and aborts).
    pub fn fail_next_commit(&self, message: &str) {
        self.lock().fail_next_commit = Some(message.to_owned());
    }
}

/// The sink itself, given to the loop.
pub struct MemorySink {
    handle: MemoryHandle,
    transactional: bool,
    in_transaction: bool,
    partitions: i32,
}

impl MemorySink {
    /// A sink whose topics have `partitions` partitions; with the handle the test keeps
    /// and the receiving end of its delivery reports.
    pub fn new(
        transactional: bool,
        partitions: i32,
    ) -> (Self, MemoryHandle, mpsc::UnboundedReceiver<DeliveryReport>) {
        let (reports, rx) = mpsc::unbounded_channel();
        let handle = MemoryHandle {
            held: Arc::default(),
            reports,
        };
        (
            Self {
                handle: handle.clone(),
                transactional,
                in_transaction: false,
                partitions,
            },
            handle,
            rx,
        )
    }

    /// A sink over what an earlier one held (a restart: Kafka keeps its records).
    pub fn reopen(&self) -> (Self, mpsc::UnboundedReceiver<DeliveryReport>) {
        let (reports, rx) = mpsc::unbounded_channel();
        let handle = MemoryHandle {
            held: self.handle.held.clone(),
            reports,
        };
        {
            let mut held = handle.lock();
            // An instance that died leaves its open transaction aborted and its
            // unreported records undelivered.
            held.open.clear();
            held.open_checkpoint = None;
            held.unreported.clear();
            held.hold_reports = false;
        }
        (
            Self {
                handle,
                transactional: self.transactional,
                in_transaction: false,
                partitions: self.partitions,
            },
            rx,
        )
    }

    pub fn handle(&self) -> MemoryHandle {
        self.handle.clone()
    }
}

impl RecordSink for MemorySink {
    fn is_transactional(&self) -> bool {
        self.transactional
    }

    fn begin_transaction(&mut self) -> Result<(), SinkError> {
        self.in_transaction = self.transactional;
        Ok(())
    }

    fn commit_transaction(&mut self) -> Result<(), SinkError> {
        if !self.in_transaction {
            return Ok(());
        }
        self.in_transaction = false;
        let mut held = self.handle.lock();
        if let Some(message) = held.fail_next_commit.take() {
            held.open.clear();
            held.open_checkpoint = None;
            held.aborts += 1;
            return Err(SinkError::Transaction(format!(
                "Kafka did not commit the transaction: {message}"
            )));
        }
        let open = std::mem::take(&mut held.open);
        held.visible.extend(open);
        if let Some(checkpoint) = held.open_checkpoint.take() {
            held.checkpoints.push(checkpoint);
        }
        held.commits += 1;
        Ok(())
    }

    fn abort_transaction(&mut self) -> Result<(), SinkError> {
        if self.in_transaction {
            self.in_transaction = false;
            let mut held = self.handle.lock();
            held.open.clear();
            held.open_checkpoint = None;
            held.aborts += 1;
        }
        Ok(())
    }

    async fn ensure_topic(&mut self, _topic: &Arc<str>) -> Result<i32, SinkError> {
        Ok(self.partitions)
    }

    fn partition_of(&self, _topic: &str, key: Option<&[u8]>) -> i32 {
        key.map_or(0, |k| partition_for_key(k, self.partitions))
    }

    async fn send(&mut self, record: &OutRecord, partition: i32) -> Result<(), SinkError> {
        let stored = Stored {
            record: record.clone(),
            partition,
        };
        let mut held = self.handle.lock();
        if self.in_transaction {
            held.open.push(stored);
            let _ = self.handle.reports.send(DeliveryReport {
                ticket: record.ticket,
                error: None,
            });
        } else if held.hold_reports {
            held.unreported.push(stored);
        } else {
            held.visible.push(stored);
            let _ = self.handle.reports.send(DeliveryReport {
                ticket: record.ticket,
                error: None,
            });
        }
        Ok(())
    }

    async fn write_checkpoint(&mut self, record: &CheckpointRecord) -> Result<(), SinkError> {
        let mut held = self.handle.lock();
        if self.in_transaction {
            held.open_checkpoint = Some(record.clone());
        } else {
            held.checkpoints.push(record.clone());
            let _ = self.handle.reports.send(DeliveryReport {
                ticket: Ticket::NONE,
                error: None,
            });
        }
        Ok(())
    }

    fn flush(&self, _timeout: Duration) -> Result<(), SinkError> {
        if self.handle.unreported() == 0 {
            Ok(())
        } else {
            Err(SinkError::Delivery {
                commit_lsn: crate::model::lsn::Lsn::ZERO,
                message: "Local: Timed out".into(),
            })
        }
    }

    fn fatal_error(&self) -> Option<String> {
        None
    }

    async fn last_positions(
        &self,
        topic: &str,
        _origin: &Origin,
    ) -> Result<HashMap<i32, Position>, SinkError> {
        let mut last = HashMap::new();
        for stored in self
            .handle
            .lock()
            .visible
            .iter()
            .filter(|s| &*s.record.topic == topic)
        {
            last.insert(stored.partition, stored.record.position);
        }
        Ok(last)
    }
}
