//! walcast end to end: PostgreSQL → `walcast run` → Kafka, with the dev registry,
//! checked against an oracle walcast did not compute (a `test_decoding` slot created
//! before the workload): every committed change exactly once, in order per key, across
//! a kill -9 in the middle of the stream.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apache_avro::types::Value as Avro;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use walcast::registry::RegistryServer;

use crate::common::{stack, TestDb};

fn start_walcast(file: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_walcast"))
        .args(["--log-format", "json", "run", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start walcast")
}

/// (op, id, status) of each change of public.orders, per the oracle slot.
fn oracle(db: &TestDb, slot: &str) -> Vec<(String, i64, Option<String>)> {
    // The test cluster runs with synchronous_commit = off: a synchronous commit flushes
    // the WAL of every earlier one, so decoding (which stops at the flush point) sees all.
    db.psql("BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT");
    let out = db.psql(&format!("SELECT data FROM pg_logical_slot_peek_changes('{slot}', NULL, NULL) WHERE data LIKE 'table public.orders:%'"));
    out.lines()
        .map(|line| {
            let op = if line.contains(": INSERT:") {
                "c"
            } else if line.contains(": UPDATE:") {
                "u"
            } else {
                "d"
            };
            let id = line
                .split("id[integer]:")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap();
            // A delete's old row holds only the key (REPLICA IDENTITY DEFAULT).
            let status = if op == "d" {
                None
            } else {
                line.split("status[text]:'")
                    .nth(1)
                    .and_then(|r| r.split('\'').next())
                    .map(str::to_owned)
            };
            (op.to_owned(), id, status)
        })
        .collect()
}

fn field<'a>(record: &'a Avro, name: &str) -> Option<&'a Avro> {
    match record {
        Avro::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
        Avro::Union(_, inner) => field(inner, name),
        _ => None,
    }
}

fn text(v: Option<&Avro>) -> Option<String> {
    match v? {
        Avro::String(s) => Some(s.clone()),
        Avro::Union(_, inner) => text(Some(inner)),
        _ => None,
    }
}

fn int(v: Option<&Avro>) -> Option<i64> {
    match v? {
        Avro::Int(i) => Some(i64::from(*i)),
        Avro::Long(i) => Some(*i),
        Avro::Union(_, inner) => int(Some(inner)),
        _ => None,
    }
}

/// Reads the topic from the start until `expected` change records (not tombstones)
/// arrived and nothing more came for a moment; decodes them with the registry's schemas.
async fn consume(
    bootstrap: &str,
    topic: &str,
    registry: &str,
    expected: usize,
) -> (Vec<(String, i64, Option<String>)>, usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("check-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let http = reqwest::Client::new();
    let mut schemas: BTreeMap<u32, apache_avro::Schema> = BTreeMap::new();
    let mut changes = Vec::new();
    let mut tombstones = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet_since = Instant::now();
                let Some(payload) = m.payload() else {
                    tombstones += 1;
                    continue;
                };
                assert_eq!(payload[0], 0, "Confluent magic byte");
                let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
                if let std::collections::btree_map::Entry::Vacant(slot) = schemas.entry(id) {
                    let body: serde_json::Value = serde_json::from_str(
                        &http
                            .get(format!("{registry}/schemas/ids/{id}"))
                            .send()
                            .await
                            .unwrap()
                            .text()
                            .await
                            .unwrap(),
                    )
                    .unwrap();
                    slot.insert(
                        apache_avro::Schema::parse_str(body["schema"].as_str().unwrap()).unwrap(),
                    );
                }
                let value = apache_avro::from_avro_datum(&schemas[&id], &mut &payload[5..], None)
                    .expect("decodes with the registered schema");
                let op = text(field(&value, "op")).unwrap();
                let row = if op == "d" {
                    field(&value, "before")
                } else {
                    field(&value, "after")
                }
                .unwrap();
                // Deletes: Debezium fills the key-only old row's NOT NULL columns with
                // their defaults, so only the key is compared.
                let status = if op == "d" {
                    None
                } else {
                    text(field(row, "status"))
                };
                changes.push((op, int(field(row, "id")).unwrap(), status));
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None if changes.len() >= expected && quiet_since.elapsed() > Duration::from_secs(3) => {
                break
            }
            None => {}
        }
    }
    (changes, tombstones)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_kafka_exactly_once_across_a_kill_9() {
    let stack = stack();
    let registry_dir = tempfile::tempdir().unwrap();
    let registry = RegistryServer::start("127.0.0.1:0".parse().unwrap(), registry_dir.path())
        .await
        .unwrap();
    let db = TestDb::new(stack);
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, total numeric(10,2))");
    let oracle_slot = format!("oracle_{}", db.name);
    db.psql(&format!(
        "SELECT pg_create_logical_replication_slot('{oracle_slot}', 'test_decoding')"
    ));
    let file = db.connector("e2e", "", "[tables.\"public.orders\"]");
    let text_file = std::fs::read_to_string(&file)
        .unwrap()
        .replace("http://127.0.0.1:8081", &registry.url());
    std::fs::write(&file, text_file).unwrap();
    let setup = crate::common::walcast(&["setup", file.to_str().unwrap()], &[]);
    assert_eq!(setup.code, Some(0), "{setup:?}");

    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log);
    // Capture starts when walcast has created its slot (no initial snapshot here).
    let started = Instant::now();
    let slot_exists = format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walcast_e2e' AND database = '{}'", db.name);
    while db.psql(&slot_exists) != "1" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "walcast never created its slot"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A workload in transactions of a few changes each, concurrently with walcast.
    let workload = |from: i32, to: i32| {
        let mut sql = String::new();
        for i in from..to {
            sql.push_str(&format!(
                "BEGIN; INSERT INTO orders VALUES ({i}, 'new', {i}.50); UPDATE orders SET status = 'paid' WHERE id = {i}; {} COMMIT;\n",
                if i % 3 == 0 { format!("DELETE FROM orders WHERE id = {i};") } else { String::new() }
            ));
        }
        sql
    };
    let stack_env = stack.env.clone();
    let dbname = db.name.clone();
    let run_sql = move |sql: String| {
        let bin = std::path::Path::new(&stack_env["WALCAST_PG_BIN"]).join("psql");
        let status = Command::new(bin)
            .args([
                "-X",
                "-q",
                "-h",
                &stack_env["WALCAST_PG_HOST"],
                "-p",
                &stack_env["WALCAST_PG_PORT"],
                "-U",
                "postgres",
                "-d",
                &dbname,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(sql.as_bytes())?;
                child.wait()
            })
            .unwrap();
        assert!(status.success());
    };
    run_sql(workload(1, 300));
    // Kill -9 while the second half is being written and streamed.
    let writer = {
        let run_sql = run_sql.clone();
        let sql = workload(300, 600);
        std::thread::spawn(move || run_sql(sql))
    };
    std::thread::sleep(Duration::from_millis(700));
    let _ = Command::new("kill")
        .args(["-9", &walcast.id().to_string()])
        .status();
    let _ = walcast.wait();
    writer.join().unwrap();
    let mut walcast = start_walcast(&file, &log);
    run_sql(workload(600, 700));

    // The oracle is read until it stops growing (decoding trails the commits a little).
    let mut expected = oracle(&db, &oracle_slot);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let again = oracle(&db, &oracle_slot);
        if again.len() == expected.len() {
            break;
        }
        expected = again;
    }
    let topic = format!("{}.public.orders", db.name);
    let (got, tombstones) = consume(
        stack.kafka_bootstrap(),
        &topic,
        &registry.url(),
        expected.len(),
    )
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &walcast.id().to_string()])
        .status();
    let stopped = walcast.wait().unwrap();

    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    if got != expected {
        let first = got
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        eprintln!(
            "first difference at {first}: got {:?} expected {:?}",
            got.get(first..first + 5),
            expected.get(first..first + 5)
        );
        eprintln!(
            "oracle total {}, ids {:?}..{:?}; table: {}",
            expected.len(),
            expected.first(),
            expected.last(),
            db.psql("SELECT count(*) || ' rows, max id ' || max(id) FROM orders")
        );
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "same number of changes as the oracle\nlog:\n{logs}"
    );
    assert_eq!(got, expected, "every change exactly once, in commit order");
    assert_eq!(
        tombstones,
        expected.iter().filter(|(op, ..)| op == "d").count(),
        "a tombstone after each delete"
    );
    assert!(stopped.success(), "clean stop on SIGTERM\n{logs}");
    // The slot's confirmed position moved (WAL is released) and no slot is left active.
    let confirmed = db.psql(&format!("SELECT confirmed_flush_lsn > '0/0' FROM pg_replication_slots WHERE slot_name = 'walcast_e2e' AND database = '{}'", db.name));
    assert_eq!(confirmed, "t");
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluents_python_client_decodes_walcast_records() {
    let stack = stack();
    let registry_dir = tempfile::tempdir().unwrap();
    let registry = RegistryServer::start("127.0.0.1:0".parse().unwrap(), registry_dir.path())
        .await
        .unwrap();
    let db = TestDb::new(stack);
    db.psql("CREATE TYPE mood AS ENUM ('sad', 'happy')");
    db.psql(
        "CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), placed timestamptz,
         attrs jsonb, feeling mood, tags text[])",
    );
    let file = db.connector("py", "", "[tables.\"public.items\"]");
    let text_file = std::fs::read_to_string(&file)
        .unwrap()
        .replace("http://127.0.0.1:8081", &registry.url());
    std::fs::write(&file, text_file).unwrap();
    assert_eq!(
        crate::common::walcast(&["setup", file.to_str().unwrap()], &[]).code,
        Some(0)
    );
    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log);
    let started = Instant::now();
    let slot = format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walcast_py' AND database = '{}'", db.name);
    while db.psql(&slot) != "1" {
        assert!(started.elapsed() < Duration::from_secs(30), "no slot");
        std::thread::sleep(Duration::from_millis(50));
    }
    db.psql("INSERT INTO items VALUES (1, 'lamp', 12.50, '2026-01-16 10:00:00+02', '{\"w\": 3}', 'happy', '{a,b}')");
    db.psql("UPDATE items SET price = 13.00 WHERE id = 1");
    db.psql("DELETE FROM items WHERE id = 1");

    let topic = format!("{}.public.items", db.name);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_topic.py");
    let out = Command::new("python3")
        .arg(script)
        .args([stack.kafka_bootstrap(), &registry.url(), &topic, "4"])
        .output()
        .expect("python3");
    let _ = Command::new("kill")
        .args(["-TERM", &walcast.id().to_string()])
        .status();
    let _ = walcast.wait();
    assert!(
        out.status.success(),
        "python failed: {}\nwalcast log: {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = records.as_array().unwrap();
    assert_eq!(
        records.len(),
        4,
        "create, update, delete, tombstone: {records:#?}"
    );
    let ops: Vec<&str> = records
        .iter()
        .map(|r| r["value"]["op"].as_str().unwrap_or("tombstone"))
        .collect();
    assert_eq!(ops, ["c", "u", "d", "tombstone"]);
    for r in records {
        assert_eq!(r["key"]["id"], 1, "{r}");
        assert!(
            r["headers"]["walcast.position"]
                .as_str()
                .is_some_and(|p| p.contains('#')),
            "{r}"
        );
    }
    let created = &records[0]["value"];
    let after = &created["after"];
    assert_eq!(after["name"], "lamp");
    assert_eq!(after["price"], "12.50", "Connect Decimal → Python Decimal");
    assert_eq!(
        after["placed"], "2026-01-16T08:00:00.000000Z",
        "ZonedTimestamp in UTC"
    );
    assert_eq!(after["attrs"], "{\"w\": 3}");
    assert_eq!(after["feeling"], "happy");
    assert_eq!(after["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(created["source"]["connector"], "postgresql");
    assert_eq!(created["source"]["table"], "items");
    assert_eq!(created["source"]["db"], db.name.as_str());
    assert_eq!(records[1]["value"]["after"]["price"], "13.00");
    assert_eq!(records[2]["value"]["before"]["id"], 1);
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_stream_loses_and_repeats_nothing() {
    let kafka = stack();
    let pg = crate::common::restartable_postgres();
    let registry_dir = tempfile::tempdir().unwrap();
    let registry = RegistryServer::start("127.0.0.1:0".parse().unwrap(), registry_dir.path())
        .await
        .unwrap();
    let db = TestDb::new(pg);
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, total numeric(10,2))");
    let oracle_slot = format!("oracle_{}", db.name);
    db.psql(&format!(
        "SELECT pg_create_logical_replication_slot('{oracle_slot}', 'test_decoding')"
    ));
    let file = db.connector("restart", "", "[tables.\"public.orders\"]");
    let text_file = std::fs::read_to_string(&file)
        .unwrap()
        .replace("http://127.0.0.1:8081", &registry.url())
        .replace(
            "bootstrap_servers = \"127.0.0.1:9\"",
            &format!("bootstrap_servers = \"{}\"", kafka.kafka_bootstrap()),
        );
    std::fs::write(&file, text_file).unwrap();
    assert_eq!(
        crate::common::walcast(&["setup", file.to_str().unwrap()], &[]).code,
        Some(0)
    );
    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log);
    let slot = format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walcast_restart' AND database = '{}' AND active", db.name);
    let started = Instant::now();
    while db.psql(&slot) != "1" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "walcast never streamed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 1..=100 {
        db.psql(&format!("INSERT INTO orders VALUES ({i}, 'new', {i}); UPDATE orders SET status = 'paid' WHERE id = {i}"));
    }
    pg.restart_postgres();
    for i in 101..=200 {
        db.psql(&format!(
            "INSERT INTO orders VALUES ({i}, 'new', {i}); DELETE FROM orders WHERE id = {}",
            i - 100
        ));
    }
    let mut expected = oracle(&db, &oracle_slot);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let again = oracle(&db, &oracle_slot);
        if again.len() == expected.len() {
            break;
        }
        expected = again;
    }
    let topic = format!("{}.public.orders", db.name);
    let (got, _) = consume(
        kafka.kafka_bootstrap(),
        &topic,
        &registry.url(),
        expected.len(),
    )
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &walcast.id().to_string()])
        .status();
    let stopped = walcast.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(expected.len(), 400);
    assert_eq!(got, expected, "exactly once across the restart\n{logs}");
    assert!(
        logs.contains("reconnecting from the slot's confirmed position"),
        "the restart was noticed\n{logs}"
    );
    assert!(stopped.success(), "{logs}");
    // The final checkpoint is recorded in the compacted offsets topic.
    let checkpoint = last_checkpoint(kafka.kafka_bootstrap(), "restart")
        .expect("a checkpoint record for the connector");
    assert_eq!(checkpoint["slot"], "walcast_restart");
    let confirmed = db.psql(
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'walcast_restart'",
    );
    assert_eq!(
        checkpoint["flush_lsn"].as_str(),
        Some(confirmed.as_str()),
        "the record matches the slot's confirmed position"
    );
    registry.shutdown().await.unwrap();
}

/// The newest record of `connector` in walcast's offsets topic.
fn last_checkpoint(bootstrap: &str, connector: &str) -> Option<serde_json::Value> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("offsets-check-{connector}-{}", std::process::id()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer
        .subscribe(&[walcast::sink::kafka::OFFSETS_TOPIC])
        .unwrap();
    let mut found = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline && quiet_since.elapsed() < Duration::from_secs(3) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            quiet_since = Instant::now();
            if m.key() == Some(connector.as_bytes()) {
                found = m.payload().and_then(|p| serde_json::from_slice(p).ok());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_mid_stream_loses_and_repeats_nothing() {
    let pg = stack();
    let kafka = crate::common::restartable_kafka();
    let registry_dir = tempfile::tempdir().unwrap();
    let registry = RegistryServer::start("127.0.0.1:0".parse().unwrap(), registry_dir.path())
        .await
        .unwrap();
    let db = TestDb::new(pg);
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, total numeric(10,2))");
    let oracle_slot = format!("oracle_{}", db.name);
    db.psql(&format!(
        "SELECT pg_create_logical_replication_slot('{oracle_slot}', 'test_decoding')"
    ));
    let file = db.connector("outage", "", "[tables.\"public.orders\"]");
    let text_file = std::fs::read_to_string(&file)
        .unwrap()
        .replace("http://127.0.0.1:8081", &registry.url())
        .replace(
            &format!("bootstrap_servers = \"{}\"", pg.kafka_bootstrap()),
            &format!("bootstrap_servers = \"{}\"", kafka.kafka_bootstrap()),
        );
    std::fs::write(&file, text_file).unwrap();
    assert_eq!(
        crate::common::walcast(&["setup", file.to_str().unwrap()], &[]).code,
        Some(0)
    );
    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log);
    let slot = format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walcast_outage' AND database = '{}' AND active", db.name);
    let started = Instant::now();
    while db.psql(&slot) != "1" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "walcast never streamed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 1..=50 {
        db.psql(&format!("INSERT INTO orders VALUES ({i}, 'new', {i})"));
    }
    kafka.stop_services();
    for i in 51..=100 {
        db.psql(&format!("INSERT INTO orders VALUES ({i}, 'new', {i}); UPDATE orders SET status = 'paid' WHERE id = {}", i - 50));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        walcast.try_wait().unwrap().is_none(),
        "walcast waits for the broker instead of exiting"
    );
    kafka.start_services("kafka");
    let mut expected = oracle(&db, &oracle_slot);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let again = oracle(&db, &oracle_slot);
        if again.len() == expected.len() {
            break;
        }
        expected = again;
    }
    let topic = format!("{}.public.orders", db.name);
    let (got, _) = consume(
        kafka.kafka_bootstrap(),
        &topic,
        &registry.url(),
        expected.len(),
    )
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &walcast.id().to_string()])
        .status();
    let stopped = walcast.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(expected.len(), 150);
    assert_eq!(
        got, expected,
        "exactly once across the broker outage\n{logs}"
    );
    assert!(stopped.success(), "{logs}");
    registry.shutdown().await.unwrap();
}
