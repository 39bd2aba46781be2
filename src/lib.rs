//! walcast: PostgreSQL change-data-capture into Kafka.
//!
//! The data path, one change at a time:
//!
//! ```text
//!  PostgreSQL ──pgoutput──▶ source ──TxEvent──▶ pipeline ──records──▶ sink ──▶ Kafka
//!  (slot)                  (reader,            (run loop:            (RecordSink:
//!   ▲                       relation cache,     inputs → events →     kafka, discard)
//!   │                       spool, table_read)  delivery)                 │
//!   └──── confirmed flush LSN ◀── checkpoint ◀── delivery reports ◀───────┘
//! ```
//!
//! - `model`: the data every stage shares (LSNs, positions, types, values, tables,
//!   transactions); depends on nothing else here.
//! - `source`: the replication connection, the pgoutput decoder, the reader, and
//!   table reads for snapshots.
//! - `pipeline`: one connector end to end: setup, the run loop, Debezium's events.
//! - `codec`: Debezium's event model, Avro and JSON schemas and encoding.
//! - `registry`: the schema registry client, and `walcast registry` (the dev server).
//! - `sink`: the `RecordSink` seam and its sinks; reading Kafka back for restarts.
//! - `checkpoint`: the acknowledgement tracker.
//! - `cmd`: the commands (`run`, `check`, `setup`, `snapshot`, `tail`).
//! - `config`: connector TOML files, validated with file:line:column errors.
//! - `postgres`: ordinary SQL connections to the source database (catalog, TLS,
//!   SQLSTATE classification).
//! - `observe`, `logging`, `shutdown`, `failpoint`: metrics and probes, logs,
//!   signals and backoff, crash points for fault tests.

pub mod checkpoint;
pub mod cmd;
pub mod codec;
pub mod config;
pub(crate) mod failpoint;
pub mod logging;
pub mod model;
pub(crate) mod observe;
pub(crate) mod pipeline;
pub mod postgres;
pub mod registry;
pub(crate) mod shutdown;
pub mod sink;
pub mod source;
