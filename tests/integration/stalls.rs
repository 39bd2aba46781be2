//! A stall downstream does not cost the replication connection: while the schema
//! registry does not answer, the event stage waits, the channel from the reader fills
//! and the reader waits too, but it keeps confirming its position to PostgreSQL, so a
//! stall longer than `wal_sender_timeout` ends without a reconnect and without losing
//! or repeating a change.

use std::time::{Duration, Instant};

use crate::common::proxy::Proxy;
use crate::common::{consume_records, start_streaming, start_walcast};
use crate::common::{stack, start_registry, stop_with_sigterm, TestDb};

const ROWS: usize = 12_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_stall_longer_than_wal_sender_timeout_keeps_the_connection() {
    let (_registry_dir, registry) = start_registry().await;
    let proxy = Proxy::start(registry.local_addr().port());
    let db = TestDb::new(stack());
    // Applies to walcast's walsender too (a logical walsender reads its role's
    // settings for the database).
    db.psql(&format!(
        "ALTER ROLE postgres IN DATABASE \"{}\" SET wal_sender_timeout = '2s'",
        db.name
    ));
    db.psql("CREATE TABLE public.items (id int PRIMARY KEY, note text)");
    let name = "stall";
    let file = db.connector_with_registry(
        name,
        "snapshot_mode = \"never\"",
        "[tables.\"public.items\"]",
        &format!("http://{}", proxy.addr),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "[metrics]\nenabled = false",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&file, text).unwrap();
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let ready = || async {
        reqwest::get(&readyz)
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    let mut walcast = start_streaming(&db, &file, name);
    let log = db.dir.path().join("walcast.log");
    let slot = format!("walcast_{name}");
    let walsender = db.psql(&format!(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{slot}'"
    ));

    // The registry stops answering before the table's first event needs its schema.
    proxy.refuse(true);
    proxy.cut();
    db.psql(&format!(
        "INSERT INTO items SELECT g, repeat('x', 100) FROM generate_series(1, {ROWS}) g"
    ));
    // Three times wal_sender_timeout with the reader blocked on a full channel; not
    // ready while the registry calls are retried.
    let stalled = Instant::now();
    let mut unready_seen = false;
    while stalled.elapsed() < Duration::from_secs(7) {
        assert!(
            walcast.try_wait().unwrap().is_none(),
            "walcast exited during the stall"
        );
        unready_seen |= ready().await == 503;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        unready_seen,
        "/readyz answered 503 while the registry was retried"
    );
    proxy.refuse(false);

    let topic = format!("{}.public.items", db.name);
    let records = consume_records(
        stack().kafka_bootstrap(),
        &topic,
        Some(&registry.url()),
        ROWS,
    )
    .await;
    assert_eq!(ready().await, 200, "ready again once the registry answers");
    let now = db.psql(&format!(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{slot}'"
    ));
    stop_with_sigterm(&mut walcast);
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !logs.contains("replication interrupted"),
        "the connection survived the stall: {}",
        logs.lines()
            .filter(|l| l.contains("replication interrupted"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(now, walsender, "the same walsender streams after the stall");
    let ids: Vec<i64> = records
        .iter()
        .map(|r| r.value.as_ref().unwrap()["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=ROWS as i64).collect::<Vec<_>>(),
        "every row once, in order"
    );
    registry.shutdown().await.unwrap();
}

/// `[source] spool_max_bytes`: a streamed transaction larger than the budget stops the
/// connector with one line naming the setting and the fix, and the slot stays before
/// its commit, so a restart with a larger budget delivers it. (The slot may move past
/// the transaction's first records while it is in progress: a keepalive before
/// PostgreSQL starts streaming it confirms what was decoded so far, and PostgreSQL
/// sends a transaction that commits after the confirmed position again, whole.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_transaction_over_the_spool_budget_stops_the_connector() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql(&format!(
        "ALTER DATABASE \"{}\" SET logical_decoding_work_mem = '64kB'",
        db.name
    ));
    db.psql("CREATE TABLE public.big (id int PRIMARY KEY, pad text)");
    let name = "spoolfull";
    let file = db.connector_with_registry(
        name,
        "snapshot_mode = \"never\"\nspool_max_bytes = \"256KiB\"",
        "[tables.\"public.big\"]",
        &registry.url(),
    );
    let mut walcast = start_streaming(&db, &file, name);
    let log = db.dir.path().join("walcast.log");
    let slot = format!("walcast_{name}");
    db.psql("INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g");
    let after = db.psql("SELECT pg_current_wal_insert_lsn()");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = walcast.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "walcast did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{logs}");
    assert!(
        logs.contains("would pass [source] spool_max_bytes = 262144; raise it, or point [source] spool_dir at a larger disk"),
        "{logs}"
    );
    let confirmed = db.psql(&format!(
        "SELECT confirmed_flush_lsn < '{after}' FROM pg_replication_slots WHERE slot_name = '{slot}'"
    ));
    assert_eq!(
        confirmed, "t",
        "the slot did not move past the transaction's commit"
    );

    // With room enough, a restart delivers the whole transaction.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("\"256KiB\"", "\"64MiB\"")).unwrap();
    let mut walcast = start_walcast(&file, &log);
    let topic = format!("{}.public.big", db.name);
    let records = consume_records(
        stack().kafka_bootstrap(),
        &topic,
        Some(&registry.url()),
        5000,
    )
    .await;
    stop_with_sigterm(&mut walcast);
    assert_eq!(records.len(), 5000);
    registry.shutdown().await.unwrap();
}

/// A table that changed shape, then a reconnect: the new reader describes the table
/// afresh, and its events must still be encoded with the right table version (each
/// reader counted versions from 1, so after the reconnect "version 1" named the new
/// shape in the reader and the old one in the event stage, and walcast stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_after_a_table_changed_shape_keeps_encoding() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE public.shapes (id int PRIMARY KEY, v int)");
    let name = "reshape";
    let file = db.connector_with_registry(
        name,
        "snapshot_mode = \"never\"",
        "[tables.\"public.shapes\"]",
        &registry.url(),
    );
    let mut walcast = start_streaming(&db, &file, name);
    let log = db.dir.path().join("walcast.log");
    let topic = format!("{}.public.shapes", db.name);
    db.psql("INSERT INTO shapes VALUES (1, 1)");
    db.psql("ALTER TABLE shapes ADD COLUMN extra int; INSERT INTO shapes VALUES (2, 2, 2)");
    consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 2).await;
    let slot = format!("walcast_{name}");
    let end = db.psql("SELECT pg_current_wal_insert_lsn()");
    let started = Instant::now();
    while db.psql(&format!(
        "SELECT confirmed_flush_lsn >= '{end}' FROM pg_replication_slots WHERE slot_name = '{slot}'"
    )) != "t"
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never confirmed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    db.psql(&format!(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{slot}'"
    ));
    db.wait_for_slot(&slot, true);
    db.psql("INSERT INTO shapes VALUES (3, 3, 3)");
    let records =
        consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 3).await;
    let alive = walcast.try_wait().unwrap().is_none();
    stop_with_sigterm(&mut walcast);
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(alive, "walcast stopped: {logs}");
    let rows: Vec<(i64, Option<i64>)> = records
        .iter()
        .map(|r| {
            let after = &r.value.as_ref().unwrap()["after"];
            (after["id"].as_i64().unwrap(), after["extra"].as_i64())
        })
        .collect();
    assert_eq!(rows, [(1, None), (2, Some(2)), (3, Some(3))], "{logs}");
    registry.shutdown().await.unwrap();
}
