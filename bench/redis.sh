#!/usr/bin/env bash
# Benchmarks taskbench's redis backend against redis-benchmark (the same LPUSH, value size and concurrency)
# and against Celery/kombu (shared/tools/celery_peer.py), in one run on one server, and prints the ratios.
#
# Usage: bench/redis.sh [REDIS_URL]      (default: $TASKBENCH_REDIS_URL, else redis://127.0.0.1:6379/0)
# Needs redis-cli and redis-benchmark; the Celery peer runs if target/celery-venv exists (tests/run makes
# it). Pairs: pooled c=1 vs -c 1; pooled c=50 vs -c 50; pooled batch=32 c=50 vs -c 50 -P 32; fresh without
# the kombu handshake vs -c 1 -k 0. Deletes what it pushed: its own queue, redis-benchmark's `mylist` (it
# refuses to run if `mylist` already exists) and what the Celery peer added to `celery`.
# Counts are small enough that the whole run takes about a minute; on a busy machine, compare the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

url=${1:-${TASKBENCH_REDIS_URL:-redis://127.0.0.1:6379/0}}
hostport=${url#redis://}
hostport=${hostport#*@}
hostport=${hostport%%/*}
host=${hostport%:*}
port=${hostport##*:}
cli=(redis-cli -h "$host" -p "$port")
bench=(redis-benchmark -h "$host" -p "$port" -t lpush)
case "$url" in *@*) echo "bench/redis.sh: URLs with a password are not supported (redis-benchmark would need -a)" >&2; exit 2 ;; esac

N1=${N1:-100000}        # c=1 publishes
N50=${N50:-200000}      # c=50 publishes
NP=${NP:-500000}        # pipelined publishes
NFRESH=${NFRESH:-10000} # reconnect-per-publish publishes (each leaves a socket in TIME_WAIT)
NCELERY=${NCELERY:-3000}

if [ "$("${cli[@]}" EXISTS mylist)" != 0 ]; then
  echo "bench/redis.sh: key 'mylist' exists on $host:$port; redis-benchmark LPUSHes to it, so this will not run" >&2
  exit 2
fi

cargo build --release --quiet
tb=target/release/taskbench
queue="taskbench-bench-$$"
work=$(mktemp -d)
trap 'rm -rf "$work"; "${cli[@]}" DEL "$queue" mylist >/dev/null' EXIT

# The envelope's size, so redis-benchmark pushes values of the same size.
cat >"$work/size.toml" <<EOF
name = "size"
publishes = 1
warmup = 0
[task]
queue = "$queue"
[[case]]
name = "probe"
backend = "redis"
path = "pooled"
url = "$url"
keep = true
EOF
"$tb" run "$work/size.toml" --out "$work/size" --format json >/dev/null
size=$("${cli[@]}" EVAL "return string.len(redis.call('LINDEX', KEYS[1], 0))" 1 "$queue")
"${cli[@]}" DEL "$queue" >/dev/null
echo "envelope: $size bytes; server: $host:$port ($("${cli[@]}" INFO server | grep -o 'redis_version:[0-9.]*'))"

# taskbench_case NAME PUBLISHES CONCURRENCY EXTRA-KEYS -> prints "throughput p50_us"
taskbench_case() {
  cat >"$work/$1.toml" <<EOF
name = "bench"
publishes = $2
warmup = 1000
concurrency = $3
stage_timing = false
[task]
queue = "$queue"
[[case]]
name = "$1"
backend = "redis"
url = "$url"
$4
EOF
  "$tb" run "$work/$1.toml" --out "$work/$1" --format json |
    python3 -c 'import json,sys; c=json.load(sys.stdin)["cases"][0]; assert not c["errors"], c["errors"]; print(round(c["throughput_per_s"]), round(c["latency_ns"]["p50"]/1000, 1))'
}

# redis_benchmark ARGS... -> prints "throughput p50_us"
redis_benchmark() {
  "${bench[@]}" -d "$size" --csv "$@" | tr -d '"' |
    awk -F, '$1 == "LPUSH" { printf "%d %.1f\n", $2, $5 * 1000 }'
  "${cli[@]}" DEL mylist >/dev/null
}

printf '\n%-36s %12s %9s   %-40s %12s %9s   %s\n' "taskbench" "tasks/s" "p50 µs" "redis-benchmark" "req/s" "p50 µs" "ratio"
pair() { # LABEL TASKBENCH-RESULT BENCH-LABEL BENCH-RESULT
  read -r t tp <<<"$2"
  read -r b bp <<<"$4"
  printf '%-36s %12s %9s   %-40s %12s %9s   %.2f\n' "$1" "$t" "$tp" "$3" "$b" "$bp" "$(python3 -c "print($t/$b)")"
}
pair "pooled c=1" "$(taskbench_case pooled-c1 "$N1" 1 'path = "pooled"')" \
  "-c 1 -n $N1" "$(redis_benchmark -c 1 -n "$N1")"
pair "pooled c=50" "$(taskbench_case pooled-c50 "$N50" 50 'path = "pooled"')" \
  "-c 50 -n $N50" "$(redis_benchmark -c 50 -n "$N50")"
pair "pooled batch=32 c=50" "$(taskbench_case pooled-batch32 "$NP" 50 $'path = "pooled"\nbatch = 32')" \
  "-c 50 -P 32 -n $NP" "$(redis_benchmark -c 50 -P 32 -n "$NP")"
pair "fresh kombu_handshake=false c=1" "$(taskbench_case fresh-bare "$NFRESH" 1 $'path = "fresh"\nkombu_handshake = false')" \
  "-c 1 -k 0 -n $NFRESH" "$(redis_benchmark -c 1 -k 0 -n "$NFRESH" 2>/dev/null)"
echo
echo "other taskbench paths (no redis-benchmark peer):"
printf '  %-34s %12s tasks/s, p50 %s µs\n' "fresh (kombu handshake) c=1" $(taskbench_case fresh "$NFRESH" 1 'path = "fresh"')
printf '  %-34s %12s tasks/s, p50 %s µs\n' "acquire c=1 (bb8, pool_size 10)" $(taskbench_case acquire "$N1" 1 'path = "acquire"')
printf '  %-34s %12s tasks/s, p50 %s µs\n' "pooled c=50 multiplexed" $(taskbench_case pooled-mux "$N50" 50 $'path = "pooled"\nmultiplexed = true')

python=target/celery-venv/bin/python
if [ -x "$python" ]; then
  echo
  echo "Celery/kombu on the same server (celery_peer.py $NCELERY, queue 'celery'):"
  celery_before=$("${cli[@]}" LLEN celery)
  binding_before=$("${cli[@]}" EXISTS _kombu.binding.celery _kombu.binding_permanent.celery)
  peer=$("$python" ../shared/tools/celery_peer.py "$url" "$NCELERY")
  echo "$peer" | sed 's/^/  /'
  if [ "$celery_before" = 0 ]; then "${cli[@]}" DEL celery >/dev/null; else "${cli[@]}" LTRIM celery "-$celery_before" -1 >/dev/null; fi
  if [ "$binding_before" = 0 ]; then "${cli[@]}" DEL _kombu.binding.celery _kombu.binding_permanent.celery >/dev/null; fi
  send_task=$(echo "$peer" | python3 -c 'import json,sys; print([json.loads(l) for l in sys.stdin if l.strip()][0]["per_s"])')
  read -r pooled _ <<<"$(taskbench_case pooled-c1-again "$N1" 1 'path = "pooled"')"
  printf 'taskbench pooled c=1: %s tasks/s = %.1fx Celery send_task (%s tasks/s)\n' "$pooled" "$(python3 -c "print($pooled/$send_task)")" "$send_task"
else
  echo "(no $python: run tests/run once to create it, for the Celery comparison)"
fi
