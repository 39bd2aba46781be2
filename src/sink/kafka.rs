//! The Kafka producer: per-table topics (created when missing), records placed on the
//! partition the Java client would pick, position headers, and delivery reports fed
//! back to the checkpoint. Idempotent with librdkafka's gapless guarantee, so a record
//! that finally fails is a fatal error, never a silent hole.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::Message;
use tokio::sync::mpsc;

use super::partition::partition_for_key;
use crate::checkpoint::Position;
use crate::config::{DeliveryMode, Kafka};
use crate::source::lsn::Lsn;

/// The compacted topic holding each connector's latest checkpoint, keyed by connector
/// name: what an operator (or a later snapshot) reads to see where a connector stands.
pub const OFFSETS_TOPIC: &str = "walcast.offsets";

/// Header names carrying a record's position.
pub const HEADER_POSITION: &str = "walcast.position";
pub const HEADER_TXID: &str = "walcast.txid";

/// One record to produce.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: Arc<str>,
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers written after walcast's position headers (e.g. Debezium's
    /// `__debezium.oldkey` / `__debezium.newkey`).
    pub headers: Vec<(&'static str, Vec<u8>)>,
    pub position: Position,
    pub txid: u32,
}

/// A delivery report: which transaction's record, and whether Kafka took it.
#[derive(Debug)]
pub struct DeliveryReport {
    pub commit_lsn: Lsn,
    pub error: Option<String>,
}

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
    #[error("Kafka rejected a record of transaction at {commit_lsn}: {message}")]
    Delivery { commit_lsn: Lsn, message: String },
}

struct Reporter {
    reports: mpsc::UnboundedSender<DeliveryReport>,
}

impl ClientContext for Reporter {}

impl ProducerContext for Reporter {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, commit_lsn: usize) {
        let error = result.as_ref().err().map(|(e, _)| e.to_string());
        let _ = self.reports.send(DeliveryReport {
            commit_lsn: Lsn(commit_lsn as u64),
            error,
        });
    }
}

/// The producer and what it knows about its topics.
pub struct KafkaSink {
    producer: ThreadedProducer<Reporter>,
    admin: AdminClient<DefaultClientContext>,
    settings: Kafka,
    partitions: HashMap<Arc<str>, i32>,
}

impl KafkaSink {
    /// Builds the producer; returns it with the receiving end of its delivery reports.
    pub fn new(
        settings: &Kafka,
        mode: DeliveryMode,
        client_id: &str,
    ) -> Result<(Self, mpsc::UnboundedReceiver<DeliveryReport>), SinkError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut config = base_config(settings, client_id);
        // Defaults tuned for throughput; the user's [kafka.producer] wins.
        for (k, v) in [
            ("compression.type", "lz4"),
            ("linger.ms", "5"),
            ("batch.size", "1000000"),
            ("queue.buffering.max.kbytes", "262144"),
        ] {
            if !settings.producer.contains_key(k) {
                config.set(k, v);
            }
        }
        for (k, v) in &settings.producer {
            config.set(k, v.expose());
        }
        config.set("acks", "all");
        match mode {
            DeliveryMode::AtLeastOnce => {
                config.set("enable.idempotence", "true");
            }
            DeliveryMode::ExactlyOnce | DeliveryMode::Transactional => {
                config.set("enable.idempotence", "true");
                config.set("enable.gapless.guarantee", "true");
            }
        }
        let producer: ThreadedProducer<Reporter> = config
            .create_with_context(Reporter { reports: tx })
            .map_err(|e| SinkError::Config(e.to_string()))?;
        let admin = base_config(settings, client_id)
            .create()
            .map_err(|e| SinkError::Config(e.to_string()))?;
        Ok((
            Self {
                producer,
                admin,
                settings: settings.clone(),
                partitions: HashMap::new(),
            },
            rx,
        ))
    }

    /// Fails fast, before any slot or snapshot work, when the cluster can't be reached or
    /// refuses the credentials.
    pub fn check_connection(&self) -> Result<(), SinkError> {
        let client = self.producer.client();
        tokio::task::block_in_place(|| client.fetch_metadata(None, Duration::from_secs(15)))
            .map(|_| ())
            .map_err(|e| SinkError::Connection {
                servers: self.settings.bootstrap_servers.clone(),
                message: e.to_string(),
            })
    }

    /// The partition count of `topic`, creating the topic first when it is missing.
    pub async fn ensure_topic(&mut self, topic: &Arc<str>) -> Result<i32, SinkError> {
        if let Some(n) = self.partitions.get(topic) {
            return Ok(*n);
        }
        let n = match self.fetch_partitions(topic).await? {
            Some(n) => n,
            None => {
                self.create_topic(topic).await?;
                let mut found = None;
                for _ in 0..50 {
                    if let Some(n) = self.fetch_partitions(topic).await? {
                        found = Some(n);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                found.ok_or_else(|| SinkError::CreateTopic {
                    topic: topic.to_string(),
                    message: "created, but its metadata never appeared".into(),
                })?
            }
        };
        self.partitions.insert(topic.clone(), n);
        Ok(n)
    }

    async fn fetch_partitions(&self, topic: &str) -> Result<Option<i32>, SinkError> {
        let client = self.producer.client();
        // librdkafka blocks here; keep the runtime's other tasks (the replication
        // reader answering keepalives) running meanwhile.
        let metadata = tokio::task::block_in_place(|| {
            client.fetch_metadata(Some(topic), Duration::from_secs(10))
        })
        .map_err(|e| SinkError::Metadata {
            servers: self.settings.bootstrap_servers.clone(),
            topic: topic.to_owned(),
            message: e.to_string(),
        })?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
            .filter(|n| *n > 0))
    }

    async fn create_topic(&self, topic: &str) -> Result<(), SinkError> {
        let compacted = topic == OFFSETS_TOPIC;
        let partitions = if compacted {
            1
        } else {
            self.settings.partitions.unwrap_or(-1)
        };
        let replication =
            TopicReplication::Fixed(self.settings.replication_factor.map_or(-1, i32::from));
        let policy = if compacted {
            "compact"
        } else {
            self.settings.cleanup_policy.as_kafka_value()
        };
        let new = NewTopic::new(topic, partitions, replication).set("cleanup.policy", policy);
        let results = self
            .admin
            .create_topics(
                &[new],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .map_err(|e| SinkError::CreateTopic {
                topic: topic.to_owned(),
                message: e.to_string(),
            })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(SinkError::CreateTopic {
                        topic: topic.to_owned(),
                        message: code.to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    /// The partition the record goes to (the Java client's choice for its key).
    pub fn partition_of(&self, topic: &str, key: Option<&[u8]>) -> i32 {
        let n = self.partitions.get(topic).copied().unwrap_or(1);
        key.map_or(0, |k| partition_for_key(k, n))
    }

    /// Hands a record to the producer, waiting while its queue is full.
    pub async fn send(&self, record: &OutRecord, partition: i32) -> Result<(), SinkError> {
        let position = record.position.to_string();
        let txid = record.txid.to_string();
        loop {
            let mut headers = OwnedHeaders::new_with_capacity(2 + record.headers.len())
                .insert(Header {
                    key: HEADER_POSITION,
                    value: Some(position.as_bytes()),
                })
                .insert(Header {
                    key: HEADER_TXID,
                    value: Some(txid.as_bytes()),
                });
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_slice()),
                });
            }
            let mut base: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&record.topic, record.position.commit_lsn.0 as usize)
                    .partition(partition)
                    .headers(headers);
            if let Some(key) = &record.key {
                base = base.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                base = base.payload(value.as_slice());
            }
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => {
                    return Err(SinkError::Delivery {
                        commit_lsn: record.position.commit_lsn,
                        message: e.to_string(),
                    })
                }
            }
        }
    }

    /// Records the connector's checkpoint in [`OFFSETS_TOPIC`] (best effort: its delivery
    /// report carries LSN 0, which the checkpoint ignores).
    pub async fn write_checkpoint(
        &mut self,
        connector: &str,
        slot: &str,
        checkpoint: &crate::checkpoint::Checkpoint,
    ) -> Result<(), SinkError> {
        let topic: Arc<str> = OFFSETS_TOPIC.into();
        let partitions = self.ensure_topic(&topic).await?;
        let value = serde_json::json!({
            "connector": connector,
            "slot": slot,
            "position": checkpoint.position.to_string(),
            "flush_lsn": checkpoint.flush_lsn.to_string(),
            "ts_ms": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        })
        .to_string();
        let base: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(OFFSETS_TOPIC, 0)
            .partition(partition_for_key(connector.as_bytes(), partitions))
            .key(connector.as_bytes())
            .payload(value.as_bytes());
        self.producer
            .send(base)
            .map_err(|(e, _)| SinkError::Delivery {
                commit_lsn: Lsn::ZERO,
                message: format!("checkpoint record: {e}"),
            })
    }

    /// Waits until every record handed over is acknowledged (or `timeout`).
    pub fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        self.producer
            .flush(timeout)
            .map_err(|e| SinkError::Delivery {
                commit_lsn: Lsn::ZERO,
                message: e.to_string(),
            })
    }

    /// A fatal producer error (e.g. the gapless guarantee broken), if any.
    pub fn fatal_error(&self) -> Option<String> {
        self.producer
            .client()
            .fatal_error()
            .map(|(code, text)| format!("{code}: {text}"))
    }
}

/// For exactly-once restarts: the position in the last record of each partition of
/// `topic` (partitions that are empty or hold no walcast record are absent). Blocking.
pub fn last_positions(
    settings: &Kafka,
    topic: &str,
    client_id: &str,
) -> Result<HashMap<i32, Position>, SinkError> {
    {
        let consumer: BaseConsumer = base_config(settings, client_id)
            .set("group.id", format!("{client_id}-reconcile"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| SinkError::Config(e.to_string()))?;
        let metadata_err = |e: KafkaError| SinkError::Metadata {
            servers: settings.bootstrap_servers.clone(),
            topic: topic.to_owned(),
            message: e.to_string(),
        };
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(metadata_err)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut out = HashMap::new();
        for partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .map_err(metadata_err)?;
            if high <= low {
                continue;
            }
            // Walk back from the end until a record with a position (the last records
            // can be tombstones of the same change, which carry one too).
            let mut tpl = rdkafka::TopicPartitionList::new();
            tpl.add_partition_offset(
                topic,
                partition,
                rdkafka::Offset::Offset((high - 1).max(low)),
            )
            .map_err(metadata_err)?;
            consumer.assign(&tpl).map_err(metadata_err)?;
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while std::time::Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(message)) => {
                        let position = message.headers().and_then(|h| {
                            h.iter()
                                .find(|h| h.key == HEADER_POSITION)
                                .and_then(|h| h.value)
                                .and_then(|v| std::str::from_utf8(v).ok())
                                .and_then(|v| v.parse::<Position>().ok())
                        });
                        if let Some(p) = position {
                            out.insert(partition, p);
                        }
                        if message.offset() >= high - 1 {
                            break;
                        }
                    }
                    Some(Err(e))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) =>
                    {
                        break
                    }
                    Some(Err(e)) => return Err(metadata_err(e)),
                    None => {}
                }
            }
        }
        Ok(out)
    }
}

fn base_config(settings: &Kafka, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.bootstrap_servers);
    config.set("client.id", client_id);
    // Connection settings (TLS, SASL) apply to every client walcast makes.
    for (k, v) in &settings.producer {
        if k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") {
            config.set(k, v.expose());
        }
    }
    config
}
