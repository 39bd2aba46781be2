//! The seam between the run loop and where its records go. The loop assigns positions,
//! counts every record in the acknowledgement tracker and moves the checkpoint; a sink
//! only places records on partitions, hands them on and reports each one's delivery
//! on the channel it was built with. Kafka is one sink (`kafka`), dropping records for
//! benchmarks another (`discard`), and the loop's unit tests use an in-memory one
//! (`memory`), so the loop is tested without a broker.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::checkpoint_record::CheckpointRecord;
use super::error::SinkError;
use super::reconcile::Origin;
use crate::checkpoint::{Position, Ticket};

/// One record to produce.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: Arc<str>,
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers written after walcast's position headers (e.g. Debezium's
    /// `__debezium.oldkey` / `__debezium.newkey`).
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// A data event or tombstone: gets the connector's context headers
    /// ([`RecordSink::set_context_headers`]) after `headers`.
    pub context: bool,
    /// The record's timestamp in ms since the epoch; `None`: the producer's clock.
    pub timestamp_ms: Option<i64>,
    pub position: Position,
    pub txid: u32,
    /// The acknowledgement tracker's entry this record counts in; its delivery report
    /// carries it back.
    pub ticket: Ticket,
}

/// A delivery report: the ticket of the record (see [`OutRecord::ticket`];
/// [`Ticket::NONE`] for a checkpoint record), and whether the sink's destination took it.
#[derive(Debug)]
pub struct DeliveryReport {
    pub ticket: Ticket,
    pub error: Option<String>,
}

/// Where the run loop's records go. Sends are asynchronous: a record handed over is
/// acknowledged later by a [`DeliveryReport`] on the sink's report channel, or, in
/// transactional mode, by the commit of the Kafka transaction holding it.
pub trait RecordSink: Send {
    /// Whether records are produced inside Kafka transactions, which the loop opens and
    /// commits (`[delivery] mode = "transactional"`): a commit acknowledges every record
    /// in it, delivery reports alone acknowledge nothing.
    fn is_transactional(&self) -> bool;

    /// Opens a Kafka transaction (transactional mode; the loop calls it before the first
    /// record of a batch).
    fn begin_transaction(&mut self) -> Result<(), SinkError>;

    /// Commits the open transaction: its records become visible together. An error
    /// means none of them counts as delivered.
    fn commit_transaction(&mut self) -> Result<(), SinkError>;

    /// Aborts the open transaction: read_committed consumers never see its records.
    fn abort_transaction(&mut self) -> Result<(), SinkError>;

    /// The partition count of `topic`, creating the topic first when it is missing.
    fn ensure_topic(
        &mut self,
        topic: &Arc<str>,
    ) -> impl Future<Output = Result<i32, SinkError>> + Send;

    /// The partition a record with `key` goes to (the Java client's choice, so
    /// consumers find keys where Debezium would put them). `ensure_topic` first.
    fn partition_of(&self, topic: &str, key: Option<&[u8]>) -> i32;

    /// Hands one record to the destination, waiting while its queue is full.
    fn send(
        &mut self,
        record: &OutRecord,
        partition: i32,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Records the connector's checkpoint in the offsets topic. Best effort outside a
    /// transaction (its report carries [`Ticket::NONE`], which credits nothing); inside
    /// one it commits with the records it covers.
    fn write_checkpoint(
        &mut self,
        record: &CheckpointRecord,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Waits until every record handed over is acknowledged, or `timeout`. Blocking.
    fn flush(&self, timeout: Duration) -> Result<(), SinkError>;

    /// An error after which nothing more may be sent (e.g. librdkafka's gapless
    /// guarantee broken), if one happened.
    fn fatal_error(&self) -> Option<String>;

    /// Messages waiting in the producer's queue or in flight to the broker
    /// (`walcast_producer_queue_messages`); 0 for a sink without one.
    fn queue_depth(&self) -> usize {
        0
    }

    /// A heartbeat record (Debezium's, for consumers that watch liveness): to
    /// partition 0 of `topic`, without headers, acknowledged by nobody (its report
    /// carries [`Ticket::NONE`]); inside an open Kafka transaction it commits with it.
    fn write_heartbeat(
        &mut self,
        _topic: &Arc<str>,
        _key: &[u8],
        _value: &[u8],
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }

    /// Headers every data event and tombstone carries after its own (Debezium's
    /// `__debezium.context.*`); the same for the connector's whole run, so the sink
    /// keeps them instead of each record.
    fn set_context_headers(&mut self, _headers: Vec<(&'static str, Vec<u8>)>) {}

    /// For exactly-once restarts: the position in the last record `origin` wrote to each
    /// partition of `topic` (partitions holding none of its records are absent).
    fn last_positions(
        &self,
        topic: &str,
        origin: &Origin,
    ) -> impl Future<Output = Result<HashMap<i32, Position>, SinkError>> + Send;
}
