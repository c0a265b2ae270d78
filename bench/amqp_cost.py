"""bench/amqp-cost.sh's arithmetic: one measured run, and the per-publish figures from runs at two sizes.

Each figure is measured at N and at N/10 publishes and the difference divided by the difference in
publishes, so the fixed cost (start-up, connect, declare, the delivery count) drops out.

    python3 -m bench.amqp_cost cpu-run TASKBENCH SCENARIO RUN    # prints "user_s sys_s per_s p50_ns max_ns"
    python3 -m bench.amqp_cost perf OUT N SMALL WARMUP           # perf-N.txt / perf-N.json in OUT
    python3 -m bench.amqp_cost strace OUT N SMALL WARMUP         # strace-N.txt / strace-N.json in OUT
    python3 -m bench.amqp_cost cpu CPU_TXT N SMALL WARMUP        # lines "size user_s sys_s per_s"
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.summary import parse_summary, read_summary


def cpu_run(taskbench: str, scenario: str, run_folder: str) -> None:
    """Runs taskbench and prints its rusage (wait4: every thread counts) with the case's figures."""
    run = [taskbench, "run", scenario, "--out", run_folder, "--format", "json"]
    p = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdout is not None
    text = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit(f"taskbench exited with wait status {status}")
    case = parse_summary(text.decode()).only()
    if case.errors:
        sys.exit(f"the case had errors: {case.errors}")
    print(usage.ru_utime, usage.ru_stime, case.throughput_per_s, case.latency_ns.p50, case.latency_ns.max)


def perf_counts(path: Path) -> dict[str, int]:
    """`perf stat -x,` output: event -> count, raw_syscalls:sys_enter as "all"."""
    counts = {}
    for line in path.read_text().splitlines():
        fields = line.strip().split(",")
        if len(fields) > 2 and fields[0].isdigit():
            name = fields[2].replace("raw_syscalls:sys_enter", "all").replace("syscalls:sys_enter_", "")
            counts[name] = int(fields[0])
    return counts


def strace_counts(path: Path) -> dict[str, int]:
    """`strace -c` output: syscall -> calls."""
    counts = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3])
    return counts


def perf(out: Path, n: int, small: int, warmup: int) -> None:
    big, sm = perf_counts(out / f"perf-{n}.txt"), perf_counts(out / f"perf-{small}.txt")
    for size, counts in ((n, big), (small, sm)):
        case = read_summary(out / f"perf-{size}.json").only()
        print(f"  {size:7d} publishes: {case.throughput_per_s:,.0f}/s, errors {case.errors or 0}, "
              f"{counts['all']:,} syscalls")
    print(f"  per publish (difference / {n - small:,} publishes): " + "  ".join(
        f"{k} {(big[k] - sm.get(k, 0)) / (n - small):.2f}" for k in big if k != "all"))
    print(f"  SYSCALLS PER PUBLISH (perf): {(big['all'] - sm['all']) / (n - small):.2f}"
          f"  (whole-run total / publishes: {big['all'] / (n + warmup):.2f})")


def strace(out: Path, n: int, small: int, warmup: int) -> None:
    big, sm = strace_counts(out / f"strace-{n}.txt"), strace_counts(out / f"strace-{small}.txt")
    for size, counts in ((n, big), (small, sm)):
        case = read_summary(out / f"strace-{size}.json").only()
        print(f"  {size:7d} publishes under strace: {case.throughput_per_s:,.0f}/s, errors {case.errors or 0}, "
              f"{sum(counts.values()):,} syscalls")
    print(f"  per publish (the difference between the two runs / {n - small:,} publishes), by syscall:")
    per = {k: (big.get(k, 0) - sm.get(k, 0)) / (n - small) for k in big.keys() | sm.keys()}
    for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
        if abs(v) >= 0.01:
            print(f"    {k:16} {v:6.2f}")
    print(f"  SYSCALLS PER PUBLISH (strace): {sum(per.values()):.2f}"
          f"  (whole-run total / publishes: {sum(big.values()) / (n + warmup):.2f})")


def cpu(cpu_txt: Path, n: int, small: int, warmup: int) -> None:
    rows = [line.split() for line in cpu_txt.read_text().splitlines()]

    def cpu_s(size: int) -> list[float]:
        return [float(r[1]) + float(r[2]) for r in rows if int(r[0]) == size]

    big, sm = statistics.median(cpu_s(n)), statistics.median(cpu_s(small))
    print(f"  CPU PER PUBLISH: {1e6 * (big - sm) / (n - small):.2f} µs  (medians: {big:.3f} s at {n}, "
          f"{sm:.3f} s at {small}; whole-run total / publishes: {1e6 * big / (n + warmup):.2f} µs)")


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "cpu-run":
        cpu_run(*args)
    elif command in ("perf", "strace", "cpu"):
        path, n, small, warmup = Path(args[0]), int(args[1]), int(args[2]), int(args[3])
        {"perf": perf, "strace": strace, "cpu": cpu}[command](path, n, small, warmup)
    else:
        sys.exit(f"unknown command {command!r}: cpu-run, perf, strace or cpu")


if __name__ == "__main__":
    main(sys.argv[1:])
