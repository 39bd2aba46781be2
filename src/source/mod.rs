//! The PostgreSQL side of walcast: the logical-replication stream and what it carries.
//!
//! - `pgoutput`: the pure pgoutput decoder (bytes → messages).
//! - `relation`: the relation cache (Relation messages and the catalog → tables).
//! - `replication`, `reader`, `spool`: the replication connection and the reader
//!   that turns its messages into transactions (spilling large ones to disk).
//! - `table_read`: reading tables inside an exported snapshot (the initial snapshot's
//!   rows, and incremental snapshot chunks).
//!
//! The values and types it produces live in `crate::model`.

pub mod pgoutput;
pub mod reader;
pub(crate) mod relation;
pub mod replication;
pub mod spool;
pub(crate) mod table_read;
