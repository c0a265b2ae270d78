#!/usr/bin/env bash
# Benchmark: what profiling costs on the raw unix path. Publishes/s with stage timing off, with stage timing
# (the wall view), and under `--profile cpu` with the default sampling (1 in 100 on raw) and with every
# publish traced. Usage: bench/profile.sh [ROUNDS] [PUBLISHES]
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
for r in $(seq "$rounds"); do
  echo "== round $r ($publishes publishes per case)"
  $bin run scenarios/bench-raw.toml --publishes "$publishes" --out "$out/plain$r" --format json >"$out/plain$r.json"
  show "$out/plain$r.json" "no profile"
  $bin run scenarios/bench-raw.toml --publishes "$publishes" --profile cpu --out "$out/cpu$r" --format json >"$out/cpu$r.json"
  show "$out/cpu$r.json" "--profile cpu"
done
