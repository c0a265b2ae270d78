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
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

n=${COST_N:-$(bench_count 100000 2000)}
runs=${COST_RUNS:-$(bench_count 3 1)}
small=$((n / 10))
warmup=$(bench_count 1000 10)
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

tb=$(bench_taskbench)

scenario() {  # $1 = publishes
  cat > "$out/cost-$1.toml" <<EOF
name = "amqp-cost"
publishes = $1
warmup = $warmup
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
}
scenario "$n"
scenario "$small"

echo "== CPU: $tb, pooled, confirm off, one publisher${extra:+, $extra} ($runs runs each of $n and $small publishes, +$warmup warm-up)"
for size in "$n" "$small"; do
  toml=$out/cost-$size.toml
  for i in $(seq "$runs"); do
    # "user_s sys_s per_s p50_ns max_ns": the child's rusage (wait4) and the case's figures.
    line=$(python3 -m bench.amqp_cost cpu-run "$tb" "$toml" "$out/cpu-run-$size-$i")
    read -r user sys tput p50 max <<<"$line"
    echo "$size $user $sys $tput" >> "$out/cpu.txt"
    awk -v n="$size" -v w="$warmup" -v u="$user" -v s="$sys" -v t="$tput" -v p="$p50" -v m="$max" 'BEGIN {
      printf "  %7d publishes: user %.3f s  sys %.3f s  = %6.2f µs/publish (whole process)  %8.0f/s  p50 %.1f µs  max %.2f ms\n",
        n, u, s, 1e6 * (u + s) / (n + w), t, p / 1000, m / 1e6 }'
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
  python3 -m bench.amqp_cost perf "$out" "$n" "$small" "$warmup"
else
  echo "== (perf stat cannot read the syscall tracepoints here: only the strace count below)"
fi

echo "== syscalls: strace -f -c, one run each of $n and $small publishes"
for size in "$n" "$small"; do
  strace -f -c -o "$out/strace-$size.txt" "$tb" run "$out/cost-$size.toml" --out "$out/strace-run-$size" --format json > "$out/strace-$size.json" 2>/dev/null
done
python3 -m bench.amqp_cost strace "$out" "$n" "$small" "$warmup"

python3 -m bench.amqp_cost cpu "$out/cpu.txt" "$n" "$small" "$warmup"

rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || echo "(could not delete queue $queue: it was purged, delete it by hand)"
echo "run folder: $out"
