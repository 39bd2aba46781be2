//! Ordinary SQL connections to the source database (catalog queries, setup), with
//! libpq-style TLS and errors that say what to fix. The replication stream is separate.

mod catalog;
mod connect;
mod session;
mod sql;
pub(crate) mod sqlstate;

pub use catalog::{resolve_tables, CapturedTable, Catalog, CatalogTable, Resolution};
pub use connect::{connect, ConnectError};
pub(crate) use connect::{explain_client_error, explain_server_error, ssl_connector};
pub use session::{startup_options, SESSION_SETTINGS};
pub use sql::{quote_ident, quote_literal, quote_table};
