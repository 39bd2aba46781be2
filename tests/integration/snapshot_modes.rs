//! `[source] snapshot_mode` behaves as the README's table says: `initial_only` snapshots
//! and stops, `never` and `no_data` stream only, `initial` refuses to go on when its slot
//! was lost after a completed snapshot, and `when_needed` snapshots again instead.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use walcast::registry::RegistryServer;

use crate::common::{consume_records, start_walcast, Consumed};
use crate::common::{stack, TestDb};

/// A table of 40 rows and a connector for it in `mode`, against a registry of its own.
async fn prepare(name: &str, mode: &str) -> (TestDb, RegistryServer, std::path::PathBuf) {
    let registry_dir = tempfile::tempdir().unwrap().keep();
    let registry = RegistryServer::start("127.0.0.1:0".parse().unwrap(), &registry_dir)
        .await
        .unwrap();
    let db = TestDb::new(stack());
    db.psql(
        "CREATE TABLE public.items (id int PRIMARY KEY, note text);
         INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 40) g",
    );
    let file = db.connector_with_registry(
        name,
        &format!("snapshot_mode = \"{mode}\""),
        "[tables.\"public.items\"]",
        &registry.url(),
    );
    assert_eq!(
        crate::common::walcast(&["setup", file.to_str().unwrap()], &[]).code,
        Some(0)
    );
    (db, registry, file)
}

/// Waits (bounded) for `child` to exit on its own; kills it and fails otherwise.
fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("walcast did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = wait_exit(child, Duration::from_secs(30));
}

fn ops(records: &[Consumed]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| r.value.as_ref())
        .map(|v| v["op"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_only_snapshots_and_stops() {
    let (db, registry, file) = prepare("modeonly", "initial_only").await;
    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log);
    let status = wait_exit(&mut walcast, Duration::from_secs(60));
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let topic = format!("{}.public.items", db.name);
    let records =
        consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 40).await;
    assert_eq!(ops(&records), vec!["r"; 40]);
    assert_eq!(
        db.psql(
            "SELECT snapshot_completed FROM walcast.connector_state WHERE connector = 'modeonly'"
        ),
        "t"
    );
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_and_no_data_stream_only_new_changes() {
    for (name, mode) in [("modenever", "never"), ("modenodata", "no_data")] {
        let (db, registry, file) = prepare(name, mode).await;
        let log = db.dir.path().join("walcast.log");
        let mut walcast = start_walcast(&file, &log);
        db.wait_for_slot(&format!("walcast_{name}"), true);
        db.psql(
            "INSERT INTO items VALUES (41, 'new'); UPDATE items SET note = 'changed' WHERE id = 1",
        );
        let topic = format!("{}.public.items", db.name);
        let records =
            consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 2).await;
        stop(&mut walcast);
        assert_eq!(ops(&records), vec!["c", "u"], "{mode}: no snapshot rows");
        registry.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_slot_stops_initial_and_resnapshots_when_needed() {
    let (db, registry, file) = prepare("modelost", "initial").await;
    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.psql("SELECT coalesce((SELECT snapshot_completed::text FROM walcast.connector_state WHERE connector = 'modelost'), '')") != "true" {
        assert!(Instant::now() < deadline, "the snapshot never completed");
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(&mut walcast);
    db.psql("SELECT pg_drop_replication_slot('walcast_modelost')");

    // initial: the changes since the snapshot are gone with the slot; say so and stop.
    let run = Command::new(env!("CARGO_BIN_EXE_walcast"))
        .args(["run", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("when_needed"),
        "names the way out: {stderr}"
    );

    // when_needed: snapshot again, loudly.
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "snapshot_mode = \"initial\"",
        "snapshot_mode = \"when_needed\"",
    );
    std::fs::write(&file, text).unwrap();
    let mut walcast = start_walcast(&file, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("initial snapshot complete")
        || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("initial snapshot complete")
            .count()
            < 2
    {
        assert!(Instant::now() < deadline, "no second snapshot");
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(&mut walcast);
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logs.contains("SLOT LOST"), "{logs}");
    let topic = format!("{}.public.items", db.name);
    let records =
        consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 80).await;
    assert_eq!(
        ops(&records),
        vec!["r"; 80],
        "the table twice, as snapshot rows"
    );
    registry.shutdown().await.unwrap();
}

/// `snapshot_filter` limits the rows the initial snapshot reads (here: even ids of the
/// 40); the stream is not filtered by it, so a change to an odd row still arrives, and
/// `walcast check` rejects a snapshot filter PostgreSQL cannot parse for the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_filter_limits_the_snapshot_not_the_stream() {
    let (db, registry, file) = prepare("modefilter", "initial").await;
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "[tables.\"public.items\"]",
        "[tables.\"public.items\"]\nsnapshot_filter = \"id % 2 = 0\"",
    );
    std::fs::write(&file, &text).unwrap();
    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.psql("SELECT coalesce((SELECT snapshot_completed::text FROM walcast.connector_state WHERE connector = 'modefilter'), '')") != "true" {
        assert!(Instant::now() < deadline, "the snapshot never completed");
        std::thread::sleep(Duration::from_millis(200));
    }
    db.psql("UPDATE items SET note = 'changed' WHERE id = 3");
    let topic = format!("{}.public.items", db.name);
    let records =
        consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 21).await;
    stop(&mut walcast);
    let ids: Vec<(String, i64)> = records
        .iter()
        .filter_map(|r| r.value.as_ref())
        .map(|v| {
            (
                v["op"].as_str().unwrap().to_owned(),
                v["after"]["id"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut expected: Vec<(String, i64)> = (1..=20).map(|i| ("r".to_owned(), i * 2)).collect();
    expected.push(("u".to_owned(), 3));
    assert_eq!(ids, expected);

    // A filter naming a column the table lacks: `walcast check` says which and where.
    std::fs::write(&file, text.replace("id % 2 = 0", "nosuchcolumn > 1")).unwrap();
    let check = crate::common::walcast(&["check", file.to_str().unwrap()], &[]);
    assert_ne!(check.code, Some(0));
    assert!(
        check
            .problems()
            .iter()
            .any(|p| p.contains("snapshot_filter") && p.contains("nosuchcolumn")),
        "{:?}",
        check.lines()
    );
    registry.shutdown().await.unwrap();
}

/// `never` (as `no_data`): a slot dropped after walcast recorded a checkpoint is a gap.
/// walcast stops with one line naming it and both ways out; `when_needed` takes a new
/// snapshot (the row written in the gap arrives as op r); `--accept-slot-loss` streams
/// from a new slot without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_slot_after_a_checkpoint_is_a_named_gap_under_never() {
    let (db, registry, file) = prepare("modegap", "never").await;
    let log = db.dir.path().join("walcast.log");
    let topic = format!("{}.public.items", db.name);
    let mut walcast = start_walcast(&file, &log);
    db.wait_for_slot("walcast_modegap", true);
    db.psql("INSERT INTO items VALUES (41, 'streamed')");
    let records =
        consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 1).await;
    assert_eq!(ops(&records), ["c"]);
    // The clean stop records the checkpoint in walcast.offsets.
    stop(&mut walcast);
    db.psql("SELECT pg_drop_replication_slot('walcast_modegap')");
    db.psql("INSERT INTO items VALUES (42, 'in the gap')");

    // Bounded: before the fix walcast re-created the slot silently and streamed on.
    let refused_log = db.dir.path().join("refused.log");
    let mut refused = Command::new(env!("CARGO_BIN_EXE_walcast"))
        .args(["run", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&refused_log).unwrap())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut refused, Duration::from_secs(60));
    let stderr = std::fs::read_to_string(&refused_log).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one line: {stderr}");
    for part in [
        "slot walcast_modegap is gone after the checkpoint recorded in walcast.offsets",
        "(the last checkpoint)",
        "snapshot_mode = \"when_needed\"",
        "--accept-slot-loss",
    ] {
        assert!(errors[0].contains(part), "`{part}` in {}", errors[0]);
    }
    assert_eq!(
        db.psql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walcast_modegap'"),
        "0",
        "refusing creates no slot"
    );

    // Way out 1: when_needed snapshots the table again, the gap's row with it.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "snapshot_mode = \"never\"",
            "snapshot_mode = \"when_needed\"",
        ),
    )
    .unwrap();
    let mut walcast = start_walcast(&file, &log);
    let records =
        consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 43).await;
    stop(&mut walcast);
    assert_eq!(ops(&records[1..]), vec!["r"; 42]);
    assert!(records[1..]
        .iter()
        .any(|r| r.value.as_ref().unwrap()["after"]["note"] == "in the gap"));
    assert!(std::fs::read_to_string(&log).unwrap().contains("SLOT LOST"));

    // Way out 2: accept the gap and stream from a new slot.
    std::fs::write(&file, &text).unwrap();
    db.psql("SELECT pg_drop_replication_slot('walcast_modegap')");
    db.psql("INSERT INTO items VALUES (43, 'in the second gap')");
    let mut accepting = Command::new(env!("CARGO_BIN_EXE_walcast"))
        .args(["run", "--accept-slot-loss", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    db.wait_for_slot("walcast_modegap", true);
    db.psql("INSERT INTO items VALUES (44, 'after')");
    let records =
        consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 44).await;
    stop(&mut accepting);
    let last = records.last().unwrap().value.as_ref().unwrap();
    assert_eq!(
        (last["op"].as_str(), last["after"]["id"].as_i64()),
        (Some("c"), Some(44))
    );
    assert!(
        !records
            .iter()
            .any(|r| r.value.as_ref().unwrap()["after"]["note"] == "in the second gap"),
        "the accepted gap is not captured"
    );
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("--accept-slot-loss: creating a new slot"),
        "the accepted gap is logged: {logs}"
    );
    registry.shutdown().await.unwrap();
}

/// The role's own output settings (`ALTER ROLE … SET`: DateStyle SQL/DMY, IntervalStyle
/// sql_standard, extra_float_digits 0, bytea_output escape, a German lc_monetary where
/// the locale exists) change nothing: the snapshot connections fix the same settings as
/// the replication connection, so a snapshot row equals the streamed change of the same
/// values field for field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_output_settings_change_no_snapshot_value() {
    let registry_dir = tempfile::tempdir().unwrap();
    let registry = RegistryServer::start("127.0.0.1:0".parse().unwrap(), registry_dir.path())
        .await
        .unwrap();
    let db = TestDb::new(stack());
    db.psql(&format!(
        "ALTER ROLE postgres IN DATABASE \"{0}\" SET DateStyle = 'SQL, DMY';
         ALTER ROLE postgres IN DATABASE \"{0}\" SET IntervalStyle = 'sql_standard';
         ALTER ROLE postgres IN DATABASE \"{0}\" SET extra_float_digits = 0;
         ALTER ROLE postgres IN DATABASE \"{0}\" SET bytea_output = 'escape';
         ALTER ROLE postgres IN DATABASE \"{0}\" SET TimeZone = 'Asia/Kolkata';",
        db.name
    ));
    // The settings are in force for an ordinary session of this role here.
    assert_eq!(
        db.psql("SELECT current_setting('DateStyle') || ' ' || current_setting('bytea_output')"),
        "SQL, DMY escape"
    );
    let row = "'2026-12-07', '2026-12-07 13:14:15.123456', '2026-12-07 13:14:15.5+00', \
               '1 year 2 mons 3 days 04:05:06.7', 0.1::float8, 0.1::float4, '\\x00ff10'::bytea, \
               '12.34'::money, '13:14:15.25+02'::timetz";
    db.psql(&format!(
        "CREATE TABLE public.vals (id int PRIMARY KEY, d date, ts timestamp, tstz timestamptz, \
           iv interval, f8 float8, f4 float4, b bytea, m money, tz timetz);
         INSERT INTO vals VALUES (1, {row})"
    ));
    let file = db.connector_with_registry(
        "rolesettings",
        "",
        "[tables.\"public.vals\"]",
        &registry.url(),
    );
    let mut walcast = crate::common::start_streaming(&db, &file, "rolesettings");
    let log = db.dir.path().join("walcast.log");
    db.psql(&format!("INSERT INTO vals VALUES (2, {row})"));
    let topic = format!("{}.public.vals", db.name);
    let records =
        consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 2).await;
    stop(&mut walcast);
    assert_eq!(
        ops(&records),
        ["r", "c"],
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let without_id = |i: usize| {
        let mut after = records[i].value.as_ref().unwrap()["after"].clone();
        after.as_object_mut().unwrap().remove("id");
        after
    };
    assert_eq!(without_id(0), without_id(1));
    // And the values are the right ones, not merely equal.
    let after = without_id(1);
    assert_eq!(after["d"], 20794, "days since the epoch: {after}");
    assert_eq!(after["tstz"], "2026-12-07T13:14:15.500000Z", "{after}");
    assert_eq!(after["f8"], 0.1, "{after}");
    registry.shutdown().await.unwrap();
}
