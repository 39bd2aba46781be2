//! Where records go: the [`RecordSink`] seam the run loop writes through, and its
//! sinks: Kafka (per-table topics, the Java client's partitioning, position headers,
//! delivery reports), discard (for benchmarks) and, in unit tests, memory. Also what
//! Kafka holds read back for exactly-once restarts, and the checkpoint record.

pub(crate) mod checkpoint_record;
pub(crate) mod discard;
pub(crate) mod error;
pub mod kafka;
#[cfg(test)]
pub(crate) mod memory;
pub(crate) mod partition;
mod position_header;
pub(crate) mod reconcile;
mod record_sink;
pub(crate) mod topic_map;

pub use error::SinkError;
pub use record_sink::{DeliveryReport, OutRecord, RecordSink};
