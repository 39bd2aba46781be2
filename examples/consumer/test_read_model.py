#!/usr/bin/env python3
"""End-to-end test of read_model.py against a running deploy/local stack.

  WALCAST_BIN=/path/to/walcast WALCAST_STATE_DIR=/path/to/stack-state \\
      python3 examples/consumer/test_read_model.py

WALCAST_STATE_DIR is a deploy/local/up state directory (its stack.env names
PostgreSQL, Kafka and the schema registry; WALCAST_STACK_DIR is accepted too).
The test creates a source database and two target databases, a connector (three
partitions per topic, truncates emitted, transaction metadata on), runs `walcast setup`
and `walcast run`, and a workload with every kind of change: an initial snapshot,
inserts, updates (also of rows with a TOASTed value they leave unchanged), deletes,
key changes (UPDATE ... SET id = id + 1000 of a whole table, and of part of a composite
key), delete + re-insert of a key in one transaction, a TRUNCATE (alone, and inside a
transaction between inserts) followed by inserts reusing old keys, a column added
mid-stream, logical decoding messages; numeric, text, timestamp(tz), date, boolean,
array, jsonb and bytea columns, in two schemas.

The read model group G1 runs three times: killed by its own failpoint right after a
batch's database commit (before the offsets' commit), then SIGKILLed while the second
part of the workload streams in, then until idle. Its live rows must equal the source
tables. Then group G2 builds a fresh target from the beginning, and group G3 another
with each (large) batch applied in a random interleaving of its partitions; both must
equal the source too.

Exit status 0 when everything matched, 1 otherwise (with what differed). Every wait is
bounded. The databases are dropped and the slot torn down on success and kept (named
on stderr) on failure; KEEP=1 keeps them either way.
Env: SEED (workload seed, default 1), WALCAST_TEST_WORKDIR (logs; default a temp dir).
"""

from __future__ import annotations

import datetime
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
from decimal import Decimal

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

HERE = os.path.dirname(os.path.abspath(__file__))
READ_MODEL = os.path.join(HERE, "read_model.py")
UTC = datetime.timezone.utc


class Failure(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def say(message: str) -> None:
    print(f"test_read_model: {message}", file=sys.stderr, flush=True)


def load_stack_env(state_dir: str) -> dict[str, str]:
    path = os.path.join(state_dir, "stack.env")
    check(os.path.exists(path), f"{path} does not exist: start the stack with deploy/local/up --state-dir {state_dir}")
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
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
        self.workdir = os.environ.get("WALCAST_TEST_WORKDIR") or tempfile.mkdtemp(prefix="read-model-test-")
        os.makedirs(self.workdir, exist_ok=True)
        self.name = f"rm{int(time.time()) % 1000000}p{os.getpid() % 1000}"
        self.src_db, self.g1_db, self.g2_db, self.g3_db = (
            f"{self.name}_src", f"{self.name}_g1", f"{self.name}_g2", f"{self.name}_g3")
        self.connector = os.path.join(self.workdir, f"{self.name}.toml")
        self.walcast: subprocess.Popen | None = None
        self.children: list[subprocess.Popen] = []
        self.next_account = 100000
        self.next_order = 1
        self.run_summaries: list[str] = []
        self.workload_error: BaseException | None = None

    # --- plumbing ---------------------------------------------------------------------------

    def databases(self) -> tuple[str, ...]:
        return (self.src_db, self.g1_db, self.g2_db, self.g3_db)

    def dsn(self, db: str) -> str:
        return (f"host={self.stack['WALCAST_PG_HOST']} port={self.stack['WALCAST_PG_PORT']} "
                f"user={self.stack.get('WALCAST_PG_USER') or 'postgres'} dbname={db}")

    def connect(self, db: str) -> psycopg.Connection:
        conn = psycopg.connect(self.dsn(db), autocommit=True, connect_timeout=10)
        conn.execute("SET TimeZone = 'UTC'")
        return conn

    def walcast_cmd(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([self.walcast_bin, *args], capture_output=True, text=True,
                                timeout=timeout, cwd=self.workdir)
        return result

    def start(self, cmd: list[str], log_name: str, env: dict | None = None) -> subprocess.Popen:
        log = open(os.path.join(self.workdir, log_name), "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                env={**os.environ, **(env or {})})
        log.close()
        proc.log_path = os.path.join(self.workdir, log_name)   # type: ignore[attr-defined]
        self.children.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen, grace: float = 30) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    # --- setup ------------------------------------------------------------------------------

    def create_databases(self) -> None:
        with self.connect("postgres") as admin:
            for db in self.databases():
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        with self.connect(self.src_db) as src:
            src.execute("""
                CREATE TABLE public.accounts (
                    id integer PRIMARY KEY,
                    owner text NOT NULL,
                    balance numeric(12,2),
                    rate numeric,
                    opened timestamp,
                    seen timestamptz,
                    active boolean,
                    born date,
                    tags text[],
                    doc jsonb,
                    blob bytea,
                    notes text)""")
            src.execute("""
                CREATE TABLE public.line_items (
                    order_id bigint,
                    line smallint,
                    sku text NOT NULL,
                    qty integer NOT NULL,
                    price numeric(10,2),
                    shipped boolean NOT NULL DEFAULT false,
                    PRIMARY KEY (order_id, line))""")
            src.execute("CREATE SCHEMA inventory")
            src.execute("""
                CREATE TABLE inventory.stock (
                    sku text PRIMARY KEY,
                    on_hand integer NOT NULL,
                    updated_at timestamp NOT NULL)""")

    def write_connector(self) -> None:
        s = self.stack
        text = f'''name = "{self.name}"
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
[events]
skipped_operations = "none"
provide_transaction_metadata = true
[tables."public.*"]
[tables."inventory.*"]
'''
        with open(self.connector, "w") as f:
            f.write(text)

    def start_walcast(self) -> None:
        setup = self.walcast_cmd("setup", self.connector)
        check(setup.returncode == 0, f"walcast setup failed ({setup.returncode}):\n{setup.stdout}{setup.stderr}")
        self.walcast = self.start([self.walcast_bin, "run", self.connector], "walcast.log")
        slot = f"walcast_{self.name}"
        deadline = time.monotonic() + 60
        with self.connect(self.src_db) as src:
            while True:
                self.walcast_alive()
                row = src.execute("SELECT active AND confirmed_flush_lsn IS NOT NULL FROM pg_replication_slots "
                                  "WHERE slot_name = %s", (slot,)).fetchone()
                if row and row[0]:
                    break
                check(time.monotonic() < deadline, f"slot {slot} not ready after 60 s:\n{tail(self.walcast.log_path)}")
                time.sleep(0.2)

    def walcast_alive(self) -> None:
        if self.walcast is not None and self.walcast.poll() is not None:
            raise Failure(f"walcast run exited ({self.walcast.returncode}):\n{tail(self.walcast.log_path)}")

    def wait_confirmed(self, what: str, timeout: float = 120) -> None:
        """Until the slot's confirmed position passes everything written so far: walcast
        confirms only what Kafka acknowledged, so then every change is in the topics."""
        with self.connect(self.src_db) as src:
            target = src.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
            deadline = time.monotonic() + timeout
            while True:
                self.walcast_alive()
                done = src.execute("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                                   "WHERE slot_name = %s", (target, f"walcast_{self.name}")).fetchone()
                if done and done[0]:
                    say(f"walcast confirmed {what} (up to {target})")
                    return
                check(time.monotonic() < deadline,
                      f"walcast did not confirm {what} (up to {target}) in {timeout:.0f}s:\n{tail(self.walcast.log_path)}")
                time.sleep(0.2)

    # --- workload ---------------------------------------------------------------------------

    def big_text(self) -> str:
        # Random hex does not compress: 6,000 bytes are stored out of line (TOAST).
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(6000))

    def account_row(self, account_id: int) -> tuple:
        r = self.rng
        notes = self.big_text() if r.random() < 0.3 else r.choice([None, "short note", "ünïcödé ✓ 'quoted'"])
        return (
            account_id,
            r.choice(["ann", "bob", "cécile", "dmitri", "o'hara"]) + str(r.randint(1, 999)),
            Decimal(r.randint(-1000000, 100000000)) / 100 if r.random() < 0.9 else None,
            r.choice([Decimal("1.5"), Decimal("1.50"), Decimal("0.000123"), Decimal(-42),
                      Decimal("12345678901234567890.123456789"), Decimal("1E-7"), None]),
            datetime.datetime(1965, 1, 1) + datetime.timedelta(microseconds=r.randint(0, 2 * 10**15))
            if r.random() < 0.9 else None,
            datetime.datetime(2024, 1, 1, tzinfo=UTC) + datetime.timedelta(microseconds=r.randint(0, 10**14)),
            r.choice([True, False, None]),
            datetime.date(1950, 1, 1) + datetime.timedelta(days=r.randint(0, 30000)) if r.random() < 0.8 else None,
            r.choice([None, [], ["a"], ["x", "y", None], ["ünï", "comma,inside", 'quote"d']]),
            Jsonb(r.choice([{"k": r.randint(0, 9), "nested": {"a": [1, 2, None]}}, [1, "two"], "s", None]))
            if r.random() < 0.8 else None,
            bytes(r.getrandbits(8) for _ in range(r.randint(0, 24))) if r.random() < 0.7 else None,
            notes,
        )

    def insert_account(self, db: psycopg.Connection, account_id: int | None = None) -> None:
        if account_id is None:
            account_id = self.next_account
            self.next_account += 1
        db.execute("INSERT INTO accounts VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                   self.account_row(account_id))

    def insert_order(self, db: psycopg.Connection, order_id: int | None = None) -> None:
        if order_id is None:
            order_id = self.next_order
            self.next_order += 1
        for line in range(1, self.rng.randint(1, 4) + 1):
            db.execute("INSERT INTO line_items VALUES (%s, %s, %s, %s, %s, %s)",
                       (order_id, line, f"sku-{self.rng.randint(1, 40)}", self.rng.randint(1, 20),
                        Decimal(self.rng.randint(1, 100000)) / 100, self.rng.random() < 0.3))

    def random_id(self, db: psycopg.Connection, table: str, key: str) -> object | None:
        row = db.execute(sql.SQL("SELECT {} FROM {} ORDER BY random() LIMIT 1").format(
            sql.SQL(key), sql.Identifier(*table.split("."))), prepare=False).fetchone()
        return row[0] if row else None

    def random_change(self, db: psycopg.Connection) -> None:
        r = self.rng
        kind = r.choices(["insert", "update", "update_notes", "delete", "order", "line_update",
                          "line_delete", "stock"], weights=[4, 6, 1, 2, 2, 3, 1, 3])[0]
        if kind == "insert":
            self.insert_account(db)
        elif kind == "update":
            # Leaves notes alone: a TOASTed notes arrives as the placeholder.
            account_id = db.execute("SELECT id FROM accounts ORDER BY (length(notes) > 2000) DESC NULLS LAST, "
                                    "random() LIMIT 1" if r.random() < 0.5 else
                                    "SELECT id FROM accounts ORDER BY random() LIMIT 1").fetchone()
            if account_id:
                db.execute("UPDATE accounts SET balance = %s, seen = now(), active = %s, tags = %s WHERE id = %s",
                           (Decimal(r.randint(0, 10**9)) / 100, r.choice([True, False]),
                            r.choice([None, ["upd"], []]), account_id[0]))
        elif kind == "update_notes":
            account_id = self.random_id(db, "public.accounts", "id")
            if account_id is not None:
                db.execute("UPDATE accounts SET notes = %s WHERE id = %s",
                           (r.choice([self.big_text(), "now short", None]), account_id))
        elif kind == "delete":
            account_id = self.random_id(db, "public.accounts", "id")
            if account_id is not None:
                db.execute("DELETE FROM accounts WHERE id = %s", (account_id,))
        elif kind == "order":
            self.insert_order(db)
        elif kind == "line_update":
            row = db.execute("SELECT order_id, line FROM line_items ORDER BY random() LIMIT 1").fetchone()
            if row:
                db.execute("UPDATE line_items SET qty = qty + 1, price = %s, shipped = NOT shipped "
                           "WHERE order_id = %s AND line = %s",
                           (Decimal(r.randint(1, 100000)) / 100, row[0], row[1]))
        elif kind == "line_delete":
            row = db.execute("SELECT order_id, line FROM line_items ORDER BY random() LIMIT 1").fetchone()
            if row:
                db.execute("DELETE FROM line_items WHERE order_id = %s AND line = %s", row)
        else:
            db.execute("UPDATE inventory.stock SET on_hand = on_hand + %s, updated_at = %s WHERE sku = %s",
                       (r.randint(-5, 20), datetime.datetime(2025, 1, 1) + datetime.timedelta(
                           microseconds=r.randint(0, 10**13)), f"sku-{r.randint(1, 30)}"))

    def random_transactions(self, db: psycopg.Connection, count: int, pause: float = 0.0) -> None:
        for _ in range(count):
            with db.transaction():
                for _ in range(self.rng.randint(1, 5)):
                    self.random_change(db)
            if pause:
                time.sleep(pause)

    def snapshot_rows(self) -> None:
        with self.connect(self.src_db) as db, db.transaction():
            for account_id in range(1, 151):
                self.insert_account(db, account_id)
            for _ in range(25):
                self.insert_order(db)
            for n in range(1, 31):
                db.execute("INSERT INTO inventory.stock VALUES (%s, %s, %s)",
                           (f"sku-{n}", n * 10, datetime.datetime(2024, 6, 1, 12, 0, n, n * 1000)))

    def phase1(self) -> None:
        with self.connect(self.src_db) as db:
            self.random_transactions(db, 120)
            # A key change of every row: a delete (+ tombstone) of the old key and a create
            # of the new one each, the TOASTed notes of the create as the placeholder.
            db.execute("UPDATE accounts SET id = id + 1000")
            self.next_account = 200000
            # Part of a composite key.
            db.execute("UPDATE line_items SET line = line + 100 WHERE order_id % 3 = 0")
            # Delete and re-insert of one key, and an update then delete, in one transaction.
            with db.transaction():
                account_id = self.random_id(db, "public.accounts", "id")
                db.execute("UPDATE accounts SET balance = 1 WHERE id = %s", (account_id,))
                db.execute("DELETE FROM accounts WHERE id = %s", (account_id,))
                self.insert_account(db, account_id)
                other = db.execute("SELECT id FROM accounts WHERE id <> %s ORDER BY id LIMIT 1",
                                   (account_id,)).fetchone()[0]
                db.execute("UPDATE accounts SET owner = 'gone soon' WHERE id = %s", (other,))
                db.execute("DELETE FROM accounts WHERE id = %s", (other,))
            db.execute("SELECT pg_logical_emit_message(true, 'read-model-test', 'transactional')")
            db.execute("SELECT pg_logical_emit_message(false, 'read-model-test', 'not transactional')")
            self.random_transactions(db, 40)

    def phase2(self) -> None:
        try:
            with self.connect(self.src_db) as db:
                self.random_transactions(db, 30, pause=0.01)
                old_orders = [r[0] for r in db.execute("SELECT DISTINCT order_id FROM line_items ORDER BY 1 LIMIT 5")]
                db.execute("TRUNCATE line_items")
                # Old keys again: their earlier records must stay dead on replay.
                for order_id in old_orders[:3]:
                    self.insert_order(db, order_id)
                self.random_transactions(db, 20, pause=0.01)
                # A truncate between inserts in one transaction: only the later insert lives.
                with db.transaction():
                    self.insert_order(db)
                    self.insert_order(db, old_orders[3] if len(old_orders) > 3 else None)
                    db.execute("TRUNCATE line_items")
                    self.insert_order(db, old_orders[0] if old_orders else None)
                    self.insert_order(db)
                # A column added mid-stream: a new value schema for the stock topic.
                db.execute("ALTER TABLE inventory.stock ADD COLUMN location text")
                db.execute("UPDATE inventory.stock SET location = 'aisle ' || (on_hand % 7) WHERE sku < 'sku-2'")
                db.execute("INSERT INTO inventory.stock VALUES ('sku-new', 1, '2025-05-05 05:05:05.5', 'dock')")
                self.random_transactions(db, 30, pause=0.01)
        except BaseException as e:  # reported by the main thread
            self.workload_error = e

    def phase3(self) -> None:
        with self.connect(self.src_db) as db:
            self.random_transactions(db, 30)
            db.execute("DELETE FROM accounts WHERE id IN (SELECT id FROM accounts ORDER BY id LIMIT 3)")
            db.execute("UPDATE accounts SET active = true WHERE length(notes) > 2000")

    # --- the read model ---------------------------------------------------------------------

    def consumer(self, group: str, db: str, topics: str, log_name: str, idle_exit: float,
                 env: dict | None = None, batch_size: int = 40) -> subprocess.Popen:
        s = self.stack
        return self.start([sys.executable, READ_MODEL,
                           "--bootstrap-servers", s["WALCAST_KAFKA_BOOTSTRAP"],
                           "--registry", s["WALCAST_REGISTRY_URL"],
                           "--group", group, "--topics", topics, "--target", self.dsn(db),
                           "--from-beginning", "--idle-exit", str(idle_exit), "--batch-size", str(batch_size),
                           "--report-interval", "5",
                           # A killed member holds its partitions until its session times
                           # out (45 s by default): the broker's minimum keeps restarts quick.
                           "--consumer-property", "session.timeout.ms=6000",
                           "--consumer-property", "heartbeat.interval.ms=1000"], log_name, env)

    def wait_exit(self, proc: subprocess.Popen, timeout: float, what: str) -> int:
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise Failure(f"{what} did not exit within {timeout:.0f}s:\n{tail(proc.log_path)}")

    def summary_of(self, proc: subprocess.Popen) -> str:
        lines = [l for l in tail(proc.log_path, 200).splitlines() if "read_model: stopped:" in l]
        return lines[-1].split("stopped: ", 1)[1] if lines else "(killed: no summary)"

    def applied_rows(self, db: str) -> int:
        """Rows of the read model's tables (markers included); 0 before any exists."""
        with self.connect(db) as conn:
            tables = conn.execute("SELECT schema_name, table_name FROM _walcast.tables").fetchall() \
                if conn.execute("SELECT to_regclass('_walcast.tables') IS NOT NULL").fetchone()[0] else []
            total = 0
            for schema, table in tables:
                if conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                                (sql.Identifier(schema, table).as_string(conn),)).fetchone()[0]:
                    total += conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                        sql.Identifier(schema, table))).fetchone()[0]
            return total

    # --- comparison -------------------------------------------------------------------------

    COMPARED = {
        # table: [(source expression, read-model expression)], all as text
        ("public", "accounts"): [
            ("id::text", "id::text"), ("owner", "owner"), ("balance::text", "balance::text"),
            # walcast, like Debezium, strips trailing fraction zeros of a numeric without
            # a declared scale (1.50 arrives as 1.5): the same number, another display scale.
            ("trim_scale(rate)::text", "trim_scale(rate)::text"),
            ("(extract(epoch FROM opened) * 1000000)::bigint::text", "opened::text"),   # MicroTimestamp
            ("seen::text", "seen::timestamptz::text"),                                   # ZonedTimestamp
            ("active::text", "active::text"),
            ("(born - date '1970-01-01')::text", "born::text"),                         # Date: days
            ("tags::text", "tags::text"), ("doc::text", "doc::text"),
            ("encode(blob, 'hex')", "encode(blob, 'hex')"), ("md5(notes)", "md5(notes)"),
        ],
        ("public", "line_items"): [
            ("order_id::text", "order_id::text"), ("line::text", "line::text"), ("sku", "sku"),
            ("qty::text", "qty::text"), ("price::text", "price::text"), ("shipped::text", "shipped::text"),
        ],
        ("inventory", "stock"): [
            ("sku", "sku"), ("on_hand::text", "on_hand::text"),
            ("(extract(epoch FROM updated_at) * 1000000)::bigint::text", "updated_at::text"),
            ("location", "location"),
        ],
    }

    def compare(self, target_db: str, label: str) -> dict[str, int]:
        counts = {}
        with self.connect(self.src_db) as src, self.connect(target_db) as tgt:
            for (schema, table), columns in self.COMPARED.items():
                source_rows = src.execute(sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(sql.SQL(c[0]) for c in columns),
                    sql.Identifier(schema, table))).fetchall()
                # The live rows, through the read model's view.
                target_rows = tgt.execute(sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(sql.SQL(c[1]) for c in columns),
                    sql.Identifier(schema + "_live", table))).fetchall()
                order = lambda row: tuple((v is None, v or "") for v in row)
                source_rows.sort(key=order)
                target_rows.sort(key=order)
                if source_rows != target_rows:
                    only_source = [r for r in source_rows if r not in target_rows]
                    only_target = [r for r in target_rows if r not in source_rows]
                    clip = lambda rows: "\n".join("    " + str(tuple(
                        (v[:60] + "...") if isinstance(v, str) and len(v) > 60 else v for v in r))
                        for r in rows[:8])
                    raise Failure(
                        f"{label}: {schema}.{table} differs: source {len(source_rows)} rows, read model "
                        f"{len(target_rows)} live rows; only in the source ({len(only_source)}):\n"
                        f"{clip(only_source)}\n  only in the read model ({len(only_target)}):\n{clip(only_target)}")
                markers = tgt.execute(sql.SQL("SELECT count(*) FROM {} WHERE _walcast_deleted").format(
                    sql.Identifier(schema, table))).fetchone()[0]
                unknown = tgt.execute(sql.SQL(
                    "SELECT count(*) FROM {} WHERE NOT _walcast_deleted AND _walcast_unavailable IS NOT NULL").format(
                    sql.Identifier(schema, table))).fetchone()[0]
                check(unknown == 0, f"{label}: {schema}.{table}: {unknown} live rows with unavailable values")
                counts[f"{schema}.{table}"] = len(source_rows)
                counts[f"{schema}.{table} markers"] = markers
            pending = tgt.execute("SELECT count(*) FROM _walcast.unavailable_pending").fetchone()[0]
            check(pending == 0, f"{label}: {pending} key changes still wait for their old row")
        return counts

    # --- the test ---------------------------------------------------------------------------

    def run(self) -> str:
        say(f"connector {self.name}, work dir {self.workdir}, seed {self.seed}")
        self.create_databases()
        self.write_connector()
        self.snapshot_rows()
        self.start_walcast()
        self.phase1()
        self.wait_confirmed("the snapshot and phase 1")

        prefix = self.name.replace(".", r"\.")
        g1, g2 = f"{self.name}-g1", f"{self.name}-g2"
        g1_topics = rf"^{prefix}\..*"   # also the transaction and message topics: ignored
        # 1. Killed by its failpoint right after its third batch's database commit.
        run1 = self.consumer(g1, self.g1_db, g1_topics, "g1-run1.log", idle_exit=60,
                             env={"READ_MODEL_FAILPOINT": "after_apply:3"})
        code = self.wait_exit(run1, 120, "G1 run 1")
        check(code == -signal.SIGKILL, f"G1 run 1 should have been killed by its failpoint, exit {code}:\n{tail(run1.log_path)}")
        after_run1 = self.applied_rows(self.g1_db)
        check(after_run1 > 0, f"G1 run 1 applied nothing:\n{tail(run1.log_path)}")
        say(f"G1 run 1 killed itself after its third batch's database commit ({after_run1} rows)")
        self.run_summaries.append("run 1 killed at its failpoint")

        # 2. SIGKILLed once it applied more, while phase 2 (truncates, a new column) streams in.
        run2 = self.consumer(g1, self.g1_db, g1_topics, "g1-run2.log", idle_exit=120,
                             env={"READ_MODEL_LOG_LEVEL": "DEBUG"})   # a line per batch
        workload = threading.Thread(target=self.phase2, name="phase2")
        workload.start()
        deadline = time.monotonic() + 90
        while True:
            if run2.poll() is not None:
                raise Failure(f"G1 run 2 exited by itself ({run2.returncode}):\n{tail(run2.log_path)}")
            rows = self.applied_rows(self.g1_db)
            if rows >= after_run1 + 150:
                break
            check(time.monotonic() < deadline, f"G1 run 2 applied only {rows - after_run1} rows in 90 s:\n{tail(run2.log_path)}")
            time.sleep(0.05)
        run2.send_signal(signal.SIGKILL)
        run2.wait(10)
        # Run 1's last batch was applied but not committed: run 2 read it again and
        # found every change of it already there.
        replayed = sum(int(m) for m in re.findall(r"applied the batch from .*?, (\d+) older than",
                                                  tail(run2.log_path, 100000)))
        check(replayed > 0, f"G1 run 2 did not apply run 1's uncommitted batch again:\n{tail(run2.log_path)}")
        say(f"G1 run 2 SIGKILLed after applying (at least) {rows - after_run1} more rows; "
            f"{replayed} records of run 1's uncommitted batch found applied already")
        self.run_summaries.append(f"run 2 SIGKILLed ({replayed} replayed records already applied)")
        workload.join(300)
        check(not workload.is_alive(), "phase 2's workload did not finish in 300 s")
        if self.workload_error is not None:
            raise Failure(f"phase 2's workload failed: {self.workload_error!r}")
        self.phase3()
        self.wait_confirmed("phases 2 and 3")

        # 3. Until idle.
        run3 = self.consumer(g1, self.g1_db, g1_topics, "g1-run3.log", idle_exit=8)
        code = self.wait_exit(run3, 300, "G1 run 3")
        check(code == 0, f"G1 run 3 exited {code}:\n{tail(run3.log_path)}")
        self.run_summaries.append(f"run 3: {self.summary_of(run3)}")
        counts = self.compare(self.g1_db, "G1")
        say(f"G1 equals the source: {counts}")

        # G2: a fresh target from the beginning, topics by name.
        topics = ",".join(f"{self.name}.{s}.{t}" for s, t in self.COMPARED)
        run = self.consumer(g2, self.g2_db, topics, "g2.log", idle_exit=8)
        code = self.wait_exit(run, 300, "G2")
        check(code == 0, f"G2 exited {code}:\n{tail(run.log_path)}")
        g2_summary = self.summary_of(run)
        counts2 = self.compare(self.g2_db, "G2")
        check(all(counts2[k] == counts[k] for k in counts if not k.endswith("markers")),
              f"G2 counts {counts2} differ from G1's {counts}")

        # G3: a fresh target from the beginning in big batches, each applied in a random
        # interleaving of its partitions (each partition in order): what Kafka allows.
        run = self.consumer(f"{self.name}-g3", self.g3_db, topics, "g3.log", idle_exit=8,
                            env={"READ_MODEL_TEST_INTERLEAVE": str(self.seed)}, batch_size=100000)
        code = self.wait_exit(run, 300, "G3")
        check(code == 0, f"G3 exited {code}:\n{tail(run.log_path)}")
        g3_summary = self.summary_of(run)
        counts3 = self.compare(self.g3_db, "G3 (partitions interleaved)")
        check(all(counts3[k] == counts[k] for k in counts if not k.endswith("markers")),
              f"G3 counts {counts3} differ from G1's {counts}")

        rows = ", ".join(f"{k}={v}" for k, v in counts.items() if not k.endswith("markers"))
        markers = sum(v for k, v in counts.items() if k.endswith("markers"))
        return (f"OK: source rows {rows}; G1 ({markers} deleted markers) {'; '.join(self.run_summaries)}; "
                f"G2 from the beginning: {g2_summary}; G3 with partitions interleaved: {g3_summary}")

    def cleanup(self, ok: bool) -> None:
        for proc in self.children:
            if proc is not self.walcast and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        if self.walcast is not None:
            self.stop(self.walcast)
        if not ok or os.environ.get("KEEP") == "1":
            say(f"kept: databases {', '.join(self.databases())}, slot walcast_{self.name}, "
                f"logs in {self.workdir}; clean up with: {self.walcast_bin} teardown {self.connector} "
                f"&& dropdb {self.src_db} ...")
            return
        teardown = self.walcast_cmd("teardown", self.connector, timeout=60)
        if teardown.returncode != 0:
            say(f"walcast teardown failed: {teardown.stderr.strip()}")
        try:
            with self.connect("postgres") as admin:
                for db in self.databases():
                    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        except psycopg.Error as e:
            say(f"dropping the databases: {e}")


def main() -> int:
    started = time.monotonic()
    try:
        test = Test()
    except Failure as e:
        print(f"test_read_model: FAILED: {e}", file=sys.stderr)
        return 1
    ok = False
    try:
        summary = test.run()
        ok = True
    except Failure as e:
        print(f"test_read_model: FAILED: {e}", file=sys.stderr)
    except Exception as e:  # a bug or an unexpected error: still clean up
        import traceback
        traceback.print_exc()
        print(f"test_read_model: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        test.cleanup(ok)
    if ok:
        print(f"test_read_model: {summary} ({time.monotonic() - started:.0f}s)")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
