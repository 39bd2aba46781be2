"""Percentiles and the per-second timeline shared by the latency scripts."""
import sys


def pick(values, q):
    """The q-quantile of sorted `values` (nearest rank)."""
    return values[min(len(values) - 1, int(q * len(values)))]


def summary(values):
    """p50/p90/p99/max of `values` (sorted in place), as the scripts print them."""
    values.sort()
    return (f"p50_ms={pick(values, 0.50):.1f} p90_ms={pick(values, 0.90):.1f} "
            f"p99_ms={pick(values, 0.99):.1f} max_ms={values[-1]:.1f}")


def print_timeline(label, timeline):
    """One stderr line per second of `timeline` ({second: [latencies]}): a periodic
    stall shows as a pattern, a scattered tail as noise."""
    for second in sorted(timeline):
        values = timeline[second]
        print(f"  {label} second {second}: records={len(values)} {summary(values)}", file=sys.stderr)
