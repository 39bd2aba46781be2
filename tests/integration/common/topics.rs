//! Reading walcast's topics back: records decoded through the registry (Avro) or as
//! JSON, with their headers, in walcast's position order; and the public.orders
//! changes the outage and chaos tests compare with the oracle.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use apache_avro::types::Value as Avro;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

pub(crate) fn field<'a>(record: &'a Avro, name: &str) -> Option<&'a Avro> {
    match record {
        Avro::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
        Avro::Union(_, inner) => field(inner, name),
        _ => None,
    }
}

pub(crate) fn text(v: Option<&Avro>) -> Option<String> {
    match v? {
        Avro::String(s) => Some(s.clone()),
        Avro::Union(_, inner) => text(Some(inner)),
        _ => None,
    }
}

pub(crate) fn int(v: Option<&Avro>) -> Option<i64> {
    match v? {
        Avro::Int(i) => Some(i64::from(*i)),
        Avro::Long(i) => Some(*i),
        Avro::Union(_, inner) => int(Some(inner)),
        _ => None,
    }
}

/// One consumed record: key and value decoded (Avro through the registry, or as JSON
/// text), and its headers as text.
#[derive(Debug)]
pub(crate) struct Consumed {
    pub(crate) key: Option<serde_json::Value>,
    pub(crate) value: Option<serde_json::Value>,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) partition: i32,
    /// The record's timestamp (ms) as Kafka holds it.
    pub(crate) timestamp_ms: Option<i64>,
}

/// An Avro value as JSON (records as objects, unions unwrapped), for assertions.
fn avro_json(v: &Avro) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Avro::Null => J::Null,
        Avro::Boolean(b) => J::Bool(*b),
        Avro::Int(i) => J::from(*i),
        Avro::Long(i) => J::from(*i),
        Avro::Float(f) => J::from(f64::from(*f)),
        Avro::Double(f) => J::from(*f),
        Avro::String(s) | Avro::Enum(_, s) => J::String(s.clone()),
        Avro::Union(_, inner) => avro_json(inner),
        Avro::Array(items) => J::Array(items.iter().map(avro_json).collect()),
        Avro::Record(fields) => J::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), avro_json(v)))
                .collect(),
        ),
        other => J::String(format!("{other:?}")),
    }
}

/// One change of public.orders as the outage tests compare it: (op, id, status).
pub(crate) type Change = (String, i64, Option<String>);

/// Every record of `topic` (all partitions) until `expected` arrived and nothing more
/// came for a moment, in walcast's position order. `registry`: decode Avro through it;
/// `None`: the records are JSON.
pub(crate) async fn consume_records(
    bootstrap: &str,
    topic: &str,
    registry: Option<&str>,
    expected: usize,
) -> Vec<Consumed> {
    let client = [("bootstrap.servers", bootstrap)];
    consume_until(&client, topic, registry, Duration::from_secs(60), |r| {
        r.len() >= expected
    })
    .await
}

/// The changes of a public.orders topic (op, id, status; a delete's old row holds only
/// the key, so its status is not compared) once `expected` changes arrived, and the
/// number of tombstones.
pub(crate) async fn consume(
    bootstrap: &str,
    topic: &str,
    registry: &str,
    expected: usize,
) -> (Vec<Change>, usize) {
    consume_changes(
        &[("bootstrap.servers", bootstrap)],
        topic,
        registry,
        expected,
    )
    .await
}

/// [`consume`] with a client configuration of its own (e.g. a SASL listener's).
pub(crate) async fn consume_changes(
    client: &[(&str, &str)],
    topic: &str,
    registry: &str,
    expected: usize,
) -> (Vec<Change>, usize) {
    let records = consume_until(
        client,
        topic,
        Some(registry),
        Duration::from_secs(60),
        |r| r.iter().filter(|c| c.value.is_some()).count() >= expected,
    )
    .await;
    let tombstones = records.iter().filter(|c| c.value.is_none()).count();
    (
        records.iter().filter_map(Consumed::change).collect(),
        tombstones,
    )
}

impl Consumed {
    /// (op, id, status) of a change record; `None` for a tombstone.
    pub(crate) fn change(&self) -> Option<Change> {
        let value = self.value.as_ref()?;
        let op = value["op"].as_str()?.to_owned();
        let row = &value[if op == "d" { "before" } else { "after" }];
        let status = if op == "d" {
            None
        } else {
            row["status"].as_str().map(str::to_owned)
        };
        Some((op, row["id"].as_i64()?, status))
    }
}

/// Numbers each reader's consumer group: two readers never share partitions.
static READERS: AtomicU64 = AtomicU64::new(0);

/// The one topic reader: every record of `topic` (all partitions, read_committed),
/// keys and values decoded, until `done` holds for what arrived and nothing more came
/// for 3 s (or `timeout`), sorted into walcast's position order.
pub(crate) async fn consume_until(
    client: &[(&str, &str)],
    topic: &str,
    registry: Option<&str>,
    timeout: Duration,
    done: impl Fn(&[Consumed]) -> bool,
) -> Vec<Consumed> {
    use rdkafka::message::Headers;
    let mut config = ClientConfig::new();
    for (k, v) in client {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config
        .set(
            "group.id",
            format!("records-{topic}-{}", READERS.fetch_add(1, Ordering::SeqCst)),
        )
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let http = reqwest::Client::new();
    let mut schemas: BTreeMap<u32, apache_avro::Schema> = BTreeMap::new();
    let mut got: Vec<Consumed> = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        let m = match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => m,
            // Subscribed before walcast created the topic.
            Some(Err(e))
                if e.rdkafka_error_code()
                    == Some(rdkafka::error::RDKafkaErrorCode::UnknownTopicOrPartition) =>
            {
                continue
            }
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            None if quiet_since.elapsed() > Duration::from_secs(3) && done(&got) => break,
            None => continue,
        };
        quiet_since = Instant::now();
        let key = decode_record(m.key(), registry, &http, &mut schemas).await;
        let value = decode_record(m.payload(), registry, &http, &mut schemas).await;
        let headers: BTreeMap<String, String> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        got.push(Consumed {
            key,
            value,
            headers,
            partition: m.partition(),
            timestamp_ms: m.timestamp().to_millis(),
        });
    }
    // Records without walcast's position (heartbeats) stay in arrival order.
    if got
        .iter()
        .all(|c| c.headers.contains_key("walcast.position"))
    {
        got.sort_by_key(Consumed::position);
    }
    got
}

impl Consumed {
    /// The walcast position the record carries.
    pub(crate) fn position(&self) -> walcast::checkpoint::Position {
        self.headers["walcast.position"].parse().unwrap()
    }
}

/// A key or value: JSON as is, or Avro decoded with the schema its id names.
async fn decode_record(
    bytes: Option<&[u8]>,
    registry: Option<&str>,
    http: &reqwest::Client,
    schemas: &mut BTreeMap<u32, apache_avro::Schema>,
) -> Option<serde_json::Value> {
    let bytes = bytes?;
    let Some(registry) = registry else {
        return Some(serde_json::from_slice(bytes).expect("a JSON record"));
    };
    assert_eq!(bytes[0], 0, "Confluent magic byte");
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    if let std::collections::btree_map::Entry::Vacant(slot) = schemas.entry(id) {
        slot.insert(registry_schema(http, registry, id).await);
    }
    let v = apache_avro::from_avro_datum(&schemas[&id], &mut &bytes[5..], None)
        .expect("decodes with the registered schema");
    Some(avro_json(&v))
}

/// The Avro schema the registry at `registry` holds under `id`.
pub(crate) async fn registry_schema(
    http: &reqwest::Client,
    registry: &str,
    id: u32,
) -> apache_avro::Schema {
    let body = http
        .get(format!("{registry}/schemas/ids/{id}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    apache_avro::Schema::parse_str(body["schema"].as_str().unwrap()).unwrap()
}

/// Creates `topic` with `partitions` partitions (replication factor 1).
pub(crate) async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");
}
