#!/usr/bin/env python3
"""deploy/local/show_events.py: print the events walcast wrote for the demo connector.

Reads the demo topics (demo.inventory.customers|products|orders) from the beginning,
decodes keys and values (Avro, Confluent wire format) through the schema registry,
and prints one JSON line per event:

  {"topic": ..., "key": {...}, "op": "c|u|d|r", "before": {...}, "after": {...},
   "source": {"lsn": ..., "txId": ...}}

(a tombstone, the null value that follows a delete, prints as "tombstone": true).
Stops by itself once every partition is read to its end, or after --timeout seconds,
then prints the events in the order of their changes in the WAL (source.lsn), each
tombstone right after its delete.
Topics that do not exist yet are skipped: walcast creates a table's topic with its
first event.

Usage: show_events.py [--bootstrap HOST:PORT] [--registry URL] [--topics A,B,...]
                      [--timeout SECONDS]
  Defaults: WALCAST_KAFKA_BOOTSTRAP and WALCAST_REGISTRY_URL (from the local stack's
  stack.env: set -a; . .walcast-stack/stack.env; set +a), the three demo topics, 10 s.
Needs: pip install 'confluent-kafka[avro,schemaregistry]'
Exit status: 0 at least one event printed, 1 none (or an error), 3 the Python
package confluent_kafka (or its Avro/registry extras) is missing.
"""

import argparse
import base64
import datetime
import decimal
import json
import os
import sys
import time
import uuid

DEMO_TOPICS = "demo.inventory.customers,demo.inventory.products,demo.inventory.orders"
INSTALL_HINT = "pip install 'confluent-kafka[avro,schemaregistry]'"


def to_json(value):
    """json.dumps fallback for what the Avro decoder returns besides JSON types."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return repr(value)


def main():
    parser = argparse.ArgumentParser(
        description="Print walcast's demo events (one JSON line each).",
        epilog="Needs: " + INSTALL_HINT,
    )
    parser.add_argument("--bootstrap", default=os.environ.get("WALCAST_KAFKA_BOOTSTRAP", ""))
    parser.add_argument("--registry", default=os.environ.get("WALCAST_REGISTRY_URL", ""))
    parser.add_argument("--topics", default=DEMO_TOPICS)
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="stop after this many seconds at the latest (default 10)")
    args = parser.parse_args()

    try:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        from confluent_kafka.serialization import MessageField, SerializationContext
    except ImportError as e:
        print(f"show_events: the Python package confluent_kafka with its Avro and schema "
              f"registry extras is needed ({e}); install it with:\n"
              f"    {INSTALL_HINT}", file=sys.stderr)
        return 3

    if not args.bootstrap or not args.registry:
        print("show_events: need --bootstrap and --registry (or WALCAST_KAFKA_BOOTSTRAP and "
              "WALCAST_REGISTRY_URL; see deploy/local/up)", file=sys.stderr)
        return 1

    deadline = time.monotonic() + args.timeout
    registry = SchemaRegistryClient({"url": args.registry})
    deserialize = AvroDeserializer(registry)   # no reader schema: decode with the writer's
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"walcast-show-events-{uuid.uuid4()}",   # nothing is committed
        "client.id": "walcast-show-events",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
    })
    events = []        # (lsn, read order, JSON line)
    last_lsn = {}      # (topic, partition) -> source.lsn of its last event: for tombstones
    try:
        metadata = consumer.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        wanted = [t.strip() for t in args.topics.split(",") if t.strip()]
        partitions = []
        for topic in wanted:
            meta = metadata.topics.get(topic)
            if meta is None or meta.error is not None:
                print(f"show_events: topic {topic} does not exist yet (no change of that "
                      f"table was captured)", file=sys.stderr)
                continue
            partitions += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        if not partitions:
            print("show_events: none of the topics exists yet: no events", file=sys.stderr)
            return 1
        # Plain assignment (no group rebalance): read each partition to its end once.
        consumer.assign(partitions)
        pending = {(tp.topic, tp.partition) for tp in partitions}
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                print(f"show_events: stopped after {args.timeout:g}s with "
                      f"{len(pending)} partition(s) not read to the end", file=sys.stderr)
                break
            msg = consumer.poll(min(0.5, remaining))
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard((msg.topic(), msg.partition()))
                else:
                    print(f"show_events: {msg.error()}", file=sys.stderr)
                continue
            topic = msg.topic()
            where = (topic, msg.partition())
            try:
                key = None
                if msg.key() is not None:
                    key = deserialize(msg.key(), SerializationContext(topic, MessageField.KEY))
                if msg.value() is None:
                    line = {"topic": topic, "key": key, "tombstone": True}
                    lsn = last_lsn.get(where, 0)
                else:
                    value = deserialize(msg.value(), SerializationContext(topic, MessageField.VALUE))
                    source = value.get("source") or {}
                    line = {
                        "topic": topic,
                        "key": key,
                        "op": value.get("op"),
                        "before": value.get("before"),
                        "after": value.get("after"),
                        "source": {"lsn": source.get("lsn"), "txId": source.get("txId")},
                    }
                    lsn = source.get("lsn") or 0
                    last_lsn[where] = lsn
            except Exception as e:  # one undecodable record: say so, go on
                print(f"show_events: {topic}[{msg.partition()}]@{msg.offset()}: cannot decode: "
                      f"{type(e).__name__}: {e}", file=sys.stderr)
                continue
            events.append((lsn, len(events), json.dumps(line, default=to_json)))
    except KeyboardInterrupt:
        pass
    except Exception as e:  # a broker or registry problem: one line, not a traceback
        print(f"show_events: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        consumer.close()
    for _, _, line in sorted(events):
        print(line)
    if not events:
        print("show_events: no events in the topics yet", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
