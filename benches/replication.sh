#!/usr/bin/env bash
# Measures walcast's replication reader against PostgreSQL's own pg_recvlogical on the
# same data: a backlog of ROWS row changes of an 8-column table, written either as one
# transaction (ROWS_PER_TX=0, the flat-memory case) or in transactions of ROWS_PER_TX
# rows, then read from a pgoutput slot by each. Prints rows/s and peak RSS, the
# system-call time pg_recvlogical spent, and how long PostgreSQL takes to decode the
# backlog with no client at all (pg_logical_slot_get_binary_changes on a third slot):
# what the walsender's sending costs on top of its decoding.
#
# Usage: benches/replication.sh [ROWS] [ROWS_PER_TX]     (defaults: 1000000 100)
# Starts its own PostgreSQL with deploy/local/up in a temporary state dir.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rows=${1:-1000000}
per_tx=${2:-100}
cd "$repo"
. "$repo/benches/lib.sh"
bench_stack bench postgres

$psql -c "CREATE TABLE bench ($NARROW_BENCH_COLUMNS)"
$psql -c "CREATE PUBLICATION bench_pub FOR TABLE bench"
$psql -c "SELECT pg_create_logical_replication_slot('walcast_bench', 'pgoutput')" >/dev/null
$psql -c "SELECT pg_create_logical_replication_slot('recvlogical_bench', 'pgoutput')" >/dev/null
$psql -c "SELECT pg_create_logical_replication_slot('server_side_bench', 'pgoutput')" >/dev/null

echo "writing $rows rows ($([ "$per_tx" -eq 0 ] && echo 'one transaction' || echo "$per_tx per transaction"))" >&2
bench_fill bench "$rows" "$per_tx"

echo "pg_recvlogical (pgoutput, to /dev/null):" >&2
start=$(date +%s.%N)
end_lsn=$($psql -c 'SELECT pg_current_wal_lsn()')
/usr/bin/time -f 'pg_recvlogical_user_seconds=%U system_seconds=%S' -o "$state/recvlogical.time" \
    timeout 600 "$WALCAST_PG_BIN/pg_recvlogical" -h "$WALCAST_PG_HOST" -p "$WALCAST_PG_PORT" -U postgres -d postgres \
    --slot recvlogical_bench --start --status-interval=1 -o proto_version=1 -o publication_names=bench_pub \
    --endpos "$end_lsn" -f /dev/null
end=$(date +%s.%N)
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'pg_recvlogical rows={sys.argv[3]} seconds={s:.2f} rows_per_second={int(sys.argv[3])/s:.0f}')" "$start" "$end" "$rows"
cat "$state/recvlogical.time"
start=$(date +%s.%N)
$psql -c "SELECT count(*) FROM pg_logical_slot_get_binary_changes('server_side_bench', '$end_lsn', NULL, 'proto_version', '1', 'publication_names', 'bench_pub')" >/dev/null
end=$(date +%s.%N)
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'server-side decoding, no client: seconds={s:.2f} rows_per_second={int(sys.argv[3])/s:.0f}')" "$start" "$end" "$rows"

cd "$repo"
cargo build --release --quiet --example stream_slot
connector="$state/bench.toml"
cat >"$connector" <<TOML
name = "bench"
[source]
host = "$WALCAST_PG_HOST"
port = $WALCAST_PG_PORT
dbname = "postgres"
user = "postgres"
sslmode = "disable"
[kafka]
bootstrap_servers = "127.0.0.1:9"
[registry]
url = "http://127.0.0.1:9"
[tables."public.bench"]
TOML
echo "walcast reader (decode + typed values):" >&2
target/release/examples/stream_slot "$connector" walcast_bench bench_pub "$rows"
