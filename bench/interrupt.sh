#!/usr/bin/env bash
# Benchmark: how long taskbench takes to exit after SIGINT, three times each: while its (private) Redis server
# is SIGSTOPped mid-case, and in an open loop at 0.1 publishes/s. It must be under a second.
# Usage: bench/interrupt.sh
set -u
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/taskbench
d=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port $port --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
rpid=$!
sleep 0.5
cat > $d/stall.toml <<T
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
cat > $d/slow.toml <<T
name = "slow"
publishes = 10
warmup = 0
rate = 0.1
[[case]]
name = "slow"
backend = "unix"
path = "raw"
T
measure() { # scenario, what to do before SIGINT
  $bin run "$1" --out "$d/out.$RANDOM" >/dev/null 2>&1 &
  local pid=$!
  sleep 1
  eval "$2"
  sleep 0.3
  local t0=$(date +%s.%N)
  kill -INT $pid
  wait $pid; local rc=$?
  local t1=$(date +%s.%N)
  echo "$3: exit $rc, $(python3 -c "print(f'{($t1-$t0)*1000:.0f} ms')") after SIGINT"
}
for i in 1 2 3; do
  measure $d/stall.toml "kill -STOP $rpid" "redis SIGSTOPped"
  kill -CONT $rpid
  measure $d/slow.toml ":" "open loop at 0.1/s"
done
redis-cli -p $port del tb-int-measure >/dev/null
kill $rpid; wait $rpid 2>/dev/null
rm -rf $d
