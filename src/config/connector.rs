//! The validated connector: what the rest of walcast reads, with defaults resolved.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::error::Location;
pub use super::model::{
    CleanupPolicy, DeliveryMode, PublicationMode, SinkKind, SnapshotMode, SslMode,
};
use super::selector::TableSelector;
use super::values::Secret;
pub use crate::codec::options::{
    BinaryHandling, DecimalHandling, EventFormat, HstoreHandling, IntervalHandling, TimePrecision,
};
use crate::codec::CodecOptions;

/// One connector, ready to run.
#[derive(Debug, Clone)]
pub struct Connector {
    /// The file it came from (for messages).
    pub file: PathBuf,
    pub name: String,
    pub source: Source,
    pub kafka: Kafka,
    pub registry: Registry,
    pub delivery: Delivery,
    pub sink: SinkKind,
    pub metrics: Metrics,
    pub heartbeat: Heartbeat,
    pub events: Events,
    /// Table rules in file order; exact names before patterns when resolving.
    pub tables: Vec<TableRule>,
    /// `walcast run --accept-slot-loss`, never read from the file: when the slot is gone
    /// or invalidated after a recorded checkpoint, create a new one and stream from
    /// there, accepting that the changes in between are lost.
    pub accept_slot_loss: bool,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<Secret>,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    pub slot: String,
    pub publication: String,
    pub publication_mode: PublicationMode,
    pub snapshot_mode: SnapshotMode,
    /// Rows per incremental-snapshot chunk.
    pub snapshot_chunk_size: usize,
    /// Connections reading the initial snapshot in parallel.
    pub snapshot_workers: usize,
    pub connect_timeout: Duration,
    /// Where large streamed transactions spill to disk (relative paths: from the
    /// working directory), and the most the spool may hold.
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// Warn when the slot keeps more WAL than this on the server.
    pub retained_wal_warning: u64,
    /// A cleartext password may go over a connection whose server is not verified.
    pub allow_cleartext_password: bool,
}

impl Source {
    /// `user@host:port/dbname`: enough to find the database in a log line, never a password.
    pub fn display_target(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }
}

#[derive(Debug, Clone)]
pub struct Kafka {
    pub bootstrap_servers: String,
    pub topic_prefix: String,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
    pub min_insync_replicas: Option<i16>,
    pub cleanup_policy: CleanupPolicy,
    pub producer: BTreeMap<String, Secret>,
}

/// The schema registry. Without a `[registry]` section (allowed only with a JSON
/// `[events] format`) `url` is empty: nothing registers or reads schemas then.
#[derive(Debug, Clone)]
pub struct Registry {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    pub subject_name_strategy: crate::registry::SubjectNameStrategy,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub mode: DeliveryMode,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// The file has a `[metrics]` section (in a folder, the process's setting comes
    /// from the files that have one, and they must agree).
    pub explicit: bool,
}

#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub interval: Duration,
    pub action_query: Option<String>,
    /// Where heartbeat records go, when they are emitted.
    pub records_topic: Option<String>,
}

/// `[events]`: the shape and serialization of change events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Events {
    pub format: EventFormat,
    /// `decimal_handling_mode`, `time_precision_mode`, `binary_handling_mode`,
    /// `hstore_handling_mode`, `interval_handling_mode`, `unavailable_value_placeholder`.
    pub codec: CodecOptions,
    pub provide_transaction_metadata: bool,
    pub emit_key_change_headers: bool,
    /// Operations not emitted (`skipped_operations`).
    pub skipped: SkippedOperations,
    /// Which logical decoding messages are emitted, by prefix.
    pub messages: MessageFilter,
    /// Debezium's `__debezium.context.*` headers on data events and tombstones.
    pub extended_headers: bool,
    /// `[transforms.unwrap]`: table topics carry the row, not the envelope.
    pub unwrap: Option<std::sync::Arc<crate::codec::unwrap::Unwrap>>,
    /// `[transforms.route]`: tables' topics rewritten.
    pub route: Option<std::sync::Arc<Route>>,
}

/// Debezium's ByLogicalTableRouter: table topics matching a regex go to its
/// replacement, the original topic kept in the key.
#[derive(Debug, Clone)]
pub struct Route {
    /// Anchored: matches a whole topic.
    pub topic_regex: regex::Regex,
    pub topic_replacement: String,
    /// `None`: `key_enforce_uniqueness = false`.
    pub key_field_name: Option<String>,
    /// The identifier is the original topic, or this replacement when the regex
    /// matches it.
    pub key_field: Option<(regex::Regex, String)>,
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        let key = |r: &Route| {
            r.key_field
                .as_ref()
                .map(|(re, s)| (re.as_str().to_owned(), s.clone()))
        };
        self.topic_regex.as_str() == other.topic_regex.as_str()
            && self.topic_replacement == other.topic_replacement
            && self.key_field_name == other.key_field_name
            && key(self) == key(other)
    }
}

impl Eq for Route {}

impl Route {
    /// The topic and key identifier field for a table whose topic is `topic`, when
    /// the route applies to it.
    pub fn apply(&self, topic: &str) -> Option<crate::codec::TableRoute> {
        if !self.topic_regex.is_match(topic) {
            return None;
        }
        let new_topic = self
            .topic_regex
            .replace(topic, self.topic_replacement.as_str())
            .into_owned();
        let identifier = match &self.key_field {
            Some((regex, replacement)) if regex.is_match(topic) => {
                regex.replace(topic, replacement.as_str()).into_owned()
            }
            _ => topic.to_owned(),
        };
        Some(crate::codec::TableRoute {
            topic: new_topic,
            key_field: self.key_field_name.clone().map(|name| (name, identifier)),
        })
    }
}

impl Default for Events {
    fn default() -> Self {
        Self {
            format: EventFormat::default(),
            codec: CodecOptions::default(),
            provide_transaction_metadata: false,
            emit_key_change_headers: true,
            skipped: SkippedOperations::default(),
            messages: MessageFilter::All,
            extended_headers: true,
            unwrap: None,
            route: None,
        }
    }
}

/// Debezium's outbox EventRouter, for one table.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub event_id: String,
    pub event_key: String,
    pub payload: String,
    pub route_by: String,
    pub route_regex: regex::Regex,
    /// Java/Rust `${group}` syntax, and `${topic_prefix}`.
    pub route_replacement: String,
    /// (column, header name) for `column:header[:alias]` placements.
    pub headers: Vec<(String, &'static str)>,
    /// (column, field name) for `column:envelope[:alias]` placements: the value is then
    /// a struct `{payload, <fields>}` instead of the bare payload.
    pub envelope: Vec<(String, String)>,
    /// The `column:partition` placement: an integer column naming the Kafka partition.
    pub partition: Option<String>,
    /// `table_expand_json_payload`: a JSON object payload becomes a struct, its null
    /// members as this says.
    pub expand_json: Option<crate::codec::json_payload::NullBehavior>,
    /// `table_field_event_timestamp`: the column whose time is the record's timestamp.
    pub timestamp: Option<String>,
}

impl Outbox {
    /// The topic of an event whose route column holds `value`: the replacement when
    /// the regex matches the whole value, else the value itself (as Kafka's RegexRouter).
    pub fn topic(&self, value: &str, topic_prefix: &str) -> String {
        match self.route_regex.captures(value) {
            Some(c)
                if c.get(0)
                    .is_some_and(|m| m.start() == 0 && m.end() == value.len()) =>
            {
                let mut out = String::new();
                c.expand(
                    &self
                        .route_replacement
                        .replace("${topic_prefix}", topic_prefix),
                    &mut out,
                );
                out
            }
            _ => value.to_owned(),
        }
    }
}

/// Debezium's `skipped.operations`: which operations produce no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkippedOperations {
    pub creates: bool,
    pub updates: bool,
    pub deletes: bool,
    pub truncates: bool,
}

impl Default for SkippedOperations {
    /// Debezium's default: truncates only.
    fn default() -> Self {
        Self {
            creates: false,
            updates: false,
            deletes: false,
            truncates: true,
        }
    }
}

impl SkippedOperations {
    /// Parses Debezium's syntax: `none`, or a comma list of c, u, d, t.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut skipped = Self {
            truncates: false,
            ..Self::default()
        };
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") {
            return Ok(skipped);
        }
        for op in text.split(',').map(str::trim).filter(|op| !op.is_empty()) {
            match op {
                "c" => skipped.creates = true,
                "u" => skipped.updates = true,
                "d" => skipped.deletes = true,
                "t" => skipped.truncates = true,
                other => {
                    return Err(format!(
                        "`{other}` is not an operation; write a comma list of c, u, d, t, or none"
                    ))
                }
            }
        }
        Ok(skipped)
    }
}

/// Debezium's `message.prefix.include.list` / `message.prefix.exclude.list`.
#[derive(Debug, Clone, Default)]
pub enum MessageFilter {
    /// Every message is emitted.
    #[default]
    All,
    /// Only messages whose prefix one of these matches (whole prefix).
    Include(Vec<regex::Regex>),
    /// Every message but those whose prefix one of these matches.
    Exclude(Vec<regex::Regex>),
}

impl PartialEq for MessageFilter {
    fn eq(&self, other: &Self) -> bool {
        let texts = |list: &[regex::Regex]| {
            list.iter()
                .map(|r| r.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        match (self, other) {
            (Self::All, Self::All) => true,
            (Self::Include(a), Self::Include(b)) | (Self::Exclude(a), Self::Exclude(b)) => {
                texts(a) == texts(b)
            }
            _ => false,
        }
    }
}

impl Eq for MessageFilter {}

impl MessageFilter {
    /// Whether a message with `prefix` is emitted.
    pub fn emits(&self, prefix: &str) -> bool {
        let matches = |list: &[regex::Regex]| list.iter().any(|r| r.is_match(prefix));
        match self {
            Self::All => true,
            Self::Include(list) => matches(list),
            Self::Exclude(list) => !matches(list),
        }
    }

    /// Compiles a comma list of regular expressions, each anchored to the whole prefix.
    pub fn patterns(text: &str) -> Result<Vec<regex::Regex>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| format!("`{p}` is not a regular expression: {e}"))
            })
            .collect()
    }
}

impl TableRule {
    /// The condition a snapshot of the table reads rows with: the row filter and the
    /// snapshot filter, both when both are set.
    pub fn snapshot_condition(&self) -> Option<String> {
        match (&self.filter, &self.snapshot_filter) {
            (Some(f), Some(s)) => Some(format!("({f}) AND ({s})")),
            (Some(f), None) => Some(f.clone()),
            (None, Some(s)) => Some(s.clone()),
            (None, None) => None,
        }
    }
}

/// How one table, or every table a pattern matches, is captured.
#[derive(Debug, Clone)]
pub struct TableRule {
    pub selector: TableSelector,
    /// Where the rule is written, for messages about it.
    pub location: Location,
    pub columns: ColumnSelection,
    pub filter: Option<String>,
    /// Rows the snapshots read (with `filter`); the stream is not filtered by it.
    pub snapshot_filter: Option<String>,
    pub key: Option<Vec<String>>,
    pub topic: Option<String>,
    pub tombstones: bool,
    /// Overrides whether the unwrap transform applies to the table.
    pub unwrap: Option<bool>,
    /// The table is an outbox: its inserts become events routed by a column.
    pub outbox: Option<std::sync::Arc<Outbox>>,
    pub masks: Vec<ColumnMask>,
    /// Tables a pattern must skip.
    pub exclude: Vec<TableSelector>,
}

impl TableRule {
    /// True when this rule applies to `schema.table` (matched and not excluded).
    pub fn applies_to(&self, schema: &str, table: &str) -> bool {
        self.selector.matches(schema, table)
            && !self.exclude.iter().any(|e| e.matches(schema, table))
    }

    /// Every column name the rule refers to, with what refers to it.
    pub fn referenced_columns(&self) -> impl Iterator<Item = (&str, &'static str)> {
        let listed = match &self.columns {
            ColumnSelection::All => &[][..],
            ColumnSelection::Include(c) => c.as_slice(),
            ColumnSelection::Exclude(c) => c.as_slice(),
        };
        let what = match &self.columns {
            ColumnSelection::Include(_) => "columns",
            _ => "exclude_columns",
        };
        listed
            .iter()
            .map(move |c| (c.as_str(), what))
            .chain(self.key.iter().flatten().map(|c| (c.as_str(), "key")))
            .chain(self.masks.iter().map(|m| (m.column.as_str(), "mask")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnSelection {
    All,
    Include(Vec<String>),
    Exclude(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMask {
    pub column: String,
    pub mask: Mask,
}

/// What a masked column's value becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mask {
    /// Hex digest of salt + value; the same input gives the same output, so joins still work.
    Hash {
        algorithm: HashAlgorithm,
        salt: Secret,
    },
    /// The value replaced by this fixed text.
    Fixed(String),
    /// The value cut to at most this many characters.
    Truncate(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha256,
    Sha512,
}
