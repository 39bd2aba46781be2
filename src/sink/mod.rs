//! Where records go: the [`RecordSink`] seam the run loop writes through, and its
//! sinks: Kafka (per-table topics, the Java client's partitioning, position headers,
//! delivery reports), discard (for benchmarks) and, in unit tests, memory. Also what
//! Kafka holds read back for exactly-once restarts, and the checkpoint record.

pub mod checkpoint_record;
pub mod discard;
pub mod error;
pub mod kafka;
#[cfg(test)]
pub mod memory;
pub mod partition;
mod position_header;
pub mod reconcile;
mod record_sink;
pub mod topic_map;

pub use error::SinkError;
pub use record_sink::{DeliveryReport, OutRecord, RecordSink};
