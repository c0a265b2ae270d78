#!/usr/bin/env bash
# Benchmark: what profiling costs, on the raw unix path and on Redis `pooled` (when Redis answers at
# $TASKBENCH_REDIS_URL or 127.0.0.1:6379). Publishes/s with stage timing off, with stage timing (the wall
# view), and under `--profile cpu` with the default sampling (1 in 100 on these paths) and with every
# publish traced. Usage: bench/profile.sh [ROUNDS] [PUBLISHES]   (PUBLISHES for the raw path; Redis does
# 100,000, set in scenarios/bench-profile-redis.toml)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
rounds=${1:-$(bench_count 3 1)}
publishes=${2:-$(bench_count 500000 2000)}
raw_args=(scenarios/bench-raw.toml --publishes "$publishes")
if bench_smoke; then raw_args+=(--warmup 10); fi
redis_args=(scenarios/bench-profile-redis.toml "${smoke_run_args[@]}")
tb=$(bench_taskbench)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# run LABEL NAME ARGS...: one `taskbench run` and a line per case.
run() {
  local label=$1 name=$2
  shift 2
  "$tb" run "$@" --out "$out/$name" --format json >"$out/$name.json"
  python3 -m bench.summary "$out/$name.json" --set label="$label" \
    '  {label:<14} {name:<22} {throughput_per_s:>10,.0f}/s  p50 {latency_ns.p50:>5}ns  errors {error_count}'
}
redis_up=false
if redis-cli -u "${TASKBENCH_REDIS_URL:-redis://127.0.0.1:6379/0}" PING >/dev/null 2>&1; then redis_up=true; fi
for r in $(seq "$rounds"); do
  echo "== round $r"
  run "no profile" "plain$r" "${raw_args[@]}"
  run "--profile cpu" "cpu$r" "${raw_args[@]}" --profile cpu
  if $redis_up; then
    run "no profile" "rplain$r" "${redis_args[@]}"
    run "--profile cpu" "rcpu$r" "${redis_args[@]}" --profile cpu
  fi
done
$redis_up || echo "(Redis not reachable: the redis pooled rows were skipped)"
