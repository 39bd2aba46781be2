//! Debezium's single message transforms as walcast applies them, end to end through
//! PostgreSQL, Kafka and the registry (Avro): the schema registered for an unwrapped
//! topic is the row record with `__deleted` and the added fields, and the records are
//! what ExtractNewRecordState would leave.

use crate::common::{
    consume_records, log_excerpt, stack, start_registry, start_streaming, stop_with_sigterm, TestDb,
};

/// The latest value schema registered for `topic`, as JSON.
async fn latest_value_schema(registry: &str, topic: &str) -> serde_json::Value {
    let body = reqwest::get(format!("{registry}/subjects/{topic}-value/versions/latest"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let latest: serde_json::Value = serde_json::from_str(&body).unwrap();
    serde_json::from_str(latest["schema"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwrap_registers_the_row_schema_and_rewrites_deletes() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, total numeric(10,2))");
    db.psql("CREATE TABLE public.keep (id int PRIMARY KEY)");
    let name = "unwrap";
    let file = db.connector_with_sections(
        name,
        "[tables.\"public.orders\"]\n[tables.\"public.keep\"]\nunwrap = false",
        &registry.url(),
        "[transforms.unwrap]\ndelete_tombstone_handling_mode = \"rewrite\"\nadd_fields = \"op,table,source.ts_ms\"\nadd_headers = \"op\"",
    );
    let mut walcast = start_streaming(&db, &file, name);
    db.psql("INSERT INTO orders VALUES (1, 'new', 9.50); INSERT INTO keep VALUES (1)");
    db.psql("UPDATE orders SET status = 'paid' WHERE id = 1");
    db.psql("DELETE FROM orders WHERE id = 1");

    let bootstrap = stack().kafka_bootstrap();
    let url = registry.url();
    let topic = format!("{}.public.orders", db.name);
    let records = consume_records(bootstrap, &topic, Some(&url), 3).await;
    assert_eq!(
        records.len(),
        3,
        "no tombstone in rewrite mode: {records:?}"
    );
    let values: Vec<&serde_json::Value> =
        records.iter().map(|r| r.value.as_ref().unwrap()).collect();
    assert_eq!(values[0]["status"], "new");
    assert_eq!(values[0]["__deleted"], "false");
    assert_eq!(values[0]["__op"], "c");
    assert_eq!(values[0]["__table"], "orders");
    assert!(values[0]["__source_ts_ms"].as_i64().unwrap() > 1_700_000_000_000);
    assert!(
        values[0].get("after").is_none(),
        "no envelope: {}",
        values[0]
    );
    assert_eq!(
        (values[1]["status"].as_str(), values[1]["__op"].as_str()),
        (Some("paid"), Some("u"))
    );
    assert_eq!(values[2]["__deleted"], "true");
    assert_eq!(values[2]["__op"], "d");
    assert_eq!(values[2]["id"], 1);
    let ops: Vec<&str> = records.iter().map(|r| r.headers["__op"].as_str()).collect();
    assert_eq!(ops, ["c", "u", "d"]);

    // The registered value schema: the row record, then __deleted, then the fields.
    let schema = latest_value_schema(&url, &topic).await;
    assert_eq!(schema["type"], "record", "{schema}");
    assert_eq!(schema["name"], "Value");
    assert_eq!(schema["namespace"], format!("{}.public.orders", db.name));
    let fields: Vec<&str> = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "id",
            "status",
            "total",
            "__deleted",
            "__op",
            "__table",
            "__source_ts_ms"
        ]
    );
    assert_eq!(
        schema["fields"][3]["type"],
        serde_json::json!(["null", "string"])
    );

    // A table that opted out keeps the envelope.
    let kept = consume_records(
        bootstrap,
        &format!("{}.public.keep", db.name),
        Some(&url),
        1,
    )
    .await;
    assert_eq!(kept[0].value.as_ref().unwrap()["op"], "c");
    stop_with_sigterm(&mut walcast);
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_rows_become_events_on_their_aggregate_topics() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE public.outbox (id uuid PRIMARY KEY, aggregatetype text NOT NULL, aggregateid text NOT NULL, type text NOT NULL, payload jsonb)");
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text)");
    let name = "outbox";
    let file = db.connector_with_registry(
        name,
        "",
        "[tables.\"public.orders\"]\n[tables.\"public.outbox\"]\noutbox = { table_fields_additional_placement = \"type:header:eventType\" }",
        &registry.url(),
    );
    let mut walcast = start_streaming(&db, &file, name);
    // A service's transaction: its state change and its event, together.
    db.psql("BEGIN; INSERT INTO orders VALUES (7, 'placed'); INSERT INTO outbox VALUES ('8c5e4f4a-52f6-4c1f-9f43-7d0c3a1b2c3d', 'order', '7', 'OrderPlaced', '{\"id\": 7, \"total\": 9.5}'); COMMIT");
    db.psql("INSERT INTO outbox VALUES ('0b1d0c6e-8d64-4d3b-a1d5-3c2f1e0d9a8b', 'customer', 'c-1', 'CustomerCreated', '{\"name\": \"Ann\"}')");
    // Updates and deletes of outbox rows are not events.
    db.psql("UPDATE outbox SET type = 'Changed' WHERE aggregateid = '7'");
    db.psql("DELETE FROM outbox");
    db.psql("INSERT INTO outbox VALUES ('5a7c9e1b-3d2f-4b6a-8c0e-1f2a3b4c5d6e', 'order', '7', 'OrderPaid', NULL)");

    let bootstrap = stack().kafka_bootstrap();
    let url = registry.url();
    let orders = consume_records(
        bootstrap,
        &format!("{}.outbox.order", db.name),
        Some(&url),
        2,
    )
    .await;
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert_eq!(
        orders[0].key,
        Some(serde_json::json!("7")),
        "key = aggregateid"
    );
    let payload: serde_json::Value =
        serde_json::from_str(orders[0].value.as_ref().unwrap().as_str().unwrap()).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"id": 7, "total": 9.5}),
        "value = the payload as written"
    );
    assert_eq!(
        orders[0].headers["id"],
        "8c5e4f4a-52f6-4c1f-9f43-7d0c3a1b2c3d"
    );
    assert_eq!(orders[0].headers["eventType"], "OrderPlaced");
    assert_eq!(orders[1].headers["eventType"], "OrderPaid");
    assert_eq!(
        orders[1].value, None,
        "a NULL payload is a null value, as the Avro converter writes it"
    );
    let customers = consume_records(
        bootstrap,
        &format!("{}.outbox.customer", db.name),
        Some(&url),
        1,
    )
    .await;
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0].key, Some(serde_json::json!("c-1")));
    // The service's own table streams as usual.
    let order_rows = consume_records(
        bootstrap,
        &format!("{}.public.orders", db.name),
        Some(&url),
        1,
    )
    .await;
    assert_eq!(order_rows[0].value.as_ref().unwrap()["op"], "c");
    stop_with_sigterm(&mut walcast);
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_tables_share_a_topic_and_keep_their_identity_in_the_key() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE public.shard_1 (id int PRIMARY KEY, v text)");
    db.psql("CREATE TABLE public.shard_2 (id int PRIMARY KEY, v text)");
    let name = "route";
    let file = db.connector_with_sections(
        name,
        "[tables.\"public.shard_*\"]",
        &registry.url(),
        &format!(
            "[transforms.route]\ntopic_regex = '{0}\\.public\\.shard_(.*)'\ntopic_replacement = '{0}.shards'",
            db.name
        ),
    );
    let mut walcast = start_streaming(&db, &file, name);
    db.psql("INSERT INTO shard_1 VALUES (1, 'one'); INSERT INTO shard_2 VALUES (1, 'uno')");
    db.psql("DELETE FROM shard_2 WHERE id = 1");

    let url = registry.url();
    let topic = format!("{}.shards", db.name);
    let records = consume_records(stack().kafka_bootstrap(), &topic, Some(&url), 4).await;
    let keys: Vec<serde_json::Value> = records.iter().map(|r| r.key.clone().unwrap()).collect();
    let id = |table: &str| serde_json::json!({"id": 1, "__dbz__physicalTableIdentifier": format!("{}.public.{table}", db.name)});
    assert_eq!(
        keys,
        [id("shard_1"), id("shard_2"), id("shard_2"), id("shard_2")],
        "create, create, delete, tombstone"
    );
    assert_eq!(
        records[0].value.as_ref().unwrap()["source"]["table"],
        "shard_1",
        "source still names the table"
    );
    let schema = latest_value_schema(&url, &topic).await;
    assert_eq!(
        (schema["name"].as_str(), schema["namespace"].as_str()),
        (Some("Envelope"), Some(topic.as_str()))
    );
    stop_with_sigterm(&mut walcast);
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_records_reach_their_topic_in_transactional_mode() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE public.quiet (id int PRIMARY KEY)");
    let name = "beats";
    let file = db.connector_with_sections(
        name,
        "[tables.\"public.quiet\"]",
        &registry.url(),
        "[delivery]\nmode = \"transactional\"\n[heartbeat]\ninterval = \"4s\"\nemit_records = true",
    );
    let mut walcast = start_streaming(&db, &file, name);
    // read_committed: a heartbeat is visible only once its Kafka transaction committed.
    let beats = consume_records(
        stack().kafka_bootstrap(),
        &format!("__debezium-heartbeat.{}", db.name),
        Some(&registry.url()),
        2,
    )
    .await;
    assert!(beats.len() >= 2, "{beats:?}");
    assert_eq!(
        beats[0].key,
        Some(serde_json::json!({"serverName": db.name}))
    );
    let ts = beats[0].value.as_ref().unwrap()["ts_ms"].as_i64().unwrap();
    assert!(ts > 1_700_000_000_000, "{ts}");
    assert!(beats
        .iter()
        .all(|b| !b.headers.contains_key("__debezium.context.runId")));
    stop_with_sigterm(&mut walcast);
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_envelope_placements_make_the_value_a_struct() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE public.outbox (id uuid PRIMARY KEY, aggregatetype text NOT NULL, aggregateid text NOT NULL, type text NOT NULL, payload jsonb)");
    let name = "outboxenv";
    let file = db.connector_with_registry(
        name,
        "",
        "[tables.\"public.outbox\"]\noutbox = { table_fields_additional_placement = \"type:envelope:eventType, aggregateid:envelope\" }",
        &registry.url(),
    );
    let mut walcast = start_streaming(&db, &file, name);
    db.psql("INSERT INTO outbox VALUES ('8c5e4f4a-52f6-4c1f-9f43-7d0c3a1b2c3d', 'order', '7', 'OrderPlaced', '{\"id\": 7}')");
    let url = registry.url();
    let topic = format!("{}.outbox.order", db.name);
    let events = consume_records(stack().kafka_bootstrap(), &topic, Some(&url), 1).await;
    let value = events[0].value.as_ref().unwrap();
    assert_eq!(value["eventType"], "OrderPlaced", "{value}");
    assert_eq!(value["aggregateid"], "7", "{value}");
    let payload: serde_json::Value =
        serde_json::from_str(value["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload, serde_json::json!({"id": 7}));
    let schema = latest_value_schema(&url, &topic).await;
    assert_eq!(
        (schema["namespace"].as_str(), schema["name"].as_str()),
        (
            Some(format!("{}.public.outbox.order", db.name).as_str()),
            Some("Value")
        ),
        "named after the row record with the route inserted: {schema}"
    );
    stop_with_sigterm(&mut walcast);
    registry.shutdown().await.unwrap();
}

/// The outbox router's other options: `table_expand_json_payload` (the payload's JSON
/// object becomes a struct with an inferred schema, registered per shape; a payload
/// that is not an object goes out as it is), `column:partition` and
/// `table_field_event_timestamp`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_payloads_expand_and_rows_choose_partition_and_timestamp() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE public.outbox (id uuid PRIMARY KEY, aggregatetype text NOT NULL, aggregateid text NOT NULL, type text NOT NULL, payload jsonb, part int, created timestamp)");
    let name = "outboxexp";
    let file = db.connector_with_registry(
        name,
        "",
        "[tables.\"public.outbox\"]\noutbox = { table_expand_json_payload = true, table_fields_additional_placement = \"part:partition\", table_field_event_timestamp = \"created\" }",
        &registry.url(),
    );
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("[kafka]\n", "[kafka]\npartitions = 3\n");
    std::fs::write(&file, text).unwrap();
    let mut walcast = start_streaming(&db, &file, name);
    db.psql("INSERT INTO outbox VALUES ('8c5e4f4a-52f6-4c1f-9f43-7d0c3a1b2c3d', 'order', '7', 'OrderPlaced', '{\"id\": 7, \"total\": 9.5, \"lines\": [{\"sku\": \"a\", \"qty\": 2}], \"note\": null}', 2, '2026-12-07 10:00:00.123456')");
    db.psql("INSERT INTO outbox VALUES ('0b1d0c6e-8d64-4d3b-a1d5-3c2f1e0d9a8b', 'order', '7', 'OrderPaid', '{\"id\": 7, \"paid\": true}', 2, NULL)");
    // Not an object: as it is (on a topic of its own: a registry keeping BACKWARD
    // compatibility refuses a string after a record under one subject).
    db.psql("INSERT INTO outbox VALUES ('5a7c9e1b-3d2f-4b6a-8c0e-1f2a3b4c5d6e', 'misc', '8', 'Odd', '[1, 2]', NULL, NULL)");
    let url = registry.url();
    let topic = format!("{}.outbox.order", db.name);
    let events = consume_records(stack().kafka_bootstrap(), &topic, Some(&url), 2).await;
    assert_eq!(
        events.len(),
        2,
        "walcast's log:\n{}",
        log_excerpt(&db.dir.path().join("walcast.log"))
    );
    let by_id = |id: &str| {
        events
            .iter()
            .find(|e| e.headers.get("id").map(String::as_str) == Some(id))
            .unwrap_or_else(|| panic!("no event {id} in {events:?}"))
    };
    let placed = by_id("8c5e4f4a-52f6-4c1f-9f43-7d0c3a1b2c3d");
    assert_eq!(
        placed.value.as_ref().unwrap(),
        &serde_json::json!({"id": 7, "total": 9.5, "lines": [{"sku": "a", "qty": 2}]}),
        "the JSON as a struct, the null member left out"
    );
    assert_eq!(placed.partition, 2, "the row's partition column");
    assert_eq!(
        placed.timestamp_ms,
        Some(1_796_637_600_123),
        "the row's timestamp, in ms"
    );
    let paid = by_id("0b1d0c6e-8d64-4d3b-a1d5-3c2f1e0d9a8b");
    assert_eq!(
        paid.value.as_ref().unwrap(),
        &serde_json::json!({"id": 7, "paid": true})
    );
    assert_eq!(paid.partition, 2);
    assert_ne!(paid.timestamp_ms, Some(1_796_637_600_123));
    let misc = format!("{}.outbox.misc", db.name);
    let odd = consume_records(stack().kafka_bootstrap(), &misc, Some(&url), 1).await;
    assert_eq!(
        odd[0].value.as_ref().unwrap(),
        "[1, 2]",
        "not an object: as it is"
    );
    let schema = latest_value_schema(&url, &misc).await;
    let string = if schema.is_array() {
        &schema[1]
    } else {
        &schema
    };
    assert_eq!(string["connect.name"], "io.debezium.data.Json", "{schema}");
    // Two shapes, two versions of the value subject.
    let get = |path: String| {
        let url = format!("{url}{path}");
        async move {
            let body = reqwest::get(url).await.unwrap().text().await.unwrap();
            serde_json::from_str::<serde_json::Value>(&body).unwrap()
        }
    };
    let versions = get(format!("/subjects/{topic}-value/versions")).await;
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    let first = get(format!("/subjects/{topic}-value/versions/1")).await;
    let first: serde_json::Value = serde_json::from_str(first["schema"].as_str().unwrap()).unwrap();
    assert_eq!(
        first[1]["name"], "payload",
        "an optional record named after the column: {first}"
    );
    // A partition the topic does not have stops the connector, naming it.
    db.psql("INSERT INTO outbox VALUES ('6b8d0f2c-4e3a-4c7b-9d1f-2a3b4c5d6e7f', 'order', '9', 'OrderPlaced', '{}', 7, NULL)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = walcast.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "walcast went on after a partition out of range"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(db.dir.path().join("walcast.log")).unwrap();
    assert!(
        log.contains("names partition 7, but topic") && log.contains("has partitions 0 to 2"),
        "{}",
        log_excerpt(&db.dir.path().join("walcast.log"))
    );
    registry.shutdown().await.unwrap();
}
