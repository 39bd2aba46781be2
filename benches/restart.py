#!/usr/bin/env python3
"""How long a walcast restart takes, measured from outside.

Called by benches/restart.sh with a running stack (its stack.env in the environment),
the walcast binary and a registry URL. For each delivery mode: a connector on TOPICS
tables is set up, run through its initial snapshot and one streamed change per table,
and stopped. Then RUNS times: while walcast is down one change is committed to every
table; a read_committed consumer is positioned at the end of every topic; walcast is
started; the restart time is from that start until the consumer has seen the new
change of every table (so it includes connecting, the exactly-once reconciliation of
every topic, and producing). walcast is then stopped with SIGTERM. Also counts the
ERROR lines each restart logged.

Prints one line per mode: the restart times of every run, their median, and the ERROR
lines. Exit 1 if a restart did not deliver within 60 s.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time

import psycopg
from confluent_kafka import Consumer, TopicPartition


def env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"restart.py: {name} is not set")
    return value


BIN = env("WALCAST_BIN")
STATE = env("WALCAST_STATE_DIR")
BOOTSTRAP = env("WALCAST_KAFKA_BOOTSTRAP")
REGISTRY = env("REGISTRY_URL")
PG = dict(host=env("WALCAST_PG_HOST"), port=int(env("WALCAST_PG_PORT")), user="postgres", dbname="postgres")
TOPICS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
MODES = (sys.argv[3] if len(sys.argv) > 3 else "exactly_once,transactional").split(",")


def sql(statement: str) -> None:
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(statement)


def connector(mode: str) -> str:
    tables = "".join(f'[tables."public.r{i}"]\n' for i in range(TOPICS))
    path = os.path.join(STATE, f"restart_{mode}.toml")
    with open(path, "w") as f:
        f.write(f"""name = "restart_{mode}"
[source]
host = "{PG['host']}"
port = {PG['port']}
dbname = "postgres"
user = "postgres"
sslmode = "disable"
[kafka]
bootstrap_servers = "{BOOTSTRAP}"
topic_prefix = "restart_{mode}"
[registry]
url = "{REGISTRY}"
[delivery]
mode = "{mode}"
[metrics]
enabled = false
{tables}""")
    return path


def change_every_table(tag: str) -> None:
    with psycopg.connect(**PG, autocommit=True) as conn:
        for i in range(TOPICS):
            conn.execute(f"UPDATE r{i} SET v = %s WHERE id = 1", (tag,))


def end_consumer(mode: str) -> Consumer:
    """A read_committed consumer at the current end of every topic of `mode`."""
    consumer = Consumer({
        "bootstrap.servers": BOOTSTRAP,
        "group.id": f"restart-bench-{time.time_ns()}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    assignment = []
    for i in range(TOPICS):
        topic = f"restart_{mode}.public.r{i}"
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assignment.append(TopicPartition(topic, 0, high))
    consumer.assign(assignment)
    return consumer


def start(path: str, log: str) -> subprocess.Popen:
    return subprocess.Popen([BIN, "run", path], stdout=subprocess.DEVNULL, stderr=open(log, "a"))


def stop(walcast: subprocess.Popen) -> None:
    walcast.send_signal(signal.SIGTERM)
    try:
        walcast.wait(timeout=60)
    except subprocess.TimeoutExpired:
        walcast.kill()
        walcast.wait()


ERROR_SAMPLES: dict[str, str] = {}


def errors_in(log: str, since: int) -> int:
    """ERROR lines logged since byte `since`; the first of each mode's kinds is kept."""
    count = 0
    with open(log) as f:
        f.seek(since)
        for line in f:
            if " ERROR " in line or '"level":"ERROR"' in line:
                count += 1
                ERROR_SAMPLES.setdefault(log, line.strip()[:300])
    return count


def measure(mode: str) -> tuple[list[float], list[int]]:
    path = connector(mode)
    log = os.path.join(STATE, f"restart_{mode}.log")
    subprocess.run([BIN, "setup", path], check=True, stdout=subprocess.DEVNULL)
    walcast = start(path, log)
    try:
        # Through the snapshot and one streamed change per table, so every topic exists
        # and ends with a streamed record.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with psycopg.connect(**PG, autocommit=True) as conn:
                active = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (f"walcast_restart_{mode}",)
                ).fetchone()
            if active and active[0]:
                break
            time.sleep(0.2)
        change_every_table("warm")
        time.sleep(3)
    finally:
        stop(walcast)
    times, errors = [], []
    for run in range(RUNS):
        change_every_table(f"run {run}")
        consumer = end_consumer(mode)
        since = os.path.getsize(log)
        started = time.monotonic()
        walcast = start(path, log)
        seen: set[str] = set()
        try:
            deadline = started + 60
            while len(seen) < TOPICS and time.monotonic() < deadline:
                message = consumer.poll(0.05)
                if message is not None and not message.error() and message.value() is not None:
                    seen.add(message.topic())
            elapsed = time.monotonic() - started
        finally:
            stop(walcast)
            consumer.close()
        if len(seen) < TOPICS:
            sys.exit(f"restart.py: {mode} run {run}: only {len(seen)} of {TOPICS} tables delivered within 60 s")
        times.append(elapsed)
        errors.append(errors_in(log, since))
    return times, errors


def main() -> None:
    for i in range(TOPICS):
        sql(f"CREATE TABLE IF NOT EXISTS r{i} (id int PRIMARY KEY, v text)")
        sql(f"INSERT INTO r{i} VALUES (1, 'first') ON CONFLICT DO NOTHING")
    for mode in MODES:
        times, errors = measure(mode)
        shown = " ".join(f"{t:.2f}" for t in times)
        print(
            f"restart ({mode}, {TOPICS} topics): seconds from start to every table's new change "
            f"in Kafka: {shown} (median {statistics.median(times):.2f}); ERROR lines per restart: "
            f"{' '.join(map(str, errors))}",
            flush=True,
        )
        sample = ERROR_SAMPLES.get(os.path.join(STATE, f"restart_{mode}.log"))
        if sample:
            print(f"  first ERROR line: {sample}", flush=True)


if __name__ == "__main__":
    main()
