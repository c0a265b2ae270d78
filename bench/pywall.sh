#!/usr/bin/env bash
# Benchmark: what py-spy costs a celery case under `--profile cpu`, and how the pywall view's split of the
# run between the publish and the rest compares with the exact split (the harness times every publish).
# scenarios/bench-pywall.toml (Celery `acquire` on Redis and on RabbitMQ) in interleaved rounds of:
#   none  no profiling
#   cpu   --profile cpu with the CPU sampler only: the wall sampler's turns go to a stand-in that records
#         nothing, so the CPU sampler samples its own turns, about half of the run
#   both  --profile cpu as shipped: the CPU sampler and the --idle wall sampler taking turns
# and prints, per round, mode and case: publishes/s, p50, the exact share of the run spent inside publishes,
# and the pywall view's shares (publish, (unreadable), (harness)); then the medians per mode and case.
# Usage: bench/pywall.sh [ROUNDS] [PUBLISHES]   (needs a Python with Celery and py-spy next to it:
# TASKBENCH_PYTHON, default target/celery-venv/bin/python, which tests/run makes; both brokers, and py-spy
# allowed to attach: root or CAP_SYS_PTRACE)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
rounds=${1:-$(bench_count 3 1)}
publishes=${2:-$(bench_count 3000 20)}
python=${TASKBENCH_PYTHON:-$PWD/target/celery-venv/bin/python}
py_spy=$(dirname "$python")/py-spy
[ -x "$py_spy" ] || { echo "bench/pywall.sh: no $py_spy; run tests/run once (or set TASKBENCH_PYTHON)" >&2; exit 2; }
tb=$(bench_taskbench)
out=$(mktemp -d)
# The cases purge their RabbitMQ queue and delete their Redis lists; the queue and exchange themselves go
# at the end (rabbitmqctl cannot delete an exchange; kombu can).
cleanup() {
  "$python" -c 'import sys; from kombu import Connection
c = Connection(sys.argv[1]); ch = c.channel(); ch.queue_delete(sys.argv[2]); ch.exchange_delete(sys.argv[2]); c.release()' \
    "${TASKBENCH_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672//}" taskbench-bench-pywall ||
    echo "(could not delete the queue taskbench-bench-pywall: it was purged, delete it by hand)"
  rm -rf "$out"
}
trap cleanup EXIT
# The CPU-sampler-only stand-in: py-spy itself, except for the wall sampler (the one given --idle), which
# says it samples (taskbench times a turn from that line) and waits for taskbench's SIGINT, recording nothing.
cat >"$out/cpu-only-py-spy" <<SH
#!/usr/bin/env bash
case " \$* " in
  *" --idle "*) trap 'exit 0' INT; echo "Sampling process: a stand-in, recording nothing"; while :; do sleep 0.2; done ;;
  *) exec "$py_spy" "\$@" ;;
esac
SH
chmod +x "$out/cpu-only-py-spy"
export TASKBENCH_PYTHON=$python
for r in $(seq "$rounds"); do
  for mode in none cpu both; do
    echo "== round $r, $mode: $(uptime)"
    args=(run scenarios/bench-pywall.toml --publishes "$publishes" --out "$out/$mode$r")
    if bench_smoke; then args+=(--warmup 5); fi
    case $mode in
      none) "$tb" "${args[@]}" >"$out/$mode$r.txt" 2>&1 || echo "  (exit status $?)" ;;
      cpu) TASKBENCH_PY_SPY=$out/cpu-only-py-spy "$tb" "${args[@]}" --profile cpu >"$out/$mode$r.txt" 2>&1 || echo "  (exit status $?)" ;;
      both) "$tb" "${args[@]}" --profile cpu >"$out/$mode$r.txt" 2>&1 || echo "  (exit status $?)" ;;
    esac
  done
done
python3 -m bench.pywall_table "$out" "$rounds"
