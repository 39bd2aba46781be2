//! Confluent-compatible schema registry: the client the pipeline uses and the dev server.
//!
//! - [`client`]: registers schemas and fetches them by id, cached, with retries.
//! - [`subject`]: subject naming strategies (`<topic>-key` / `<topic>-value`, ...).
//! - [`server`]: `walcast registry`, a small Confluent-REST-compatible registry (AVRO only)
//!   for tests and the quickstart, stored in an fsynced append-only log ([`store`]).
//! - [`compat`]: compatibility levels and the Avro compatibility check.
//! - [`canonical`]: the canonical schema text (Avro Java's `Schema.toString()`), which is
//!   what "the same schema" means for ids.
//! - [`api`]: the REST API's shared wire shapes and error codes.

pub mod api;
pub mod canonical;
pub mod client;
pub mod compat;
pub mod server;
pub mod store;
pub mod subject;

pub use client::{RegistryClient, RegistryClientConfig, RegistryError, RetryPolicy};
pub use compat::CompatibilityLevel;
pub use server::{serve, RegistryServer, ServerError};
pub use subject::{subject_name, SubjectKind, SubjectNameStrategy};
