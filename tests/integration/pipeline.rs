//! walcast end to end: PostgreSQL → `walcast run` → Kafka, with the dev registry,
//! checked against an oracle walcast did not compute (a `test_decoding` slot created
//! before the workload): every committed change exactly once, in order per key, across
//! a kill -9 in the middle of the stream.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

use crate::common::{
    consume, consume_records, consume_until, log_excerpt, settled_oracle, stack, start_registry,
    start_streaming, start_walcast, stop_with_sigterm, Consumed, OrdersScenario, TestDb,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_kafka_exactly_once_across_a_kill_9() {
    kill_9_scenario("e2e", "exactly_once", 1).await;
}

/// Kafka transactions: killed several times mid-stream, a read_committed consumer still
/// sees every change once (records of a Kafka transaction cut short by the kill are
/// aborted when the next instance starts, never shown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_transactions_deliver_exactly_once_across_kills() {
    kill_9_scenario("txn", "transactional", 3).await;
}

async fn kill_9_scenario(name: &str, mode: &str, kills: usize) {
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    let scenario = OrdersScenario::builder(&db, name, stack.kafka_bootstrap(), &registry.url())
        .before_rule(&format!("[delivery]\nmode = \"{mode}\""))
        .create();
    let (oracle_slot, file, log) = (scenario.oracle_slot, scenario.file, scenario.log);
    let mut walcast = start_walcast(&file, &log);
    // Capture starts when walcast streams from its slot
    // (active: past its consistent point and the empty snapshot; a change committed
    // while the slot is still being created would arrive as a snapshot row).
    db.wait_for_slot(&format!("walcast_{name}"), true);
    // A workload in transactions of a few changes each, concurrently with walcast.
    let workload = |from: i32, to: i32| {
        let mut sql = String::new();
        for i in from..to {
            sql.push_str(&format!(
                "BEGIN; INSERT INTO orders VALUES ({i}, 'new', {i}.50); UPDATE orders SET status = 'paid' WHERE id = {i}; {} COMMIT;\n",
                if i % 3 == 0 { format!("DELETE FROM orders WHERE id = {i};") } else { String::new() }
            ));
        }
        sql
    };
    let stack_env = stack.env.clone();
    let dbname = db.name.clone();
    let run_sql = move |sql: String| {
        let bin = std::path::Path::new(&stack_env["WALCAST_PG_BIN"]).join("psql");
        let status = Command::new(bin)
            .args([
                "-X",
                "-q",
                "-h",
                &stack_env["WALCAST_PG_HOST"],
                "-p",
                &stack_env["WALCAST_PG_PORT"],
                "-U",
                "postgres",
                "-d",
                &dbname,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(sql.as_bytes())?;
                child.wait()
            })
            .unwrap();
        assert!(status.success());
    };
    run_sql(workload(1, 300));
    // Kill -9 while more is being written and streamed, `kills` times.
    let mut next = 300;
    for round in 0..kills {
        let writer = {
            let run_sql = run_sql.clone();
            let sql = workload(next, next + 300);
            std::thread::spawn(move || run_sql(sql))
        };
        next += 300;
        std::thread::sleep(Duration::from_millis(700 + 150 * round as u64));
        let _ = Command::new("kill")
            .args(["-9", &walcast.id().to_string()])
            .status();
        let _ = walcast.wait();
        writer.join().unwrap();
        walcast = start_walcast(&file, &log);
    }
    run_sql(workload(next, next + 100));

    // The oracle is read until it stops growing (decoding trails the commits a little).
    let expected = settled_oracle(&db, &oracle_slot);
    let topic = format!("{}.public.orders", db.name);
    let (got, tombstones) = consume(
        stack.kafka_bootstrap(),
        &topic,
        &registry.url(),
        expected.len(),
    )
    .await;
    let stopped = stop_with_sigterm(&mut walcast);

    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    if got != expected {
        let first = got
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        eprintln!(
            "first difference at {first}: got {:?} expected {:?}",
            got.get(first..first + 5),
            expected.get(first..first + 5)
        );
        eprintln!(
            "oracle total {}, ids {:?}..{:?}; table: {}",
            expected.len(),
            expected.first(),
            expected.last(),
            db.psql("SELECT count(*) || ' rows, max id ' || max(id) FROM orders")
        );
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "same number of changes as the oracle\nlog:\n{logs}"
    );
    assert_eq!(got, expected, "every change exactly once, in commit order");
    assert_eq!(
        tombstones,
        expected.iter().filter(|(op, ..)| op == "d").count(),
        "a tombstone after each delete"
    );
    assert!(stopped.success(), "clean stop on SIGTERM\n{logs}");
    if mode == "transactional" {
        assert!(
            logs.contains("resuming: events at or below the recorded position"),
            "each restart resumes from the position committed with the last Kafka transaction\n{logs}"
        );
    }
    // The slot's confirmed position moved (WAL is released) and no slot is left active.
    let confirmed = db.psql(&format!("SELECT confirmed_flush_lsn > '0/0' FROM pg_replication_slots WHERE slot_name = 'walcast_{name}' AND database = '{}'", db.name));
    assert_eq!(confirmed, "t");
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluents_python_client_decodes_walcast_records() {
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    db.psql("CREATE TYPE mood AS ENUM ('sad', 'happy')");
    db.psql(
        "CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), placed timestamptz,
         attrs jsonb, feeling mood, tags text[], qty int NOT NULL DEFAULT 7)",
    );
    let file = db.set_up_connector("py", "", "[tables.\"public.items\"]", &registry.url());
    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log);
    db.wait_for_slot("walcast_py", false);
    // The reader starts before walcast has created the topic (it does so at the first
    // event), as a consumer deployed beside a new connector would.
    let topic = format!("{}.public.items", db.name);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_topic.py");
    let reader = Command::new("python3")
        .arg(script)
        .args([stack.kafka_bootstrap(), &registry.url(), &topic, "4"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    db.psql("INSERT INTO items VALUES (1, 'lamp', 12.50, '2026-01-16 10:00:00+02', '{\"w\": 3}', 'happy', '{a,b}')");
    db.psql("UPDATE items SET price = 13.00 WHERE id = 1");
    db.psql("DELETE FROM items WHERE id = 1");
    let out = reader.wait_with_output().expect("python3");
    let _ = stop_with_sigterm(&mut walcast);
    assert!(
        out.status.success(),
        "python failed: {}\nwalcast log: {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = records.as_array().unwrap();
    assert_eq!(
        records.len(),
        4,
        "create, update, delete, tombstone: {records:#?}\npython stderr: {}\nwalcast log: {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let ops: Vec<&str> = records
        .iter()
        .map(|r| r["value"]["op"].as_str().unwrap_or("tombstone"))
        .collect();
    assert_eq!(ops, ["c", "u", "d", "tombstone"]);
    for r in records {
        assert_eq!(r["key"]["id"], 1, "{r}");
        assert!(
            r["headers"]["walcast.position"]
                .as_str()
                .is_some_and(|p| p.contains('#')),
            "{r}"
        );
    }
    let created = &records[0]["value"];
    let after = &created["after"];
    assert_eq!(after["name"], "lamp");
    assert_eq!(after["price"], "12.50", "Connect Decimal → Python Decimal");
    assert_eq!(
        after["placed"], "2026-01-16T08:00:00.000000Z",
        "ZonedTimestamp in UTC"
    );
    assert_eq!(after["attrs"], "{\"w\": 3}");
    assert_eq!(after["feeling"], "happy");
    assert_eq!(after["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(created["source"]["connector"], "postgresql");
    assert_eq!(created["source"]["table"], "items");
    assert_eq!(created["source"]["db"], db.name.as_str());
    assert_eq!(records[1]["value"]["after"]["price"], "13.00");
    assert_eq!(after["qty"], 7);
    // Column defaults reach the schema as Debezium writes them.
    let latest: serde_json::Value = serde_json::from_str(
        &reqwest::get(format!(
            "{}/subjects/{topic}-value/versions/latest",
            registry.url()
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap(),
    )
    .unwrap();
    let schema = latest["schema"].as_str().unwrap();
    assert!(schema.contains("\"connect.default\":7"), "{schema}");
    assert_eq!(records[2]["value"]["before"]["id"], 1);
    registry.shutdown().await.unwrap();
}

/// A fault in the middle of the stream that walcast must ride out.
enum MidStream {
    /// PostgreSQL restarts (fast shutdown) between two batches of writes.
    PostgresRestart,
    /// The broker is down while writes go on, then comes back.
    BrokerOutage,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_stream_loses_and_repeats_nothing() {
    mid_stream(MidStream::PostgresRestart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_mid_stream_loses_and_repeats_nothing() {
    mid_stream(MidStream::BrokerOutage).await;
}

/// Writes before, during and after `fault`; the topic must equal the oracle.
async fn mid_stream(fault: MidStream) {
    let (pg, kafka) = match fault {
        MidStream::PostgresRestart => (crate::common::restartable_postgres(), stack()),
        MidStream::BrokerOutage => (stack(), crate::common::restartable_kafka()),
    };
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(pg);
    let name = match fault {
        MidStream::PostgresRestart => "restart",
        MidStream::BrokerOutage => "outage",
    };
    let scenario = OrdersScenario::new(&db, name, kafka.kafka_bootstrap(), &registry.url());
    let mut walcast = scenario.start(&db);
    let logs = match fault {
        MidStream::PostgresRestart => {
            for i in 1..=100 {
                db.psql(&format!("INSERT INTO orders VALUES ({i}, 'new', {i}); UPDATE orders SET status = 'paid' WHERE id = {i}"));
            }
            pg.restart_postgres();
            for i in 101..=200 {
                db.psql(&format!(
                    "INSERT INTO orders VALUES ({i}, 'new', {i}); DELETE FROM orders WHERE id = {}",
                    i - 100
                ));
            }
            let logs = scenario
                .assert_exactly_once(&db, &mut walcast, 400, "the restart")
                .await;
            assert!(
                logs.contains("reconnecting from the slot's confirmed position"),
                "the restart was noticed\n{}",
                log_excerpt(&scenario.log)
            );
            logs
        }
        MidStream::BrokerOutage => {
            for i in 1..=50 {
                db.psql(&format!("INSERT INTO orders VALUES ({i}, 'new', {i})"));
            }
            kafka.stop_services();
            for i in 51..=100 {
                db.psql(&format!("INSERT INTO orders VALUES ({i}, 'new', {i}); UPDATE orders SET status = 'paid' WHERE id = {}", i - 50));
            }
            std::thread::sleep(Duration::from_secs(2));
            assert!(
                walcast.try_wait().unwrap().is_none(),
                "walcast waits for the broker instead of exiting"
            );
            kafka.start_services("kafka");
            scenario
                .assert_exactly_once(&db, &mut walcast, 150, "the broker outage")
                .await
        }
    };
    // The final checkpoint is recorded in the compacted offsets topic, and matches the
    // slot's confirmed position.
    let checkpoint = last_checkpoint(kafka.kafka_bootstrap(), name)
        .expect("a checkpoint record for the connector");
    assert_eq!(checkpoint["slot"], format!("walcast_{name}"), "{logs}");
    let confirmed = db.psql(&format!(
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'walcast_{name}'"
    ));
    assert_eq!(
        checkpoint["flush_lsn"].as_str(),
        Some(confirmed.as_str()),
        "the record matches the slot's confirmed position"
    );
    registry.shutdown().await.unwrap();
}

/// The newest record of `connector` in walcast's offsets topic, read by assignment to
/// the topic's end (a consumer group's join could outlast a quiet-period deadline).
fn last_checkpoint(bootstrap: &str, connector: &str) -> Option<serde_json::Value> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("offsets-check-{connector}-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(
            walcast::sink::kafka::OFFSETS_TOPIC,
            0,
            rdkafka::Offset::Beginning,
        )
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut found = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.key() == Some(connector.as_bytes()) => {
                found = m.payload().and_then(|p| serde_json::from_slice(p).ok());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            _ => {}
        }
    }
    found
}

/// Reads every change record of `topic` as (op, id, status, snapshot marker).
async fn consume_all(
    bootstrap: &str,
    topic: &str,
    registry: &str,
    at_least: usize,
) -> Vec<(String, i64, Option<String>, Option<String>)> {
    let client = [("bootstrap.servers", bootstrap)];
    let records = consume_until(
        &client,
        topic,
        Some(registry),
        Duration::from_secs(90),
        |r| r.iter().filter(|c| c.value.is_some()).count() >= at_least,
    )
    .await;
    records
        .iter()
        .filter_map(|c| {
            let (op, id, _) = c.change()?;
            let value = c.value.as_ref()?;
            let row = &value[if op == "d" { "before" } else { "after" }];
            let status = row["status"].as_str().map(str::to_owned);
            let marker = value["source"]["snapshot"].as_str().map(str::to_owned);
            Some((op, id, status, marker))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_snapshot_and_the_stream_add_up_to_the_table() {
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, total numeric(10,2))");
    db.psql("INSERT INTO orders SELECT i, 'old', i FROM generate_series(1, 20000) i");
    let file = db.set_up_connector("snap", "", "[tables.\"public.orders\"]", &registry.url());
    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log);
    // Changes while the snapshot is read: updates, deletes and inserts across the key range.
    db.wait_for_slot("walcast_snap", false);
    for i in 0..40 {
        db.psql(&format!(
            "UPDATE orders SET status = 'new{i}' WHERE id % 40 = {i}; DELETE FROM orders WHERE id = {}; INSERT INTO orders VALUES ({}, 'added', 1)",
            500 * i + 7,
            30000 + i
        ));
    }
    let expected: BTreeMap<i64, String> = db
        .psql("SELECT id || ' ' || status FROM orders")
        .lines()
        .map(|l| {
            let (id, status) = l.split_once(' ').unwrap();
            (id.parse().unwrap(), status.to_owned())
        })
        .collect();
    let topic = format!("{}.public.orders", db.name);
    let records = consume_all(stack.kafka_bootstrap(), &topic, &registry.url(), 36_000).await;
    let stopped = stop_with_sigterm(&mut walcast);
    let logs = std::fs::read_to_string(&log).unwrap_or_default();

    let reads: Vec<_> = records.iter().filter(|r| r.0 == "r").collect();
    assert_eq!(
        reads.len(),
        20000,
        "every row existing at the consistent point, once\n{logs}"
    );
    assert_eq!(reads[0].3.as_deref(), Some("first"));
    assert_eq!(reads[reads.len() - 1].3.as_deref(), Some("last"));
    assert!(reads[1..reads.len() - 1]
        .iter()
        .all(|r| r.3.as_deref() == Some("true")));
    assert!(records
        .iter()
        .filter(|r| r.0 != "r")
        .all(|r| r.3.as_deref() == Some("false")));
    // Replayed into a map by key, the topic equals the table.
    let mut replayed: BTreeMap<i64, String> = BTreeMap::new();
    for (op, id, status, _) in &records {
        match op.as_str() {
            "d" => {
                replayed.remove(id);
            }
            _ => {
                replayed.insert(*id, status.clone().unwrap());
            }
        }
    }
    assert_eq!(replayed.len(), expected.len());
    assert!(
        replayed == expected,
        "the replayed topic equals the table\n{logs}"
    );
    assert!(stopped.success(), "{logs}");
    assert_eq!(
        db.psql("SELECT snapshot_completed FROM walcast.connector_state WHERE connector = 'snap'"),
        "t"
    );
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_metadata_and_key_change_headers_reach_kafka() {
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL)");
    let file = db.connector_with_registry(
        "txmeta",
        "",
        "[events]\nprovide_transaction_metadata = true\n[tables.\"public.orders\"]",
        &registry.url(),
    );
    let mut walcast = start_streaming(&db, &file, "txmeta");
    db.psql(
        "BEGIN; INSERT INTO orders VALUES (1, 'new'); UPDATE orders SET id = 2, status = 'moved' WHERE id = 1; COMMIT",
    );

    let topic = format!("{}.public.orders", db.name);
    let rows = consume_records(stack.kafka_bootstrap(), &topic, Some(&registry.url()), 4).await;
    let tx_topic = format!("{}.transaction", db.name);
    let boundaries =
        consume_records(stack.kafka_bootstrap(), &tx_topic, Some(&registry.url()), 2).await;
    let stopped = stop_with_sigterm(&mut walcast);
    let logs = std::fs::read_to_string(db.dir.path().join("walcast.log")).unwrap_or_default();
    assert!(stopped.success(), "{logs}");

    // The table's records: create, then the key change as delete + tombstone + create.
    let ops: Vec<&str> = rows
        .iter()
        .map(|r| {
            r.value
                .as_ref()
                .map_or("tombstone", |v| v["op"].as_str().unwrap())
        })
        .collect();
    assert_eq!(ops, ["c", "d", "tombstone", "c"], "{rows:#?}\n{logs}");
    let keys: Vec<i64> = rows
        .iter()
        .map(|r| r.key.as_ref().unwrap()["id"].as_i64().unwrap())
        .collect();
    assert_eq!(keys, [1, 1, 1, 2]);
    // Debezium's key-change headers: the key as Connect's header converter prints it.
    assert_eq!(rows[0].headers.get("__debezium.newkey"), None);
    assert_eq!(rows[0].headers.get("__debezium.oldkey"), None);
    for r in &rows[1..3] {
        assert_eq!(r.headers["__debezium.newkey"], r#"{"id":2}"#, "{r:?}");
        assert_eq!(r.headers.get("__debezium.oldkey"), None);
    }
    assert_eq!(rows[3].headers["__debezium.oldkey"], r#"{"id":1}"#);
    assert_eq!(rows[3].headers.get("__debezium.newkey"), None);
    assert_eq!(rows[3].value.as_ref().unwrap()["after"]["status"], "moved");

    // Every event's transaction block: id <xid>:<its lsn>, counted in order.
    let xid = rows[0].value.as_ref().unwrap()["source"]["txId"]
        .as_i64()
        .unwrap();
    let mut orders = Vec::new();
    for r in rows.iter().filter(|r| r.value.is_some()) {
        let v = r.value.as_ref().unwrap();
        let block = &v["transaction"];
        assert_eq!(
            block["id"],
            format!("{xid}:{}", v["source"]["lsn"]),
            "{block}"
        );
        assert_eq!(v["source"]["txId"], xid);
        orders.push((
            block["total_order"].as_i64().unwrap(),
            block["data_collection_order"].as_i64().unwrap(),
        ));
    }
    assert_eq!(orders, [(1, 1), (2, 2), (3, 3)]);

    // BEGIN and END on <prefix>.transaction, keyed by id, END with the counts.
    assert_eq!(boundaries.len(), 2, "{boundaries:#?}");
    let begin = boundaries[0].value.as_ref().unwrap();
    let end = boundaries[1].value.as_ref().unwrap();
    assert_eq!(begin["status"], "BEGIN");
    assert_eq!(end["status"], "END");
    let first = rows[0].value.as_ref().unwrap();
    assert_eq!(
        begin["id"], first["transaction"]["id"],
        "BEGIN's LSN is the first event's"
    );
    assert_eq!(begin["event_count"], serde_json::Value::Null);
    assert!(end["id"].as_str().unwrap().starts_with(&format!("{xid}:")));
    assert_eq!(boundaries[0].key.as_ref().unwrap()["id"], begin["id"]);
    assert_eq!(boundaries[1].key.as_ref().unwrap()["id"], end["id"]);
    assert_eq!(end["event_count"], 3);
    assert_eq!(
        end["data_collections"],
        serde_json::json!([{"data_collection": "public.orders", "event_count": 3}])
    );
    assert_eq!(begin["ts_ms"], first["source"]["ts_ms"], "commit time");
    // The metadata records are records of the transaction: same commit LSN in their
    // positions, BEGIN first and END last.
    let commit_of = |r: &Consumed| {
        r.headers["walcast.position"]
            .split('#')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(commit_of(&boundaries[0]), commit_of(&rows[0]));
    assert_eq!(commit_of(&boundaries[1]), commit_of(&rows[3]));
    assert!(boundaries[0].headers["walcast.position"].ends_with("#0"));
    let index = |r: &Consumed| -> u32 {
        r.headers["walcast.position"]
            .split('#')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(index(&boundaries[1]), index(&rows[3]) + 1);
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_with_schema_records_need_no_registry() {
    let stack = stack();
    let db = TestDb::new(stack);
    db.psql(
        "CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2))",
    );
    let file = db.connector(
        "jsonfmt",
        "",
        "[events]\nformat = \"json_with_schema\"\n[tables.\"public.items\"]",
    );
    // No [registry] at all: the JSON formats use none.
    let text_file = std::fs::read_to_string(&file)
        .unwrap()
        .replace("[registry]\nurl = \"http://127.0.0.1:8081\"\n", "");
    assert!(!text_file.contains("[registry]"));
    std::fs::write(&file, text_file).unwrap();
    let mut walcast = start_streaming(&db, &file, "jsonfmt");
    db.psql("INSERT INTO items VALUES (1, 'lamp', 12.50)");
    db.psql("UPDATE items SET price = 13.00 WHERE id = 1");
    db.psql("DELETE FROM items WHERE id = 1");

    let topic = format!("{}.public.items", db.name);
    let records = consume_records(stack.kafka_bootstrap(), &topic, None, 4).await;
    let stopped = stop_with_sigterm(&mut walcast);
    let logs = std::fs::read_to_string(db.dir.path().join("walcast.log")).unwrap_or_default();
    assert!(stopped.success(), "{logs}");
    assert_eq!(records.len(), 4, "{records:#?}\n{logs}");

    for r in &records {
        let key = r.key.as_ref().unwrap();
        assert_eq!(
            key["schema"],
            serde_json::json!({"type": "struct", "fields": [{"type": "int32", "optional": false, "field": "id"}],
                "optional": false, "name": format!("{}.public.items.Key", db.name)})
        );
        assert_eq!(key["payload"], serde_json::json!({"id": 1}));
    }
    assert_eq!(records[3].value, None, "the tombstone");
    let ops: Vec<&str> = records[..3]
        .iter()
        .map(|r| r.value.as_ref().unwrap()["payload"]["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["c", "u", "d"]);
    let create = records[0].value.as_ref().unwrap();
    assert_eq!(
        create.as_object().unwrap().len(),
        2,
        "schema and payload only"
    );
    let schema = &create["schema"];
    assert_eq!(schema["type"], "struct");
    assert_eq!(schema["name"], format!("{}.public.items.Envelope", db.name));
    assert_eq!(schema["version"], 2);
    let field_names: Vec<&str> = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        field_names,
        [
            "before",
            "after",
            "source",
            "transaction",
            "op",
            "ts_ms",
            "ts_us",
            "ts_ns"
        ]
    );
    let price = &schema["fields"][1]["fields"][2];
    assert_eq!(price["name"], "org.apache.kafka.connect.data.Decimal");
    assert_eq!(price["parameters"]["scale"], "2");
    let payload = &create["payload"];
    assert_eq!(payload["before"], serde_json::Value::Null);
    assert_eq!(
        payload["after"],
        serde_json::json!({"id": 1, "name": "lamp", "price": "BOI="}),
        "12.50 is the unscaled 1250 in base64, as JsonConverter writes a Decimal"
    );
    assert_eq!(payload["source"]["connector"], "postgresql");
    assert_eq!(payload["source"]["table"], "items");
    assert_eq!(payload["transaction"], serde_json::Value::Null);
    let update = &records[1].value.as_ref().unwrap()["payload"];
    assert_eq!(update["after"]["price"], "BRQ=", "13.00");
    let delete = &records[2].value.as_ref().unwrap()["payload"];
    assert_eq!(delete["before"]["id"], 1);
    assert_eq!(delete["after"], serde_json::Value::Null);
}

/// The configs set on `topic` (Kafka's report without the entries left at their
/// defaults).
async fn topic_configs(bootstrap: &str, topic: &str) -> BTreeMap<String, Option<String>> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let results = admin
        .describe_configs(
            &[ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap();
    let resource = results.into_iter().next().unwrap().unwrap();
    resource
        .entries
        .into_iter()
        .filter(|e| !e.is_default)
        .map(|e| (e.name, e.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_topics_carry_the_configured_partitions_and_policies() {
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    db.psql("CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL)");
    let file =
        db.connector_with_registry("topiccfg", "", "[tables.\"public.items\"]", &registry.url());
    let text = std::fs::read_to_string(&file).unwrap().replace(
        &format!("topic_prefix = \"{}\"\n", db.name),
        &format!(
            "topic_prefix = \"{}\"\npartitions = 3\ncleanup_policy = \"compact\"\nmin_insync_replicas = 1\n",
            db.name
        ),
    );
    assert!(text.contains("partitions = 3"));
    std::fs::write(&file, text).unwrap();
    let mut walcast = start_streaming(&db, &file, "topiccfg");
    db.psql("INSERT INTO items VALUES (1, 'lamp')");
    let topic = format!("{}.public.items", db.name);
    let records = consume_records(stack.kafka_bootstrap(), &topic, Some(&registry.url()), 1).await;
    // SIGTERM writes the final checkpoint, so walcast.offsets exists afterwards.
    let stopped = stop_with_sigterm(&mut walcast);
    let logs = std::fs::read_to_string(db.dir.path().join("walcast.log")).unwrap_or_default();
    assert!(stopped.success(), "{logs}");
    assert_eq!(records.len(), 1, "{logs}");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", stack.kafka_bootstrap())
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 3);
    let table = topic_configs(stack.kafka_bootstrap(), &topic).await;
    assert_eq!(table["cleanup.policy"].as_deref(), Some("compact"));
    assert_eq!(
        table["min.insync.replicas"].as_deref(),
        Some("1"),
        "{table:?}"
    );

    let offsets = walcast::sink::kafka::OFFSETS_TOPIC;
    let metadata = consumer
        .fetch_metadata(Some(offsets), Duration::from_secs(10))
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 1);
    let configs = topic_configs(stack.kafka_bootstrap(), offsets).await;
    assert_eq!(configs["cleanup.policy"].as_deref(), Some("compact"));
    assert_eq!(
        configs["segment.ms"].as_deref(),
        Some("3600000"),
        "hourly segments, so compaction keeps the offsets topic's tail short"
    );
    assert_eq!(configs["min.insync.replicas"].as_deref(), Some("1"));
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_probes_are_served() {
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, total numeric(10,2))");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = db.connector("metrics", "", "[tables.\"public.orders\"]");
    let text_file = std::fs::read_to_string(&file)
        .unwrap()
        .replace("http://127.0.0.1:8081", &registry.url())
        .replace(
            "[metrics]\nenabled = false",
            &format!("[metrics]\nlisten = \"127.0.0.1:{port}\""),
        );
    std::fs::write(&file, text_file).unwrap();
    assert_eq!(
        crate::common::walcast(&["setup", file.to_str().unwrap()], &[]).code,
        Some(0)
    );
    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    db.psql("INSERT INTO orders VALUES (1, 'new', 1)");
    let topic = format!("{}.public.orders", db.name);
    let wanted = format!("walcast_records_sent_total{{connector=\"metrics\",topic=\"{topic}\"}} 1");
    let started = Instant::now();
    let body = loop {
        let body = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if body.contains(&wanted) || started.elapsed() > Duration::from_secs(20) {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = stop_with_sigterm(&mut walcast);
    assert!(body.contains(&wanted), "{body}");
    assert!(
        body.contains("walcast_transactions_total{connector=\"metrics\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("walcast_streaming{connector=\"metrics\"} 1"),
        "{body}"
    );
    registry.shutdown().await.unwrap();
}
