"""bench/pywall.sh's table: per round, mode and case, publishes/s, p50, the exact share of the run spent in
publishes, and the pywall view's shares; then the medians per case and mode.

    python3 -m bench.pywall_table OUT ROUNDS    # reads OUT/<mode><round>/summary.json and <case>.pywall.folded
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from bench.summary import read_summary

MODES = ("none", "cpu", "both")


def pywall_shares(folded: Path) -> dict[str, float] | None:
    """The pywall view's split of the samples: publish, (unreadable), (harness); None without a profile."""
    try:
        lines = folded.read_text().splitlines()
    except FileNotFoundError:
        return None
    roots: dict[str, int] = {}
    for line in lines:
        stack, n = line.rsplit(" ", 1)
        root = stack.split(";")[0]
        key = root if root in ("(harness)", "(unreadable)") else "publish"
        roots[key] = roots.get(key, 0) + int(n)
    total = sum(roots.values())
    return {k: v / total for k, v in roots.items()} if total else None


def main(out: Path, rounds: int) -> None:
    medians: dict[tuple[str, str], list[tuple[float, float]]] = {}
    print(f"{'round':>5} {'mode':<5} {'case':<22} {'publishes/s':>11} {'p50':>8} {'in publish':>10}"
          "  pywall view: publish / (unreadable) / (harness)")
    for r in range(1, rounds + 1):
        for mode in MODES:
            for c in read_summary(out / f"{mode}{r}" / "summary.json").cases:
                line = (f"{r:>5} {mode:<5} {c.name:<22} {c.throughput_per_s:>11,.0f} "
                        f"{c.latency_ns.p50_us:>6,.0f}us {c.busy_share:>10.0%}")
                s = pywall_shares(out / f"{mode}{r}" / f"{c.name}.pywall.folded")
                if s:
                    line += "  " + " / ".join(f"{s.get(k, 0):.0%}" for k in ("publish", "(unreadable)", "(harness)"))
                if c.errors:
                    line += f"  errors {c.errors}"
                print(line)
                medians.setdefault((c.name, mode), []).append((c.throughput_per_s, c.latency_ns.p50_us))
    print("medians:")
    for (case, mode), v in sorted(medians.items()):
        print(f"  {case:<22} {mode:<5} {statistics.median(x[0] for x in v):>8,.0f}/s  "
              f"p50 {statistics.median(x[1] for x in v):,.0f}us")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
