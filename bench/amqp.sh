#!/usr/bin/env bash
# The AMQP benchmark (docs/amqp.md): in one run, on the same broker,
#   1. taskbench scenarios/celery-amqp.toml: pooled (confirm off, batch, each), acquire and fresh, one publisher;
#   2. the peers, as taskbench cases of scenarios/celery-vs-taskbench.toml (real Celery and kombu in the
#      tests/run venv): Celery apply_async as shipped (what delay() does), Celery with one producer passed in,
#      kombu with the producer kept open, kombu with a connection per publish;
#   3. the broker's ceiling: taskbench pooled, confirms off, with more publishers and connections, and the
#      broker's CPU use while it absorbs them;
# and prints taskbench / kombu ratios. Figures drift from machine to machine: compare ratios of one run.
#
# Usage: bench/amqp.sh            (TASKBENCH_AMQP_URL for another broker; TASKBENCH_PYTHON for another
#                                  interpreter with Celery, default target/celery-venv/bin/python)
# Needs: a RabbitMQ on the URL, rabbitmqctl (to delete the ceiling queue), target/celery-venv (tests/run
# creates it).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

peer_url=${TASKBENCH_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672//}
peer_py=${TASKBENCH_PYTHON:-target/celery-venv/bin/python}
peer_cases=(amqp-celery-acquire amqp-celery-pooled amqp-kombu-pooled amqp-kombu-fresh)
out=$(mktemp -d "${TMPDIR:-/tmp}/taskbench-amqp-bench.XXXXXX")

tb=$(bench_taskbench)

echo "== taskbench: scenarios/celery-amqp.toml"
"$tb" run scenarios/celery-amqp.toml "${smoke_run_args[@]}" --out "$out/paths" || true

echo "== peers: scenarios/celery-vs-taskbench.toml, cases ${peer_cases[*]}"
if [ -x "$peer_py" ]; then
  # The scenario's own queue; each case purges it after itself.
  case_args=()
  for c in "${peer_cases[@]}"; do case_args+=(--case "$c"); done
  TASKBENCH_PYTHON="$peer_py" "$tb" run scenarios/celery-vs-taskbench.toml \
    "${case_args[@]}" "${smoke_run_args[@]}" --out "$out/peers" || true
else
  echo "no $peer_py: run tests/run once to create the Celery venv (or set TASKBENCH_PYTHON); peers skipped"
fi

echo "== broker ceiling: pooled, confirm off, more publishers"
cat > "$out/ceiling.toml" <<'EOF'
name = "amqp-ceiling"
publishes = 40000
warmup = 2000
[task]
queue = "taskbench-ceiling"
[[case]]
name = "pooled-x4-1conn"
backend = "amqp"
path = "pooled"
concurrency = 4
[[case]]
name = "pooled-x4-4conn"
backend = "amqp"
path = "pooled"
concurrency = 4
connections = 4
[[case]]
name = "pooled-x8-4conn"
backend = "amqp"
path = "pooled"
concurrency = 8
connections = 4
[[case]]
name = "pooled-x4-4conn-b64"
backend = "amqp"
path = "pooled"
concurrency = 4
connections = 4
batch = 64
EOF
beam=$(pgrep -o -x beam.smp || true)
cpu_ticks() { [ -n "$beam" ] && awk '{print $14 + $15}' "/proc/$beam/stat" || echo 0; }
t0=$(date +%s.%N); c0=$(cpu_ticks)
"$tb" run "$out/ceiling.toml" "${smoke_run_args[@]}" --out "$out/ceiling" || true
t1=$(date +%s.%N); c1=$(cpu_ticks)
if [ -n "$beam" ]; then
  awk -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v t0="$t0" -v t1="$t1" -v n="$(nproc)" 'BEGIN {
    printf "broker (beam.smp) CPU during the ceiling run: %.0f%% of one core (the machine has %d)\n",
      100 * c / hz / (t1 - t0), n }'
fi

rabbitmqctl -q delete_queue taskbench-ceiling >/dev/null 2>&1 || true
if [ -x "$peer_py" ]; then  # rabbitmqctl cannot delete an exchange; kombu can
  "$peer_py" -c 'import sys; from kombu import Connection; c = Connection(sys.argv[1]); c.channel().exchange_delete("taskbench-ceiling"); c.release()' "$peer_url" || true
fi

echo "== ratios"
python3 -m bench.amqp_ratios "$out"
