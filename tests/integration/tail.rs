//! `walcast tail`: records that walcast itself produced (PostgreSQL → `walcast run` →
//! Kafka, with the dev registry) come back as exact JSON lines; records it cannot decode
//! become error lines and tailing goes on; an unknown topic, an unreachable broker or
//! registry are one-line errors.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use walcast::registry::{RegistryClient, RegistryClientConfig};

use crate::common::{stack, start_registry, start_walcast, stop_with_sigterm, Run, TestDb};

/// Runs `walcast tail <args>` (off the async runtime, which serves the registry).
async fn tail(args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let mut all = vec!["tail".to_owned()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        crate::common::walcast(&refs, &[])
    })
    .await
    .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The records in `topic` (all partitions), once it exists.
fn record_count(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return 0;
    };
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    partitions
        .iter()
        .filter_map(|p| {
            consumer
                .fetch_watermarks(topic, *p, Duration::from_secs(5))
                .ok()
        })
        .map(|(low, high)| high - low)
        .sum()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The single error line of a failed run (the last stderr line; no other error line).
fn error_line(run: &Run) -> &str {
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{run:?}");
    assert_eq!(run.stderr.lines().last(), Some(errors[0]), "{run:?}");
    errors[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_walcast_records_as_json_lines() {
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    db.psql(
        "CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2))",
    );
    let file = db.connector("tail", "", "[tables.\"public.items\"]");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("http://127.0.0.1:8081", &registry.url());
    std::fs::write(&file, text).unwrap();
    let setup = crate::common::walcast(&["setup", file.to_str().unwrap()], &[]);
    assert_eq!(setup.code, Some(0), "{setup:?}");
    let log = db.dir.path().join("walcast.log");
    let mut walcast = start_walcast(&file, &log);
    db.wait_for_slot("walcast_tail", false);
    db.psql("INSERT INTO items VALUES (1, 'lamp', 12.50)");
    db.psql("UPDATE items SET price = 13.00 WHERE id = 1");
    db.psql("DELETE FROM items WHERE id = 1");

    let topic = format!("{}.public.items", db.name);
    let bootstrap = stack.kafka_bootstrap().to_owned();
    let waited = Instant::now();
    while record_count(&bootstrap, &topic) < 4 {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "walcast did not produce 4 records; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let run = tail(strings(&[
        &topic,
        "--from-beginning",
        "--max-messages",
        "4",
        "--timeout",
        "30s",
        "--bootstrap-servers",
        &bootstrap,
        "--registry",
        &registry.url(),
    ]))
    .await;
    // The same through the connector file (broker and registry from it).
    let via_connector = tail(strings(&[
        &topic,
        "--from-beginning",
        "--max-messages",
        "4",
        "--timeout",
        "30s",
        "--connector",
        file.to_str().unwrap(),
    ]))
    .await;
    let _ = stop_with_sigterm(&mut walcast);

    assert_eq!(run.code, Some(0), "{run:?}");
    let lines = run.lines();
    assert_eq!(lines.len(), 4, "{run:?}");
    // Keys in a fixed order, columns in the table's order, the decimal with its scale.
    assert!(
        lines[0].starts_with(&format!(
            "{{\"topic\":\"{topic}\",\"partition\":0,\"offset\":0,\"timestamp\":"
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(r#""key":{"id":1},"value":{"before":null,"after":{"id":1,"name":"lamp","price":"12.50"},"source":{"version":"#),
        "{}",
        lines[0]
    );

    let mut records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, r) in records.iter_mut().enumerate() {
        let object = r.as_object_mut().unwrap();
        assert!(object.remove("timestamp").unwrap().is_i64(), "{i}");
        let headers = object.remove("headers").unwrap();
        assert!(
            headers["walcast.position"]
                .as_str()
                .is_some_and(|p| p.contains('#')),
            "{headers}"
        );
        assert!(
            headers["walcast.txid"]
                .as_str()
                .is_some_and(|t| t.parse::<u32>().is_ok()),
            "{headers}"
        );
        if let Some(value) = object.get_mut("value").and_then(Value::as_object_mut) {
            let source = value.remove("source").unwrap();
            assert_eq!(source["connector"], "postgresql");
            assert_eq!(source["db"], db.name.as_str());
            assert_eq!(source["schema"], "public");
            assert_eq!(source["table"], "items");
            assert!(
                source["lsn"].is_i64() && source["txId"].is_i64(),
                "{source}"
            );
            for ts in ["ts_ms", "ts_us", "ts_ns"] {
                assert!(value.remove(ts).unwrap().is_i64(), "{ts}");
            }
        }
    }
    let expected = [
        json!({"topic": topic, "partition": 0, "offset": 0, "key": {"id": 1}, "value": {
            "before": null, "after": {"id": 1, "name": "lamp", "price": "12.50"},
            "transaction": null, "op": "c"}}),
        json!({"topic": topic, "partition": 0, "offset": 1, "key": {"id": 1}, "value": {
            "before": null, "after": {"id": 1, "name": "lamp", "price": "13.00"},
            "transaction": null, "op": "u"}}),
        // REPLICA IDENTITY DEFAULT: the old row holds the key; Debezium fills its other
        // NOT NULL columns with their defaults.
        json!({"topic": topic, "partition": 0, "offset": 2, "key": {"id": 1}, "value": {
            "before": {"id": 1, "name": "", "price": null}, "after": null,
            "transaction": null, "op": "d"}}),
        json!({"topic": topic, "partition": 0, "offset": 3, "key": {"id": 1}, "value": null}),
    ];
    for (got, want) in records.iter().zip(&expected) {
        assert_eq!(got, want);
    }

    assert_eq!(via_connector.code, Some(0), "{via_connector:?}");
    assert_eq!(
        via_connector.stdout, run.stdout,
        "--connector reads the same"
    );
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reports_undecodable_records_and_goes_on() {
    let stack = stack();
    let bootstrap = stack.kafka_bootstrap().to_owned();
    let (_registry_dir, registry) = start_registry().await;
    let url = registry.url();
    let topic = format!("tail-raw-{}", std::process::id());
    crate::common::create_topic(&bootstrap, &topic, 1).await;

    let schema_text = r#"{"type":"record","name":"Thing","namespace":"t","fields":[{"name":"n","type":"long"},{"name":"s","type":"string"}]}"#;
    let client = RegistryClient::new(RegistryClientConfig::new(url.clone())).unwrap();
    let id = client
        .register(&format!("{topic}-value"), schema_text)
        .await
        .unwrap();
    let schema = apache_avro::Schema::parse_str(schema_text).unwrap();
    let datum = apache_avro::to_avro_datum(
        &schema,
        apache_avro::types::Value::Record(vec![
            ("n".into(), apache_avro::types::Value::Long(42)),
            ("s".into(), apache_avro::types::Value::String("hi".into())),
        ]),
    )
    .unwrap();
    let framed = |datum: &[u8]| {
        let mut out = vec![0];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(datum);
        out
    };
    let good = framed(&datum);
    let truncated = framed(&datum[..2]);

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let ts = 1_700_000_000_000i64;
    async fn send_to(producer: &FutureProducer, record: FutureRecord<'_, [u8], [u8]>, ts: i64) {
        producer
            .send(record.partition(0).timestamp(ts), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    // Schema id 999: unknown to the registry.
    send_to(
        &producer,
        FutureRecord::to(&topic).payload(&b"\0\0\0\x03\xe7\x54\x04hi"[..]),
        ts,
    )
    .await;
    // Not in the Confluent wire format at all.
    send_to(
        &producer,
        FutureRecord::to(&topic).payload(&b"hello"[..]),
        ts,
    )
    .await;
    // A good record, with a header.
    send_to(
        &producer,
        FutureRecord::to(&topic)
            .payload(&good[..])
            .headers(OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some("v"),
            })),
        ts,
    )
    .await;
    // The right schema id, but the datum is cut short.
    send_to(
        &producer,
        FutureRecord::to(&topic).payload(&truncated[..]),
        ts,
    )
    .await;
    // A tombstone with a decodable key.
    send_to(&producer, FutureRecord::to(&topic).key(&good[..]), ts).await;

    let run = tail(strings(&[
        &topic,
        "--from-beginning",
        "--max-messages",
        "5",
        "--timeout",
        "30s",
        "--bootstrap-servers",
        &bootstrap,
        "--registry",
        &url,
    ]))
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let head = |offset: u32, headers: &str| {
        format!("{{\"topic\":\"{topic}\",\"partition\":0,\"offset\":{offset},\"timestamp\":{ts},\"headers\":{headers},")
    };
    assert_eq!(
        run.lines(),
        [
            format!("{}\"error\":\"value: schema id 999 is not known to the schema registry at {url}\"}}", head(0, "{}")),
            format!("{}\"error\":\"value: 5 bytes not in the Confluent wire format (magic byte 0, then a 4-byte schema id), starting 68656c6c6f\"}}", head(1, "{}")),
            format!("{}\"key\":null,\"value\":{{\"n\":42,\"s\":\"hi\"}}}}", head(2, r#"{"h":"v"}"#)),
            format!("{}\"error\":\"value: the 2 bytes after the header end before the datum of schema id {id} does (cut short, or written with another schema)\"}}", head(3, "{}")),
            format!("{}\"key\":{{\"n\":42,\"s\":\"hi\"}},\"value\":null}}", head(4, "{}")),
        ],
        "{}",
        run.stderr
    );

    // From the end (the default), nothing new: --timeout ends it quietly.
    let started = Instant::now();
    let idle = tail(strings(&[
        &topic,
        "--timeout",
        "2s",
        "--bootstrap-servers",
        &bootstrap,
        "--registry",
        &url,
    ]))
    .await;
    assert_eq!(idle.code, Some(0), "{idle:?}");
    assert!(idle.stdout.is_empty(), "{idle:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));

    // One-line errors.
    let unknown = tail(strings(&[
        &format!("{topic}-missing"),
        "--timeout",
        "5s",
        "--bootstrap-servers",
        &bootstrap,
        "--registry",
        &url,
    ]))
    .await;
    assert!(
        error_line(&unknown).contains(&format!("topic {topic}-missing does not exist")),
        "{unknown:?}"
    );
    let no_broker = tail(strings(&[
        &topic,
        "--timeout",
        "2s",
        "--bootstrap-servers",
        &format!("127.0.0.1:{}", closed_port()),
        "--registry",
        &url,
    ]))
    .await;
    assert!(
        error_line(&no_broker).contains("cannot reach Kafka at 127.0.0.1:"),
        "{no_broker:?}"
    );
    let no_registry = tail(strings(&[
        &topic,
        "--from-beginning",
        "--timeout",
        "5s",
        "--bootstrap-servers",
        &bootstrap,
        "--registry",
        &format!("http://127.0.0.1:{}", closed_port()),
    ]))
    .await;
    assert!(
        error_line(&no_registry).contains("did not answer"),
        "{no_registry:?}"
    );
    registry.shutdown().await.unwrap();
}
