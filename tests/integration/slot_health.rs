//! The slot as an operator sees it: walcast exports the WAL its slot retains, its
//! `wal_status` and `safe_wal_size`, warns when the retained WAL passes
//! `[source] retained_wal_warning`, is not ready (`/readyz` 503) while PostgreSQL is
//! away, and stops with a clear error when PostgreSQL invalidates the slot
//! (`wal_status = lost`), then refuses to start on the lost slot. On a PostgreSQL of
//! its own, which the test stops and whose `max_slot_wal_keep_size` it lowers.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::http::{sample, wait_for};
use crate::common::start_walcast;
use crate::common::{slot_health_postgres, stack, start_registry, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_health_is_exported_warned_about_and_a_lost_slot_stops_the_connector() {
    let pg = slot_health_postgres();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(pg);
    db.psql("CREATE TABLE public.big (id int PRIMARY KEY, pad text)");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let name = "slothealth";
    let file = db.connector_with_registry(
        name,
        "snapshot_mode = \"never\"\nretained_wal_warning = \"1B\"",
        "[tables.\"public.big\"]",
        &registry.url(),
    );
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("127.0.0.1:9\"", &format!("{}\"", stack().kafka_bootstrap()))
        .replace(
            "[metrics]\nenabled = false",
            &format!("[metrics]\nlisten = \"127.0.0.1:{port}\""),
        );
    std::fs::write(&file, text).unwrap();
    let mut walcast = crate::common::start_streaming(&db, &file, name);
    let log = db.dir.path().join("walcast.log");
    let slot = format!("walcast_{name}");
    db.psql("INSERT INTO big VALUES (1, 'x')");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");

    // Exported (the first poll runs at start).
    let label = format!("{{connector=\"{name}\"}}");
    let body = wait_for(
        &http,
        &format!("{base}/metrics"),
        Duration::from_secs(20),
        "slot metrics",
        None,
        |_, body| {
            sample(body, &format!("walcast_slot_retained_wal_bytes{label}"))
                .is_some_and(|v| v > 0.0)
                && sample(body, &format!("walcast_server_wal_end_lsn{label}"))
                    .is_some_and(|v| v > 0.0)
        },
    )
    .await;
    assert_eq!(
        sample(
            &body,
            &format!("walcast_slot_wal_status{{connector=\"{name}\",status=\"reserved\"}}")
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, &format!("walcast_slot_safe_wal_size_bytes{label}")),
        Some(-1.0),
        "unlimited max_slot_wal_keep_size"
    );
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logs.contains("of WAL on the server, more than [source] retained_wal_warning = 1 B"),
        "{logs}"
    );

    // Not ready while PostgreSQL is away; ready again once walcast reconnected.
    wait_for(
        &http,
        &format!("{base}/readyz"),
        Duration::from_secs(20),
        "ready",
        None,
        |s, _| s == 200,
    )
    .await;
    pg.stop_services();
    wait_for(
        &http,
        &format!("{base}/readyz"),
        Duration::from_secs(30),
        "not ready while PostgreSQL is down",
        None,
        |s, _| s == 503,
    )
    .await;
    pg.start_services("postgres");
    wait_for(
        &http,
        &format!("{base}/readyz"),
        Duration::from_secs(60),
        "ready after the reconnect",
        None,
        |s, _| s == 200,
    )
    .await;
    assert!(
        walcast.try_wait().unwrap().is_none(),
        "walcast rode out the restart"
    );

    // PostgreSQL invalidates the slot while walcast streams: a transaction held open in
    // another session keeps the slot's restart_lsn back while WAL grows past
    // max_slot_wal_keep_size.
    let mut held_open = Command::new(Path::new(pg.get("WALCAST_PG_BIN")).join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .args([
            "-h",
            pg.get("WALCAST_PG_HOST"),
            "-p",
            pg.get("WALCAST_PG_PORT"),
        ])
        .args(["-U", pg.get("WALCAST_PG_USER"), "-d", &db.name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    held_open
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"BEGIN; INSERT INTO big VALUES (999999, 'held open');\n")
        .unwrap();
    let started = Instant::now();
    while db.psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'")
        == "0"
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the open transaction never began"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    db.psql("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
    db.psql("SELECT pg_reload_conf()");
    for i in 0..4 {
        db.psql(&format!(
            "INSERT INTO big SELECT g, repeat('y', 500) FROM generate_series({0} * 10000 + 2, {0} * 10000 + 5000) g",
            i
        ));
        db.psql("SELECT pg_switch_wal()");
    }
    db.psql("CHECKPOINT");
    let status = db.psql(&format!(
        "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '{slot}'"
    ));
    {
        let mut stdin = held_open.stdin.take().unwrap();
        let _ = stdin.write_all(b"ROLLBACK;\n");
    }
    let _ = held_open.wait();
    db.psql("ALTER SYSTEM RESET max_slot_wal_keep_size");
    db.psql("SELECT pg_reload_conf()");
    assert_eq!(status, "lost", "PostgreSQL invalidated the slot");
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = walcast.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "walcast did not stop on the lost slot"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(exit.code(), Some(1), "{logs}");
    assert!(
        logs.contains(&format!("slot {slot} was invalidated (wal_status = lost"))
            && logs.contains("--accept-slot-loss"),
        "{logs}"
    );

    // A start on the lost slot is refused too, naming the gap (bounded: were it not,
    // walcast would stream on from a new slot).
    let again_log = db.dir.path().join("again.log");
    let mut again = start_walcast(&file, &again_log);
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = again.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = again.kill();
            panic!("walcast started on the lost slot");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let logs = std::fs::read_to_string(&again_log).unwrap_or_default();
    assert_eq!(exit.code(), Some(1), "{logs}");
    assert!(
        logs.contains("was invalidated (wal_status = lost"),
        "{logs}"
    );
    registry.shutdown().await.unwrap();
}
