#!/usr/bin/env bash
# Benchmark: every case of scenarios/bench-floor.toml as a ratio to its backend's floor, measured by the same
# `taskbench run` right before the case (floor, case, floor, case, ...): raw unix against a bare write loop
# of the same frame, Redis pooled against a blocking socket doing one LPUSH and reading the reply, RabbitMQ
# pooled against a blocking socket doing one basic.publish (and reading its confirm with confirm = "each"), one
# publisher each. Each round prints every case's p50 and throughput, its floor's and the ratios; the last
# lines are the medians over the rounds. TOKIO_WORKER_THREADS (or any taskbench setting) passes through.
# Usage: bench/floor.sh [ROUNDS] [CASE...]   (default 5 rounds, every case)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
rounds=${1:-$(bench_count 5 1)}
shift || true
tb=$(bench_taskbench)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
case_args=()
for c in "$@"; do case_args+=(--case "$c"); done
if bench_smoke; then case_args+=(--case unix-raw); fi

echo "== each case against its floor, measured right before it: $rounds rounds; $(nproc) cores," \
  "load $(cut -d' ' -f1-3 /proc/loadavg), TOKIO_WORKER_THREADS=${TOKIO_WORKER_THREADS:-unset}"
for r in $(seq "$rounds"); do
  # Exit 1 (a failed case) still has a summary to print; the python below refuses a case with errors.
  "$tb" run scenarios/bench-floor.toml "${case_args[@]}" "${smoke_run_args[@]}" --out "$out/run.$r" \
    --format json >"$out/run.$r.json" || [ $? = 1 ]
done
python3 - "$out" "$rounds" <<'PY'
import statistics
import sys

from bench.summary import read_summary

out, rounds = sys.argv[1], int(sys.argv[2])
ratios = {}
for r in range(1, rounds + 1):
    for c in read_summary(f"{out}/run.{r}.json").cases:
        f = c.floor
        if f is None or f.unavailable:
            why = f.unavailable if f else "no floor in summary.json"
            print(f"  round {r}: {c.name}: {c.throughput_per_s:,.0f}/s p50 {c.latency_ns.p50_us:.2f} µs"
                  f" (errors {c.error_count}); no floor: {why}")
            continue
        print(f"  round {r}: {c.name}: {c.throughput_per_s:,.0f}/s p50 {c.latency_ns.p50_us:.2f} µs"
              f" (errors {c.error_count})   floor {f.throughput_per_s:,.0f}/s p50 {f.p50_us:.2f} µs"
              f"   p50/floor {f.p50_ratio:.2f}  throughput/floor {f.throughput_ratio:.2f}")
        ratios.setdefault(c.name, []).append((f.p50_ratio, f.throughput_ratio))
for name, rs in ratios.items():
    print(f"  median of {len(rs)}: {name}: p50/floor {statistics.median(p for p, _ in rs):.2f}"
          f"  throughput/floor {statistics.median(t for _, t in rs):.2f}")
PY
echo "== load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
