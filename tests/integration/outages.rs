//! Outages around a running connector, checked against an oracle walcast did not
//! compute (a `test_decoding` slot created before the workload): the schema registry
//! going away while a new schema must be registered, the connections to PostgreSQL cut
//! under walcast's feet, and a busy database whose captured tables are idle (the slot
//! must still advance, or PostgreSQL keeps its WAL for ever).

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use walcast::registry::RegistryServer;

use crate::common::proxy::Proxy;
use crate::common::{consume, settled_oracle, start_walcast, WalcastProcess};
use crate::common::{
    log_excerpt, run_script, stack, start_registry, OrdersScenario, Stack, TestDb,
};

/// Transactions `from..to` on public.orders: insert, update, and every third one a delete.
fn workload(from: i32, to: i32) -> String {
    let mut sql = String::new();
    for i in from..to {
        sql.push_str(&format!(
            "BEGIN; INSERT INTO orders VALUES ({i}, 'new', {i}.50); UPDATE orders SET status = 'paid' WHERE id = {i}; {} COMMIT;\n",
            if i % 3 == 0 { format!("DELETE FROM orders WHERE id = {i};") } else { String::new() }
        ));
    }
    sql
}

/// public.orders, the oracle slot (before any change) and a connector capturing
/// public.orders with the registry at `registry_url`; `walcast setup` has run.
fn prepare(
    db: &TestDb,
    name: &str,
    registry_url: &str,
    total_type: &str,
) -> (String, std::path::PathBuf) {
    let scenario = OrdersScenario::builder(db, name, db.stack.kafka_bootstrap(), registry_url)
        .total_type(total_type)
        .create();
    (scenario.oracle_slot, scenario.file)
}

/// Waits (at most 60 s) until `slot` confirms the WAL written so far: Kafka acknowledged
/// every change before it.
pub(crate) fn wait_for_confirmed(db: &TestDb, slot: &str, log: &std::path::Path) {
    let now = db.psql("SELECT pg_current_wal_lsn()");
    let confirmed = format!(
        "SELECT confirmed_flush_lsn >= '{now}' FROM pg_replication_slots WHERE slot_name = '{slot}' AND database = '{}'",
        db.name
    );
    let started = Instant::now();
    while db.psql(&confirmed) != "t" {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{slot} did not confirm {now} within 60 s\n{}",
            log_excerpt(log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, then the exit status (a SIGKILL after 30 s).
pub(crate) fn stop(walcast: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &walcast.id().to_string()])
        .status();
    let started = Instant::now();
    loop {
        if let Some(status) = walcast.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = walcast.kill();
            return walcast.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills walcast if a test panics before stopping it.
pub(crate) struct Guard(pub(crate) Option<WalcastProcess>);

impl Guard {
    pub(crate) fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Where the first difference is, for a failure message.
pub(crate) fn first_difference<T: std::fmt::Debug + PartialEq>(
    got: &[T],
    expected: &[T],
) -> String {
    let first = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    format!(
        "got {} changes, expected {}; first difference at {first}: got {:?} expected {:?}",
        got.len(),
        expected.len(),
        got.get(first..(first + 5).min(got.len())),
        expected.get(first..(first + 5).min(expected.len()))
    )
}

/// The registry stops while walcast must register a new schema (a column added
/// mid-stream) and comes back a few seconds later on the same address with the same
/// data: walcast waits and retries, and the topic holds every change once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_mid_stream_loses_and_repeats_nothing() {
    let started = Instant::now();
    let stack = stack();
    let (registry_dir, registry) = start_registry().await;
    let addr: SocketAddr = registry.local_addr();
    let url = registry.url();
    let db = TestDb::new(stack);
    // `total` is bigint here so this test is only about the outage (the decimal case
    // has its own test below).
    let (oracle_slot, file) = prepare(&db, "regout", &url, "bigint");
    let log = db.dir.path().join("walcast.log");
    let mut walcast = Guard(Some(start_walcast(&file, &log)));
    db.wait_for_slot("walcast_regout", true);

    // A first part, registered and acknowledged (the slot confirms past it).
    run_script(stack, &db.name, &workload(1, 150));
    wait_for_confirmed(&db, "walcast_regout", &log);
    // Stop the registry (bounded: it finishes the requests in flight).
    let log_before_outage = std::fs::read_to_string(&log).unwrap_or_default().len();
    tokio::time::timeout(Duration::from_secs(15), registry.shutdown())
        .await
        .expect("the registry stops within 15 s")
        .unwrap();
    // A new column: the next change of orders needs a new value schema registered.
    let writer = {
        let dbname = db.name.clone();
        std::thread::spawn(move || {
            let mut sql = String::from("ALTER TABLE orders ADD COLUMN note text;\n");
            sql.push_str(&workload(150, 300).replace(
                "UPDATE orders SET status = 'paid'",
                "UPDATE orders SET status = 'paid', note = 'n'",
            ));
            run_script(stack, &dbname, &sql);
        })
    };
    // walcast finds the registry gone while registering the new value schema and retries
    // (the client's retry warning), ...
    let waiting_since = Instant::now();
    let retrying_value = format!(
        "\"what\":\"the registration of a schema for subject {}.public.orders-value\"",
        db.name
    );
    loop {
        let logs = std::fs::read_to_string(&log).unwrap_or_default();
        let during = logs.get(log_before_outage..).unwrap_or_default();
        if during.lines().any(|l| {
            l.contains("schema registry request failed, retrying") && l.contains(&retrying_value)
        }) {
            break;
        }
        if let Some(status) = walcast.child().try_wait().unwrap() {
            panic!(
                "walcast exited ({status}) before retrying the registry\n{}",
                log_excerpt(&log)
            );
        }
        assert!(
            waiting_since.elapsed() < Duration::from_secs(30),
            "walcast never tried to register the new schema with the stopped registry within 30 s\n{}",
            log_excerpt(&log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ... and is still waiting a few seconds later, when the registry comes back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outage = waiting_since.elapsed();
    if let Some(status) = walcast.child().try_wait().unwrap() {
        panic!(
            "walcast exited ({status}) during a {outage:?} registry outage instead of waiting\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let registry = RegistryServer::start(addr, registry_dir.path())
        .await
        .expect("the registry restarts on the same address");
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .unwrap()
        .expect("the workload ran");
    run_script(stack, &db.name, &workload(300, 400));

    let expected = settled_oracle(&db, &oracle_slot);
    let topic = format!("{}.public.orders", db.name);
    let (got, tombstones) = consume(stack.kafka_bootstrap(), &topic, &url, expected.len()).await;
    let stopped = stop(walcast.child());
    let versions = reqwest::get(format!("{url}/subjects/{topic}-value/versions"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    registry.shutdown().await.unwrap();

    assert_eq!(
        expected.len(),
        399 * 2 + 133,
        "the oracle saw the whole workload"
    );
    assert!(
        got == expected,
        "exactly once across the registry outage: {}\n{}",
        first_difference(&got, &expected),
        log_excerpt(&log)
    );
    assert_eq!(
        tombstones,
        expected.iter().filter(|(op, ..)| op == "d").count(),
        "a tombstone after each delete"
    );
    assert_eq!(
        versions, "[1,2]",
        "the value schema with the new column was registered after the restart"
    );
    assert!(
        stopped.success(),
        "clean stop on SIGTERM: {stopped}\n{}",
        log_excerpt(&log)
    );
    eprintln!(
        "registry outage of {outage:?}: {} changes in {:?}",
        got.len(),
        started.elapsed()
    );
}

/// Regression (found while writing the registry outage test): a column added to a table
/// with a numeric column must register a new schema version under BACKWARD. apache-avro
/// 0.21's `can_read` cannot compare two decimals, so `registry::compat::check` compares
/// them by their underlying type, as Avro's resolution rules (and Confluent) do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_to_a_table_with_a_numeric_column_is_registered() {
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    let (oracle_slot, file) = prepare(&db, "addcol", &registry.url(), "numeric(10,2)");
    let log = db.dir.path().join("walcast.log");
    let mut walcast = Guard(Some(start_walcast(&file, &log)));
    db.wait_for_slot("walcast_addcol", true);
    run_script(stack, &db.name, &workload(1, 10));
    run_script(
        stack,
        &db.name,
        &format!(
            "ALTER TABLE orders ADD COLUMN note text;\n{}",
            workload(10, 20)
        ),
    );
    let expected = settled_oracle(&db, &oracle_slot);
    if let Some(status) = walcast.child().try_wait().unwrap() {
        panic!(
            "walcast exited ({status}) after the column was added\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let topic = format!("{}.public.orders", db.name);
    let (got, _) = consume(
        stack.kafka_bootstrap(),
        &topic,
        &registry.url(),
        expected.len(),
    )
    .await;
    let running = walcast.child().try_wait().unwrap().is_none();
    let stopped = stop(walcast.child());
    registry.shutdown().await.unwrap();
    assert!(running, "walcast stopped\n{}", log_excerpt(&log));
    assert!(
        got == expected,
        "every change, before and after the new column: {}\n{}",
        first_difference(&got, &expected),
        log_excerpt(&log)
    );
    assert!(
        stopped.success(),
        "clean stop on SIGTERM: {stopped}\n{}",
        log_excerpt(&log)
    );
}

/// A workload (`workload(from, to)` makes the SQL of transactions `from..to`) written
/// in batches from a thread of its own, straight to PostgreSQL, while a test cuts
/// connections: from `from` in batches of `batch`, `pause` apart, until stopped or
/// `limit` is reached. Dropping it (a failing test) stops it too.
pub(crate) struct BackgroundWorkload {
    writing: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<i32>>,
}

impl BackgroundWorkload {
    pub(crate) fn start(
        stack: &'static Stack,
        dbname: &str,
        workload: fn(i32, i32) -> String,
        from: i32,
        batch: i32,
        pause: Duration,
        limit: i32,
    ) -> Self {
        let writing = Arc::new(AtomicBool::new(true));
        let thread = {
            let (writing, dbname) = (writing.clone(), dbname.to_owned());
            std::thread::spawn(move || {
                let mut next = from;
                while writing.load(Ordering::SeqCst) && next < limit {
                    run_script(stack, &dbname, &workload(next, next + batch));
                    next += batch;
                    std::thread::sleep(pause);
                }
                next
            })
        };
        Self {
            writing,
            thread: Some(thread),
        }
    }

    /// Whether it stopped by itself (reached its limit).
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops it; returns the first transaction number not written.
    pub(crate) fn stop(mut self) -> i32 {
        self.writing.store(false, Ordering::SeqCst);
        self.thread.take().map_or(0, |t| t.join().unwrap())
    }
}

impl Drop for BackgroundWorkload {
    fn drop(&mut self) {
        self.writing.store(false, Ordering::SeqCst);
    }
}

/// The walsender streaming `slot` of `db`: its pid, once it is not `previous`.
fn wait_for_new_walsender(
    db: &TestDb,
    slot: &str,
    previous: &str,
    walcast: &mut Child,
    log: &std::path::Path,
) -> String {
    let query = format!(
        "SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = '{slot}' AND database = '{}'",
        db.name
    );
    let started = Instant::now();
    loop {
        let pid = db.psql(&query);
        if pid != "0" && pid != previous {
            return pid;
        }
        if let Some(status) = walcast.try_wait().unwrap() {
            panic!(
                "walcast exited ({status}) instead of reconnecting\n{}",
                log_excerpt(log)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "walcast did not stream again within 30 s (walsender {pid}, before {previous})\n{}",
            log_excerpt(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// walcast reaches PostgreSQL through a proxy that cuts every connection three times
/// while a workload runs: walcast reconnects each time, and the topic holds every change
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_proxy_cutting_connections_loses_and_repeats_nothing() {
    let started = Instant::now();
    let stack = stack();
    let proxy = Proxy::start(stack.pg_port());
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    let (oracle_slot, file) = prepare(&db, "proxied", &registry.url(), "numeric(10,2)");
    // From here on walcast talks to PostgreSQL through the proxy only.
    let text = std::fs::read_to_string(&file).unwrap().replace(
        &format!("port = {}\n", stack.pg_port()),
        &format!("port = {}\n", proxy.addr.port()),
    );
    assert!(text.contains(&format!("port = {}\n", proxy.addr.port())));
    std::fs::write(&file, text).unwrap();
    let log = db.dir.path().join("walcast.log");
    let mut walcast = Guard(Some(start_walcast(&file, &log)));
    let slot = "walcast_proxied";
    let mut walsender = wait_for_new_walsender(&db, slot, "", walcast.child(), &log);
    // The slot shows an active walsender while it is still being created (before its
    // consistent point): writes then would land in the initial snapshot as reads. Wait
    // until the (empty) snapshot is complete, i.e. walcast streams.
    let started_at = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("initial snapshot complete")
    {
        assert!(
            started_at.elapsed() < Duration::from_secs(30),
            "the initial snapshot did not complete within 30 s\n{}",
            log_excerpt(&log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A first part, acknowledged by Kafka (the slot confirms past it) before any cut.
    run_script(stack, &db.name, &workload(1, 100));
    wait_for_confirmed(&db, slot, &log);

    // The rest in batches of 50 transactions, straight to PostgreSQL, until the cuts
    // are over (at most 6,000 transactions, a minute or so).
    let pause = Duration::from_millis(100);
    let writer = BackgroundWorkload::start(stack, &db.name, workload, 100, 50, pause, 6000);
    let mut cuts = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        cuts.push(proxy.cut());
        walsender = wait_for_new_walsender(&db, slot, &walsender, walcast.child(), &log);
    }
    let wrote_through_the_cuts = !writer.is_finished();
    let written_to = writer.stop();
    run_script(stack, &db.name, &workload(written_to, written_to + 50));

    let expected = settled_oracle(&db, &oracle_slot);
    let topic = format!("{}.public.orders", db.name);
    let (got, tombstones) = consume(
        stack.kafka_bootstrap(),
        &topic,
        &registry.url(),
        expected.len(),
    )
    .await;
    let stopped = stop(walcast.child());
    drop(proxy);
    registry.shutdown().await.unwrap();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();

    let transactions = written_to + 50 - 1;
    assert_eq!(
        expected.len() as i32,
        transactions * 2 + transactions / 3,
        "the oracle saw the whole workload"
    );
    assert!(
        wrote_through_the_cuts,
        "the workload ran until the last cut (it ended at {written_to})\n{}",
        log_excerpt(&log)
    );
    assert!(
        cuts.iter().all(|&n| n >= 2),
        "each cut hit walcast's connections (replication and catalog): {cuts:?}\n{}",
        log_excerpt(&log)
    );
    let reconnects = logs
        .matches("replication interrupted; reconnecting from the slot's confirmed position")
        .count();
    assert!(
        reconnects >= 3,
        "walcast noticed each cut ({reconnects} reconnects)\n{}",
        log_excerpt(&log)
    );
    assert!(
        got == expected,
        "exactly once across the cut connections: {}\n{}",
        first_difference(&got, &expected),
        log_excerpt(&log)
    );
    assert_eq!(
        tombstones,
        expected.iter().filter(|(op, ..)| op == "d").count(),
        "a tombstone after each delete"
    );
    assert!(
        stopped.success(),
        "clean stop on SIGTERM: {stopped}\n{}",
        log_excerpt(&log)
    );
    eprintln!(
        "3 cuts ({cuts:?} connections), {reconnects} reconnects, {} transactions: {} changes in {:?}",
        written_to + 49,
        got.len(),
        started.elapsed()
    );
}

/// Only an uncaptured table is written (100,000 rows in 20 transactions): walcast
/// receives no change at all, yet the slot's confirmed position must move past the
/// WAL those writes produced, or PostgreSQL keeps that WAL for as long as the captured
/// tables stay idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_advances_while_captured_tables_are_idle() {
    let started = Instant::now();
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    db.psql("CREATE TABLE public.busy (id bigint PRIMARY KEY, payload text NOT NULL)");
    let (_oracle, file) = prepare(&db, "idle", &registry.url(), "numeric(10,2)");
    let log = db.dir.path().join("walcast.log");
    let mut walcast = Guard(Some(start_walcast(&file, &log)));
    db.wait_for_slot("walcast_idle", true);
    let slot_query = |column: &str| {
        db.psql(&format!(
            "SELECT {column} FROM pg_replication_slots WHERE slot_name = 'walcast_idle' AND database = '{}'",
            db.name
        ))
    };
    let before = db.psql("SELECT pg_current_wal_lsn()");
    let confirmed_at_start = slot_query("confirmed_flush_lsn");

    let mut sql = String::new();
    for batch in 0..20 {
        sql.push_str(&format!(
            "INSERT INTO busy SELECT i, repeat('x', 100) FROM generate_series({}, {}) i;\n",
            batch * 5000 + 1,
            (batch + 1) * 5000
        ));
    }
    run_script(stack, &db.name, &sql);
    let after = db.psql("SELECT pg_current_wal_lsn()");
    assert_eq!(
        db.psql(&format!(
            "SELECT pg_wal_lsn_diff('{after}', '{before}') > 10 * 1024 * 1024"
        )),
        "t",
        "the writes produced WAL ({before} → {after})"
    );

    // Past the WAL of the writes, within a bounded wait.
    let waiting = Instant::now();
    let reached = format!("SELECT confirmed_flush_lsn >= '{after}' FROM pg_replication_slots WHERE slot_name = 'walcast_idle' AND database = '{}'", db.name);
    let mut advanced = false;
    while waiting.elapsed() < Duration::from_secs(30) {
        if db.psql(&reached) == "t" {
            advanced = true;
            break;
        }
        if let Some(status) = walcast.child().try_wait().unwrap() {
            panic!(
                "walcast exited ({status})\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = waiting.elapsed();
    let confirmed = slot_query("confirmed_flush_lsn");
    let stopped = stop(walcast.child());
    registry.shutdown().await.unwrap();
    assert!(
        advanced,
        "confirmed_flush_lsn is {confirmed} (was {confirmed_at_start}) 30 s after writes from {before} to {after} in uncaptured tables only\n{}",
        log_excerpt(&log)
    );
    assert!(
        stopped.success(),
        "clean stop on SIGTERM: {stopped}\n{}",
        log_excerpt(&log)
    );
    eprintln!(
        "slot confirmed {confirmed} ≥ {after} (from {confirmed_at_start}, WAL before the writes {before}) {took:?} after the writes; test took {:?}",
        started.elapsed()
    );
}
