#!/usr/bin/env bash
# Classic vs quorum queues on a three-node RabbitMQ cluster of our own (docs/cluster.md):
#   1. starts tb-a@localhost, tb-b@localhost, tb-c@localhost from /usr/lib/rabbitmq/bin as the calling user,
#      AMQP on 127.0.0.1:5701-5703, distribution on 25701-25703 (rabbitmqctl then uses 35701-35713), no
#      plugins (so no management port), config, mnesia, logs and one shared Erlang cookie in a temp dir;
#   2. joins tb-b and tb-c to tb-a (stop_app, join_cluster, start_app) and checks cluster_status;
#   3. runs scenarios/bench-cluster.toml (pooled, one publisher, confirm each and window-64, classic and
#      quorum) against tb-a one case at a time, on queues named for this run, sampling each node's VM CPU
#      (utime + stime of its beam.smp in /proc) around every case, then deletes the queues;
#   4. on exit, whatever happened, stops every VM it started by its PID (SIGTERM, SIGKILL after 20 s).
# The shared broker (5672/25672/15672) is never addressed: every rabbitmqctl call names a tb-* node and
# runs with this run's HOME (cookie) and an empty rabbitmq-env.conf.
#
# Usage: bench/cluster.sh            (TASKBENCH_BIN=path/to/taskbench, default a release build of this
#                                     checkout; PUBLISHES=N to override the scenario's 20000; NODES=1 for
#                                     one node)
TASKBENCH_BIN=${TASKBENCH_BIN:-${TB:-}}  # TB: this script's older name for it
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

tb=$(bench_taskbench)
nodes=${NODES:-3}
PUBLISHES=${PUBLISHES:-$(bench_count "" 200)}
bin=/usr/lib/rabbitmq/bin
names=(tb-a tb-b tb-c)
base_port=5701
hz=$(getconf CLK_TCK)
[ -x "$bin/rabbitmq-server" ] || { echo "no $bin/rabbitmq-server" >&2; exit 2; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/taskbench-cluster.XXXXXX")
run_id=$$
declare -a vm_pids=() script_pids=()
child=""  # the bounded command running now, if any
exec 3>&1 4>&2  # the script's own stdout/stderr: a trap runs inside whatever redirection was active

# bounded SECONDS CMD...: CMD under timeout, in the background so that a signal to this script is handled at
# once (bash runs a trap only after a foreground command returns) and the command is stopped with the nodes.
bounded() {
  local s=$1; shift
  timeout "$s" "$@" &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=""
  return $rc
}

stop_all() {
  local rc=$?
  exec 1>&3 2>&4
  local i pid
  if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null || true; wait "$child" 2>/dev/null || true; fi
  for i in "${!names[@]}"; do
    [ -f "$dir/${names[$i]}/pid" ] || continue
    pid=$(cat "$dir/${names[$i]}/pid" 2>/dev/null || true)
    [[ "$pid" =~ ^[0-9]+$ ]] && vm_pids[i]=$pid
  done
  for pid in "${vm_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + 20))
  for pid in "${vm_pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  for pid in "${script_pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  local left=""
  for pid in "${vm_pids[@]}" "${script_pids[@]}"; do kill -0 "$pid" 2>/dev/null && left="$left $pid"; done
  echo "== stopped by PID: VMs ${vm_pids[*]:-none}, scripts ${script_pids[*]:-none}${left:+; STILL RUNNING:$left}"
  # The nodes' data (~100 MB a run, mostly quorum logs) goes once they are gone; logs and run folders stay.
  [ -z "$left" ] && rm -rf "$dir"/tb-?/mnesia
  echo "node logs and run folders: $dir"
  exit $rc
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# node_env NODE: node_vars becomes what rabbitmq-server and rabbitmqctl need to find NODE and only it.
node_env() {
  local n=$1
  node_vars=("HOME=$dir" "RABBITMQ_NODENAME=$n@localhost" "RABBITMQ_CONF_ENV_FILE=$dir/env.conf"
    "ERL_EPMD_ADDRESS=127.0.0.1" "RABBITMQ_CTL_DIST_PORT_MIN=35701" "RABBITMQ_CTL_DIST_PORT_MAX=35713")
}
ctl() {  # ctl NODE ARGS...: rabbitmqctl on one of ours, bounded in time
  local n=$1; shift
  node_env "$n"
  bounded 120 env "${node_vars[@]}" "$bin/rabbitmqctl" -q -n "$n@localhost" "$@"
}

: > "$dir/env.conf"
# One cookie for the three nodes and their rabbitmqctl: they share HOME=$dir.
head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/.erlang.cookie"
chmod 400 "$dir/.erlang.cookie"

echo "== starting $nodes node(s) in $dir"
for ((i = 0; i < nodes; i++)); do
  n=${names[$i]}; d=$dir/$n; port=$((base_port + i))
  mkdir -p "$d"
  echo "[]." > "$d/enabled_plugins"
  printf 'listeners.tcp.local = 127.0.0.1:%s\n' "$port" > "$d/rabbitmq.conf"
  node_env "$n"
  env "${node_vars[@]}" \
    RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$((port + 20000)) \
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" RABBITMQ_PLUGINS_EXPAND_DIR="$d/plugins" \
    RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" RABBITMQ_PID_FILE="$d/pid" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    "$bin/rabbitmq-server" < /dev/null > "$d/server.out" 2>&1 &
  script_pids[i]=$!
done
for ((i = 0; i < nodes; i++)); do
  n=${names[$i]}
  deadline=$((SECONDS + 120))
  until ctl "$n" await_startup --timeout 30 > /dev/null 2>&1; do
    if ! kill -0 "${script_pids[$i]}" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "$n did not start; its output:" >&2; tail -20 "$dir/$n/server.out" >&2; exit 1
    fi
    sleep 0.5
  done
  vm_pids[i]=$(cat "$dir/$n/pid")
  echo "  $n@localhost up: amqp 127.0.0.1:$((base_port + i)), dist $((base_port + i + 20000)), beam.smp pid ${vm_pids[$i]}"
done

if [ "$nodes" -gt 1 ]; then
  echo "== joining to tb-a@localhost"
  for ((i = 1; i < nodes; i++)); do
    n=${names[$i]}
    ctl "$n" stop_app
    ctl "$n" join_cluster tb-a@localhost
    ctl "$n" start_app
    ctl "$n" await_startup --timeout 60
  done
fi
ctl tb-a cluster_status --formatter json > "$dir/cluster_status.json"
python3 -m bench.cluster_table status "$dir/cluster_status.json"

echo "== taskbench: scenarios/bench-cluster.toml against tb-a (127.0.0.1:$base_port), queues tb-cluster-$run_id-*"
sed "s/queue = \"tb-cluster-/queue = \"tb-cluster-$run_id-/" scenarios/bench-cluster.toml > "$dir/bench-cluster.toml"
export TASKBENCH_AMQP_URL="amqp://guest:guest@127.0.0.1:$base_port/%2f"
ticks() {  # utime + stime of every VM, in clock ticks, space-separated
  local pid out=""
  for pid in "${vm_pids[@]}"; do out="$out $(awk '{print $14 + $15}' "/proc/$pid/stat")"; done
  echo "${out# }"
}
publishes_arg=()
[ -n "${PUBLISHES:-}" ] && publishes_arg=(--publishes "$PUBLISHES")
echo "loadavg before: $(cat /proc/loadavg)"
for case in classic-each classic-window-64 quorum-each quorum-window-64; do
  c0=$(ticks); t0=$(date +%s.%N)
  bounded 600 "$tb" run "$dir/bench-cluster.toml" --case "$case" "${publishes_arg[@]}" \
    --out "$dir/runs/$case" > "$dir/runs-$case.txt" 2>&1 || echo "  ($case: taskbench exited $?, see $dir/runs-$case.txt)"
  c1=$(ticks); t1=$(date +%s.%N)
  echo "$case $t0 $t1 | $c0 | $c1" >> "$dir/cpu.txt"
done
echo "loadavg after:  $(cat /proc/loadavg)"

echo "== results (one publisher, pooled, persistent, connected to tb-a; broker CPU = % of one core per node over the case)"
python3 -m bench.cluster_table results "$dir" "$hz" "$nodes"

# A quorum queue's message count in list_queues comes from periodically emitted stats (every 5 s by
# default), so right after the purge it can still show the messages; wait that long before listing.
echo "== queues 6 s after the last case (purged by taskbench), then deleted"
sleep 6
ctl tb-a list_queues name type messages leader members 2>/dev/null || ctl tb-a list_queues name type messages
for q in classic-each classic-window quorum-each quorum-window; do
  ctl tb-a delete_queue "tb-cluster-$run_id-$q" > /dev/null 2>&1 || true
done
