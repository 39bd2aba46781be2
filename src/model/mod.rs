//! The data walcast moves, shared by every stage and depending on none: WAL positions
//! ([`lsn`]), a record's place in a connector's output ([`position`]), PostgreSQL's
//! types and values ([`types`], [`value`]: text and binary datums parse into typed
//! values), tables as the stream describes them ([`relation`]) and what the source
//! hands downstream ([`change`]: transactions, row changes, snapshot rows).

pub mod change;
pub mod lsn;
pub mod position;
pub mod relation;
pub mod types;
pub mod value;
