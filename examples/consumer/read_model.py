#!/usr/bin/env python3
"""read_model.py: keep a read model in a PostgreSQL database of its own in sync with
walcast's topics (Debezium-compatible Avro events, Confluent wire format).

For every captured table (topic <prefix>.<schema>.<table>) it keeps a table
<schema>.<table> in the target database, created on first use from the event's Avro
schemas: the columns of the value's `after` record, the primary key of the key
record's fields, and bookkeeping columns

    _walcast_commit_lsn   bigint   \\ the position (walcast.position header) of the
    _walcast_index        bigint   /  change the row reflects: <commit LSN>#<index>
    _walcast_deleted      boolean     the row was deleted (kept as a marker)
    _walcast_unavailable  text[]      columns whose value is not known (see below)

and a view <schema>_live.<table> of the live rows (not _walcast_deleted), without
the bookkeeping columns. Its own state lives in the schema _walcast.

Applying a change is a function of its position, so the result does not depend on
the order the records are read in (partitions of a topic are read in no particular
order relative to one another), and replaying records is harmless:

  c, u, r   upsert by key, unless the stored row's position is at or after the
            record's;
  d         mark the row deleted with the record's position (a marker row is
            inserted for a key not seen yet), so an older replayed record never
            brings it back;
  t         (TRUNCATE, null key) mark every row with an older position deleted and
            remember the truncate's position for the table: records at or before it
            are ignored from then on;
  tombstones (null value), logical decoding messages (op m), transaction metadata
            (BEGIN/END) and records of other topics are ignored.

An update whose key changed arrives as a delete of the old key (+ tombstone) and a
create of the new one; the rules above handle it. Offsets are committed (synchronously,
per batch) only after the batch's database transaction committed, so a crash between
the two replays the batch, which changes nothing.

Unchanged TOASTed values: PostgreSQL does not send a large value an UPDATE left
unchanged, and the event carries Debezium's placeholder (__debezium_unavailable_value)
instead. An update keeps the stored value. The create of a key change carries the
placeholder too (the new row's value is the old row's): it is taken from the old
key's row once the old key's delete has been applied (the two may come in either
order, from different partitions); until then the column is NULL and listed in
_walcast_unavailable.

Usage:
  read_model.py --bootstrap-servers HOST:PORT --registry URL --group ID
                --topics 'a.public.t1,a.public.t2' | '^a\\.public\\..*'
                --target 'host=... dbname=readmodel user=...'
                [--from-beginning] [--idle-exit SECONDS] [--batch-size N]
                [--consumer-property KEY=VALUE ...] [--registry-property KEY=VALUE ...]

Exit status: 0 after SIGTERM/SIGINT or --idle-exit, 1 on an error (one line naming it
on stderr), 2 for a usage error.

Live rows of a table, without the view:
  SELECT <columns> FROM <schema>.<table> WHERE NOT _walcast_deleted;
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import logging
import os
import random
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Optional

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

log = logging.getLogger("read_model")

STATE = "_walcast"                      # the read model's own schema
POSITION_HEADER = "walcast.position"
SOURCE_HEADER = "walcast.source"
BOOKKEEPING = ("_walcast_commit_lsn", "_walcast_index", "_walcast_deleted", "_walcast_unavailable")
DEFAULT_PLACEHOLDER = "__debezium_unavailable_value"
# A DDL lock shared by every instance on the target database (creating and altering
# tables and views), so two instances never race on CREATE TABLE IF NOT EXISTS.
DDL_LOCK = 0x77616C63   # "walc"
TRANSIENT = (pgerrors.SerializationFailure, pgerrors.DeadlockDetected, pgerrors.LockNotAvailable)


class Fatal(Exception):
    """An error that stops the service: one line for the log, nothing committed."""


# --- positions ------------------------------------------------------------------------------

def parse_position(text: str) -> tuple[int, int]:
    """`X/Y#N` (commit LSN as PostgreSQL prints it, index in the transaction) as
    (LSN as a number, index)."""
    lsn, sep, index = text.partition("#")
    hi, slash, lo = lsn.partition("/")
    if not sep or not slash:
        raise ValueError(f"not <lsn>#<index>: {text!r}")
    return (int(hi, 16) << 32) + int(lo, 16), int(index)


def format_position(pos: tuple[int, int]) -> str:
    return f"{pos[0] >> 32:X}/{pos[0] & 0xFFFFFFFF:X}#{pos[1]}"


# --- Avro schemas to PostgreSQL columns -----------------------------------------------------

def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def variable_scale_decimal(value: Optional[dict]) -> Optional[Decimal]:
    """io.debezium.data.VariableScaleDecimal {scale, value: big-endian two's complement}."""
    if value is None:
        return None
    unscaled = int.from_bytes(value["value"], "big", signed=True)
    # From the digits, not arithmetic: exact whatever the decimal context's precision.
    return Decimal((int(unscaled < 0), tuple(int(d) for d in str(abs(unscaled))), -value["scale"]))


def to_jsonb(value: Any) -> str:
    """A decoded record, map, array or union member as JSON text. (Values typed
    io.debezium.data.Json are JSON text already and are not converted.)"""
    return json.dumps(value, default=json_default)


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str                                  # SQL type, from the mapping below only
    convert: Optional[Callable[[Any], Any]]       # decoded Avro value -> query parameter
    semantic: Optional[str]                       # Debezium/Connect logical name, if any

    def param(self, value: Any) -> Any:
        return value if self.convert is None or value is None else self.convert(value)


PRIMITIVES = {
    "int": "integer", "long": "bigint", "float": "real", "double": "double precision",
    "boolean": "boolean", "string": "text", "bytes": "bytea",
}
LOGICAL = {   # Avro logical types fastavro decodes into Python objects
    "decimal": "numeric", "date": "date", "uuid": "uuid",
    "timestamp-millis": "timestamptz", "timestamp-micros": "timestamptz",
    "local-timestamp-millis": "timestamp", "local-timestamp-micros": "timestamp",
    "time-millis": "time", "time-micros": "time",
}
CONNECT_NAMES = {   # Debezium's semantic types worth a PostgreSQL type of their own
    "io.debezium.data.Json": "jsonb",
    "io.debezium.data.Uuid": "uuid",
}


def collect_names(schema: Any, namespace: str, names: dict[str, dict]) -> None:
    """Every named type in `schema`, by full and by short name."""
    if isinstance(schema, list):
        for branch in schema:
            collect_names(branch, namespace, names)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "enum", "fixed") and "name" in schema:
            name = schema["name"]
            ns = schema.get("namespace", namespace) if "." not in name else name.rsplit(".", 1)[0]
            full = name if "." in name else (f"{ns}.{name}" if ns else name)
            names[full] = schema
            names.setdefault(full.rsplit(".", 1)[-1], schema)
            namespace = ns
        if kind == "record":
            for f in schema.get("fields", []):
                collect_names(f["type"], namespace, names)
        elif kind == "array":
            collect_names(schema["items"], namespace, names)
        elif kind == "map":
            collect_names(schema["values"], namespace, names)
        elif isinstance(kind, (dict, list)):
            collect_names(kind, namespace, names)


def resolve(t: Any, names: dict[str, dict]) -> Any:
    """The non-null branch of an optional type, named references resolved."""
    if isinstance(t, list):
        branches = [b for b in t if b != "null"]
        if len(branches) != 1:
            return t              # a real union: stored as JSON
        t = branches[0]
    if isinstance(t, str) and t not in PRIMITIVES and t in names:
        return names[t]
    if isinstance(t, dict) and isinstance(t.get("type"), (dict, list)) and len(t) == 1:
        return resolve(t["type"], names)
    return t


def map_type(t: Any, names: dict[str, dict]) -> tuple[str, Optional[Callable[[Any], Any]], Optional[str]]:
    """(PostgreSQL type, converter, semantic name) for an Avro field type."""
    t = resolve(t, names)
    if isinstance(t, str):
        return PRIMITIVES.get(t, "jsonb"), (None if t in PRIMITIVES else to_jsonb), None
    if isinstance(t, list):
        return "jsonb", to_jsonb, None
    kind = t.get("type")
    connect = t.get("connect.name")
    logical = t.get("logicalType")
    if kind == "record":
        if connect == "io.debezium.data.VariableScaleDecimal":
            return "numeric", variable_scale_decimal, connect
        return "jsonb", to_jsonb, connect or t.get("name")
    if kind == "array":
        item_pg, item_convert, item_semantic = map_type(t["items"], names)
        if item_pg == "jsonb":
            if item_convert is None:   # items of JSON text (io.debezium.data.Json)
                return "jsonb", (lambda v: json.dumps([None if x is None else json.loads(x) for x in v])), item_semantic
            return "jsonb", to_jsonb, item_semantic
        if item_convert is None:
            return f"{item_pg}[]", None, item_semantic
        return f"{item_pg}[]", (lambda v, ic=item_convert: [None if x is None else ic(x) for x in v]), item_semantic
    if kind == "map":
        return "jsonb", to_jsonb, connect
    if kind == "enum":
        return "text", None, connect or t.get("name")
    if logical in LOGICAL:
        return LOGICAL[logical], None, connect or logical
    if kind == "fixed":
        return "bytea", None, connect
    if connect in CONNECT_NAMES:
        return CONNECT_NAMES[connect], None, connect
    if kind == "int" and t.get("connect.type") in ("int8", "int16"):
        return "smallint", None, t.get("connect.type")
    if kind in PRIMITIVES:
        # io.debezium.time.* (MicroTimestamp, Date, MicroTime, ZonedTimestamp, ...) and
        # the like keep Debezium's representation: the number or the string.
        return PRIMITIVES[kind], None, connect
    return "jsonb", to_jsonb, connect


@dataclass
class ValueSchema:
    columns: list[Column]
    by_name: dict[str, Column]


def value_kind(schema_str: str) -> str:
    """envelope (a change event), transaction (BEGIN/END), message (op m), heartbeat, or
    other (a transformed value: unwrap, outbox; or not walcast's)."""
    schema = json.loads(schema_str)
    fields = {f["name"] for f in schema.get("fields", [])} if isinstance(schema, dict) else set()
    if {"before", "after", "op", "source"} <= fields:
        return "envelope"
    if {"status", "id", "event_count"} <= fields:
        return "transaction"
    if {"op", "message"} <= fields:
        return "message"
    if fields == {"ts_ms"}:
        return "heartbeat"    # __debezium-heartbeat.<prefix>
    return "other"


def parse_value_schema(schema_str: str) -> Optional[ValueSchema]:
    """The columns of an Envelope's `after` record, or None for another kind of value
    (transaction metadata, messages, transformed values)."""
    if value_kind(schema_str) != "envelope":
        return None
    schema = json.loads(schema_str)
    fields = {f["name"]: f for f in schema.get("fields", [])}
    names: dict[str, dict] = {}
    collect_names(schema, schema.get("namespace", ""), names)
    after = resolve(fields["after"]["type"], names)
    if not isinstance(after, dict) or after.get("type") != "record":
        return None
    columns = []
    for f in after["fields"]:
        pg_type, convert, semantic = map_type(f["type"], names)
        columns.append(Column(f["name"], pg_type, convert, semantic))
    return ValueSchema(columns, {c.name: c for c in columns})


def parse_key_schema(schema_str: str) -> list[str]:
    schema = json.loads(schema_str)
    if isinstance(schema, dict) and schema.get("type") == "record":
        return [f["name"] for f in schema["fields"]]
    raise Fatal(f"a key schema that is not a record: {schema_str[:200]}")


class Placeholder:
    """Debezium's unavailable-value placeholder in each column type's own form (as
    walcast writes it: text, bytes, one-element arrays, hstore as JSON or a map, int
    arrays of its bytes, a uuid array of its name-based UUID)."""

    def __init__(self, text: str):
        raw = bytes.fromhex(text[4:]) if text.startswith("hex:") else text.encode()
        self.text = raw.decode("utf-8", "replace")
        self.raw = raw
        name_uuid = str(uuid.UUID(bytes=hashlib.md5(raw).digest(), version=3))
        self.forms = [self.raw, [self.text], [self.raw], [name_uuid],
                      [b - 256 if b > 127 else b for b in raw], {self.text: self.text}]

    def matches(self, value: Any) -> bool:
        if isinstance(value, str):
            if value == self.text:
                return True
            if value.startswith("{") and self.text in value:   # hstore as JSON
                try:
                    return json.loads(value) == {self.text: self.text}
                except ValueError:
                    return False
            return False
        if isinstance(value, (bytes, list, dict)):
            return any(type(value) is type(f) and value == f for f in self.forms)
        return False


# --- records --------------------------------------------------------------------------------

@dataclass
class Event:
    topic: str
    partition: int
    offset: int
    kind: str                                   # row | truncate | ignore
    op: str = ""
    table: tuple[str, str] = ("", "")
    position: tuple[int, int] = (0, 0)
    source: str = ""
    key: Optional[dict] = None
    after: Optional[dict] = None
    key_fields: Optional[list[str]] = None
    schema: Optional[ValueSchema] = None
    schema_id: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass
class TableState:
    schema: str
    name: str
    source: str
    exists: bool = False
    columns: dict[str, str] = field(default_factory=dict)   # name -> PostgreSQL type
    key: list[str] = field(default_factory=list)
    warned: set = field(default_factory=set)
    checked: set = field(default_factory=set)    # value schema ids its columns were checked for

    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class Stats:
    records: int = 0
    upserts: int = 0
    deletes: int = 0
    truncates: int = 0
    stale: int = 0
    ignored: int = 0
    copied: int = 0
    filled: int = 0
    batches: int = 0

    def line(self) -> str:
        return (f"{self.records} records in {self.batches} batches: {self.upserts} upserts, "
                f"{self.deletes} deletes, {self.truncates} truncates, {self.stale} older than "
                f"the stored row or truncate (skipped), {self.ignored} ignored; new keys "
                f"of key changes whose TOASTed values were unchanged: {self.copied} completed "
                f"from the old row at once, {self.filled} when the old key's delete came")


def header_map(message) -> dict[str, str]:
    out = {}
    for k, v in message.headers() or []:
        if v is not None:
            out[k] = v.decode("utf-8", "replace")
    return out


class ReadModel:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        registry_conf = {"url": args.registry}
        registry_conf.update(dict(args.registry_property))
        self.registry = SchemaRegistryClient(registry_conf)
        self.keys = AvroDeserializer(self.registry)
        self.values = AvroDeserializer(self.registry)
        self.value_schemas: dict[int, Optional[ValueSchema]] = {}
        self.value_kinds: dict[int, str] = {}
        self.key_schemas: dict[int, list[str]] = {}
        self.placeholder = Placeholder(args.unavailable_placeholder)
        self.tables: dict[tuple[str, str], TableState] = {}
        self.warned_once: set[tuple[str, str]] = set()
        self.stats = Stats()
        self.stop = False
        self.conn: Optional[psycopg.Connection] = None
        self.statements: dict[tuple, sql.Composed] = {}
        self.failpoint = self._failpoint()
        # READ_MODEL_TEST_INTERLEAVE=SEED (for tests): apply each batch in a random
        # interleaving of its partitions, each partition's records kept in order. Kafka
        # promises no more than that, and the result must not depend on it.
        interleave = os.environ.get("READ_MODEL_TEST_INTERLEAVE", "")
        self.interleave = random.Random(int(interleave)) if interleave else None
        self.last_activity = time.monotonic()
        self.assigned = False

    @staticmethod
    def _failpoint() -> Optional[int]:
        """READ_MODEL_FAILPOINT=after_apply:N: SIGKILL this process right after the N-th
        batch's database commit, before its offsets are committed (for tests)."""
        spec = os.environ.get("READ_MODEL_FAILPOINT", "")
        if not spec:
            return None
        m = re.fullmatch(r"after_apply:(\d+)", spec)
        if not m:
            raise Fatal(f"READ_MODEL_FAILPOINT={spec!r}: expected after_apply:N")
        return int(m.group(1))

    # --- target database ---------------------------------------------------------------

    def connect(self) -> None:
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn = psycopg.connect(self.args.target, autocommit=True,
                                    application_name="walcast-read-model")
        self.tables.clear()     # re-read from the database: another instance may have changed it
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
            self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {STATE}")
            self.conn.execute(f"""
                CREATE TABLE IF NOT EXISTS {STATE}.tables (
                    schema_name text NOT NULL,
                    table_name text NOT NULL,
                    topic text NOT NULL,
                    source text NOT NULL,          -- walcast.source: <connector>@<system identifier>
                    truncate_lsn bigint NOT NULL DEFAULT 0,
                    truncate_index bigint NOT NULL DEFAULT -1,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (schema_name, table_name))""")
            self.conn.execute(f"""
                CREATE TABLE IF NOT EXISTS {STATE}.unavailable_pending (
                    schema_name text NOT NULL,
                    table_name text NOT NULL,
                    commit_lsn bigint NOT NULL,    -- the position of the key change's create
                    idx bigint NOT NULL,
                    new_key jsonb NOT NULL,        -- the new key's columns, as text
                    columns text[] NOT NULL,
                    PRIMARY KEY (schema_name, table_name, commit_lsn, idx))""")
            self.conn.execute(f"""
                CREATE OR REPLACE FUNCTION {STATE}.minus(a text[], b text[]) RETURNS text[]
                LANGUAGE sql IMMUTABLE AS
                $$ SELECT NULLIF(ARRAY(SELECT x FROM unnest(a) x
                                       WHERE x <> ALL(coalesce(b, '{{}}'))), '{{}}') $$""")
        log.info("target database ready (%s)", self.describe_target())

    def describe_target(self) -> str:
        info = self.conn.info
        return f"{info.user}@{info.host}:{info.port}/{info.dbname}"

    def table_state(self, ev: Event) -> TableState:
        """The table's state (its _walcast.tables row created if missing), checking that
        its records still come from the same PostgreSQL cluster."""
        st = self.tables.get(ev.table)
        if st is None:
            schema, name = ev.table
            with self.conn.transaction():
                self.conn.execute(
                    f"INSERT INTO {STATE}.tables (schema_name, table_name, topic, source) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (schema, name, ev.topic, ev.source))
                stored = self.conn.execute(
                    f"SELECT source FROM {STATE}.tables WHERE schema_name = %s AND table_name = %s",
                    (schema, name)).fetchone()[0]
                st = TableState(schema, name, stored)
                self._load_table(st)
            self.tables[ev.table] = st
        if st.source.rpartition("@")[2] != ev.source.rpartition("@")[2]:
            if not self.args.allow_source_change:
                raise Fatal(
                    f"{ev.where()}: {st.qualified()} was built from walcast source {st.source!r} "
                    f"but this record comes from {ev.source!r} (another PostgreSQL cluster: a "
                    f"re-created database?); its positions are not comparable with the stored "
                    f"ones, so changes could be ignored as old. Rebuild the read model into a "
                    f"fresh target database, or pass --allow-source-change if the positions do "
                    f"go on (e.g. after pg_upgrade)")
            if "source" not in st.warned:
                st.warned.add("source")
                log.warning("%s: records now come from %s (was %s); going on as "
                            "--allow-source-change says", st.qualified(), ev.source, st.source)
        return st

    def _load_table(self, st: TableState) -> None:
        rows = self.conn.execute(
            """SELECT a.attname, format_type(a.atttypid, a.atttypmod)
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'r'
                  AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""",
            (st.schema, st.name)).fetchall()
        st.exists = bool(rows)
        st.columns = {name: typ for name, typ in rows if name not in BOOKKEEPING}
        if rows and not all(b in {r[0] for r in rows} for b in BOOKKEEPING):
            raise Fatal(f"target table {st.qualified()} exists but lacks walcast's bookkeeping "
                        f"columns ({', '.join(BOOKKEEPING)}): not a table of this read model")
        st.key = [r[0] for r in self.conn.execute(
            """SELECT a.attname FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                WHERE i.indrelid = to_regclass(%s) AND i.indisprimary
                ORDER BY array_position(i.indkey, a.attnum)""",
            (sql.Identifier(st.schema, st.name).as_string(self.conn),)).fetchall()]

    def ensure_table(self, st: TableState, ev: Event) -> None:
        """The target table exists and has every column of the record's schema."""
        if st.exists and ev.schema_id in st.checked:
            return
        columns = ev.schema.columns
        for c in columns:
            if c.name in BOOKKEEPING:
                raise Fatal(f"{ev.where()}: source column {c.name} clashes with the read "
                            f"model's bookkeeping columns")
        if not st.exists:
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
                self._load_table(st)
                if not st.exists:
                    self._create_table(st, ev)
        if st.key != ev.key_fields and "key" not in st.warned:
            st.warned.add("key")
            log.warning("%s: its primary key is (%s) but the topic's key has fields (%s); "
                        "rows are matched by the table's primary key", st.qualified(),
                        ", ".join(st.key), ", ".join(ev.key_fields))
        new = [c for c in columns if c.name not in st.columns]
        if new:
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
                for c in new:
                    self.conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                        st.ident(), sql.Identifier(c.name), sql.SQL(c.pg_type)))
                    self._comment(st, c)
                self._load_table(st)
                self._replace_view(st)
            self.statements.clear()
            log.info("%s: added column(s) %s (a new schema version of %s)", st.qualified(),
                     ", ".join(f"{c.name} {c.pg_type}" for c in new), ev.topic)
        for c in columns:
            have = st.columns.get(c.name)
            if have is not None and not same_type(have, c.pg_type) and ("type", c.name) not in st.warned:
                st.warned.add(("type", c.name))
                log.warning("%s.%s is %s in the read model but its events now map to %s; "
                            "values are cast to the existing type", st.qualified(), c.name,
                            have, c.pg_type)
        st.checked.add(ev.schema_id)

    def _create_table(self, st: TableState, ev: Event) -> None:
        cols = [sql.SQL("{} {}{}").format(
            sql.Identifier(c.name), sql.SQL(c.pg_type),
            sql.SQL(" NOT NULL") if c.name in ev.key_fields else sql.SQL(""))
            for c in ev.schema.columns]
        cols += [sql.SQL("_walcast_commit_lsn bigint NOT NULL"),
                 sql.SQL("_walcast_index bigint NOT NULL"),
                 sql.SQL("_walcast_deleted boolean NOT NULL DEFAULT false"),
                 sql.SQL("_walcast_unavailable text[]")]
        cols.append(sql.SQL("PRIMARY KEY ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, ev.key_fields))))
        self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(st.schema)))
        self.conn.execute(sql.SQL("CREATE TABLE {} ({})").format(st.ident(), sql.SQL(", ").join(cols)))
        # Finds the old row of a key change by its position.
        self.conn.execute(sql.SQL("CREATE INDEX ON {} (_walcast_commit_lsn, _walcast_index)").format(st.ident()))
        self.conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
            st.ident(), sql.Literal(f"read model of {ev.topic}, kept by examples/consumer/read_model.py")))
        for c in ev.schema.columns:
            self._comment(st, c)
        self._load_table(st)
        self._replace_view(st)
        log.info("%s: created (key %s) from %s", st.qualified(), ", ".join(ev.key_fields), ev.topic)

    def _comment(self, st: TableState, c: Column) -> None:
        if c.semantic:
            self.conn.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                st.ident(), sql.Identifier(c.name), sql.Literal(c.semantic)))

    def _replace_view(self, st: TableState) -> None:
        if self.args.live_schema_suffix == "":
            return
        view_schema = st.schema + self.args.live_schema_suffix
        self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(view_schema)))
        self.conn.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS SELECT {} FROM {} WHERE NOT _walcast_deleted").format(
            sql.Identifier(view_schema, st.name),
            sql.SQL(", ").join(map(sql.Identifier, st.columns)), st.ident()))

    # --- decoding ------------------------------------------------------------------------

    def decode(self, message) -> Event:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        ev = Event(topic, partition, offset, "ignore")
        value_bytes = message.value()
        if value_bytes is None:
            return ev                                   # tombstone
        if len(value_bytes) < 5 or value_bytes[0] != 0:
            # Not Confluent's wire format (e.g. walcast.offsets, or a JSON-format connector).
            if ("wire", topic) not in self.warned_once:
                self.warned_once.add(("wire", topic))
                log.warning("%s: records are not Avro in Confluent's wire format; ignoring the topic", topic)
            return ev
        ev.schema_id = int.from_bytes(value_bytes[1:5], "big")
        value = self._deserialize(self.values, value_bytes, MessageField.VALUE, ev)
        schema = self._value_schema(ev.schema_id, ev)
        if schema is None:
            if self.value_kinds.get(ev.schema_id) == "other" and ("shape", topic) not in self.warned_once:
                self.warned_once.add(("shape", topic))
                log.warning("%s: values are not Debezium change envelopes (an unwrap or outbox "
                            "transform?); the read model needs the envelope: ignoring the topic", topic)
            return ev                                   # transaction metadata, messages (op m)
        if not isinstance(value, dict) or value.get("op") not in ("c", "u", "r", "d", "t"):
            return ev
        headers = ev.headers = header_map(message)
        if POSITION_HEADER not in headers:
            raise Fatal(f"{ev.where()}: no {POSITION_HEADER} header: not written by walcast, "
                        f"so it cannot be ordered against the stored rows")
        try:
            ev.position = parse_position(headers[POSITION_HEADER])
        except ValueError as e:
            raise Fatal(f"{ev.where()}: bad {POSITION_HEADER} header: {e}") from e
        source = value.get("source") or {}
        ev.op = value["op"]
        ev.table = (source.get("schema") or "", source.get("table") or "")
        if not all(ev.table):
            raise Fatal(f"{ev.where()}: the event's source names no schema and table")
        ev.source = headers.get(SOURCE_HEADER, "")
        ev.schema = schema
        if ev.op == "t":
            ev.kind = "truncate"
            return ev
        key_bytes = message.key()
        if key_bytes is None:
            if ev.table not in self.warned_once:
                self.warned_once.add(ev.table)
                log.warning("%s.%s (%s): events without a Kafka key (a table without a primary "
                            "key, or with REPLICA IDENTITY FULL and no [tables] key): rows cannot "
                            "be told apart, so its row changes are ignored", *ev.table, topic)
            return ev
        ev.key = self._deserialize(self.keys, key_bytes, MessageField.KEY, ev)
        fields = self._key_schema(int.from_bytes(key_bytes[1:5], "big"), ev)
        # Topic routing adds the physical table to the key (__dbz__physicalTableIdentifier);
        # the read model has a table per physical table, keyed by the row's own columns.
        ev.key_fields = [k for k in fields if k in schema.by_name]
        if not ev.key_fields:
            raise Fatal(f"{ev.where()}: none of the key's fields ({', '.join(fields)}) is a column "
                        f"of the row")
        if len(ev.key_fields) < len(fields) and ("keyfields", ev.table) not in self.warned_once:
            self.warned_once.add(("keyfields", ev.table))
            log.info("%s.%s: key field(s) %s are not columns of the row (topic routing's table "
                     "identity?); rows are keyed by %s", *ev.table,
                     ", ".join(k for k in fields if k not in schema.by_name), ", ".join(ev.key_fields))
        ev.after = value.get("after")
        if ev.op != "d" and ev.after is None:
            raise Fatal(f"{ev.where()}: op {ev.op} without `after`")
        ev.kind = "row"
        return ev

    def _registry(self, what: str, ev: Event, call: Callable[[], Any]) -> Any:
        """`call`, retried with backoff while the registry is unreachable or answers
        5xx; any other failure is fatal."""
        delay = 0.5
        for attempt in range(1, self.args.max_retries + 1):
            try:
                return call()
            except Exception as e:
                status = getattr(e, "http_status_code", None)
                # Connection problems (httpx's TransportError, whichever httpx the client
                # bundles) and 5xx answers pass; a 4xx or an undecodable record does not.
                transient = (isinstance(e, OSError)
                             or any(c.__name__ == "TransportError" for c in type(e).__mro__)
                             or (isinstance(status, int) and status >= 500))
                message = f"{ev.where()}: {what}: {type(e).__name__}: {str(e).strip()}"
                if not transient:
                    raise Fatal(message) from e
                if attempt == self.args.max_retries or self.stop:
                    raise Fatal(f"{message} (gave up after {attempt} attempts)") from e
                log.warning("%s; retrying in %.1fs (attempt %d of %d)", message, delay, attempt,
                            self.args.max_retries)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _deserialize(self, deserializer, data: bytes, field_: str, ev: Event) -> Any:
        context = SerializationContext(ev.topic, field_)
        return self._registry(f"cannot decode the {'key' if field_ == MessageField.KEY else 'value'}",
                              ev, lambda: deserializer(data, context))

    def _value_schema(self, schema_id: int, ev: Event) -> Optional[ValueSchema]:
        if schema_id not in self.value_schemas:
            text = self._registry(f"value schema {schema_id}", ev,
                                  lambda: self.registry.get_schema(schema_id).schema_str)
            self.value_kinds[schema_id] = value_kind(text)
            self.value_schemas[schema_id] = parse_value_schema(text)
        return self.value_schemas[schema_id]

    def _key_schema(self, schema_id: int, ev: Event) -> list[str]:
        if schema_id not in self.key_schemas:
            text = self._registry(f"key schema {schema_id}", ev,
                                  lambda: self.registry.get_schema(schema_id).schema_str)
            self.key_schemas[schema_id] = parse_key_schema(text)
        return self.key_schemas[schema_id]

    # --- applying ------------------------------------------------------------------------

    def prepare(self, events: list[Event]) -> None:
        """DDL before the batch's transaction: state rows, tables, new columns."""
        for ev in events:
            if ev.kind == "ignore":
                continue
            st = self.table_state(ev)
            if ev.kind == "row":
                self.ensure_table(st, ev)

    def apply(self, events: list[Event]) -> Stats:
        """One transaction for the batch; returns what it did (counted once committed)."""
        done = Stats(batches=1, records=len(events))
        touched = sorted({ev.table for ev in events if ev.kind != "ignore"})
        truncating = {ev.table for ev in events if ev.kind == "truncate"}
        with self.conn.transaction():
            truncated_at: dict[tuple[str, str], tuple[int, int]] = {}
            # Lock each table's state row, in one order for every instance: a truncate
            # (FOR UPDATE) waits for batches in flight (FOR SHARE) and the other way round,
            # so a record older than a truncate is never applied after it.
            for table in touched:
                lock = "FOR UPDATE" if table in truncating else "FOR SHARE"
                row = self.conn.execute(
                    f"SELECT truncate_lsn, truncate_index FROM {STATE}.tables "
                    f"WHERE schema_name = %s AND table_name = %s {lock}", table).fetchone()
                truncated_at[table] = (row[0], row[1])
            for ev in events:
                if ev.kind == "ignore":
                    done.ignored += 1
                    continue
                if ev.position <= truncated_at[ev.table]:
                    done.stale += 1
                    continue
                st = self.tables[ev.table]
                if ev.kind == "truncate":
                    self._truncate(st, ev)
                    truncated_at[ev.table] = ev.position
                    done.truncates += 1
                elif ev.op == "d":
                    applied, filled = self._delete(st, ev)
                    done.deletes += applied
                    done.stale += 1 - applied
                    done.filled += filled
                else:
                    applied, copied = self._upsert(st, ev)
                    done.upserts += applied
                    done.stale += 1 - applied
                    done.copied += copied
        return done

    def _key_params(self, st: TableState, ev: Event, source: dict) -> list[Any]:
        return [ev.schema.by_name[k].param(source[k]) if k in ev.schema.by_name else source[k]
                for k in st.key]

    def _cast(self, st: TableState, column: str) -> sql.Composable:
        return sql.SQL("%s::{}").format(sql.SQL(st.columns[column]))

    def _key_match(self, st: TableState, alias: str) -> sql.Composable:
        return sql.SQL(" AND ").join(
            sql.SQL("{}.{} = {}").format(sql.Identifier(alias), sql.Identifier(k), self._cast(st, k))
            for k in st.key)

    def _key_change_lock(self, st: TableState, lsn: int) -> None:
        """Serializes the two halves of a key change (the old key's delete, the new key's
        create) across instances of the group: each sees what the other committed."""
        digest = hashlib.sha1(f"{st.schema}.{st.name}@{lsn}".encode()).digest()
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (int.from_bytes(digest[:8], "big", signed=True),))

    def _upsert(self, st: TableState, ev: Event) -> tuple[int, int]:
        after = ev.after
        names = [c.name for c in ev.schema.columns]
        unavailable = [n for n in names if n not in st.key and self.placeholder.matches(after.get(n))]
        params = {n: ev.schema.by_name[n].param(after.get(n)) for n in names if n not in unavailable}
        key_change = ev.op == "c" and bool(unavailable)
        still_unavailable = unavailable
        copied = 0
        if key_change:
            # An INSERT always carries every value; a create with a placeholder is the new
            # key of a key change. Its old row is the delete just before it in the same
            # transaction: (lsn, index - 2) with a tombstone between them, else index - 1.
            self._key_change_lock(st, ev.position[0])
            found = self.conn.execute(sql.SQL(
                "SELECT {}, _walcast_unavailable FROM {} WHERE _walcast_deleted "
                "AND _walcast_commit_lsn = %s AND _walcast_index IN (%s, %s) "
                "ORDER BY _walcast_index DESC LIMIT 1").format(
                    sql.SQL(", ").join(map(sql.Identifier, unavailable)), st.ident()),
                (ev.position[0], ev.position[1] - 2, ev.position[1] - 1)).fetchone()
            if found is not None:
                old_unavailable = found[-1] or []
                for n, v in zip(unavailable, found[:-1]):
                    params[n] = v
                still_unavailable = [n for n in unavailable if n in old_unavailable]
                copied = int(len(still_unavailable) < len(unavailable))
            for n in still_unavailable:
                params[n] = None
        else:
            for n in unavailable:
                params[n] = None
        keep = () if key_change else tuple(unavailable)   # an update keeps what it did not send
        statement = self._upsert_sql(st, tuple(names), keep, key_change)
        real = [n for n in names if n not in unavailable]
        values = [params[n] for n in names] + [ev.position[0], ev.position[1],
                                               still_unavailable or None]
        if not key_change:
            values.append(real)
        applied = self.conn.execute(statement, values).rowcount
        if applied and key_change and still_unavailable:
            # The old key's delete is not applied yet: it fills these in (see _delete).
            self.conn.execute(sql.SQL(
                "INSERT INTO {}.unavailable_pending (schema_name, table_name, commit_lsn, idx, new_key, columns) "
                "SELECT %s, %s, %s, %s, jsonb_build_object({}), %s FROM {} n WHERE {} "
                "ON CONFLICT DO NOTHING").format(
                    sql.Identifier(STATE),
                    sql.SQL(", ").join(sql.SQL("{}, n.{}::text").format(sql.Literal(k), sql.Identifier(k))
                                       for k in st.key),
                    st.ident(), self._key_match(st, "n")),
                [st.schema, st.name, ev.position[0], ev.position[1], still_unavailable]
                + self._key_params(st, ev, after))
            log.debug("%s: key change at %s: %s not known until the old key's delete",
                      st.qualified(), format_position(ev.position), still_unavailable)
        return applied, (copied if applied else 0)

    def _upsert_sql(self, st: TableState, names: tuple, keep: tuple, key_change: bool) -> sql.Composed:
        cache_key = ("upsert", st.schema, st.name, names, keep, key_change)
        statement = self.statements.get(cache_key)
        if statement is None:
            targets = [sql.Identifier(n) for n in names] + [sql.Identifier(b) for b in BOOKKEEPING]
            values = [self._cast(st, n) for n in names] + [
                sql.SQL("%s::bigint"), sql.SQL("%s::bigint"), sql.SQL("false"), sql.SQL("%s::text[]")]
            sets = [sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n))
                    for n in names if n not in st.key and n not in keep]
            sets += [sql.SQL("_walcast_commit_lsn = EXCLUDED._walcast_commit_lsn"),
                     sql.SQL("_walcast_index = EXCLUDED._walcast_index"),
                     sql.SQL("_walcast_deleted = false")]
            if key_change:
                sets.append(sql.SQL("_walcast_unavailable = EXCLUDED._walcast_unavailable"))
            else:   # what this record sent is known now; what it kept stays as it was
                sets.append(sql.SQL("_walcast_unavailable = {}.minus(cur._walcast_unavailable, %s::text[])").format(
                    sql.Identifier(STATE)))
            statement = sql.SQL(
                "INSERT INTO {} AS cur ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {} "
                "WHERE (cur._walcast_commit_lsn, cur._walcast_index) "
                "< (EXCLUDED._walcast_commit_lsn, EXCLUDED._walcast_index)").format(
                    st.ident(), sql.SQL(", ").join(targets), sql.SQL(", ").join(values),
                    sql.SQL(", ").join(map(sql.Identifier, st.key)), sql.SQL(", ").join(sets))
            self.statements[cache_key] = statement
        return statement

    def _delete(self, st: TableState, ev: Event) -> tuple[int, int]:
        cache_key = ("delete", st.schema, st.name)
        statement = self.statements.get(cache_key)
        if statement is None:
            statement = sql.SQL(
                "INSERT INTO {} AS cur ({}, _walcast_commit_lsn, _walcast_index, _walcast_deleted) "
                "VALUES ({}, %s, %s, true) ON CONFLICT ({}) DO UPDATE SET _walcast_deleted = true, "
                "_walcast_commit_lsn = EXCLUDED._walcast_commit_lsn, _walcast_index = EXCLUDED._walcast_index "
                "WHERE (cur._walcast_commit_lsn, cur._walcast_index) "
                "< (EXCLUDED._walcast_commit_lsn, EXCLUDED._walcast_index)").format(
                    st.ident(), sql.SQL(", ").join(map(sql.Identifier, st.key)),
                    sql.SQL(", ").join(self._cast(st, k) for k in st.key),
                    sql.SQL(", ").join(map(sql.Identifier, st.key)))
            self.statements[cache_key] = statement
        key = self._key_params(st, ev, ev.key)
        if "__debezium.newkey" in ev.headers:   # the old half of a key change
            self._key_change_lock(st, ev.position[0])
        applied = self.conn.execute(statement, key + [ev.position[0], ev.position[1]]).rowcount
        filled = 0
        if applied:
            filled = self._fill_key_change(st, ev, key)
        return applied, filled

    def _fill_key_change(self, st: TableState, ev: Event, old_key: list[Any]) -> int:
        """A key change whose create was applied first left columns unknown: take them
        from this (old) row, whose values are the last before the change."""
        pending = self.conn.execute(
            f"DELETE FROM {STATE}.unavailable_pending WHERE schema_name = %s AND table_name = %s "
            "AND commit_lsn = %s AND idx IN (%s, %s) RETURNING new_key, columns",
            (st.schema, st.name, ev.position[0], ev.position[1] + 1, ev.position[1] + 2)).fetchall()
        filled = 0
        for new_key, columns in pending:
            columns = [c for c in columns if c in st.columns]
            if not columns:
                continue
            sets = [sql.SQL("{0} = CASE WHEN {1} = ANY(n._walcast_unavailable) THEN o.{0} ELSE n.{0} END").format(
                sql.Identifier(c), sql.Literal(c)) for c in columns]
            sets.append(sql.SQL(
                "_walcast_unavailable = {0}.minus(n._walcast_unavailable, {0}.minus(%s::text[], o._walcast_unavailable))"
            ).format(sql.Identifier(STATE)))
            new_match = sql.SQL(" AND ").join(
                sql.SQL("n.{} = (%s::text)::{}").format(sql.Identifier(k), sql.SQL(st.columns[k])) for k in st.key)
            filled += self.conn.execute(sql.SQL("UPDATE {} n SET {} FROM {} o WHERE {} AND {}").format(
                st.ident(), sql.SQL(", ").join(sets), st.ident(), self._key_match(st, "o"), new_match),
                [columns] + old_key + [new_key[k] for k in st.key]).rowcount
        return filled

    def _truncate(self, st: TableState, ev: Event) -> None:
        lsn, index = ev.position
        # Asked live, not from the cache: another instance may have created the table.
        if self.conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                             (st.ident().as_string(self.conn),)).fetchone()[0]:
            marked = self.conn.execute(sql.SQL(
                "UPDATE {} SET _walcast_deleted = true, _walcast_commit_lsn = %s, _walcast_index = %s "
                "WHERE (_walcast_commit_lsn, _walcast_index) < (%s, %s)").format(st.ident()),
                (lsn, index, lsn, index)).rowcount
        else:
            marked = 0
        self.conn.execute(
            f"UPDATE {STATE}.tables SET truncate_lsn = %s, truncate_index = %s "
            "WHERE schema_name = %s AND table_name = %s", (lsn, index, st.schema, st.name))
        self.conn.execute(
            f"DELETE FROM {STATE}.unavailable_pending WHERE schema_name = %s AND table_name = %s "
            "AND (commit_lsn, idx) < (%s, %s)", (st.schema, st.name, lsn, index))
        log.info("%s: truncated at %s (%d rows marked deleted)", st.qualified(),
                 format_position(ev.position), marked)

    def apply_with_retries(self, events: list[Event]) -> bool:
        """Applies the batch, retrying lost connections, deadlocks and serialization
        failures with backoff; False if asked to stop meanwhile."""
        delay = 0.5
        for attempt in range(1, self.args.max_retries + 1):
            try:
                if self.conn is None or self.conn.closed or self.conn.broken:
                    self.connect()
                self.prepare(events)
                done = self.apply(events)
            except Fatal:
                raise
            except (psycopg.OperationalError, *TRANSIENT) as e:
                if attempt == self.args.max_retries:
                    raise Fatal(f"target database: {type(e).__name__}: {str(e).strip()} "
                                f"(gave up after {attempt} attempts)") from e
                log.warning("target database: %s: %s; retrying the batch in %.1fs (attempt %d of %d)",
                            type(e).__name__, str(e).strip().splitlines()[0], delay, attempt,
                            self.args.max_retries)
                self.tables.clear()    # DDL of a failed attempt may not have committed
                self.statements.clear()
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    if self.stop:
                        return False
                    time.sleep(0.1)
                delay = min(delay * 2, 10.0)
                continue
            except psycopg.Error as e:
                diag = getattr(e, "diag", None)
                where = f" [{e.sqlstate}]" if getattr(e, "sqlstate", None) else ""
                detail = f" ({diag.message_detail})" if diag is not None and diag.message_detail else ""
                first = events[0]
                raise Fatal(f"target database{where}: {str(e).strip()}{detail} while applying "
                            f"{len(events)} records from {first.where()}") from e
            for name in ("records", "upserts", "deletes", "truncates", "stale", "ignored", "copied",
                         "filled", "batches"):
                setattr(self.stats, name, getattr(self.stats, name) + getattr(done, name))
            log.debug("applied the batch from %s: %s", events[0].where(), done.line())
            return True
        return False

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        args = self.args
        conf = {
            "bootstrap.servers": args.bootstrap_servers,
            "group.id": args.group,
            "client.id": "walcast-read-model",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest" if args.from_beginning else "latest",
            # Topics a pattern matches are found at metadata refreshes (default 5 min).
            "topic.metadata.refresh.interval.ms": 10000,
            "error_cb": self._kafka_error,
        }
        conf.update(dict(args.consumer_property))
        self.connect()
        consumer = Consumer(conf)
        topics = [args.topics] if args.topics.startswith("^") else \
            [t.strip() for t in args.topics.split(",") if t.strip()]
        consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("consuming %s as group %s from %s (registry %s)", ", ".join(topics), args.group,
                 args.bootstrap_servers, args.registry)
        self.last_activity = time.monotonic()
        last_report = time.monotonic()
        applied_batches = 0
        try:
            while not self.stop:
                messages = consumer.consume(num_messages=args.batch_size, timeout=1.0)
                now = time.monotonic()
                if now - last_report >= args.report_interval:
                    log.info("progress: %s", self.stats.line())
                    last_report = now
                records = []
                for m in messages:
                    err = m.error()
                    if err is None:
                        records.append(m)
                    elif err.fatal():
                        raise Fatal(f"Kafka: {err.str()}")
                    elif err.code() != KafkaError._PARTITION_EOF:
                        log.warning("Kafka: %s", err.str())
                if not records:
                    # Idle only counts once the group gave this member partitions: joining
                    # can take a session timeout while a killed member is still counted.
                    if args.idle_exit and self.assigned and now - self.last_activity >= args.idle_exit:
                        log.info("no records for %gs: exiting (--idle-exit)", args.idle_exit)
                        break
                    continue
                self.last_activity = now
                events = [self.decode(m) for m in records]
                if self.interleave is not None:
                    events = interleave(events, self.interleave)
                if not self.apply_with_retries(events):
                    log.info("stopping before the batch at %s was applied; it is read again "
                             "on the next start", events[0].where())
                    break
                if any(ev.kind != "ignore" for ev in events):
                    applied_batches += 1
                if self.failpoint is not None and applied_batches >= self.failpoint:
                    log.warning("READ_MODEL_FAILPOINT: killing myself after batch %d's database "
                                "commit, before its offsets are committed", applied_batches)
                    sys.stderr.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                self._commit(consumer, records)
        finally:
            log.info("stopped: %s", self.stats.line())
            try:
                consumer.close()
            except KafkaException as e:
                log.warning("closing the consumer: %s", e)
            if self.conn is not None:
                self.conn.close()
        return 0

    def _commit(self, consumer: Consumer, records: list) -> None:
        offsets: dict[tuple[str, int], int] = {}
        for m in records:
            where = (m.topic(), m.partition())
            offsets[where] = max(offsets.get(where, -1), m.offset() + 1)
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                            asynchronous=False)
        except KafkaException as e:
            err = e.args[0] if e.args else None
            if isinstance(err, KafkaError) and err.fatal():
                raise Fatal(f"Kafka: committing offsets: {err.str()}") from e
            # A rebalance took the partitions: whoever reads them next applies these
            # records again, which changes nothing.
            log.warning("offsets not committed (%s); the records will be applied again by "
                        "whoever reads these partitions next, harmlessly", e)

    @staticmethod
    def _kafka_error(err: KafkaError) -> None:
        if err.fatal():
            log.error("Kafka (fatal): %s", err.str())
        else:
            log.warning("Kafka: %s", err.str())

    def _on_assign(self, consumer, partitions) -> None:
        self.last_activity = time.monotonic()   # joining the group is not idleness
        self.assigned = True
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing")

    @staticmethod
    def _on_revoke(consumer, partitions) -> None:
        # Every batch is applied and committed before the next poll, so there is nothing
        # in flight to finish here.
        log.info("revoked %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing")


def interleave(events: list[Event], rng: random.Random) -> list[Event]:
    queues: dict[tuple[str, int], list[Event]] = {}
    for ev in events:
        queues.setdefault((ev.topic, ev.partition), []).append(ev)
    for queue in queues.values():
        queue.reverse()
    out = []
    while queues:
        where = rng.choice(sorted(queues))
        out.append(queues[where].pop())
        if not queues[where]:
            del queues[where]
    return out


def same_type(have: str, want: str) -> bool:
    aliases = {"int": "integer", "int4": "integer", "int8": "bigint", "int2": "smallint",
               "float4": "real", "float8": "double precision",
               "timestamp with time zone": "timestamptz", "timestamp without time zone": "timestamp",
               "time without time zone": "time"}
    norm = lambda s: aliases.get(s, re.sub(r"\(.*\)", "", s))
    return norm(have) == norm(want)


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Keep a read model in PostgreSQL in sync with walcast's topics.",
        epilog="Needs: pip install -r examples/consumer/requirements.txt")
    p.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers")
    p.add_argument("--registry", required=True, help="schema registry URL")
    p.add_argument("--group", required=True, help="consumer group id")
    p.add_argument("--topics", required=True,
                   help="comma-separated topics, or one regular expression starting with ^ "
                        "(e.g. '^shop\\.public\\..*')")
    p.add_argument("--target", required=True, help="libpq connection string of the read-model database")
    p.add_argument("--from-beginning", action="store_true",
                   help="partitions without a committed offset start at the beginning "
                        "(auto.offset.reset=earliest); default: at the end")
    p.add_argument("--idle-exit", type=float, default=0, metavar="SECONDS",
                   help="exit 0 after this long without records, counted from the first "
                        "partition assignment (default: never)")
    p.add_argument("--batch-size", type=int, default=500,
                   help="records per database transaction at most (default 500)")
    p.add_argument("--max-retries", type=int, default=8,
                   help="attempts per batch on a lost connection or deadlock (default 8)")
    p.add_argument("--unavailable-placeholder", default=DEFAULT_PLACEHOLDER,
                   help="the connector's [events] unavailable_value_placeholder")
    p.add_argument("--live-schema-suffix", default="_live",
                   help="views of the live rows go to <schema><suffix>.<table> (default _live; "
                        "empty: no views)")
    p.add_argument("--allow-source-change", action="store_true",
                   help="go on when a table's records come from another PostgreSQL cluster")
    p.add_argument("--consumer-property", type=key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="librdkafka consumer property (repeatable)")
    p.add_argument("--registry-property", type=key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="schema registry client property, e.g. "
                                             "basic.auth.user.info=user:pass (repeatable)")
    p.add_argument("--report-interval", type=float, default=30.0,
                   help="seconds between progress lines (default 30)")
    p.add_argument("--log-level", default=os.environ.get("READ_MODEL_LOG_LEVEL", "INFO"))
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.max_retries < 1:
        p.error("--batch-size and --max-retries must be at least 1")
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
    try:
        log.setLevel(args.log_level.upper())
    except ValueError:
        print(f"read_model.py: --log-level {args.log_level!r}: not a level (DEBUG, INFO, WARNING, ERROR)",
              file=sys.stderr)
        return 2
    model = ReadModel(args)

    def stop(signum, _frame):
        log.info("%s: finishing the current batch, then stopping", signal.Signals(signum).name)
        model.stop = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return model.run()
    except Fatal as e:
        log.error("%s", e)
        return 1
    except psycopg.OperationalError as e:
        log.error("target database: %s", str(e).strip())
        return 1
    except KafkaException as e:
        log.error("Kafka: %s", e)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
