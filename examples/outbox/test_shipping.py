#!/usr/bin/env python3
"""End-to-end test of shipping.py (an outbox consumer) against a running deploy/local stack.

  WALCAST_BIN=/path/to/walcast WALCAST_STATE_DIR=/path/to/stack-state \\
      python3 examples/outbox/test_shipping.py

WALCAST_STATE_DIR is a deploy/local/up state directory (its stack.env names PostgreSQL,
Kafka and the schema registry). The test creates an "orders" source database (tables
orders and outbox) and a "shipping" target database, a connector capturing the outbox
with the outbox transform (three partitions per topic), runs `walcast setup` and
`walcast run`, and an orders-service workload: every business transaction changes
`orders` and inserts its event into `outbox` together; some roll back (their events
must never be seen), some delete their outbox rows before committing (their events
must still arrive), a periodic cleanup empties the outbox, some events have a type
shipping does not know, some a NULL payload, some go to another aggregate's topic, and
a few rows are in the outbox before walcast starts (initial snapshot).

shipping.py then runs four times in one group: killed by its failpoint right after a
batch's database commit (before the offsets' commit), SIGKILLed while the workload
streams, until idle, and stopped with SIGTERM while caught up. Checks: the outbox topics
hold every committed event exactly once, each order's events on one partition in commit
order; `shipments` equals what the committed orders imply (status, items, and how many
events changed each); `processed_events` holds exactly the committed order events' ids;
the replayed batch was skipped as duplicates; after SIGTERM the group's offsets are at
the end of every partition.

Exit status 0 when everything matched (one summary line on stdout), 1 otherwise (with
what differed). Every wait is bounded. Databases and the slot are dropped on success and
kept on failure (KEEP=1 keeps them always). Env: SEED (default 1), WALCAST_TEST_WORKDIR.
"""

from __future__ import annotations

import collections
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPING = os.path.join(HERE, "shipping.py")
KNOWN = ("OrderPlaced", "OrderPaid", "OrderCancelled")
SHIPMENT_STATUS = {"placed": "pending", "paid": "ready", "cancelled": "cancelled"}


class Failure(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def say(message: str) -> None:
    print(f"test_shipping: {message}", file=sys.stderr, flush=True)


def load_stack_env(state_dir: str) -> dict[str, str]:
    path = os.path.join(state_dir, "stack.env")
    check(os.path.exists(path), f"{path} does not exist: start the stack with deploy/local/up --state-dir {state_dir}")
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key] = shlex.split(value)[0] if value else ""
    for key in ("WALCAST_PG_HOST", "WALCAST_PG_PORT", "WALCAST_KAFKA_BOOTSTRAP", "WALCAST_REGISTRY_URL"):
        check(bool(env.get(key)), f"{path}: {key} is empty; the stack needs postgres, kafka and registry")
    return env


def tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"({e})"


class Test:
    def __init__(self):
        self.walcast_bin = os.environ.get("WALCAST_BIN", "")
        check(bool(self.walcast_bin) and os.access(self.walcast_bin, os.X_OK),
              f"WALCAST_BIN={self.walcast_bin!r} is not an executable walcast binary")
        state = os.environ.get("WALCAST_STATE_DIR") or os.environ.get("WALCAST_STACK_DIR")
        check(bool(state), "set WALCAST_STATE_DIR to a running deploy/local stack's state directory")
        self.stack = load_stack_env(state)
        self.seed = int(os.environ.get("SEED", "1"))
        self.rng = random.Random(self.seed)
        self.workdir = os.environ.get("WALCAST_TEST_WORKDIR") or tempfile.mkdtemp(prefix="shipping-test-")
        os.makedirs(self.workdir, exist_ok=True)
        self.name = f"ob{int(time.time()) % 1000000}p{os.getpid() % 1000}"
        self.src_db, self.ship_db = f"{self.name}_orders", f"{self.name}_shipping"
        self.connector = os.path.join(self.workdir, f"{self.name}.toml")
        self.group = f"{self.name}-shipping"
        self.order_topic, self.customer_topic = f"{self.name}.outbox.order", f"{self.name}.outbox.customer"
        self.walcast: subprocess.Popen | None = None
        self.children: list[subprocess.Popen] = []
        # The orders service's ledger, written by one workload thread at a time: every
        # committed event (id, aggregate type, aggregate id, type) in commit order.
        self.committed: list[tuple[str, str, str, str]] = []
        self.rolled_back: set[str] = set()
        self.deleted_in_tx: set[str] = set()
        self.next_order = 1
        self.workload_error: BaseException | None = None
        self.stop_workload = threading.Event()

    # --- plumbing ---------------------------------------------------------------------------

    def dsn(self, db: str) -> str:
        return (f"host={self.stack['WALCAST_PG_HOST']} port={self.stack['WALCAST_PG_PORT']} "
                f"user={self.stack.get('WALCAST_PG_USER') or 'postgres'} dbname={db}")

    def connect(self, db: str) -> psycopg.Connection:
        return psycopg.connect(self.dsn(db), autocommit=True, connect_timeout=10)

    def start(self, cmd: list[str], log_name: str, env: dict | None = None) -> subprocess.Popen:
        path = os.path.join(self.workdir, log_name)
        with open(path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                    env={**os.environ, **(env or {})})
        proc.log_path = path   # type: ignore[attr-defined]
        self.children.append(proc)
        return proc

    def wait_exit(self, proc: subprocess.Popen, timeout: float, what: str) -> int:
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise Failure(f"{what} did not exit within {timeout:.0f}s:\n{tail(proc.log_path)}")

    def walcast_alive(self) -> None:
        if self.walcast is not None and self.walcast.poll() is not None:
            raise Failure(f"walcast run exited ({self.walcast.returncode}):\n{tail(self.walcast.log_path)}")

    # --- setup ------------------------------------------------------------------------------

    def create(self) -> None:
        with self.connect("postgres") as admin:
            for db in (self.src_db, self.ship_db):
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        with self.connect(self.src_db) as src:
            src.execute("""CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL,
                           status text NOT NULL, items jsonb NOT NULL, total numeric(10,2) NOT NULL)""")
            src.execute("""CREATE TABLE outbox (id uuid PRIMARY KEY, aggregatetype text NOT NULL,
                           aggregateid text NOT NULL, type text NOT NULL, payload jsonb)""")
        s = self.stack
        with open(self.connector, "w") as f:
            f.write(f'''name = "{self.name}"
[source]
host = "{s['WALCAST_PG_HOST']}"
port = {s['WALCAST_PG_PORT']}
dbname = "{self.src_db}"
user = "{s.get('WALCAST_PG_USER') or 'postgres'}"
sslmode = "disable"
connect_timeout = "5s"
spool_dir = "{os.path.join(self.workdir, 'spool')}"
[kafka]
bootstrap_servers = "{s['WALCAST_KAFKA_BOOTSTRAP']}"
topic_prefix = "{self.name}"
partitions = 3
replication_factor = 1
[registry]
url = "{s['WALCAST_REGISTRY_URL']}"
[metrics]
enabled = false
[tables."public.outbox"]
outbox = {{ table_fields_additional_placement = "type:header:eventType" }}
''')

    def start_walcast(self) -> None:
        setup = subprocess.run([self.walcast_bin, "setup", self.connector], capture_output=True,
                               text=True, timeout=120, cwd=self.workdir)
        check(setup.returncode == 0, f"walcast setup failed ({setup.returncode}):\n{setup.stdout}{setup.stderr}")
        self.walcast = self.start([self.walcast_bin, "run", self.connector], "walcast.log")
        deadline = time.monotonic() + 60
        with self.connect(self.src_db) as src:
            while not src.execute("SELECT bool_or(active AND confirmed_flush_lsn IS NOT NULL) FROM "
                                  "pg_replication_slots WHERE slot_name = %s",
                                  (f"walcast_{self.name}",)).fetchone()[0]:
                self.walcast_alive()
                check(time.monotonic() < deadline, f"slot not ready after 60 s:\n{tail(self.walcast.log_path)}")
                time.sleep(0.2)

    def wait_confirmed(self, what: str, timeout: float = 120) -> None:
        """Until the slot's confirmed position passes everything written so far: walcast
        confirms only what Kafka acknowledged, so then every event is in its topic."""
        with self.connect(self.src_db) as src:
            target = src.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
            deadline = time.monotonic() + timeout
            while not src.execute("SELECT bool_or(confirmed_flush_lsn >= %s::pg_lsn) FROM pg_replication_slots "
                                  "WHERE slot_name = %s", (target, f"walcast_{self.name}")).fetchone()[0]:
                self.walcast_alive()
                check(time.monotonic() < deadline, f"walcast did not confirm {what} in {timeout:.0f}s:\n"
                                                   f"{tail(self.walcast.log_path)}")
                time.sleep(0.2)

    # --- the orders service -----------------------------------------------------------------

    def business_transaction(self, db: psycopg.Connection, before_snapshot: bool = False) -> None:
        """One transaction of the orders service: its state change and its events together.
        Before the snapshot only new orders, kept in the outbox: walcast's initial snapshot
        reads the outbox in primary-key (here random uuid) order, not commit order, so
        two events of one order from it could arrive swapped."""
        r = self.rng
        events: list[tuple[str, str, str, str]] = []

        def emit(aggregate: str, aggregate_id: object, kind: str, payload: object) -> None:
            event_id = str(uuid.UUID(int=r.getrandbits(128), version=4))
            db.execute("INSERT INTO outbox VALUES (%s, %s, %s, %s, %s)",
                       (event_id, aggregate, str(aggregate_id), kind, None if payload is None else Jsonb(payload)))
            events.append((event_id, aggregate, str(aggregate_id), kind))

        def pick(*statuses: str) -> int | None:
            row = db.execute("SELECT id FROM orders WHERE status = ANY(%s) ORDER BY random() LIMIT 1",
                             (list(statuses),)).fetchone()
            return row[0] if row else None

        def place() -> None:
            order_id, self.next_order = self.next_order, self.next_order + 1
            items = [{"sku": f"sku-{r.randint(1, 50)}", "qty": r.randint(1, 5)} for _ in range(r.randint(1, 3))]
            total = Decimal(r.randint(100, 50000)) / 100
            customer = f"c-{r.randint(1, 20)}"
            db.execute("INSERT INTO orders VALUES (%s, %s, 'placed', %s, %s)", (order_id, customer, Jsonb(items), total))
            emit("order", order_id, "OrderPlaced",
                 {"orderId": order_id, "customer": customer, "items": items, "total": str(total)})

        def set_status(order_id: int, status: str, kind: str, payload: object) -> None:
            db.execute("UPDATE orders SET status = %s WHERE id = %s", (status, order_id))
            emit("order", order_id, kind, payload)

        rollback = r.random() < 0.12
        delete_now = not before_snapshot and r.random() < 0.3
        with db.transaction():
            kind = "place" if before_snapshot else r.choices(
                ["place", "pay", "cancel", "place_pay", "two", "note", "customer"], weights=[5, 4, 2, 1, 1, 1, 1])[0]
            paid, cancellable = pick("placed"), pick("placed", "paid")
            if kind == "place" or (kind == "pay" and paid is None) or (kind == "cancel" and cancellable is None):
                place()
            elif kind == "pay":
                set_status(paid, "paid", "OrderPaid", {"orderId": paid, "amount": "12.50"})
            elif kind == "cancel":   # half of them with a NULL payload: a null Kafka value
                set_status(cancellable, "cancelled", "OrderCancelled",
                           None if r.random() < 0.5 else {"orderId": cancellable, "reason": "customer asked"})
            elif kind == "place_pay":   # two events for one order in one transaction
                place()
                set_status(self.next_order - 1, "paid", "OrderPaid", {"orderId": self.next_order - 1})
            elif kind == "two":         # two orders in one transaction
                place()
                place()
            elif kind == "note":        # a type shipping does not know
                order_id = pick("placed", "paid", "cancelled")
                if order_id is None:
                    place()
                else:
                    emit("order", order_id, "OrderNoteAdded", {"note": "leave at the door"})
            else:                       # another aggregate: its own topic, not shipping's
                emit("customer", f"c-{r.randint(1, 20)}", "CustomerUpdated", {"email": "x@example.com"})
            if delete_now:   # Debezium's pattern: the insert is in the WAL, the row is gone
                db.execute("DELETE FROM outbox WHERE id = ANY(%s::uuid[])", ([e[0] for e in events],))
            if rollback:
                raise psycopg.Rollback()
        if rollback:
            self.rolled_back.update(e[0] for e in events)
            self.next_order = db.execute("SELECT coalesce(max(id), 0) + 1 FROM orders").fetchone()[0]
        else:
            self.committed.extend(events)
            if delete_now:
                self.deleted_in_tx.update(e[0] for e in events)

    def workload(self, count: int, pause: float = 0.0, until_stopped: bool = False) -> None:
        with self.connect(self.src_db) as db:
            deadline = time.monotonic() + 60
            n = 0
            while (n < count or (until_stopped and not self.stop_workload.is_set())) \
                    and time.monotonic() < deadline:
                self.business_transaction(db)
                n += 1
                if n % 25 == 0:
                    db.execute("DELETE FROM outbox")   # a periodic cleanup: not events either
                time.sleep(pause)

    def workload_in_background(self, pause: float) -> threading.Thread:
        def run() -> None:
            try:
                self.workload(0, pause, until_stopped=True)
            except BaseException as e:  # reported by the main thread
                self.workload_error = e
        self.stop_workload.clear()
        thread = threading.Thread(target=run, name="workload")
        thread.start()
        return thread

    def join_workload(self, thread: threading.Thread) -> None:
        self.stop_workload.set()
        thread.join(120)
        check(not thread.is_alive(), "the workload did not stop within 120 s")
        if self.workload_error is not None:
            raise Failure(f"the workload failed: {self.workload_error!r}")

    # --- shipping ---------------------------------------------------------------------------

    def shipping(self, log_name: str, idle_exit: float = 0, env: dict | None = None,
                 by_name: bool = False) -> subprocess.Popen:
        """A run of shipping.py in the test's group: the topic by a pattern, or by name."""
        s = self.stack
        return self.start([sys.executable, SHIPPING, "--bootstrap-servers", s["WALCAST_KAFKA_BOOTSTRAP"],
                           "--registry", s["WALCAST_REGISTRY_URL"], "--group", self.group,
                           "--topics", self.order_topic if by_name else rf"^{re.escape(self.name)}\.outbox\.order$",
                           "--target", self.dsn(self.ship_db), "--from-beginning",
                           "--idle-exit", str(idle_exit), "--batch-size", "20",
                           # A killed member holds its partitions until its session times
                           # out (45 s by default): the broker's minimum keeps restarts quick.
                           "--consumer-property", "session.timeout.ms=6000",
                           "--consumer-property", "heartbeat.interval.ms=1000"], log_name, env)

    def processed(self) -> int:
        with self.connect(self.ship_db) as db:
            if not db.execute("SELECT to_regclass('processed_events') IS NOT NULL").fetchone()[0]:
                return 0
            return db.execute("SELECT count(*) FROM processed_events").fetchone()[0]

    @staticmethod
    def duplicates_in(proc: subprocess.Popen) -> int:
        return sum(int(n) for n in re.findall(r"skipped (\d+) duplicate events", tail(proc.log_path, 10**6)))

    @staticmethod
    def summary_of(proc: subprocess.Popen) -> str:
        lines = [l for l in tail(proc.log_path, 10**6).splitlines() if "shipping: stopped: " in l]
        return lines[-1].split("stopped: ", 1)[1] if lines else "(no summary)"

    def wait_until(self, what: str, proc: subprocess.Popen, timeout: float, done) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            check(proc.poll() is None, f"shipping exited ({proc.returncode}) before {what}:\n{tail(proc.log_path)}")
            check(time.monotonic() < deadline, f"shipping: not {what} after {timeout:.0f}s:\n{tail(proc.log_path)}")
            time.sleep(0.1)

    # --- checks -----------------------------------------------------------------------------

    def read_topic(self, topic: str) -> list[tuple[int, int, str, str, str]]:
        """Every record of `topic` as (partition, offset, id header, eventType header, key),
        read_committed, without a consumer group's offsets."""
        avro = AvroDeserializer(SchemaRegistryClient({"url": self.stack["WALCAST_REGISTRY_URL"]}))
        c = Consumer({"bootstrap.servers": self.stack["WALCAST_KAFKA_BOOTSTRAP"], "group.id": f"{self.name}-check",
                      "enable.auto.commit": False, "isolation.level": "read_committed"})
        try:
            meta = c.list_topics(topic, timeout=10).topics[topic]
            check(meta.error is None, f"topic {topic}: {meta.error}")
            check(len(meta.partitions) == 3, f"topic {topic} has {len(meta.partitions)} partitions, not 3")
            ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions}
            c.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
            out, seen, deadline = [], {p: 0 for p in ends}, time.monotonic() + 60
            while any(seen[p] < ends[p] for p in ends):
                check(time.monotonic() < deadline, f"{topic}: read only {seen} of {ends} in 60 s")
                for m in c.consume(500, 1.0):
                    if m.error():
                        continue
                    seen[m.partition()] = m.offset() + 1
                    h = {k: v.decode() for k, v in m.headers() or []}
                    key = avro(m.key(), SerializationContext(topic, MessageField.KEY))
                    out.append((m.partition(), m.offset(), h.get("id"), h.get("eventType"), key))
            return out
        finally:
            c.close()

    def check_topic(self, topic: str, aggregate: str) -> set[int]:
        records = self.read_topic(topic)
        ids = collections.Counter(r[2] for r in records)
        check(not [i for i in ids if ids[i] > 1], f"{topic}: events repeated: {[i for i in ids if ids[i] > 1][:5]}")
        expected = {e[0]: e for e in self.committed if e[1] == aggregate}
        check(not (set(ids) & self.rolled_back), f"{topic}: rolled-back events: {list(set(ids) & self.rolled_back)[:5]}")
        check(set(ids) == set(expected), f"{topic}: missing {list(set(expected) - set(ids))[:5]}, "
                                         f"unexpected {list(set(ids) - set(expected))[:5]}")
        where = {}
        for partition, offset, event_id, kind, key in records:
            _, _, aggregate_id, expected_kind = expected[event_id]
            check((kind, key) == (expected_kind, aggregate_id),
                  f"{topic}[{partition}]@{offset}: eventType {kind!r} key {key!r}, expected {expected_kind!r} {aggregate_id!r}")
            where[event_id] = (partition, offset)
        last: dict[str, tuple[int, int]] = {}
        for event_id, _, aggregate_id, _ in expected.values():   # commit order
            p, o = where[event_id]
            before = last.get(aggregate_id)
            check(before is None or (before[0] == p and before[1] < o),
                  f"{topic}: {aggregate} {aggregate_id}'s events are not in commit order on one partition")
            last[aggregate_id] = (p, o)
        return {p for p, _ in where.values()}

    def check_shipping(self) -> collections.Counter:
        applied = collections.Counter(e[2] for e in self.committed if e[1] == "order" and e[3] in KNOWN)
        with self.connect(self.src_db) as src, self.connect(self.ship_db) as ship:
            want = {(oid, SHIPMENT_STATUS[status], items, applied[oid]) for oid, status, items in src.execute(
                "SELECT id::text, status, items::text FROM orders")}
            have = {tuple(r) for r in ship.execute(
                "SELECT order_id, status, items::text, events_applied FROM shipments")}
            check(want == have, f"shipments differ from the orders: only expected "
                                f"{sorted(want - have)[:5]}, only in shipments {sorted(have - want)[:5]}")
            processed = {tuple(r) for r in ship.execute(
                "SELECT event_id::text, 'order', order_id, event_type FROM processed_events")}
            expected = {e for e in self.committed if e[1] == "order"}
            check(not ({p[0] for p in processed} & self.rolled_back), "processed_events holds rolled-back events")
            check(processed == expected, f"processed_events: missing {sorted(expected - processed)[:5]}, "
                                         f"unexpected {sorted(processed - expected)[:5]}")
        return collections.Counter(s for _, s, _, _ in want)

    def check_offsets_at_end(self) -> None:
        c = Consumer({"bootstrap.servers": self.stack["WALCAST_KAFKA_BOOTSTRAP"], "group.id": self.group,
                      "enable.auto.commit": False})
        try:
            parts = [TopicPartition(self.order_topic, p) for p in range(3)]
            for tp in c.committed(parts, timeout=10):
                end = c.get_watermark_offsets(TopicPartition(self.order_topic, tp.partition), timeout=10)[1]
                check(tp.offset == end, f"after SIGTERM the group's offset of partition {tp.partition} "
                                        f"is {tp.offset}, the end is {end}")
        finally:
            c.close()

    # --- the test ---------------------------------------------------------------------------

    def run(self) -> str:
        say(f"connector {self.name}, work dir {self.workdir}, seed {self.seed}")
        self.create()
        with self.connect(self.src_db) as db:    # outbox rows the initial snapshot reads
            for _ in range(10):
                self.business_transaction(db, before_snapshot=True)
        snapshot_events = len(self.committed)
        self.start_walcast()
        self.workload(150)
        self.wait_confirmed("phase 1")

        # 1. Killed by its failpoint right after its third batch's database commit.
        run1 = self.shipping("run1.log", idle_exit=60, env={"SHIPPING_FAILPOINT": "after_apply:3"})
        code = self.wait_exit(run1, 120, "run 1")
        check(code == -signal.SIGKILL, f"run 1 should have been killed by its failpoint, exit {code}:\n{tail(run1.log_path)}")
        m = re.search(r"SHIPPING_FAILPOINT: killing myself after batch 3's database commit \((\d+) events\)",
                      tail(run1.log_path, 10**6))
        check(m is not None, f"run 1 did not stop at its failpoint:\n{tail(run1.log_path)}")
        uncommitted = int(m.group(1))
        say(f"run 1 killed after its third batch's database commit ({self.processed()} events processed, "
            f"the last {uncommitted} without their offsets)")

        # 2. Reads run 1's last batch again (all duplicates), goes on while the workload
        # streams, and is SIGKILLed mid-way.
        run2 = self.shipping("run2.log")
        before = self.processed()
        workload = self.workload_in_background(pause=0.02)
        self.wait_until(f"past run 1's {uncommitted} uncommitted events and 60 new ones", run2, 120,
                        lambda: self.duplicates_in(run2) >= uncommitted and self.processed() >= before + 60)
        run2.send_signal(signal.SIGKILL)
        run2.wait(10)
        streaming = workload.is_alive()
        check(streaming and self.workload_error is None, f"the workload was not running when run 2 was killed "
                                                         f"({self.workload_error!r})")
        run2_duplicates = self.duplicates_in(run2)
        check(run2_duplicates == uncommitted, f"run 2 skipped {run2_duplicates} duplicates, run 1 left {uncommitted}")
        time.sleep(1)
        self.join_workload(workload)
        self.workload(40)
        self.wait_confirmed("phases 2 and 3")

        # 3. Until idle.
        run3 = self.shipping("run3.log", idle_exit=8, by_name=True)
        code = self.wait_exit(run3, 300, "run 3")
        check(code == 0, f"run 3 exited {code}:\n{tail(run3.log_path)}")

        # 4. Stopped with SIGTERM once caught up with a last bit of workload.
        run4 = self.shipping("run4.log", by_name=True)
        self.wait_until("assigned its partitions", run4, 60, lambda: "shipping: assigned" in tail(run4.log_path, 10**6))
        self.workload(30)
        self.wait_confirmed("phase 4")
        expected = sum(1 for e in self.committed if e[1] == "order")
        self.wait_until(f"caught up with {expected} events", run4, 120, lambda: self.processed() >= expected)
        run4.send_signal(signal.SIGTERM)
        code = self.wait_exit(run4, 30, "run 4 after SIGTERM")
        check(code == 0, f"run 4 exited {code} after SIGTERM:\n{tail(run4.log_path)}")
        self.check_offsets_at_end()

        # What they all left.
        partitions = self.check_topic(self.order_topic, "order")
        check(len(partitions) > 1, f"every order's events landed on partitions {partitions}")
        if any(e[1] == "customer" for e in self.committed):
            self.check_topic(self.customer_topic, "customer")
        statuses = self.check_shipping()
        for run in (run1, run2, run3, run4):
            warned = collections.Counter(re.findall(r"unknown event type '(\w+)'", tail(run.log_path, 10**6)))
            check(all(n == 1 for n in warned.values()), f"{run.log_path}: unknown types warned more than once: {warned}")
        order_events = [e for e in self.committed if e[1] == "order"]
        kinds = collections.Counter(e[3] for e in order_events)
        return (f"OK: {len(order_events)} committed order events ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}; "
                f"{snapshot_events} from the initial snapshot, {len(self.deleted_in_tx)} deleted in their own "
                f"transaction) each processed once, {len(self.rolled_back)} rolled-back never seen, "
                f"{len(self.committed) - len(order_events)} customer events on their own topic; shipments "
                f"{dict(sorted(statuses.items()))} on {len(partitions)} partitions; run 1 killed at its failpoint "
                f"with {uncommitted} events uncommitted, run 2 skipped them as duplicates and was SIGKILLed "
                f"while the workload streamed; run 3 until idle: {self.summary_of(run3)}; "
                f"run 4 stopped by SIGTERM at the end: {self.summary_of(run4)}")

    def cleanup(self, ok: bool) -> None:
        for proc in self.children:
            if proc is not self.walcast and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.stop_workload.set()
        if self.walcast is not None and self.walcast.poll() is None:
            self.walcast.send_signal(signal.SIGTERM)
            try:
                self.walcast.wait(30)
            except subprocess.TimeoutExpired:
                self.walcast.kill()
                self.walcast.wait(10)
        if not ok or os.environ.get("KEEP") == "1":
            say(f"kept: databases {self.src_db}, {self.ship_db}, slot walcast_{self.name}, logs in "
                f"{self.workdir}; clean up with: {self.walcast_bin} teardown {self.connector} --force "
                f"&& dropdb {self.src_db} && dropdb {self.ship_db}")
            return
        teardown = subprocess.run([self.walcast_bin, "teardown", self.connector, "--force"],
                                  capture_output=True, text=True, timeout=60, cwd=self.workdir)
        if teardown.returncode != 0:
            say(f"walcast teardown failed: {teardown.stderr.strip()}")
        try:
            with self.connect("postgres") as admin:
                for db in (self.src_db, self.ship_db):
                    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        except psycopg.Error as e:
            say(f"dropping the databases: {e}")


def main() -> int:
    started = time.monotonic()
    try:
        test = Test()
    except Failure as e:
        print(f"test_shipping: FAILED: {e}", file=sys.stderr)
        return 1
    ok = False
    try:
        summary = test.run()
        ok = True
    except Failure as e:
        print(f"test_shipping: FAILED: {e}", file=sys.stderr)
    except Exception as e:  # a bug or an unexpected error: still clean up
        import traceback
        traceback.print_exc()
        print(f"test_shipping: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        test.cleanup(ok)
    if ok:
        print(f"test_shipping: {summary} ({time.monotonic() - started:.0f}s)")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
