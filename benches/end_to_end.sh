#!/usr/bin/env bash
# End-to-end catch-up: a backlog of ROWS row changes (8-column rows, ROWS_PER_TX per
# transaction) streamed by `walcast run` into Kafka (acks=all, exactly_once, Avro via
# the dev registry), timed until the slot's confirmed position (which only moves when
# Kafka has acknowledged everything before it) reaches the end of the backlog.
# Prints rows/s, the WAL streamed in MB/s and walcast's peak RSS.
#
# Usage: benches/end_to_end.sh [ROWS] [ROWS_PER_TX]     (defaults: 1000000 100)
# Environment: SINK=kafka|discard (default kafka; discard encodes every event and drops
# it), MODE=exactly_once|transactional|at_least_once (default exactly_once),
# WORKLOAD=narrow|wide|toast (default narrow: the 8 columns above; wide: 50 columns;
# toast: an 8 kB out-of-line text per row; see bench_table in benches/lib.sh).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rows=${1:-1000000}
per_tx=${2:-100}
sink=${SINK:-kafka}
mode=${MODE:-exactly_once}
workload=${WORKLOAD:-narrow}
cd "$repo"
. "$repo/benches/lib.sh"
bench_build
bench_stack e2e
bench_registry
if [ "$workload" = narrow ]; then
    $psql -c "CREATE TABLE bench ($NARROW_BENCH_COLUMNS)"
    row_select=$NARROW_BENCH_ROW
else
    bench_table bench "$workload"
fi
{ bench_connector bench bench; cat <<TOML; } >"$state/bench.toml"
[sink]
kind = "$sink"
[delivery]
mode = "$mode"
[tables."public.bench"]
TOML
"$bin" setup "$state/bench.toml" >/dev/null
$psql -c "SELECT pg_create_logical_replication_slot('walcast_bench', 'pgoutput')" >/dev/null
# PostgreSQL's own client reads the same backlog from a second slot, for the ratio.
$psql -c "SELECT pg_create_logical_replication_slot('recvlogical_bench', 'pgoutput')" >/dev/null
echo "writing $rows $workload rows, $per_tx per transaction" >&2
start_lsn=$($psql -c "SELECT pg_current_wal_lsn()")
bench_fill bench "$rows" "$per_tx" "$row_select"
end_lsn=$($psql -c "SELECT pg_current_wal_lsn()")
wal_bytes=$($psql -c "SELECT pg_wal_lsn_diff('$end_lsn', '$start_lsn')::bigint")

start=$(date +%s.%N)
"$bin" run "$state/bench.toml" 2>"$state/walcast.log" &
walcast_pid=$!
for _ in $(seq 1 1200); do
    done_=$($psql -c "SELECT confirmed_flush_lsn >= '$end_lsn' FROM pg_replication_slots WHERE slot_name = 'walcast_bench'")
    [ "$done_" = "t" ] && break
    sleep 0.25
done
end=$(date +%s.%N)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$walcast_pid/status")
cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$walcast_pid/stat")
echo "walcast CPU time (user+system): ${cpu}s" >&2
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'walcast end to end (sink=$sink, mode=$mode, workload=$workload): rows={sys.argv[3]} seconds={s:.2f} rows_per_second={int(sys.argv[3])/s:.0f} wal_mb_per_second={int(sys.argv[5])/s/1e6:.1f} peak_rss_mib={int(sys.argv[4])/1024:.1f}')" "$start" "$end" "$rows" "$rss" "$wal_bytes"
[ "$done_" = "t" ] || { echo "did not catch up; log:" >&2; tail -5 "$state/walcast.log" >&2; exit 1; }
kill "$walcast_pid" 2>/dev/null || true
wait "$walcast_pid" 2>/dev/null || true
walcast_pid=
start_r=$(date +%s.%N)
timeout 600 "$WALCAST_PG_BIN/pg_recvlogical" -h "$WALCAST_PG_HOST" -p "$WALCAST_PG_PORT" -U postgres -d postgres \
    --slot recvlogical_bench --start --status-interval=1 -o proto_version=1 -o publication_names=walcast_bench \
    --endpos "$end_lsn" -f /dev/null
end_r=$(date +%s.%N)
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); r=float(sys.argv[4])-float(sys.argv[3]); print(f'pg_recvlogical on the same backlog: seconds={r:.2f} rows_per_second={int(sys.argv[5])/r:.0f} wal_mb_per_second={int(sys.argv[6])/r/1e6:.1f}; walcast/pg_recvlogical = {r/s*100:.0f}%')" "$start" "$end" "$start_r" "$end_r" "$rows" "$wal_bytes"
