//! Confluent-compatible schema registry: the client the pipeline uses and the dev server.
//!
//! - `client`: registers schemas and fetches them by id, cached, with retries.
//! - `subject`: subject naming strategies (`<topic>-key` / `<topic>-value`, ...).
//! - `dev`: `walcast registry`, a small Confluent-REST-compatible registry (AVRO only)
//!   for tests and the quickstart, stored in an fsynced append-only log, with the
//!   canonical schema text (Avro Java's `Schema.toString()`) that decides "the same
//!   schema". The pipeline never uses it; it talks to any registry through `client`.
//! - `compat`: compatibility levels and the Avro compatibility check.
//! - `api`: the REST API's shared wire shapes and error codes.

pub(crate) mod api;
pub(crate) mod client;
mod client_metrics;
pub(crate) mod compat;
pub(crate) mod dev;
pub(crate) mod retry;
pub(crate) mod subject;

pub use client::{RegistryClient, RegistryClientConfig, RegistryError, RetryPolicy};
pub use compat::CompatibilityLevel;
pub use dev::{serve, RegistryServer, ServerError};
pub use subject::{subject_name, SubjectKind, SubjectNameStrategy};
