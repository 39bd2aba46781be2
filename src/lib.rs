//! walcast: PostgreSQL change-data-capture into Kafka.
//!
//! Layout (see DESIGN.md in the project docs for the data flow):
//! - [`config`]: connector TOML files, validated with file:line:column errors.
//! - [`postgres`]: ordinary SQL connections to the source database (catalog, setup).
//! - [`preflight`]: `walcast check`, every prerequisite of a connector against the live database.
//! - [`setup`]: `walcast setup`, migrations and the publication.
//! - [`run`]: `walcast run`, one task per connector with clean shutdown.
//! - [`logging`]: tracing subscriber, human or JSON.
//! - [`registry`]: the schema registry client and `walcast registry`, the dev registry.

pub mod checkpoint;
pub mod codec;
pub mod config;
pub mod failpoint;
pub mod logging;
pub mod model;
pub mod observe;
pub mod pipeline;
pub mod postgres;
pub mod preflight;
pub mod registry;
pub mod run;
pub mod setup;
pub mod signal;
pub mod sink;
pub mod source;
pub mod tail;
