//! The connector file as written: serde types for one `connectors/<name>.toml`.
//!
//! Every section denies unknown keys, so a typo is an error with a position rather
//! than a silently ignored setting. Defaults are the ones a production user would pick;
//! `connectors/example.toml` shows and explains each of them.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::values::{ByteSize, EnvString, EnvValue, HumanDuration, Secret};

/// One connector: a database, the tables captured from it, and where events go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorFile {
    /// Connector name: default slot, publication and topic prefix derive from it.
    pub name: Spanned<String>,
    pub source: SourceSection,
    pub kafka: KafkaSection,
    /// Required by the Avro format (the default); the JSON formats use no registry.
    pub registry: Option<RegistrySection>,
    #[serde(default)]
    pub delivery: DeliverySection,
    #[serde(default)]
    pub sink: SinkSection,
    /// `None` when the file has no `[metrics]` (it then takes the folder's).
    #[serde(default)]
    pub metrics: Option<MetricsSection>,
    #[serde(default)]
    pub heartbeat: HeartbeatSection,
    #[serde(default)]
    pub events: EventsSection,
    /// `[transforms.unwrap]`: Debezium's single message transforms walcast applies.
    #[serde(default)]
    pub transforms: TransformsSection,
    /// `[tables."schema.table"]` or `[tables."schema.*"]` entries.
    #[serde(default)]
    pub tables: BTreeMap<Spanned<String>, TableSection>,
}

/// `[source]`: the PostgreSQL database to capture.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    #[serde(default = "default_host")]
    pub host: EnvString,
    #[serde(default = "default_port")]
    pub port: Spanned<EnvValue<u16>>,
    pub dbname: EnvString,
    pub user: EnvString,
    pub password: Option<Spanned<Secret>>,
    pub password_file: Option<Spanned<EnvString>>,
    #[serde(default)]
    pub sslmode: SslMode,
    pub sslrootcert: Option<Spanned<EnvString>>,
    pub slot: Option<Spanned<EnvString>>,
    pub publication: Option<Spanned<EnvString>>,
    #[serde(default)]
    pub publication_mode: PublicationMode,
    #[serde(default)]
    pub snapshot_mode: SnapshotMode,
    /// Rows per chunk of an incremental snapshot (Debezium's
    /// `incremental.snapshot.chunk.size`).
    #[serde(default = "default_snapshot_chunk_size")]
    pub snapshot_chunk_size: Spanned<usize>,
    /// Connections reading the initial snapshot in parallel (Debezium's
    /// `snapshot.max.threads`).
    #[serde(default = "default_snapshot_workers")]
    pub snapshot_workers: Spanned<usize>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Folder for large streamed transactions spilled to disk until they commit.
    pub spool_dir: Option<Spanned<EnvString>>,
    /// The most the spool may hold (memory and disk) across the transactions in
    /// progress.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: ByteSize,
    /// Warn when the slot keeps more WAL than this on the server.
    #[serde(default = "default_retained_wal_warning")]
    pub retained_wal_warning: ByteSize,
    /// Send the password in clear text when the server asks so (pg_hba method
    /// `password`) over a connection whose server is not verified.
    #[serde(default)]
    pub allow_cleartext_password: bool,
}

fn default_retained_wal_warning() -> ByteSize {
    ByteSize(5 << 30)
}

fn default_spool_max_bytes() -> ByteSize {
    ByteSize(10 << 30)
}

fn default_host() -> EnvString {
    EnvString::new("localhost")
}

fn default_snapshot_chunk_size() -> Spanned<usize> {
    Spanned::new(0..0, 1024)
}

fn default_snapshot_workers() -> Spanned<usize> {
    Spanned::new(0..0, DEFAULT_SNAPSHOT_WORKERS)
}

/// Two readers keep one PostgreSQL backend busy while the other's rows are parsed.
pub const DEFAULT_SNAPSHOT_WORKERS: usize = 2;

fn default_port() -> Spanned<EnvValue<u16>> {
    Spanned::new(0..0, EnvValue(5432))
}

const fn default_connect_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}

/// libpq's `sslmode` values, with libpq's meaning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, plain otherwise (libpq's default).
    #[default]
    Prefer,
    /// TLS always; the certificate is not checked.
    Require,
    /// TLS, and the server certificate must chain to `sslrootcert`.
    VerifyCa,
    /// As verify-ca, and the certificate must name `host`.
    VerifyFull,
}

impl SslMode {
    /// The name in a connector file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate is checked (a password then reaches the server
    /// the connector names and nobody else).
    pub fn verifies_server(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

/// Who owns the publication's table list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicationMode {
    /// walcast creates the publication and keeps its tables equal to the captured set.
    #[default]
    Managed,
    /// The publication exists (made by a DBA); walcast only checks that it covers the tables.
    Existing,
}

/// Debezium's `snapshot.mode` names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    #[default]
    Initial,
    Never,
    InitialOnly,
    WhenNeeded,
    NoData,
}

/// `[kafka]`: the cluster that receives one topic per table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    pub bootstrap_servers: EnvString,
    pub topic_prefix: Option<Spanned<EnvString>>,
    /// Partitions of topics walcast creates; absent means the broker's `num.partitions`.
    pub partitions: Option<Spanned<EnvValue<i32>>>,
    /// Replication factor of topics walcast creates; absent means the broker's default.
    pub replication_factor: Option<Spanned<EnvValue<i16>>>,
    /// `min.insync.replicas` of topics walcast creates; absent means the broker's
    /// default.
    pub min_insync_replicas: Option<Spanned<EnvValue<i16>>>,
    #[serde(default)]
    pub cleanup_policy: CleanupPolicy,
    /// librdkafka producer properties passed through as given (values may be secrets).
    #[serde(default)]
    pub producer: BTreeMap<Spanned<String>, Secret>,
}

/// `cleanup.policy` of topics walcast creates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum CleanupPolicy {
    #[default]
    #[serde(rename = "delete")]
    Delete,
    #[serde(rename = "compact")]
    Compact,
    #[serde(rename = "compact,delete")]
    CompactDelete,
}

impl CleanupPolicy {
    pub fn as_kafka_value(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Compact => "compact",
            Self::CompactDelete => "compact,delete",
        }
    }
}

/// `[registry]`: a Confluent-compatible schema registry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    pub url: Spanned<EnvString>,
    pub username: Option<EnvString>,
    pub password: Option<Spanned<Secret>>,
    pub password_file: Option<Spanned<EnvString>>,
    pub ca_file: Option<Spanned<EnvString>>,
    /// How subjects are named: topic_name (`<topic>-key`/`-value`, the default),
    /// record_name or topic_record_name, as Confluent's strategies.
    #[serde(default)]
    pub subject_name_strategy: crate::registry::SubjectNameStrategy,
}

/// `[delivery]`: the delivery guarantee and shutdown behaviour.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySection {
    #[serde(default)]
    pub mode: DeliveryMode,
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: HumanDuration,
}

impl Default for DeliverySection {
    fn default() -> Self {
        Self {
            mode: DeliveryMode::default(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

const fn default_shutdown_grace() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

/// See the Exactly-once contract in the README.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    #[default]
    ExactlyOnce,
    Transactional,
    AtLeastOnce,
}

impl DeliveryMode {
    /// The name the connector file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExactlyOnce => "exactly_once",
            Self::Transactional => "transactional",
            Self::AtLeastOnce => "at_least_once",
        }
    }
}

/// `[sink]`: where events go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    #[serde(default)]
    pub kind: SinkKind,
}

/// Where a connector's events go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Kafka (the product).
    #[default]
    Kafka,
    /// A benchmarking aid: every event is decoded, converted and encoded (schemas
    /// registered) as for Kafka, then dropped and counted as acknowledged at once.
    Discard,
}

/// Where the status page, `/status`, `/metrics` and the probes are served by default:
/// loopback only (set `listen = "0.0.0.0:8723"` to let Prometheus or a kubelet reach
/// them), on a port no common exporter uses (9100-9999 is Prometheus exporters' range).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:8723";

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_metrics_listen")]
    pub listen: Spanned<EnvString>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_metrics_listen(),
        }
    }
}

fn default_metrics_listen() -> Spanned<EnvString> {
    Spanned::new(0..0, EnvString::new(DEFAULT_METRICS_LISTEN))
}

const fn default_true() -> bool {
    true
}

/// `[heartbeat]`: keeps the slot moving while captured tables are idle.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSection {
    #[serde(default = "default_heartbeat_interval")]
    pub interval: HumanDuration,
    /// SQL run on every beat (e.g. an upsert into `walcast.heartbeat`), so WAL that
    /// other databases on the server generate can be released too.
    pub action_query: Option<EnvString>,
    /// Also write a heartbeat record on every beat, as Debezium does, for consumers
    /// that watch the connector's liveness.
    #[serde(default)]
    pub emit_records: bool,
    /// Debezium's `topic.heartbeat.prefix` (default `__debezium-heartbeat`): the
    /// records go to `<prefix>.<topic_prefix>`.
    pub topic_heartbeat_prefix: Option<String>,
    /// Debezium's `topic.heartbeat.name`: the whole topic name instead.
    pub topic_heartbeat_name: Option<String>,
}

impl Default for HeartbeatSection {
    fn default() -> Self {
        Self {
            interval: default_heartbeat_interval(),
            action_query: None,
            emit_records: false,
            topic_heartbeat_prefix: None,
            topic_heartbeat_name: None,
        }
    }
}

const fn default_heartbeat_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}

/// `[events]`: how change events are shaped and serialized; Debezium's connector
/// options of the same names (`decimal.handling.mode`, ...), with Debezium's defaults.
/// Names are checked (with their position) by the validator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// avro (default) | json | json_with_schema.
    pub format: Option<Spanned<EnvString>>,
    /// precise (default) | double | string.
    pub decimal_handling_mode: Option<Spanned<EnvString>>,
    /// adaptive (default) | adaptive_time_microseconds | connect.
    pub time_precision_mode: Option<Spanned<EnvString>>,
    /// bytes (default) | base64 | base64-url-safe | hex.
    pub binary_handling_mode: Option<Spanned<EnvString>>,
    /// json (default) | map.
    pub hstore_handling_mode: Option<Spanned<EnvString>>,
    /// numeric (default) | string.
    pub interval_handling_mode: Option<Spanned<EnvString>>,
    /// What an unchanged TOASTed value becomes; `hex:...` gives bytes.
    pub unavailable_value_placeholder: Option<Spanned<EnvString>>,
    /// BEGIN/END records on `<prefix>.transaction` and the `transaction` block.
    #[serde(default)]
    pub provide_transaction_metadata: bool,
    /// `__debezium.oldkey` / `__debezium.newkey` headers on a key change.
    #[serde(default = "default_true")]
    pub emit_key_change_headers: bool,
    /// Debezium's `skipped.operations`: a comma list of c, u, d, t, or `none`
    /// (default `t`: truncates are not emitted).
    pub skipped_operations: Option<Spanned<EnvString>>,
    /// Debezium's `message.prefix.include.list` / `message.prefix.exclude.list`: comma
    /// lists of regular expressions matched against a logical decoding message's whole
    /// prefix (one of the two at most).
    pub message_prefix_include_list: Option<Spanned<EnvString>>,
    pub message_prefix_exclude_list: Option<Spanned<EnvString>>,
    /// Debezium's `include.unknown.datatypes`: columns of types without a mapping are
    /// sent as the bytes of their text form instead of left out.
    #[serde(default)]
    pub include_unknown_datatypes: bool,
    /// Debezium's `extended.headers.enabled`: the `__debezium.context.*` headers on
    /// every data event and tombstone.
    #[serde(default = "default_true")]
    pub extended_headers_enabled: bool,
}

impl Default for EventsSection {
    fn default() -> Self {
        Self {
            format: None,
            decimal_handling_mode: None,
            time_precision_mode: None,
            binary_handling_mode: None,
            hstore_handling_mode: None,
            interval_handling_mode: None,
            unavailable_value_placeholder: None,
            provide_transaction_metadata: false,
            emit_key_change_headers: true,
            skipped_operations: None,
            message_prefix_include_list: None,
            message_prefix_exclude_list: None,
            extended_headers_enabled: true,
            include_unknown_datatypes: false,
        }
    }
}

/// `[tables."…".outbox]`: Debezium's EventRouter options (dots as underscores).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    /// The event id column, sent as the `id` header (default `id`).
    pub table_field_event_id: Option<String>,
    /// The Kafka key column (default `aggregateid`).
    pub table_field_event_key: Option<String>,
    /// The value column (default `payload`).
    pub table_field_event_payload: Option<String>,
    /// The column whose value routes the event (default `aggregatetype`).
    pub route_by_field: Option<String>,
    /// Matched against the route value (default `(?<routedByValue>.*)`).
    pub route_topic_regex: Option<String>,
    /// The topic, with the regex's groups and `${topic_prefix}` (default
    /// `${topic_prefix}.outbox.${routedByValue}`).
    pub route_topic_replacement: Option<String>,
    /// `column:header[:alias]`, `column:envelope[:alias]` and `column:partition` items,
    /// comma separated.
    pub table_fields_additional_placement: Option<String>,
    /// Expand a JSON object payload into a struct with an inferred schema (default
    /// false).
    pub table_expand_json_payload: Option<bool>,
    /// `ignore` (default) or `optional_bytes`: what a JSON null member becomes.
    pub table_json_payload_null_behavior: Option<String>,
    /// A timestamp column whose value becomes the Kafka record's timestamp.
    pub table_field_event_timestamp: Option<String>,
}

/// `[transforms]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformsSection {
    pub unwrap: Option<UnwrapSection>,
    pub route: Option<RouteSection>,
}

/// `[transforms.route]`: Debezium's ByLogicalTableRouter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Must match a table's whole topic, e.g. "shop\\.public\\.orders_(.*)".
    pub topic_regex: Spanned<String>,
    /// The new topic, with the regex's groups (`$1`, `${name}`).
    pub topic_replacement: String,
    /// Add the table's identity to the key (default true).
    pub key_enforce_uniqueness: Option<bool>,
    pub key_field_name: Option<String>,
    pub key_field_regex: Option<Spanned<String>>,
    pub key_field_replacement: Option<String>,
}

/// `[transforms.unwrap]`: Debezium's ExtractNewRecordState, with its option names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnwrapSection {
    /// drop | tombstone (default) | rewrite | rewrite-with-tombstone | delete-to-tombstone.
    pub delete_tombstone_handling_mode: Option<Spanned<EnvString>>,
    /// Envelope fields appended to the value, e.g. "op,table,lsn,source.ts_ms".
    pub add_fields: Option<Spanned<EnvString>>,
    pub add_fields_prefix: Option<String>,
    /// Envelope fields added as headers.
    pub add_headers: Option<Spanned<EnvString>>,
    pub add_headers_prefix: Option<String>,
}

/// `[tables."schema.table"]`: how one table (or every table a pattern matches) is captured.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSection {
    /// Only these columns are captured (key columns are always kept).
    pub columns: Option<Vec<Spanned<String>>>,
    /// Every column but these is captured.
    pub exclude_columns: Option<Vec<Spanned<String>>>,
    /// A row filter, a SQL boolean expression over the row (publication row filter, PG 15+).
    pub filter: Option<Spanned<String>>,
    /// A SQL boolean expression limiting which rows the snapshots (initial and
    /// incremental) read; the stream is not filtered by it.
    pub snapshot_filter: Option<Spanned<String>>,
    /// Key columns to use instead of the primary key.
    pub key: Option<Vec<Spanned<String>>>,
    /// Topic name instead of `<topic_prefix>.<schema>.<table>`.
    pub topic: Option<Spanned<EnvString>>,
    /// Emit a tombstone (null value) after each delete; default true.
    pub tombstones: Option<bool>,
    /// Debezium's outbox EventRouter for this table.
    pub outbox: Option<OutboxSection>,
    /// `false`: this table keeps the envelope although `[transforms.unwrap]` is set;
    /// `true`: unwrap this table (with `[transforms.unwrap]`'s options, or the defaults).
    pub unwrap: Option<bool>,
    /// Column masking: `column = { hash = "sha256", salt = "..." }`, `{ fixed = "***" }`
    /// or `{ truncate = 20 }`.
    #[serde(default)]
    pub mask: BTreeMap<Spanned<String>, Spanned<MaskSection>>,
    /// For patterns only: tables the pattern must not capture.
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
}

/// One column's mask, exactly one of its ways set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskSection {
    pub hash: Option<String>,
    pub salt: Option<Secret>,
    pub fixed: Option<String>,
    pub truncate: Option<usize>,
}
