"""Reads a walcast topic with Confluent's own Python client and prints the decoded
records as one JSON array: a check with a client nobody here wrote.

Usage: read_topic.py BOOTSTRAP REGISTRY_URL TOPIC COUNT
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError
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
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
consumer.subscribe([topic])
records = []
deadline = time.time() + 30
while len(records) < count and time.time() < deadline:
    message = consumer.poll(0.5)
    if message is None:
        continue
    if message.error():
        # The topic may not exist yet when walcast has not produced to it.
        if message.error().code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            continue
        raise SystemExit(f"consume error: {message.error()}")
    key = keys(message.key(), SerializationContext(topic, MessageField.KEY)) if message.key() else None
    value = values(message.value(), SerializationContext(topic, MessageField.VALUE)) if message.value() is not None else None
    records.append({"key": key, "value": value, "headers": {k: v.decode() for k, v in (message.headers() or [])}})
consumer.close()
print(json.dumps(records, default=str))
