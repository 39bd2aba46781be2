#!/usr/bin/env python3
"""shipping.py: a downstream service fed by another service's outbox through walcast.

The orders service writes its state change and an outbox row in one transaction;
walcast's outbox transform turns each outbox insert into one event on
<prefix>.outbox.order: key = the order id (aggregateid), value = the payload (JSON
text), headers `id` (the event id) and the event type (`eventType`, placed there by
table_fields_additional_placement = "type:header:eventType").

This service keeps a `shipments` table in its own PostgreSQL database:

  OrderPlaced     a shipment for the order, status 'pending', items from the payload
  OrderPaid       status 'ready'
  OrderCancelled  status 'cancelled'
  anything else   recorded as processed, logged once per type, otherwise ignored

A consumer sees each event at least once: a crash between the database commit and
the offset commit reads the batch again. So every event's id goes into
`processed_events` in the same database transaction as its effect; an id already there
is a duplicate and skipped. Effects happen exactly once, and offsets are committed only
after the database commit (never before), so nothing is lost either. The key is the
order id, so one order's events share a partition and arrive in commit order.

Options: --help, and README.md next to this file. Exit status: 0 after SIGTERM/SIGINT
or --idle-exit, 1 on an error (one line on stderr), 2 for a usage error.
SHIPPING_FAILPOINT=after_apply:N (for tests) SIGKILLs the process right after the N-th
batch's database commit, before its offsets' commit.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Optional

import psycopg
from psycopg import errors as pgerrors
from psycopg.types.json import Jsonb
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

log = logging.getLogger("shipping")

SCHEMA = """
CREATE TABLE IF NOT EXISTS processed_events (
    event_id        uuid PRIMARY KEY,
    event_type      text NOT NULL,
    order_id        text NOT NULL,
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS shipments (
    order_id       text PRIMARY KEY,
    status         text NOT NULL CHECK (status IN ('pending', 'ready', 'cancelled')),
    items          jsonb,
    events_applied integer NOT NULL DEFAULT 1,   -- events that changed this row
    updated_at     timestamptz NOT NULL DEFAULT now());
"""
SCHEMA_LOCK = 0x73686970   # "ship": instances starting together create the tables once
STATUS = {"OrderPaid": "ready", "OrderCancelled": "cancelled"}
# Another instance of the group may hold the same event ids in another order (batches
# span partitions) or the connection may drop: the batch is retried from the start.
RETRYABLE = (pgerrors.DeadlockDetected, pgerrors.SerializationFailure, psycopg.OperationalError)
ATTEMPTS = 5


class Fatal(Exception):
    """Stops the service with one line; the batch in hand is not committed anywhere."""


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


@dataclass
class Event:
    where: str             # topic[partition]@offset, for messages
    topic: str
    partition: int
    offset: int
    event_id: str
    event_type: str
    order_id: str
    payload: Any           # the parsed JSON, or None for a null payload


@dataclass
class Stats:
    events: int = 0
    batches: int = 0
    applied: int = 0
    duplicates: int = 0
    unknown: int = 0
    orphans: int = 0       # OrderPaid/OrderCancelled for an order with no shipment

    def line(self) -> str:
        return (f"{self.events} events in {self.batches} batches: {self.applied} applied, "
                f"{self.duplicates} duplicates skipped, {self.unknown} of unknown types, "
                f"{self.orphans} for orders without a shipment")


class Shipping:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        # Avro through the registry: the key is an Avro string (the aggregateid column's
        # schema), the value an Avro string holding JSON (io.debezium.data.Json).
        self.avro = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))
        self.stats = Stats()
        self.warned_types: set[str] = set()
        self.stop = False
        self.assigned = False
        self.last_activity = time.monotonic()
        self.conn: Optional[psycopg.Connection] = None
        spec = os.environ.get("SHIPPING_FAILPOINT", "")
        m = re.fullmatch(r"after_apply:(\d+)", spec)
        if spec and not m:
            raise Fatal(f"SHIPPING_FAILPOINT={spec!r}: expected after_apply:N")
        self.failpoint = int(m.group(1)) if m else None

    def connect(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = psycopg.connect(self.args.target, autocommit=True, application_name="shipping")
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            self.conn.execute(SCHEMA)

    def decode(self, m) -> Event:
        where = f"{m.topic()}[{m.partition()}]@{m.offset()}"
        headers = {k: v.decode("utf-8", "replace") for k, v in (m.headers() or []) if v is not None}
        event_id, event_type = headers.get("id"), headers.get(self.args.event_type_header)
        if event_id is None or event_type is None:
            raise Fatal(f"{where}: no `id` or `{self.args.event_type_header}` header (headers: "
                        f"{sorted(headers)}); is this an outbox topic, and does "
                        f"--event-type-header name the connector's header placement?")
        try:
            uuid.UUID(event_id)
            key = self.avro(m.key(), SerializationContext(m.topic(), MessageField.KEY)) if m.key() else None
            value = self.avro(m.value(), SerializationContext(m.topic(), MessageField.VALUE)) \
                if m.value() is not None else None
            if isinstance(value, dict):    # with column:envelope placements: {payload, ...}
                value = value.get("payload")
            payload = json.loads(value) if value is not None else None
        except Exception as e:   # a bad uuid, Avro, registry answer or JSON: all fatal
            raise Fatal(f"{where}: cannot decode the event: {type(e).__name__}: {one_line(e)}") from e
        if not isinstance(key, str):
            raise Fatal(f"{where}: the key is {key!r}, not an order id")
        return Event(where, m.topic(), m.partition(), m.offset(), event_id, event_type, key, payload)

    def apply(self, events: list[Event]) -> Stats:
        """One database transaction: each event's id and its effect, or neither."""
        done = Stats(events=len(events), batches=1)
        with self.conn.transaction():
            for ev in events:
                fresh = self.conn.execute(
                    "INSERT INTO processed_events (event_id, event_type, order_id, topic, kafka_partition, "
                    "kafka_offset) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                    (ev.event_id, ev.event_type, ev.order_id, ev.topic, ev.partition, ev.offset)).rowcount
                if not fresh:
                    done.duplicates += 1
                    continue
                if ev.event_type == "OrderPlaced":
                    items = ev.payload.get("items") if isinstance(ev.payload, dict) else None
                    # A second OrderPlaced for one order (another event id) fails here:
                    # that is the orders service's bug, and must not be hidden.
                    self.conn.execute("INSERT INTO shipments (order_id, status, items) VALUES (%s, 'pending', %s)",
                                      (ev.order_id, None if items is None else Jsonb(items)))
                    done.applied += 1
                elif ev.event_type in STATUS:
                    changed = self.conn.execute(
                        "UPDATE shipments SET status = %s, events_applied = events_applied + 1, "
                        "updated_at = now() WHERE order_id = %s", (STATUS[ev.event_type], ev.order_id)).rowcount
                    if changed:
                        done.applied += 1
                    else:   # e.g. a group started at the end of the topic (no --from-beginning)
                        done.orphans += 1
                        log.warning("%s: %s for order %s, which has no shipment: ignored",
                                    ev.where, ev.event_type, ev.order_id)
                else:
                    done.unknown += 1
                    if ev.event_type not in self.warned_types:
                        self.warned_types.add(ev.event_type)
                        log.warning("%s: unknown event type %r: recorded as processed, otherwise "
                                    "ignored (said once per type)", ev.where, ev.event_type)
        return done

    def apply_with_retries(self, events: list[Event]) -> None:
        delay = 0.5
        for attempt in range(1, ATTEMPTS + 1):
            try:
                if self.conn is None or self.conn.broken:
                    self.connect()
                done = self.apply(events)
                break
            except RETRYABLE as e:
                if attempt == ATTEMPTS:
                    raise Fatal(f"target database: {one_line(e)} (gave up after {attempt} attempts)") from e
                log.warning("target database: %s; retrying the batch in %.1fs", one_line(e), delay)
                time.sleep(delay)
                delay *= 2
            except psycopg.Error as e:
                raise Fatal(f"target database: {one_line(e)} while applying the batch from "
                            f"{events[0].where}") from e
        for name in vars(done):
            setattr(self.stats, name, getattr(self.stats, name) + getattr(done, name))
        if done.duplicates:
            # Normal after a crash or a rebalance; tests count this line.
            log.info("skipped %d duplicate events (processed before) in the batch from %s",
                     done.duplicates, events[0].where)

    def run(self) -> int:
        args = self.args
        conf = {
            "bootstrap.servers": args.bootstrap_servers,
            "group.id": args.group,
            "client.id": "shipping",
            "enable.auto.commit": False,          # committed after the database, below
            "isolation.level": "read_committed",  # never an aborted Kafka transaction's records
            "auto.offset.reset": "earliest" if args.from_beginning else "latest",
            "topic.metadata.refresh.interval.ms": 10000,   # new topics of a pattern within 10 s
        }
        conf.update(dict(args.consumer_property))
        self.connect()
        consumer = Consumer(conf)
        topics = [args.topics] if args.topics.startswith("^") else \
            [t.strip() for t in args.topics.split(",") if t.strip()]
        consumer.subscribe(topics, on_assign=self._on_assign)
        log.info("consuming %s as group %s", ", ".join(topics), args.group)
        try:
            while not self.stop:
                messages = consumer.consume(num_messages=args.batch_size, timeout=1.0)
                records = []
                for m in messages:
                    err = m.error()
                    if err is None:
                        records.append(m)
                    elif err.fatal():
                        raise Fatal(f"Kafka: {err.str()}")
                    elif err.code() != KafkaError._PARTITION_EOF:
                        log.warning("Kafka: %s", err.str())
                now = time.monotonic()
                if not records:
                    # Idle counts from the assignment: joining may wait for a killed
                    # member's session to time out.
                    if args.idle_exit and self.assigned and now - self.last_activity >= args.idle_exit:
                        log.info("no events for %gs: exiting (--idle-exit)", args.idle_exit)
                        break
                    continue
                self.last_activity = now
                self.apply_with_retries([self.decode(m) for m in records])
                if self.failpoint is not None and self.stats.batches >= self.failpoint:
                    log.warning("SHIPPING_FAILPOINT: killing myself after batch %d's database commit "
                                "(%d events), before its offsets are committed",
                                self.stats.batches, len(records))
                    sys.stderr.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                self.commit(consumer, records)
        finally:
            log.info("stopped: %s", self.stats.line())
            try:
                consumer.close()        # leaves the group at once: no session timeout to wait
            except KafkaException as e:
                log.warning("closing the consumer: %s", e)
            self.conn.close()
        return 0

    @staticmethod
    def commit(consumer: Consumer, records: list) -> None:
        offsets: dict[tuple[str, int], int] = {}
        for m in records:
            offsets[(m.topic(), m.partition())] = max(offsets.get((m.topic(), m.partition()), 0), m.offset() + 1)
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                            asynchronous=False)
        except KafkaException as e:
            err = e.args[0] if e.args else None
            if isinstance(err, KafkaError) and err.fatal():
                raise Fatal(f"Kafka: committing offsets: {err.str()}") from e
            # A rebalance took the partitions: their next reader skips these events as
            # duplicates, so this costs nothing but the re-reading.
            log.warning("offsets not committed (%s); the next reader skips these events as duplicates", e)

    def _on_assign(self, _consumer, partitions) -> None:
        self.assigned = True
        self.last_activity = time.monotonic()
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing")


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Ship orders: consume an outbox topic into a shipments table.")
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--registry", required=True, help="schema registry URL")
    p.add_argument("--group", required=True, help="consumer group id")
    p.add_argument("--topics", required=True,
                   help="comma-separated topics, or one regular expression starting with ^")
    p.add_argument("--target", required=True, help="libpq connection string of the shipping database")
    p.add_argument("--from-beginning", action="store_true",
                   help="partitions without a committed offset start at the beginning (default: the end)")
    p.add_argument("--idle-exit", type=float, default=0, metavar="SECONDS",
                   help="exit 0 after this long without events, counted from the assignment")
    p.add_argument("--event-type-header", default="eventType",
                   help="the header holding the event type (default eventType)")
    p.add_argument("--batch-size", type=int, default=100, help="events per database transaction at most")
    p.add_argument("--consumer-property", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="librdkafka consumer property (repeatable), e.g. session.timeout.ms=6000")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error("--batch-size must be at least 1")
    if args.topics.startswith("^"):
        try:
            re.compile(args.topics)
        except re.error as e:
            p.error(f"--topics {args.topics!r}: {e}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # Libraries (the registry client's HTTP requests, psycopg) only say warnings.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    try:
        service = Shipping(args)

        def stop(signum, _frame):
            log.info("%s: finishing the batch in hand, then stopping", signal.Signals(signum).name)
            service.stop = True
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        return service.run()
    except Fatal as e:
        log.error("%s", e)
    except psycopg.Error as e:
        log.error("target database: %s", one_line(e))
    except KafkaException as e:
        log.error("Kafka: %s", one_line(e))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
