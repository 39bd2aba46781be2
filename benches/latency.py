"""Reads walcast's records of one topic and prints the latency from each change's commit
(the event's source.ts_us, PostgreSQL's commit time) to its acknowledgement by the
broker (the record's LogAppendTime: the topic is created with
message.timestamp.type=LogAppendTime). Usage: latency.py BOOTSTRAP REGISTRY TOPIC
IDLE_SECONDS SKIP_SECONDS

Also splits it: commit to the moment walcast built the event (the envelope's ts_us),
and from there to the broker's append."""
import os
import sys
import time

from confluent_kafka import DeserializingConsumer, TIMESTAMP_LOG_APPEND_TIME
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from latency_stats import print_timeline, summary

bootstrap, registry, topic, idle, skip = sys.argv[1:6]
idle, skip = float(idle), float(skip)
deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry}))
consumer = DeserializingConsumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"latency-{time.time()}",
    "auto.offset.reset": "earliest",
    "value.deserializer": deserializer,
})
consumer.subscribe([topic])
latencies = []
to_event = []
to_append = []
# LATENCY_TIMELINE=1: event-to-append per second of commit time, to tell a periodic
# stall from a scattered tail.
timeline = {} if os.environ.get("LATENCY_TIMELINE") else None
first_commit = None
last_seen = time.time()
while time.time() - last_seen < idle:
    msg = consumer.poll(0.5)
    if msg is None or msg.error() or msg.value() is None:
        continue
    last_seen = time.time()
    kind, appended_ms = msg.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME, "topic must use LogAppendTime"
    commit_us = msg.value()["source"]["ts_us"]
    first_commit = first_commit or commit_us
    if commit_us - first_commit < skip * 1e6:
        continue  # warm-up
    latencies.append(appended_ms - commit_us / 1000.0)
    event_us = msg.value()["ts_us"]
    to_event.append((event_us - commit_us) / 1000.0)
    to_append.append(appended_ms - event_us / 1000.0)
    if timeline is not None:
        second = int((commit_us - first_commit) / 1e6)
        timeline.setdefault(second, []).append(appended_ms - event_us / 1000.0)
consumer.close()
if not latencies:
    sys.exit("no records measured")
print(f"commit-to-ack latency: records={len(latencies)} {summary(latencies)}")
for name, values in (("commit-to-event", to_event), ("event-to-append", to_append)):
    print(f"  {name}: {summary(values)}")
if timeline:
    print_timeline("walcast event-to-append", timeline)
