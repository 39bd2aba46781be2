//! The PostgreSQL side of walcast: the logical-replication stream and what it carries.
//!
//! - [`lsn`]: WAL positions and wire timestamps.
//! - [`pgoutput`]: the pure pgoutput decoder (bytes → messages).
//! - [`types`]: how a column's type is parsed.
//! - [`value`]: PostgreSQL text datums → typed values.

pub mod change;
pub mod lsn;
pub mod pgoutput;
pub mod reader;
pub mod relation;
pub mod replication;
pub mod snapshot;
pub mod spool;
pub mod types;
pub mod value;
