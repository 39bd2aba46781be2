//! walcast's topics read by a consumer nobody here wrote: Kafka Connect (standalone,
//! Apache Kafka's own `connect-runtime`) running Debezium's JDBC sink connector
//! (`io.debezium:debezium-connector-jdbc`), both from Maven Central via
//! `deploy/local/fetch-connect`, writing `json_with_schema` topics into a second
//! PostgreSQL. The sink knows Debezium's envelope only from Debezium; if walcast's
//! events differ in a way it relies on (op codes, before/after, keys, the logical type
//! names of decimals, timestamps, uuids, json, bytes), the target tables differ.
//!
//! After an initial snapshot and a workload of inserts, updates, key changes, deletes
//! and a truncate, every target table must equal its source table, row for row.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{replica_level_postgres, stack, start_streaming, stop_with_sigterm, TestDb};

/// The tables and what each row is compared by: the text of every column, except that
/// an interval is compared by its length in seconds (Debezium's `MicroDuration` carries
/// microseconds, so the sink writes `1 day 2 hours` back as `26:00:00`; months, whose
/// length Debezium fixes at 30.4375 days, are left out of the workload).
const TABLES: [(&str, &str); 3] = [
    ("customers", "SELECT c::text FROM customers c ORDER BY id"),
    ("orders", "SELECT o::text FROM orders o ORDER BY id"),
    (
        "kinds",
        "SELECT row(id, s, f, r, j, b, t, ts, extract(epoch FROM iv), arr, ch)::text
         FROM kinds ORDER BY id",
    ),
];

const SOURCE_SCHEMA: &str = "
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text,
    balance numeric(12,2), active boolean, created timestamptz, ref uuid);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id bigint, total numeric(10,2) NOT NULL,
    placed date, note varchar(40));
CREATE TABLE kinds (id int PRIMARY KEY, s smallint, f float8, r real, j jsonb, b bytea,
    t time, ts timestamp, iv interval, arr int[], ch char(3));
INSERT INTO customers SELECT g, 'c' || g, 'c' || g || '@example.com', g * 1.5, g % 2 = 0,
    '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 hour', gen_random_uuid()
    FROM generate_series(1, 60) g;
INSERT INTO orders (customer_id, total, placed, note)
    SELECT g % 60 + 1, g * 2.25, '2026-02-01'::date + g, NULL FROM generate_series(1, 120) g;
INSERT INTO kinds VALUES
    (1, 5, 1.5, 2.25, '{\"a\": [1, 2]}', '\\x0102ff', '12:34:56.789', '2026-01-02 03:04:05.678901',
     '1 day 2 hours', '{1,2,3}', 'ab'),
    (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
";

/// Every kind of change, in several transactions, after the snapshot.
const WORKLOAD: [&str; 8] = [
    "UPDATE customers SET balance = balance + 1, email = NULL WHERE id % 3 = 0",
    "UPDATE customers SET id = id + 1000 WHERE id BETWEEN 10 AND 14",
    "DELETE FROM customers WHERE id % 7 = 0",
    "BEGIN; INSERT INTO orders (customer_id, total, placed, note)
        SELECT 1, g, '2026-03-01', 'n' || g FROM generate_series(1, 30) g;
     UPDATE orders SET note = 'changed' WHERE id < 10;
     DELETE FROM orders WHERE id BETWEEN 20 AND 30; COMMIT",
    "UPDATE orders SET id = id + 5000 WHERE id BETWEEN 40 AND 42",
    "INSERT INTO kinds VALUES (3, 7, -0.5, 1e10, '[]', '\\x', '00:00:01', '1999-12-31 23:59:59',
        '-36 hours', '{}', 'x'); UPDATE kinds SET s = 9, j = '{\"b\": null}' WHERE id = 1;
     UPDATE kinds SET id = 20 WHERE id = 2",
    "TRUNCATE orders",
    "INSERT INTO orders (customer_id, total, placed, note) VALUES (1, 9.99, '2026-05-05', 'after');
     UPDATE customers SET name = 'last' WHERE id = 1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debeziums_jdbc_sink_keeps_a_second_postgres_equal_to_the_source() {
    let source = TestDb::new(stack());
    let target = TestDb::new(replica_level_postgres());
    source.psql(SOURCE_SCHEMA);
    let tables: String = TABLES
        .iter()
        .map(|(t, _)| format!("[tables.\"public.{t}\"]\n"))
        .collect();
    let file = source.connector_with_sections(
        "jdbc",
        &tables,
        "http://127.0.0.1:9",
        "[events]\nformat = \"json_with_schema\"\nskipped_operations = \"none\"",
    );
    let mut walcast = start_streaming(&source, &file, "jdbc");
    let _connect = KafkaConnect::start(&source, &target);

    for sql in WORKLOAD {
        source.psql(sql);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut differences = differing_tables(&source, &target);
    while !differences.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        differences = differing_tables(&source, &target);
    }
    assert!(
        differences.is_empty(),
        "after 120 s the JDBC sink's tables still differ from the source:\n{}\n\
         Kafka Connect's log (last lines):\n{}",
        differences.join("\n"),
        tail(&target.dir.path().join("connect.log"), 40)
    );
    assert!(stop_with_sigterm(&mut walcast).success());
}

/// The tables whose rows differ between source and target, each with both sides.
fn differing_tables(source: &TestDb, target: &TestDb) -> Vec<String> {
    let rows = |db: &TestDb, table: &str, query: &str| {
        let exists = db.psql(&format!("SELECT to_regclass('public.{table}') IS NOT NULL"));
        if exists.trim() == "t" {
            db.psql(&format!("SET timezone = 'UTC'; {query}"))
        } else {
            format!("(no table {table})")
        }
    };
    TABLES
        .iter()
        .filter_map(|(table, query)| {
            let want = rows(source, table, query);
            let got = rows(target, table, query);
            (want != got).then(|| format!("{table}: source\n{want}\n{table}: target\n{got}"))
        })
        .collect()
}

/// Kafka Connect standalone with Debezium's JDBC sink, subscribed to the source's
/// topics and writing into `target`; killed when dropped.
struct KafkaConnect(Child);

impl KafkaConnect {
    fn start(source: &TestDb, target: &TestDb) -> Self {
        let jars = fetch_connect_jars();
        let dir = target.dir.path();
        let rest_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let worker = format!(
            "bootstrap.servers={kafka}
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=true
value.converter.schemas.enable=true
offset.storage.file.filename={offsets}
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:{rest_port}
consumer.metadata.max.age.ms=1000
",
            kafka = source.stack.kafka_bootstrap(),
            offsets = dir.join("connect.offsets").display(),
        );
        // Debezium's documented settings for replicating into PostgreSQL: upserts by the
        // record key, deletes (and truncates) applied, tables created from the schemas.
        let sink = format!(
            "name=jdbc-sink-{db}
connector.class=io.debezium.connector.jdbc.JdbcSinkConnector
tasks.max=1
topics.regex={db}\\\\.public\\\\..*
connection.url=jdbc:postgresql://127.0.0.1:{port}/{target}
connection.username=postgres
connection.password=unused
insert.mode=upsert
delete.enabled=true
truncate.enabled=true
primary.key.mode=record_key
schema.evolution=basic
collection.name.format=${{source.table}}
use.time.zone=UTC
consumer.override.auto.offset.reset=earliest
",
            db = source.name,
            port = target.stack.pg_port(),
            target = target.name,
        );
        let log4j = "rootLogger.level=INFO
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
";
        for (name, text) in [
            ("worker.properties", worker.as_str()),
            ("sink.properties", sink.as_str()),
            ("log4j2.properties", log4j),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let log = std::fs::File::create(dir.join("connect.log")).unwrap();
        let child = Command::new("java")
            .arg("-Xmx384m")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                dir.join("log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(format!("{}/*", jars.display()))
            .arg("org.apache.kafka.connect.cli.ConnectStandalone")
            .arg(dir.join("worker.properties"))
            .arg(dir.join("sink.properties"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start Kafka Connect (java 17+)");
        KafkaConnect(child)
    }
}

impl Drop for KafkaConnect {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The directory of Kafka Connect's and the JDBC sink's jars (fetched once).
fn fetch_connect_jars() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/fetch-connect");
    let out = Command::new(script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run deploy/local/fetch-connect");
    assert!(out.status.success(), "deploy/local/fetch-connect failed");
    let dir = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(dir.lines().last().unwrap_or_default().trim())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
