//! walcast's commands, one module each (`src/main.rs` only parses the command line):
//!
//! - [`run`]: streams every connector until SIGTERM (connector tasks, metrics server).
//! - [`check`]: the preflight, what `run` also checks before it starts.
//! - [`setup`]: migrations, the publication, grants.
//! - [`snapshot_signal`]: `walcast snapshot` asks a running connector for an incremental
//!   snapshot (or to pause, resume or stop one) through the signal table.
//! - [`tail`]: prints a connector's topics as JSON lines.
//! - [`status`]: prints a running walcast's `/status` for a terminal.
//! - [`slots`]: lists the database's replication slots; `teardown` removes a
//!   connector's slot, publication and state.
//!
//! `walcast registry` is `crate::registry::dev::serve`.

pub mod check;
pub mod run;
pub mod setup;
pub mod slots;
pub mod snapshot_signal;
pub mod status;
pub mod tail;
