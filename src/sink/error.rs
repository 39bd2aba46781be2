//! Why a sink call failed, with what to do about it.

use crate::model::lsn::Lsn;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("Kafka producer setup failed: {0}")]
    Config(String),
    #[error(
        "cannot create topic {topic}: {message}; create it yourself or grant walcast CreateTopics"
    )]
    CreateTopic { topic: String, message: String },
    #[error("cannot reach Kafka at {servers} to read topic {topic}'s metadata: {message}; check [kafka] bootstrap_servers and, for TLS/SASL clusters, the security.*, sasl.* and ssl.* settings in [kafka.producer] (librdkafka logs the exact cause, e.g. an authentication failure, just before this)")]
    Metadata {
        servers: String,
        topic: String,
        message: String,
    },
    #[error("cannot connect to Kafka at {servers}: {message}; check [kafka] bootstrap_servers and, for TLS/SASL clusters, the security.*, sasl.* and ssl.* settings in [kafka.producer] (librdkafka logs the exact cause, e.g. an authentication failure, just before this)")]
    Connection { servers: String, message: String },
    #[error("{0}")]
    Transaction(String),
    #[error("Kafka rejected a record of transaction at {commit_lsn}: {message}")]
    Delivery { commit_lsn: Lsn, message: String },
}
