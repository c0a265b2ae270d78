#!/usr/bin/env bash
# Benchmark: how long taskbench takes to exit after SIGINT, three times each: while its (private) Redis server
# is SIGSTOPped mid-case, and in an open loop at 0.1 publishes/s. It must be under a second.
# Usage: bench/interrupt.sh      (needs redis-server on PATH; it starts its own on a free port)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
tb=$(bench_taskbench)
d=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
rpid=$!
cleanup() {
  kill -CONT "$rpid" 2>/dev/null || true
  kill "$rpid" 2>/dev/null || true
  wait "$rpid" 2>/dev/null || true
  rm -rf "$d"
}
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.1; done
cat >"$d/stall.toml" <<T
name = "int"
duration = "60s"
warmup = 0
concurrency = 2
publish_timeout = "30s"
[task]
queue = "tb-int-measure"
[[case]]
name = "stalled"
backend = "redis"
path = "pooled"
url = "redis://127.0.0.1:$port/0"
T
cat >"$d/slow.toml" <<T
name = "slow"
publishes = 10
warmup = 0
rate = 0.1
[[case]]
name = "slow"
backend = "unix"
path = "raw"
T
# measure SCENARIO COMMAND LABEL: runs SCENARIO, runs COMMAND after a second, sends SIGINT 0.3 s later and
# prints how long taskbench took to exit, and with what status.
measure() {
  "$tb" run "$1" --out "$d/out.$RANDOM" >/dev/null 2>&1 &
  local pid=$! t0 t1 rc=0
  sleep 1
  eval "$2"
  sleep 0.3
  t0=$(date +%s.%N)
  kill -INT "$pid"
  wait "$pid" || rc=$?
  t1=$(date +%s.%N)
  echo "$3: exit $rc, $(awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f ms", (t1 - t0) * 1000 }') after SIGINT"
}
for _ in $(seq "$(bench_count 3 1)"); do
  measure "$d/stall.toml" "kill -STOP $rpid" "redis SIGSTOPped"
  kill -CONT "$rpid"
  measure "$d/slow.toml" ":" "open loop at 0.1/s"
done
redis-cli -p "$port" del tb-int-measure >/dev/null
