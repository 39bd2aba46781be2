//! The local Kafka is real: topics are created, records produced and read back.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

use crate::common::stack;

#[tokio::test]
async fn create_produce_and_read_back() {
    let bootstrap = stack().kafka_bootstrap().to_owned();
    assert!(!bootstrap.is_empty(), "the stack has no Kafka");
    let topic = format!("smoke-{}", std::process::id());

    crate::common::create_topic(&bootstrap, &topic, 3).await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let delivery = producer
        .send(
            FutureRecord::to(&topic).key("k1").payload("hello walcast"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let (partition, offset) = (delivery.partition, delivery.offset);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("smoke-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, partition, rdkafka::Offset::Offset(offset))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let message = loop {
        assert!(std::time::Instant::now() < deadline, "no record came back");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => break m.detach(),
            Some(Err(e)) => panic!("consume failed: {e}"),
            None => continue,
        }
    };
    assert_eq!(message.key(), Some(&b"k1"[..]));
    assert_eq!(message.payload(), Some(&b"hello walcast"[..]));
    assert_eq!(message.offset(), offset);
}
