"""PostgreSQL's own delivery latency, the floor under walcast's: reads
`pg_recvlogical` output (test_decoding with include-timestamp) on stdin and prints
p50/p90/p99 from each transaction's commit timestamp to the moment its COMMIT line
arrives here, after a warm-up.

Usage: pg_recvlogical ... -o include-timestamp=1 -f - | python3 latency_baseline.py WARMUP_S
"""
import datetime
import re
import sys
import time

warmup = float(sys.argv[1])
commit = re.compile(r"^COMMIT \d+ \(at (.+)\)$")
started = time.time()
latencies = []
for line in sys.stdin:
    arrived = time.time()
    match = commit.match(line.strip())
    if not match or arrived - started < warmup:
        continue
    # e.g. 2026-11-25 19:13:09.123456+00
    stamp = match.group(1)
    if re.search(r"[+-]\d\d$", stamp):
        stamp += "00"
    committed = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f%z").timestamp()
    latencies.append((arrived - committed) * 1000.0)
latencies.sort()
if not latencies:
    print("pg_recvlogical baseline: no transactions seen")
    sys.exit(1)


def pct(p):
    return latencies[min(len(latencies) - 1, int(len(latencies) * p))]


print(
    f"pg_recvlogical commit-to-arrival: transactions={len(latencies)} "
    f"p50_ms={pct(0.50):.1f} p90_ms={pct(0.90):.1f} p99_ms={pct(0.99):.1f} max_ms={latencies[-1]:.1f}"
)
