#!/usr/bin/env bash
# The AMQP client's own cost per publish (docs/amqp.md, "The client's cost per publish"): taskbench
# `pooled`, confirm off, one publisher, against the RabbitMQ at TASKBENCH_AMQP_URL (default
# guest@127.0.0.1:5672), and prints
#   - CPU µs per publish: the taskbench process's user+sys (getrusage of the child, so every thread counts,
#     lapin's I/O thread included), and
#   - syscalls per publish: `perf stat` on the syscall tracepoints (no slowdown; skipped where perf cannot
#     read them) and `strace -f -c` (names each syscall, but ptrace changes the timing), each its own run.
# Each figure is measured twice, at N and at N/10 publishes, and the difference is divided by the difference
# in publishes, so the fixed cost (start-up, connect, declare, the delivery count after the case) drops out:
# what remains is the marginal cost of one more publish. The totals per publish are printed too.
#
# Usage: bench/amqp-cost.sh            (COST_N=100000 publishes, COST_RUNS=3 CPU runs per size;
#                                       COST_EXTRA='batch = 64' adds case keys; TASKBENCH_BIN to use a
#                                       prebuilt binary; TOKIO_WORKER_THREADS is passed through)
# Needs: perf (optional), strace (installed with apt-get when missing and we are root), python3,
# rabbitmqctl (deleting the queue after; taskbench already purges it).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${COST_N:-100000}
runs=${COST_RUNS:-3}
small=$((n / 10))
extra=${COST_EXTRA:-}
queue=taskbench-cost
out=$(mktemp -d "${TMPDIR:-/tmp}/taskbench-amqp-cost.XXXXXX")

if ! command -v strace >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing strace (apt-get install -y strace)" >&2
    apt-get install -y -qq strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace >/dev/null; }
  else
    echo "error: strace is needed for the syscall count: apt-get install -y strace" >&2
    exit 2
  fi
fi

if [ -z "${TASKBENCH_BIN:-}" ]; then
  cargo build --release --quiet
  tb=target/release/taskbench
else
  tb=$TASKBENCH_BIN
fi

scenario() {  # $1 = publishes
  cat > "$out/cost-$1.toml" <<EOF
name = "amqp-cost"
publishes = $1
warmup = 1000
concurrency = 1
[task]
name = "tasks.add"
args = [2, 2]
queue = "$queue"
[[case]]
name = "pooled-off"
backend = "amqp"
path = "pooled"
confirm = "off"
$extra
EOF
  echo "$out/cost-$1.toml"
}
big_toml=$(scenario "$n")
small_toml=$(scenario "$small")

# Runs taskbench on $1 and prints "user_s sys_s throughput" (rusage of the child, from wait4).
cpu_run() {
  python3 - "$tb" "$1" "$out" <<'EOF'
import json, os, subprocess, sys
tb, toml, out = sys.argv[1:]
p = subprocess.Popen([tb, "run", toml, "--out", f"{out}/run", "--format", "json"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
text = p.stdout.read()
_, status, ru = os.wait4(p.pid, 0)
case = json.loads(text)["cases"][0]
if case["errors"]:
    sys.exit(f"the case had errors: {case['errors']}")
print(ru.ru_utime, ru.ru_stime, case["throughput_per_s"], case["latency_ns"]["p50"], case["latency_ns"]["max"])
EOF
}

echo "== CPU: $tb, pooled, confirm off, one publisher${extra:+, $extra} ($runs runs each of $n and $small publishes, +1000 warm-up)"
for size in "$n" "$small"; do
  toml=$out/cost-$size.toml
  for i in $(seq "$runs"); do
    read -r user sys tput p50 max < <(cpu_run "$toml")
    echo "$size $user $sys $tput" >> "$out/cpu.txt"
    awk -v n="$size" -v u="$user" -v s="$sys" -v t="$tput" -v p="$p50" -v m="$max" 'BEGIN {
      printf "  %7d publishes: user %.3f s  sys %.3f s  = %6.2f µs/publish (whole process)  %8.0f/s  p50 %.1f µs  max %.2f ms\n",
        n, u, s, 1e6 * (u + s) / (n + 1000), t, p / 1000, m / 1e6 }'
  done
done

# Syscalls, two ways. perf stat counts them from kernel tracepoints without slowing the process down (the
# figure to read); strace -f -c names each syscall but stops the process on every one, which changes the
# timing between the publisher and lapin's I/O thread and with it how many wake-ups there are (the baseline
# showed ~7 per publish under strace, ~4 without).
perf_events=raw_syscalls:sys_enter,syscalls:sys_enter_futex,syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_epoll_wait,context-switches
if command -v perf >/dev/null && perf stat -x, -e "$perf_events" true >/dev/null 2>&1; then
  echo "== syscalls: perf stat (tracepoints, no slowdown), one run each of $n and $small publishes"
  for size in "$n" "$small"; do
    perf stat -x, -o "$out/perf-$size.txt" -e "$perf_events" \
      "$tb" run "$out/cost-$size.toml" --out "$out/perf-run-$size" --format json > "$out/perf-$size.json" 2>/dev/null
  done
  python3 - "$out" "$n" "$small" <<'PY'
import json, sys
out, n, small = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def counts(size):
    c = {}
    for line in open(f"{out}/perf-{size}.txt"):
        f = line.strip().split(",")
        if len(f) > 2 and f[0].isdigit():
            name = f[2].replace("raw_syscalls:sys_enter", "all").replace("syscalls:sys_enter_", "")
            c[name] = int(f[0])
    return c
big, sm = counts(n), counts(small)
for size in (n, small):
    case = json.load(open(f"{out}/perf-{size}.json"))["cases"][0]
    print(f"  {size:7d} publishes: {case['throughput_per_s']:,.0f}/s, errors {case['errors'] or 0}, "
          f"{counts(size)['all']:,} syscalls")
print(f"  per publish (difference / {n - small:,} publishes): " + "  ".join(
    f"{k} {(big[k] - sm.get(k, 0)) / (n - small):.2f}" for k in big if k != "all"))
print(f"  SYSCALLS PER PUBLISH (perf): {(big['all'] - sm['all']) / (n - small):.2f}"
      f"  (whole-run total / publishes: {big['all'] / (n + 1000):.2f})")
PY
else
  echo "== (perf stat cannot read the syscall tracepoints here: only the strace count below)"
fi

echo "== syscalls: strace -f -c, one run each of $n and $small publishes"
for size in "$n" "$small"; do
  strace -f -c -o "$out/strace-$size.txt" "$tb" run "$out/cost-$size.toml" --out "$out/strace-run-$size" --format json > "$out/strace-$size.json" 2>/dev/null
done
python3 - "$out" "$n" "$small" <<'EOF'
import json, sys
out, n, small = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def calls(size):
    counts = {}
    for line in open(f"{out}/strace-{size}.txt"):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            counts[f[-1]] = int(f[3])
    return counts
big, sm = calls(n), calls(small)
for size in (n, small):
    c = json.load(open(f"{out}/strace-{size}.json"))["cases"][0]
    print(f"  {size:7d} publishes under strace: {c['throughput_per_s']:,.0f}/s, errors {c['errors'] or 0}, "
          f"{sum(calls(size).values()):,} syscalls")
print(f"  per publish (the difference between the two runs / {n - small:,} publishes), by syscall:")
per = {k: (big.get(k, 0) - sm.get(k, 0)) / (n - small) for k in big.keys() | sm.keys()}
for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
    if abs(v) >= 0.01:
        print(f"    {k:16} {v:6.2f}")
total = sum(per.values())
print(f"  SYSCALLS PER PUBLISH (strace): {total:.2f}  (whole-run total / publishes: {sum(big.values()) / (n + 1000):.2f})")
EOF

python3 - "$out/cpu.txt" "$n" "$small" <<'EOF'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
n, small = int(sys.argv[2]), int(sys.argv[3])
cpu = lambda size: [float(r[1]) + float(r[2]) for r in rows if int(r[0]) == size]
big, sm = statistics.median(cpu(n)), statistics.median(cpu(small))
print(f"  CPU PER PUBLISH: {1e6 * (big - sm) / (n - small):.2f} µs  (medians: {big:.3f} s at {n}, {sm:.3f} s at {small}; "
      f"whole-run total / publishes: {1e6 * big / (n + 1000):.2f} µs)")
EOF

rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || echo "(could not delete queue $queue: it was purged, delete it by hand)"
echo "run folder: $out"
