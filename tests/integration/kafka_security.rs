//! walcast against a Kafka listener that demands SASL/SCRAM-SHA-256 over TLS, as MSK,
//! Confluent Cloud and most on-premise clusters do (see `common::secured_kafka`): the
//! connection settings go in `[kafka.producer]`, the password comes from walcast's
//! environment and never reaches its logs, and a wrong password stops the connector
//! without moving its checkpoint.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use walcast::registry::RegistryServer;

use crate::common::{secured_kafka, stack, SecuredKafka, TestDb};
use crate::pipeline::{field, int, settled_oracle, text};

/// The environment variable the connector file takes the Kafka password from.
const PASSWORD_VAR: &str = "WALCAST_TEST_KAFKA_PW";

/// (op, id, status) of one change of public.orders.
type Change = (String, i64, Option<String>);

/// A connector for `db` that writes to the SASL_SSL listener of `kafka`, its password
/// from `${WALCAST_TEST_KAFKA_PW}`.
fn connector(db: &TestDb, kafka: &SecuredKafka, name: &str, registry: &str) -> std::path::PathBuf {
    let producer = format!(
        r#"[tables."public.orders"]
[kafka.producer]
"security.protocol" = "SASL_SSL"
"sasl.mechanisms" = "SCRAM-SHA-256"
"sasl.username" = "{user}"
"sasl.password" = "${{{PASSWORD_VAR}}}"
"ssl.ca.location" = "{ca}"
"#,
        user = kafka.username,
        ca = kafka.ca_file.display(),
    );
    let file = db.connector(name, "", &producer);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(
            &format!("bootstrap_servers = \"{}\"", db.stack.kafka_bootstrap()),
            &format!("bootstrap_servers = \"{}\"", kafka.bootstrap),
        )
        .replace("http://127.0.0.1:8081", registry);
    assert!(text.contains(&kafka.bootstrap), "{text}");
    assert!(!text.contains(&kafka.password));
    std::fs::write(&file, text).unwrap();
    file
}

fn start_walcast(file: &Path, log: &Path, password: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_walcast"))
        .args(["--log-format", "json", "run", file.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env(PASSWORD_VAR, password)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start walcast")
}

fn stop(walcast: &mut Child) -> ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &walcast.id().to_string()])
        .status();
    walcast.wait().unwrap()
}

/// Reads `topic` from the start over SASL_SSL until `expected` changes arrived and
/// nothing more came for a moment (bounded); decodes them with the registry's schemas.
/// Returns the changes and the number of tombstones.
async fn consume(
    kafka: &SecuredKafka,
    topic: &str,
    registry: &str,
    expected: usize,
) -> (Vec<Change>, usize) {
    let mut config = ClientConfig::new();
    for (k, v) in kafka.client_config(&kafka.password) {
        config.set(k, v);
    }
    let consumer: BaseConsumer = config
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
                let row = field(&value, if op == "d" { "before" } else { "after" }).unwrap();
                // Deletes: only the key is compared (the old row holds only the key).
                let status = if op == "d" {
                    None
                } else {
                    text(field(row, "status"))
                };
                changes.push((op, int(field(row, "id")).unwrap(), status));
            }
            Some(Err(e)) => panic!("consume over SASL_SSL: {e}"),
            None if changes.len() >= expected && quiet_since.elapsed() > Duration::from_secs(2) => {
                break
            }
            None => {}
        }
    }
    (changes, tombstones)
}

/// A few transactions of inserts, updates (one in a multi-row statement) and deletes.
fn workload(db: &TestDb, from: i32) {
    db.psql(&format!(
        "BEGIN; INSERT INTO orders VALUES ({from}, 'new', 1.50), ({}, 'new', 2.50); COMMIT",
        from + 1
    ));
    db.psql(&format!(
        "UPDATE orders SET status = 'paid' WHERE id IN ({from}, {})",
        from + 1
    ));
    db.psql(&format!(
        "BEGIN; DELETE FROM orders WHERE id = {from}; INSERT INTO orders VALUES ({}, 'new', 3.00); COMMIT",
        from + 2
    ));
}

/// Waits (30 s at most) until walcast made its slot (`None`) or exited (its status).
fn slot_or_exit(db: &TestDb, slot: &str, walcast: &mut Child) -> Option<ExitStatus> {
    let query = format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND database = '{}'",
        db.name
    );
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if db.psql(&query) == "1" {
            return None;
        }
        if let Some(status) = walcast.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(walcast);
    panic!("walcast neither created its slot {slot} nor stopped within 30 s");
}

/// Waits until walcast exits, `within` at most; stops it (SIGTERM) if it did not.
fn exit_within(walcast: &mut Child, within: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Some(status) = walcast.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(walcast);
    None
}

fn confirmed_flush_lsn(db: &TestDb, slot: &str) -> String {
    db.psql(&format!(
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}' AND database = '{}'",
        db.name
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_into_a_listener_that_demands_sasl_scram_over_tls() {
    let started = Instant::now();
    let kafka = secured_kafka();
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
    let file = connector(&db, kafka, "sasl", &registry.url());
    // Every command validates the whole file, so setup needs the variable too.
    let setup = crate::common::walcast(
        &["setup", file.to_str().unwrap()],
        &[(PASSWORD_VAR, "not-used-by-setup")],
    );
    assert_eq!(setup.code, Some(0), "{setup:?}");

    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log, &kafka.password);
    db.wait_for_slot("walcast_sasl", false);
    workload(&db, 1);
    workload(&db, 10);

    let expected = settled_oracle(&db, &oracle_slot);
    assert_eq!(expected.len(), 12, "{expected:?}");
    let topic = format!("{}.public.orders", db.name);
    let (got, tombstones) = consume(kafka, &topic, &registry.url(), expected.len()).await;
    let stopped = stop(&mut walcast);
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        got, expected,
        "every change exactly once, in commit order\nlog:\n{logs}"
    );
    assert_eq!(tombstones, 2, "a tombstone after each delete");
    assert!(
        stopped.success(),
        "clean stop on SIGTERM: {stopped}\n{logs}"
    );
    assert!(
        !logs.contains(&kafka.password),
        "the Kafka password appears in walcast's log:\n{logs}"
    );
    // The checkpoint moved past the workload: Kafka acknowledged over SASL_SSL.
    assert_eq!(
        db.psql(&format!("SELECT confirmed_flush_lsn > '0/0' FROM pg_replication_slots WHERE slot_name = 'walcast_sasl' AND database = '{}'", db.name)),
        "t"
    );
    registry.shutdown().await.unwrap();
    eprintln!("SASL_SSL end to end took {:?}", started.elapsed());
}

/// With a wrong password the connector stops with the broker's authentication error
/// in its log and exit status 1, within a bounded time, rather than retrying (an
/// authentication failure does not cure itself); the slot's confirmed position stays
/// before the changes Kafka never took, and a run with the right password then
/// delivers every one of them exactly once.
///
/// Today walcast notices only when a change needs Kafka: it starts, creates its slot
/// and idles happily (librdkafka logs the authentication error meanwhile), then the
/// first change's topic metadata request times out after 10 s, and the exit follows
/// another 10 s later (the final checkpoint record cannot be written either). A walcast
/// that refuses to start instead is fine here too: then nothing was captured yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_the_connector_without_moving_the_checkpoint() {
    let kafka = secured_kafka();
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
    let file = connector(&db, kafka, "badpw", &registry.url());
    // Every command validates the whole file, so setup needs the variable too.
    let setup = crate::common::walcast(
        &["setup", file.to_str().unwrap()],
        &[(PASSWORD_VAR, "not-used-by-setup")],
    );
    assert_eq!(setup.code, Some(0), "{setup:?}");

    let wrong = format!("{}-but-wrong", kafka.password);
    let log = db.dir.path().join("walcast-wrong.log");
    let started = Instant::now();
    let mut walcast = start_walcast(&file, &log, &wrong);
    // The slot, or an exit before it.
    let mut status = slot_or_exit(&db, "walcast_badpw", &mut walcast);
    let captured_from = status
        .is_none()
        .then(|| db.psql("SELECT pg_current_wal_lsn()"));
    if captured_from.is_some() {
        workload(&db, 1);
    }

    let waited = Instant::now();
    if status.is_none() {
        status = exit_within(&mut walcast, Duration::from_secs(60));
    }
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!("walcast was still running 60 s after a change it could not deliver\nlog:\n{logs}")
    });
    eprintln!(
        "walcast with a wrong Kafka password: {status} after {:?} ({:?} after the workload)",
        started.elapsed(),
        waited.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(
        logs.contains("Authentication failed") && logs.contains("SCRAM-SHA-256"),
        "the broker's authentication error is in the log:\n{logs}"
    );
    assert!(
        !logs.contains(&wrong),
        "the password is in the log:\n{logs}"
    );
    assert!(!logs.contains(&kafka.password));
    // Nothing was acknowledged, so the slot still holds every change of the workload.
    if let Some(before) = &captured_from {
        let confirmed = confirmed_flush_lsn(&db, "walcast_badpw");
        assert_eq!(
            db.psql(&format!("SELECT '{confirmed}'::pg_lsn <= '{before}'::pg_lsn")),
            "t",
            "confirmed_flush_lsn {confirmed} moved past {before}, before the workload Kafka never took\nlog:\n{logs}"
        );
    }

    // The right password: the same slot delivers what the failed run could not.
    let log = db.dir.path().join("walcast-right.log");
    let mut walcast = start_walcast(&file, &log, &kafka.password);
    if captured_from.is_none() {
        db.wait_for_slot("walcast_badpw", false);
        workload(&db, 1);
    }
    let expected = settled_oracle(&db, &oracle_slot);
    assert_eq!(expected.len(), 6, "{expected:?}");
    let topic = format!("{}.public.orders", db.name);
    let (got, tombstones) = consume(kafka, &topic, &registry.url(), expected.len()).await;
    let stopped = stop(&mut walcast);
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        got, expected,
        "nothing lost, nothing repeated\nlog:\n{logs}"
    );
    assert_eq!(tombstones, 1);
    assert!(stopped.success(), "{stopped}\n{logs}");
    assert!(
        !logs.contains(&kafka.password),
        "the password is in the log"
    );
    registry.shutdown().await.unwrap();
}
