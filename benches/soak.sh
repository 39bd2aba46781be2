#!/usr/bin/env bash
# The faulted soak: MINUTES (default 30) of about RATE row changes a second (default 5000)
# over five tables, captured by two connectors at once (exactly_once and transactional),
# while a fault strikes every 20-60 s at seeded moments (kill -9 of a walcast, PostgreSQL
# restarted, the broker or the schema registry stopped for a while, every PostgreSQL
# connection cut at a proxy). At the end each connector's topics must equal a
# test_decoding oracle per table and key (none lost, none repeated, order kept); it prints
# peak RSS over time and how soon after the last fault the slots caught up. See
# benches/soak.py. A benchmark, not a CI test: it needs its own quiet machine for MINUTES.
#
# Usage: benches/soak.sh [MINUTES]     Environment: RATE (5000), SEED (1)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
minutes=${1:-30}
cd "$repo"
cargo build --release --quiet --bin walcast
state=$(mktemp -d /tmp/walcast-soak-XXXXXX)
cleanup() { "$repo/deploy/local/down" --state-dir "$state" --purge >/dev/null 2>&1 || true; }
trap cleanup EXIT
"$repo/deploy/local/up" --services postgres,kafka --state-dir "$state" --watch-pid $$ >/dev/null
python3 "$repo/benches/soak.py" --state "$state" --repo "$repo" --bin "$repo/target/release/walcast" \
    --minutes "$minutes" --rate "${RATE:-5000}" --seed "${SEED:-1}"
