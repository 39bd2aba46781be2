#!/usr/bin/env bash
# Initial snapshot throughput: a ROWS-row, 10-column table snapshotted by `walcast run`
# into Kafka (Avro, dev registry, acks=all, exactly_once), timed until walcast records
# the snapshot as complete (every row acknowledged by Kafka). Prints rows/s, the table's
# MB/s (heap and TOAST) and walcast's peak RSS, and, measured first in the same run,
# PostgreSQL's own `COPY … TO STDOUT` of the same table (text, to /dev/null).
#
# Usage: benches/snapshot.sh [ROWS]     (default 1000000)
# Environment: SINK=kafka|discard (default kafka; discard encodes every row and drops it),
#              WORKERS=N ([source] snapshot_workers, default 2),
#              WORKLOAD=narrow|wide|toast (default narrow: the 10 columns below; wide:
#              50 columns; toast: an 8 kB out-of-line text per row; see bench_table).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rows=${1:-1000000}
sink=${SINK:-kafka}
workers=${WORKERS:-2}
workload=${WORKLOAD:-narrow}
cd "$repo"
. "$repo/benches/lib.sh"
bench_build
bench_stack snap
bench_registry
if [ "$workload" = narrow ]; then
    $psql -c "CREATE TABLE snap ($SNAPSHOT_BENCH_COLUMNS)"
    row_select=$SNAPSHOT_BENCH_ROW
else
    bench_table snap "$workload"
fi
echo "loading $rows $workload rows" >&2
$psql -c "INSERT INTO snap SELECT $row_select FROM generate_series(1, $rows) i"
$psql -c "VACUUM ANALYZE snap"
table_bytes=$($psql -c "SELECT pg_table_size('snap')")
copy_start=$(date +%s.%N)
$psql -c "COPY snap TO STDOUT" >/dev/null
copy_end=$(date +%s.%N)
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'COPY snap TO STDOUT (workload=$workload): rows={sys.argv[3]} seconds={s:.2f} rows_per_second={int(sys.argv[3])/s:.0f} table_mb_per_second={int(sys.argv[4])/s/1e6:.1f}')" "$copy_start" "$copy_end" "$rows" "$table_bytes"
{ bench_connector snapbench snapbench "snapshot_workers = $workers"; cat <<TOML; } >"$state/snap.toml"
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
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); c=float(sys.argv[7])-float(sys.argv[6]); print(f'walcast initial snapshot (sink=$sink, workers=$workers, workload=$workload): rows={sys.argv[3]} seconds={s:.2f} rows_per_second={int(sys.argv[3])/s:.0f} table_mb_per_second={int(sys.argv[5])/s/1e6:.1f} peak_rss_mib={int(sys.argv[4])/1024:.1f}; walcast/COPY = {c/s*100:.0f}%')" "$start" "$end" "$rows" "$rss" "$table_bytes" "$copy_start" "$copy_end"
[ "$done_" = "t" ] || { echo "the snapshot did not complete; log:" >&2; tail -5 "$state/walcast.log" >&2; exit 1; }
