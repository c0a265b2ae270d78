#!/usr/bin/env bash
# Benchmark: publishes/s of the `raw` path over a Unix socket with the embedded sink (81-byte-body
# tasks.add(2, 2), one publisher), stage timing on vs off, and peak memory for 10x more publishes (it must
# stay flat). CPU time per publish (user+sys of the whole process, sink included) is printed too: on a
# busy machine it is steadier than wall-clock throughput.
# Usage: bench/raw.sh [ROUNDS]   (default 3 rounds; the two cases alternate within each round)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
rounds=${1:-$(bench_count 3 1)}
publishes=$(bench_count 2000000 2000)
warmup=$(bench_count 20000 100)
tb=$(bench_taskbench)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== raw unix path, $publishes publishes per case, $rounds rounds"
for r in $(seq "$rounds"); do
  for case in unix-raw-stages-on unix-raw-stages-off; do
    /usr/bin/time -f "%U %S" -o "$out/$case.$r.cpu" \
      "$tb" run scenarios/bench-raw.toml --case "$case" --publishes "$publishes" --warmup "$warmup" \
      --out "$out/$case.$r" --format json >"$out/$case.$r.json"
    python3 - "$out/$case.$r.json" "$out/$case.$r.cpu" <<'PY'
import sys

from bench.summary import read_summary

c = read_summary(sys.argv[1]).only()
user, sys_ = map(float, open(sys.argv[2]).read().split()[-2:])
cpu_ns = (user + sys_) * 1e9 / c.publishes_with_warmup
print(f"  {c.name:<20} {c.throughput_per_s:>10,.0f}/s  p50 {c.latency_ns.p50:>5}ns  p99 {c.latency_ns.p99:>6}ns"
      f"  cpu {cpu_ns:,.0f}ns/publish  errors {c.error_count}  delivered {c.delivered}")
PY
  done
done

echo "== peak memory (max RSS) against publish count, stage timing on"
for n in $(bench_count "200000 2000000" "200 2000"); do
  /usr/bin/time -f "  $n publishes: max RSS %M KiB, %e s" "$tb" run scenarios/bench-raw.toml --case unix-raw-stages-on \
    --publishes "$n" --warmup "$warmup" --out "$out/mem$n" --format json >/dev/null
done
