//! `walcast run`: preparation, retry while the database is down, clean stop on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{stack, walcast, TestDb};

#[test]
fn run_prepares_publication_and_slot_then_stops_cleanly_on_sigterm() {
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY)");
    let file = db.connector("runner", "", "[tables.\"public.orders\"]");
    let path = file.to_str().unwrap();
    assert_eq!(walcast(&["setup", path], &[]).code, Some(0));
    db.psql("CREATE TABLE public.orders_2026 (id int PRIMARY KEY)");
    let text = std::fs::read_to_string(&file).unwrap() + "[tables.\"public.orders_2026\"]\n";
    std::fs::write(&file, text).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_walcast"))
        .args(["run", path])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let active = format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walcast_runner' AND database = '{}' AND active", db.name);
    while db.psql(&active) != "1" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "walcast never started streaming"
        );
        assert!(child.try_wait().unwrap().is_none(), "walcast exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        db.psql("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'walcast_runner' AND schemaname <> 'walcast'"),
        "2",
        "run brings the publication up to date"
    );
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(db.psql(&active), "0", "the slot is released");
}

#[test]
fn run_retries_an_unreachable_database_and_stops_on_sigterm() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let db = TestDb::new(stack());
    let file = db.connector("retry", "", "[tables.\"public.orders\"]");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        &format!("port = {}", stack().pg_port()),
        &format!("port = {port}"),
    );
    std::fs::write(&file, text).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_walcast"))
        .args(["--log-format", "json", "run", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "walcast gave up instead of retrying"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "walcast did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot reach PostgreSQL"))),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "shutdown requested; stopping connectors"),
        "{stderr}"
    );
}
