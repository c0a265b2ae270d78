#!/usr/bin/env bash
# Benchmark: what py-spy costs a celery case under `--profile cpu`, and how the pywall view's split of the
# run between the publish and the rest compares with the exact split (the harness times every publish).
# scenarios/bench-pywall.toml (Celery `acquire` on Redis and on RabbitMQ) in interleaved rounds of:
#   none  no profiling
#   cpu   --profile cpu with the CPU sampler only: the wall sampler is replaced by a stand-in that records
#         nothing (what --profile cpu did before the pywall view)
#   both  --profile cpu as shipped: the CPU sampler and the --nonblocking --idle wall sampler
# and prints, per round, mode and case: publishes/s, p50, the exact share of the run spent inside publishes,
# and the pywall view's shares (publish, (unreadable), (harness)); then the medians per mode and case.
# Usage: bench/pywall.sh [ROUNDS] [PUBLISHES]   (needs target/celery-venv with py-spy: tests/run makes it;
# both brokers, and py-spy allowed to attach: root or CAP_SYS_PTRACE)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
publishes=${2:-3000}
venv=$PWD/target/celery-venv
[ -x "$venv/bin/py-spy" ] || { echo "bench/pywall.sh: no $venv/bin/py-spy; run tests/run once" >&2; exit 2; }
cargo build --release --quiet
bin=target/release/taskbench
out=$(mktemp -d)
# The cases purge their RabbitMQ queue and delete their Redis lists; the queue and exchange themselves go
# at the end (rabbitmqctl cannot delete an exchange; kombu can).
cleanup() {
  "$venv/bin/python" -c 'import sys; from kombu import Connection
c = Connection(sys.argv[1]); ch = c.channel(); ch.queue_delete(sys.argv[2]); ch.exchange_delete(sys.argv[2]); c.release()' \
    "${TASKBENCH_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672//}" taskbench-bench-pywall ||
    echo "(could not delete the queue taskbench-bench-pywall: it was purged, delete it by hand)"
  rm -rf "$out"
}
trap cleanup EXIT
# The CPU-sampler-only stand-in: py-spy itself, except for the wall sampler (the one given --idle), which
# waits for taskbench's SIGINT and records nothing.
cat >"$out/cpu-only-py-spy" <<SH
#!/usr/bin/env bash
case " \$* " in
  *" --idle "*) trap 'exit 0' INT; while :; do sleep 0.2; done ;;
  *) exec "$venv/bin/py-spy" "\$@" ;;
esac
SH
chmod +x "$out/cpu-only-py-spy"
export TASKBENCH_PYTHON=$venv/bin/python
for r in $(seq "$rounds"); do
  for mode in none cpu both; do
    echo "== round $r, $mode: $(uptime)"
    args=(run scenarios/bench-pywall.toml --publishes "$publishes" --out "$out/$mode$r")
    case $mode in
      none) $bin "${args[@]}" >"$out/$mode$r.txt" 2>&1 || echo "  (exit status $?)" ;;
      cpu) TASKBENCH_PY_SPY=$out/cpu-only-py-spy $bin "${args[@]}" --profile cpu >"$out/$mode$r.txt" 2>&1 || echo "  (exit status $?)" ;;
      both) $bin "${args[@]}" --profile cpu >"$out/$mode$r.txt" 2>&1 || echo "  (exit status $?)" ;;
    esac
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def shares(path):
    roots = {}
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        stack, n = line.rsplit(" ", 1)
        root = stack.split(";")[0]
        key = root if root in ("(harness)", "(unreadable)") else "publish"
        roots[key] = roots.get(key, 0) + int(n)
    total = sum(roots.values())
    return {k: v / total for k, v in roots.items()}
medians = {}
print(f"{'round':>5} {'mode':<5} {'case':<22} {'publishes/s':>11} {'p50':>8} {'in publish':>10}  pywall view: publish / (unreadable) / (harness)")
for r in range(1, rounds + 1):
    for mode in ("none", "cpu", "both"):
        for c in json.load(open(f"{out}/{mode}{r}/summary.json"))["cases"]:
            busy = c["latency_total_ns"] / (c["elapsed_s"] * 1e9 * c["concurrency"])
            line = f"{r:>5} {mode:<5} {c['name']:<22} {c['throughput_per_s']:>11,.0f} {c['latency_ns']['p50'] / 1e3:>6,.0f}us {busy:>10.0%}"
            s = shares(f"{out}/{mode}{r}/{c['name']}.pywall.folded")
            if s:
                line += f"  {s.get('publish', 0):.0%} / {s.get('(unreadable)', 0):.0%} / {s.get('(harness)', 0):.0%}"
            errors = sum(c["errors"].values())
            if errors:
                line += f"  errors {c['errors']}"
            print(line)
            medians.setdefault((c["name"], mode), []).append((c["throughput_per_s"], c["latency_ns"]["p50"]))
print("medians:")
for (case, mode), v in sorted(medians.items()):
    print(f"  {case:<22} {mode:<5} {statistics.median(x[0] for x in v):>8,.0f}/s  p50 {statistics.median(x[1] for x in v) / 1e3:,.0f}us")
PY
