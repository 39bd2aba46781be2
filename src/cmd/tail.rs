//! `walcast tail`: reads a Kafka topic and prints each record as one JSON line, its key
//! and value decoded through the schema registry (Confluent wire format, Avro).
//!
//! No consumer group: every partition is assigned directly (from the end, or from the
//! beginning), nothing is committed, so tailing never disturbs anyone's offsets. A
//! record that cannot be decoded (schema id unknown to the registry, bytes that do not
//! match the schema, no Confluent framing) becomes an `"error"` line and tailing goes
//! on; only an unreachable broker or registry, a missing topic or refused credentials
//! stop it.

pub mod render;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use base64::Engine;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::codec::wire;
use crate::config::{self, HumanDuration, Secret};
use crate::registry::{RegistryClient, RegistryClientConfig, RegistryError, RetryPolicy};
use render::{names_of, render, Json, Names};

/// Used when neither a flag nor a connector file names the broker.
pub const DEFAULT_BOOTSTRAP_SERVERS: &str = "127.0.0.1:9092";
/// Used when neither a flag nor a connector file names the registry.
pub const DEFAULT_REGISTRY_URL: &str = "http://127.0.0.1:8081";
/// How long to wait for the broker's metadata when `--timeout` is not given.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The command line of `walcast tail`, before defaults are applied.
#[derive(Debug, Clone, Default)]
pub struct TailArgs {
    pub topic: String,
    pub bootstrap_servers: Option<String>,
    pub registry: Option<String>,
    pub from_beginning: bool,
    pub max_messages: Option<u64>,
    pub timeout: Option<Duration>,
    pub connector: Option<PathBuf>,
}

/// Everything `tail` needs, resolved: flags win over the connector file, which wins
/// over the defaults.
#[derive(Debug, Clone)]
pub struct TailOptions {
    pub topic: String,
    pub bootstrap_servers: String,
    /// librdkafka connection properties (TLS, SASL) from the connector file.
    pub kafka_properties: Vec<(String, Secret)>,
    pub registry: RegistryClientConfig,
    pub from_beginning: bool,
    pub max_messages: Option<u64>,
    /// Stop after this long without a record (also bounds the wait for the broker).
    pub idle_timeout: Option<Duration>,
}

/// Why tailing stopped early. Every message is one line naming the thing and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("{0}")]
    Config(String),
    #[error("cannot set up the Kafka consumer: {0}")]
    Consumer(String),
    #[error("cannot reach Kafka at {servers} within {waited:?}: {message}; check --bootstrap-servers (or [kafka] bootstrap_servers) and that the broker is running")]
    Unreachable {
        servers: String,
        waited: Duration,
        message: String,
    },
    #[error("topic {topic} does not exist at Kafka {servers}; check the name (walcast's topics are <topic_prefix>.<schema>.<table>)")]
    UnknownTopic { topic: String, servers: String },
    #[error("cannot read topic {topic} at Kafka {servers}: {message}")]
    Topic {
        topic: String,
        servers: String,
        message: String,
    },
    #[error("{0}")]
    Registry(RegistryError),
    #[error("cannot write to standard output: {0}")]
    Output(std::io::Error),
}

/// `--timeout` values: `500ms`, `10s`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<HumanDuration>().map(|d| d.0)
}

impl TailOptions {
    /// Applies the connector file (when given) and the defaults under the flags.
    pub fn resolve(args: TailArgs) -> Result<Self, TailError> {
        let connector = match &args.connector {
            Some(path) => {
                Some(config::load_file(path).map_err(|e| TailError::Config(e.to_string()))?)
            }
            None => None,
        };
        let bootstrap_servers = args
            .bootstrap_servers
            .clone()
            .or_else(|| {
                connector
                    .as_ref()
                    .map(|c| c.kafka.bootstrap_servers.clone())
            })
            .unwrap_or_else(|| DEFAULT_BOOTSTRAP_SERVERS.to_owned());
        let kafka_properties = connector
            .as_ref()
            .map(|c| {
                c.kafka
                    .producer
                    .iter()
                    .filter(|(k, _)| {
                        k.starts_with("security.")
                            || k.starts_with("sasl.")
                            || k.starts_with("ssl.")
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        // --registry replaces the connector's whole [registry] (its credentials are not
        // sent to another registry); credentials may be given in the URL (user:pass@).
        let mut registry = match (&args.registry, &connector) {
            (Some(url), _) => RegistryClientConfig::new(url.clone()),
            (None, Some(c)) => RegistryClientConfig::from_connector(&c.registry),
            (None, None) => RegistryClientConfig::new(DEFAULT_REGISTRY_URL),
        };
        // A developer's tool: a few quick retries, not the pipeline's patient ones.
        registry.retry = RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(2),
        };
        registry.request_timeout = Duration::from_secs(10);
        Ok(Self {
            topic: args.topic,
            bootstrap_servers,
            kafka_properties,
            registry,
            from_beginning: args.from_beginning,
            max_messages: args.max_messages,
            idle_timeout: args.timeout,
        })
    }
}

/// librdkafka's own log lines go to walcast's log at debug level (`--log-level debug`
/// shows them); the errors that matter come back as one-line [`TailError`]s.
struct TailContext;

impl ClientContext for TailContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, facility, "{message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "{error}: {reason}");
    }
}

impl ConsumerContext for TailContext {}

/// Tails `args.topic`, writing one JSON line per record to stdout, until
/// `--max-messages`, `--timeout` without a record, or SIGINT/SIGTERM. Returns the
/// number of records printed.
pub async fn run(args: TailArgs) -> Result<u64, TailError> {
    let options = TailOptions::resolve(args)?;
    let stop = Box::pin(crate::shutdown::shutdown_signal());
    tail(&options, &mut std::io::stdout(), stop).await
}

/// The loop behind [`run`], writing to `out` and stopping early when `stop` completes.
pub async fn tail<W: Write>(
    options: &TailOptions,
    out: &mut W,
    stop: impl std::future::Future<Output = ()> + Unpin,
) -> Result<u64, TailError> {
    let registry =
        Arc::new(RegistryClient::new(options.registry.clone()).map_err(TailError::Registry)?);
    let consumer = Arc::new(consumer(options)?);
    let partitions = partitions(&consumer, options).await?;
    check_registry(&registry, &options.topic).await?;

    let mut assignment = TopicPartitionList::new();
    let start = if options.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    for partition in &partitions {
        assignment
            .add_partition_offset(&options.topic, *partition, start)
            .map_err(|e| TailError::Consumer(e.to_string()))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| TailError::Consumer(e.to_string()))?;
    tracing::debug!(topic = %options.topic, ?partitions, from_beginning = options.from_beginning, "tailing");

    let mut decoder = Decoder::new(registry);
    let mut printed = 0u64;
    let mut stop = stop;
    if options.max_messages == Some(0) {
        return Ok(0);
    }
    loop {
        let idle = async {
            match options.idle_timeout {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let message = tokio::select! {
            _ = &mut stop => return Ok(printed),
            _ = idle => return Ok(printed),
            message = consumer.recv() => message,
        };
        let line = match message {
            Ok(message) => decoder.line(&message).await?,
            Err(KafkaError::MessageConsumption(code)) if fatal_consume_error(code) => {
                return Err(TailError::Topic {
                    topic: options.topic.clone(),
                    servers: options.bootstrap_servers.clone(),
                    message: code.to_string(),
                });
            }
            Err(e) => {
                tracing::warn!(topic = %options.topic, "Kafka consumer: {e}");
                continue;
            }
        };
        let mut text = line.to_line();
        text.push('\n');
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => {}
            // The reader went away (`walcast tail ... | head`): a normal end.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(printed),
            Err(e) => return Err(TailError::Output(e)),
        }
        printed += 1;
        if options.max_messages.is_some_and(|max| printed >= max) {
            return Ok(printed);
        }
    }
}

fn fatal_consume_error(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
    )
}

fn consumer(options: &TailOptions) -> Result<StreamConsumer<TailContext>, TailError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.bootstrap_servers)
        .set("client.id", "walcast-tail")
        // librdkafka wants a group id for assign(); the group never forms (partitions
        // are assigned directly, no join) and nothing is ever committed to it.
        .set("group.id", format!("walcast-tail-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("allow.auto.create.topics", "false")
        .set_log_level(RDKafkaLogLevel::Debug);
    for (k, v) in &options.kafka_properties {
        config.set(k, v.expose());
    }
    config
        .create_with_context(TailContext)
        .map_err(|e| TailError::Consumer(e.to_string()))
}

/// The topic's partitions, from the broker's metadata (retried until the timeout while
/// the broker is not reachable or the topic has no leader yet).
async fn partitions(
    consumer: &Arc<StreamConsumer<TailContext>>,
    options: &TailOptions,
) -> Result<Vec<i32>, TailError> {
    let waited = options.idle_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let deadline = tokio::time::Instant::now() + waited;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let fetch = {
            let consumer = consumer.clone();
            let topic = options.topic.clone();
            let timeout = remaining.max(Duration::from_millis(100));
            tokio::task::spawn_blocking(move || {
                consumer
                    .fetch_metadata(Some(&topic), timeout)
                    .map(|metadata| {
                        metadata
                            .topics()
                            .iter()
                            .find(|t| t.name() == topic)
                            .map(|t| {
                                (
                                    t.error().map(RDKafkaErrorCode::from),
                                    t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>(),
                                )
                            })
                    })
            })
            .await
            .map_err(|e| TailError::Consumer(e.to_string()))?
        };
        let retry_reason = match fetch {
            Ok(Some((None, partitions))) if !partitions.is_empty() => {
                let mut partitions = partitions;
                partitions.sort_unstable();
                return Ok(partitions);
            }
            Ok(None)
            | Ok(Some((
                Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic),
                _,
            ))) => {
                return Err(TailError::UnknownTopic {
                    topic: options.topic.clone(),
                    servers: options.bootstrap_servers.clone(),
                })
            }
            Ok(Some((Some(code @ RDKafkaErrorCode::TopicAuthorizationFailed), _))) => {
                return Err(TailError::Topic {
                    topic: options.topic.clone(),
                    servers: options.bootstrap_servers.clone(),
                    message: code.to_string(),
                })
            }
            Ok(Some((Some(code), _))) => code.to_string(),
            Ok(Some((None, _))) => "the topic has no partitions yet".to_owned(),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(TailError::Unreachable {
                servers: options.bootstrap_servers.clone(),
                waited,
                message: retry_reason,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Fails early, with the registry's own message, when it is unreachable or refuses the
/// credentials (rather than at the first record). Any other answer will do.
async fn check_registry(registry: &RegistryClient, topic: &str) -> Result<(), TailError> {
    match registry.latest_version(&format!("{topic}-value")).await {
        Err(e) if registry_fatal(&e) => Err(TailError::Registry(e)),
        _ => Ok(()),
    }
}

/// Registry errors that would fail every record alike: tailing stops on them.
fn registry_fatal(error: &RegistryError) -> bool {
    matches!(
        error,
        RegistryError::Unavailable { .. }
            | RegistryError::InvalidUrl { .. }
            | RegistryError::CaFile { .. }
            | RegistryError::Client(_)
            | RegistryError::Unauthorized { status: 401, .. }
    )
}

/// A writer schema, parsed, with its named types for references.
struct Writer {
    schema: Schema,
    names: Names,
}

/// Decodes records, caching the parsed schema (or the reason there is none) per id.
struct Decoder {
    registry: Arc<RegistryClient>,
    schemas: HashMap<u32, Result<Arc<Writer>, String>>,
}

impl Decoder {
    fn new(registry: Arc<RegistryClient>) -> Self {
        Self {
            registry,
            schemas: HashMap::new(),
        }
    }

    /// The JSON line for one record: decoded, or with an `"error"` saying why not.
    async fn line(&mut self, message: &BorrowedMessage<'_>) -> Result<Json, TailError> {
        let mut fields = vec![
            ("topic".to_owned(), Json::str(message.topic())),
            (
                "partition".to_owned(),
                Json::Int(i64::from(message.partition())),
            ),
            ("offset".to_owned(), Json::Int(message.offset())),
            (
                "timestamp".to_owned(),
                message
                    .timestamp()
                    .to_millis()
                    .map_or(Json::Null, Json::Int),
            ),
            ("headers".to_owned(), headers(message)),
        ];
        let key = self.decode(message.key()).await?;
        let value = self.decode(message.payload()).await?;
        match (key, value) {
            (Ok(key), Ok(value)) => {
                fields.push(("key".to_owned(), key));
                fields.push(("value".to_owned(), value));
            }
            (key, value) => {
                let problems: Vec<String> = [("key", key), ("value", value)]
                    .into_iter()
                    .filter_map(|(what, r)| r.err().map(|e| format!("{what}: {e}")))
                    .collect();
                fields.push(("error".to_owned(), Json::Str(problems.join("; "))));
            }
        }
        Ok(Json::Object(fields))
    }

    /// `Ok(Ok(json))` decoded (null for no bytes), `Ok(Err(why))` for this record only,
    /// `Err` when the registry cannot be used at all.
    async fn decode(&mut self, bytes: Option<&[u8]>) -> Result<Result<Json, String>, TailError> {
        let Some(bytes) = bytes else {
            return Ok(Ok(Json::Null));
        };
        let Some((id, datum)) = wire::split(bytes) else {
            return Ok(Err(format!(
                "{} bytes not in the Confluent wire format (magic byte 0, then a 4-byte schema id), starting {}",
                bytes.len(),
                hex_preview(bytes)
            )));
        };
        let writer = match self.writer(id).await? {
            Ok(writer) => writer,
            Err(why) => return Ok(Err(why)),
        };
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut reader = ShortReadGuard {
                rest: datum,
                short: false,
            };
            apache_avro::from_avro_datum(&writer.schema, &mut reader, None)
                .map(|value| (value, reader.short, reader.rest.len()))
        }));
        Ok(match decoded {
            Ok(Ok((value, false, 0))) => Ok(render(&value, &writer.schema, &writer.names)),
            // apache-avro turns some reads past the end into nulls: caught here.
            Ok(Ok((_, true, _))) => Err(format!(
                "the {} bytes after the header end before the datum of schema id {id} does (cut short, or written with another schema)",
                datum.len()
            )),
            Ok(Ok((_, false, left))) => Err(format!(
                "the {} bytes after the header do not match schema id {id}: {left} bytes are left over after the datum",
                datum.len()
            )),
            Ok(Err(e)) => Err(format!(
                "the {} bytes after the header do not decode with schema id {id}: {e}",
                datum.len()
            )),
            Err(_) => Err(format!(
                "the {} bytes after the header do not decode with schema id {id} (the Avro decoder panicked)",
                datum.len()
            )),
        })
    }

    async fn writer(&mut self, id: u32) -> Result<Result<Arc<Writer>, String>, TailError> {
        if let Some(known) = self.schemas.get(&id) {
            return Ok(known.clone());
        }
        let result = match self.registry.schema_by_id(id).await {
            Ok(text) => match Schema::parse_str(&text) {
                Ok(schema) => Ok(Arc::new(Writer {
                    names: names_of(&schema),
                    schema,
                })),
                Err(e) => Err(format!(
                    "schema id {id} from the registry at {} is not a valid Avro schema: {e}",
                    self.registry.url()
                )),
            },
            Err(e) if registry_fatal(&e) => return Err(TailError::Registry(e)),
            Err(RegistryError::NotFound { .. }) => Err(format!(
                "schema id {id} is not known to the schema registry at {}",
                self.registry.url()
            )),
            // Other answers (403, a malformed body) may not last: not cached.
            Err(e) => return Ok(Err(e.to_string())),
        };
        self.schemas.insert(id, result.clone());
        Ok(result)
    }
}

/// Reads a datum and notes any read that asks for more bytes than are left.
struct ShortReadGuard<'a> {
    rest: &'a [u8],
    short: bool,
}

impl std::io::Read for ShortReadGuard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.len() > self.rest.len() {
            self.short = true;
        }
        self.rest.read(buf)
    }
}

/// Header values as text (UTF-8) or base64 (anything else); a null value stays null.
fn headers(message: &BorrowedMessage<'_>) -> Json {
    let Some(headers) = message.headers() else {
        return Json::Object(Vec::new());
    };
    let mut entries: Vec<(String, Json)> = Vec::new();
    for header in headers.iter() {
        let value = match header.value {
            None => Json::Null,
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => Json::str(text),
                Err(_) => Json::Str(base64::engine::general_purpose::STANDARD.encode(bytes)),
            },
        };
        // A repeated name keeps its last value, as most consumers read headers.
        entries.retain(|(k, _)| k != header.key);
        entries.push((header.key.to_owned(), value));
    }
    Json::Object(entries)
}

fn hex_preview(bytes: &[u8]) -> String {
    let mut text: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 8 {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_connector_file_and_the_defaults() {
        let defaults = TailOptions::resolve(TailArgs {
            topic: "t".into(),
            ..TailArgs::default()
        })
        .unwrap();
        assert_eq!(defaults.bootstrap_servers, DEFAULT_BOOTSTRAP_SERVERS);
        assert_eq!(defaults.registry.url, DEFAULT_REGISTRY_URL);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            r#"name = "c"
[source]
dbname = "db"
user = "u"
[kafka]
bootstrap_servers = "10.0.0.1:9092"
[kafka.producer]
"security.protocol" = "SASL_SSL"
"linger.ms" = "5"
[registry]
url = "http://10.0.0.2:8081"
username = "reg"
password = "pw"
[tables."public.t"]
"#,
        )
        .unwrap();
        let from_file = TailOptions::resolve(TailArgs {
            topic: "t".into(),
            connector: Some(file.clone()),
            ..TailArgs::default()
        })
        .unwrap();
        assert_eq!(from_file.bootstrap_servers, "10.0.0.1:9092");
        assert_eq!(from_file.registry.url, "http://10.0.0.2:8081");
        assert_eq!(from_file.registry.username.as_deref(), Some("reg"));
        let keys: Vec<&str> = from_file
            .kafka_properties
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(keys, ["security.protocol"], "connection settings only");

        let flags = TailOptions::resolve(TailArgs {
            topic: "t".into(),
            connector: Some(file),
            bootstrap_servers: Some("127.0.0.1:1".into()),
            registry: Some("http://127.0.0.1:2".into()),
            ..TailArgs::default()
        })
        .unwrap();
        assert_eq!(flags.bootstrap_servers, "127.0.0.1:1");
        assert_eq!(flags.registry.url, "http://127.0.0.1:2");
        assert_eq!(
            flags.registry.username, None,
            "no credentials for another registry"
        );
    }

    #[test]
    fn a_missing_connector_file_is_one_line() {
        let err = TailOptions::resolve(TailArgs {
            topic: "t".into(),
            connector: Some("/nonexistent/c.toml".into()),
            ..TailArgs::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/c.toml"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert!(parse_duration("10").is_err());
    }
}
