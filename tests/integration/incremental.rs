//! Incremental snapshots while streaming (DBLog watermarks): requested with
//! `walcast snapshot --table` during a write workload, the topic replayed into a map by
//! key equals the table, and no key's version ever goes backwards.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::{consume_records, start_streaming};
use crate::common::{stack, start_registry, stop_with_sigterm, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_snapshot_during_writes_replays_to_the_table() {
    incremental_scenario("incr", 3000, 150, false).await;
}

/// Killed with SIGKILL in the middle of the snapshot, the restarted connector continues
/// from the progress recorded with its checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_snapshot_continues_after_a_kill_9() {
    incremental_scenario("incrkill", 8000, 100, true).await;
}

async fn incremental_scenario(name: &str, rows: i64, chunk: usize, kill: bool) {
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    db.psql(
        "CREATE TABLE public.items (id int PRIMARY KEY, version int NOT NULL, note text);
         INSERT INTO items SELECT g, 0, 'row ' || g FROM generate_series(1, 3000) g",
    );
    db.psql(&format!(
        "INSERT INTO items SELECT g, 0, 'row ' || g FROM generate_series(3001, {rows}) g"
    ));
    let file = db.connector_with_registry(
        name,
        &format!("snapshot_mode = \"never\"\nsnapshot_chunk_size = {chunk}"),
        "[tables.\"public.items\"]",
        &registry.url(),
    );
    let mut walcast = start_streaming(&db, &file, name);

    // A workload that bumps versions, deletes and inserts, while the snapshot runs.
    let writer = {
        let dbname = db.name.clone();
        std::thread::spawn(move || {
            let mut sql = String::new();
            for i in 0..400 {
                let id = (i * 7919) % 3000 + 1;
                sql.push_str(&format!(
                    "BEGIN; UPDATE items SET version = version + 1, note = 'w{i}' WHERE id = {id}; UPDATE items SET version = version + 1 WHERE id = {}; COMMIT;\n",
                    (id * 13) % 3000 + 1
                ));
                if i % 10 == 0 {
                    sql.push_str(&format!(
                        "DELETE FROM items WHERE id = {};\n",
                        (i * 31) % 3000 + 1
                    ));
                    sql.push_str(&format!(
                        "INSERT INTO items VALUES ({}, 0, 'new') ON CONFLICT DO NOTHING;\n",
                        3001 + i
                    ));
                }
                if i % 50 == 0 {
                    sql.push_str("SELECT pg_sleep(0.05);\n");
                }
            }
            crate::common::run_script(stack, &dbname, &sql);
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let signal = crate::common::walcast(
        &[
            "snapshot",
            file.to_str().unwrap(),
            "--table",
            "public.items",
        ],
        &[],
    );
    assert_eq!(signal.code, Some(0), "{signal:?}");
    let log = db.dir.path().join("walcast.log");
    if kill {
        // Past the first recorded checkpoint (once a second) and before the end.
        std::thread::sleep(Duration::from_millis(2500));
        let _ = std::process::Command::new("kill")
            .args(["-9", &walcast.id().to_string()])
            .status();
        let _ = walcast.wait();
        assert!(
            !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("incremental snapshot of the table complete"),
            "the snapshot finished before the kill; make the table larger"
        );
        walcast = crate::common::start_walcast(&file, &log);
    }
    writer.join().unwrap();

    // Bounded wait for the snapshot to finish.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("incremental snapshot of the table complete")
    {
        assert!(
            Instant::now() < deadline,
            "the incremental snapshot never finished\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let topic = format!("{}.public.items", db.name);
    let records =
        consume_records(stack.kafka_bootstrap(), &topic, Some(&registry.url()), 3000).await;
    let _ = stop_with_sigterm(&mut walcast);

    // Replay by key; a key's version never goes backwards, and nothing deleted comes back.
    let mut map: BTreeMap<i64, i64> = BTreeMap::new();
    let mut newest: BTreeMap<i64, i64> = BTreeMap::new();
    let mut deleted: BTreeMap<i64, bool> = BTreeMap::new();
    let mut reads = 0;
    for r in &records {
        let Some(value) = &r.value else { continue };
        let op = value["op"].as_str().unwrap();
        if op == "d" {
            let id = value["before"]["id"].as_i64().unwrap();
            map.remove(&id);
            deleted.insert(id, true);
            continue;
        }
        let id = value["after"]["id"].as_i64().unwrap();
        let version = value["after"]["version"].as_i64().unwrap();
        if op == "r" {
            reads += 1;
            assert_eq!(value["source"]["snapshot"], "incremental");
            assert!(
                !deleted.contains_key(&id),
                "snapshot row of id {id} after its delete"
            );
        }
        let last = newest.entry(id).or_insert(version);
        assert!(
            version >= *last,
            "id {id}: version {version} after {last} ({op})"
        );
        *last = version;
        map.insert(id, version);
    }
    let table: BTreeMap<i64, i64> = db
        .psql("SELECT string_agg(id || ':' || version, ',' ORDER BY id) FROM items")
        .split(',')
        .map(|p| {
            let (a, b) = p.split_once(':').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    assert!(
        reads as i64 > rows * 2 / 3,
        "most rows arrive as snapshot reads ({reads})"
    );
    if kill {
        let logs = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            logs.contains("continuing the incremental snapshot recorded with the checkpoint"),
            "the restart continued the snapshot\n{logs}"
        );
    }
    assert_eq!(map.len(), table.len(), "same keys as the table");
    assert_eq!(map, table, "the replayed topic equals the table");
    registry.shutdown().await.unwrap();
}

/// An initial snapshot killed with SIGKILL five times while a workload writes: each
/// restart resumes it (rows Kafka holds are skipped by key, the rest read in chunks while
/// streaming), no row is emitted twice as a snapshot read, no key's version goes
/// backwards, and the replayed topic equals the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_snapshot_killed_five_times_resumes_without_repeats() {
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    let rows = 150_000;
    db.psql(&format!(
        "CREATE TABLE public.items (id int PRIMARY KEY, version int NOT NULL, note text);
         INSERT INTO items SELECT g, 0, 'row ' || g FROM generate_series(1, {rows}) g"
    ));
    let file = db.connector(
        "resume",
        "snapshot_chunk_size = 5000",
        "[tables.\"public.items\"]",
    );
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("http://127.0.0.1:8081", &registry.url())
        .replace("[kafka]", "[kafka]\npartitions = 3");
    std::fs::write(&file, text).unwrap();
    assert_eq!(
        crate::common::walcast(&["setup", file.to_str().unwrap()], &[]).code,
        Some(0)
    );
    let log = db.dir.path().join("walcast.log");
    let mut walcast = crate::common::start_walcast(&file, &log);

    // Writes throughout: version bumps, deletes and inserts of new keys.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let env = stack.env.clone();
        let dbname = db.name.clone();
        std::thread::spawn(move || {
            let bin = std::path::Path::new(&env["WALCAST_PG_BIN"]).join("psql");
            for round in 0..400 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let mut sql = String::new();
                for i in 0..20 {
                    let n = round * 20 + i;
                    let id = (n * 7919) % rows + 1;
                    sql.push_str(&format!(
                        "UPDATE items SET version = version + 1 WHERE id = {id};\n"
                    ));
                    if n % 15 == 0 {
                        sql.push_str(&format!(
                            "DELETE FROM items WHERE id = {};\nINSERT INTO items VALUES ({}, 0, 'new');\n",
                            (n * 31) % rows + 1,
                            1_000_000 + n
                        ));
                    }
                }
                let ok = std::process::Command::new(&bin)
                    .args([
                        "-X",
                        "-q",
                        "-h",
                        &env["WALCAST_PG_HOST"],
                        "-p",
                        &env["WALCAST_PG_PORT"],
                        "-U",
                        "postgres",
                        "-d",
                        &dbname,
                        "-c",
                        &sql,
                    ])
                    .stdout(std::process::Stdio::null())
                    .status()
                    .unwrap()
                    .success();
                assert!(ok);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let completed = || {
        db.psql("SELECT coalesce((SELECT snapshot_completed::text FROM walcast.connector_state WHERE connector = 'resume'), 'none')")
    };
    let mut mid_snapshot_kills = 0;
    for round in 0..5u64 {
        std::thread::sleep(Duration::from_millis(900 + 250 * round));
        if completed() == "false" {
            mid_snapshot_kills += 1;
        }
        let _ = std::process::Command::new("kill")
            .args(["-9", &walcast.id().to_string()])
            .status();
        let _ = walcast.wait();
        walcast = crate::common::start_walcast(&file, &log);
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    while completed() != "true" {
        assert!(
            Instant::now() < deadline,
            "the snapshot never completed\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let total: usize = db.psql("SELECT count(*) FROM items").parse().unwrap();

    let topic = format!("{}.public.items", db.name);
    let records = consume_records(
        stack.kafka_bootstrap(),
        &topic,
        Some(&registry.url()),
        total,
    )
    .await;
    let _ = stop_with_sigterm(&mut walcast);
    let logs = std::fs::read_to_string(&log).unwrap_or_default();

    let mut map: BTreeMap<i64, i64> = BTreeMap::new();
    let mut newest: BTreeMap<i64, i64> = BTreeMap::new();
    let mut reads: BTreeMap<i64, u32> = BTreeMap::new();
    for r in &records {
        let Some(value) = &r.value else { continue };
        let op = value["op"].as_str().unwrap();
        if op == "d" {
            map.remove(&value["before"]["id"].as_i64().unwrap());
            continue;
        }
        let id = value["after"]["id"].as_i64().unwrap();
        let version = value["after"]["version"].as_i64().unwrap();
        if op == "r" {
            *reads.entry(id).or_default() += 1;
        }
        let last = newest.entry(id).or_insert(version);
        assert!(
            version >= *last,
            "id {id}: version {version} after {last} ({op})"
        );
        *last = version;
        map.insert(id, version);
    }
    let repeated: Vec<_> = reads.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        repeated.is_empty(),
        "snapshot rows emitted twice, e.g. {repeated:?} ({} keys)\n{logs}",
        reads.values().filter(|n| **n > 1).count()
    );
    let table: BTreeMap<i64, i64> = db
        .psql("SELECT string_agg(id || ':' || version, ',' ORDER BY id) FROM items")
        .split(',')
        .map(|p| {
            let (a, b) = p.split_once(':').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    assert_eq!(map.len(), table.len(), "same keys as the table");
    assert!(map == table, "the replayed topic equals the table");
    assert!(
        mid_snapshot_kills >= 3,
        "at least three kills fell inside the snapshot ({mid_snapshot_kills}); make the table larger\n{logs}"
    );
    assert!(logs.contains("resuming it while streaming"), "{logs}");
    registry.shutdown().await.unwrap();
}
