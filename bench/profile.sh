#!/usr/bin/env bash
# Benchmark: what profiling costs, on the raw unix path and on Redis `pooled` (when Redis answers at
# $TASKBENCH_REDIS_URL or 127.0.0.1:6379). Publishes/s with stage timing off, with stage timing (the wall
# view), and under `--profile cpu` with the default sampling (1 in 100 on these paths) and with every
# publish traced. Usage: bench/profile.sh [ROUNDS] [PUBLISHES]   (PUBLISHES for the raw path; Redis does
# 100,000, set in scenarios/bench-profile-redis.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
publishes=${2:-500000}
cargo build --release --quiet
bin=target/release/taskbench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
show() {
  python3 - "$1" "$2" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1]))["cases"]:
    print(f'  {sys.argv[2]:<14} {c["name"]:<22} {c["throughput_per_s"]:>10,.0f}/s  p50 {c["latency_ns"]["p50"]:>5}ns  errors {sum(c["errors"].values())}')
PY
}
redis_up=false
if redis-cli -u "${TASKBENCH_REDIS_URL:-redis://127.0.0.1:6379/0}" PING >/dev/null 2>&1; then redis_up=true; fi
for r in $(seq "$rounds"); do
  echo "== round $r"
  $bin run scenarios/bench-raw.toml --publishes "$publishes" --out "$out/plain$r" --format json >"$out/plain$r.json"
  show "$out/plain$r.json" "no profile"
  $bin run scenarios/bench-raw.toml --publishes "$publishes" --profile cpu --out "$out/cpu$r" --format json >"$out/cpu$r.json"
  show "$out/cpu$r.json" "--profile cpu"
  if $redis_up; then
    $bin run scenarios/bench-profile-redis.toml --out "$out/rplain$r" --format json >"$out/rplain$r.json"
    show "$out/rplain$r.json" "no profile"
    $bin run scenarios/bench-profile-redis.toml --profile cpu --out "$out/rcpu$r" --format json >"$out/rcpu$r.json"
    show "$out/rcpu$r.json" "--profile cpu"
  fi
done
$redis_up || echo "(Redis not reachable: the redis pooled rows were skipped)"
