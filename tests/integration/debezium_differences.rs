//! The last differences from Debezium, end to end through PostgreSQL, Kafka and the
//! registry (Avro): a delete on a keyless table is followed by a null-key tombstone, a
//! TRUNCATE is an `op = t` event per table when `skipped_operations` lets it through
//! (counted in the END record), and logical decoding messages are filtered by prefix,
//! a non-transactional one carrying no txId and no transaction block.

use crate::common::{
    consume_records, stack, start_registry, start_streaming, stop_with_sigterm, TestDb,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncates_keyless_deletes_and_filtered_messages_look_as_debezium_emits_them() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text)");
    db.psql("CREATE TABLE public.audit (who text, what text)");
    db.psql("ALTER TABLE public.audit REPLICA IDENTITY FULL");
    let name = "differences";
    let file = db.connector_with_sections(name, "[tables.\"public.*\"]", &registry.url(), "[events]\nprovide_transaction_metadata = true\nskipped_operations = \"none\"\nmessage_prefix_include_list = \"audit\\\\..*\"");
    let mut walcast = start_streaming(&db, &file, name);

    db.psql("INSERT INTO orders VALUES (1, 'new'); INSERT INTO audit VALUES ('ann', 'login')");
    db.psql("DELETE FROM audit WHERE who = 'ann'");
    db.psql("BEGIN; INSERT INTO orders VALUES (2, 'new'); TRUNCATE orders, audit; COMMIT");
    db.psql("BEGIN; SELECT pg_logical_emit_message(true, 'audit.kept', 'in'); SELECT pg_logical_emit_message(true, 'noise', 'dropped'); COMMIT");
    db.psql("SELECT pg_logical_emit_message(false, 'audit.alone', 'out')");
    db.psql("SELECT pg_logical_emit_message(false, 'noise', 'dropped')");

    let bootstrap = stack().kafka_bootstrap();
    let url = registry.url();
    let audit = consume_records(
        bootstrap,
        &format!("{}.public.audit", db.name),
        Some(&url),
        4,
    )
    .await;
    let ops: Vec<Option<String>> = audit
        .iter()
        .map(|r| {
            r.value
                .as_ref()
                .map(|v| v["op"].as_str().unwrap_or("?").to_owned())
        })
        .collect();
    assert_eq!(
        ops,
        [Some("c".into()), Some("d".into()), None, Some("t".into())],
        "create, delete, its tombstone, truncate"
    );
    assert!(
        audit.iter().all(|r| r.key.is_none()),
        "a keyless table's records have null keys"
    );
    // Debezium 3.2+'s context headers on every data event and tombstone.
    for record in &audit {
        assert_eq!(
            record.headers["__debezium.context.connectorLogicalName"], db.name,
            "{:?}",
            record.headers
        );
        assert_eq!(record.headers["__debezium.context.taskId"], "0");
        assert_eq!(
            record.headers["__debezium.context.connectorName"],
            "postgresql"
        );
        let run = &record.headers["__debezium.context.runId"];
        assert!(
            run.len() == 36 && run.as_bytes()[14] == b'7',
            "a UUIDv7: {run}"
        );
    }
    let truncate = audit[3].value.as_ref().unwrap();
    assert!(
        truncate["before"].is_null() && truncate["after"].is_null(),
        "{truncate}"
    );

    let orders = consume_records(
        bootstrap,
        &format!("{}.public.orders", db.name),
        Some(&url),
        3,
    )
    .await;
    let t = orders
        .iter()
        .find(|r| r.value.as_ref().is_some_and(|v| v["op"] == "t"))
        .expect("the orders truncate");
    assert!(t.key.is_none(), "a truncate has a null key");

    let messages = consume_records(bootstrap, &format!("{}.message", db.name), Some(&url), 2).await;
    let prefixes: Vec<&str> = messages
        .iter()
        .map(|r| {
            r.value.as_ref().unwrap()["message"]["prefix"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        prefixes,
        ["audit.kept", "audit.alone"],
        "filtered by prefix"
    );
    assert!(
        messages
            .iter()
            .all(|m| !m.headers.contains_key("__debezium.context.runId")),
        "messages carry no context headers, as Debezium's"
    );
    let alone = messages[1].value.as_ref().unwrap();
    assert!(alone["source"]["txId"].is_null(), "{alone}");
    assert!(alone["transaction"].is_null(), "{alone}");
    let kept = messages[0].value.as_ref().unwrap();
    assert!(kept["source"]["txId"].is_i64(), "{kept}");
    assert!(!kept["transaction"].is_null(), "{kept}");

    // END records: the TRUNCATE's transaction counts its insert and two truncates; the
    // message transaction counts the kept message only.
    let transactions = consume_records(
        bootstrap,
        &format!("{}.transaction", db.name),
        Some(&url),
        8,
    )
    .await;
    let ends: Vec<i64> = transactions
        .iter()
        .filter_map(|r| r.value.as_ref())
        .filter(|v| v["status"] == "END")
        .map(|v| v["event_count"].as_i64().unwrap())
        .collect();
    assert!(ends.contains(&3), "insert + 2 truncates: {ends:?}");
    assert_eq!(
        ends.last(),
        Some(&1),
        "the filtered message is not counted: {ends:?}"
    );
    stop_with_sigterm(&mut walcast);
    registry.shutdown().await.unwrap();
}

/// REPLICA IDENTITY FULL on a table with a primary key: Debezium keys it by the primary
/// key (pgoutput flags every column as part of the identity), so a key change is a
/// delete, its tombstone and a create, as on any keyed table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_identity_full_table_is_keyed_by_its_primary_key() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE public.accounts (id int PRIMARY KEY, owner text)");
    db.psql("INSERT INTO accounts VALUES (1, 'ann')");
    db.psql("ALTER TABLE public.accounts REPLICA IDENTITY FULL");
    let name = "fullpk";
    let file =
        db.connector_with_registry(name, "", "[tables.\"public.accounts\"]", &registry.url());
    let mut walcast = start_streaming(&db, &file, name);
    db.psql("UPDATE accounts SET owner = 'bob' WHERE id = 1");
    db.psql("UPDATE accounts SET id = 2 WHERE id = 1");
    let topic = format!("{}.public.accounts", db.name);
    let records =
        consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 5).await;
    let seen: Vec<(serde_json::Value, Option<String>)> = records
        .iter()
        .map(|r| {
            (
                r.key.clone().unwrap_or_default(),
                r.value
                    .as_ref()
                    .map(|v| v["op"].as_str().unwrap_or("?").to_owned()),
            )
        })
        .collect();
    let key = |id: i64| serde_json::json!({ "id": id });
    assert_eq!(
        seen,
        [
            (key(1), Some("r".into())),
            (key(1), Some("u".into())),
            (key(1), Some("d".into())),
            (key(1), None),
            (key(2), Some("c".into())),
        ],
        "snapshot read, update, key change as delete + tombstone + create"
    );
    let update = records[1].value.as_ref().unwrap();
    assert_eq!(
        update["before"]["owner"], "ann",
        "FULL: the whole old row: {update}"
    );
    stop_with_sigterm(&mut walcast);
    registry.shutdown().await.unwrap();
}

/// PostGIS columns as Debezium maps them (`io.debezium.data.geometry.Geometry` /
/// `Geography`: the EWKB as PostgreSQL sends it, the SRID from its flag), in the
/// snapshot and in the stream. Needs Debian's `postgresql-15-postgis-3`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgis_columns_are_geometry_and_geography_structs() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql("CREATE EXTENSION IF NOT EXISTS postgis");
    db.psql("CREATE TABLE public.places (id int PRIMARY KEY, spot geometry(Point, 4326) NOT NULL, area geography)");
    db.psql("INSERT INTO places VALUES (1, ST_SetSRID(ST_MakePoint(1, 2), 4326), NULL)");
    let name = "postgis";
    let file = db.connector_with_registry(name, "", "[tables.\"public.places\"]", &registry.url());
    let mut walcast = start_streaming(&db, &file, name);
    db.psql("INSERT INTO places VALUES (2, ST_SetSRID(ST_MakePoint(3, 4), 4326), ST_GeogFromText('POINT(5 6)'))");
    let expected_hex = db.psql("SELECT encode(ST_AsEWKB(spot), 'hex') || ',' || encode(ST_AsEWKB(area::geometry), 'hex') FROM places WHERE id = 2");
    let topic = format!("{}.public.places", db.name);
    let records =
        consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 2).await;
    let after = |i: usize| records[i].value.as_ref().unwrap()["after"].clone();
    assert_eq!(after(0)["spot"]["srid"], 4326, "{}", after(0));
    assert!(after(0)["area"].is_null(), "{}", after(0));
    let (spot_hex, area_hex) = expected_hex.split_once(',').unwrap();
    let bytes_hex = |v: &serde_json::Value| -> String {
        // The test reader shows Avro bytes as their Debug form.
        v.as_str().unwrap_or_default().to_owned()
    };
    let spot = bytes_hex(&after(1)["spot"]["wkb"]);
    let area = bytes_hex(&after(1)["area"]["wkb"]);
    let as_hex = |debug: &str| -> String {
        debug
            .trim_start_matches("Bytes([")
            .trim_end_matches("])")
            .split(", ")
            .filter(|b| !b.is_empty())
            .map(|b| format!("{:02x}", b.parse::<u8>().unwrap()))
            .collect()
    };
    assert_eq!(as_hex(&spot), spot_hex, "the EWKB as PostgreSQL has it");
    assert_eq!(as_hex(&area), area_hex);
    assert_eq!(after(1)["spot"]["srid"], 4326);
    assert_eq!(after(1)["area"]["srid"], 4326, "geography's default SRID");
    stop_with_sigterm(&mut walcast);
    registry.shutdown().await.unwrap();
}

/// pgvector columns as Debezium maps them (`DoubleVector`, `FloatVector`,
/// `SparseDoubleVector` with 1-based indices), in the snapshot and in the stream,
/// through the registry. Needs pgvector (`deploy/local/build-pgvector`, run by
/// `deploy/local/test-deps`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_columns_are_debeziums_vectors() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql("CREATE EXTENSION IF NOT EXISTS vector");
    db.psql("CREATE TABLE public.embeddings (id int PRIMARY KEY, dense vector(3) NOT NULL, half halfvec(3), sparse sparsevec(40))");
    db.psql("INSERT INTO embeddings VALUES (1, '[1,2.5,-3e-7]', NULL, '{}/40')");
    let name = "pgvector";
    let file =
        db.connector_with_registry(name, "", "[tables.\"public.embeddings\"]", &registry.url());
    let mut walcast = start_streaming(&db, &file, name);
    db.psql(
        "INSERT INTO embeddings VALUES (2, '[0,0,1e20]', '[1.5,2,0.1]', '{33:2,1:1.5,9:-0.25}/40')",
    );
    db.psql("UPDATE embeddings SET sparse = '{40:1}/40' WHERE id = 1");
    let topic = format!("{}.public.embeddings", db.name);
    let records =
        consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 3).await;
    let after = |i: usize| records[i].value.as_ref().unwrap()["after"].clone();
    let snapshot = after(0);
    assert_eq!(
        snapshot["dense"],
        serde_json::json!([1.0, 2.5, -3e-7]),
        "{snapshot}"
    );
    assert!(snapshot["half"].is_null(), "{snapshot}");
    assert_eq!(
        snapshot["sparse"],
        serde_json::json!({"dimensions": 40, "vector": []})
    );
    let streamed = after(1);
    assert_eq!(
        streamed["dense"],
        serde_json::json!([0.0, 0.0, 1e20]),
        "{streamed}"
    );
    // halfvec's 0.1 is the half 0.099975586, as a float.
    let half: Vec<f64> = serde_json::from_value(streamed["half"].clone()).unwrap();
    assert_eq!(half.len(), 3);
    assert_eq!(half[0], 1.5);
    assert!((half[2] - 0.099_975_586).abs() < 1e-8, "{streamed}");
    // 1-based indices, in Java's HashMap order: pgvector sends them sorted (1, 9, 33),
    // the map iterates bucket 1 (1, then 33) before bucket 9.
    assert_eq!(
        streamed["sparse"],
        serde_json::json!({"dimensions": 40, "vector": [
            {"key": 1, "value": 1.5}, {"key": 33, "value": 2.0}, {"key": 9, "value": -0.25}
        ]}),
        "{streamed}"
    );
    assert_eq!(
        after(2)["sparse"],
        serde_json::json!({"dimensions": 40, "vector": [{"key": 40, "value": 1.0}]})
    );
    stop_with_sigterm(&mut walcast);
    registry.shutdown().await.unwrap();
}
