#!/usr/bin/env bash
# walcast beside Debezium's PostgreSQL connector (3.6.1.Final on Kafka Connect 4.1.1
# standalone, jars from Maven Central via `deploy/local/fetch-connect --debezium-postgres`)
# and PostgreSQL's own pg_recvlogical, in one run, on one stack (PostgreSQL 15, one Kafka
# 4.1 broker), one tool after another:
#
#   streaming  a backlog of ROWS inserts (8-column rows, ROWS_PER_TX per transaction, as in
#              benches/end_to_end.sh), written after every tool's slot exists, so each
#              reads the same changes from its own pgoutput slot: pg_recvlogical (to
#              /dev/null, up to the backlog's end), then walcast (JSON, then Avro), then
#              Debezium (snapshot.mode=no_data; Connect's producer as shipped, then tuned);
#   snapshot   a fresh ROWS-row, 10-column table (as in benches/snapshot.sh): PostgreSQL's
#              `COPY … TO STDOUT` to /dev/null, then walcast's and Debezium's initial
#              snapshot (snapshot.mode=initial; each creating its own slot), same order.
#
# walcast and Debezium are timed from the start of their process until the sum of the
# end offsets of the table's topic reaches ROWS (every record acknowledged by the
# broker, acks=all), polled every 50 ms over Kafka's own protocol. Each gets a fresh
# topic. Their CPU seconds (user + system, all threads, from /proc/PID/stat) and peak
# RSS (VmHWM) are read at that moment, before the process is stopped; for Debezium
# that is the Connect JVM, start-up included (run as `connect-standalone.sh` runs it:
# -Xms256M -Xmx2G, G1; plugins found by ServiceLoader, not a class-path scan). Its peak
# RSS follows the heap it is allowed more than what it needs (DEBEZIUM_HEAP), and at a
# few hundred thousand rows a large part of its CPU is the JIT compiling (steadier
# figures from ROWS=1000000). pg_recvlogical and COPY (psql) are measured from
# getrusage (CPU) and /proc (peak RSS) of the child. Not counted anywhere: PostgreSQL's
# walsender and backends, and the broker. wal_sender_timeout is set to PostgreSQL's
# default (60 s) for every tool.
#
# Converters, for a like-for-like comparison: Debezium with Kafka's JsonConverter,
# schemas.enable=true for key and value, and walcast with `[events] format =
# "json_with_schema"`, its JsonConverter-identical output. Confluent's Avro converter
# is not on Maven Central, so Debezium can't be run with Avro here; walcast's default
# (Avro through its dev schema registry) is measured too, as a second walcast line.
# Otherwise each tool runs with its defaults (walcast: exactly_once, 2 snapshot workers;
# Debezium: one snapshot thread, max.batch.size 2048, max.queue.size 8192), except for
# Debezium's producer, run twice: `debezium-json` with the producer Connect gives a
# source task (acks=all, one request in flight, 16 kB batches, no compression, linger
# 5 ms), and `debezium-json-tuned` with walcast's producer settings set on the worker
# (producer.*: idempotent, 5 in flight, lz4, linger 5 ms, 1 MB batches, 256 MB buffer).
#
# Usage: benches/debezium.sh [ROWS] [ROWS_PER_TX]     (defaults: 300000 100)
# Environment: BENCH_BIN=path (a walcast binary; else cargo builds the release one),
#              TIMEOUT=seconds (per tool and phase, default 600),
#              PHASES="streaming snapshot" (default both),
#              DEBEZIUM_HEAP="-Xms256M -Xmx2G" (the Connect JVM's heap options),
#              DEBEZIUM_PRODUCERS="default tuned" (which Debezium lines to run),
#              LOGS=dir (keep every tool's log there; the stack is deleted at the end).
# Prints one line per tool and phase:
#   tool=… phase=… rows=… seconds=… rows_per_second=… cpu_seconds=… peak_rss_mib=…
# (walcast and Debezium also records, the topic's count when it reached ROWS: more means
# repeats; first_record_seconds and first_record_cpu_seconds, time and CPU until the
# first record was in the topic, i.e. start-up; rows_per_second_after_first_record, the
# rate without it).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rows=${1:-300000}
per_tx=${2:-100}
timeout_s=${TIMEOUT:-600}
phases=${PHASES:-streaming snapshot}
heap=${DEBEZIUM_HEAP:--Xms256M -Xmx2G}
producers=${DEBEZIUM_PRODUCERS:-default tuned}
for producer in $producers; do
    case "$producer" in default|tuned) ;; *) echo "DEBEZIUM_PRODUCERS: unknown '$producer' (default, tuned)" >&2; exit 2 ;; esac
done
cd "$repo"
. "$repo/benches/lib.sh"
command -v java >/dev/null || { echo "java not found (Kafka Connect 4.1 needs Java 17+)" >&2; exit 1; }
jars=$("$repo/deploy/local/fetch-connect" --debezium-postgres | tail -n1)
[ -f "$jars/debezium-connector-postgres-3.6.1.Final.jar" ] || { echo "no Debezium jars in '$jars'" >&2; exit 1; }
bench_build
bench_stack debezium
connect_pid=
debezium_cleanup() {
    local i
    if [ -n "${connect_pid:-}" ]; then
        kill "$connect_pid" 2>/dev/null || true
        for i in $(seq 1 100); do kill -0 "$connect_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$connect_pid" 2>/dev/null || true
    fi
    if [ -n "${LOGS:-}" ] && [ -n "${state:-}" ]; then
        mkdir -p "$LOGS"
        (cd "$state" && find . -maxdepth 2 -name '*.log' -exec cp --parents {} "$LOGS" \;) || true
    fi
    bench_cleanup
}
trap debezium_cleanup EXIT
# The stack's wal_sender_timeout (10 s, for quick tests) is no longer than Debezium's
# status.update.interval.ms (10 s): a Debezium blocked on its full queue had its
# walsender ended and restarted from its last offset. PostgreSQL's default for all.
$psql -c "ALTER SYSTEM SET wal_sender_timeout = '60s'" -c "SELECT pg_reload_conf()" >/dev/null
bench_registry
pg_args=(-h "$WALCAST_PG_HOST" -p "$WALCAST_PG_PORT" -U postgres -d postgres)

# The measuring helper (Python standard library only), in two modes:
#   watch  --pid P --start T --topic TOPIC ...: waits until TOPIC's end offsets add up to
#          --rows, failing when P exits, a Connect connector or task reports FAILED, or
#          --timeout passes; then prints the summary line with P's CPU and peak RSS;
#   run    ... -- COMMAND: runs COMMAND and prints its summary line (getrusage).
cat >"$state/measure.py" <<'PY'
import argparse, json, os, resource, socket, struct, subprocess, sys, time, urllib.request

def line(a, seconds, cpu, rss_kib, extra=""):
    print(f"tool={a.tool} phase={a.phase} rows={a.rows} seconds={seconds:.2f} "
          f"rows_per_second={a.rows / seconds:.0f} cpu_seconds={cpu:.2f} "
          f"peak_rss_mib={rss_kib / 1024:.1f}{extra}", flush=True)

class Reader:
    def __init__(self, data): self.data, self.pos = data, 0
    def take(self, n):
        if self.pos + n > len(self.data): raise ValueError("truncated response")
        self.pos += n
        return self.data[self.pos - n:self.pos]
    def int8(self): return struct.unpack(">b", self.take(1))[0]
    def int16(self): return struct.unpack(">h", self.take(2))[0]
    def int32(self): return struct.unpack(">i", self.take(4))[0]
    def int64(self): return struct.unpack(">q", self.take(8))[0]
    def string(self):
        n = self.int16()
        return None if n < 0 else self.take(n).decode()

def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b

class Kafka:
    """Metadata v4 and ListOffsets v1 (non-flexible versions Kafka 4.x still serves)
    to the one broker of the stack."""
    def __init__(self, bootstrap):
        host, port = bootstrap.split(",")[0].rsplit(":", 1)
        self.addr, self.sock, self.corr = (host, int(port)), None, 0
    def request(self, key, version, body):
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=5)
        self.corr += 1
        msg = struct.pack(">hhi", key, version, self.corr) + string("walcast-bench") + body
        try:
            self.sock.sendall(struct.pack(">i", len(msg)) + msg)
            size = struct.unpack(">i", self.recv(4))[0]
            r = Reader(self.recv(size))
        except OSError:
            self.sock.close()
            self.sock = None
            raise
        if r.int32() != self.corr: raise ValueError("correlation id mismatch")
        return r
    def recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk: raise OSError("connection closed by the broker")
            buf += chunk
        return bytes(buf)
    def partitions(self, topic):
        r = self.request(3, 4, struct.pack(">i", 1) + string(topic) + struct.pack(">b", 0))
        r.int32()
        for _ in range(r.int32()):
            r.int32(); r.string(); r.int32(); r.string()
        r.string(); r.int32()
        found = []
        for _ in range(r.int32()):
            err, name, _internal = r.int16(), r.string(), r.int8()
            for _ in range(r.int32()):
                perr, index, leader = r.int16(), r.int32(), r.int32()
                for _ in range(r.int32()): r.int32()
                for _ in range(r.int32()): r.int32()
                if name == topic and err == 0 and perr == 0 and leader >= 0:
                    found.append(index)
        return sorted(found)
    def records(self, topic, parts):
        """Sum of the partitions' end offsets (high watermarks), or None on an error."""
        body = struct.pack(">ii", -1, 1) + string(topic) + struct.pack(">i", len(parts))
        body += b"".join(struct.pack(">iq", p, -1) for p in parts)
        r = self.request(2, 1, body)
        total = 0
        for _ in range(r.int32()):
            r.string()
            for _ in range(r.int32()):
                _p, err, _ts, offset = r.int32(), r.int16(), r.int64(), r.int64()
                if err != 0: return None
                total += offset
        return total

def usage(pid):
    """(CPU seconds, VmHWM KiB) of a live process, or None once it has exited."""
    try:
        with open(f"/proc/{pid}/stat") as f: stat = f.read()
        with open(f"/proc/{pid}/status") as f: status = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"): return None
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next((int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:")), 0)
    return cpu, hwm

def connect_failure(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as resp: st = json.load(resp)
    except Exception:
        return None
    for part in [st.get("connector", {})] + st.get("tasks", []):
        if part.get("state") == "FAILED":
            return (part.get("trace") or "FAILED").strip().splitlines()[0]
    return None

def watch(a):
    kafka, parts, count, first, last_err, next_status = Kafka(a.bootstrap), [], 0, None, "", 0.0
    deadline = a.start + a.timeout
    while True:
        u = usage(a.pid)
        if u is None:
            sys.exit(f"{a.tool}: the process (pid {a.pid}) exited; {a.topic} holds {count} of {a.rows} records")
        try:
            if not parts: parts = kafka.partitions(a.topic)
            if parts:
                got = kafka.records(a.topic, parts)
                if got is None: parts = []
                else: count = got
        except (OSError, ValueError) as e:
            last_err = f" (last broker error: {e})"
        now = time.time()
        if count > 0 and first is None: first = (now - a.start, u[0])
        if count >= a.rows:
            u = usage(a.pid) or u
            if count != a.rows:
                print(f"{a.tool}: warning: {a.topic} holds {count} records, not {a.rows}", file=sys.stderr)
            after = now - a.start - first[0]
            line(a, now - a.start, u[0], u[1],
                 f" records={count} first_record_seconds={first[0]:.2f} first_record_cpu_seconds={first[1]:.2f}"
                 f" rows_per_second_after_first_record={f'{a.rows / after:.0f}' if after >= 0.1 else 'na'}")
            return
        if a.connect_status and now >= next_status:
            why = connect_failure(a.connect_status)
            if why: sys.exit(f"{a.tool}: Kafka Connect reports the connector FAILED: {why}")
            next_status = now + 1
        if now > deadline:
            sys.exit(f"{a.tool}: timed out after {a.timeout:.0f} s: {a.topic} holds {count} of {a.rows} records{last_err}")
        time.sleep(0.05)

def run(a):
    # CPU from getrusage; the peak RSS from the child's own VmHWM, read every 10 ms
    # once it has exec'd (getrusage's ru_maxrss would count this Python's memory,
    # which the child shares until its exec).
    name = os.path.basename(a.command[0])[:15]
    start = time.time()
    child = subprocess.Popen(a.command, stdout=subprocess.DEVNULL)
    hwm = 0
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/comm") as f: comm = f.read().strip()
            with open(f"/proc/{child.pid}/status") as f: status = f.read()
            if comm == name:
                hwm = next((int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:")), hwm)
        except OSError:
            pass
        if time.time() - start > a.timeout:
            child.kill()
            child.wait()
            sys.exit(f"{a.tool}: timed out after {a.timeout:.0f} s")
        time.sleep(0.01)
    end = time.time()
    if child.returncode != 0: sys.exit(f"{a.tool}: exited with {child.returncode}")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    line(a, end - start, ru.ru_utime + ru.ru_stime, hwm)

p = argparse.ArgumentParser()
p.add_argument("mode", choices=["watch", "run"])
p.add_argument("--tool", required=True)
p.add_argument("--phase", required=True)
p.add_argument("--rows", type=int, required=True)
p.add_argument("--timeout", type=float, required=True)
p.add_argument("--bootstrap")
p.add_argument("--topic")
p.add_argument("--pid", type=int)
p.add_argument("--start", type=float)
p.add_argument("--connect-status", help="Connect's REST status URL of the connector")
argv = sys.argv[1:]
cut = argv.index("--") if "--" in argv else len(argv)
a = p.parse_args(argv[:cut])
a.command = argv[cut + 1:]
watch(a) if a.mode == "watch" else run(a)
PY

# fail WHAT LOG: the tail of LOG, then exit.
fail() {
    echo "$1 failed; last lines of $2:" >&2
    tail -n 30 "$2" >&2 || true
    exit 1
}

# await_records TOOL PHASE TOPIC PID START LOG [CONNECT_STATUS_URL]: waits for ROWS
# records in TOPIC and prints the summary line (measure.py watch).
await_records() {
    python3 "$state/measure.py" watch --tool "$1" --phase "$2" --rows "$rows" --timeout "$timeout_s" \
        --bootstrap "$WALCAST_KAFKA_BOOTSTRAP" --topic "$3" --pid "$4" --start "$5" \
        ${7:+--connect-status "$7"} || fail "$1 ($2)" "$6"
}

# walcast_toml NAME FORMAT [SOURCE_LINES]: connector NAME (slot and publication
# walcast_NAME, topic prefix NAME) for table public.$table, in $state/NAME.toml.
walcast_toml() {
    { bench_connector "$1" "$1" "${3:-}"; cat <<TOML; } >"$state/$1.toml"
[events]
format = "$2"
[tables."public.$table"]
TOML
    "$bin" setup "$state/$1.toml" >/dev/null
}

# walcast_phase PHASE NAME FORMAT: runs connector NAME (walcast_toml) until its topic
# holds ROWS records, then stops it.
walcast_phase() {
    local start
    start=$(date +%s.%N)
    "$bin" run "$state/$2.toml" 2>"$state/$2.log" &
    walcast_pid=$!
    await_records "walcast-$3" "$1" "$2.public.$table" "$walcast_pid" "$start" "$state/$2.log"
    kill "$walcast_pid" 2>/dev/null || true
    wait "$walcast_pid" 2>/dev/null || true
    walcast_pid=
}

# debezium_phase PHASE NAME SNAPSHOT_MODE PRODUCER: Debezium's PostgreSQL connector NAME
# (slot and publication NAME, topic prefix NAME, table public.$table) on a Connect
# standalone worker of its own, with Connect's own source producer (PRODUCER=default)
# or walcast's producer settings (tuned), until its topic holds ROWS records; then
# stops the worker.
debezium_phase() {
    local phase=$1 name=$2 mode=$3 producer=$4 dir=$state/$2 rest_port start tool=debezium-json
    mkdir -p "$dir"
    rest_port=$(bench_free_port)
    cat >"$dir/worker.properties" <<EOF
bootstrap.servers=$WALCAST_KAFKA_BOOTSTRAP
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=true
value.converter.schemas.enable=true
offset.storage.file.filename=$dir/connect.offsets
listeners=http://127.0.0.1:$rest_port
plugin.discovery=service_load
EOF
    if [ "$producer" = tuned ]; then
        tool=debezium-json-tuned
        cat >>"$dir/worker.properties" <<EOF
producer.enable.idempotence=true
producer.max.in.flight.requests.per.connection=5
producer.compression.type=lz4
producer.linger.ms=5
producer.batch.size=1000000
producer.buffer.memory=268435456
EOF
    fi
    # The broker does not create topics on first use (auto.create.topics.enable=false):
    # Connect creates the connector's topic from the topic.creation.default.* settings.
    cat >"$dir/connector.properties" <<EOF
name=$name
connector.class=io.debezium.connector.postgresql.PostgresConnector
tasks.max=1
database.hostname=$WALCAST_PG_HOST
database.port=$WALCAST_PG_PORT
database.user=postgres
database.password=unused
database.dbname=postgres
topic.prefix=$name
plugin.name=pgoutput
slot.name=$name
publication.name=$name
publication.autocreate.mode=disabled
table.include.list=public.$table
snapshot.mode=$mode
topic.creation.default.replication.factor=1
topic.creation.default.partitions=1
EOF
    cat >"$dir/log4j2.properties" <<'EOF'
rootLogger.level=INFO
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
EOF
    start=$(date +%s.%N)
    # shellcheck disable=SC2086  # the heap options are words
    java $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$jars/*" \
        org.apache.kafka.connect.cli.ConnectStandalone "$dir/worker.properties" "$dir/connector.properties" \
        >"$dir/connect.log" 2>&1 &
    connect_pid=$!
    await_records "$tool" "$phase" "$name.public.$table" "$connect_pid" "$start" "$dir/connect.log" \
        "http://127.0.0.1:$rest_port/connectors/$name/status"
    kill "$connect_pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$connect_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$connect_pid" 2>/dev/null || true
    wait "$connect_pid" 2>/dev/null || true
    connect_pid=
}

echo "walcast: $bin ($("$bin" --version)); Debezium: $jars; $(java -version 2>&1 | head -n1)" >&2

if [[ " $phases " == *" streaming "* ]]; then
    table=bench
    $psql -c "CREATE TABLE bench ($NARROW_BENCH_COLUMNS)"
    # Every slot before the backlog, so each tool reads the same changes.
    walcast_toml stream_json json_with_schema 'snapshot_mode = "no_data"'
    walcast_toml stream_avro avro 'snapshot_mode = "no_data"'
    for slot in walcast_stream_json walcast_stream_avro recvlogical_stream; do
        $psql -c "SELECT pg_create_logical_replication_slot('$slot', 'pgoutput')" >/dev/null
    done
    for producer in $producers; do
        $psql -c "CREATE PUBLICATION dbz_stream_$producer FOR TABLE bench"
        $psql -c "SELECT pg_create_logical_replication_slot('dbz_stream_$producer', 'pgoutput')" >/dev/null
    done
    echo "writing $rows rows, $per_tx per transaction" >&2
    bench_fill bench "$rows" "$per_tx"
    end_lsn=$($psql -c "SELECT pg_current_wal_lsn()")

    python3 "$state/measure.py" run --tool pg_recvlogical --phase streaming --rows "$rows" --timeout "$timeout_s" -- \
        "$WALCAST_PG_BIN/pg_recvlogical" "${pg_args[@]}" --slot recvlogical_stream --start --status-interval=1 \
        -o proto_version=1 -o publication_names=walcast_stream_json --endpos "$end_lsn" -f /dev/null \
        || { echo "pg_recvlogical (streaming) failed" >&2; exit 1; }
    walcast_phase streaming stream_json json_with_schema
    walcast_phase streaming stream_avro avro
    for producer in $producers; do
        debezium_phase streaming "dbz_stream_$producer" no_data "$producer"
    done
fi

if [[ " $phases " == *" snapshot "* ]]; then
    table=snap
    $psql -c "CREATE TABLE snap ($SNAPSHOT_BENCH_COLUMNS)"
    echo "loading $rows rows" >&2
    $psql -c "INSERT INTO snap SELECT $SNAPSHOT_BENCH_ROW FROM generate_series(1, $rows) i"
    $psql -c "VACUUM ANALYZE snap"
    for producer in $producers; do
        $psql -c "CREATE PUBLICATION dbz_snap_$producer FOR TABLE snap"
    done
    # shellcheck disable=SC2086  # $psql is a command line
    python3 "$state/measure.py" run --tool copy --phase snapshot --rows "$rows" --timeout "$timeout_s" -- \
        $psql -c "COPY snap TO STDOUT" || { echo "COPY failed" >&2; exit 1; }
    walcast_toml snap_json json_with_schema
    walcast_toml snap_avro avro
    walcast_phase snapshot snap_json json_with_schema
    walcast_phase snapshot snap_avro avro
    for producer in $producers; do
        debezium_phase snapshot "dbz_snap_$producer" initial "$producer"
    done
fi
