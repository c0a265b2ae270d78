#!/usr/bin/env bash
# Benchmarks taskbench's redis backend against redis-benchmark (the same LPUSH, value size and concurrency)
# and against real Celery/kombu (the redis cases of scenarios/celery-vs-taskbench.toml), in one run on one
# server, and prints the ratios.
#
# Usage: bench/redis.sh [REDIS_URL]      (default: $TASKBENCH_REDIS_URL, else redis://127.0.0.1:6379/0)
# Needs redis-cli and redis-benchmark; the Celery peers run if target/celery-venv exists (tests/run makes
# it; TASKBENCH_PYTHON for another interpreter). Pairs: pooled c=1 vs -c 1; pooled c=50 vs -c 50; pooled batch=32 c=50 vs -c 50 -P 32; fresh without
# the kombu handshake vs -c 1 -k 0. taskbench runs each twice: with one runtime thread (as redis-benchmark
# has one) and with one per core (taskbench's default). Pairs run interleaved ROUNDS times (default 2) and the best
# of each counts, since a shared machine only ever slows a run down.
# Deletes what it pushed: its own queue and redis-benchmark's `mylist` (it refuses to run if `mylist`
# already exists); the Celery peers' cases delete their queue's lists themselves.
# Takes about a minute and a half.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

url=${1:-${TASKBENCH_REDIS_URL:-redis://127.0.0.1:6379/0}}
case "$url" in
  *@*) echo "bench/redis.sh: URLs with a password are not supported (redis-benchmark would need -a)" >&2; exit 2 ;;
  redis://*) ;;
  *) echo "bench/redis.sh: give a redis://HOST:PORT/DB URL" >&2; exit 2 ;;
esac
hostport=${url#redis://}
hostport=${hostport%%/*}
host=${hostport%:*}
port=${hostport##*:}
cli=(redis-cli -h "$host" -p "$port")
bench=(redis-benchmark -h "$host" -p "$port" -t lpush)

N1=${N1:-$(bench_count 60000 300)}           # c=1 publishes
N50=${N50:-$(bench_count 200000 1000)}       # c=50 publishes
NP=${NP:-$(bench_count 400000 2000)}         # pipelined publishes
NFRESH=${NFRESH:-$(bench_count 5000 50)}     # reconnect-per-publish publishes (each leaves a socket in TIME_WAIT)
ROUNDS=${ROUNDS:-$(bench_count 2 1)}

if [ "$("${cli[@]}" EXISTS mylist)" != 0 ]; then
  echo "bench/redis.sh: key 'mylist' exists on $host:$port; redis-benchmark LPUSHes to it, so this will not run" >&2
  exit 2
fi

tb=$(bench_taskbench)
queue="taskbench-bench-$$"
work=$(mktemp -d)
trap 'rm -rf "$work"; "${cli[@]}" DEL "$queue" mylist >/dev/null' EXIT

# write_case FILE NAME PUBLISHES CONCURRENCY EXTRA-KEYS: a one-case scenario on the bench queue.
write_case() {
  {
    echo "name = \"bench\""
    echo "publishes = $3"
    echo "warmup = 1000"
    echo "concurrency = $4"
    echo "stage_timing = false"
    echo "[task]"
    echo "queue = \"$queue\""
    echo "[[case]]"
    echo "name = \"$2\""
    echo "backend = \"redis\""
    echo "url = \"$url\""
    printf '%b\n' "$5"
  } >"$1"
}

# taskbench_case NAME PUBLISHES CONCURRENCY EXTRA-KEYS -> prints "throughput p50_us"
# (TOKIO_WORKER_THREADS in the environment sets taskbench's runtime threads.)
taskbench_case() {
  write_case "$work/$1.toml" "$@"
  "$tb" run "$work/$1.toml" --out "$work/$1" --force --format json |
    python3 -m bench.summary - --no-errors '{throughput_per_s:.0f} {latency_ns.p50_us:.1f}'
}

# redis_benchmark ARGS... -> prints "throughput p50_us"
redis_benchmark() {
  "${bench[@]}" -d "$size" --csv "$@" 2>/dev/null | tr -d '"' |
    awk -F, '$1 == "LPUSH" { printf "%d %.1f\n", $2, $5 * 1000 }'
  "${cli[@]}" DEL mylist >/dev/null
}

best() { sort -n -r | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a / b }'; }

# The envelope's size, so redis-benchmark pushes values of the same size.
write_case "$work/size.toml" probe 1 1 'path = "pooled"\nkeep = true\nwarmup = 0'
"$tb" run "$work/size.toml" --out "$work/size" --format json >/dev/null
size=$("${cli[@]}" EVAL "return string.len(redis.call('LINDEX', KEYS[1], 0))" 1 "$queue")
"${cli[@]}" DEL "$queue" >/dev/null
echo "envelope: $size bytes; server: $host:$port ($("${cli[@]}" INFO server | grep -o 'redis_version:[0-9.]*')); $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"

labels=("pooled c=1" "pooled c=50" "pooled batch=32 c=50" "fresh kombu_handshake=false c=1")
counts=("$N1" "$N50" "$NP" "$NFRESH")
concurrency=(1 50 50 1)
keys=('path = "pooled"' 'path = "pooled"' 'path = "pooled"\nbatch = 32' 'path = "fresh"\nkombu_handshake = false')
peers=("-c 1" "-c 50" "-c 50 -P 32" "-c 1 -k 0")
for _ in $(seq "$ROUNDS"); do
  for i in "${!labels[@]}"; do
    TOKIO_WORKER_THREADS=1 taskbench_case "pair$i-1t" "${counts[$i]}" "${concurrency[$i]}" "${keys[$i]}" >>"$work/pair$i.t1"
    TOKIO_WORKER_THREADS=$(nproc) taskbench_case "pair$i" "${counts[$i]}" "${concurrency[$i]}" "${keys[$i]}" >>"$work/pair$i.tn"
    # shellcheck disable=SC2086
    redis_benchmark ${peers[$i]} -n "${counts[$i]}" >>"$work/pair$i.rb"
  done
done

cores=$(nproc)
printf '\nbest of %s rounds; taskbench with 1 runtime thread (redis-benchmark has 1) and with %s (one per core)\n' "$ROUNDS" "$cores"
echo "(taskbench's default is one thread per core; TOKIO_WORKER_THREADS sets it)"
printf '%-32s %18s %18s   %-12s %18s   %s\n' "taskbench" "1 thread /s, p50" "$cores threads /s, p50" "redis-benchmark" "req/s, p50" "ratios (1t, ${cores}t)"
for i in "${!labels[@]}"; do
  read -r t1 p1 <<<"$(best <"$work/pair$i.t1")"
  read -r tn pn <<<"$(best <"$work/pair$i.tn")"
  read -r rb pb <<<"$(best <"$work/pair$i.rb")"
  printf '%-32s %9s %6sµs %9s %6sµs   %-15s %9s %6sµs   %s, %s\n' "${labels[$i]}" "$t1" "$p1" "$tn" "$pn" \
    "${peers[$i]}" "$rb" "$pb" "$(ratio "$t1" "$rb")" "$(ratio "$tn" "$rb")"
done

echo
echo "other taskbench paths, default threads (no redis-benchmark peer):"
# other LABEL NAME PUBLISHES CONCURRENCY EXTRA-KEYS: one taskbench case, one line.
other() {
  local label=$1 line tput p50
  shift
  line=$(taskbench_case "$@")
  read -r tput p50 <<<"$line"
  printf '  %-34s %9s tasks/s, p50 %s µs\n' "$label" "$tput" "$p50"
}
other "fresh (kombu handshake) c=1" fresh "$NFRESH" 1 'path = "fresh"'
other "acquire c=1 (bb8, pool_size 10)" acquire "$N1" 1 'path = "acquire"'
other "pooled c=50 multiplexed" pooled-mux "$N50" 50 'path = "pooled"\nmultiplexed = true'

python=${TASKBENCH_PYTHON:-target/celery-venv/bin/python}
peer_cases=(redis-celery-acquire redis-celery-pooled redis-kombu-pooled redis-kombu-fresh)
if [ -x "$python" ]; then
  echo
  echo "Celery/kombu on the same server (scenarios/celery-vs-taskbench.toml: ${peer_cases[*]}):"
  case_args=()
  for c in "${peer_cases[@]}"; do case_args+=(--case "$c"); done
  TASKBENCH_PYTHON="$python" TASKBENCH_REDIS_URL="$url" "$tb" run scenarios/celery-vs-taskbench.toml \
    "${case_args[@]}" "${smoke_run_args[@]}" --out "$work/peers" | sed 's/^/  /'
  send_task=$(python3 -m bench.summary "$work/peers/summary.json" --case redis-celery-acquire '{throughput_per_s:.0f}')
  pooled=$(cat "$work/pair0.t1" "$work/pair0.tn" | best | cut -d' ' -f1)
  printf 'taskbench pooled c=1 (best above): %s tasks/s = %sx Celery apply_async as shipped (delay(): %s tasks/s)\n' \
    "$pooled" "$(ratio "$pooled" "$send_task")" "$send_task"
else
  echo "(no $python: run tests/run once to create it, for the Celery comparison)"
fi
