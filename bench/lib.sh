# shellcheck shell=bash
# What every bench/*.sh shares, sourced first thing (`source "$(dirname "$0")/lib.sh"`): strict mode, the
# repository root as working directory (so `python3 -m bench.summary` and scenarios/ resolve), the
# taskbench binary to measure, and the smoke mode of tests/bench_smoke.rs.
#
#   TASKBENCH_BIN=PATH   measure this binary instead of building one (`cargo build --release`, once per
#                        script, a no-op when the build is up to date)
#   BENCH_SMOKE=1        tiny counts and one round: checks that the script runs end to end and prints its
#                        result lines (tests/bench_smoke.rs); the figures mean nothing
set -euo pipefail
# A relative path in these is the caller's, from before the cd below (symlinks kept: a venv's python is one).
for var in TASKBENCH_BIN TASKBENCH_PYTHON; do
  if [[ "${!var:-}" == */* ]]; then
    export "$var=$(realpath -sm "${!var}")"
  fi
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The taskbench to measure, as an absolute path: $TASKBENCH_BIN, else this checkout's release build (built
# here; the target folder is Cargo's, so CARGO_TARGET_DIR is honoured).
bench_taskbench() {
  local bin
  if [ -n "${TASKBENCH_BIN:-}" ]; then
    bin=$(command -v "$TASKBENCH_BIN" || true)
  else
    cargo build --release --quiet
    bin=$(cargo metadata --format-version 1 --no-deps |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/taskbench
  fi
  if [ ! -x "$bin" ]; then
    echo "$0: no taskbench binary at ${bin:-$TASKBENCH_BIN}" >&2
    return 2
  fi
  echo "$bin"
}

# Smoke mode: `bench_smoke` is true, and the counts scripts choose with `bench_count FULL SMOKE` are tiny.
bench_smoke() { [ "${BENCH_SMOKE:-}" = 1 ]; }
bench_count() { if bench_smoke; then echo "$2"; else echo "$1"; fi; }

# Arguments to add to `taskbench run` of a scenario whose counts the script does not set itself: in smoke
# mode a few publishes and a short warm-up, otherwise none (the scenario's).
# shellcheck disable=SC2034  # used by the scripts that source this file
if bench_smoke; then smoke_run_args=(--publishes 200 --warmup 10); else smoke_run_args=(); fi
