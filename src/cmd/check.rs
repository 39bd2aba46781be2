//! `walcast check`: every prerequisite of a connector, checked against the live
//! database, as one line per check (ok, or the problem and its fix).

use std::fmt;

use tokio_postgres::Client;

use crate::config::{Connector, PublicationMode};
use crate::model::relation::ReplicaIdentity;
use crate::postgres::{connect, quote_ident, quote_table, resolve_tables, CapturedTable, Catalog};

/// The oldest PostgreSQL walcast supports (pgoutput protocol 1, `relispartition`…).
pub const MIN_SERVER_VERSION: i32 = 120000;
/// Publication row filters arrived in PostgreSQL 15.
const ROW_FILTER_VERSION: i32 = 150000;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    /// Not a problem, but worth changing (`ok` stays true: it does not fail the check).
    pub warning: bool,
    /// What was checked and what was found; for a problem, also the fix.
    pub message: String,
}

impl Finding {
    fn ok(message: impl Into<String>) -> Self {
        Self {
            ok: true,
            warning: false,
            message: message.into(),
        }
    }

    fn warning(message: impl Into<String>) -> Self {
        Self {
            ok: true,
            warning: true,
            message: message.into(),
        }
    }

    fn problem(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            warning: false,
            message: message.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match (self.ok, self.warning) {
            (false, _) => "PROBLEM",
            (true, true) => "WARNING",
            (true, false) => "ok     ",
        };
        write!(f, "{tag} {}", self.message)
    }
}

/// Runs every check for `connector`; stops early only when the database can't be reached.
pub async fn check(connector: &Connector) -> Vec<Finding> {
    let target = connector.source.display_target();
    let client = match connect(&connector.source, None).await {
        Ok(c) => c,
        Err(e) => return vec![Finding::problem(e.to_string())],
    };
    let mut findings = vec![Finding::ok(format!("connected to PostgreSQL as {target}"))];
    if let Err(e) = check_connected(connector, &client, &mut findings).await {
        findings.push(Finding::problem(format!(
            "a catalog query failed: {}",
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned())
        )));
    }
    findings
}

/// The broker and the schema registry of `connector`: reachable, the credentials
/// accepted, and the connector's topics creatable. (`walcast run` checks the broker
/// itself before it creates a slot.)
pub async fn check_services(connector: &Connector) -> Vec<Finding> {
    let mut findings = Vec::new();
    if connector.sink == crate::config::SinkKind::Discard {
        findings.push(Finding::ok(
            "[sink] kind = \"discard\": no broker or registry is used",
        ));
        return findings;
    }
    let servers = &connector.kafka.bootstrap_servers;
    let client_id = format!("walcast-check-{}", connector.name);
    let sink = crate::sink::kafka::KafkaSink::new(
        &connector.kafka,
        crate::config::DeliveryMode::AtLeastOnce,
        &client_id,
    );
    match sink {
        Err(e) => findings.push(Finding::problem(e.to_string())),
        Ok((sink, _reports)) => match sink.check_connection() {
            Err(e) => findings.push(Finding::problem(e.to_string())),
            Ok(()) => {
                findings.push(Finding::ok(format!(
                    "connected to Kafka at {servers} (credentials accepted)"
                )));
                match sink.check_topic_creation().await {
                    Ok(()) => findings.push(Finding::ok(format!(
                        "Kafka would let this connector create its topics ({}.*)",
                        connector.kafka.topic_prefix
                    ))),
                    Err(e) => findings.push(Finding::problem(format!(
                        "{e}; grant the connector's Kafka user CREATE on the cluster or create the topics beforehand, and check [kafka] partitions / replication_factor against the cluster"
                    ))),
                }
            }
        },
    }
    if !connector.events.format.uses_registry() {
        return findings;
    }
    let registry = crate::registry::client::RegistryClient::new(
        crate::registry::client::RegistryClientConfig {
            retry: crate::registry::client::RetryPolicy::none(),
            ..crate::registry::client::RegistryClientConfig::from_connector(&connector.registry)
        },
    );
    match registry {
        Err(e) => findings.push(Finding::problem(e.to_string())),
        Ok(client) => match client.subjects().await {
            Ok(subjects) => findings.push(Finding::ok(format!(
                "schema registry at {} answers ({} subjects; credentials accepted)",
                client.url(),
                subjects.len()
            ))),
            // Registry errors name their fix already.
            Err(e) => findings.push(Finding::problem(e.to_string())),
        },
    }
    findings
}

async fn setting(client: &Client, name: &str) -> Result<String, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT current_setting($1)", &[&name])
        .await?;
    row.try_get(0)
}

async fn check_connected(
    connector: &Connector,
    client: &Client,
    out: &mut Vec<Finding>,
) -> Result<(), tokio_postgres::Error> {
    let source = &connector.source;
    let version: i32 = setting(client, "server_version_num")
        .await?
        .parse()
        .unwrap_or(0);
    let version_text = setting(client, "server_version").await?;
    if version >= MIN_SERVER_VERSION {
        out.push(Finding::ok(format!(
            "PostgreSQL {version_text} (12 or newer)"
        )));
    } else {
        out.push(Finding::problem(format!(
            "PostgreSQL {version_text} is too old; walcast needs 12 or newer"
        )));
    }

    let wal_level = setting(client, "wal_level").await?;
    if wal_level == "logical" {
        out.push(Finding::ok("wal_level is logical"));
    } else {
        out.push(Finding::problem(format!(
            "wal_level is {wal_level}, logical replication needs logical; run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL"
        )));
    }

    let role = client
        .query_one(
            "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let (superuser, replication): (bool, bool) = (role.try_get(0)?, role.try_get(1)?);
    if superuser || replication {
        out.push(Finding::ok(format!(
            "user {} may replicate ({})",
            source.user,
            if superuser {
                "superuser"
            } else {
                "REPLICATION"
            }
        )));
    } else {
        out.push(Finding::problem(format!(
            "user {0} lacks the REPLICATION attribute; run ALTER ROLE {1} WITH REPLICATION (as a superuser)",
            source.user,
            quote_ident(&source.user)
        )));
    }

    check_slot_capacity(connector, client, out).await?;

    let catalog = Catalog::load(client).await?;
    let resolution = resolve_tables(connector, &catalog);
    for rule in &resolution.unmatched {
        if rule.selector.is_exact() {
            out.push(Finding::problem(format!(
                "table {} ({}) does not exist in database {}; create it or fix the name",
                rule.selector, rule.location, source.dbname
            )));
        } else {
            out.push(Finding::problem(format!(
                "pattern {} ({}) matches no table in database {}; fix the pattern or remove it",
                rule.selector, rule.location, source.dbname
            )));
        }
    }
    if resolution.captured.is_empty() && resolution.unmatched.is_empty() {
        out.push(Finding::problem("no table to capture"));
    }
    for captured in &resolution.captured {
        check_table(client, version, captured, out).await?;
    }

    check_publication(connector, client, &resolution.captured, out).await?;

    let support = client
        .query_one(
            "SELECT to_regclass('walcast.heartbeat') IS NOT NULL AND to_regclass('walcast.signal') IS NOT NULL",
            &[],
        )
        .await?;
    if support.try_get::<_, bool>(0)? {
        out.push(Finding::ok(
            "walcast's support tables exist (walcast.heartbeat, walcast.signal)",
        ));
    } else {
        out.push(Finding::problem(format!(
            "walcast's support tables are missing; run walcast setup {}",
            connector.file.display()
        )));
    }
    Ok(())
}

async fn check_slot_capacity(
    connector: &Connector,
    client: &Client,
    out: &mut Vec<Finding>,
) -> Result<(), tokio_postgres::Error> {
    let source = &connector.source;
    let slot = client
        .query_opt(
            "SELECT plugin::text, slot_type::text, database::text, active, active_pid
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&source.slot],
        )
        .await?;
    let max_slots: i64 = setting(client, "max_replication_slots")
        .await?
        .parse()
        .unwrap_or(0);
    let used_slots: i64 = client
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await?
        .try_get(0)?;
    match slot {
        Some(row) => {
            let plugin: Option<String> = row.try_get(0)?;
            let kind: String = row.try_get(1)?;
            let database: Option<String> = row.try_get(2)?;
            let active: bool = row.try_get(3)?;
            let pid: Option<i32> = row.try_get(4)?;
            if kind != "logical" || plugin.as_deref() != Some("pgoutput") {
                out.push(Finding::problem(format!(
                    "slot {} exists but is a {kind} slot with plugin {}, walcast needs pgoutput; drop it (SELECT pg_drop_replication_slot('{}')) or set [source] slot to another name",
                    source.slot,
                    plugin.as_deref().unwrap_or("none"),
                    source.slot
                )));
            } else if database.as_deref() != Some(source.dbname.as_str()) {
                out.push(Finding::problem(format!(
                    "slot {} belongs to database {}, not {}; set [source] slot to another name",
                    source.slot,
                    database.as_deref().unwrap_or("?"),
                    source.dbname
                )));
            } else if active {
                out.push(Finding::problem(format!(
                    "slot {} is in use by another process (pid {}); stop the other consumer, or give this connector its own slot",
                    source.slot,
                    pid.map_or("?".into(), |p| p.to_string())
                )));
            } else {
                out.push(Finding::ok(format!(
                    "slot {} exists, uses pgoutput and is free",
                    source.slot
                )));
            }
        }
        None if used_slots >= max_slots => out.push(Finding::problem(format!(
            "no free replication slot ({used_slots} of max_replication_slots = {max_slots} in use); raise max_replication_slots and restart, or drop an unused slot"
        ))),
        None => out.push(Finding::ok(format!(
            "slot {} will be created ({used_slots} of {max_slots} replication slots in use)",
            source.slot
        ))),
    }

    // Unset, a slot that falls behind keeps WAL until the disk is full.
    if let Ok(keep) = setting(client, "max_slot_wal_keep_size").await {
        if keep == "-1" {
            out.push(Finding::warning(
                "max_slot_wal_keep_size is unlimited (-1): a slot that falls behind keeps WAL until the server's disk is full; set it (e.g. max_slot_wal_keep_size = '50GB') so PostgreSQL gives up the slot instead, and alert on walcast_slot_retained_wal_bytes",
            ));
        } else {
            out.push(Finding::ok(format!(
                "max_slot_wal_keep_size = {keep} bounds the WAL a lagging slot keeps"
            )));
        }
    }

    let max_senders: i64 = setting(client, "max_wal_senders")
        .await?
        .parse()
        .unwrap_or(0);
    let senders: i64 = client
        .query_one("SELECT count(*) FROM pg_stat_replication", &[])
        .await?
        .try_get(0)?;
    if senders < max_senders {
        out.push(Finding::ok(format!(
            "a WAL sender is free ({senders} of max_wal_senders = {max_senders} in use)"
        )));
    } else {
        out.push(Finding::problem(format!(
            "no free WAL sender ({senders} of max_wal_senders = {max_senders} in use); raise max_wal_senders and restart PostgreSQL"
        )));
    }
    Ok(())
}

async fn check_table(
    client: &Client,
    version: i32,
    captured: &CapturedTable<'_>,
    out: &mut Vec<Finding>,
) -> Result<(), tokio_postgres::Error> {
    let CapturedTable { table, rule } = *captured;
    let name = table.qualified();
    let quoted = quote_table(&table.schema, &table.name);
    let mut problems = Vec::new();

    if !table.can_select {
        problems.push(format!(
            "user lacks SELECT on it; run GRANT SELECT ON {quoted} TO <user>"
        ));
    }
    for (column, what) in rule.referenced_columns() {
        if !table.columns.iter().any(|c| c == column) {
            problems.push(format!(
                "{what} names column `{column}`, which it does not have ({})",
                rule.location
            ));
        }
    }
    let key_source = match (
        &rule.key,
        table.primary_key.is_empty(),
        table.replica_identity,
    ) {
        (_, _, ReplicaIdentity::Nothing) => {
            problems.push(format!(
                "REPLICA IDENTITY NOTHING makes updates and deletes on it fail once it is published; run ALTER TABLE {quoted} REPLICA IDENTITY DEFAULT (with a primary key) or FULL"
            ));
            None
        }
        (_, true, ReplicaIdentity::Default) => {
            problems.push(format!(
                "has no primary key and REPLICA IDENTITY DEFAULT, so updates and deletes on it would fail once published; add a primary key, or run ALTER TABLE {quoted} REPLICA IDENTITY FULL{}",
                if rule.key.is_none() { " and set key = [...] in its [tables] entry" } else { "" }
            ));
            None
        }
        (Some(k), _, _) => Some(format!("key ({})", k.join(", "))),
        (None, false, _) => Some(format!("primary key ({})", table.primary_key.join(", "))),
        (None, true, ReplicaIdentity::Full) => {
            Some("REPLICA IDENTITY FULL, no key: Kafka keys will be null".to_owned())
        }
        (None, true, _) => Some("replica identity index".to_owned()),
    };
    if let Some(filter) = &rule.filter {
        if version < ROW_FILTER_VERSION {
            problems.push(format!(
                "filter needs PostgreSQL 15 or newer (publication row filters); remove it ({})",
                rule.location
            ));
        } else {
            if let Some(why) = condition_problem(client, &quoted, filter).await {
                problems.push(format!(
                    "filter `{filter}` is not valid SQL for it: {why} ({})",
                    rule.location
                ));
            } else if table.owned {
                if let Some(p) = probe_publication(client, version, captured).await {
                    problems.push(p);
                }
            }
        }
    }
    if let Some(filter) = &rule.snapshot_filter {
        if let Some(why) = condition_problem(client, &quoted, filter).await {
            problems.push(format!(
                "snapshot_filter `{filter}` is not valid SQL for it: {why} ({})",
                rule.location
            ));
        }
    }
    if problems.is_empty() {
        out.push(Finding::ok(format!(
            "table {name}: {}",
            key_source.unwrap_or_default()
        )));
    } else {
        for p in problems {
            out.push(Finding::problem(format!("table {name}: {p}")));
        }
    }
    Ok(())
}

async fn check_publication(
    connector: &Connector,
    client: &Client,
    captured: &[CapturedTable<'_>],
    out: &mut Vec<Finding>,
) -> Result<(), tokio_postgres::Error> {
    let source = &connector.source;
    let publication = client
        .query_opt(
            "SELECT puballtables, pubinsert, pubupdate, pubdelete FROM pg_publication WHERE pubname = $1",
            &[&source.publication],
        )
        .await?;
    match (source.publication_mode, publication) {
        (PublicationMode::Managed, None) => {
            let superuser: bool = client
                .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user", &[])
                .await?
                .try_get(0)?;
            let not_owned: Vec<String> = captured
                .iter()
                .filter(|c| !c.table.owned)
                .map(|c| c.table.qualified())
                .collect();
            if superuser || not_owned.is_empty() {
                out.push(Finding::ok(format!(
                    "publication {} will be created by walcast setup (or at start)",
                    source.publication
                )));
            } else {
                out.push(Finding::problem(format!(
                    "publication {} does not exist and user {} can't create it: it does not own {}; run walcast setup with --admin-user, or create it and set publication_mode = \"existing\"",
                    source.publication,
                    source.user,
                    not_owned.join(", ")
                )));
            }
        }
        (mode, Some(row)) => {
            let all: bool = row.try_get(0)?;
            let ops: [bool; 3] = [row.try_get(1)?, row.try_get(2)?, row.try_get(3)?];
            let published: Vec<(String, String)> = client
                .query(
                    "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
                    &[&source.publication],
                )
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, tokio_postgres::Error>>()?;
            let missing: Vec<String> = captured
                .iter()
                .filter(|c| {
                    !all && !published
                        .iter()
                        .any(|(s, t)| *s == c.table.schema && *t == c.table.name)
                })
                .map(|c| c.table.qualified())
                .collect();
            if ops.contains(&false) {
                out.push(Finding::problem(format!(
                    "publication {} does not publish every insert, update and delete; run ALTER PUBLICATION {} SET (publish = 'insert, update, delete, truncate')",
                    source.publication,
                    quote_ident(&source.publication)
                )));
            } else if missing.is_empty() {
                out.push(Finding::ok(format!("publication {} covers every captured table", source.publication)));
            } else if mode == PublicationMode::Managed {
                out.push(Finding::ok(format!(
                    "publication {} exists; walcast setup (or start) adds {}",
                    source.publication,
                    missing.join(", ")
                )));
            } else {
                out.push(Finding::problem(format!(
                    "publication {} lacks {}; add them (ALTER PUBLICATION {} ADD TABLE ...) or set publication_mode = \"managed\"",
                    source.publication,
                    missing.join(", "),
                    quote_ident(&source.publication)
                )));
            }
        }
        (PublicationMode::Existing, None) => out.push(Finding::problem(format!(
            "publication {} does not exist and publication_mode is existing; create it (CREATE PUBLICATION {} FOR TABLE ...) or set publication_mode = \"managed\"",
            source.publication,
            quote_ident(&source.publication)
        ))),
    }
    Ok(())
}

/// Why PostgreSQL rejects `condition` as a WHERE clause of the table `quoted`, if it
/// does: the statement is prepared, never executed, so the server parses and
/// type-checks the condition as the publication or the snapshot will use it.
async fn condition_problem(client: &Client, quoted: &str, condition: &str) -> Option<String> {
    let probe = format!("SELECT 1 FROM {quoted} WHERE ({condition})");
    client.prepare(&probe).await.err().map(|e| {
        e.as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned())
    })
}

/// PostgreSQL accepts a row filter that reads columns outside the replica identity, and
/// then rejects every UPDATE and DELETE on the table. This publishes the table as
/// walcast would, inside a transaction that is rolled back, and runs an UPDATE that
/// touches no row: the same check fires at executor start.
async fn probe_publication(
    client: &Client,
    version: i32,
    captured: &CapturedTable<'_>,
) -> Option<String> {
    let table = captured.table;
    let first = table.columns.first()?;
    let name = format!("walcast_probe_{}", std::process::id());
    let entry = crate::cmd::setup::publication::publication_entry(captured, version);
    let statements = [
        format!(
            "CREATE PUBLICATION {} FOR TABLE {entry} WITH (publish = 'update, delete')",
            quote_ident(&name)
        ),
        format!(
            "UPDATE {} SET {col} = {col} WHERE false",
            quote_table(&table.schema, &table.name),
            col = quote_ident(first)
        ),
    ];
    client.batch_execute("BEGIN").await.ok()?;
    let mut problem = None;
    for statement in &statements {
        if let Err(e) = client.execute(statement.as_str(), &[]).await {
            let (message, detail) = e
                .as_db_error()
                .map(|d| {
                    (
                        d.message().to_owned(),
                        d.detail().unwrap_or_default().to_owned(),
                    )
                })
                .unwrap_or_else(|| (e.to_string(), String::new()));
            problem = Some(format!(
                "PostgreSQL would reject every UPDATE and DELETE on it once published ({message}{}{detail}); filter only on replica identity (key) columns, or run ALTER TABLE {} REPLICA IDENTITY FULL ({})",
                if detail.is_empty() { "" } else { ": " },
                quote_table(&table.schema, &table.name),
                captured.rule.location
            ));
            break;
        }
    }
    let _ = client.batch_execute("ROLLBACK").await;
    problem
}
