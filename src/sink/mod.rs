//! The Kafka side: partitioning, topics, the producer and delivery reports.

pub mod kafka;
pub mod partition;
mod position_header;
pub mod reconcile;
pub mod topic_map;
