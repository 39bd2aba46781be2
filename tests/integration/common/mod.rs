//! The integration-test harness: real PostgreSQL and Apache Kafka, started once per
//! test binary by `deploy/local/up` (the same mechanism users run), a fresh database
//! per test, and nothing left running afterwards.
//!
//! Every stack is started with `--watch-pid <this process>`: a watchdog stops it as soon
//! as the test binary exits, whether the tests passed, panicked or the run was killed.
//! Set `WALCAST_TEST_STACK_DIR` to the state dir of a stack you started yourself
//! (`deploy/local/up`) to reuse it between runs; the harness then stops nothing.

#![allow(dead_code)]

pub(crate) mod http;
mod oracle;
pub mod proxy;
mod scenario;
mod topics;
mod walcast_child;

pub(crate) use oracle::settled_oracle;
pub use scenario::OrdersScenario;
pub(crate) use topics::{
    consume, consume_changes, consume_records, consume_until, create_topic, field, int,
    registry_schema, text, Change, Consumed,
};
pub(crate) use walcast_child::{
    start_streaming, start_walcast, start_walcast_with_env, WalcastProcess,
};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// A running stack, as described by its `stack.env`.
#[derive(Debug, Clone)]
pub struct Stack {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
}

impl Stack {
    pub fn get(&self, key: &str) -> &str {
        self.env.get(key).map(String::as_str).unwrap_or("")
    }

    pub fn pg_port(&self) -> u16 {
        self.get("WALCAST_PG_PORT")
            .parse()
            .expect("WALCAST_PG_PORT")
    }

    pub fn kafka_bootstrap(&self) -> &str {
        self.get("WALCAST_KAFKA_BOOTSTRAP")
    }

    /// Runs SQL as the superuser in `dbname` with psql; panics with psql's error on failure.
    pub fn psql(&self, dbname: &str, sql: &str) -> String {
        let out = self.psql_output(dbname, sql);
        assert!(
            out.status.success(),
            "psql failed: {sql}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn psql_output(&self, dbname: &str, sql: &str) -> Output {
        let bin = Path::new(self.get("WALCAST_PG_BIN")).join("psql");
        Command::new(bin)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", self.get("WALCAST_PG_HOST")])
            .args(["-p", self.get("WALCAST_PG_PORT")])
            .args(["-U", self.get("WALCAST_PG_USER"), "-d", dbname])
            .args(["-c", sql])
            .output()
            .expect("run psql")
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_env(dir: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(dir.join("stack.env"))
        .unwrap_or_else(|e| panic!("{}/stack.env: {e}", dir.display()));
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Removes the state directories of earlier test runs whose process is gone (their
/// watchdog stopped the services but keeps the directory for post-mortems).
fn remove_stale_state_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("walcast-test-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Makes sure what the suite needs besides the stack is installed
/// (`deploy/local/test-deps`: Chromium, promtool, PostGIS, Python packages), once per
/// test binary, so `cargo test` runs on a fresh machine.
pub fn test_deps() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let out = Command::new(repo_root().join("deploy/local/test-deps"))
            .output()
            .expect("run deploy/local/test-deps");
        assert!(
            out.status.success(),
            "deploy/local/test-deps failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Starts `services` in a new state directory, watched by this process.
fn start(name: &str, services: &str, extra_env: &[(&str, &str)]) -> Stack {
    test_deps();
    remove_stale_state_dirs();
    let dir = std::env::temp_dir().join(format!("walcast-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cmd = Command::new(repo_root().join("deploy/local/up"));
    cmd.args(["--services", services])
        .arg("--state-dir")
        .arg(&dir)
        .args(["--watch-pid", &std::process::id().to_string()]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run deploy/local/up");
    assert!(
        out.status.success(),
        "deploy/local/up failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Stack {
        env: read_env(&dir),
        dir,
    }
}

/// PostgreSQL (wal_level=logical) and Kafka, shared by every test of this binary.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        test_deps();
        match std::env::var("WALCAST_TEST_STACK_DIR") {
            Ok(dir) if !dir.is_empty() => {
                let dir = PathBuf::from(dir);
                Stack {
                    env: read_env(&dir),
                    dir,
                }
            }
            _ => start("main", "postgres,kafka", &[]),
        }
    })
}

/// A second PostgreSQL with wal_level=replica: the classic misconfiguration.
pub fn replica_level_postgres() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        start(
            "replica",
            "postgres",
            &[("WALCAST_PG_WAL_LEVEL", "replica")],
        )
    })
}

/// A PostgreSQL of its own (wal_level=logical) that a fault test may restart without
/// disturbing the others.
pub fn restartable_postgres() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| start("restartable", "postgres", &[]))
}

/// A PostgreSQL and a Kafka of their own for the operator's test, which stops each in
/// turn while it watches the probes, the status page and the metrics.
pub fn operate_postgres() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| start("operate-pg", "postgres", &[]))
}

pub fn operate_kafka() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| start("operate-kafka", "kafka", &[]))
}

/// A PostgreSQL of its own for the slot-health test, which stops it, restarts it and
/// lets a slot be invalidated (a cluster-wide max_slot_wal_keep_size).
pub fn slot_health_postgres() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| start("slots", "postgres", &[]))
}

impl Stack {
    /// Restarts this stack's PostgreSQL (fast shutdown: open connections are cut).
    pub fn restart_postgres(&self) {
        let pg_ctl = Path::new(self.get("WALCAST_PG_BIN")).join("pg_ctl");
        let args = [
            "-D",
            self.get("WALCAST_PG_DATA"),
            "-m",
            "fast",
            "-w",
            "restart",
            "-l",
            self.get("WALCAST_PG_LOG"),
        ];
        let status = if running_as_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&pg_ctl)
                .args(args)
                .status()
        } else {
            Command::new(&pg_ctl).args(args).status()
        }
        .expect("pg_ctl");
        assert!(status.success(), "pg_ctl restart failed");
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// A Kafka of its own that a fault test may stop and start again.
pub fn restartable_kafka() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| start("kafka-restartable", "kafka", &[]))
}

/// A Kafka of its own that clients reach through a [`proxy::Proxy`], which a fault test
/// may cut. Kafka clients connect to the bootstrap address and then to the address the
/// broker advertises, so the proxy must be what the broker advertises: besides the
/// PLAINTEXT listener (controller traffic, the broker itself and the tests' consumers,
/// straight to the broker) it has a listener `PROXIED` that binds a port of its own
/// but advertises the proxy's, and the proxy forwards to that port.
pub struct ProxiedKafka {
    pub stack: Stack,
    pub proxy: proxy::Proxy,
    /// What a client that must go through the proxy bootstraps from: the proxy.
    pub bootstrap: String,
    /// Held by a test for as long as it cuts the proxy's connections, so that two tests
    /// do not cut each other's.
    pub exclusive: tokio::sync::Mutex<()>,
}

/// The Kafka of [`ProxiedKafka`], started once per test binary.
pub fn proxied_kafka() -> &'static ProxiedKafka {
    static KAFKA: OnceLock<ProxiedKafka> = OnceLock::new();
    KAFKA.get_or_init(|| {
        // A free port for the listener (the broker binds it a few seconds later; the
        // usual small race, as for the ports `up` picks), then the proxy in front of it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let proxy = proxy::Proxy::start(port);
        let listeners = format!("PROXIED=PLAINTEXT://127.0.0.1:{port}@{}", proxy.addr);
        let stack = start(
            "kafka-proxied",
            "kafka",
            &[("WALCAST_KAFKA_EXTRA_LISTENERS", &listeners)],
        );
        let kafka = ProxiedKafka {
            stack,
            bootstrap: proxy.addr.to_string(),
            proxy,
            exclusive: tokio::sync::Mutex::new(()),
        };
        // Ready once a client gets metadata through the proxy, naming the proxy.
        let client: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &kafka.bootstrap)
            .create()
            .unwrap();
        let started = std::time::Instant::now();
        loop {
            use rdkafka::consumer::Consumer;
            match client.fetch_metadata(None, std::time::Duration::from_secs(3)) {
                Ok(metadata) if !metadata.brokers().is_empty() => {
                    let broker = &metadata.brokers()[0];
                    assert_eq!(
                        format!("{}:{}", broker.host(), broker.port()),
                        kafka.bootstrap,
                        "the proxied listener advertises the proxy"
                    );
                    break;
                }
                result => assert!(
                    started.elapsed() < std::time::Duration::from_secs(30),
                    "the proxied listener never answered through {}: {:?}; see {}",
                    kafka.bootstrap,
                    result.err(),
                    kafka.stack.get("WALCAST_KAFKA_LOG")
                ),
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        kafka
    })
}

impl Stack {
    /// Stops this stack's services (its data stays), as `deploy/local/down` does.
    pub fn stop_services(&self) {
        let out = Command::new(repo_root().join("deploy/local/down"))
            .arg("--state-dir")
            .arg(&self.dir)
            .output()
            .expect("down");
        assert!(
            out.status.success(),
            "down failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `services` of this stack again on the same ports and data.
    pub fn start_services(&self, services: &str) {
        let out = Command::new(repo_root().join("deploy/local/up"))
            .args(["--services", services])
            .arg("--state-dir")
            .arg(&self.dir)
            .args(["--watch-pid", &std::process::id().to_string()])
            .output()
            .expect("up");
        assert!(
            out.status.success(),
            "up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A database of its own for one test, dropped (with its slots) when the test ends.
pub struct TestDb {
    pub stack: &'static Stack,
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub fn new(stack: &'static Stack) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        stack.psql("postgres", &format!("CREATE DATABASE {name}"));
        Self {
            stack,
            name,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn psql(&self, sql: &str) -> String {
        self.stack.psql(&self.name, sql)
    }

    /// Writes a connector file for this database; `name` also names slot and publication.
    /// `tables` is appended verbatim (the `[tables."…"]` sections).
    pub fn connector(&self, name: &str, source_extra: &str, tables: &str) -> PathBuf {
        let text = format!(
            r#"name = "{name}"
[source]
host = "127.0.0.1"
port = {port}
dbname = "{db}"
user = "postgres"
sslmode = "disable"
connect_timeout = "3s"
spool_dir = "{spool}"
{source_extra}
[kafka]
bootstrap_servers = "{kafka}"
topic_prefix = "{db}"
[registry]
url = "http://127.0.0.1:8081"
[metrics]
enabled = false
{tables}
"#,
            port = self.stack.pg_port(),
            db = self.name,
            spool = self.dir.path().join("spool").display(),
            kafka = if self.stack.kafka_bootstrap().is_empty() {
                "127.0.0.1:9"
            } else {
                self.stack.kafka_bootstrap()
            },
        );
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write connector");
        path
    }
}

impl TestDb {
    /// As [`TestDb::connector`], with `registry_url` as its schema registry.
    pub fn connector_with_registry(
        &self,
        name: &str,
        source_extra: &str,
        tables: &str,
        registry_url: &str,
    ) -> PathBuf {
        let file = self.connector(name, source_extra, tables);
        let text = std::fs::read_to_string(&file)
            .expect("read connector")
            .replace("http://127.0.0.1:8081", registry_url);
        std::fs::write(&file, text).expect("write connector");
        file
    }

    /// [`Self::connector_with_registry`] with more sections (e.g. `[events]`,
    /// `[transforms.unwrap]`) written before `[metrics]`.
    pub fn connector_with_sections(
        &self,
        name: &str,
        tables: &str,
        registry_url: &str,
        sections: &str,
    ) -> PathBuf {
        let file = self.connector_with_registry(name, "", tables, registry_url);
        let text = std::fs::read_to_string(&file)
            .expect("read connector")
            .replace("[metrics]", &format!("{sections}\n[metrics]"));
        std::fs::write(&file, text).expect("write connector");
        file
    }

    /// [`Self::connector_with_registry`], then `walcast setup` on it (which must succeed).
    pub fn set_up_connector(
        &self,
        name: &str,
        source_extra: &str,
        tables: &str,
        registry_url: &str,
    ) -> PathBuf {
        let file = self.connector_with_registry(name, source_extra, tables, registry_url);
        let setup = walcast(&["setup", file.to_str().unwrap()], &[]);
        assert_eq!(
            setup.code,
            Some(0),
            "walcast setup {name}: {}",
            setup.stderr
        );
        file
    }

    /// Whether walcast's slot `slot` exists in this database and has reached its
    /// consistent point, and, when `active`, is in use. A slot shows in
    /// `pg_replication_slots`, active, while PostgreSQL is still creating it (waiting for
    /// running transactions); changes committed then belong to the initial snapshot, not
    /// the stream. Its `confirmed_flush_lsn` is set once it is consistent.
    pub fn slot_is_ready(&self, slot: &str, active: bool) -> bool {
        self.psql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND database = '{}' AND confirmed_flush_lsn IS NOT NULL{}",
            self.name,
            if active { " AND active" } else { "" }
        )) == "1"
    }

    /// Waits (at most 30 s) until [`Self::slot_is_ready`].
    pub fn wait_for_slot(&self, slot: &str, active: bool) {
        let started = std::time::Instant::now();
        while !self.slot_is_ready(slot, active) {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "slot {slot} never appeared (active: {active})"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = self.stack.psql_output(
            "postgres",
            &format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{0}' AND NOT active",
                self.name
            ),
        );
        let _ = self.stack.psql_output(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// The result of one walcast invocation.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// The lines that report a problem.
    pub fn problems(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("PROBLEM"))
            .collect()
    }
}

/// A dev schema registry on a free loopback port; its data lives in the returned
/// directory, deleted when the caller drops it.
pub async fn start_registry() -> (tempfile::TempDir, walcast::registry::RegistryServer) {
    let dir = tempfile::tempdir().expect("registry data dir");
    let registry =
        walcast::registry::RegistryServer::start("127.0.0.1:0".parse().unwrap(), dir.path())
            .await
            .expect("start the dev registry");
    (dir, registry)
}

/// Stops a `walcast run` child the way an operator does (SIGTERM: drain, final
/// checkpoint, exit) and waits for it.
pub fn stop_with_sigterm(child: &mut std::process::Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().expect("wait for walcast")
}

/// For a failure message: walcast's log kept beside the other temporary files (the
/// test's own folder is removed when it ends) and its last lines. A whole log in a
/// panic message drowns the message itself when CI shortens its output.
pub fn log_excerpt(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let kept = std::env::temp_dir().join(format!(
        "walcast-failed-{}-{}.log",
        std::process::id(),
        log.parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let _ = std::fs::write(&kept, &text);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    format!(
        "walcast's log kept at {}; its last lines:\n{tail}",
        kept.display()
    )
}

/// Runs an SQL script with one psql session (stops at the first error, each statement
/// bounded to a minute); returns what it printed.
pub fn run_script(stack: &Stack, dbname: &str, sql: &str) -> String {
    let bin = std::path::Path::new(stack.get("WALCAST_PG_BIN")).join("psql");
    let mut child = Command::new(bin)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", stack.get("WALCAST_PG_HOST")])
        .args(["-p", stack.get("WALCAST_PG_PORT")])
        .args(["-U", stack.get("WALCAST_PG_USER"), "-d", dbname])
        .env("PGOPTIONS", "-c statement_timeout=60s")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql");
    let mut stdin = child.stdin.take().unwrap();
    let script = sql.to_owned();
    // Written from a thread: psql's output could otherwise fill its pipe and stall both.
    let feeder =
        std::thread::spawn(move || std::io::Write::write_all(&mut stdin, script.as_bytes()));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "psql script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the walcast binary with `args` and waits for it.
pub fn walcast(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walcast"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run walcast");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A Kafka of its own whose clients must authenticate. Besides the PLAINTEXT listener
/// (controller traffic, the broker itself and the tests' admin steps) it has
///
/// - `SASL_SSL://127.0.0.1:<port>`: TLS with a broker certificate from a throwaway CA
///   made here with openssl, then SASL with SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN (one
///   listener offering several mechanisms, as many clusters do; the client picks one).
///   The user `walcast` has a different password for each mechanism, so a client that
///   sent another mechanism than configured would be refused. The SCRAM credentials
///   live in the cluster metadata (`kafka-configs --alter`); the PLAIN user is in the
///   listener's JAAS config (PlainLoginModule);
/// - `SSL://127.0.0.1:<port>`: TLS that requires a client certificate signed by the
///   same CA (`ssl.client.auth=required`).
#[derive(Debug)]
pub struct SecuredKafka {
    pub stack: Stack,
    /// The SASL_SSL listener, `127.0.0.1:<port>`.
    pub bootstrap: String,
    /// The CA that signed the broker's and the client's certificates (PEM).
    pub ca_file: PathBuf,
    pub username: &'static str,
    /// `username`'s SCRAM-SHA-256 password.
    pub password: String,
    /// `username`'s SCRAM-SHA-512 password.
    pub scram_sha_512_password: String,
    /// `username`'s PLAIN password.
    pub plain_password: String,
    /// The SSL listener that requires a client certificate, `127.0.0.1:<port>`.
    pub ssl_bootstrap: String,
    /// The client certificate (CN=walcast, signed by `ca_file`) and its key (PEM,
    /// encrypted with `client_key_password`).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub client_key_password: String,
    /// A client certificate and key (encrypted with `client_key_password`) signed by
    /// another CA, which the broker does not trust.
    pub untrusted_cert: PathBuf,
    pub untrusted_key: PathBuf,
}

/// One way to authenticate to [`SecuredKafka`]: a listener and the librdkafka settings
/// for it, with the secret (`sasl.password`, `ssl.key.password`) kept apart so that a
/// connector file can take it from the environment.
#[derive(Debug, Clone)]
pub struct KafkaAuth {
    /// The SASL mechanism, or `SSL` for a client certificate.
    pub mechanism: &'static str,
    pub bootstrap: String,
    /// Every setting but `bootstrap.servers` and the secret.
    pub settings: Vec<(&'static str, String)>,
    /// The librdkafka property that holds the secret.
    pub secret_key: &'static str,
    /// The right secret.
    pub secret: String,
}

impl KafkaAuth {
    /// librdkafka settings for a client, with `secret` as the password.
    pub fn client_config(&self, secret: &str) -> Vec<(&'static str, String)> {
        let mut config = vec![("bootstrap.servers", self.bootstrap.clone())];
        config.extend(self.settings.iter().cloned());
        config.push((self.secret_key, secret.to_owned()));
        config
    }
}

impl SecuredKafka {
    /// librdkafka settings for a SCRAM-SHA-256 client of the SASL_SSL listener, with
    /// `password`.
    pub fn client_config(&self, password: &str) -> Vec<(&'static str, String)> {
        self.scram_sha_256().client_config(password)
    }

    fn sasl(&self, mechanism: &'static str, password: &str) -> KafkaAuth {
        KafkaAuth {
            mechanism,
            bootstrap: self.bootstrap.clone(),
            settings: vec![
                ("security.protocol", "SASL_SSL".to_owned()),
                ("sasl.mechanisms", mechanism.to_owned()),
                ("sasl.username", self.username.to_owned()),
                ("ssl.ca.location", self.ca_file.display().to_string()),
            ],
            secret_key: "sasl.password",
            secret: password.to_owned(),
        }
    }

    pub fn scram_sha_256(&self) -> KafkaAuth {
        self.sasl("SCRAM-SHA-256", &self.password)
    }

    pub fn scram_sha_512(&self) -> KafkaAuth {
        self.sasl("SCRAM-SHA-512", &self.scram_sha_512_password)
    }

    pub fn plain(&self) -> KafkaAuth {
        self.sasl("PLAIN", &self.plain_password)
    }

    /// The SSL listener with the client certificate signed by the test's CA.
    pub fn client_certificate(&self) -> KafkaAuth {
        self.certificate(&self.client_cert, &self.client_key)
    }

    /// The SSL listener with a client certificate the broker does not trust.
    pub fn untrusted_client_certificate(&self) -> KafkaAuth {
        self.certificate(&self.untrusted_cert, &self.untrusted_key)
    }

    fn certificate(&self, cert: &Path, key: &Path) -> KafkaAuth {
        KafkaAuth {
            mechanism: "SSL",
            bootstrap: self.ssl_bootstrap.clone(),
            settings: vec![
                ("security.protocol", "SSL".to_owned()),
                ("ssl.certificate.location", cert.display().to_string()),
                ("ssl.key.location", key.display().to_string()),
                ("ssl.ca.location", self.ca_file.display().to_string()),
            ],
            secret_key: "ssl.key.password",
            secret: self.client_key_password.clone(),
        }
    }
}

/// Runs openssl in `dir`; panics with its error output on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client certificate `<name>.pem` for CN=walcast signed by the CA `<ca>.pem` /
/// `<ca>.key` in `dir`, and its key `<name>.key`, encrypted with `key_password`.
fn client_certificate(dir: &Path, ca: &str, name: &str, key_password: &str) {
    let run = |command: String| openssl(dir, &command.split(' ').collect::<Vec<_>>());
    run(format!(
        "req -newkey rsa:2048 -subj /CN=walcast -passout pass:{key_password} -keyout {name}.key -out {name}.csr"
    ));
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    run(format!(
        "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -days 2 -extfile client.ext -out {name}.pem"
    ));
}

/// The Kafka of [`SecuredKafka`], started once per test binary.
pub fn secured_kafka() -> &'static SecuredKafka {
    static KAFKA: OnceLock<SecuredKafka> = OnceLock::new();
    KAFKA.get_or_init(|| {
        // Outside the state dir (`up` wants that to itself); named like one, so a later
        // run removes it once this process is gone.
        let tls = std::env::temp_dir().join(format!(
            "walcast-test-{}-kafka-sasl-tls",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&tls);
        std::fs::create_dir_all(&tls).unwrap();
        openssl(
            &tls,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                "/CN=walcast test Kafka CA", "-keyout", "ca.key", "-out", "ca.pem",
            ],
        );
        openssl(
            &tls,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout",
                "broker.key", "-out", "broker.csr",
            ],
        );
        std::fs::write(
            tls.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(
            &tls,
            &[
                "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "broker.pem",
            ],
        );
        // A PEM keystore (KIP-651): the unencrypted PKCS#8 key, then the chain.
        let keystore = tls.join("broker-keystore.pem");
        let mut pem = std::fs::read_to_string(tls.join("broker.key")).unwrap();
        pem.push_str(&std::fs::read_to_string(tls.join("broker.pem")).unwrap());
        pem.push_str(&std::fs::read_to_string(tls.join("ca.pem")).unwrap());
        std::fs::write(&keystore, pem).unwrap();

        // The passwords are new each run, so a test can look for them in logs.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let secret = |what: &str| format!("{what}-{}-{nanos:09}-pw", std::process::id());
        let password = secret("Scram");
        let scram_sha_512_password = secret("Scram512");
        let plain_password = secret("Plain");
        let client_key_password = secret("Key");

        // The client's certificate from the test's CA, and one from a CA the broker
        // does not know.
        client_certificate(&tls, "ca", "client", &client_key_password);
        openssl(
            &tls,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                "/CN=walcast test stranger CA", "-keyout", "stranger-ca.key", "-out",
                "stranger-ca.pem",
            ],
        );
        client_certificate(&tls, "stranger-ca", "untrusted", &client_key_password);

        // Free ports for the listeners (the broker binds them a few seconds later; the
        // usual small race, as for the ports `up` picks), held together so they differ.
        let sockets: Vec<_> = (0..2)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        drop(sockets);
        let listeners = format!(
            "SASL_SSL://127.0.0.1:{},SSL://127.0.0.1:{}",
            ports[0], ports[1]
        );
        let props = format!(
            "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN\n\
             listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_walcast=\"{plain_password}\";\n\
             listener.name.sasl_ssl.ssl.keystore.type=PEM\n\
             listener.name.sasl_ssl.ssl.keystore.location={keystore}\n\
             listener.name.sasl_ssl.ssl.client.auth=none\n\
             listener.name.ssl.ssl.keystore.type=PEM\n\
             listener.name.ssl.ssl.keystore.location={keystore}\n\
             listener.name.ssl.ssl.truststore.type=PEM\n\
             listener.name.ssl.ssl.truststore.location={ca}\n\
             listener.name.ssl.ssl.client.auth=required",
            keystore = keystore.display(),
            ca = tls.join("ca.pem").display(),
        );
        let stack = start(
            "kafka-sasl",
            "kafka",
            &[
                ("WALCAST_KAFKA_EXTRA_LISTENERS", &listeners),
                ("WALCAST_KAFKA_EXTRA_PROPS", &props),
            ],
        );

        // The SCRAM credentials, with Kafka's own tool (= kafka-configs.sh) over the
        // PLAINTEXT listener; one mechanism per request (Kafka 4 refuses to alter one
        // user's credentials twice in a request).
        let java = std::env::var("JAVA_HOME")
            .ok()
            .map(|home| Path::new(&home).join("bin/java"))
            .filter(|java| java.is_file())
            .unwrap_or_else(|| PathBuf::from("java"));
        for credential in [
            format!("SCRAM-SHA-256=[password={password}]"),
            format!("SCRAM-SHA-512=[password={scram_sha_512_password}]"),
        ] {
            let out = Command::new(&java)
                .args(["-Xmx256m", "-XX:TieredStopAtLevel=1"])
                .arg(format!(
                    "-Dlog4j2.configurationFile={}",
                    stack.dir.join("kafka/tools-log4j2.properties").display()
                ))
                .arg("-cp")
                .arg(format!("{}/*", stack.get("WALCAST_KAFKA_JARS")))
                .args(["kafka.admin.ConfigCommand", "--bootstrap-server"])
                .arg(stack.kafka_bootstrap())
                .args(["--alter", "--add-config", &credential])
                .args(["--entity-type", "users", "--entity-name", "walcast"])
                .output()
                .expect("run kafka.admin.ConfigCommand");
            assert!(
                out.status.success(),
                "ConfigCommand failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let kafka = SecuredKafka {
            bootstrap: format!("127.0.0.1:{}", ports[0]),
            ca_file: tls.join("ca.pem"),
            username: "walcast",
            password,
            scram_sha_512_password,
            plain_password,
            ssl_bootstrap: format!("127.0.0.1:{}", ports[1]),
            client_cert: tls.join("client.pem"),
            client_key: tls.join("client.key"),
            client_key_password,
            untrusted_cert: tls.join("untrusted.pem"),
            untrusted_key: tls.join("untrusted.key"),
            stack,
        };
        // Ready once a client of every kind gets metadata (the SCRAM users reach the
        // broker through the metadata log, a moment after the command).
        for auth in [
            kafka.scram_sha_256(),
            kafka.scram_sha_512(),
            kafka.plain(),
            kafka.client_certificate(),
        ] {
            let mut config = rdkafka::ClientConfig::new();
            for (k, v) in auth.client_config(&auth.secret) {
                config.set(k, v);
            }
            let client: rdkafka::consumer::BaseConsumer = config
                .create()
                .unwrap_or_else(|e| panic!("{} client: {e}", auth.mechanism));
            let started = std::time::Instant::now();
            loop {
                use rdkafka::consumer::Consumer;
                match client.fetch_metadata(None, std::time::Duration::from_secs(3)) {
                    Ok(metadata) if !metadata.brokers().is_empty() => break,
                    result => assert!(
                        started.elapsed() < std::time::Duration::from_secs(30),
                        "the listener {} never answered a {} client: {:?}; see {}",
                        auth.bootstrap,
                        auth.mechanism,
                        result.err(),
                        kafka.stack.get("WALCAST_KAFKA_LOG")
                    ),
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        kafka
    })
}
