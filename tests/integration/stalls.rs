//! A stall downstream does not cost the replication connection: while the schema
//! registry does not answer, the event stage waits, the channel from the reader fills
//! and the reader waits too, but it keeps confirming its position to PostgreSQL, so a
//! stall longer than `wal_sender_timeout` ends without a reconnect and without losing
//! or repeating a change.

use std::time::{Duration, Instant};

use crate::common::proxy::Proxy;
use crate::common::{stack, start_registry, stop_with_sigterm, TestDb};
use crate::pipeline::{consume_records, start_walcast};

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
    assert_eq!(
        crate::common::walcast(&["setup", file.to_str().unwrap()], &[]).code,
        Some(0)
    );
    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log);
    let slot = format!("walcast_{name}");
    db.wait_for_slot(&slot, true);
    let walsender = db.psql(&format!(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{slot}'"
    ));

    // The registry stops answering before the table's first event needs its schema.
    proxy.refuse(true);
    proxy.cut();
    db.psql(&format!(
        "INSERT INTO items SELECT g, repeat('x', 100) FROM generate_series(1, {ROWS}) g"
    ));
    // Three times wal_sender_timeout with the reader blocked on a full channel.
    let stalled = Instant::now();
    while stalled.elapsed() < Duration::from_secs(7) {
        assert!(
            walcast.try_wait().unwrap().is_none(),
            "walcast exited during the stall"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    proxy.refuse(false);

    let topic = format!("{}.public.items", db.name);
    let records = consume_records(
        stack().kafka_bootstrap(),
        &topic,
        Some(&registry.url()),
        ROWS,
    )
    .await;
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
