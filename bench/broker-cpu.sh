#!/usr/bin/env bash
# Benchmark: how much CPU the brokers themselves use while taskbench publishes to them: runs the taskbench
# cases of scenarios/celery-vs-taskbench.toml one by one and prints, for each, throughput and the broker's
# CPU (user+sys of the RabbitMQ VM or the redis-server process, from /proc) as a share of one core. On a
# 2-core machine one publisher is often broker-bound: this says how much.
# Usage: bench/broker-cpu.sh   (RabbitMQ and Redis on their default local ports)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/taskbench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rabbit=$(rabbitmqctl status 2>/dev/null | grep -i "OS PID" | grep -o "[0-9]*" | head -1)
redis=$(redis-cli info server | grep process_id | tr -d '\r' | cut -d: -f2)
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "== broker CPU while taskbench publishes, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for case in amqp-taskbench-pooled amqp-taskbench-acquire redis-taskbench-pooled redis-taskbench-acquire; do
  pid=$rabbit; [[ $case == redis-* ]] && pid=$redis
  before=$(cpu "$pid"); t0=$(date +%s.%N)
  $bin run scenarios/celery-vs-taskbench.toml --case "$case" --out "$out/$case" --format json >"$out/$case.json"
  t1=$(date +%s.%N); after=$(cpu "$pid")
  python3 - "$out/$case.json" "$before" "$after" "$t0" "$t1" "$ticks" "$case" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["cases"][0]
before, after, t0, t1, ticks = (float(x) for x in sys.argv[2:7])
share = (after - before) / ticks / (t1 - t0)
print(f"  {sys.argv[7]:<24} {c['throughput_per_s']:>10,.0f}/s  delivered {c['delivered']}  "
      f"broker CPU {share * 100:5.1f}% of a core over the whole run ({t1 - t0:.1f} s, setup included)")
PY
done
