//! walcast as an on-call engineer meets it: the metrics hold the right values (events
//! equal what a consumer reads, snapshot progress reaches its total, lag rises while the
//! broker is away and falls after), the probes and the status page (loaded in headless
//! Chromium) flip while PostgreSQL is down and back, `walcast status` prints the same,
//! every metric the shipped dashboard and alert rules query is one walcast exports, and
//! `walcast slots` / `walcast teardown` work against a real PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::http::{sample, wait_for};
use crate::common::{
    consume_records, log_excerpt, operate_kafka, operate_postgres, stack, start_registry,
    start_walcast, stop_with_sigterm, walcast, TestDb,
};

/// Debian's Chromium, headless, as a user's browser: the page's DOM after it loaded,
/// and a screenshot when `screenshot` is given.
fn chromium(url: &str, screenshot: Option<&Path>) -> String {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("headless Chromium is needed for the status page test: apt-get install chromium (.ci/run installs it)");
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("timeout");
    cmd.arg("60")
        .arg(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output().expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls the page in Chromium until `done` accepts its DOM.
fn page_until(url: &str, limit: Duration, what: &str, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let dom = chromium(url, None);
        if done(&dom) {
            return dom;
        }
        assert!(
            started.elapsed() < limit,
            "{what}: the page showed\n{}",
            dom.chars().take(4000).collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The text of the first element with `class` in `dom`.
fn class_text(dom: &str, class: &str) -> Option<String> {
    let start = dom.find(&format!("class=\"{class}\""))?;
    let rest = &dom[start..];
    let open = rest.find('>')? + 1;
    let close = rest[open..].find('<')?;
    Some(rest[open..open + close].trim().to_owned())
}

/// Where a test keeps what a person may want to look at afterwards.
fn artifacts_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const SNAPSHOT_ROWS: i64 = 20_000;
const TRANSACTIONS: i64 = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_state_counts_lag_and_progress_through_outages() {
    let (pg, kafka) = (operate_postgres(), operate_kafka());
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(pg);
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, total numeric(10,2))");
    db.psql(&format!(
        "INSERT INTO orders SELECT g, 'old', g FROM generate_series(1, {SNAPSHOT_ROWS}) g; ANALYZE orders"
    ));
    let name = "operate";
    let port = free_port();
    let file = db.connector_with_registry(name, "", "[tables.\"public.orders\"]", &registry.url());
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("127.0.0.1:9\"", &format!("{}\"", kafka.kafka_bootstrap()))
        .replace(
            "[metrics]\nenabled = false",
            &format!("[metrics]\nlisten = \"127.0.0.1:{port}\""),
        );
    std::fs::write(&file, text).unwrap();
    assert_eq!(
        walcast(&["setup", file.to_str().unwrap()], &[]).code,
        Some(0)
    );
    let log = db.dir.path().join("walcast.log");
    let mut child = start_walcast(&file, &log);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let metrics = format!("{base}/metrics");
    let c = format!("connector=\"{name}\"");
    let table = "public.orders";
    let events = |op: &str| format!("walcast_events_total{{{c},op=\"{op}\",table=\"{table}\"}}");

    // The snapshot's progress reaches its total: every table done, every row read.
    let body = wait_for(
        &http,
        &metrics,
        Duration::from_secs(90),
        "the snapshot read",
        Some(&log),
        |_, b| sample(b, &format!("walcast_snapshot_tables_done{{{c}}}")) == Some(1.0),
    )
    .await;
    assert_eq!(
        sample(&body, &format!("walcast_snapshot_tables{{{c}}}")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            &format!("walcast_snapshot_rows_read{{{c},table=\"{table}\"}}")
        ),
        Some(SNAPSHOT_ROWS as f64),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            &format!("walcast_snapshot_rows_estimated{{{c},table=\"{table}\"}}")
        ),
        Some(SNAPSHOT_ROWS as f64),
        "ANALYZE made reltuples exact"
    );
    wait_for(
        &http,
        &format!("{base}/readyz"),
        Duration::from_secs(60),
        "ready",
        Some(&log),
        |s, _| s == 200,
    )
    .await;

    // A workload; the page shows the connector streaming and counting meanwhile.
    for i in 1..=TRANSACTIONS {
        let id = SNAPSHOT_ROWS + i;
        db.psql(&format!(
            "BEGIN; INSERT INTO orders VALUES ({id}, 'new', {i}); UPDATE orders SET status = 'paid' WHERE id = {i}; COMMIT"
        ));
        if i == TRANSACTIONS / 2 {
            let dom = chromium(&format!("{base}/"), None);
            assert!(
                dom.contains(&format!(
                    "data-connector=\"{name}\" data-state=\"streaming\""
                )),
                "{dom}"
            );
            let shown: u64 = class_text(&dom, "events-total").unwrap().parse().unwrap();
            assert!(
                shown >= SNAPSHOT_ROWS as u64,
                "the page counts the snapshot's events: {shown}"
            );
        }
    }
    let expected = (SNAPSHOT_ROWS + 2 * TRANSACTIONS) as usize;
    let consumed = consume_records(
        kafka.kafka_bootstrap(),
        &format!("{}.public.orders", db.name),
        Some(&registry.url()),
        expected,
    )
    .await;
    let count = |op: &str| {
        consumed
            .iter()
            .filter(|r| r.value.as_ref().is_some_and(|v| v["op"] == op))
            .count() as f64
    };
    let body = wait_for(
        &http,
        &metrics,
        Duration::from_secs(20),
        "counted",
        Some(&log),
        |_, b| sample(b, &events("u")) == Some(TRANSACTIONS as f64),
    )
    .await;
    for op in ["r", "c", "u"] {
        assert_eq!(
            sample(&body, &events(op)),
            Some(count(op)),
            "events {op} = what a consumer reads"
        );
    }
    assert_eq!(consumed.len(), expected, "nothing more than that either");
    assert!(sample(&body, &format!("walcast_bytes_produced_total{{{c}}}")).unwrap() > 0.0);
    assert!(
        sample(
            &body,
            &format!("walcast_commit_to_ack_seconds_count{{{c}}}")
        )
        .unwrap()
            >= TRANSACTIONS as f64
    );
    assert!(
        sample(
            &body,
            &format!("walcast_registry_requests_total{{{c},kind=\"register\"}}")
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        sample(
            &body,
            &format!("walcast_connector_state{{{c},state=\"streaming\"}}")
        ),
        Some(1.0)
    );
    assert!(
        body.contains("process_resident_memory_bytes"),
        "process metrics"
    );

    // The dashboard and the alert rules query only what a live walcast exports.
    let scrape = db.dir.path().join("metrics.txt");
    std::fs::write(&scrape, &body).unwrap();
    let check = Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/check"))
        .args(["--no-promtool", "--metrics"])
        .arg(&scrape)
        .output()
        .expect("run deploy/check");
    assert!(
        check.status.success(),
        "deploy/check --metrics: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The broker goes away: changes wait, the lag rises; it comes back: the lag falls.
    kafka.stop_services();
    db.psql(&format!(
        "INSERT INTO orders SELECT g, 'late', 1 FROM generate_series({0} + 1, {0} + 10) g",
        SNAPSHOT_ROWS + TRANSACTIONS
    ));
    let lag = format!("walcast_lag_seconds{{{c}}}");
    let body = wait_for(
        &http,
        &metrics,
        Duration::from_secs(40),
        "lag rising while the broker is away",
        Some(&log),
        |_, b| sample(b, &lag).is_some_and(|l| l >= 3.0),
    )
    .await;
    let first = sample(&body, &lag).unwrap();
    wait_for(
        &http,
        &metrics,
        Duration::from_secs(20),
        "lag still rising",
        Some(&log),
        |_, b| sample(b, &lag).is_some_and(|l| l >= first + 2.0),
    )
    .await;
    let status = wait_for(
        &http,
        &format!("{base}/status"),
        Duration::from_secs(30),
        "Kafka shown as retried",
        Some(&log),
        |_, b| b.contains("\"kafka\"") && b.contains("\"state\": \"retrying\""),
    )
    .await;
    assert!(
        status.contains("Kafka has acknowledged none of"),
        "{status}"
    );
    kafka.start_services("kafka");
    wait_for(
        &http,
        &metrics,
        Duration::from_secs(90),
        "lag back down after the broker returned",
        Some(&log),
        |_, b| {
            sample(b, &lag).is_some_and(|l| l < 2.0)
                && sample(b, &events("c")) == Some((TRANSACTIONS + 10) as f64)
        },
    )
    .await;
    wait_for(
        &http,
        &format!("{base}/readyz"),
        Duration::from_secs(30),
        "ready again",
        Some(&log),
        |s, _| s == 200,
    )
    .await;

    // PostgreSQL goes away: not ready, the page says retrying (and why); it comes back.
    pg.stop_services();
    wait_for(
        &http,
        &format!("{base}/readyz"),
        Duration::from_secs(30),
        "not ready while PostgreSQL is down",
        Some(&log),
        |s, _| s == 503,
    )
    .await;
    let dom = page_until(
        &format!("{base}/"),
        Duration::from_secs(30),
        "the page shows the outage",
        |dom| dom.contains("data-state=\"retrying\"") && dom.contains("class=\"last-error\""),
    );
    assert!(dom.contains("retrying: postgres"), "{dom}");
    let shot = artifacts_dir().join("status-page-postgres-down.png");
    chromium(&format!("{base}/"), Some(&shot));
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
    let during = walcast(&["status", file.to_str().unwrap()], &[]);
    assert_eq!(during.code, Some(1), "{}{}", during.stdout, during.stderr);
    assert!(during.stdout.contains("RETRYING"), "{}", during.stdout);

    pg.start_services("postgres");
    wait_for(
        &http,
        &format!("{base}/readyz"),
        Duration::from_secs(60),
        "ready after PostgreSQL returned",
        Some(&log),
        |s, _| s == 200,
    )
    .await;
    page_until(
        &format!("{base}/"),
        Duration::from_secs(20),
        "the page shows streaming again",
        |dom| dom.contains("data-state=\"streaming\""),
    );
    chromium(
        &format!("{base}/"),
        Some(&artifacts_dir().join("status-page-streaming.png")),
    );
    let after = walcast(&["status", &base], &[]);
    assert_eq!(after.code, Some(0), "{}{}", after.stdout, after.stderr);
    assert!(
        after
            .stdout
            .contains(&format!("connector {name}: STREAMING")),
        "{}",
        after.stdout
    );
    assert!(
        after.stdout.contains(&format!(
            "events      {}",
            SNAPSHOT_ROWS + 2 * TRANSACTIONS + 10
        )),
        "{}",
        after.stdout
    );
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logs.contains("snapshot progress: 20000 rows"),
        "{}",
        log_excerpt(&log)
    );
    assert!(
        logs.contains("caught up with the source"),
        "{}",
        log_excerpt(&log)
    );
    let exit = stop_with_sigterm(&mut child);
    assert_eq!(exit.code(), Some(0), "{}", log_excerpt(&log));
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_are_listed_and_teardown_refuses_an_active_slot_and_drops_an_idle_one() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE public.items (id int PRIMARY KEY, name text)");
    let name = "teardown";
    let slot = format!("walcast_{name}");
    let file = db.connector_with_registry(name, "", "[tables.\"public.items\"]", &registry.url());
    let path = file.to_str().unwrap();
    let mut child = crate::common::start_streaming(&db, &file, name);
    let log = db.dir.path().join("walcast.log");

    let slots = walcast(&["slots", path], &[]);
    assert_eq!(slots.code, Some(0), "{}", slots.stderr);
    let line = slots
        .stdout
        .lines()
        .find(|l| l.starts_with(&slot))
        .unwrap_or_else(|| panic!("{}", slots.stdout));
    assert!(
        line.contains("pgoutput") && line.contains(&format!("<- connector {name}")),
        "{line}"
    );

    // Active: refused, nothing dropped.
    let refused = walcast(&["teardown", path], &[]);
    assert_eq!(refused.code, Some(1), "{}", refused.stdout);
    assert!(
        refused.stderr.contains("is in use by the process with pid"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(
        db.psql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
        )),
        "1"
    );

    // Idle: slot, publication and state row dropped; what is left is said.
    assert_eq!(
        stop_with_sigterm(&mut child).code(),
        Some(0),
        "{}",
        log_excerpt(&log)
    );
    let done = walcast(&["teardown", path], &[]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stdout.contains(&format!("dropped slot {slot}")),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("dropped publication"),
        "{}",
        done.stdout
    );
    assert!(done.stdout.contains("left the topics"), "{}", done.stdout);
    assert_eq!(
        db.psql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
        )),
        "0"
    );
    assert_eq!(
        db.psql(&format!(
            "SELECT count(*) FROM pg_publication WHERE pubname = 'walcast_{name}'"
        )),
        "0"
    );
    assert_eq!(
        db.psql(&format!(
            "SELECT count(*) FROM walcast.connector_state WHERE connector = '{name}'"
        )),
        "0"
    );
    let again = walcast(&["teardown", path], &[]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(
        again.stdout.contains("does not exist; nothing to drop"),
        "{}",
        again.stdout
    );

    // Active with --force: the connection is ended and the slot dropped.
    let mut child = crate::common::start_streaming(&db, &file, name);
    let forced = walcast(&["teardown", "--force", path], &[]);
    assert_eq!(forced.code, Some(0), "{}", forced.stderr);
    assert!(
        forced.stdout.contains("ended the connection using slot"),
        "{}",
        forced.stdout
    );
    assert!(
        forced.stdout.contains(&format!("dropped slot {slot}")),
        "{}",
        forced.stdout
    );
    assert_eq!(
        db.psql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
        )),
        "0"
    );
    let _ = child.kill();
    let _ = child.wait();
    registry.shutdown().await.unwrap();
}

#[test]
fn the_deploy_files_parse_and_the_alert_rules_pass_promtool() {
    crate::common::test_deps();
    let out = Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/check"))
        .output()
        .expect("run deploy/check");
    assert!(
        out.status.success(),
        "deploy/check (needs promtool: apt-get install prometheus): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
