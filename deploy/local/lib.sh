# shellcheck shell=bash disable=SC2034  # the layout variables are used by the scripts sourcing this
# deploy/local/lib.sh: helpers shared by up, down, status, fetch-kafka, watchdog and demo.
# Sourced, never run. Holds the defaults (versions, cache and state locations), the
# state-dir layout, "is it running" checks that only trust our own pid files, the
# Kafka jar fetch (Maven, once per version, cached) and the walcast binary (built
# with cargo unless WALCAST_BIN names one).

WALCAST_LOCAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WALCAST_REPO_DIR=$(cd "$WALCAST_LOCAL_DIR/../.." && pwd)

WALCAST_KAFKA_VERSION=${WALCAST_KAFKA_VERSION:-4.1.1}
WALCAST_CACHE_DIR=${WALCAST_CACHE_DIR:-$HOME/.cache/walcast}
WALCAST_PG_BIN=${WALCAST_PG_BIN:-/usr/lib/postgresql/15/bin}

# Progress and errors go to stderr; `up` prints the final settings on stdout.
log() { printf 'walcast-stack: %s\n' "$*" >&2; }
die() { printf 'walcast-stack: error: %s\n' "$*" >&2; exit 1; }

# usage_from_header FILE: print a script's header comment (its help text).
usage_from_header() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"; }

# Monotonic-ish seconds with millis, for timings.
now() { date +%s.%N; }
elapsed() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}s")' "$1" "$(now)"; }

# --- state dir layout -------------------------------------------------------------
# set_state_dir DIR: absolute path, and every path derived from it.
set_state_dir() {
    STATE=$(realpath -m -- "$1")
    [ "$STATE" != / ] || die "refusing to use / as the state dir"
    STACK_ENV=$STATE/stack.env
    MARKER=$STATE/.walcast-stack            # proves a dir is ours before --purge
    LOCK_FILE=$STATE/.lock                   # serialises up/down/watchdog per state dir
    WATCH_PIDS=$STATE/watch.pids             # PIDs the watchdog waits for
    WATCHDOG_PID_FILE=$STATE/watchdog.pid
    WATCHDOG_LOG=$STATE/watchdog.log
    PG_DIR=$STATE/postgres
    PG_DATA=$PG_DIR/data
    PG_LOG=$PG_DIR/postgres.log
    PG_PID_FILE=$PG_DATA/postmaster.pid      # written by postgres itself
    PG_SERVICE_ENV=$PG_DIR/service.env
    KAFKA_DIR=$STATE/kafka
    KAFKA_DATA=$KAFKA_DIR/data               # log.dirs (KRaft metadata + topic data)
    KAFKA_PROPS=$KAFKA_DIR/server.properties
    KAFKA_LOG4J=$KAFKA_DIR/log4j2.properties
    KAFKA_TOOLS_LOG4J=$KAFKA_DIR/tools-log4j2.properties
    KAFKA_OUT=$KAFKA_DIR/kafka.out           # the JVM's stdout+stderr (WARN and up)
    KAFKA_SERVER_LOG=$KAFKA_DIR/server.log   # log4j INFO and up
    KAFKA_PID_FILE=$KAFKA_DIR/kafka.pid
    KAFKA_SERVICE_ENV=$KAFKA_DIR/service.env
    REGISTRY_DIR=$STATE/registry
    REGISTRY_DATA=$REGISTRY_DIR/data         # walcast registry --data-dir (its append-only log)
    REGISTRY_LOG=$REGISTRY_DIR/registry.log  # its stdout+stderr
    REGISTRY_PID_FILE=$REGISTRY_DIR/registry.pid
    REGISTRY_SERVICE_ENV=$REGISTRY_DIR/service.env
}

default_state_dir() { printf '%s\n' "${WALCAST_STACK_DIR:-$WALCAST_REPO_DIR/.walcast-stack}"; }

# Take the per-state-dir lock on fd 9 (so concurrent `up`s from parallel tests queue
# up instead of racing). Children that outlive us must be started with `9>&-`, or
# they would hold the lock forever. WALCAST_STACK_LOCK_HELD=1: the caller (the
# watchdog, which execs `down`) already holds it.
take_lock() {
    [ "${WALCAST_STACK_LOCK_HELD:-}" = 1 ] && return 0
    exec 9>>"$LOCK_FILE"
    flock -w "${WALCAST_STACK_LOCK_TIMEOUT:-300}" 9 || die "timed out waiting for the lock on $STATE"
}

# --- process checks (only ever our own pid files) ---------------------------------
pid_alive() { [ -n "${1:-}" ] && { kill -0 "$1" 2>/dev/null || [ -e "/proc/$1" ]; }; }
# cmdline_has PID TEXT: the process's command line contains TEXT (guards against a
# recycled PID being taken for ours).
cmdline_has() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"; }
read_pid() { [ -s "$1" ] && head -n1 "$1" | tr -dc '0-9'; }

pg_pid() {
    local pid
    pid=$(read_pid "$PG_PID_FILE" 2>/dev/null) || return 1
    pid_alive "$pid" && cmdline_has "$pid" "$PG_DATA" && printf '%s\n' "$pid"
}
kafka_pid() {
    local pid
    pid=$(read_pid "$KAFKA_PID_FILE" 2>/dev/null) || return 1
    pid_alive "$pid" && cmdline_has "$pid" "$KAFKA_PROPS" && printf '%s\n' "$pid"
}
registry_pid() {
    local pid
    pid=$(read_pid "$REGISTRY_PID_FILE" 2>/dev/null) || return 1
    pid_alive "$pid" && cmdline_has "$pid" "--data-dir $REGISTRY_DATA" && printf '%s\n' "$pid"
}
watchdog_pid() {
    local pid
    pid=$(read_pid "$WATCHDOG_PID_FILE" 2>/dev/null) || return 1
    pid_alive "$pid" && cmdline_has "$pid" "$WALCAST_LOCAL_DIR/watchdog" && printf '%s\n' "$pid"
}

# env_get FILE KEY: a value from one of our KEY=value files (empty if absent).
# shellcheck disable=SC1090
env_get() { [ -f "$1" ] && (set +u; . "$1"; eval "printf '%s\n' \"\${$2:-}\""); true; }

# --- PostgreSQL as the right user ----------------------------------------------------
# initdb and postgres refuse to run as root: as root, run them as the `postgres`
# system user (from / so an unreadable cwd such as /root does not matter).
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# --- Kafka jars ----------------------------------------------------------------------
kafka_jars_dir() { printf '%s\n' "$WALCAST_CACHE_DIR/kafka-$WALCAST_KAFKA_VERSION/jars"; }

# ensure_kafka_jars: make sure <cache>/kafka-<version>/jars holds the broker's jars.
ensure_kafka_jars() {
    fetch_maven_jars "$WALCAST_LOCAL_DIR/kafka/pom.xml" "$(kafka_jars_dir)" \
        "kafka_2.13-$WALCAST_KAFKA_VERSION.jar" -Dkafka.version="$WALCAST_KAFKA_VERSION"
}

# connect_jars_dir: where Kafka Connect and Debezium's JDBC sink connector are cached
# (the tests' consumer nobody here wrote; see deploy/local/connect/pom.xml).
connect_jars_dir() { printf '%s\n' "$WALCAST_CACHE_DIR/connect-$WALCAST_KAFKA_VERSION-jdbc-3.5.0/jars"; }

ensure_connect_jars() {
    fetch_maven_jars "$WALCAST_LOCAL_DIR/connect/pom.xml" "$(connect_jars_dir)" \
        "connect-runtime-$WALCAST_KAFKA_VERSION.jar" -Dkafka.version="$WALCAST_KAFKA_VERSION"
}

# debezium_postgres_jars_dir: where Kafka Connect and Debezium's PostgreSQL source
# connector are cached, apart from the JDBC sink's (benches/debezium.sh runs them; see
# deploy/local/connect/debezium-postgres.pom.xml).
debezium_postgres_jars_dir() { printf '%s\n' "$WALCAST_CACHE_DIR/connect-$WALCAST_KAFKA_VERSION-debezium-postgres-3.6.1/jars"; }

ensure_debezium_postgres_jars() {
    fetch_maven_jars "$WALCAST_LOCAL_DIR/connect/debezium-postgres.pom.xml" "$(debezium_postgres_jars_dir)" \
        "debezium-connector-postgres-3.6.1.Final.jar" -Dkafka.version="$WALCAST_KAFKA_VERSION"
}

# fetch_maven_jars POM JARS MARKER [-Dprop=value...]: copy POM's runtime dependencies
# into JARS once, with Maven, unless JARS/MARKER is there. Fetched into a temp dir, then
# renamed into place (a half-finished download is never mistaken for a cache hit); a
# lock makes parallel callers wait.
fetch_maven_jars() {
    local pom=$1 jars=$2 marker=$3 base tmp rc
    shift 3
    base=$(dirname "$jars")
    [ -f "$jars/$marker" ] && return 0
    command -v mvn >/dev/null || die "mvn not found (the jars come from Maven Central; apt-get install -y maven)"
    command -v java >/dev/null || die "java not found (Kafka 4.x needs Java 17+)"
    mkdir -p "$base"
    (
        exec 8>>"$base/.fetch.lock"
        flock -w 600 8 || die "timed out waiting for another download into $base"
        [ -f "$jars/$marker" ] && exit 0
        tmp=$(mktemp -d "$base/jars.tmp.XXXXXX")
        log "fetching the jars of $pom with Maven into $jars (once)"
        rc=0
        mvn -B -q -Dstyle.color=never -f "$pom" dependency:copy-dependencies "$@" \
            -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1 || rc=$?
        if [ "$rc" != 0 ] || [ ! -f "$tmp/$marker" ]; then
            sed 's/\x1b\[[0-9;]*m//g' "$tmp.log" >&2
            rm -rf "$tmp" "$tmp.log"
            die "could not fetch the dependencies of $pom with Maven (exit $rc)"
        fi
        rm -rf "$jars" "$tmp.log"
        mv "$tmp" "$jars"
        log "cached $(find "$jars" -name '*.jar' | wc -l) jars in $jars"
    )
}

# --- the walcast binary ------------------------------------------------------------------
# ensure_walcast_bin: set WALCAST to the walcast binary: $WALCAST_BIN when set, else
# `cargo build --quiet --bin walcast` in the repo (a no-op when it is up to date; about
# 1-2 min on a fresh clone) and its target/debug/walcast.
ensure_walcast_bin() {
    local t0 target
    if [ -n "${WALCAST_BIN:-}" ]; then
        [ -x "$WALCAST_BIN" ] && [ -f "$WALCAST_BIN" ] || die "WALCAST_BIN=$WALCAST_BIN is not an executable file"
        WALCAST=$(realpath -- "$WALCAST_BIN")
        return 0
    fi
    command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs), or set WALCAST_BIN to a walcast binary"
    t0=$(now)
    log "building walcast (cargo build --bin walcast; 1-2 min on a fresh clone)"
    # Lock fd closed: a build helper that outlives cargo (e.g. an sccache server)
    # must not hold the state dir's lock.
    (cd "$WALCAST_REPO_DIR" && cargo build --quiet --bin walcast >&2 9>&-) \
        || die "cargo build --bin walcast failed (or set WALCAST_BIN to a walcast binary)"
    target=${CARGO_TARGET_DIR:-target}
    case "$target" in /*) ;; *) target=$WALCAST_REPO_DIR/$target ;; esac
    WALCAST=$target/debug/walcast
    [ -x "$WALCAST" ] || die "cargo build succeeded, but there is no $WALCAST (set WALCAST_BIN)"
    log "walcast is built ($WALCAST) in $(elapsed "$t0")"
}

# --- ports -----------------------------------------------------------------------------
# free_ports N: N distinct free TCP ports on 127.0.0.1 (held open together while
# chosen, so they differ; the usual small race until the server binds remains).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
# port_free PORT: nothing listens on / holds 127.0.0.1:PORT.
port_free() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}
