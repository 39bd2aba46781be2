//! Records walcast did not write never make it skip its own events: every record carries
//! the connector's identity (`walcast.source`: name and the database's system
//! identifier), and an exactly-once restart reconciles against those records only.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::common::{consume_records, start_streaming};
use crate::common::{stack, start_registry, stop_with_sigterm, TestDb};

/// Produces one record with `headers` to every partition of `topic`, or one placed by
/// its key as the Java client would. Without a key and value (a null record) the test's
/// Avro reader passes it through undecoded.
fn forge(
    topic: &str,
    key_value: Option<(&[u8], &[u8])>,
    headers: &[(&str, &str)],
    every_partition: bool,
) {
    let bootstrap = stack().kafka_bootstrap();
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let partitions = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap()
        .topics()[0]
        .partitions()
        .len() as i32;
    let targets: Vec<Option<i32>> = if every_partition {
        (0..partitions).map(Some).collect()
    } else {
        vec![None]
    };
    for partition in targets {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).headers(h);
        if let Some((key, value)) = key_value {
            record = record.key(key).payload(value);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Rows committed while walcast was stopped, then a forged record in every partition of
/// the table's topic claiming a position past them (no identity, or another
/// connector's), and a forged checkpoint for the connector in `walcast.offsets` with
/// another identity: the restarted connector still delivers every row, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_position_headers_do_not_hide_events() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE public.items (id int PRIMARY KEY, note text)");
    let name = "foreign";
    let file = db.connector_with_registry(name, "", "[tables.\"public.items\"]", &registry.url());
    let mut walcast = start_streaming(&db, &file, name);
    db.psql("INSERT INTO items VALUES (1, 'before')");
    let topic = format!("{}.public.items", db.name);
    let first = consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 1).await;
    assert_eq!(first.len(), 1);
    let identity = first[0].headers["walcast.source"].clone();
    assert!(
        identity.starts_with("foreign@") && identity.len() > "foreign@".len(),
        "connector name and system identifier: {identity}"
    );
    assert!(stop_with_sigterm(&mut walcast).success());

    db.psql("INSERT INTO items SELECT g, 'while stopped' FROM generate_series(2, 5) g");
    let beyond = format!("{}#0", db.psql("SELECT pg_current_wal_insert_lsn()"));
    // A producer that is not walcast, and another connector on a shared topic.
    forge(&topic, None, &[("walcast.position", &beyond)], true);
    forge(
        &topic,
        None,
        &[
            ("walcast.position", &beyond),
            ("walcast.source", "foreign@1"),
        ],
        true,
    );
    let checkpoint = serde_json::json!({
        "connector": name,
        "slot": format!("walcast_{name}"),
        "source": "foreign@1",
        "position": beyond,
        "flush_lsn": beyond.trim_end_matches("#0"),
    });
    let checkpoint = checkpoint.to_string();
    forge(
        "walcast.offsets",
        Some((name.as_bytes(), checkpoint.as_bytes())),
        &[],
        false,
    );

    let log = db.dir.path().join("walcast.log");
    let mut walcast = crate::common::start_walcast(&file, &log);
    db.wait_for_slot(&format!("walcast_{name}"), true);
    db.psql("INSERT INTO items VALUES (6, 'after')");
    let records =
        consume_records(stack().kafka_bootstrap(), &topic, Some(&registry.url()), 6).await;
    stop_with_sigterm(&mut walcast);
    let ours: Vec<i64> = records
        .iter()
        .filter(|r| r.headers.get("walcast.source") == Some(&identity))
        .map(|r| r.value.as_ref().unwrap()["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ours,
        [1, 2, 3, 4, 5, 6],
        "every row once; log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    registry.shutdown().await.unwrap();
}
