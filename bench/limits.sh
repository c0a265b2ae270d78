#!/usr/bin/env bash
# Benchmark: how close taskbench comes to the physical limit, every ratio of issue 18 from one run, each
# measured against its peer in the same run:
#   1. the raw unix path against a bare C write loop of the same frames (bench/floor-raw.sh; goal >= 0.85);
#   2. raw unix and Redis `pooled` against their floors, interleaved (bench/floor.sh; Redis p50 goal <= 1.2);
#   3. the Python clients' busy share in a closed loop: throughput x mean latency (goal >= 0.95);
#   4. AMQP `pooled` with confirms off: taskbench's CPU per publish against RabbitMQ's (beam.smp) for the
#      same publishes (goal: clearly less).
# Each part prints its own lines; the last block lists the medians and figures beside their goals. Parts 2-4
# need Redis and RabbitMQ on their default local ports; part 3 the Celery venv (TASKBENCH_PYTHON, default
# target/celery-venv/bin/python, which tests/run makes). A part that cannot run says why and is skipped.
# Usage: bench/limits.sh [ROUNDS]   (default 5)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
rounds=${1:-$(bench_count 5 1)}
TASKBENCH_BIN=$(bench_taskbench)
export TASKBENCH_BIN
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
results=()

echo "== taskbench against the physical limit: $rounds rounds; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

echo "-- 1. raw unix against a bare C write loop"
bench/floor-raw.sh "$rounds" | tee "$out/raw"
results+=("raw unix / bare C write loop, throughput: $(grep '^== median' "$out/raw" | sed 's/^== median taskbench\/bare over [0-9]* rounds: //') (goal >= 0.85)")

echo "-- 2. each path against its floor"
bench/floor.sh "$rounds" unix-raw redis-pooled | tee "$out/floor"
for c in unix-raw redis-pooled; do
  line=$(grep "median of .*: $c:" "$out/floor" | sed "s/.*: $c: //" || true)
  results+=("$c / its floor: ${line:-not measured}")
done

echo "-- 3. Python clients' busy share, one publisher, closed loop"
python=${TASKBENCH_PYTHON:-$PWD/target/celery-venv/bin/python}
if [ -x "$python" ] && "$python" -c 'import celery' 2>/dev/null; then
  export TASKBENCH_PYTHON=$python
  for case in redis-celery-acquire redis-kombu-pooled amqp-celery-acquire amqp-kombu-pooled; do
    "$TASKBENCH_BIN" run scenarios/celery-vs-taskbench.toml --case "$case" --publishes "$(bench_count 3000 50)" \
      --out "$out/py-$case" --format json >"$out/py-$case.json" || true
    share=$(python3 - "$out/py-$case.json" <<'PY'
import sys

from bench.summary import read_summary

c = read_summary(sys.argv[1]).only()
print(f"{c.busy_share:.3f} ({c.throughput_per_s:,.0f}/s, errors {c.error_count}, delivered {c.delivered})")
PY
)
    echo "  $case: busy share $share"
    results+=("$case busy share: $share (goal >= 0.95)")
  done
else
  echo "  skipped: no Celery venv at $python (run tests/run once, or set TASKBENCH_PYTHON)"
  results+=("Python busy share: not measured (no Celery venv)")
fi

echo "-- 4. AMQP pooled, confirms off: taskbench's CPU per publish against RabbitMQ's"
beam=$(rabbitmqctl status 2>/dev/null | grep -i "OS PID" | grep -o "[0-9]*" | head -1 || true)
if [ ! -x /usr/bin/time ]; then
  echo "  skipped: no /usr/bin/time to read taskbench's CPU with"
  results+=("AMQP CPU: not measured (no /usr/bin/time)")
elif [ -n "$beam" ] && [ -r "/proc/$beam/stat" ]; then
  publishes=$(bench_count 100000 500)
  cat >"$out/amqp.toml" <<TOML
name = "limits-amqp-cpu"
publishes = $publishes
warmup = 1000
[[case]]
name = "amqp-pooled-confirm-off"
backend = "amqp"
path = "pooled"
confirm = "off"
queue = "taskbench-limits-cpu"
TOML
  ticks=$(getconf CLK_TCK)
  for r in $(seq "$rounds"); do
    before=$(awk '{print $14 + $15}' "/proc/$beam/stat")
    # Both CPU figures cover the same window: the whole taskbench process, start-up and the delivered check
    # included.
    /usr/bin/time -f '%U %S' -o "$out/amqp.$r.time" \
      "$TASKBENCH_BIN" run "$out/amqp.toml" --out "$out/amqp.$r" --format json >"$out/amqp.$r.json" || true
    after=$(awk '{print $14 + $15}' "/proc/$beam/stat")
    python3 - "$out/amqp.$r.json" "$out/amqp.$r.time" "$r" "$before" "$after" "$ticks" "$out/amqp-ratios" <<'PY'
import sys

from bench.summary import read_summary

c = read_summary(sys.argv[1]).only()
user, system = (float(x) for x in open(sys.argv[2]).read().split()[-2:])
round_, before, after, ticks = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
n = c.publishes_with_warmup
ours = (user + system) * 1e6 / n
broker = (after - before) / ticks * 1e6 / n
line = (f"  round {round_}: {c.throughput_per_s:,.0f}/s, errors {c.error_count}, delivered {c.delivered}:"
        f" taskbench {ours:.1f} µs CPU/publish, RabbitMQ {broker:.1f} µs CPU/publish")
if broker > 0:
    print(f"{line}, taskbench/RabbitMQ {ours / broker:.2f}")
    with open(sys.argv[7], "a") as f:
        f.write(f"{ours / broker}\n")
else:
    print(f"{line}: the broker's CPU did not move, no ratio")
PY
  done
  rabbitmqctl purge_queue taskbench-limits-cpu >/dev/null 2>&1 || true
  results+=("AMQP pooled taskbench CPU / RabbitMQ CPU: $(python3 -c '
import os, statistics, sys
r = [float(x) for x in open(sys.argv[1])] if os.path.exists(sys.argv[1]) else []
print(f"{statistics.median(r):.2f} (min {min(r):.2f}, max {max(r):.2f})" if r else "not measured")' \
    "$out/amqp-ratios") (goal: clearly below 1)")
else
  echo "  skipped: no RabbitMQ on this machine to read the CPU of (rabbitmqctl status)"
  results+=("AMQP CPU: not measured (no local RabbitMQ)")
fi

echo "== summary, medians over $rounds rounds where there are rounds; load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
printf '  %s\n' "${results[@]}"
