//! Chaos: walcast killed with SIGKILL again and again at seeded pseudo-random moments,
//! or aborted at its named failpoints (`WALCAST_FAILPOINT`), in the middle of a
//! workload with every kind of change — inserts, updates, primary-key changes, deletes,
//! transactions over two tables, a TRUNCATE, a transaction large enough for PostgreSQL
//! to stream it before its commit, a COPY written as multi-row WAL records, a column
//! added mid-stream. Every topic is then read with a read_committed consumer and
//! compared, per table and key, with what a `test_decoding` slot created before the
//! workload saw: nothing lost, nothing repeated, nothing reordered.
//!
//! The topics are read once walcast's slot has confirmed the end of the workload
//! (waited for at most 5 minutes), so every topic exists when the consumer subscribes.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use apache_avro::types::Value as Avro;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use walcast::checkpoint::Position;

use crate::common::{field, int, run_script, start_walcast_with_env, text, WalcastProcess};
use crate::common::{stack, start_registry, Stack, TestDb};

/// The captured tables (`public.<name>`, topic `<db>.public.<name>`).
const TABLES: [&str; 4] = ["orders", "items", "logs", "big"];
/// Rows of the large transaction. Each holds a 1,600-character pad stored inline and
/// uncompressed (STORAGE PLAIN, under the TOAST threshold), about 1.75 kB of decoded
/// change in PostgreSQL's reorder buffer: 50,000 rows are ~87 MB, past the test
/// cluster's logical_decoding_work_mem (the default 64 MB; `deploy/local/up` leaves it
/// alone), so the walsender streams the transaction before its commit. Checked with
/// `pg_stat_replication_slots.stream_txns`.
const BIG_ROWS: u64 = 50_000;
/// Rows of the COPY (one transaction, multi-row WAL records).
const COPY_ROWS: u64 = 20_000;
/// Keys of the COPY's rows in public.items start after this.
const COPY_BASE: u64 = 100_000_000;

/// A walcast process this test started, supervised as a service manager with a
/// liveness check would: when it exits by itself, or its pipeline stopped but the
/// process hangs instead of exiting, it is (killed and) started again and the reason
/// kept and printed (at most 5 times: these tests check what reaches Kafka, and say
/// what else happened). Killed (SIGKILL) if still running when dropped, so a failing
/// test leaves nothing behind.
struct Walcast {
    child: WalcastProcess,
    file: PathBuf,
    log: PathBuf,
    /// Exits by itself (the status and the last error walcast logged) and hung
    /// shutdowns.
    exits: Vec<String>,
    /// "stopping" lines in the log when this instance started; since when this instance
    /// has stopped its pipeline without exiting.
    stops_before: usize,
    stopped_since: Option<Instant>,
}

/// How many times walcast logged that its pipeline stopped.
fn stops_in(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("stopping; checkpoint confirmed")
        .count()
}

impl Walcast {
    fn start(file: &Path, log: &Path, env: &[(&str, &str)]) -> Self {
        Self {
            child: start_walcast_with_env(file, log, env),
            file: file.to_owned(),
            log: log.to_owned(),
            exits: Vec::new(),
            stops_before: stops_in(log),
            stopped_since: None,
        }
    }

    /// Starts it again (without extra environment) once the last instance has exited.
    fn restart(&mut self) {
        self.stops_before = stops_in(&self.log);
        self.stopped_since = None;
        self.child = start_walcast_with_env(&self.file, &self.log, &[]);
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then its exit status.
    fn kill_9(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().unwrap()
    }

    /// Waits at most `limit` for it to exit by itself.
    fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if started.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then its exit status (SIGKILL after 30 s: `None`).
    fn stop(&mut self) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let status = self.wait_for_exit(Duration::from_secs(30));
        if status.is_none() {
            self.kill_9();
        }
        status
    }

    /// Starts it again if it exited by itself, or kills and starts it again if its
    /// pipeline stopped 10 s ago but the process is still there (keeping why); panics
    /// after 5 such restarts.
    fn supervise(&mut self, name: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let logs = std::fs::read_to_string(&self.log).unwrap_or_default();
            let reason = logs
                .lines()
                .rev()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|l| {
                    l["level"] == "ERROR"
                        && !l["message"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("librdkafka"))
                })
                .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            self.intervene(name, format!("exited by itself ({status}): {reason}"));
            return;
        }
        if stops_in(&self.log) > self.stops_before {
            let since = *self.stopped_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(10) {
                self.kill_9();
                let what = "stopped its pipeline (\"stopping; checkpoint confirmed\", no error \
                            logged after it) but its process had not exited 10 s later: killed";
                self.intervene(name, what.to_owned());
            }
        }
    }

    fn intervene(&mut self, name: &str, what: String) {
        eprintln!("{name}: walcast {what}; started again");
        self.exits.push(what);
        assert!(
            self.exits.len() <= 5,
            "{name}: walcast needed {} restarts: {:#?}; log: {}",
            self.exits.len(),
            self.exits,
            keep_log(&self.log, name)
        );
        self.restart();
    }
}

impl Drop for Walcast {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// splitmix64: a seeded, deterministic sequence (no dependency needed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }
}

/// One writer's SQL: small source transactions over its own key range, and the special
/// ones. Counts the source transactions and the Kafka records they give (a delete is
/// two: the event and its tombstone; a primary-key change three: delete, tombstone,
/// create).
struct Writer {
    rng: Rng,
    next_id: u64,
    live: Vec<u64>,
    /// Updates set the column added mid-stream (this writer added it).
    with_note: bool,
    /// The next key of public.logs, for the one writer that owns that table.
    next_log: Option<u64>,
    transactions: u64,
    records: u64,
}

/// Statuses, one with a space and a quote (SQL-escaped).
const STATUSES: [&str; 4] = ["paid", "in transit", "paid it''s", "shipped"];

impl Writer {
    fn new(seed: u64, key_base: u64, owns_logs: bool) -> Self {
        Self {
            rng: Rng(seed),
            next_id: key_base,
            live: Vec::new(),
            with_note: false,
            next_log: owns_logs.then_some(1),
            transactions: 0,
            records: 0,
        }
    }

    fn fresh(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn pick(&mut self) -> Option<u64> {
        if self.live.is_empty() {
            None
        } else {
            let i = self.rng.below(self.live.len() as u64) as usize;
            Some(self.live[i])
        }
    }

    /// One small source transaction.
    fn transaction(&mut self) -> String {
        self.transactions += 1;
        let kind = self.rng.below(100);
        let target = self.pick();
        match (kind, target) {
            (25..=44, Some(id)) => {
                self.records += 1;
                let status = STATUSES[self.rng.below(4) as usize];
                let note = if self.with_note {
                    format!(", note = 'note {}'", self.rng.below(1000))
                } else {
                    String::new()
                };
                format!("UPDATE orders SET status = '{status}', n = n + 1{note} WHERE id = {id};\n")
            }
            (45..=54, Some(old)) => {
                self.records += 3;
                let new = self.fresh();
                self.live.retain(|&k| k != old);
                self.live.push(new);
                format!("UPDATE orders SET id = {new}, status = 'moved' WHERE id = {old};\n")
            }
            (55..=64, Some(id)) => {
                self.records += 2;
                self.live.retain(|&k| k != id);
                format!("DELETE FROM orders WHERE id = {id};\n")
            }
            (65..=79, Some(id)) => {
                self.records += 2;
                let item = self.fresh();
                let qty = self.rng.below(50);
                format!(
                    "BEGIN; INSERT INTO items (id, name, qty) VALUES ({item}, 'item {item}', {qty}); \
                     UPDATE orders SET status = 'ordered', n = n + 1 WHERE id = {id}; COMMIT;\n"
                )
            }
            (80..=89, _) if self.next_log.is_some() => {
                self.records += 1;
                let log = self.next_log.unwrap();
                self.next_log = Some(log + 1);
                format!("INSERT INTO logs (id, msg) VALUES ({log}, 'log line {log}');\n")
            }
            (90..=99, _) => {
                // Created, changed and deleted in one transaction.
                self.records += 4;
                let id = self.fresh();
                format!(
                    "BEGIN; INSERT INTO orders (id, status, n) VALUES ({id}, 'brief', 0); \
                     UPDATE orders SET status = 'briefer' WHERE id = {id}; \
                     DELETE FROM orders WHERE id = {id}; COMMIT;\n"
                )
            }
            _ => {
                let rows = 1 + self.rng.below(3);
                let mut sql = String::from("BEGIN;");
                for _ in 0..rows {
                    let id = self.fresh();
                    let n = self.rng.below(1000);
                    sql.push_str(&format!(
                        " INSERT INTO orders (id, status, n) VALUES ({id}, 'new', {n});"
                    ));
                    self.live.push(id);
                }
                self.records += rows;
                sql.push_str(" COMMIT;\n");
                sql
            }
        }
    }

    fn transactions(&mut self, count: usize) -> String {
        (0..count).map(|_| self.transaction()).collect()
    }

    /// `ALTER TABLE … ADD COLUMN` mid-stream; this writer's updates set it afterwards.
    fn add_column(&mut self) -> String {
        self.transactions += 1;
        self.with_note = true;
        "ALTER TABLE orders ADD COLUMN note text DEFAULT 'none';\n".to_owned()
    }

    /// The large transaction: `BIG_ROWS` wide rows into public.big, and an update of
    /// public.orders in the same transaction.
    fn large_transaction(&mut self) -> String {
        self.transactions += 1;
        self.records += BIG_ROWS;
        let update = match self.pick() {
            Some(id) => {
                self.records += 1;
                format!("UPDATE orders SET status = 'after the large one' WHERE id = {id};")
            }
            None => String::new(),
        };
        format!(
            "BEGIN; INSERT INTO big (id, pad) SELECT i, repeat(md5(i::text), 50) FROM generate_series(1, {BIG_ROWS}) i; {update} COMMIT;\n"
        )
    }

    /// Updates and deletes of some rows of the large transaction.
    fn large_followup(&mut self) -> String {
        self.transactions += 1;
        let thousands = BIG_ROWS / 1000;
        self.records += thousands + 2 * thousands;
        "BEGIN; UPDATE big SET pad = 'short ' || id WHERE id % 1000 = 0; DELETE FROM big WHERE id % 1000 = 1; COMMIT;\n".to_owned()
    }

    /// `COPY_ROWS` rows into public.items with one COPY (one transaction, written as
    /// multi-row WAL records), between two prints of the WAL insert position.
    fn copy(&mut self) -> String {
        self.transactions += 1;
        self.records += COPY_ROWS;
        let mut sql = String::from(
            "SELECT 'copy-from ' || pg_current_wal_insert_lsn();\nCOPY items (id, name, qty) FROM STDIN;\n",
        );
        for i in 1..=COPY_ROWS {
            let id = COPY_BASE + i;
            sql.push_str(&format!("{id}\tcopied {id}\t{}\n", i % 97));
        }
        sql.push_str("\\.\nSELECT 'copy-to ' || pg_current_wal_insert_lsn();\n");
        sql
    }

    /// TRUNCATE of public.logs, then keys it held inserted again.
    fn truncate(&mut self) -> String {
        self.transactions += 2;
        let reused = self.next_log.unwrap_or(1).saturating_sub(1).min(20);
        self.records += reused;
        let mut sql = String::from("TRUNCATE logs;\nBEGIN;");
        for id in 1..=reused {
            sql.push_str(&format!(
                " INSERT INTO logs (id, msg) VALUES ({id}, 'after truncate {id}');"
            ));
        }
        sql.push_str(" COMMIT;\n");
        sql
    }
}

/// The captured tables, and the oracle slot (before any change).
fn prepare_database(db: &TestDb) -> String {
    db.psql(
        "CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, n int NOT NULL);
         CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL, qty int);
         CREATE TABLE public.logs (id int PRIMARY KEY, msg text);
         CREATE TABLE public.big (id int PRIMARY KEY, pad text);
         ALTER TABLE public.big ALTER COLUMN pad SET STORAGE PLAIN;",
    );
    let oracle_slot = format!("oracle_{}", db.name);
    db.psql(&format!(
        "SELECT pg_create_logical_replication_slot('{oracle_slot}', 'test_decoding')"
    ));
    oracle_slot
}

/// A connector capturing the four tables in `mode`, topics with two partitions (so
/// reconciliation works per partition), the registry at `registry`; `walcast setup` run.
/// `metrics`: serve walcast's metrics on this port.
fn prepare_connector(
    db: &TestDb,
    name: &str,
    mode: &str,
    registry: &str,
    metrics: Option<u16>,
) -> PathBuf {
    let tables: String = TABLES
        .iter()
        .map(|t| format!("[tables.\"public.{t}\"]\n"))
        .collect();
    let file = db.connector(
        name,
        "",
        &format!("[delivery]\nmode = \"{mode}\"\n{tables}"),
    );
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("http://127.0.0.1:8081", registry)
        .replace(
            &format!("topic_prefix = \"{}\"\n", db.name),
            &format!("topic_prefix = \"{}\"\npartitions = 2\n", db.name),
        );
    assert!(text.contains("partitions = 2"), "{text}");
    let text = match metrics {
        Some(port) => text.replace(
            "[metrics]\nenabled = false",
            &format!("[metrics]\nlisten = \"127.0.0.1:{port}\""),
        ),
        None => text,
    };
    std::fs::write(&file, text).unwrap();
    let setup = crate::common::walcast(&["setup", file.to_str().unwrap()], &[]);
    assert_eq!(setup.code, Some(0), "{setup:?}");
    file
}

/// Creates the captured tables' topics (two partitions) and waits until every partition
/// answers. For the failpoint cases: walcast reading a topic it has just created can
/// meet a partition still without a leader and stop (NotLeaderForPartition), which
/// would end the armed instance before its failpoint for an unrelated reason.
async fn create_topics(bootstrap: &str, db: &TestDb) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let topics: Vec<String> = TABLES
        .iter()
        .map(|t| format!("{}.public.{t}", db.name))
        .collect();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, 2, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new, &options).await.unwrap() {
        result.unwrap();
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let started = Instant::now();
    for topic in &topics {
        for partition in 0..2 {
            while let Err(e) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{topic}[{partition}] never answered: {e}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The confirmed position of walcast's slot and the pid of the walsender streaming it
/// (`-`: none, or a walsender still creating the slot).
fn slot_state(db: &TestDb, name: &str) -> (String, String) {
    let out = db.psql(&format!(
        "SELECT coalesce(s.confirmed_flush_lsn::text, '-') || ' ' || coalesce(r.pid::text, '-') \
         FROM pg_replication_slots s LEFT JOIN pg_stat_replication r \
           ON r.pid = s.active_pid AND r.state IN ('catchup', 'streaming') \
         WHERE s.slot_name = 'walcast_{name}' AND s.database = current_database()"
    ));
    match out.split_once(' ') {
        Some((lsn, pid)) => (lsn.to_owned(), pid.to_owned()),
        None => ("-".to_owned(), "-".to_owned()),
    }
}

/// Waits (at most 60 s) until walcast streams its slot (START_REPLICATION: past the
/// slot's consistent point and the initial snapshot), so the workload's changes are
/// streamed changes. An active slot is not enough: the slot is active while walcast's
/// walsender creates it, which waits for the transactions running in the cluster
/// (other tests' too), and a change committed meanwhile is a snapshot row.
fn wait_until_streaming(db: &TestDb, name: &str) {
    let started = Instant::now();
    while slot_state(db, name).1 == "-" {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "walcast_{name} never streamed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One change as a consumer of the topics sees it. `op` is c, u, d or `tombstone`;
/// `values` are the row's non-key columns that are not null, as text (the pad of
/// public.big as its MD5); a delete carries only its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Change {
    table: String,
    key: i64,
    op: String,
    values: BTreeMap<String, String>,
}

impl Change {
    fn new(table: &str, key: i64, op: &str, values: BTreeMap<String, String>) -> Self {
        Self {
            table: table.to_owned(),
            key,
            op: op.to_owned(),
            values,
        }
    }

    /// One line, for reports.
    fn brief(&self) -> String {
        let values: Vec<String> = self
            .values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{}:{} {} {}",
            self.table,
            self.key,
            self.op,
            values.join(",")
        )
    }
}

/// `name[type]:value` pairs of a test_decoding line: (old key, new tuple), null values
/// left out.
type Columns = BTreeMap<String, String>;

fn parse_columns(mut s: &str, line: &str) -> (Columns, Columns) {
    let mut old = Columns::new();
    let mut new = Columns::new();
    let mut into_old = false;
    loop {
        s = s.trim_start();
        if s.is_empty() {
            break;
        }
        if let Some(rest) = s.strip_prefix("old-key:") {
            into_old = true;
            s = rest;
            continue;
        }
        if let Some(rest) = s.strip_prefix("new-tuple:") {
            into_old = false;
            s = rest;
            continue;
        }
        let (name, rest) = s
            .split_once('[')
            .unwrap_or_else(|| panic!("a column in {line}"));
        let (_type, rest) = rest
            .split_once("]:")
            .unwrap_or_else(|| panic!("a type in {line}"));
        let (value, rest) = if let Some(quoted) = rest.strip_prefix('\'') {
            let mut value = String::new();
            let mut end = quoted.len();
            let mut chars = quoted.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if matches!(chars.peek(), Some((_, '\''))) {
                        chars.next();
                        value.push('\'');
                        continue;
                    }
                    end = i + 1;
                    break;
                }
                value.push(c);
            }
            (Some(value), &quoted[end..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            let raw = &rest[..end];
            assert_ne!(raw, "unchanged-toast-datum", "{line}");
            ((raw != "null").then(|| raw.to_owned()), &rest[end..])
        };
        if let Some(value) = value {
            if into_old { &mut old } else { &mut new }.insert(name.to_owned(), value);
        }
        s = rest;
    }
    (old, new)
}

fn key_of(columns: &mut Columns, line: &str) -> i64 {
    columns
        .remove("id")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no key in {line}"))
}

/// What the oracle slot saw, as the changes a consumer must see (a delete is followed
/// by its tombstone, a key change is delete, tombstone and create), and the tables
/// truncated (walcast skips truncates, as Debezium does by default).
fn oracle_changes(db: &TestDb, slot: &str) -> (Vec<Change>, Vec<String>) {
    // Decoding stops at the flushed WAL; a synchronous commit flushes all earlier ones
    // (the test cluster runs with synchronous_commit = off).
    db.psql("BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT");
    // The pads of public.big travel as their MD5, not 1.6 kB each.
    let out = db.psql(&format!(
        r#"SELECT CASE WHEN data LIKE 'table public.big: %' AND data LIKE '%pad[text]:''%'
                  THEN regexp_replace(data, 'pad\[text\]:''[^'']*''',
                       'pad[text]:''' || md5(substring(data from 'pad\[text\]:''([^'']*)''')) || '''')
                  ELSE data END
           FROM pg_logical_slot_peek_changes('{slot}', NULL, NULL)
           WHERE data LIKE 'table public.%'"#
    ));
    changes_from_decoding(&out)
}

/// test_decoding's lines of the captured tables as the changes a consumer must see,
/// and the tables truncated.
fn changes_from_decoding(out: &str) -> (Vec<Change>, Vec<String>) {
    let mut changes = Vec::new();
    let mut truncated = Vec::new();
    for line in out.lines() {
        let rest = line.strip_prefix("table public.").unwrap();
        let (table, rest) = rest.split_once(": ").unwrap();
        let (action, rest) = rest.split_once(':').unwrap();
        if !TABLES.contains(&table) {
            continue;
        }
        if action == "TRUNCATE" {
            truncated.push(table.to_owned());
            continue;
        }
        let (mut old, mut new) = parse_columns(rest, line);
        match action {
            "INSERT" => {
                let key = key_of(&mut new, line);
                changes.push(Change::new(table, key, "c", new));
            }
            "UPDATE" => {
                let key = key_of(&mut new, line);
                match old.contains_key("id").then(|| key_of(&mut old, line)) {
                    Some(old_key) if old_key != key => {
                        changes.push(Change::new(table, old_key, "d", Columns::new()));
                        changes.push(Change::new(table, old_key, "tombstone", Columns::new()));
                        changes.push(Change::new(table, key, "c", new));
                    }
                    _ => changes.push(Change::new(table, key, "u", new)),
                }
            }
            "DELETE" => {
                let key = key_of(&mut new, line);
                changes.push(Change::new(table, key, "d", Columns::new()));
                changes.push(Change::new(table, key, "tombstone", Columns::new()));
            }
            other => panic!("unexpected {other} in {line}"),
        }
    }
    (changes, truncated)
}

/// The oracle, read until it stops growing (decoding trails the commits a little).
fn settled_oracle_changes(db: &TestDb, slot: &str) -> (Vec<Change>, Vec<String>) {
    let mut expected = oracle_changes(db, slot);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let again = oracle_changes(db, slot);
        if again.0.len() == expected.0.len() && !again.0.is_empty() {
            return again;
        }
        expected = again;
    }
    expected
}

fn hex_md5(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An Avro scalar as text (`None`: null).
fn scalar(v: &Avro) -> Option<String> {
    match v {
        Avro::Null => None,
        Avro::Int(i) => Some(i.to_string()),
        Avro::Long(i) => Some(i.to_string()),
        Avro::String(s) => Some(s.clone()),
        Avro::Union(_, inner) => scalar(inner),
        other => Some(format!("{other:?}")),
    }
}

/// Decodes Confluent-framed Avro with the schemas the registry names.
struct Decoder {
    http: reqwest::Client,
    registry: String,
    schemas: BTreeMap<u32, apache_avro::Schema>,
}

impl Decoder {
    async fn decode(&mut self, bytes: &[u8]) -> Avro {
        assert_eq!(bytes[0], 0, "Confluent magic byte");
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        if let std::collections::btree_map::Entry::Vacant(slot) = self.schemas.entry(id) {
            slot.insert(crate::common::registry_schema(&self.http, &self.registry, id).await);
        }
        apache_avro::from_avro_datum(&self.schemas[&id], &mut &bytes[5..], None)
            .expect("decodes with the registered schema")
    }
}

/// What the topics hold, in each partition's order, and any record whose position is
/// not above the one before it in its partition.
struct Consumed {
    changes: Vec<Change>,
    out_of_order: Vec<String>,
    other_ops: Vec<String>,
}

/// Reads every captured table's topic with a read_committed consumer (once walcast has
/// caught up) until `expected` records arrived and nothing more came for 3 s, or
/// nothing came for 30 s (room for a slow group join on a loaded machine).
async fn consume_topics(bootstrap: &str, db: &TestDb, registry: &str, expected: usize) -> Consumed {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("chaos-check-{}-{}", db.name, std::process::id()),
        )
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // A topic created after the subscription is noticed at the next refresh.
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .unwrap();
    let prefix = format!("{}.public.", db.name);
    let topics: Vec<String> = TABLES.iter().map(|t| format!("{prefix}{t}")).collect();
    consumer
        .subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    let mut decoder = Decoder {
        http: reqwest::Client::new(),
        registry: registry.to_owned(),
        schemas: BTreeMap::new(),
    };
    let mut out = Consumed {
        changes: Vec::new(),
        out_of_order: Vec::new(),
        other_ops: Vec::new(),
    };
    let mut last: BTreeMap<(String, i32), Position> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        let m = match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => m,
            Some(Err(e))
                if e.rdkafka_error_code()
                    == Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition) =>
            {
                continue
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None if out.changes.len() >= expected
                && quiet_since.elapsed() > Duration::from_secs(3) =>
            {
                break
            }
            None if quiet_since.elapsed() > Duration::from_secs(30) => break,
            None => continue,
        };
        quiet_since = Instant::now();
        let table = m.topic().strip_prefix(&prefix).unwrap().to_owned();
        let position: Position = m
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|h| h.key == "walcast.position")
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
            .expect("a walcast.position header")
            .parse()
            .unwrap();
        let at = (m.topic().to_owned(), m.partition());
        if let Some(before) = last.get(&at) {
            if position <= *before {
                out.out_of_order.push(format!(
                    "{}[{}]@{}: position {position} after {before}",
                    at.0,
                    at.1,
                    m.offset()
                ));
            }
        }
        last.insert(at, position);
        let key_record = decoder.decode(m.key().expect("a key")).await;
        let key = int(field(&key_record, "id")).expect("an id in the key");
        let Some(payload) = m.payload() else {
            out.changes
                .push(Change::new(&table, key, "tombstone", Columns::new()));
            continue;
        };
        let value = decoder.decode(payload).await;
        let op = text(field(&value, "op")).unwrap();
        let mut values = Columns::new();
        if op == "c" || op == "u" {
            let Some(Avro::Record(fields)) = field(&value, "after").map(unwrap_union) else {
                panic!("no after in {value:?}");
            };
            for (name, v) in fields {
                if name == "id" {
                    continue;
                }
                if let Some(v) = scalar(v) {
                    let v = if table == "big" && name == "pad" {
                        hex_md5(v.as_bytes())
                    } else {
                        v
                    };
                    values.insert(name.clone(), v);
                }
            }
        } else if op != "d" {
            out.other_ops
                .push(format!("{table}:{key} op {op} at {position}"));
        }
        out.changes.push(Change::new(&table, key, &op, values));
    }
    out
}

fn unwrap_union(v: &Avro) -> &Avro {
    match v {
        Avro::Union(_, inner) => unwrap_union(inner),
        other => other,
    }
}

fn counts(changes: &[Change]) -> BTreeMap<&Change, i64> {
    let mut map = BTreeMap::new();
    for c in changes {
        *map.entry(c).or_default() += 1;
    }
    map
}

fn per_table(changes: &[Change]) -> BTreeMap<&str, usize> {
    let mut map = BTreeMap::new();
    for c in changes {
        *map.entry(c.table.as_str()).or_default() += 1;
    }
    map
}

/// Compares per table and key (the order per key is the order a consumer sees) and as
/// multisets; describes every difference.
fn compare(expected: &[Change], got: &[Change]) -> Result<(), String> {
    type Key = (String, i64);
    let by_key = |changes: &[Change]| {
        let mut map: BTreeMap<Key, Vec<(String, Columns)>> = BTreeMap::new();
        for c in changes {
            map.entry((c.table.clone(), c.key))
                .or_default()
                .push((c.op.clone(), c.values.clone()));
        }
        map
    };
    let (want, have) = (counts(expected), counts(got));
    let mut missing = Vec::new();
    let mut repeated = Vec::new();
    for (c, n) in &want {
        let h = have.get(c).copied().unwrap_or(0);
        if h < *n {
            missing.push(format!("{} (x{})", c.brief(), n - h));
        }
    }
    for (c, n) in &have {
        let w = want.get(c).copied().unwrap_or(0);
        if *n > w {
            repeated.push(format!("{} (x{})", c.brief(), n - w));
        }
    }
    let (want_keys, have_keys) = (by_key(expected), by_key(got));
    let keys: std::collections::BTreeSet<&Key> = want_keys.keys().chain(have_keys.keys()).collect();
    let mut differing = Vec::new();
    for key in keys {
        let (w, h) = (want_keys.get(key), have_keys.get(key));
        if w != h {
            differing.push((key.clone(), w, h));
        }
    }
    if missing.is_empty() && repeated.is_empty() && differing.is_empty() {
        return Ok(());
    }
    let show = |v: Option<&Vec<(String, Columns)>>| -> String {
        v.map(|seq| {
            seq.iter()
                .map(|(op, values)| {
                    let values: Vec<String> =
                        values.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("{op}[{}]", values.join(","))
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "(nothing)".to_owned())
    };
    let mut report = format!(
        "expected {} records {:?}, got {} {:?}\n{} missing, {} repeated, {} keys differ{}\n",
        expected.len(),
        per_table(expected),
        got.len(),
        per_table(got),
        missing.len(),
        repeated.len(),
        differing.len(),
        if missing.is_empty() && repeated.is_empty() {
            " (same multiset: reordered)"
        } else {
            ""
        }
    );
    for m in missing.iter().take(20) {
        report.push_str(&format!("  missing  {m}\n"));
    }
    for r in repeated.iter().take(20) {
        report.push_str(&format!("  repeated {r}\n"));
    }
    for ((table, key), w, h) in differing.iter().take(10) {
        report.push_str(&format!(
            "  {table}:{key}\n    expected {}\n    got      {}\n",
            show(*w),
            show(*h)
        ));
    }
    Err(report)
}

/// `at_least_once`: nothing lost and, per key, the oracle's changes in order with
/// repeats allowed (a replay after a restart sends a suffix again): each key's expected
/// sequence is a subsequence of what the topics hold. Returns how many records were
/// repeats.
fn compare_at_least_once(expected: &[Change], got: &[Change]) -> Result<usize, String> {
    fn by_key(changes: &[Change]) -> BTreeMap<(&str, i64), Vec<&Change>> {
        let mut map: BTreeMap<(&str, i64), Vec<&Change>> = BTreeMap::new();
        for c in changes {
            map.entry((c.table.as_str(), c.key)).or_default().push(c);
        }
        map
    }
    let (want, have) = (by_key(expected), by_key(got));
    let mut lost = Vec::new();
    for (key, sequence) in &want {
        let held = have.get(key).map(Vec::as_slice).unwrap_or_default();
        let mut at = 0;
        for change in sequence {
            match held[at..].iter().position(|h| h == change) {
                Some(offset) => at += offset + 1,
                None => {
                    lost.push(format!(
                        "{}:{}: {} not found (in order) among the {} records of the key",
                        key.0,
                        key.1,
                        change.brief(),
                        held.len()
                    ));
                    break;
                }
            }
        }
    }
    if lost.is_empty() {
        return Ok(got.len().saturating_sub(expected.len()));
    }
    let mut report = format!(
        "expected {} records {:?}, got {} {:?}\n{} keys lost a change or its order\n",
        expected.len(),
        per_table(expected),
        got.len(),
        per_table(got),
        lost.len()
    );
    for l in lost.iter().take(20) {
        report.push_str(&format!("  {l}\n"));
    }
    Err(report)
}

/// The log kept for a post-mortem when a check fails (the database's directory goes).
fn keep_log(log: &Path, name: &str) -> String {
    let kept =
        std::env::temp_dir().join(format!("walcast-chaos-{name}-{}.log", std::process::id()));
    let _ = std::fs::copy(log, &kept);
    kept.display().to_string()
}

/// Everything a scenario checks once walcast has caught up: the workload really did
/// what it claims, and the topics equal the oracle.
async fn check_against_oracle(
    walcast: &mut Walcast,
    db: &TestDb,
    oracle_slot: &str,
    registry: &str,
    log: &Path,
    name: &str,
    mode: &str,
) -> usize {
    let (expected, truncated) = settled_oracle_changes(db, oracle_slot);
    // Everything is committed and decoded: walcast has caught up (all it will send is
    // acknowledged, and committed in transactional mode) once its slot's confirmed
    // position passes here. Waited for (at most 5 minutes) before reading the topics,
    // so every topic exists when the consumer subscribes.
    let end = db.psql("SELECT pg_current_wal_lsn()");
    let waited = Instant::now();
    let caught_up = loop {
        let confirmed = db.psql(&format!(
            "SELECT confirmed_flush_lsn >= '{end}' FROM pg_replication_slots WHERE slot_name = 'walcast_{name}' AND database = current_database()"
        )) == "t";
        if confirmed || waited.elapsed() > Duration::from_secs(300) {
            break confirmed;
        }
        walcast.supervise(name);
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "{name}: walcast {} after {:.1}s",
        if caught_up {
            "caught up"
        } else {
            "had NOT caught up"
        },
        waited.elapsed().as_secs_f64()
    );
    let count = |table: &str, op: &str| {
        expected
            .iter()
            .filter(|c| c.table == table && c.op == op)
            .count()
    };
    // The workload did what it claims (as the oracle saw it).
    assert_eq!(truncated, ["logs"], "one TRUNCATE of public.logs");
    assert!(
        expected.iter().any(|c| c.table == "logs"
            && c.values
                .get("msg")
                .is_some_and(|m| m.starts_with("after truncate"))),
        "keys of public.logs reused after the TRUNCATE"
    );
    assert_eq!(
        expected
            .iter()
            .filter(|c| c.table == "items" && c.key > COPY_BASE as i64 && c.op == "c")
            .count(),
        COPY_ROWS as usize,
        "the COPY"
    );
    assert!(
        expected
            .iter()
            .any(|c| c.table == "orders"
                && c.values.get("note").is_some_and(|n| n.starts_with("note "))),
        "the column added mid-stream, set"
    );
    assert!(count("orders", "d") > 0 && count("orders", "u") > 0 && count("items", "c") > 0);

    let consumed = consume_topics(stack().kafka_bootstrap(), db, registry, expected.len()).await;
    if mode == "at_least_once" {
        // The checkpoint kept advancing (no acknowledgement swallowed), and nothing is
        // lost; repeats are what this mode allows, so positions may go back in a
        // partition.
        assert!(
            caught_up,
            "{name}: walcast's slot never confirmed the end of the workload; log: {}",
            keep_log(log, name)
        );
        match compare_at_least_once(&expected, &consumed.changes) {
            Ok(repeats) => eprintln!("{name}: nothing lost; {repeats} records repeated"),
            Err(report) => panic!(
                "{name}: the topics lost changes of the oracle\n{report}\nwalcast's log: {}",
                keep_log(log, name)
            ),
        }
        assert!(
            consumed.other_ops.is_empty(),
            "{name}: unexpected ops: {:?}",
            consumed.other_ops.iter().take(20).collect::<Vec<_>>()
        );
        return expected.len();
    }
    let result = compare(&expected, &consumed.changes);
    if result.is_err() || !consumed.out_of_order.is_empty() || !consumed.other_ops.is_empty() {
        let kept = keep_log(log, name);
        panic!(
            "{name}: the topics differ from the oracle (walcast caught up: {caught_up})\n{}\nout of order in their partition: {:?}\nunexpected ops: {:?}\nwalcast's log: {kept}",
            result.err().unwrap_or_default(),
            consumed.out_of_order.iter().take(20).collect::<Vec<_>>(),
            consumed.other_ops.iter().take(20).collect::<Vec<_>>(),
        );
    }
    expected.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kill_9_loses_and_repeats_nothing_exactly_once() {
    repeated_kill_9_scenario("chaos_kill_eo", "exactly_once", 0x5EED_0001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kill_9_loses_and_repeats_nothing_transactional() {
    repeated_kill_9_scenario("chaos_kill_tx", "transactional", 0x5EED_0002).await;
}

/// `at_least_once` under kills and PostgreSQL connection cuts (every other intervention
/// terminates walcast's walsender instead of killing walcast): nothing is lost, repeats
/// are allowed, and the slot's confirmed position reaches the end of the workload (an
/// acknowledgement credited to the wrong copy of a resent transaction would stall it or
/// confirm past a record still in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kill_9_and_connection_cuts_lose_nothing_at_least_once() {
    repeated_kill_9_scenario("chaos_kill_alo", "at_least_once", 0x5EED_0003).await;
}

/// Small transactions per writer (two writers, disjoint keys, concurrently).
const TRANSACTIONS_PER_WRITER: usize = 5_000;
/// Transactions per psql session; the writers pause between sessions, so the workload
/// spans the kills.
const CHUNK: usize = 100;
const KILLS: usize = 20;

/// `KILLS` SIGKILLs at seeded pseudo-random moments (200–1500 ms after an instance
/// started, started streaming or started sending, in turn) while two writers run over
/// 10,000 source transactions with every special one.
async fn repeated_kill_9_scenario(name: &str, mode: &str, seed: u64) {
    let started = Instant::now();
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    let oracle_slot = prepare_database(&db);
    // Walcast's metrics tell what each killed instance had done.
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = prepare_connector(&db, name, mode, &registry.url(), Some(metrics_port));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    // Records the running instance handed to the producer, skipped as already in
    // Kafka, and Kafka transactions it committed (0 when its metrics do not answer yet).
    let progress = || async {
        let body = match http
            .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let sum = |metric: &str| -> u64 {
            body.lines()
                .filter(|l| l.starts_with(&format!("{metric}{{")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64
        };
        (
            sum("walcast_records_sent_total"),
            sum("walcast_records_skipped_total"),
            sum("walcast_kafka_transactions_total"),
        )
    };
    let log = db.dir.path().join("walcast.log");
    let mut walcast = Walcast::start(&file, &log, &[]);
    // Capture starts when walcast streams from its slot.
    wait_until_streaming(&db, name);

    // Writer 0 also owns public.logs and runs the special transactions between its chunks.
    let chunks = TRANSACTIONS_PER_WRITER / CHUNK;
    let mut scripts: Vec<Vec<String>> = Vec::new();
    let mut transactions = 0;
    for w in 0..2u64 {
        let mut writer = Writer::new(seed ^ (w + 1), (w + 1) * 10_000_000, w == 0);
        let mut chunk_scripts = Vec::new();
        for c in 0..chunks {
            let mut sql = writer.transactions(CHUNK);
            // The added column at about a quarter, the large transaction and its
            // follow-up at about a third, the COPY at half, the TRUNCATE at two thirds.
            if w == 0 {
                let at = |percent: usize| c == chunks * percent / 100;
                if at(24) {
                    sql.push_str(&writer.add_column());
                }
                if at(36) {
                    sql.push_str(&writer.large_transaction());
                }
                if at(40) {
                    sql.push_str(&writer.large_followup());
                }
                if at(50) {
                    sql.push_str(&writer.copy());
                }
                if at(66) {
                    sql.push_str(&writer.truncate());
                }
            }
            chunk_scripts.push(sql);
        }
        transactions += writer.transactions;
        scripts.push(chunk_scripts);
    }
    let writers: Vec<_> = scripts
        .into_iter()
        .map(|chunks| {
            let dbname = db.name.clone();
            std::thread::spawn(move || {
                for sql in chunks {
                    run_script(stack, &dbname, &sql);
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        })
        .collect();

    // Kill -9 at seeded pseudo-random moments, 200–1500 ms after, in turn: the process
    // started (startup); its walsender streams (reconciliation: a restarted instance
    // first reads the end of each topic's partitions and skips what Kafka holds, which
    // takes longer than 1.5 s on this machine); it handed records to the producer
    // (transactional: committed a Kafka transaction). The waits are bounded (10 s, 6 s):
    // a kill during a longer phase is a kill too.
    // Counted: the kills of an instance that had sent records or committed, and what
    // they sent and skipped.
    let mut rng = Rng(seed);
    let mut intervals = Vec::new();
    let mut sending_kills = 0;
    let mut committing_kills = 0;
    let (mut sent_by_killed, mut skipped_by_killed) = (0, 0);
    let mut cuts = 0;
    // The first instance streams already (waited for above).
    let mut old_walsender = "-".to_owned();
    for kill in 0..KILLS {
        let phase = (kill + 1) % 3;
        // Streaming: a walsender other than the killed instance's streams the slot.
        let waiting = Instant::now();
        while phase >= 1 && waiting.elapsed() < Duration::from_secs(10) {
            let (_, pid) = slot_state(&db, name);
            if pid != "-" && pid != old_walsender {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let waiting = Instant::now();
        while phase == 2 && waiting.elapsed() < Duration::from_secs(6) {
            let (sent, _, committed) = progress().await;
            if (mode == "transactional" && committed > 0) || (mode != "transactional" && sent > 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let wait = rng.between(200, 1500);
        intervals.push(wait);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        if mode == "at_least_once" && kill % 2 == 1 {
            // A PostgreSQL connection cut: the walsender ends, walcast reconnects and
            // the server resends from the confirmed position, while records sent
            // before the cut may still be in flight.
            old_walsender = slot_state(&db, name).1;
            walcast.supervise(name);
            db.psql(&format!(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE slot_name = 'walcast_{name}' AND database = current_database()"
            ));
            cuts += 1;
            continue;
        }
        let (sent, skipped, committed) = progress().await;
        if sent > 0 {
            sending_kills += 1;
        }
        committing_kills += usize::from(committed > 0);
        sent_by_killed += sent;
        skipped_by_killed += skipped;
        old_walsender = slot_state(&db, name).1;
        walcast.supervise(name);
        let status = walcast.kill_9();
        if status.signal() != Some(9) {
            // Exited by itself just before the kill.
            walcast.exits.push(format!("{status} (just before a kill)"));
        }
        walcast.restart();
    }
    let kills_done = started.elapsed();
    for w in writers {
        w.join().expect("a writer failed");
    }
    let workload_done = started.elapsed();

    let expected = check_against_oracle(
        &mut walcast,
        &db,
        &oracle_slot,
        &registry.url(),
        &log,
        name,
        mode,
    )
    .await;
    let caught_up = started.elapsed();
    let stopped = walcast.stop();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        stopped.is_some_and(|s| s.success()),
        "{name}: clean stop on SIGTERM ({stopped:?}); log: {}",
        keep_log(&log, name)
    );
    // Restarts that found a position recorded (committed, in transactional mode) in
    // walcast.offsets: reported, not asserted (an instance killed before its first
    // checkpoint leaves none).
    let resumed = logs
        .matches("resuming: events at or below the recorded position")
        .count();
    // PostgreSQL streamed the large transaction to walcast before its commit (at least
    // once: each restart may decode it again).
    let streamed = db.psql(&format!(
        "SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = 'walcast_{name}'"
    ));
    assert!(
        streamed.parse::<u64>().is_ok_and(|n| n > 0),
        "the large transaction was streamed (stream_txns = {streamed:?})"
    );
    eprintln!(
        "{name}: {transactions} source transactions, {expected} records, {} SIGKILLs and {cuts} PostgreSQL connection cuts ({sending_kills} kills of an instance \
         that had sent records, {committing_kills} that had committed a Kafka transaction; killed instances sent {sent_by_killed} and skipped {skipped_by_killed} as already in Kafka; \
         {resumed} restarts resumed from a recorded position) at {intervals:?} ms; kills done {:.1}s, workload done {:.1}s, topics equal the oracle at {:.1}s, stream_txns {streamed}; \
         exits by itself: {:?}",
        KILLS - cuts,
        kills_done.as_secs_f64(),
        workload_done.as_secs_f64(),
        caught_up.as_secs_f64(),
        walcast.exits
    );
    registry.shutdown().await.unwrap();
}

/// One failpoint case: walcast armed with `WALCAST_FAILPOINT=<point>:<n>` aborts in the
/// middle of the workload; restarted without it, the topics still equal the oracle.
/// `n = None`: after_send, counted so that it falls inside the COPY, between two rows
/// of one multi-row WAL record.
async fn failpoint_case(
    stack: &'static Stack,
    registry: &str,
    name: &str,
    mode: &str,
    point: &str,
    n: Option<u64>,
) -> String {
    let started = Instant::now();
    let db = TestDb::new(stack);
    let oracle_slot = prepare_database(&db);
    let file = prepare_connector(&db, name, mode, registry, None);
    create_topics(stack.kafka_bootstrap(), &db).await;

    // One writer, in order, pausing between scripts of 100 transactions (so Kafka
    // transactions and checkpoints come often): 600 transactions, the COPY, 600 more
    // with the added column and the TRUNCATE.
    let mut writer = Writer::new(0xFA11 ^ n.unwrap_or(7), 10_000_000, true);
    let mut scripts: Vec<String> = (0..6).map(|_| writer.transactions(100)).collect();
    let before_copy = writer.records;
    let copy_script = scripts.len();
    // The k-th row of the COPY (k = 10,007; checked below to lie inside a WAL record).
    let copy_row = 10_007;
    scripts.push(writer.copy());
    for i in 0..6 {
        let mut sql = writer.transactions(100);
        if i == 1 {
            sql.push_str(&writer.add_column());
        }
        if i == 3 {
            sql.push_str(&writer.truncate());
        }
        scripts.push(sql);
    }
    let transactions = writer.transactions;
    let count = n.unwrap_or(before_copy + copy_row);
    let armed = format!("{point}:{count}");

    let log = db.dir.path().join("walcast.log");
    let mut walcast = Walcast::start(&file, &log, &[("WALCAST_FAILPOINT", armed.as_str())]);
    wait_until_streaming(&db, name);
    let dbname = db.name.clone();
    let workload = std::thread::spawn(move || {
        scripts
            .iter()
            .map(|sql| {
                let out = run_script(stack, &dbname, sql);
                std::thread::sleep(Duration::from_millis(150));
                out
            })
            .collect::<Vec<_>>()
    });

    // It aborts (SIGABRT, like a crash: no flush, no checkpoint) and says where.
    let status = walcast.wait_for_exit(Duration::from_secs(90));
    let aborted_at = started.elapsed();
    let mid_workload = !workload.is_finished();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.signal() == Some(6)),
        "{name}: walcast armed with {armed} did not abort: {status:?}; log: {}",
        keep_log(&log, name)
    );
    assert!(
        logs.contains(&format!("failpoint {point} reached ({count})")),
        "{name}: {logs}"
    );
    walcast.restart();
    let outputs = workload.join().expect("the workload failed");

    let expected =
        check_against_oracle(&mut walcast, &db, &oracle_slot, registry, &log, name, mode).await;
    if n.is_none() {
        // The armed record was the k-th row of the COPY, and rows k and k+1 were in the
        // same WAL record (a multi-row MULTI_INSERT; PostgreSQL 15 describes it as
        // "<n> tuples flags …", later versions as "ntuples: <n>, …").
        let (expected_changes, _) = oracle_changes(&db, &oracle_slot);
        let first_copied = expected_changes
            .iter()
            .position(|c| c.table == "items" && c.key > COPY_BASE as i64)
            .unwrap() as u64;
        assert_eq!(
            first_copied, before_copy,
            "records before the COPY, per the oracle"
        );
        let lsn = |label: &str| {
            outputs[copy_script]
                .lines()
                .find_map(|l| l.strip_prefix(label))
                .unwrap_or_else(|| panic!("{label} in {:?}", outputs[copy_script]))
                .trim()
                .to_owned()
        };
        let (from, to) = (lsn("copy-from "), lsn("copy-to "));
        db.psql("CREATE EXTENSION IF NOT EXISTS pg_walinspect");
        let rel = db.psql("SELECT (SELECT oid FROM pg_database WHERE datname = current_database()) || '/' || pg_relation_filenode('items')");
        let sizes: Vec<u64> = db
            .psql(&format!(
                "SELECT coalesce(substring(description from '^(\\d+) tuples'), substring(description from 'ntuples: (\\d+)')) FROM pg_get_wal_records_info('{from}', '{to}') \
                 WHERE record_type LIKE 'MULTI_INSERT%' AND block_ref LIKE '%/{rel} %' ORDER BY start_lsn"
            ))
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(sizes.iter().sum::<u64>(), COPY_ROWS, "{sizes:?}");
        let mut end = 0;
        let holding = sizes
            .iter()
            .find(|&&size| {
                end += size;
                end >= copy_row
            })
            .copied()
            .unwrap();
        assert!(
            end > copy_row && holding > 1,
            "row {copy_row} of the COPY ends its WAL record ({sizes:?}); choose another"
        );
    }
    let stopped = walcast.stop();
    assert!(
        stopped.is_some_and(|s| s.success()),
        "{name}: clean stop on SIGTERM ({stopped:?}); log: {}",
        keep_log(&log, name)
    );
    format!(
        "{name} ({mode}, {armed}): aborted at {:.1}s (workload still running: {mid_workload}), {transactions} source transactions, {expected} records equal the oracle at {:.1}s; exits by itself: {:?}",
        aborted_at.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        walcast.exits
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failpoints_lose_and_repeat_nothing() {
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let url = registry.url();
    // The cases run side by side, each on a thread of its own (with its own runtime:
    // they block while waiting), the registry on this test's runtime.
    let cases = [
        ("chaos_fp_send_eo", "exactly_once", "after_send", None),
        (
            "chaos_fp_confirm_eo",
            "exactly_once",
            "before_confirm",
            Some(10),
        ),
        ("chaos_fp_send_tx", "transactional", "after_send", None),
        (
            "chaos_fp_commit_tx",
            "transactional",
            "before_kafka_commit",
            Some(4),
        ),
    ];
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(name, mode, point, n)| {
            let url = url.clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(failpoint_case(stack, &url, name, mode, point, n))
            })
        })
        .collect();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for handle in handles {
        match tokio::task::spawn_blocking(move || handle.join())
            .await
            .unwrap()
        {
            Ok(line) => report.push(line),
            Err(panic) => failures.push(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            ),
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    registry.shutdown().await.unwrap();
}

#[test]
fn decoding_lines_become_the_changes_a_consumer_sees() {
    let lines = "table public.orders: INSERT: id[integer]:1 status[text]:'paid it''s' n[integer]:5 note[text]:null
table public.orders: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 status[text]:'moved' n[integer]:5
table public.orders: UPDATE: id[integer]:2 status[text]:'in transit' n[integer]:6
table public.other: INSERT: id[integer]:9
table public.logs: TRUNCATE: (no-flags)
table public.orders: DELETE: id[integer]:2";
    let (changes, truncated) = changes_from_decoding(lines);
    let values = |pairs: &[(&str, &str)]| -> Columns {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let none = Columns::new();
    assert_eq!(
        changes,
        [
            Change::new(
                "orders",
                1,
                "c",
                values(&[("status", "paid it's"), ("n", "5")])
            ),
            Change::new("orders", 1, "d", none.clone()),
            Change::new("orders", 1, "tombstone", none.clone()),
            Change::new("orders", 2, "c", values(&[("status", "moved"), ("n", "5")])),
            Change::new(
                "orders",
                2,
                "u",
                values(&[("status", "in transit"), ("n", "6")])
            ),
            Change::new("orders", 2, "d", none.clone()),
            Change::new("orders", 2, "tombstone", none),
        ]
    );
    assert_eq!(truncated, ["logs"]);
}

/// A change of public.orders whose only value is `n`.
fn change(key: i64, op: &str, n: &str) -> Change {
    Change::new("orders", key, op, [("n".to_owned(), n.to_owned())].into())
}

#[test]
fn the_comparison_names_losses_repeats_and_reorders() {
    let expected = [
        change(1, "c", "1"),
        change(1, "u", "2"),
        change(2, "c", "1"),
    ];
    assert!(compare(&expected, &expected).is_ok());
    // Other keys may interleave differently (other partitions).
    let interleaved = [
        change(1, "c", "1"),
        change(2, "c", "1"),
        change(1, "u", "2"),
    ];
    assert!(compare(&expected, &interleaved).is_ok());
    let lost = compare(&expected, &expected[..2]).unwrap_err();
    assert!(lost.contains("1 missing, 0 repeated"), "{lost}");
    let twice = [&expected[..], &expected[1..2]].concat();
    let repeated = compare(&expected, &twice).unwrap_err();
    assert!(repeated.contains("0 missing, 1 repeated"), "{repeated}");
    let swapped = [
        change(1, "u", "2"),
        change(1, "c", "1"),
        change(2, "c", "1"),
    ];
    let reordered = compare(&expected, &swapped).unwrap_err();
    assert!(
        reordered.contains("(same multiset: reordered)"),
        "{reordered}"
    );
}

#[test]
fn the_at_least_once_comparison_allows_repeats_and_names_losses() {
    let expected = [
        change(1, "c", "1"),
        change(1, "u", "2"),
        change(2, "c", "1"),
    ];
    assert_eq!(compare_at_least_once(&expected, &expected), Ok(0));
    // A replay repeats a suffix of a key's changes.
    let replayed = [&expected[..], &expected[..2]].concat();
    assert_eq!(compare_at_least_once(&expected, &replayed), Ok(2));
    let lost = compare_at_least_once(&expected, &expected[..2]).unwrap_err();
    assert!(
        lost.contains("1 keys lost") && lost.contains("orders:2"),
        "{lost}"
    );
    // Key 1's update before its insert only: the insert after it is lost in order.
    let swapped = [
        change(1, "u", "2"),
        change(1, "c", "1"),
        change(2, "c", "1"),
    ];
    assert!(compare_at_least_once(&expected, &swapped).is_err());
}
