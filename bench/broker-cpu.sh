#!/usr/bin/env bash
# Benchmark: how much CPU the brokers themselves use while taskbench publishes to them: runs the taskbench
# cases of scenarios/celery-vs-taskbench.toml one by one and prints, for each, throughput and the broker's
# CPU (user+sys of the RabbitMQ VM or the redis-server process, from /proc) as a share of one core. On a
# 2-core machine one publisher is often broker-bound: this says how much.
# Usage: bench/broker-cpu.sh   (RabbitMQ and Redis on their default local ports)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
tb=$(bench_taskbench)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rabbit=$(rabbitmqctl status 2>/dev/null | grep -i "OS PID" | grep -o "[0-9]*" | head -1 || true)
redis=$(redis-cli info server 2>/dev/null | grep process_id | tr -d '\r' | cut -d: -f2 || true)
if [ -z "$rabbit" ] || [ -z "$redis" ]; then
  echo "$0: needs RabbitMQ (rabbitmqctl status) and Redis (redis-cli) on this machine, to read their CPU" >&2
  exit 2
fi
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "== broker CPU while taskbench publishes, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for case in amqp-taskbench-pooled amqp-taskbench-acquire redis-taskbench-pooled redis-taskbench-acquire; do
  pid=$rabbit; [[ $case == redis-* ]] && pid=$redis
  before=$(cpu "$pid"); t0=$(date +%s.%N)
  "$tb" run scenarios/celery-vs-taskbench.toml --case "$case" "${smoke_run_args[@]}" --out "$out/$case" \
    --format json >"$out/$case.json"
  t1=$(date +%s.%N); after=$(cpu "$pid")
  share=$(awk -v c="$((after - before))" -v hz="$ticks" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%5.1f", 100 * c / hz / (t1 - t0) }')
  wall=$(awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.1f", t1 - t0 }')
  python3 -m bench.summary "$out/$case.json" --set share="$share" --set wall="$wall" \
    '  {name:<24} {throughput_per_s:>10,.0f}/s  delivered {delivered}  broker CPU {share}% of a core over the whole run ({wall} s, setup included)'
done
