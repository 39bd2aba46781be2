//! The broker's own ceiling: an rdkafka producer alone, configured as walcast's
//! (idempotent, acks=all, lz4, linger 5 ms, 1 MB batches), sending `count` keyed records
//! of `size` bytes to a new topic and timing until the last is acknowledged. What
//! walcast can reach into that broker is bounded by this figure.
//!
//! cargo run --release --example producer_ceiling -- BOOTSTRAP [COUNT] [SIZE]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

struct Counter(Arc<AtomicU64>, Arc<AtomicU64>);

impl ClientContext for Counter {}

impl ProducerContext for Counter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_ok() {
            self.0.fetch_add(1, Ordering::Relaxed);
        } else {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bootstrap = args
        .get(1)
        .expect("usage: producer_ceiling BOOTSTRAP [COUNT] [SIZE]");
    let count: u64 = args.get(2).map_or(1_000_000, |c| c.parse().expect("COUNT"));
    let size: usize = args.get(3).map_or(180, |s| s.parse().expect("SIZE"));
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let producer: ThreadedProducer<Counter> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "262144")
        .create_with_context(Counter(acked.clone(), failed.clone()))
        .expect("producer");
    let topic = format!("ceiling-{}", std::process::id());
    // Created first, with one partition (as walcast's default topics on this broker).
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("admin client");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(admin.create_topics(
            &[rdkafka::admin::NewTopic::new(
                &topic,
                1,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &rdkafka::admin::AdminOptions::new(),
        ))
        .expect("create topic");
    // A payload that compresses like an Avro change event (mixed text and numbers).
    let payload: Vec<u8> = (0..size)
        .map(|i| b"0123456789abcdefghij paid sku-"[(i * 7 + i / 13) % 30])
        .collect();
    let start = Instant::now();
    for i in 0..count {
        let key = i.to_be_bytes();
        loop {
            let record = BaseRecord::to(&topic).key(&key[..]).payload(&payload[..]);
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err((e, _)) => panic!("send: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let seconds = start.elapsed().as_secs_f64();
    let ok = acked.load(Ordering::Relaxed);
    println!(
        "rdkafka producer alone: records={ok} failed={} bytes_each={size} seconds={seconds:.2} records_per_second={:.0}",
        failed.load(Ordering::Relaxed),
        ok as f64 / seconds
    );
}
