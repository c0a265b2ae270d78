"""bench/cluster.sh's printouts: the cluster's members, and the results table with each node's CPU.

    python3 -m bench.cluster_table status CLUSTER_STATUS_JSON    # `rabbitmqctl cluster_status --formatter json`
    python3 -m bench.cluster_table results DIR HZ NODES          # DIR/cpu.txt and DIR/runs/<case>/summary.json

Each line of cpu.txt is `<case> <t0> <t1> | <ticks per node before> | <ticks per node after>` (utime + stime
of each node's beam.smp, in clock ticks of HZ per second).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.summary import SummaryError, read_summary

NODE_NAMES = ["tb-a", "tb-b", "tb-c"]


def status(path: Path) -> None:
    s = json.loads(path.read_text())
    print("  running nodes:", ", ".join(sorted(s["running_nodes"])))
    print("  disk nodes:   ", ", ".join(sorted(s["disk_nodes"])))


def results(d: Path, hz: int, nodes: int) -> None:
    names = NODE_NAMES[:nodes]
    print(f"  {'case':18} {'publishes/s':>11} {'p50 us':>8} {'p99 us':>8} {'errors':>6} {'delivered':>9}   "
          + "  ".join(f"{n:>5}" for n in names) + "   broker CPU us/publish")
    for line in (d / "cpu.txt").read_text().splitlines():
        head, before, after = line.split("|")
        case_name, t0, t1 = head.split()
        wall = float(t1) - float(t0)
        c0, c1 = [int(x) for x in before.split()], [int(x) for x in after.split()]
        per_node = [100 * (b - a) / hz / wall for a, b in zip(c0, c1)]
        try:
            c = read_summary(d / "runs" / case_name / "summary.json").only()
        except (OSError, SummaryError) as e:
            print(f"  {case_name:18} no summary ({e})")
            continue
        total_cpu_us = sum(b - a for a, b in zip(c0, c1)) / hz * 1e6
        # The CPU window holds the warm-up too.
        print(f"  {case_name:18} {c.throughput_per_s:>11,.0f} {c.latency_ns.p50_us:>8.1f} {c.latency_ns.p99_us:>8.1f} "
              f"{c.error_count:>6} {c.delivered!s:>9}   " + "  ".join(f"{p:>4.0f}%" for p in per_node)
              + f"   {total_cpu_us / max(c.publishes_with_warmup, 1):>8.1f}  (over {wall:.1f} s, incl. connect, "
              "warmup, purge)")


def main(argv: list[str]) -> None:
    if argv[:1] == ["status"]:
        status(Path(argv[1]))
    elif argv[:1] == ["results"]:
        results(Path(argv[1]), int(argv[2]), int(argv[3]))
    else:
        sys.exit("usage: python3 -m bench.cluster_table status FILE | results DIR HZ NODES")


if __name__ == "__main__":
    main(sys.argv[1:])
