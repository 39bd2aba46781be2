//! Integration tests against real PostgreSQL and Apache Kafka (see `common`).

mod chaos;
mod check;
mod common;
mod consumer_example;
mod debezium_differences;
mod foreign_records;
mod incremental;
mod jdbc_sink;
mod kafka_cuts;
mod kafka_security;
mod kafka_smoke;
mod operate;
mod outages;
mod pipeline;
mod publication_changes;
mod replication;
mod restarts;
mod run;
mod setup;
mod slot_health;
mod snapshot_load;
mod snapshot_modes;
mod stalls;
mod tail;
mod tls;
mod transforms;
