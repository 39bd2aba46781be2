//! Turns a parsed connector file into a [`Connector`], checking everything that can be
//! checked without a database; pure apart from reading `*_file` secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::connector::*;
use super::error::{ConfigError, Location};
use super::model::{ConnectorFile, EventsSection, MaskSection, TableSection};
use super::selector::TableSelector;
use super::sql_expression::check_sql_expression;
use super::values::{EnvString, Secret};

/// librdkafka properties walcast sets itself from other settings; a pass-through
/// value would silently break a guarantee, so they are refused with the right key.
const RESERVED_PRODUCER_KEYS: &[(&str, &str)] = &[
    ("bootstrap.servers", "set [kafka] bootstrap_servers instead"),
    (
        "metadata.broker.list",
        "set [kafka] bootstrap_servers instead",
    ),
    ("enable.idempotence", "it follows [delivery] mode"),
    ("enable.gapless.guarantee", "it follows [delivery] mode"),
    ("transactional.id", "it is derived from the connector name"),
    (
        "acks",
        "walcast always uses acks=all; it follows [delivery] mode",
    ),
    ("request.required.acks", "walcast always uses acks=all"),
];

pub(super) struct Validator<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Validator<'_> {
    fn loc(&self, span: &Range<usize>) -> Location {
        Location::from_span(self.path, self.text, span)
    }

    pub(super) fn err(&self, span: &Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.loc(span), message)
    }

    /// A path from the file, made relative to the file's folder when not absolute.
    fn resolve_path(&self, value: &str) -> PathBuf {
        let p = PathBuf::from(value);
        if p.is_absolute() {
            p
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    fn secret(
        &self,
        inline: Option<Spanned<Secret>>,
        file: Option<Spanned<EnvString>>,
        section: &str,
    ) -> Result<Option<Secret>, ConfigError> {
        match (inline, file) {
            (Some(_), Some(f)) => Err(self.err(
                &f.span(),
                format!("[{section}] has both password and password_file; keep one"),
            )),
            (Some(p), None) => Ok(Some(p.into_inner())),
            (None, Some(f)) => {
                let path = self.resolve_path(f.get_ref());
                Secret::from_file(&path).map(Some).map_err(|e| {
                    self.err(
                        &f.span(),
                        format!(
                            "cannot read [{section}] password_file {}: {e}",
                            path.display()
                        ),
                    )
                })
            }
            (None, None) => Ok(None),
        }
    }

    pub fn connector(&self, file: ConnectorFile) -> Result<Connector, ConfigError> {
        let name_span = file.name.span();
        let name = file.name.into_inner();
        if name.is_empty()
            || name.len() > 48
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(self.err(
                &name_span,
                format!("name `{name}` must be 1 to 48 characters of letters, digits, _ or -"),
            ));
        }
        let derived = format!("walcast_{}", name.to_ascii_lowercase().replace('-', "_"));

        let s = file.source;
        let slot = match s.slot {
            Some(slot) => self.slot_name(&slot, "slot")?,
            None => derived.clone(),
        };
        let publication = match s.publication {
            Some(p) => self.publication_name(&p)?,
            None => derived,
        };
        if s.port.get_ref().0 == 0 {
            return Err(self.err(
                &s.port.span(),
                "port 0 is not a port; the PostgreSQL default is 5432",
            ));
        }
        let sslrootcert = s.sslrootcert.map(|c| self.resolve_path(c.get_ref()));
        if matches!(s.sslmode, SslMode::VerifyCa | SslMode::VerifyFull) && sslrootcert.is_none() {
            return Err(ConfigError::at(
                self.loc(&(0..0)),
                "[source] sslmode verify-ca/verify-full needs sslrootcert = \"/path/to/ca.pem\"",
            ));
        }
        if s.host.is_empty() || s.dbname.is_empty() || s.user.is_empty() {
            return Err(ConfigError::at(
                self.loc(&(0..0)),
                "[source] host, dbname and user must not be empty",
            ));
        }
        let chunk = *s.snapshot_chunk_size.get_ref();
        if chunk == 0 || chunk > 1_000_000 {
            return Err(ConfigError::at(
                self.loc(&s.snapshot_chunk_size.span()),
                format!("[source] snapshot_chunk_size = {chunk} is out of range; use 1 to 1000000 rows (default 1024)"),
            ));
        }
        let workers = *s.snapshot_workers.get_ref();
        if workers == 0 || workers > 64 {
            return Err(ConfigError::at(
                self.loc(&s.snapshot_workers.span()),
                format!("[source] snapshot_workers = {workers} is out of range; use 1 to 64 connections (default {})", super::model::DEFAULT_SNAPSHOT_WORKERS),
            ));
        }
        let source = Source {
            host: s.host.to_string(),
            port: s.port.get_ref().0,
            dbname: s.dbname.to_string(),
            user: s.user.to_string(),
            password: self.secret(s.password, s.password_file, "source")?,
            sslmode: s.sslmode,
            sslrootcert,
            slot,
            publication,
            publication_mode: s.publication_mode,
            snapshot_mode: s.snapshot_mode,
            snapshot_chunk_size: chunk,
            snapshot_workers: workers,
            connect_timeout: s.connect_timeout.0,
            // Not the temp dir: it is often a tmpfs, which would hold a large
            // transaction in memory after all.
            spool_dir: s.spool_dir.map_or_else(
                || PathBuf::from("walcast-spool").join(&name),
                |d| PathBuf::from(d.get_ref().to_string()),
            ),
            spool_max_bytes: s.spool_max_bytes.0,
            retained_wal_warning: s.retained_wal_warning.0,
            allow_cleartext_password: s.allow_cleartext_password,
        };

        let k = file.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            return Err(ConfigError::at(
                self.loc(&(0..0)),
                "[kafka] bootstrap_servers is empty; list host:port pairs, comma separated",
            ));
        }
        let topic_prefix = match k.topic_prefix {
            Some(p) => {
                self.topic_name(&p, "topic_prefix")?;
                p.into_inner().to_string()
            }
            None => name.clone(),
        };
        let partitions = match k.partitions {
            Some(p) if p.get_ref().0 < 1 => {
                return Err(self.err(
                    &p.span(),
                    "partitions must be at least 1 (or leave it out for the broker's default)",
                ))
            }
            p => p.map(|p| p.into_inner().0),
        };
        let replication_factor = match k.replication_factor {
            Some(r) if r.get_ref().0 < 1 => return Err(self.err(
                &r.span(),
                "replication_factor must be at least 1 (or leave it out for the broker's default)",
            )),
            r => r.map(|r| r.into_inner().0),
        };
        let min_insync_replicas = match k.min_insync_replicas {
            Some(m) if m.get_ref().0 < 1 => return Err(self.err(
                &m.span(),
                "min_insync_replicas must be at least 1 (or leave it out for the broker's default)",
            )),
            Some(m) if replication_factor.is_some_and(|r| m.get_ref().0 > r) => return Err(self.err(
                &m.span(),
                format!(
                    "min_insync_replicas ({}) is larger than replication_factor ({}): every write with acks=all would fail; lower it (replication_factor - 1 is usual)",
                    m.get_ref().0,
                    replication_factor.unwrap_or_default()
                ),
            )),
            m => m.map(|m| m.into_inner().0),
        };
        let mut producer = BTreeMap::new();
        for (key, value) in k.producer {
            if let Some((_, why)) = RESERVED_PRODUCER_KEYS
                .iter()
                .find(|(k, _)| *k == key.get_ref())
            {
                return Err(self.err(
                    &key.span(),
                    format!(
                        "[kafka.producer] `{}` is managed by walcast: {why}; remove it",
                        key.get_ref()
                    ),
                ));
            }
            producer.insert(key.into_inner(), value);
        }
        let heartbeat_prefix = file
            .heartbeat
            .topic_heartbeat_prefix
            .clone()
            .unwrap_or_else(|| "__debezium-heartbeat".to_owned());
        let records_topic_name = file.heartbeat.topic_heartbeat_name.clone();
        let emit_heartbeats = file.heartbeat.emit_records;
        let kafka = Kafka {
            bootstrap_servers: k.bootstrap_servers.to_string(),
            topic_prefix,
            partitions,
            replication_factor,
            min_insync_replicas,
            cleanup_policy: k.cleanup_policy,
            producer,
        };
        let records_topic = emit_heartbeats.then(|| {
            records_topic_name
                .unwrap_or_else(|| format!("{heartbeat_prefix}.{}", kafka.topic_prefix))
        });

        let mut events = self.events(file.events)?;
        if let Some(u) = file.transforms.unwrap {
            events.unwrap = Some(std::sync::Arc::new(self.unwrap(u)?));
        }
        if let Some(r) = file.transforms.route {
            events.route = Some(std::sync::Arc::new(self.route(r)?));
        }
        let registry = match file.registry {
            Some(r) => {
                let url = r.url.get_ref().to_string();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(self.err(
                        &r.url.span(),
                        format!("[registry] url `{url}` must start with http:// or https://"),
                    ));
                }
                Registry {
                    url,
                    username: r.username.map(|u| u.to_string()),
                    password: self.secret(r.password, r.password_file, "registry")?,
                    ca_file: r.ca_file.map(|c| self.resolve_path(c.get_ref())),
                    subject_name_strategy: r.subject_name_strategy,
                }
            }
            None if events.format.uses_registry() => {
                return Err(ConfigError::at(
                    self.loc(&(0..0)),
                    "missing field `registry`: the Avro format needs a schema registry; add [registry] url = \"http://...\" (or set [events] format = \"json\" or \"json_with_schema\", which use none)",
                ));
            }
            None => Registry {
                url: String::new(),
                username: None,
                password: None,
                ca_file: None,
                subject_name_strategy: Default::default(),
            },
        };

        let explicit_metrics = file.metrics.is_some();
        let metrics_section = file.metrics.unwrap_or_default();
        let listen_span = metrics_section.listen.span();
        let listen_text = metrics_section.listen.into_inner();
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            self.err(
                &listen_span,
                format!(
                    "[metrics] listen `{listen_text}` is not an address:port such as 127.0.0.1:8723"
                ),
            )
        })?;
        if file.heartbeat.interval.0.is_zero() {
            return Err(ConfigError::at(
                self.loc(&(0..0)),
                "[heartbeat] interval must be more than 0",
            ));
        }

        if file.tables.is_empty() {
            return Err(ConfigError::at(
                self.loc(&(0..0)),
                "no tables to capture; add a section such as [tables.\"public.orders\"] or [tables.\"public.*\"]",
            ));
        }
        let mut tables = Vec::with_capacity(file.tables.len());
        for (key, section) in file.tables {
            tables.push(self.table(key, section)?);
        }
        // Exact names first, so an explicit entry overrides a pattern's settings.
        tables.sort_by_key(|t| !t.selector.is_exact());

        if file.sink.kind == SinkKind::Discard && file.delivery.mode == DeliveryMode::Transactional
        {
            return Err(ConfigError::at(
                self.loc(&(0..0)),
                "[sink] kind = \"discard\" cannot be combined with [delivery] mode = \"transactional\" (nothing reaches Kafka to commit); use exactly_once or at_least_once",
            ));
        }
        Ok(Connector {
            file: self.path.to_owned(),
            name,
            source,
            kafka,
            registry,
            delivery: Delivery {
                mode: file.delivery.mode,
                shutdown_grace: file.delivery.shutdown_grace.0,
            },
            sink: file.sink.kind,
            metrics: Metrics {
                enabled: metrics_section.enabled,
                listen,
                explicit: explicit_metrics,
            },
            heartbeat: Heartbeat {
                interval: file.heartbeat.interval.0,
                action_query: file.heartbeat.action_query.map(|q| q.to_string()),
                records_topic,
            },
            events,
            tables,
            accept_slot_loss: false,
        })
    }

    /// One `[events]` option naming a mode: its default when absent, else the name
    /// parsed as Debezium spells it (an error points at the value).
    fn mode<T>(&self, value: Option<Spanned<EnvString>>, key: &str) -> Result<T, ConfigError>
    where
        T: std::str::FromStr<Err = crate::codec::options::OptionError> + Default,
    {
        let Some(value) = value else {
            return Ok(T::default());
        };
        value.get_ref().parse::<T>().map_err(|e| {
            self.err(
                &value.span(),
                format!(
                    "[events] {key} `{}` is not valid; use one of: {}",
                    e.value,
                    e.allowed.trim_end().replace(' ', ", ")
                ),
            )
        })
    }

    fn events(&self, e: EventsSection) -> Result<Events, ConfigError> {
        let mut codec = crate::codec::CodecOptions {
            decimal_handling: self.mode(e.decimal_handling_mode, "decimal_handling_mode")?,
            time_precision: self.mode(e.time_precision_mode, "time_precision_mode")?,
            binary_handling: self.mode(e.binary_handling_mode, "binary_handling_mode")?,
            hstore_handling: self.mode(e.hstore_handling_mode, "hstore_handling_mode")?,
            interval_handling: self.mode(e.interval_handling_mode, "interval_handling_mode")?,
            include_unknown_datatypes: e.include_unknown_datatypes,
            ..Default::default()
        };
        if let Some(p) = e.unavailable_value_placeholder {
            codec.unavailable_value_placeholder =
                crate::codec::options::parse_placeholder(p.get_ref()).map_err(|_| {
                    self.err(
                        &p.span(),
                        format!(
                            "[events] unavailable_value_placeholder `{}`: after hex: write an even number of hex digits (the bytes), or drop hex: for text",
                            p.get_ref()
                        ),
                    )
                })?;
        }
        let skipped = match &e.skipped_operations {
            None => SkippedOperations::default(),
            Some(text) => SkippedOperations::parse(text.get_ref()).map_err(|reason| {
                self.err(
                    &text.span(),
                    format!("[events] skipped_operations: {reason}"),
                )
            })?,
        };
        let list = |text: &Spanned<EnvString>, name: &str| {
            MessageFilter::patterns(text.get_ref())
                .map_err(|reason| self.err(&text.span(), format!("[events] {name}: {reason}")))
        };
        let messages = match (&e.message_prefix_include_list, &e.message_prefix_exclude_list) {
            (Some(_), Some(exclude)) => {
                return Err(self.err(
                    &exclude.span(),
                    "[events] sets both message_prefix_include_list and message_prefix_exclude_list; keep one",
                ))
            }
            (Some(include), None) => {
                MessageFilter::Include(list(include, "message_prefix_include_list")?)
            }
            (None, Some(exclude)) => {
                MessageFilter::Exclude(list(exclude, "message_prefix_exclude_list")?)
            }
            (None, None) => MessageFilter::All,
        };
        Ok(Events {
            format: self.mode(e.format, "format")?,
            codec,
            provide_transaction_metadata: e.provide_transaction_metadata,
            emit_key_change_headers: e.emit_key_change_headers,
            skipped,
            messages,
            extended_headers: e.extended_headers_enabled,
            unwrap: None,
            route: None,
        })
    }

    fn slot_name(&self, value: &Spanned<EnvString>, what: &str) -> Result<String, ConfigError> {
        let v = value.get_ref().as_str();
        if v.is_empty()
            || v.len() > 63
            || !v
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(self.err(
                &value.span(),
                format!("{what} `{v}` must be 1 to 63 characters of a-z, 0-9 and _ (PostgreSQL's rule for slot names)"),
            ));
        }
        Ok(v.to_owned())
    }

    fn publication_name(&self, value: &Spanned<EnvString>) -> Result<String, ConfigError> {
        let v = value.get_ref().as_str();
        if v.is_empty() || v.len() > 63 {
            return Err(self.err(
                &value.span(),
                format!("publication `{v}` must be 1 to 63 bytes long"),
            ));
        }
        Ok(v.to_owned())
    }

    fn topic_name(&self, value: &Spanned<EnvString>, what: &str) -> Result<(), ConfigError> {
        let v = value.get_ref().as_str();
        if v.is_empty()
            || v.len() > 249
            || v == "."
            || v == ".."
            || !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(self.err(
                &value.span(),
                format!("{what} `{v}` is not a valid Kafka topic name: use up to 249 of a-z A-Z 0-9 . _ -"),
            ));
        }
        Ok(())
    }

    fn names(&self, list: Vec<Spanned<String>>, what: &str) -> Result<Vec<String>, ConfigError> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(list.len());
        for item in list {
            if item.get_ref().is_empty() {
                return Err(self.err(&item.span(), format!("{what} has an empty column name")));
            }
            if !seen.insert(item.get_ref().clone()) {
                return Err(self.err(
                    &item.span(),
                    format!("{what} lists `{}` twice", item.get_ref()),
                ));
            }
            out.push(item.into_inner());
        }
        Ok(out)
    }

    fn table(&self, key: Spanned<String>, t: TableSection) -> Result<TableRule, ConfigError> {
        let span = key.span();
        let selector = TableSelector::parse(key.get_ref()).map_err(|e| self.err(&span, e))?;
        let columns = match (t.columns, t.exclude_columns) {
            (Some(_), Some(ex)) => {
                let at = ex.first().map_or(span.clone(), |c| c.span());
                return Err(self.err(
                    &at,
                    format!("table {selector}: set columns or exclude_columns, not both"),
                ));
            }
            (Some(c), None) if c.is_empty() => {
                return Err(self.err(&span, format!("table {selector}: columns = [] captures nothing; list columns or remove the key")));
            }
            (Some(c), None) => ColumnSelection::Include(self.names(c, "columns")?),
            (None, Some(e)) => ColumnSelection::Exclude(self.names(e, "exclude_columns")?),
            (None, None) => ColumnSelection::All,
        };
        let key_columns = match t.key {
            Some(k) if k.is_empty() => {
                return Err(self.err(&span, format!("table {selector}: key = [] is empty; list the key columns or remove it to use the primary key")));
            }
            Some(k) => Some(self.names(k, "key")?),
            None => None,
        };
        if let (ColumnSelection::Exclude(ex), Some(keys)) = (&columns, &key_columns) {
            if let Some(k) = keys.iter().find(|k| ex.contains(k)) {
                return Err(self.err(&span, format!("table {selector}: key column `{k}` is also in exclude_columns; a key column is always captured")));
            }
        }
        let filter = match t.filter {
            Some(f) => Some(self.filter(f, &selector, "filter")?),
            None => None,
        };
        let snapshot_filter = match t.snapshot_filter {
            Some(f) => Some(self.filter(f, &selector, "snapshot_filter")?),
            None => None,
        };
        let topic = match t.topic {
            Some(topic) => {
                if !selector.is_exact() {
                    return Err(self.err(&topic.span(), format!("table {selector}: a pattern can't set one topic for many tables; set topic on exact table entries")));
                }
                self.topic_name(&topic, "topic")?;
                Some(topic.into_inner().to_string())
            }
            None => None,
        };
        let mut masks = Vec::with_capacity(t.mask.len());
        for (column, mask) in t.mask {
            let mask_span = mask.span();
            masks.push(ColumnMask {
                mask: self.mask(mask.into_inner(), &mask_span, column.get_ref())?,
                column: column.into_inner(),
            });
        }
        let mut exclude = Vec::with_capacity(t.exclude.len());
        if !t.exclude.is_empty() && selector.is_exact() {
            return Err(self.err(
                &t.exclude[0].span(),
                format!(
                    "table {selector}: exclude only makes sense on a pattern such as \"public.*\""
                ),
            ));
        }
        for e in t.exclude {
            exclude.push(TableSelector::parse(e.get_ref()).map_err(|m| self.err(&e.span(), m))?);
        }
        let outbox = match t.outbox {
            Some(o) => Some(std::sync::Arc::new(self.outbox(o, &selector, &span)?)),
            None => None,
        };
        Ok(TableRule {
            location: self.loc(&span),
            selector,
            columns,
            filter,
            snapshot_filter,
            key: key_columns,
            topic,
            tombstones: t.tombstones.unwrap_or(true),
            unwrap: t.unwrap,
            outbox,
            masks,
            exclude,
        })
    }

    fn filter(
        &self,
        f: Spanned<String>,
        selector: &TableSelector,
        what: &str,
    ) -> Result<String, ConfigError> {
        let text = f.get_ref().trim();
        if text.is_empty() {
            return Err(self.err(&f.span(), format!("table {selector}: {what} is empty; write a SQL condition such as \"status <> 'draft'\" or remove it")));
        }
        if let Err(problem) = check_sql_expression(text) {
            return Err(self.err(
                &f.span(),
                format!("table {selector}: {what} {problem}; write one SQL boolean expression"),
            ));
        }
        Ok(text.to_owned())
    }

    fn mask(&self, m: MaskSection, span: &Range<usize>, column: &str) -> Result<Mask, ConfigError> {
        let ways = [m.hash.is_some(), m.fixed.is_some(), m.truncate.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        let hint = "use { hash = \"sha256\", salt = \"${MASK_SALT}\" }, { fixed = \"****\" } or { truncate = 20 }";
        if ways != 1 {
            return Err(self.err(span, format!("mask for column `{column}` must set exactly one of hash, fixed, truncate; {hint}")));
        }
        if let Some(algorithm) = m.hash {
            let algorithm = match algorithm.to_ascii_lowercase().replace('-', "").as_str() {
                "sha256" => HashAlgorithm::Sha256,
                "sha512" => HashAlgorithm::Sha512,
                _ => return Err(self.err(span, format!("mask for column `{column}`: hash `{algorithm}` is not supported; use sha256 or sha512"))),
            };
            let salt = m.salt.ok_or_else(|| {
                self.err(span, format!("mask for column `{column}`: a hash needs a salt (an unsalted hash of an email or phone number is easy to reverse); add salt = \"${{MASK_SALT}}\""))
            })?;
            return Ok(Mask::Hash { algorithm, salt });
        }
        if m.salt.is_some() {
            return Err(self.err(
                span,
                format!("mask for column `{column}`: salt only goes with hash"),
            ));
        }
        if let Some(fixed) = m.fixed {
            return Ok(Mask::Fixed(fixed));
        }
        match m.truncate {
            Some(0) | None => Err(self.err(
                span,
                format!("mask for column `{column}`: truncate must be at least 1"),
            )),
            Some(n) => Ok(Mask::Truncate(n)),
        }
    }
}
