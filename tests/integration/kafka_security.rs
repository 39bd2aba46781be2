//! walcast against Kafka listeners that demand authentication, as MSK, Confluent Cloud
//! and most on-premise clusters do (see `common::secured_kafka`): SASL over TLS with
//! SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN, and TLS with a client certificate. The
//! connection settings go in `[kafka.producer]`, the secret (SASL password, client key
//! password) comes from walcast's environment and never reaches its output, and a wrong
//! credential stops the connector with one error line, before it creates its slot or
//! without moving its checkpoint.

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use crate::common::{
    consume_changes, settled_oracle, start_walcast_with_env, Change, WalcastProcess,
};
use crate::common::{secured_kafka, stack, start_registry, stop_with_sigterm, KafkaAuth, TestDb};

/// The environment variable the connector file takes the SASL password from.
const PASSWORD_VAR: &str = "WALCAST_TEST_KAFKA_PW";

/// The environment variable the connector file takes the client key's password from.
const KEY_PASSWORD_VAR: &str = "WALCAST_TEST_KAFKA_KEY_PW";

/// The environment variable that holds `auth`'s secret.
fn secret_var(auth: &KafkaAuth) -> &'static str {
    if auth.secret_key == "ssl.key.password" {
        KEY_PASSWORD_VAR
    } else {
        PASSWORD_VAR
    }
}

/// A connector for `db` that writes to the listener of `auth`, its secret from
/// `${WALCAST_TEST_KAFKA_PW}` (SASL) or `${WALCAST_TEST_KAFKA_KEY_PW}` (client key).
fn connector(db: &TestDb, auth: &KafkaAuth, name: &str, registry: &str) -> std::path::PathBuf {
    let mut producer = String::from("[tables.\"public.orders\"]\n[kafka.producer]\n");
    for (k, v) in &auth.settings {
        producer.push_str(&format!("\"{k}\" = \"{v}\"\n"));
    }
    producer.push_str(&format!(
        "\"{}\" = \"${{{}}}\"\n",
        auth.secret_key,
        secret_var(auth)
    ));
    let file = db.connector(name, "", &producer);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(
            &format!("bootstrap_servers = \"{}\"", db.stack.kafka_bootstrap()),
            &format!("bootstrap_servers = \"{}\"", auth.bootstrap),
        )
        .replace("http://127.0.0.1:8081", registry);
    assert!(text.contains(&auth.bootstrap), "{text}");
    assert!(!text.contains(&auth.secret));
    std::fs::write(&file, text).unwrap();
    file
}

/// Starts `walcast run` with `secret` in `auth`'s variable.
fn start_walcast(file: &Path, log: &Path, auth: &KafkaAuth, secret: &str) -> WalcastProcess {
    start_walcast_with_env(file, log, &[(secret_var(auth), secret)])
}

/// `walcast setup` for `file` (every command validates the whole file, so setup needs
/// the secret's variable too, though it does not use it).
fn setup(file: &Path, auth: &KafkaAuth) {
    let setup = crate::common::walcast(
        &["setup", file.to_str().unwrap()],
        &[(secret_var(auth), "not-used-by-setup")],
    );
    assert_eq!(setup.code, Some(0), "{setup:?}");
}

/// Reads `topic` from the start through the listener of `auth` until `expected`
/// changes arrived: the changes and the number of tombstones.
async fn consume(
    auth: &KafkaAuth,
    topic: &str,
    registry: &str,
    expected: usize,
) -> (Vec<Change>, usize) {
    let config = auth.client_config(&auth.secret);
    let client: Vec<(&str, &str)> = config.iter().map(|(k, v)| (*k, v.as_str())).collect();
    consume_changes(&client, topic, registry, expected).await
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

/// Waits (30 s at most) until walcast made its slot, consistent (`None`; see
/// `TestDb::slot_is_ready`), or exited (its status).
fn slot_or_exit(db: &TestDb, slot: &str, walcast: &mut Child) -> Option<ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if db.slot_is_ready(slot, false) {
            return None;
        }
        if let Some(status) = walcast.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_with_sigterm(walcast);
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
    stop_with_sigterm(walcast);
    None
}

fn confirmed_flush_lsn(db: &TestDb, slot: &str) -> String {
    db.psql(&format!(
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}' AND database = '{}'",
        db.name
    ))
}

/// walcast streams a few committed transactions through the listener of `auth` (slot
/// `walcast_<name>`): every change reaches the topic once, in commit order, and decodes
/// with the registry's schemas; the checkpoint moves past them, walcast stops cleanly,
/// and the secret is nowhere in its output.
async fn streams_end_to_end(auth: &KafkaAuth, name: &str) {
    let started = Instant::now();
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, total numeric(10,2))");
    let oracle_slot = format!("oracle_{}", db.name);
    db.psql(&format!(
        "SELECT pg_create_logical_replication_slot('{oracle_slot}', 'test_decoding')"
    ));
    let file = connector(&db, auth, name, &registry.url());
    setup(&file, auth);

    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log, auth, &auth.secret);
    let slot = format!("walcast_{name}");
    db.wait_for_slot(&slot, false);
    let before = db.psql("SELECT pg_current_wal_lsn()");
    workload(&db, 1);
    workload(&db, 10);

    let expected = settled_oracle(&db, &oracle_slot);
    assert_eq!(expected.len(), 12, "{expected:?}");
    let topic = format!("{}.public.orders", db.name);
    let (got, tombstones) = consume(auth, &topic, &registry.url(), expected.len()).await;
    let stopped = stop_with_sigterm(&mut walcast);
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        got, expected,
        "every change exactly once, in commit order ({})\nlog:\n{logs}",
        auth.mechanism
    );
    assert_eq!(tombstones, 2, "a tombstone after each delete");
    assert!(
        stopped.success(),
        "clean stop on SIGTERM: {stopped}\n{logs}"
    );
    assert!(
        !logs.contains(&auth.secret),
        "the {} secret appears in walcast's output:\n{logs}",
        auth.mechanism
    );
    // The checkpoint moved past the workload: Kafka acknowledged it.
    let confirmed = confirmed_flush_lsn(&db, &slot);
    assert_eq!(
        db.psql(&format!(
            "SELECT '{confirmed}'::pg_lsn > '{before}'::pg_lsn"
        )),
        "t",
        "confirmed_flush_lsn {confirmed} did not move past {before}\nlog:\n{logs}"
    );
    registry.shutdown().await.unwrap();
    eprintln!(
        "{} at {} end to end took {:?}",
        auth.mechanism,
        auth.bootstrap,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_into_a_listener_that_demands_sasl_scram_over_tls() {
    streams_end_to_end(&secured_kafka().scram_sha_256(), "sasl").await;
}

/// The same listener with SCRAM-SHA-512 (the user's SCRAM-SHA-512 password differs
/// from its SCRAM-SHA-256 one, so only the configured mechanism gets in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_into_a_listener_that_demands_sasl_scram_sha_512_over_tls() {
    streams_end_to_end(&secured_kafka().scram_sha_512(), "scram512").await;
}

/// The same listener with PLAIN, the user from the listener's JAAS config
/// (PlainLoginModule).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_into_a_listener_that_demands_sasl_plain_over_tls() {
    streams_end_to_end(&secured_kafka().plain(), "plain").await;
}

/// A TLS listener with `ssl.client.auth=required`: walcast presents the certificate
/// the test's CA signed (`ssl.certificate.location`, `ssl.key.location`), its key
/// encrypted with a password from the environment (`ssl.key.password`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_into_a_listener_that_demands_a_client_certificate() {
    streams_end_to_end(&secured_kafka().client_certificate(), "mtls").await;
}

/// Runs walcast with `auth` but `secret` against a new database until it exits (60 s at
/// most). Checks what every refused credential must give: exit status 1 in bounded
/// time, exactly one error line of walcast's own (the runner's, naming the connector)
/// that starts with `expected`, no slot (walcast checks Kafka before it creates one),
/// and neither `secret` nor the right secret anywhere in the output. Returns the output.
fn refused(auth: &KafkaAuth, secret: &str, name: &str, expected: &str) -> String {
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, total numeric(10,2))");
    // No registry: walcast stops before it needs one.
    let file = connector(&db, auth, name, "http://127.0.0.1:9");
    setup(&file, auth);
    let log = db.dir.path().join("walcast.log");
    let started = Instant::now();
    let mut walcast = start_walcast(&file, &log, auth, secret);
    let status = exit_within(&mut walcast, Duration::from_secs(60));
    let took = started.elapsed();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!(
            "walcast with a wrong {} credential was still running after 60 s\nlog:\n{logs}",
            auth.mechanism
        )
    });
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(
        !logs.contains(secret) && !logs.contains(&auth.secret),
        "a {} secret is in walcast's output:\n{logs}",
        auth.mechanism
    );
    // librdkafka's own lines are logged too (targets `librdkafka`, `rdkafka::client`);
    // walcast's verdict is one line of its own.
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .filter(|l| l["level"] == "ERROR")
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("walcast"))
        })
        .filter_map(|l| l["message"].as_str())
        .collect();
    eprintln!(
        "walcast with a wrong {} credential: {status} after {took:?}, errors: {errors:?}",
        auth.mechanism
    );
    let prefix = format!("connector {name}: {expected}");
    assert!(
        errors.len() == 1 && errors[0].starts_with(&prefix),
        "one error line starting with `{prefix}`, got {errors:#?}\nlog:\n{logs}"
    );
    assert!(!errors[0].contains('\n'), "{}", errors[0]);
    assert_eq!(
        db.psql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE database = '{}'",
            db.name
        )),
        "0",
        "walcast created a slot before it found Kafka refusing it\nlog:\n{logs}"
    );
    logs
}

/// A wrong PLAIN password: the broker's refusal is in the log, walcast's verdict is one
/// line, exit status 1, no slot, no password in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_plain_password_stops_walcast_with_one_error_line() {
    let auth = secured_kafka().plain();
    let wrong = format!("{}-but-wrong", auth.secret);
    let expected = format!("cannot connect to Kafka at {}", auth.bootstrap);
    let logs = refused(&auth, &wrong, "plainbad", &expected);
    assert!(
        logs.contains(
            "SASL authentication error: Authentication failed: Invalid username or password"
        ),
        "the broker's authentication error is in the log:\n{logs}"
    );
}

/// A client certificate from a CA the broker does not trust: the TLS handshake fails
/// and walcast stops as for a wrong password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_the_broker_does_not_trust_stops_walcast_with_one_error_line() {
    let auth = secured_kafka().untrusted_client_certificate();
    let expected = format!("cannot connect to Kafka at {}", auth.bootstrap);
    let logs = refused(&auth, &auth.secret, "strangercert", &expected);
    assert!(
        logs.contains("bad certificate"),
        "the broker's TLS alert is in the log:\n{logs}"
    );
}

/// A wrong password for the client's key: librdkafka cannot load the key, so walcast
/// stops at once, without the password in its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_key_password_stops_walcast_with_one_error_line() {
    let auth = secured_kafka().client_certificate();
    let wrong = format!("{}-but-wrong", auth.secret);
    let logs = refused(&auth, &wrong, "keybad", "Kafka producer setup failed");
    assert!(
        logs.contains("ssl.key"),
        "the error names the key setting:\n{logs}"
    );
}

/// With a wrong password the connector stops with the broker's authentication error
/// in its log and exit status 1, within a bounded time, rather than retrying (an
/// authentication failure does not cure itself); the slot's confirmed position stays
/// before the changes Kafka never took, and a run with the right password then
/// delivers every one of them exactly once.
///
/// Today walcast checks the connection before it creates its slot, so it refuses to
/// start (after its 15 s metadata request) and nothing was captured yet; a walcast
/// that started, created its slot and failed at the first change it could not deliver
/// passes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_the_connector_without_moving_the_checkpoint() {
    let kafka = secured_kafka();
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, total numeric(10,2))");
    let oracle_slot = format!("oracle_{}", db.name);
    db.psql(&format!(
        "SELECT pg_create_logical_replication_slot('{oracle_slot}', 'test_decoding')"
    ));
    let auth = kafka.scram_sha_256();
    let file = connector(&db, &auth, "badpw", &registry.url());
    setup(&file, &auth);

    let wrong = format!("{}-but-wrong", kafka.password);
    let log = db.dir.path().join("walcast-wrong.log");
    let started = Instant::now();
    let mut walcast = start_walcast(&file, &log, &auth, &wrong);
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
    let mut walcast = start_walcast(&file, &log, &auth, &kafka.password);
    if captured_from.is_none() {
        db.wait_for_slot("walcast_badpw", false);
        workload(&db, 1);
    }
    let expected = settled_oracle(&db, &oracle_slot);
    assert_eq!(expected.len(), 6, "{expected:?}");
    let topic = format!("{}.public.orders", db.name);
    let (got, tombstones) = consume(&auth, &topic, &registry.url(), expected.len()).await;
    let stopped = stop_with_sigterm(&mut walcast);
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
