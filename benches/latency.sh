#!/usr/bin/env bash
# Latency at a steady rate: pgbench commits RATE single-row inserts per second for
# SECONDS while `walcast run` streams them (default settings: exactly_once, acks=all,
# Avro via the dev registry); benches/latency.py reports p50/p90/p99 from each change's
# commit (source.ts_us) to the broker's append (LogAppendTime), after a 3 s warm-up.
#
# First, in the same run and with the same workload, pg_recvlogical shows PostgreSQL's
# own delivery latency (commit to arrival at a client): the floor under walcast's figure.
# Then, also in the same run, the broker alone (benches/latency_broker.py): a producer
# configured as walcast's sends as many records per second for as long, while pgbench
# runs the same workload on a table nobody reads, and their send to append latency is
# the floor under walcast's event-to-append figure. It runs just
# before walcast's phase, so the broker's JVM is as warm for walcast as a running
# cluster's would be. LATENCY_TIMELINE=1 adds a per-second breakdown of both.
#
# Usage: benches/latency.sh [RATE] [SECONDS]     (defaults: 5000 30)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rate=${1:-5000}
seconds=${2:-30}
cd "$repo"
. "$repo/benches/lib.sh"
bench_build
bench_stack lat
bench_registry
$psql -c "CREATE TABLE lat (id bigserial PRIMARY KEY, customer int, status text, note text)"
topic=latbench.public.lat
python3 - "$WALCAST_KAFKA_BOOTSTRAP" "$topic" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
futures = admin.create_topics([NewTopic(sys.argv[2], 1, 1, config={"message.timestamp.type": "LogAppendTime"})])
for f in futures.values():
    f.result()
PY
# Phase 1's rows are not the measurement: no initial snapshot of them.
{ bench_connector latbench latbench 'snapshot_mode = "never"'; cat <<TOML; } >"$state/lat.toml"
[tables."public.lat"]
TOML
"$bin" setup "$state/lat.toml" >/dev/null
echo "INSERT INTO lat (customer, status, note) VALUES (:client_id, 'paid', 'latency probe');" >"$state/insert.sql"
$psql -c "CREATE TABLE lat_floor (LIKE lat INCLUDING ALL)"
echo "INSERT INTO lat_floor (customer, status, note) VALUES (:client_id, 'paid', 'latency probe');" >"$state/insert_floor.sql"
# The local stack runs with synchronous_commit = off (WAL flushed every 200 ms, and the
# walsender sends only flushed WAL); a latency measurement commits synchronously.
workload() {
    echo "pgbench: $rate transactions/s for ${seconds}s ($1)" >&2
    PGOPTIONS="-c synchronous_commit=on" "$WALCAST_PG_BIN/pgbench" -n -h "$WALCAST_PG_HOST" -p "$WALCAST_PG_PORT" -U postgres -c 4 -j 2 \
        -R "$rate" -T "$seconds" -f "${2:-$state/insert.sql}" postgres >"$state/pgbench.out" 2>&1 || { cat "$state/pgbench.out" >&2; exit 1; }
    grep -E "tps" "$state/pgbench.out" >&2 || true
}

# Phase 1, PostgreSQL's own floor: the same workload read by pg_recvlogical
# (test_decoding with commit timestamps), each COMMIT line timed on arrival.
$psql -c "SELECT pg_create_logical_replication_slot('latbase', 'test_decoding')" >/dev/null
mkfifo "$state/baseline.fifo"
python3 "$repo/benches/latency_baseline.py" 3 <"$state/baseline.fifo" >"$state/baseline.out" &
baseline_pid=$!
"$WALCAST_PG_BIN/pg_recvlogical" -h "$WALCAST_PG_HOST" -p "$WALCAST_PG_PORT" -U postgres -d postgres -S latbase \
    --start -o include-timestamp=1 -f - >"$state/baseline.fifo" 2>"$state/recvlogical.log" &
recvlogical_pid=$!
workload pg_recvlogical
sleep 1
kill -INT "$recvlogical_pid" 2>/dev/null || true
wait "$baseline_pid" || true
recvlogical_pid=
$psql -c "SELECT pg_drop_replication_slot('latbase')" >/dev/null

# Phase 2, the broker's own floor at the same rate, while PostgreSQL takes the same
# workload (into a table no slot reads yet), so the two cores are as busy as in phase 3.
python3 "$repo/benches/latency_broker.py" "$WALCAST_KAFKA_BOOTSTRAP" latbench.broker "$rate" "$seconds" 3 >"$state/broker.out" &
broker_pid=$!
workload "broker alone" "$state/insert_floor.sql"
wait "$broker_pid"

# Phase 3: walcast into Kafka.
"$bin" run "$state/lat.toml" 2>"$state/walcast.log" &
walcast_pid=$!
for _ in $(seq 1 120); do
    [ "$($psql -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walcast_latbench' AND active")" = 1 ] && break
    sleep 0.25
done
workload walcast
# Read afterwards (the broker stamped each record on append), so decoding 75,000 Avro
# records in Python does not compete for the two cores during the measurement.
python3 "$repo/benches/latency.py" "$WALCAST_KAFKA_BOOTSTRAP" "http://127.0.0.1:$registry_port" "$topic" 8 3 >"$state/latency.out"
cat "$state/baseline.out"
cat "$state/broker.out"
rss=$(awk '/VmHWM/ {print $2}' "/proc/$walcast_pid/status")
echo "$(cat "$state/latency.out") rate=$rate walcast_peak_rss_mib=$(python3 -c "print(round($rss/1024,1))")"
