#!/usr/bin/env bash
# Initial snapshot throughput: a ROWS-row, 10-column table snapshotted by `walcast run`
# into Kafka (Avro, dev registry, acks=all, exactly_once), timed until walcast records
# the snapshot as complete (every row acknowledged by Kafka). Prints rows/s and
# walcast's peak RSS.
#
# Usage: benches/snapshot.sh [ROWS]     (default 1000000)
# Environment: SINK=kafka|discard (default kafka; discard encodes every row and drops it),
#              WORKERS=N ([source] snapshot_workers, default 2).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rows=${1:-1000000}
sink=${SINK:-kafka}
workers=${WORKERS:-2}
cd "$repo"
cargo build --release --quiet --bin walcast
bin=$repo/target/release/walcast
state=$(mktemp -d /tmp/walcast-snap-XXXXXX)
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
$psql -c "CREATE TABLE snap (id bigint PRIMARY KEY, customer int, sku text, qty int, price numeric(12,2), status text, created timestamptz, note text, weight float8, active bool)"
echo "loading $rows rows" >&2
$psql -c "INSERT INTO snap SELECT i, i % 1000, 'sku-' || (i % 5000), 1 + i % 7, (i % 10000) / 100.0, 'paid', now(), 'note ' || i, i / 7.0, i % 2 = 0 FROM generate_series(1, $rows) i"
$psql -c "VACUUM ANALYZE snap"
cat >"$state/snap.toml" <<TOML
name = "snapbench"
[source]
host = "$WALCAST_PG_HOST"
port = $WALCAST_PG_PORT
dbname = "postgres"
user = "postgres"
sslmode = "disable"
snapshot_workers = $workers
[kafka]
bootstrap_servers = "$WALCAST_KAFKA_BOOTSTRAP"
topic_prefix = "snapbench"
[registry]
url = "http://127.0.0.1:$registry_port"
[metrics]
enabled = false
[sink]
kind = "$sink"
[tables."public.snap"]
TOML
"$bin" setup "$state/snap.toml" >/dev/null
start=$(date +%s.%N)
"$bin" run "$state/snap.toml" 2>"$state/walcast.log" &
walcast_pid=$!
done_=f
for _ in $(seq 1 2400); do
    done_=$($psql -c "SELECT coalesce((SELECT snapshot_completed FROM walcast.connector_state WHERE connector = 'snapbench'), false)")
    [ "$done_" = "t" ] && break
    sleep 0.25
done
end=$(date +%s.%N)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$walcast_pid/status")
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'walcast initial snapshot (sink=$sink, workers=$workers): rows={sys.argv[3]} seconds={s:.2f} rows_per_second={int(sys.argv[3])/s:.0f} peak_rss_mib={int(sys.argv[4])/1024:.1f}')" "$start" "$end" "$rows" "$rss"
[ "$done_" = "t" ] || { echo "the snapshot did not complete; log:" >&2; tail -5 "$state/walcast.log" >&2; exit 1; }
