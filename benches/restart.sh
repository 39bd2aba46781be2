#!/usr/bin/env bash
# Restart time in each exactly-once delivery mode: from `walcast run` until a change
# committed to each of TOPICS tables while walcast was down is visible to a
# read_committed consumer (connecting, reconciling every topic, producing), RUNS times
# per mode, and the ERROR lines each restart logged. See benches/restart.py.
#
# Usage: benches/restart.sh [TOPICS] [RUNS] [MODES]   (defaults: 10 5 exactly_once,transactional)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
. "$repo/benches/lib.sh"
bench_build
bench_stack restart
bench_registry
WALCAST_BIN=$bin WALCAST_STATE_DIR=$state REGISTRY_URL="http://127.0.0.1:$registry_port" \
    python3 "$repo/benches/restart.py" "${1:-10}" "${2:-5}" "${3:-exactly_once,transactional}"
