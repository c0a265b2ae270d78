"""bench/amqp.sh's closing table: every case's throughput and p50, then taskbench / kombu / Celery ratios.

    python3 -m bench.amqp_ratios OUT    # reads OUT/paths, OUT/ceiling and (if the peers ran) OUT/peers
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.summary import Case, read_summary


def cases(run_folder: Path) -> dict[str, Case]:
    """The run's cases by name; none when the run did not happen (the peers without a Celery venv)."""
    summary = run_folder / "summary.json"
    return read_summary(summary).by_name() if summary.exists() else {}


def row(case: Case) -> None:
    errors = f"errors {case.errors}" if case.errors else ""
    print(f"  {case.name:28} {case.throughput_per_s:>10,.0f}/s   p50 {case.latency_ns.p50_us:>8.1f} us  {errors}")


def ratio(a: Case | None, b: Case | None, what: str) -> None:
    if a and b and b.throughput_per_s:
        print(f"  {what:60} {a.throughput_per_s / b.throughput_per_s:6.1f}x")


def main(out: Path) -> None:
    tb, peers, ceiling = cases(out / "paths"), cases(out / "peers"), cases(out / "ceiling")
    for title, run in (
        ("taskbench (one publisher):", tb),
        ("peers (real Celery and kombu, one Python process each):", peers),
        ("ceiling (confirms off unless named):", ceiling),
    ):
        print(title)
        for case in run.values():
            row(case)
    kept, send, fresh = peers.get("amqp-kombu-pooled"), peers.get("amqp-celery-acquire"), peers.get("amqp-kombu-fresh")
    print("ratios:")
    ratio(tb.get("pooled-off"), kept, "taskbench pooled confirm=off / kombu producer kept open")
    ratio(tb.get("pooled-off-pipelined"), kept, "taskbench pooled confirm=off batch=64 / kombu producer kept open")
    ratio(tb.get("pooled-off"), send, "taskbench pooled confirm=off / Celery apply_async as shipped (delay())")
    ratio(tb.get("pooled-batch"), kept, "taskbench pooled confirm=batch / kombu producer kept open (no confirms)")
    ratio(tb.get("acquire-off"), send, "taskbench acquire / Celery apply_async as shipped (both check out per publish)")
    ratio(tb.get("fresh-off"), fresh, "taskbench fresh / kombu connection per publish")
    best = max(ceiling.values(), key=lambda c: c.throughput_per_s, default=None)
    top = max((c for n, c in tb.items() if n.startswith("pooled-off")), key=lambda c: c.throughput_per_s, default=None)
    if top and best:
        ratio(top, best, f"best one-publisher case ({top.name}) / broker ceiling ({best.name})")
    print(f"run folder: {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
