"""The broker's own append latency, the floor under walcast's event-to-append figure:
a producer configured as walcast's (idempotent, acks=all, lz4, linger 5 ms, ...) sends RATE
small keyed records per second for SECONDS to a LogAppendTime topic, each stamped with
its send time; the records are then read back and p50/p90/p99 from send to the
broker's append printed, after a warm-up, with the same per-second timeline as
latency.py when LATENCY_TIMELINE is set.

Usage: latency_broker.py BOOTSTRAP TOPIC RATE SECONDS WARMUP_S
"""
import os
import struct
import sys
import time

from confluent_kafka import Consumer, Producer, TIMESTAMP_LOG_APPEND_TIME
from confluent_kafka.admin import AdminClient, NewTopic
from latency_stats import print_timeline, summary

bootstrap, topic = sys.argv[1], sys.argv[2]
rate, seconds, warmup = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])

admin = AdminClient({"bootstrap.servers": bootstrap})
for future in admin.create_topics(
    [NewTopic(topic, 1, 1, config={"message.timestamp.type": "LogAppendTime"})]
).values():
    future.result()

producer = Producer({  # walcast's producer settings in its default (exactly_once) mode
    "bootstrap.servers": bootstrap,
    "enable.idempotence": True,
    "enable.gapless.guarantee": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 5,
    "batch.size": 1000000,
    "queue.buffering.max.kbytes": 262144,
    "socket.nagle.disable": True,
    "reconnect.backoff.max.ms": 2000,
})
padding = b"x" * 150  # about the size of one of walcast's Avro records
started = time.time()
sent = 0
while True:
    elapsed = time.time() - started
    if elapsed >= seconds:
        break
    # Paced by the clock: as many records as are due by now.
    due = int(elapsed * rate)
    while sent < due:
        value = struct.pack(">d", time.time()) + padding
        producer.produce(topic, key=str(sent).encode(), value=value)
        sent += 1
    producer.poll(0)
    time.sleep(0.0005)
if producer.flush(30) != 0:
    sys.exit("the broker did not acknowledge every record within 30 s")

consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"latency-broker-{time.time()}",
    "auto.offset.reset": "earliest",
    "enable.partition.eof": True,
})
consumer.subscribe([topic])
latencies = []
timeline = {} if os.environ.get("LATENCY_TIMELINE") else None
seen = 0
deadline = time.time() + 120
while seen < sent and time.time() < deadline:
    msg = consumer.poll(0.5)
    if msg is None or msg.error():
        continue
    seen += 1
    kind, appended_ms = msg.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME, "topic must use LogAppendTime"
    (sent_s,) = struct.unpack(">d", msg.value()[:8])
    if sent_s - started < warmup:
        continue
    latency = appended_ms - sent_s * 1000.0
    latencies.append(latency)
    if timeline is not None:
        timeline.setdefault(int(sent_s - started), []).append(latency)
consumer.close()
if seen < sent:
    sys.exit(f"read back {seen} of {sent} records within 120 s")
if not latencies:
    sys.exit("no records measured")
print(f"broker alone send-to-append: records={len(latencies)} {summary(latencies)}")
if timeline:
    print_timeline("broker alone", timeline)
