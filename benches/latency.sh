#!/usr/bin/env bash
# Latency at a steady rate: pgbench commits RATE single-row inserts per second for
# SECONDS while `walcast run` streams them (default settings: exactly_once, acks=all,
# Avro via the dev registry); benches/latency.py reports p50/p90/p99 from each change's
# commit (source.ts_us) to the broker's append (LogAppendTime), after a 3 s warm-up.
#
# Usage: benches/latency.sh [RATE] [SECONDS]     (defaults: 5000 30)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rate=${1:-5000}
seconds=${2:-30}
cd "$repo"
cargo build --release --quiet --bin walcast
bin=$repo/target/release/walcast
state=$(mktemp -d /tmp/walcast-lat-XXXXXX)
walcast_pid=
registry_pid=
cleanup() {
    [ -n "$walcast_pid" ] && kill "$walcast_pid" 2>/dev/null || true
    [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
    "$repo/deploy/local/down" --state-dir "$state" --purge >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$repo/deploy/local/up" --services postgres,kafka --state-dir "$state" >/dev/null
set -a; . "$state/stack.env"; set +a
registry_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" registry --listen "127.0.0.1:$registry_port" --data-dir "$state/registry" >"$state/registry.log" 2>&1 &
registry_pid=$!
psql="$WALCAST_PG_BIN/psql -X -q -At -h $WALCAST_PG_HOST -p $WALCAST_PG_PORT -U postgres -d postgres"
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
cat >"$state/lat.toml" <<TOML
name = "latbench"
[source]
host = "$WALCAST_PG_HOST"
port = $WALCAST_PG_PORT
dbname = "postgres"
user = "postgres"
sslmode = "disable"
[kafka]
bootstrap_servers = "$WALCAST_KAFKA_BOOTSTRAP"
topic_prefix = "latbench"
[registry]
url = "http://127.0.0.1:$registry_port"
[metrics]
enabled = false
[tables."public.lat"]
TOML
"$bin" setup "$state/lat.toml" >/dev/null
"$bin" run "$state/lat.toml" 2>"$state/walcast.log" &
walcast_pid=$!
for _ in $(seq 1 120); do
    [ "$($psql -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walcast_latbench' AND active")" = 1 ] && break
    sleep 0.25
done
python3 "$repo/benches/latency.py" "$WALCAST_KAFKA_BOOTSTRAP" "http://127.0.0.1:$registry_port" "$topic" 8 3 >"$state/latency.out" &
consumer_pid=$!
echo "INSERT INTO lat (customer, status, note) VALUES (:client_id, 'paid', 'latency probe');" >"$state/insert.sql"
echo "pgbench: $rate transactions/s for ${seconds}s" >&2
# The local stack runs with synchronous_commit = off (WAL flushed every 200 ms, and the
# walsender sends only flushed WAL); a latency measurement commits synchronously.
PGOPTIONS="-c synchronous_commit=on" "$WALCAST_PG_BIN/pgbench" -n -h "$WALCAST_PG_HOST" -p "$WALCAST_PG_PORT" -U postgres -c 4 -j 2 \
    -R "$rate" -T "$seconds" -f "$state/insert.sql" postgres >"$state/pgbench.out" 2>&1 || { cat "$state/pgbench.out" >&2; exit 1; }
grep -E "tps|latency average" "$state/pgbench.out" >&2 || true
wait "$consumer_pid"
rss=$(awk '/VmHWM/ {print $2}' "/proc/$walcast_pid/status")
echo "$(cat "$state/latency.out") rate=$rate walcast_peak_rss_mib=$(python3 -c "print(round($rss/1024,1))")"
