# Shared by the benchmark scripts (sourced, with `repo` set): the release binary, a
# local stack of the benchmark's own on free ports, the dev registry, psql, and the
# cleanup of everything they started (walcast_pid, registry_pid and recvlogical_pid
# are killed on exit when set).

# Builds walcast (release) and sets `bin`; with BENCH_BIN set, uses that binary instead
# (to compare an old build with a new one in alternating runs).
bench_build() {
    if [ -n "${BENCH_BIN:-}" ]; then
        bin=$BENCH_BIN
        return
    fi
    (cd "$repo" && cargo build --release --quiet --bin walcast)
    bin=$repo/target/release/walcast
}

bench_cleanup() {
    local pid
    for pid in "${recvlogical_pid:-}" "${walcast_pid:-}" "${registry_pid:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    if [ -n "${state:-}" ]; then
        "$repo/deploy/local/down" --state-dir "$state" --purge >/dev/null 2>&1 || true
    fi
}

# bench_stack NAME [SERVICES]: starts the stack (default postgres,kafka) in a fresh
# state folder under ${BENCH_TMP:-/tmp} (BENCH_TMP=/dev/shm keeps PostgreSQL's and
# Kafka's files in memory, to tell the disk's stalls from the software's), exports its
# settings and sets `state` and `psql`.
bench_stack() {
    state=$(mktemp -d "${BENCH_TMP:-/tmp}/walcast-$1-XXXXXX")
    trap bench_cleanup EXIT
    "$repo/deploy/local/up" --services "${2:-postgres,kafka}" --state-dir "$state" >/dev/null
    set -a; . "$state/stack.env"; set +a
    psql="$WALCAST_PG_BIN/psql -X -q -At -h $WALCAST_PG_HOST -p $WALCAST_PG_PORT -U postgres -d postgres"
}

# Prints a loopback port free at the moment.
bench_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts the dev registry on a free port; sets `registry_port` and `registry_pid`.
bench_registry() {
    registry_port=$(bench_free_port)
    "$bin" registry --listen "127.0.0.1:$registry_port" --data-dir "$state/registry" >"$state/registry.log" 2>&1 &
    registry_pid=$!
}

# The [source], [kafka], [registry] and [metrics] part of a connector file for the
# stack: bench_connector NAME PREFIX [EXTRA_SOURCE_LINES].
bench_connector() {
    cat <<TOML
name = "$1"
[source]
host = "$WALCAST_PG_HOST"
port = $WALCAST_PG_PORT
dbname = "postgres"
user = "postgres"
sslmode = "disable"
${3:-}
[kafka]
bootstrap_servers = "$WALCAST_KAFKA_BOOTSTRAP"
topic_prefix = "$2"
[registry]
url = "http://127.0.0.1:$registry_port"
[metrics]
enabled = false
TOML
}

# bench_table NAME WORKLOAD: creates table NAME for one of the heavier workloads and sets
# `row_select`, the SELECT list of row `i` (a bigint):
#   wide   50 columns: bigint key, then int, text, numeric(12,2), timestamptz and float8
#          columns in turn (about 500 bytes a row);
#   toast  bigint key, an int and an 8 kB text stored out of line uncompressed
#          (STORAGE EXTERNAL), so every row carries a TOASTed value.
bench_table() {
    local name=$1 cols="" k
    case "$2" in
        wide)
            row_select="i"
            for k in $(seq 1 49); do
                case $((k % 5)) in
                    0) cols="$cols, c$k int"; row_select="$row_select, (i * $k) % 100000" ;;
                    1) cols="$cols, c$k text"; row_select="$row_select, 'v' || (i % 1000) || '-$k'" ;;
                    2) cols="$cols, c$k numeric(12,2)"; row_select="$row_select, ((i + $k) % 10000) / 100.0" ;;
                    3) cols="$cols, c$k timestamptz"; row_select="$row_select, timestamptz '2026-01-01 00:00:00+00' + (i % 100000) * interval '1 second'" ;;
                    4) cols="$cols, c$k float8"; row_select="$row_select, i / ($k + 1.0)" ;;
                esac
            done
            $psql -c "CREATE TABLE $name (id bigint PRIMARY KEY$cols)"
            ;;
        toast)
            $psql -c "CREATE TABLE $name (id bigint PRIMARY KEY, kind int, body text)"
            $psql -c "ALTER TABLE $name ALTER COLUMN body SET STORAGE EXTERNAL"
            row_select="i, i % 10, repeat(md5(i::text), 256)"
            ;;
        *) echo "unknown WORKLOAD $2 (narrow, wide or toast)" >&2; exit 2 ;;
    esac
}

# The narrow benchmark row of row `i` (a bigint), for a table created with
# NARROW_BENCH_COLUMNS.
NARROW_BENCH_COLUMNS="id bigint PRIMARY KEY, customer int, sku text, qty int, price numeric(12,2), status text, created timestamptz, note text"
NARROW_BENCH_ROW="i, i % 1000, 'sku-' || (i % 5000), 1 + i % 7, (i % 10000) / 100.0, 'paid', now(), 'note ' || i"

# The snapshot benchmarks' 10-column table and its row `i`.
SNAPSHOT_BENCH_COLUMNS="$NARROW_BENCH_COLUMNS, weight float8, active bool"
SNAPSHOT_BENCH_ROW="$NARROW_BENCH_ROW, i / 7.0, i % 2 = 0"

# bench_fill TABLE ROWS PER_TX [SELECT_LIST]: inserts rows 1..ROWS (SELECT_LIST of row
# `i`, default NARROW_BENCH_ROW) into TABLE, PER_TX rows per committed transaction, or
# all in one transaction when PER_TX is 0.
bench_fill() {
    local table=$1 rows=$2 per=$3 select=${4:-$NARROW_BENCH_ROW}
    if [ "$per" -eq 0 ]; then
        $psql -c "INSERT INTO $table SELECT $select FROM generate_series(1, $rows) i"
        return
    fi
    $psql -c "CREATE OR REPLACE PROCEDURE bench_fill_$table(n bigint, per bigint) LANGUAGE plpgsql AS \$\$
        DECLARE s bigint := 1; BEGIN
          WHILE s <= n LOOP
            INSERT INTO $table SELECT $select FROM generate_series(s, least(s + per - 1, n)) i;
            COMMIT; s := s + per;
          END LOOP; END \$\$"
    $psql -c "CALL bench_fill_$table($rows, $per)"
}
