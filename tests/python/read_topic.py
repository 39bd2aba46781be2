"""Reads a walcast topic with Confluent's own Python client and prints the decoded
records as one JSON array: a check with a client nobody here wrote.

Usage: read_topic.py BOOTSTRAP REGISTRY_URL TOPIC COUNT
"""
import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

bootstrap, registry, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = SchemaRegistryClient({"url": registry})
keys = AvroDeserializer(client)
values = AvroDeserializer(client)
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": "python-check-" + topic,
    "enable.auto.commit": False,
})
# Wait for walcast to create the topic, then read its partitions from the start by
# assignment. A subscription to a topic that does not exist yet would only notice it
# at the next periodic metadata refresh (five minutes by default), after the deadline.
deadline = time.time() + 90
partitions = []
while not partitions and time.time() < deadline:
    metadata = consumer.list_topics(topic, timeout=5).topics.get(topic)
    if metadata is not None and metadata.error is None:
        partitions = sorted(metadata.partitions)
    else:
        time.sleep(0.2)
if not partitions:
    raise SystemExit(f"topic {topic} did not appear within 90 s")
consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
records = []
while len(records) < count and time.time() < deadline:
    message = consumer.poll(0.5)
    if message is None:
        continue
    if message.error():
        if message.error().code() == KafkaError._PARTITION_EOF:
            continue
        raise SystemExit(f"consume error: {message.error()}")
    key = keys(message.key(), SerializationContext(topic, MessageField.KEY)) if message.key() else None
    value = values(message.value(), SerializationContext(topic, MessageField.VALUE)) if message.value() is not None else None
    records.append({"key": key, "value": value, "headers": {k: v.decode() for k, v in (message.headers() or [])}})
consumer.close()
print(json.dumps(records, default=str))
