//! The Kafka producer: per-table topics (created when missing), records placed on the
//! partition the Java client would pick, position headers, and delivery reports fed
//! back to the checkpoint. Idempotent with librdkafka's gapless guarantee, so a record
//! that finally fails is a fatal error, never a silent hole.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use tokio::sync::mpsc;

use super::checkpoint_record::CheckpointRecord;
use super::partition::partition_for_key;
use super::position_header::{push_decimal, push_position};
use super::reconcile::Origin;
use super::{DeliveryReport, OutRecord, RecordSink, SinkError};
use crate::checkpoint::{Position, Ticket};
use crate::config::{DeliveryMode, Kafka};
use crate::model::lsn::Lsn;

/// The compacted topic holding each connector's latest checkpoint, keyed by connector
/// name: what an operator (or a later snapshot) reads to see where a connector stands.
pub const OFFSETS_TOPIC: &str = "walcast.offsets";

/// `segment.ms` of [`OFFSETS_TOPIC`] when walcast creates it (one hour), so compaction
/// keeps its uncompacted tail short.
const OFFSETS_SEGMENT_MS: &str = "3600000";

/// Header names carrying a record's position.
pub const HEADER_POSITION: &str = "walcast.position";
pub const HEADER_TXID: &str = "walcast.txid";
/// Who wrote the record: the connector's identity (see `reconcile::Origin`), so a restart
/// reconciles against this connector's records only.
pub const HEADER_SOURCE: &str = "walcast.source";
/// On initial-snapshot records: the row's primary key as a JSON array of its text
/// values, so a snapshot interrupted by a crash resumes after what Kafka holds.
pub const HEADER_SNAPSHOT_KEY: &str = "walcast.snapshot.key";

struct Reporter {
    reports: mpsc::UnboundedSender<DeliveryReport>,
    /// The newest client-level error librdkafka reported (e.g. an authentication
    /// failure), so walcast's own message can name the cause.
    last_error: Arc<std::sync::Mutex<Option<String>>>,
    /// Set when librdkafka raises a fatal error (it reports one through this callback
    /// as `ERR__FATAL`).
    fatal_raised: Arc<AtomicBool>,
}

impl ClientContext for Reporter {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", "{error}: {reason}");
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            self.fatal_raised.store(true, Ordering::Relaxed);
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(reason.to_owned());
        }
    }
}

/// The admin client's context: its connection errors repeat the producer's, so they are
/// logged at debug level only.
struct QuietAdmin;

impl ClientContext for QuietAdmin {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "admin client: {error}: {reason}");
    }
}

/// Whether a librdkafka error text says the cluster refused who walcast is (retrying
/// cannot help).
fn is_refusal(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    [
        "authentication",
        "sasl",
        "certificate",
        "ssl handshake",
        "unknown ca",
        "access denied",
    ]
    .iter()
    .any(|needle| reason.contains(needle))
}

impl ProducerContext for Reporter {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: usize) {
        let error = result.as_ref().err().map(|(e, _)| e.to_string());
        let _ = self.reports.send(DeliveryReport {
            ticket: Ticket(ticket as u64),
            error,
        });
    }
}

/// The producer and what it knows about its topics.
pub struct KafkaSink {
    producer: ThreadedProducer<Reporter>,
    /// Debezium's `__debezium.context.*` headers, for data events and tombstones.
    context_headers: Vec<(&'static str, Vec<u8>)>,
    admin: AdminClient<QuietAdmin>,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
    /// See [`Reporter::fatal_raised`].
    fatal_raised: Arc<AtomicBool>,
    /// Calls of [`RecordSink::fatal_error`], so that it asks librdkafka itself (a lock
    /// and a 512-byte buffer, 3% of a snapshot's CPU when done per event) only now and
    /// then.
    fatal_checks: AtomicU32,
    settings: Kafka,
    partitions: super::topic_map::TopicMap<i32>,
    /// `[delivery] mode = "transactional"`: records are produced inside Kafka
    /// transactions that walcast opens and commits.
    transactional: bool,
    in_transaction: bool,
    /// Also the transactional id.
    client_id: String,
    /// Where each record's position headers are formatted.
    scratch: String,
    /// The connector's identity, stamped on every record ([`HEADER_SOURCE`]) and in
    /// its checkpoint records.
    identity: String,
}

/// How long walcast waits for one Kafka transaction call (init, commit, abort) before
/// retrying it or giving up.
const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(60);

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
            // librdkafka leaves Nagle's algorithm on: a small produce request then waits
            // for the previous one's TCP ACK, which the broker's delayed ACK holds back
            // up to 40–200 ms (p99 commit-to-append 200 ms at 5,000 changes/s here).
            ("socket.nagle.disable", "true"),
            // librdkafka's reconnect backoff grows to 10 s while a broker refuses
            // connections, and a reconnect after the broker is back waited that long
            // (the Kafka connection-cut test saw 3–10 s); 2 s bounds the wait.
            ("reconnect.backoff.max.ms", "2000"),
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
            DeliveryMode::ExactlyOnce => {
                config.set("enable.idempotence", "true");
                config.set("enable.gapless.guarantee", "true");
            }
            DeliveryMode::Transactional => {
                // One id per connector: a second instance of the same connector fences
                // the first (its next transaction call fails), so two never interleave.
                config.set("transactional.id", client_id);
                if !settings.producer.contains_key("transaction.timeout.ms") {
                    // A large source transaction is one Kafka transaction; give it time.
                    config.set("transaction.timeout.ms", "300000");
                }
            }
        }
        let last_error = Arc::new(std::sync::Mutex::new(None));
        let fatal_raised = Arc::new(AtomicBool::new(false));
        let producer: ThreadedProducer<Reporter> = config
            .create_with_context(Reporter {
                reports: tx,
                last_error: last_error.clone(),
                fatal_raised: fatal_raised.clone(),
            })
            .map_err(|e| SinkError::Config(explain_setup_error(&e.to_string())))?;
        let admin = base_config(settings, client_id)
            .create_with_context(QuietAdmin)
            .map_err(|e| SinkError::Config(explain_setup_error(&e.to_string())))?;
        Ok((
            Self {
                producer,
                context_headers: Vec::new(),
                admin,
                settings: settings.clone(),
                partitions: Default::default(),
                last_error,
                fatal_raised,
                fatal_checks: AtomicU32::new(0),
                transactional: mode == DeliveryMode::Transactional,
                in_transaction: false,
                client_id: client_id.to_owned(),
                scratch: String::with_capacity(48),
                identity: String::new(),
            },
            rx,
        ))
    }

    /// Fails fast, before any slot or snapshot work, when the cluster can't be reached or
    /// refuses the credentials.
    pub fn check_connection(&self) -> Result<(), SinkError> {
        let client = self.producer.client();
        // Up to 15 s for a slow or starting cluster, but a refusal (wrong password,
        // untrusted certificate) ends the wait at once: retrying cannot fix it.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let result = tokio::task::block_in_place(|| {
                client.fetch_metadata(None, Duration::from_millis(1500))
            });
            let Err(e) = result else {
                return Ok(());
            };
            let cause = self.last_error.lock().ok().and_then(|l| l.clone());
            let refused = cause.as_deref().is_some_and(is_refusal);
            if refused || std::time::Instant::now() >= deadline {
                return Err(SinkError::Connection {
                    servers: self.settings.bootstrap_servers.clone(),
                    message: cause.unwrap_or_else(|| e.to_string()),
                });
            }
        }
    }

    /// Transactional mode: registers the transactional id with the cluster, fencing any
    /// earlier producer of the same connector and aborting what it left open. Blocking.
    pub fn init_transactions(&self) -> Result<(), SinkError> {
        if !self.transactional {
            return Ok(());
        }
        tokio::task::block_in_place(|| self.producer.init_transactions(TRANSACTION_CALL_TIMEOUT))
            .map_err(|e| SinkError::Transaction(format!(
                "cannot initialise Kafka transactions: {e}; the cluster must support transactions (Kafka ≥ 0.11 with transaction.state.log.replication.factor ≤ the number of brokers) and grant walcast's principal Write and Describe on TransactionalId {}",
                self.client_id
            )))
    }

    /// Waits (blocking) until every record handed to the producer has its delivery
    /// report, or `timeout`. The commit flushes too, but rust-rdkafka's flush checks
    /// the queue once per 100 ms poll whose events the producer's own polling thread
    /// takes, so every commit cost at least 100 ms; this looks every millisecond.
    fn wait_until_delivered(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sets the identity stamped on every record from now on (see `reconcile::Origin`).
    pub fn stamp(&mut self, identity: &str) {
        identity.clone_into(&mut self.identity);
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
        self.create_topic_as(topic, false).await
    }

    /// Asks the cluster whether this connector may create its topics (with its
    /// partitions, replication and policy settings), creating nothing: for `walcast
    /// check`.
    pub async fn check_topic_creation(&self) -> Result<(), SinkError> {
        let probe = format!("{}.walcast-check", self.settings.topic_prefix);
        self.create_topic_as(&probe, true).await
    }

    async fn create_topic_as(&self, topic: &str, validate_only: bool) -> Result<(), SinkError> {
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
        let min_insync = self.settings.min_insync_replicas.map(|m| m.to_string());
        let mut new = NewTopic::new(topic, partitions, replication).set("cleanup.policy", policy);
        if let Some(min_insync) = &min_insync {
            new = new.set("min.insync.replicas", min_insync);
        }
        if compacted {
            // Kafka compacts only closed segments, and by default a segment stays open for
            // 7 days: with a record a second per connector, a connector starting fresh
            // would read a week of history back. Hourly segments bound that to an hour.
            new = new.set("segment.ms", OFFSETS_SEGMENT_MS);
        }
        let results = self
            .admin
            .create_topics(
                &[new],
                &AdminOptions::new()
                    .operation_timeout(Some(Duration::from_secs(30)))
                    .validate_only(validate_only),
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
}

impl RecordSink for KafkaSink {
    fn is_transactional(&self) -> bool {
        self.transactional
    }

    fn set_context_headers(&mut self, headers: Vec<(&'static str, Vec<u8>)>) {
        self.context_headers = headers;
    }

    fn queue_depth(&self) -> usize {
        usize::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }

    fn begin_transaction(&mut self) -> Result<(), SinkError> {
        if !self.transactional || self.in_transaction {
            return Ok(());
        }
        self.producer.begin_transaction().map_err(|e| {
            SinkError::Transaction(format!(
                "cannot begin a Kafka transaction: {}",
                describe_txn_error(&e)
            ))
        })?;
        self.in_transaction = true;
        Ok(())
    }

    /// Commits the open Kafka transaction: every record sent since it began becomes
    /// visible to read_committed consumers at once. Retriable failures are retried; an
    /// abortable one aborts the transaction and is returned (nothing it held is
    /// confirmed, so the source sends it again after a restart). Blocking.
    fn commit_transaction(&mut self) -> Result<(), SinkError> {
        if !self.in_transaction {
            return Ok(());
        }
        let mut attempt = 0u32;
        loop {
            let result = tokio::task::block_in_place(|| {
                self.wait_until_delivered(TRANSACTION_CALL_TIMEOUT);
                self.producer.commit_transaction(TRANSACTION_CALL_TIMEOUT)
            });
            match result {
                Ok(()) => {
                    self.in_transaction = false;
                    return Ok(());
                }
                Err(KafkaError::Transaction(e)) if e.is_retriable() && attempt < 20 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "committing the Kafka transaction failed; retrying");
                    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt.min(10))));
                }
                Err(e) => {
                    let message = describe_txn_error(&e);
                    if matches!(&e, KafkaError::Transaction(t) if t.txn_requires_abort()) {
                        let _ = self.abort_transaction();
                    }
                    return Err(SinkError::Transaction(format!(
                        "Kafka did not commit the transaction: {message}; nothing in it was confirmed to PostgreSQL, so it is sent again after a restart"
                    )));
                }
            }
        }
    }

    /// Aborts the open Kafka transaction (read_committed consumers never see its
    /// records). Blocking.
    fn abort_transaction(&mut self) -> Result<(), SinkError> {
        if !self.in_transaction {
            return Ok(());
        }
        let result = tokio::task::block_in_place(|| {
            self.producer.abort_transaction(TRANSACTION_CALL_TIMEOUT)
        });
        self.in_transaction = false;
        result.map_err(|e| {
            SinkError::Transaction(format!(
                "cannot abort the Kafka transaction: {}",
                describe_txn_error(&e)
            ))
        })
    }

    async fn ensure_topic(&mut self, topic: &Arc<str>) -> Result<i32, SinkError> {
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

    fn partition_of(&self, topic: &str, key: Option<&[u8]>) -> i32 {
        let n = self.partitions.get(topic).copied().unwrap_or(1);
        key.map_or(0, |k| partition_for_key(k, n))
    }

    async fn send(&mut self, record: &OutRecord, partition: i32) -> Result<(), SinkError> {
        // Both header values are formatted into one reused buffer (no allocation per
        // record).
        self.scratch.clear();
        push_position(&mut self.scratch, record.position);
        let split = self.scratch.len();
        push_decimal(&mut self.scratch, u64::from(record.txid));
        let (position, txid) = self.scratch.split_at(split);
        loop {
            let mut headers = OwnedHeaders::new_with_capacity(3 + record.headers.len())
                .insert(Header {
                    key: HEADER_POSITION,
                    value: Some(position.as_bytes()),
                })
                .insert(Header {
                    key: HEADER_TXID,
                    value: Some(txid.as_bytes()),
                })
                .insert(Header {
                    key: HEADER_SOURCE,
                    value: Some(self.identity.as_bytes()),
                });
            let context = if record.context {
                self.context_headers.as_slice()
            } else {
                &[]
            };
            for (key, value) in record.headers.iter().chain(context) {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_slice()),
                });
            }
            let mut base: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&record.topic, record.ticket.0 as usize)
                    .partition(partition)
                    .headers(headers);
            if let Some(key) = &record.key {
                base = base.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                base = base.payload(value.as_slice());
            }
            if let Some(ms) = record.timestamp_ms {
                base = base.timestamp(ms);
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

    async fn write_checkpoint(&mut self, record: &CheckpointRecord) -> Result<(), SinkError> {
        let topic: Arc<str> = OFFSETS_TOPIC.into();
        let partitions = self.ensure_topic(&topic).await?;
        let connector = record.connector.as_str();
        let value = serde_json::to_string(record).map_err(|e| SinkError::Delivery {
            commit_lsn: Lsn::ZERO,
            message: format!("checkpoint record: {e}"),
        })?;
        let base: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(OFFSETS_TOPIC, Ticket::NONE.0 as usize)
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

    async fn write_heartbeat(
        &mut self,
        topic: &Arc<str>,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), SinkError> {
        self.ensure_topic(topic).await?;
        let base: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(topic, Ticket::NONE.0 as usize)
                .partition(0)
                .key(key)
                .payload(value);
        self.producer
            .send(base)
            .map_err(|(e, _)| SinkError::Delivery {
                commit_lsn: Lsn::ZERO,
                message: format!("heartbeat record: {e}"),
            })
    }

    fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        self.producer
            .flush(timeout)
            .map_err(|e| SinkError::Delivery {
                commit_lsn: Lsn::ZERO,
                message: e.to_string(),
            })
    }

    fn fatal_error(&self) -> Option<String> {
        // librdkafka reports a fatal error through the error callback as well; asking it
        // directly every 256th call covers a report still on its way.
        let call = self.fatal_checks.fetch_add(1, Ordering::Relaxed);
        if !self.fatal_raised.load(Ordering::Relaxed) && call % 256 != 0 {
            return None;
        }
        self.producer
            .client()
            .fatal_error()
            .map(|(code, text)| format!("{code}: {text}"))
    }

    async fn last_positions(
        &self,
        topic: &str,
        origin: &Origin,
    ) -> Result<HashMap<i32, Position>, SinkError> {
        let (settings, topic, origin) = (self.settings.clone(), topic.to_owned(), origin.clone());
        // librdkafka's consumer blocks; keep the runtime's other tasks running.
        tokio::task::spawn_blocking(move || {
            super::reconcile::last_positions(&settings, &topic, &origin)
        })
        .await
        .map_err(|e| SinkError::Config(format!("reading the topic's last positions: {e}")))?
    }
}

/// Adds the likely fix to librdkafka's client-creation errors.
fn explain_setup_error(message: &str) -> String {
    if message.contains("ssl.key.location") {
        format!("{message} (check ssl.key.location, and ssl.key.password if the key is encrypted)")
    } else {
        message.to_owned()
    }
}

/// A transaction error with what to do about it when Kafka says this producer was
/// fenced (another instance of the connector took over).
fn describe_txn_error(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch) => format!(
            "{e} (another walcast instance of this connector started and took over its transactional id; run one instance per connector)"
        ),
        _ => e.to_string(),
    }
}

pub(super) fn base_config(settings: &Kafka, client_id: &str) -> ClientConfig {
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

#[cfg(test)]
mod tests;
