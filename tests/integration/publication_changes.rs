//! The publication changed behind walcast's back while it streams: a table added to it
//! by hand is not captured (its changes are skipped with a warning), and a captured
//! table dropped mid-stream ends its events while the others go on; the next start
//! names the rule that now matches nothing.

use std::time::{Duration, Instant};

use crate::common::{consume_records, start_walcast};
use crate::common::{stack, start_registry, stop_with_sigterm, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_added_to_or_dropped_from_the_publication_mid_stream() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql(
        "CREATE TABLE public.kept (id int PRIMARY KEY);
         CREATE TABLE public.dropped (id int PRIMARY KEY);
         CREATE TABLE public.stranger (id int PRIMARY KEY)",
    );
    let file = db.connector_with_registry(
        "pubchange",
        "snapshot_mode = \"never\"",
        "[tables.\"public.kept\"]\n[tables.\"public.dropped\"]",
        &registry.url(),
    );
    assert_eq!(
        crate::common::walcast(&["setup", file.to_str().unwrap()], &[]).code,
        Some(0)
    );
    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log);
    db.wait_for_slot("walcast_pubchange", true);

    db.psql("INSERT INTO kept VALUES (1); INSERT INTO dropped VALUES (1)");
    db.psql("ALTER PUBLICATION walcast_pubchange ADD TABLE public.stranger");
    db.psql("INSERT INTO stranger VALUES (1), (2); INSERT INTO kept VALUES (2)");
    db.psql("DROP TABLE public.dropped");
    db.psql("INSERT INTO kept VALUES (3)");

    let kept = consume_records(
        stack().kafka_bootstrap(),
        &format!("{}.public.kept", db.name),
        Some(&registry.url()),
        3,
    )
    .await;
    let ids: Vec<i64> = kept
        .iter()
        .filter_map(|r| r.value.as_ref())
        .map(|v| v["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3], "the captured table goes on");
    // Bounded wait for the warning (it is logged when the stranger's change arrives).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("does not capture")
    {
        assert!(
            Instant::now() < deadline,
            "no warning about the stranger table"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        walcast.try_wait().unwrap().is_none(),
        "still running after the drop"
    );
    assert!(stop_with_sigterm(&mut walcast).success());
    let topics = {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", stack().kafka_bootstrap())
            .create()
            .unwrap();
        consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap()
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        !topics.contains(&format!("{}.public.stranger", db.name)),
        "nothing produced for the uncaptured table"
    );

    // The next start: the rule for the dropped table names a table that is gone.
    let run = crate::common::walcast(&["run", file.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("public.dropped") && run.stderr.contains("does not exist"),
        "{run:?}"
    );
    registry.shutdown().await.unwrap();
}
