//! What walcast tells the people who run it: Prometheus metrics, each connector's state
//! and progress, and the HTTP endpoints a deployment probes and an operator reads.
//!
//! `metrics` holds the series; `board` each connector's state, last error and snapshot
//! progress; `status` joins both into the `/status` document, `page` renders it as the
//! HTML page, and `http` serves them all.

mod board;
mod http;
mod metrics;
pub mod page;
pub mod status;

pub use board::{board, ConnectorInfo, ConnectorState, SnapshotKind};
pub use http::serve;
pub use metrics::{metrics, ConnectorMetrics};
